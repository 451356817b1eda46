"""Typed events a device reports on its own, outside any command."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.capabilities import DeviceKind


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Base of every device event: which device, and its kind."""

    device: str
    kind: DeviceKind


@dataclass(frozen=True, slots=True)
class StopButtonPressed(DeviceEvent):
    """The user pressed the device's own stop button (VB1 EVENT 4): do not restart it."""


@dataclass(frozen=True, slots=True)
class Overheated(DeviceEvent):
    """The device stopped or cut its heater because it is too hot."""

    temperature: int | None = None


@dataclass(frozen=True, slots=True)
class AutoOff(DeviceEvent):
    """The pillow's 15-minute auto-off fired (SP1 rule 3)."""


@dataclass(frozen=True, slots=True)
class WatchdogTripped(DeviceEvent):
    """The device's watchdog stopped it because the host was silent (VB1 EVENT 1)."""


@dataclass(frozen=True, slots=True)
class LowBattery(DeviceEvent):
    """The battery is low (VB1 EVENT 3, or a low battery reading)."""

    percent: int | None = None


@dataclass(frozen=True, slots=True)
class PillowOccupancy(DeviceEvent):
    """The pillow's pressure switch changed: empty is True when nobody rests on it."""

    empty: bool = False


@dataclass(frozen=True, slots=True)
class EmsWheelChanged(DeviceEvent):
    """The user turned the butterfly's own wheel (B1 with sequence 0): the user's word."""

    strength_a: int = 0
    strength_b: int = 0


@dataclass(frozen=True, slots=True)
class DeviceFault(DeviceEvent):
    """The device did what the host did not ask (a Coyote V2 holding another strength).

    The driver has already made it safe (lowered the channel, never raises past the
    lower of the two values this session); the owner notes it, and the safety layer
    holds each ceiling as it holds the EB1 wheel's.
    """

    reason: str = ""
    ceiling_a: int | None = None
    """Channel A's ceiling for the rest of the session (strength 0..200); None: none."""
    ceiling_b: int | None = None
    """Channel B's ceiling for the rest of the session; None: none."""


@dataclass(frozen=True, slots=True)
class LinkLost(DeviceEvent):
    """The link dropped or the device stopped answering after every retry."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ServiceGap(DeviceEvent):
    """The owner's lease lapsed unrevoked (a stall, a blocked loop, a suspended daemon).

    The driver has forgotten what it held, zeroes the device at once and sends no frame
    built before the gap: the owner must bring the device back through a fresh ramp
    from zero, as after a reconnect.
    """

    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A snapshot of a device: battery, temperature, flags and what it puts out."""

    device: str
    kind: DeviceKind
    battery: int | None
    """Percent, or None on mains power."""
    temperature: int | None
    outputs: dict[str, int] = field(default_factory=dict)
    """Channel name -> current value, named as in the recording format."""
    flags: frozenset[str] = frozenset()
