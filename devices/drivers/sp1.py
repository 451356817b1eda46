"""Driver for the SP1 shiatsu pillow (docs/protocols/sp1-pillow.md), over BLE."""

from __future__ import annotations

import asyncio
import logging

from devices.capabilities import Capabilities, DeviceKind, KneadDirection, Kneading
from devices.drivers._request import Accept, LinkDevice, RequestTracker
from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT
from devices.errors import (
    FrameError,
    IdentificationError,
    LinkError,
    LinkLostError,
    MassagedError,
    SafetyError,
)
from devices.events import AutoOff, DeviceEvent, Overheated, PillowOccupancy, StatusReport
from devices.links.base import Hex, Link
from devices.outputs import Output, PillowOutput
from devices.protocols import sp1

logger = logging.getLogger(__name__)

RETRY_DELAY = 0.050
"""Seconds the lease task waits after a failed STOP before it looks again."""
STOP_TIMEOUT = 1.5
"""Seconds close() gives the best-effort STOP (one resend included)."""


class SP1Driver(LinkDevice):
    """An SP1 pillow: one command at a time, answered by a notification, resent when lost."""

    kind = DeviceKind.PILLOW

    def __init__(
        self,
        link: Link,
        *,
        name: str | None = None,
        answer_timeout: float = sp1.ANSWER_TIMEOUT,
        max_retries: int = sp1.MAX_RETRIES,
    ) -> None:
        super().__init__(link, name=name, write_target=sp1.DATA_UUID)
        # The answer carries no sequence number: requests are keyed by the answer's CMD.
        self._requests: RequestTracker[int, sp1.State | sp1.Info] = RequestTracker(
            device=self.name, answer_timeout=answer_timeout, max_retries=max_retries
        )
        self._lock = asyncio.Lock()
        self._output = PillowOutput.off()
        self._state: sp1.State | None = None
        self._stop_due = False
        """A gap in service was found: the lease task sends STOP at once."""

    # -- state ----------------------------------------------------------------

    @property
    def output(self) -> PillowOutput:
        """What the driver last asked the pillow for (zero after stop and auto-off)."""
        return self._output

    @property
    def state(self) -> sp1.State | None:
        """The last STATE the pillow reported."""
        return self._state

    @property
    def resends(self) -> int:
        """Commands resent for lack of an answer since the driver was made."""
        return self._requests.resends

    # -- lifecycle ------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> Capabilities:
        """Open the link, QUERY_INFO -> INFO, QUERY_STATE; STOP if anything runs."""
        self._connected = False
        self._state = None
        self._stop_due = False

        async def handshake() -> sp1.Info:
            info = await self._command(sp1.query_info(), sp1.Command.INFO, "QUERY_INFO")
            if not isinstance(info, sp1.Info):
                raise IdentificationError(f"{self.name}: QUERY_INFO not answered by INFO")
            self._capabilities = Capabilities(
                kind=DeviceKind.PILLOW,
                model=f"SP1-{info.model_id:02x}",
                firmware=f"{info.firmware_major}.{info.firmware_minor}",
                kneading=Kneading(nodes=max(1, info.nodes), max_speed=sp1.MAX_SPEED),
                heater=info.heater,
            )
            state = await self._query_state()
            if state.speed or state.heat:
                await self._stop_pillow()
            return info

        info = await self._open_and_identify(timeout, "SP1 pillow", handshake)
        caps = self.capabilities
        self._output = PillowOutput.off()
        self._connected = True
        self._tasks.start(self._lease_watch(), "lease")
        logger.info(
            "%s: SP1 pillow, %d nodes, heater %s, firmware %s",
            self.name,
            info.nodes,
            info.heater,
            caps.firmware,
        )
        return caps

    stop_timeout = STOP_TIMEOUT

    async def _stop_on_close(self) -> None:
        await self._stop_pillow()

    def _forget_outputs(self) -> None:
        self._output = PillowOutput.off()

    def _forget_held_outputs(self) -> None:
        # No watchdog: the pillow kneads and heats on through any gap, and a SET on its
        # way may have reached it. STOP it at once; it comes back from speed 0, heater
        # off, when the owner asks again.
        self._output = PillowOutput.off()
        self._stop_due = self._connected

    # -- outputs --------------------------------------------------------------

    async def apply(self, output: Output) -> None:
        """SET speed, direction and heat; never start kneading on an empty pillow."""
        if not isinstance(output, PillowOutput):
            raise TypeError(f"an SP1 pillow takes PillowOutput, not {type(output).__name__}")
        self._require_connected()
        caps = self.capabilities
        max_speed = caps.kneading.max_speed if caps.kneading else sp1.MAX_SPEED
        if not 0 <= output.speed <= max_speed:
            raise ValueError(f"{self.name}: speed must be 0..{max_speed}, not {output.speed}")
        if output.heat and not caps.heater:
            raise ValueError(f"{self.name}: this pillow has no heater")
        if output.speed > 0 and self._state is not None and self._state.empty:
            # Rule 6: the pressure switch says nobody rests on the pillow.
            raise SafetyError(f"{self.name}: nobody rests on the pillow: kneading not started")
        direction = sp1.DIRECTION_CODES[KneadDirection(output.direction)]

        def shows(answer: sp1.State | sp1.Info) -> bool:
            # Any STATE would do as an answer, but a periodic one may cross a lost SET.
            return (
                isinstance(answer, sp1.State)
                and answer.speed == output.speed
                and answer.direction == direction
                and (answer.heat == output.heat or (output.heat and answer.overheat))
            )

        frame = sp1.set_state(output.speed, output.direction, output.heat)
        generation = self._stamp(output)
        answer = await self._command(
            frame, sp1.Command.STATE, "SET", accept=shows, generation=generation
        )
        if generation != self._lease_gen:
            # A gap while the SET was on its way: not held; the STOP is due.
            raise SafetyError(f"{self.name}: a gap in service while setting the pillow: stopped")
        # Rule 4: an overheated pillow kneads but leaves its heater off; say so.
        heat = output.heat and isinstance(answer, sp1.State) and answer.heat
        before = self._output
        self._output = PillowOutput(output.speed, output.direction, heat=heat)
        if before.is_zero and not self._output.is_zero:
            # After the change: the lease task now has an output to watch (while one was
            # on, it already sleeps until the lease's end).
            self._wake.set()

    async def stop(self) -> None:
        """STOP: nodes still, heater off; ends the lease."""
        self.revoke_lease()
        self._require_connected()
        await self._stop_pillow()

    async def _stop_pillow(self) -> None:
        def stopped(answer: sp1.State | sp1.Info) -> bool:
            return isinstance(answer, sp1.State) and answer.speed == 0 and not answer.heat

        self._output = PillowOutput.off()
        self._stop_due = False
        await self._command(sp1.stop(), sp1.Command.STATE, "STOP", accept=stopped)

    async def status(self) -> StatusReport:
        """QUERY_STATE -> battery, temperature, flags and what the pillow does."""
        self._require_connected()
        state = await self._query_state()
        flags = frozenset(flag.name.lower() for flag in sp1.StateFlag if state.flags & flag)
        return StatusReport(
            device=self.name,
            kind=self.kind,
            battery=None if state.battery == 0xFF else state.battery,
            temperature=state.temperature,
            outputs={
                "speed": state.speed,
                "direction": state.direction,
                "heater": 1 if state.heat else 0,
            },
            flags=frozenset(f for f in flags if f),
        )

    async def _query_state(self) -> sp1.State:
        answer = await self._command(sp1.query_state(), sp1.Command.STATE, "QUERY_STATE")
        assert isinstance(answer, sp1.State)  # keyed by STATE, so nothing else resolves it
        return answer

    # -- commands -------------------------------------------------------------

    async def _command(
        self,
        frame: sp1.Frame,
        answer: int,
        what: str,
        *,
        accept: Accept[sp1.State | sp1.Info] | None = None,
        generation: int | None = None,
    ) -> sp1.State | sp1.Info:
        """Write one frame and wait for the notification that answers it (rule 1).

        generation: the lease generation of a frame that puts something out (see
        LinkDevice._write); its resends are dropped after a gap too.
        """
        if not self._link_up:
            raise LinkError("not connected", device=self.name)
        data = sp1.encode(frame)

        async def send() -> None:
            await self._write(data, generation=generation)

        async with self._lock:
            try:
                return await self._requests.request(answer, send, what=what, accept=accept)
            except LinkLostError as exc:
                await self._give_up(exc)
                raise

    # -- receiving ------------------------------------------------------------

    def _on_receive(self, source: str, data: bytes) -> None:
        # Every notification is exactly one frame (the protocol forbids splitting).
        try:
            frame = sp1.decode(data)
            if frame.cmd == sp1.Command.STATE:
                message: sp1.State | sp1.Info = sp1.State.decode(frame.payload)
            elif frame.cmd == sp1.Command.INFO:
                message = sp1.Info.decode(frame.payload)
            else:
                logger.debug("%s: ignored CMD 0x%02x", self.name, frame.cmd)
                return
        except FrameError as exc:
            logger.debug("%s: ignored a bad notification %s: %s", self.name, Hex(data), exc)
            return
        logger.debug("%s <- %s %s", self.name, Hex(data), message)
        if isinstance(message, sp1.State):
            self._on_state(message)
        self._requests.resolve(frame.cmd, message)

    def standing_events(self) -> list[DeviceEvent]:
        """An empty pillow, as its last STATE said: a session starting now must know."""
        state = self._state
        if state is not None and state.empty and self.is_connected:
            return [PillowOccupancy(self.name, self.kind, empty=True)]
        return []

    def _on_state(self, state: sp1.State) -> None:
        previous, self._state = self._state, state
        if previous is None:
            return
        if state.auto_off and not previous.auto_off:
            self._output = PillowOutput.off()
            self._emit(AutoOff(self.name, self.kind))
        if state.overheat and not previous.overheat:
            # The pillow keeps its heater off until a new SET asks again.
            self._output = PillowOutput(self._output.speed, self._output.direction, heat=False)
            self._emit(Overheated(self.name, self.kind, temperature=state.temperature))
        if state.empty != previous.empty:
            self._emit(PillowOccupancy(self.name, self.kind, empty=state.empty))

    def _on_lost(self, error: LinkLostError) -> None:
        self._requests.fail_all(error)
        # Rule 5: the pillow stops by itself within a second of a dropped link.
        self._output = PillowOutput.off()
        self._stop_due = False
        # The lease task ends with the link (its task is cancelled too): let it see that now.
        self._wake.set()

    # -- lease ----------------------------------------------------------------

    async def _lease_watch(self) -> None:
        """The pillow has no watchdog of its own: stop it when the lease ends.

        The task wakes at the lease's expiry while something is on, and when
        apply() or the lease reports a change; with every output at zero it
        sleeps until woken. A lease that ran out unrevoked is a gap in service:
        the driver forgot the output and STOP is due at once.
        """
        loop = asyncio.get_running_loop()
        while self._connected:
            # Armed before looking: a change from here on wakes the sleep below at once.
            self._wake.arm()
            deadline: float | None = None
            self.check_lease()
            if self._stop_due or not self._output.is_zero:
                if self.lease_valid and not self._stop_due:
                    # renew_lease only moves the expiry later: waking at the old one and
                    # looking again is right.
                    deadline = self._lease_until
                else:
                    logger.info("%s: lease ended, STOP", self.name)
                    try:
                        await self._stop_pillow()
                    except LinkLostError:
                        return
                    except MassagedError as exc:
                        logger.warning("%s: STOP at lease end failed: %s", self.name, exc)
                        self._stop_due = True  # the output reads zero already: try again
                        deadline = loop.time() + RETRY_DELAY
                    else:
                        continue
            await self._wake.sleep(deadline)
