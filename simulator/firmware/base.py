"""What every simulated firmware shares: an outbox, time, and a recorder hook.

Firmware models are sans-IO. An endpoint (a pseudo-terminal, the BLE radio)
hands them received bytes with the current monotonic time, calls ``tick`` at
``next_deadline()`` at the latest, and sends what they put in the outbox.
Protocol timers (watchdogs, waveform expiry) run on real seconds; physical
processes (heating, battery drain, the pillow's auto-off) run ``speed`` times
faster, so that ``--speed N`` compresses a session without breaking the wire.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable

from devices.capabilities import DeviceKind
from simulator.firmware.physics import PHYSICS_STEP, SETTLED_STEP
from simulator.recording import Recorder

logger = logging.getLogger(__name__)

Outgoing = tuple[str | None, bytes]
"""(target, data): target is a characteristic UUID on BLE, None on serial."""


class Firmware(abc.ABC):
    """A simulated device's firmware."""

    kind: DeviceKind
    ble_name: str | None = None
    """Advertised local name on BLE (None for a serial-only device)."""
    service_uuids: tuple[str, ...] = ()
    """Advertised service UUIDs on BLE."""
    advertises_services: bool = True
    """False for a unit that advertises its name only (the Coyotes): a scan filtered by
    service finds nothing, and the radio puts no service UUID in its advertisement."""
    ble_model: str | None = None
    """The BLE model when a kind has several (its GATT table); None: the kind's own."""

    def __init__(
        self,
        device_id: str,
        *,
        recorder: Recorder | None = None,
        speed: float = 1.0,
        now: float = 0.0,
    ) -> None:
        self.device_id = device_id
        self.recorder = recorder
        self.speed = speed
        self.outbox: list[Outgoing] = []
        self._outputs: dict[str, int | str] = {}
        self._last_physics = now
        self.on_output: Callable[[str, int | str], None] | None = None
        """Optional hook called on every physical output change (besides the recorder)."""

    # -- wire -----------------------------------------------------------------

    @abc.abstractmethod
    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Bytes arrived from the host (source: the characteristic written, on BLE)."""

    @abc.abstractmethod
    def tick(self, now: float) -> None:
        """Advance timers and physics to now."""

    @abc.abstractmethod
    def next_deadline(self, now: float) -> float:
        """The latest monotonic time by which tick() must be called again."""

    def take_outgoing(self) -> list[Outgoing]:
        """Everything the device sent since the last call."""
        out, self.outbox = self.outbox, []
        return out

    def link_up(self, now: float) -> None:  # noqa: B027 - optional hook
        """A central connected (BLE) or the port was opened."""

    def link_down(self, now: float) -> None:  # noqa: B027 - optional hook
        """The link dropped."""

    def read_attribute(self, uuid: str, now: float) -> bytes:
        """A GATT read of a characteristic (BLE only)."""
        raise KeyError(uuid)

    # -- physical outputs -------------------------------------------------------

    @property
    def outputs(self) -> dict[str, int | str]:
        """Every physical channel and its current value (recording channel names)."""
        return dict(self._outputs)

    @property
    def is_quiet(self) -> bool:
        """True when nothing moves, heats or stimulates."""
        # Only numeric channels move anything; "direction" is a setting, not an output.
        return all(v == 0 for v in self._outputs.values() if isinstance(v, int))

    @property
    def settled(self) -> bool:
        """True when physics can change nothing that shows until something pokes the device.

        Here: nothing on (so no battery drains); a model with a temperature adds that it is
        near ambient and not in an overheat episode.
        """
        return self.is_quiet

    def _physics_deadline(self, now: float) -> float:
        """When physics must run again: SETTLED_STEP from now once settled, else as late as
        no threshold can be crossed (_quiet_for), between PHYSICS_STEP and SETTLED_STEP.

        Whatever can unsettle a device or bring a threshold nearer comes with a wake-up of
        its endpoint: a frame from the host, or a fault or poke (followed by the
        endpoint's wake()), and the deadline is worked out again then.
        """
        if self.settled:
            return now + SETTLED_STEP
        quiet = self._quiet_for() / self.speed
        return now + min(SETTLED_STEP, max(PHYSICS_STEP, quiet))

    def _quiet_for(self) -> float:
        """Simulated seconds within which physics, left to itself, can change nothing that
        shows (no threshold crossed, no reported value changed): a lower bound; 0 for a
        model that does not tell, whose physics then runs every PHYSICS_STEP."""
        return 0.0

    def _set_output(self, channel: str, value: int | str, now: float) -> None:
        if self._outputs.get(channel) == value:
            return
        self._outputs[channel] = value
        if self.recorder is not None:
            self.recorder.record(now, self.device_id, self.kind.value, channel, value)
        if self.on_output is not None:
            self.on_output(channel, value)

    def _physics_dt(self, now: float) -> float:
        """Simulated seconds of physics since the last call (scaled by speed)."""
        dt = max(0.0, now - self._last_physics) * self.speed
        self._last_physics = now
        return dt
