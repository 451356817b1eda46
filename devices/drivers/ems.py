"""What the two EMS butterfly drivers share: the EB1 (DG-LAB Coyote V3) and the Coyote V2.

Both take a ``ButterflyOutput`` in massaged's butterfly units (EB1's), hold the
session's soft limits and ramp (daemon rules 1 and 2) with the same checks, count
rule 2 on elapsed time per channel, and run one pump task that does every write
that puts something out. What differs is the wire: EB1's B0/B1 exchange against the
Coyote V2's strength and waveform characteristics; that stays in each driver.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ClassVar

from devices.capabilities import Capabilities, DeviceKind, butterfly_channels
from devices.drivers._request import LinkDevice
from devices.errors import DeviceTimeoutError, FrameError, LinkLostError, MassagedError
from devices.events import StatusReport
from devices.links.base import DEFAULT_READ_TIMEOUT, Link
from devices.outputs import ButterflyOutput, Output
from devices.protocols import eb1

logger = logging.getLogger(__name__)

RAISE_WINDOW = 0.100
"""Rule 2's window: the raises of one channel within any RAISE_WINDOW add up to at most
max_raise. Counted on elapsed time rather than per write, because writes do not come on
a fixed grid; so between any two writes a strength rises by at most max_raise per
started 100 ms."""

MAX_STRENGTH = eb1.MAX_STRENGTH
"""The butterfly strength unit is EB1's (0..200) for both models."""
MAX_RAISE_PER_100MS = eb1.MAX_RAISE_PER_B0
"""Daemon rule 2: +5 strength per 100 ms per channel at most, for both models."""


def checked_soft_limits(limits: tuple[int, int]) -> tuple[int, int]:
    """Rule 1's caps per channel, checked: two values 0..MAX_STRENGTH."""
    if len(limits) != 2 or any(not 0 <= v <= MAX_STRENGTH for v in limits):
        raise ValueError(f"soft limits must be two values 0..{MAX_STRENGTH}")
    return (limits[0], limits[1])


def checked_max_raise(max_raise: int) -> int:
    """Rule 2's raise per 100 ms, checked: a profile may make the ramp slower, never faster."""
    if not 1 <= max_raise <= MAX_RAISE_PER_100MS:
        raise ValueError(f"max_raise_per_100ms must be 1..{MAX_RAISE_PER_100MS}")
    return max_raise


class RaiseWindow:
    """Rule 2 per channel: the raises sent within the last RAISE_WINDOW, and what is left."""

    def __init__(self) -> None:
        self._raises: tuple[deque[tuple[float, int]], deque[tuple[float, int]]] = (
            deque(),
            deque(),
        )
        """Per channel, (loop time, rise) of the raises sent within the last RAISE_WINDOW."""

    def allowance(self, channel: int, now: float, max_raise: int) -> int:
        """How much a channel may rise now: max_raise less its raises within the window."""
        raises = self._raises[channel]
        while raises and now >= raises[0][0] + RAISE_WINDOW:
            raises.popleft()
        return max(0, max_raise - sum(rise for _, rise in raises))

    def frees_at(self, channel: int) -> float:
        """When the oldest raise still in the window leaves it (after allowance() gave 0)."""
        return self._raises[channel][0][0] + RAISE_WINDOW

    def spend(self, channel: int, rise: int, now: float) -> None:
        """A raise of channel by rise was sent at now."""
        self._raises[channel].append((now, rise))


