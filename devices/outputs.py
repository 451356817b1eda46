"""What a driver is asked to put out: one immutable value per device kind.

Values are in device units (VB1 levels 0..255, SP1 speed 0..3, EB1 strength
0..200); the safety layer above the drivers decides what may be asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.capabilities import DeviceKind, KneadDirection


@dataclass(frozen=True, slots=True)
class BeltOutput:
    """Levels of motors 1..M and the heater of a VB1 belt."""

    levels: tuple[int, ...]
    heat: bool = False

    kind = DeviceKind.BELT

    @property
    def is_zero(self) -> bool:
        """True when nothing is on."""
        return not self.heat and not any(self.levels)

    @classmethod
    def off(cls, motors: int) -> BeltOutput:
        """Every motor at 0, heater off."""
        return cls(levels=(0,) * motors, heat=False)


@dataclass(frozen=True, slots=True)
class PillowOutput:
    """Kneading speed (0 off, 1..3), direction and heater of an SP1 pillow."""

    speed: int = 0
    direction: KneadDirection = KneadDirection.CLOCKWISE
    heat: bool = False

    kind = DeviceKind.PILLOW

    @property
    def is_zero(self) -> bool:
        """True when nothing is on."""
        return self.speed == 0 and not self.heat

    @classmethod
    def off(cls) -> PillowOutput:
        """Nodes still, heater off."""
        return cls()


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


@dataclass(frozen=True, slots=True)
class ButterflyOutput:
    """Both channels of an EB1 butterfly: A on the left, B on the right."""

    a: EmsChannelOutput = EmsChannelOutput()
    b: EmsChannelOutput = EmsChannelOutput()

    kind = DeviceKind.BUTTERFLY

    @property
    def is_zero(self) -> bool:
        """True when neither channel puts out anything."""
        return self.a.is_zero and self.b.is_zero

    @classmethod
    def off(cls) -> ButterflyOutput:
        """Both strengths 0, both channels silent."""
        return cls()


Output = BeltOutput | PillowOutput | ButterflyOutput
