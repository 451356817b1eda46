"""What every device renderer shares: the step being rendered and a repeating-pattern clock."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from devices.capabilities import Capabilities, Place, Side
from devices.outputs import Output
from programs.model import ZONE_PLACES, Step, StepSide, Technique

logger = logging.getLogger(__name__)

EPS: Final = 1e-6
"""Seconds below which two times are the same (float sums of step durations)."""

T = TypeVar("T")

Frame = tuple[float, Output]
"""An output and the session time (seconds) it starts at."""


def resolve_side(side: StepSide, painful_side: Side | None) -> Side:
    """A step's body side, with healthy/painful resolved from the profile's painful side.

    With no painful side known (or pain on both sides) "healthy" is the left and
    "painful" the right, so a program still runs left then right.
    """
    if side is StepSide.HEALTHY or side is StepSide.PAINFUL:
        if painful_side is Side.BOTH:
            return Side.BOTH
        painful = painful_side if painful_side is not None else Side.RIGHT
        healthy = Side.LEFT if painful is Side.RIGHT else Side.RIGHT
        return painful if side is StepSide.PAINFUL else healthy
    return Side(side.value)


@dataclass(frozen=True, slots=True)
class StepContext:
    """One program step placed in the session and aimed at one device."""

    step: Step
    index: int
    side: Side
    start: float
    end: float
    caps: Capabilities

    @property
    def technique(self) -> Technique:
        """The step's technique."""
        return self.step.technique

    @property
    def places(self) -> tuple[Place, ...]:
        """The device places the step's zone covers, head first."""
        return ZONE_PLACES[self.step.zone]

    @property
    def for_this_kind(self) -> bool:
        """False when the step's devices list leaves this kind of device out."""
        devices = self.step.devices
        return devices is None or self.caps.kind in devices

    @property
    def heat(self) -> bool:
        """Whether to warm: the step asks and the device has a heater."""
        return self.step.heat and self.caps.heater

    def intensity(self, t: float) -> float:
        """The step's nominal intensity at session time t."""
        length = self.end - self.start
        return self.step.intensity_at((t - self.start) / length if length > 0 else 0.0)

    def repeat(
        self, period: float, keyframes: Callable[[int], Sequence[tuple[float, T]]]
    ) -> Iterator[tuple[float, T]]:
        """Session times and values of a pattern repeated every period, cut at the step's end.

        keyframes(k) gives the (offset, value) pairs of the k-th cycle, so a
        pattern can alternate from one cycle to the next.
        """
        k = 0
        while (base := self.start + k * period) < self.end - EPS:
            for offset, value in keyframes(k):
                t = base + offset
                if t >= self.end - EPS:
                    return
                yield t, value
            k += 1


def side_matches(output_side: Side, wanted: Side) -> bool:
    """Whether an output on output_side should play a step on the wanted side."""
    return wanted is Side.BOTH or output_side is Side.BOTH or output_side is wanted


def grid(period: float, step_s: float) -> list[float]:
    """Offsets 0, step_s, 2·step_s, … below period."""
    count = max(1, round(period / step_s))
    return [round(i * step_s, 6) for i in range(count) if i * step_s < period - EPS]