class EmsButterflyDriver(LinkDevice):
    """A two-channel EMS butterfly: limits and ramp held here, writes done by one pump task."""

    kind = DeviceKind.BUTTERFLY
    model: ClassVar[str]
    """The model's name, as in Capabilities and in a connect time-out."""
    described: ClassVar[str]
    """The model with its article, for a refusal: "an EB1 butterfly"."""
    battery_uuid: ClassVar[str]
    pump_label: ClassVar[str] = "pump"

    def __init__(
        self,
        link: Link,
        *,
        name: str | None,
        write_target: str,
        soft_limits: tuple[int, int],
        max_raise_per_100ms: int,
        interval: float,
    ) -> None:
        super().__init__(link, name=name, write_target=write_target)
        self.soft_limits = checked_soft_limits(soft_limits)
        self.max_raise = checked_max_raise(max_raise_per_100ms)
        self._interval = interval
        """Seconds between two keepalive writes of a running output."""
        self._write_lock = asyncio.Lock()
        """Writes go out in the order decided: a stop's zeroing never overtakes a raise."""
        self._target: ButterflyOutput | None = None
        self._ceiling: list[int | None] = [None, None]
        """Per channel, the ceiling set this session (None: none): never raised past."""
        self._ramp = RaiseWindow()
        self._battery: int | None = None

    # -- state ----------------------------------------------------------------

    @property
    def output(self) -> ButterflyOutput:
        """The session output asked for (zero after stop, pause and lease end)."""
        return self._target if self._target is not None else ButterflyOutput.off()

    @property
    def user_ceiling(self) -> tuple[int | None, int | None]:
        """Per channel, the ceiling set this session: never raised past (None: no ceiling)."""
        return (self._ceiling[0], self._ceiling[1])

    def set_max_raise(self, max_raise_per_100ms: int) -> None:
        """Rule 2 from now on: at most this raise per 100 ms (a session's profile may slow it)."""
        self.max_raise = checked_max_raise(max_raise_per_100ms)

    def _raise_allowance(self, channel: int, now: float) -> int:
        """How much a channel may rise now under rule 2."""
        return self._ramp.allowance(channel, now, self.max_raise)

    # -- lifecycle ------------------------------------------------------------

    async def _connect_with(
        self, timeout: float, handshake: Callable[[], Awaitable[None]]
    ) -> Capabilities:
        """Open the link and run the handshake (which starts the pump) within timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._open_link(timeout)
                await handshake()
        except TimeoutError as exc:
            await self._abort_connect()
            if isinstance(exc, DeviceTimeoutError):
                raise
            raise DeviceTimeoutError(
                f"no {self.model} within {timeout} s", device=self.name
            ) from exc
        except BaseException:
            await self._abort_connect()
            raise
        # What the unit can do: the soft limits and the ramp are a session's rules, set
        # apart (set_soft_limits, set_max_raise), so no session inherits a stale copy.
        caps = Capabilities(
            kind=DeviceKind.BUTTERFLY, model=self.model, ems_channels=butterfly_channels()
        )
        self._capabilities = caps
        self._connected = True
        return caps

    async def _abort_connect(self) -> None:
        self._link_up = False
        await self._tasks.cancel_and_wait()
        await self._close_link()

    # -- outputs --------------------------------------------------------------

    def _checked_output(self, output: Output) -> ButterflyOutput:
        """The output if it is a butterfly's within range; else a one-line refusal."""
        if not isinstance(output, ButterflyOutput):
            raise TypeError(f"{self.described} takes ButterflyOutput, not {type(output).__name__}")
        self._require_connected()
        for name, ch in zip("AB", (output.a, output.b), strict=True):
            if not 0 <= ch.strength <= MAX_STRENGTH:
                raise ValueError(
                    f"{self.name}: strength {name} must be 0..{MAX_STRENGTH}, not {ch.strength}"
                )
            if not eb1.FREQ_MIN <= ch.frequency <= eb1.FREQ_MAX:
                raise ValueError(
                    f"{self.name}: frequency {name} must be {eb1.FREQ_MIN}..{eb1.FREQ_MAX},"
                    f" not {ch.frequency}"
                )
            if not 0 <= ch.intensity <= eb1.INTENSITY_MAX:
                raise ValueError(
                    f"{self.name}: intensity {name} must be 0..{eb1.INTENSITY_MAX},"
                    f" not {ch.intensity}"
                )
        return output

    async def _read_battery(self) -> int:
        data = await self.link.read(self.battery_uuid, timeout=DEFAULT_READ_TIMEOUT)
        if len(data) != 1:
            raise FrameError(f"{self.name}: battery characteristic gave {len(data)} bytes")
        self._battery = data[0]
        return data[0]

    def _status_report(self, outputs: dict[str, int], *, writing: bool) -> StatusReport:
        flags = {"writing"} if writing else set()
        flags |= {f"ceiling_{n}" for n, c in zip("ab", self._ceiling, strict=True) if c is not None}
        return StatusReport(
            device=self.name,
            kind=self.kind,
            battery=self._battery,
            temperature=None,
            outputs=outputs,
            flags=frozenset(flags),
        )

    # -- the pump -------------------------------------------------------------

    async def _pump(self) -> None:
        """Do the writes due while a session output runs; else sleep until woken."""
        loop = asyncio.get_running_loop()
        again = False
        while self._link_up:
            # Armed before looking: apply(), an answer or the lease changing from here on,
            # even during this pass's own write, makes the sleep below return at once.
            self._wake.arm()
            try:
                deadline = await self._tick()
            except LinkLostError:
                return
            except MassagedError as exc:
                logger.warning("%s: %s: %s", self.name, self.pump_label, exc)
                deadline = loop.time() + self._interval
            # Due now (after a write, what was written decides what is next): look again
            # at once, not through a timer due now (two loop iterations for one look);
            # but never twice in a row without a sleep, so other tasks always get a turn.
            again = not again and deadline is not None and deadline <= loop.time()
            if not again:
                await self._wake.sleep(deadline)

    @abc.abstractmethod
    async def _tick(self) -> float | None:
        """Do the write due now, if any; return when to look again (None: only when woken)."""

    # -- receiving ------------------------------------------------------------

    def _on_battery(self, source: str, data: bytes) -> bool:
        """True when the notification was the battery's (and is taken)."""
        if source != self.battery_uuid:
            return False
        if len(data) == 1:
            self._battery = data[0]
        return True
