"""What a driver is asked to put out: one immutable value per device kind.

Values are in device units (VB1 levels 0..vb1.MAX_LEVEL, SP1 speed
0..sp1.MAX_SPEED, EB1 strength 0..eb1.MAX_STRENGTH); the safety layer above
the drivers decides what may be asked. Each output also answers what callers
would otherwise branch on its type for: its all-off form (:meth:`off_like`,
:meth:`off_for`), its channels with their maxima (:meth:`channels`, for plots,
the live view and MQTT), what the user feels (:meth:`felt`), the heater, and
``scaled``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple

from devices.capabilities import Capabilities, DeviceKind, KneadDirection
from devices.protocols import eb1, sp1, vb1

PILLOW_KEEP_FACTOR = 0.3
"""A running pillow keeps speed 1 while a scale factor is at least this; below it, it stops.

floor(1 × 0.7) would stop the pillow at the first "gentler" press; with this
threshold speed 1 survives three presses (0.343) and stops at the fourth.
"""


class Channel(NamedTuple):
    """One numeric channel of an output, named as in the recording format."""

    name: str
    value: int
    maximum: int


def _scale_int(value: int, factor: float) -> int:
    # The epsilon undoes float noise (200 × 0.7² is 97.99999…), never more than that.
    return max(0, math.floor(value * factor + 1e-9))


def _motor_names(count: int) -> tuple[str, ...]:
    """motor1..motor<count>, as the recording names a belt's motors."""
    return tuple(f"motor{i}" for i in range(1, count + 1))


_MOTOR_NAMES = _motor_names(16)
"""The names of the motors of any belt up to 16 motors (a VB1 has 4 or 6)."""


def _clip01(value: float) -> float:
    # NaN would slip through min/max and poison every comparison: treat it as 0.
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


@dataclass(frozen=True, slots=True)
class BeltOutput:
    """Levels of motors 1..M and the heater of a VB1 belt."""

    levels: tuple[int, ...]
    heat: bool = False

    kind: ClassVar[DeviceKind] = DeviceKind.BELT
    maximum: ClassVar[int] = vb1.MAX_LEVEL
    """The unit maximum of a motor level."""
    CHANNEL_MAXIMA: ClassVar[dict[str, int]] = {"motor": vb1.MAX_LEVEL, "heater": 1}

    @property
    def is_zero(self) -> bool:
        """True when nothing is on."""
        return not self.heat and not any(self.levels)

    @property
    def non_negative(self) -> bool:
        """True when no level is below zero."""
        return min(self.levels, default=0) >= 0

    @classmethod
    def off(cls, motors: int) -> BeltOutput:
        """Every motor at 0, heater off."""
        return cls(levels=(0,) * motors, heat=False)

    @classmethod
    def off_for(cls, capabilities: Capabilities) -> BeltOutput:
        """All off, one level per motor the capabilities list."""
        return cls.off(len(capabilities.motors))

    def off_like(self) -> BeltOutput:
        """All off, with as many motors as this output."""
        return self.off(len(self.levels))

    def scaled(self, factor: float) -> BeltOutput:
        """Every level × factor (clipped to 0..1), rounded down; the heater is untouched."""
        f = _clip01(factor)
        return replace(self, levels=tuple(_scale_int(level, f) for level in self.levels))

    def without_heat(self) -> BeltOutput:
        """The same with the heater off."""
        return replace(self, heat=False) if self.heat else self

    def channels(self) -> tuple[Channel, ...]:
        """motor1..motorM, then the heater."""
        motors = (Channel(f"motor{i}", v, vb1.MAX_LEVEL) for i, v in enumerate(self.levels, 1))
        return (*motors, Channel("heater", int(self.heat), 1))

    def felt(self) -> tuple[tuple[str, float], ...]:
        """What each motor puts out (its level), named as the simulator records it."""
        levels = self.levels
        # Called for every cue of every plan read back (programs/movements.py): the names
        # are made once, not formatted per call.
        names = _MOTOR_NAMES if len(levels) <= len(_MOTOR_NAMES) else _motor_names(len(levels))
        return tuple(zip(names, map(float, levels), strict=False))

    def peak(self) -> int:
        """The highest level asked for."""
        return max(self.levels, default=0)


@dataclass(frozen=True, slots=True)
class PillowOutput:
    """Kneading speed (0 off, 1..3), direction and heater of an SP1 pillow."""

    speed: int = 0
    direction: KneadDirection = KneadDirection.CLOCKWISE
    heat: bool = False

    kind: ClassVar[DeviceKind] = DeviceKind.PILLOW
    maximum: ClassVar[int] = sp1.MAX_SPEED
    """The unit maximum of the kneading speed."""
    CHANNEL_MAXIMA: ClassVar[dict[str, int]] = {"speed": sp1.MAX_SPEED, "heater": 1}

    @property
    def is_zero(self) -> bool:
        """True when nothing is on."""
        return self.speed == 0 and not self.heat

    @property
    def non_negative(self) -> bool:
        """True when the speed is not below zero."""
        return self.speed >= 0

    @classmethod
    def off(cls) -> PillowOutput:
        """Nodes still, heater off."""
        return cls()

    @classmethod
    def off_for(cls, capabilities: Capabilities) -> PillowOutput:
        """Nodes still, heater off (every pillow alike)."""
        return cls()

    def off_like(self) -> PillowOutput:
        """Nodes still, heater off."""
        return self.off()

    def scaled(self, factor: float) -> PillowOutput:
        """Speed × factor rounded down; a running pillow keeps 1 while factor ≥ the keep factor."""
        f = _clip01(factor)
        speed = _scale_int(self.speed, f)
        if self.speed > 0 and speed == 0 and f >= PILLOW_KEEP_FACTOR:
            speed = 1
        return replace(self, speed=speed)

    def without_heat(self) -> PillowOutput:
        """The same with the heater off."""
        return replace(self, heat=False) if self.heat else self

    def channels(self) -> tuple[Channel, ...]:
        """The speed, then the heater (the direction is a setting, not an amount)."""
        return (Channel("speed", self.speed, sp1.MAX_SPEED), Channel("heater", int(self.heat), 1))

    def felt(self) -> tuple[tuple[str, float], ...]:
        """The kneading speed, named as the simulator records it."""
        return (("speed", float(self.speed)),)

    def peak(self) -> int:
        """The speed asked for."""
        return self.speed


@dataclass(frozen=True, slots=True)
class EmsChannelOutput:
    """One EB1 channel: strength 0..200, pulse frequency 10..240 (protocol units), intensity 0..100.

    Intensity 0 is a relaxed muscle: the contraction cycles of a program are
    shaped by the waveform intensity, which may change every 25 ms, while the
    strength changes slowly under the ramp limit.
    """

    strength: int = 0
    frequency: int = 10
    intensity: int = 0

    @property
    def is_zero(self) -> bool:
        """True when this channel puts out nothing."""
        return self.strength == 0 or self.intensity == 0

    @property
    def felt(self) -> float:
        """What the user feels: strength × waveform intensity / 100 (the recording's output_x)."""
        return self.strength * self.intensity / eb1.INTENSITY_MAX


@dataclass(frozen=True, slots=True)
class ButterflyOutput:
    """Both channels of an EB1 butterfly: A on the left, B on the right."""

    a: EmsChannelOutput = EmsChannelOutput()
    b: EmsChannelOutput = EmsChannelOutput()

    kind: ClassVar[DeviceKind] = DeviceKind.BUTTERFLY
    maximum: ClassVar[int] = eb1.MAX_STRENGTH
    """The unit maximum of a channel's strength."""
    CHANNEL_MAXIMA: ClassVar[dict[str, int]] = {
        "strength_a": eb1.MAX_STRENGTH,
        "strength_b": eb1.MAX_STRENGTH,
        "intensity_a": eb1.INTENSITY_MAX,
        "intensity_b": eb1.INTENSITY_MAX,
        "output_a": eb1.MAX_STRENGTH,
        "output_b": eb1.MAX_STRENGTH,
    }

    heat: ClassVar[bool] = False
    """An EMS pad has no heater."""

    @property
    def is_zero(self) -> bool:
        """True when neither channel puts out anything."""
        return self.a.is_zero and self.b.is_zero

    @property
    def non_negative(self) -> bool:
        """True when neither strength is below zero."""
        return self.a.strength >= 0 and self.b.strength >= 0

    @classmethod
    def off(cls) -> ButterflyOutput:
        """Both strengths 0, both channels silent."""
        return cls()

    @classmethod
    def off_for(cls, capabilities: Capabilities) -> ButterflyOutput:
        """Both strengths 0, both channels silent (every butterfly alike)."""
        return cls()

    def off_like(self) -> ButterflyOutput:
        """Both strengths 0, both channels silent."""
        return self.off()

    def scaled(self, factor: float) -> ButterflyOutput:
        """Each strength × factor (clipped to 0..1), rounded down; frequency and waveform kept.

        They shape the pulses, not the dose.
        """
        f = _clip01(factor)
        return ButterflyOutput(
            a=replace(self.a, strength=_scale_int(self.a.strength, f)),
            b=replace(self.b, strength=_scale_int(self.b.strength, f)),
        )

    def without_heat(self) -> ButterflyOutput:
        """Itself: there is no heater."""
        return self

    def channels(self) -> tuple[Channel, ...]:
        """Both strengths, then both waveform intensities."""
        return (
            Channel("strength_a", self.a.strength, eb1.MAX_STRENGTH),
            Channel("strength_b", self.b.strength, eb1.MAX_STRENGTH),
            Channel("intensity_a", self.a.intensity, eb1.INTENSITY_MAX),
            Channel("intensity_b", self.b.intensity, eb1.INTENSITY_MAX),
        )

    def felt(self) -> tuple[tuple[str, float], ...]:
        """What each channel puts out (strength × intensity / 100), as output_a and output_b."""
        return (("output_a", self.a.felt), ("output_b", self.b.felt))

    def peak(self) -> int:
        """The higher of the two strengths."""
        return max(self.a.strength, self.b.strength)


Output = BeltOutput | PillowOutput | ButterflyOutput
OUTPUT_TYPES: tuple[type[Output], ...] = (BeltOutput, PillowOutput, ButterflyOutput)
"""Every output class (the kinds table, devices.kinds, says which kind uses which)."""

_INDEX = re.compile(r"\d+$")


def record(output: Output) -> dict[str, int | str]:
    """An output as channel -> value, named as the recording format names them."""
    fields: dict[str, int | str] = {c.name: c.value for c in output.channels()}
    if isinstance(output, PillowOutput):
        # The one non-numeric field: a setting the recording keeps beside the amounts.
        fields = {"speed": output.speed, "direction": output.direction.value, **fields}
    return fields


def channel_maximum(name: str) -> int | None:
    """The maximum of a recorded channel by name (motor3, speed, strength_a…); None if unknown."""
    family = _INDEX.sub("", name)
    for output_type in OUTPUT_TYPES:
        if family in output_type.CHANNEL_MAXIMA:
            return output_type.CHANNEL_MAXIMA[family]
    return None
