"""What every device renderer shares: the step being rendered, its sides, and its movements."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from devices.capabilities import Capabilities, Place, Side
from devices.outputs import Output
from programs.model import REPETITION_S, ZONE_PLACES, Step, StepSide, Technique

logger = logging.getLogger(__name__)

EPS: Final = 1e-6
"""Seconds below which two times are the same (float sums of step durations)."""

REST_S: Final = 3.25
"""Seconds at rest that end each movement (at the technique's nominal repetition time).

Every output of the zone is at zero for this long after each movement, so
movements read as separate ones (programs/movements.py) and each one is
followed by a rest longer than the vibration rule's 3 s (programs/bursts.py),
with a quarter of a second to spare for the runner's timing.
A timed step's movements are stretched to fill it, and the rest with them.
"""

T = TypeVar("T")

Frame = tuple[float, Output]
"""An output and the session time (seconds) it starts at."""


def _healthy_and_painful(painful_side: Side | None) -> tuple[Side, Side]:
    """The healthy and the painful side; with none known, left then right."""
    painful = painful_side if painful_side in (Side.LEFT, Side.RIGHT) else Side.RIGHT
    healthy = Side.LEFT if painful is Side.RIGHT else Side.RIGHT
    return healthy, painful


def resolve_side(side: StepSide, painful_side: Side | None) -> Side:
    """A step's body side, with healthy/painful resolved from the profile's painful side.

    With no painful side known (or pain on both sides) "healthy" is the left and
    "painful" the right, so a program still runs left then right; with pain on
    both sides, both play. A transition (to_painful) plays on both sides.
    """
    if side is StepSide.TO_PAINFUL:
        return Side.BOTH
    if side is StepSide.HEALTHY or side is StepSide.PAINFUL:
        if painful_side is Side.BOTH:
            return Side.BOTH
        healthy, painful = _healthy_and_painful(painful_side)
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
    painful_side: Side | None = None

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

    @property
    def one_sided(self) -> bool:
        """True when the step works one side more than the other (one side, or a transition)."""
        if self.step.side is StepSide.TO_PAINFUL:
            return self.painful_side is not Side.BOTH
        return self.side is not Side.BOTH

    @property
    def side_order(self) -> tuple[Side, Side]:
        """The two sides in the order a step on both sides works them: the healthy one first."""
        return _healthy_and_painful(self.painful_side)

    def fraction(self, t: float) -> float:
        """How far through the step session time t is, 0..1."""
        length = self.end - self.start
        return min(1.0, max(0.0, (t - self.start) / length)) if length > 0 else 0.0

    def intensity(self, t: float) -> float:
        """The step's nominal intensity at session time t."""
        return self.step.intensity_at(self.fraction(t))

    def side_weight(self, output_side: Side, t: float) -> float:
        """How much an output on output_side plays at time t: 1, 0, or part of a transition.

        A transition of n movements fades the healthy side out and the painful
        side in, movement by movement: the k-th (from 0) plays the painful side
        at (k + 1) / (n + 1) and the healthy side at (n - k) / (n + 1), so every
        movement is felt on both sides and the weight moves across in equal
        steps: one smooth move to the painful side.
        """
        if not side_matches(output_side, self.side):
            return 0.0
        if self.step.side is not StepSide.TO_PAINFUL or output_side is Side.BOTH:
            return 1.0
        if self.painful_side is Side.BOTH:
            return 1.0
        healthy, _ = _healthy_and_painful(self.painful_side)
        n = max(1, self.step.movement_count)
        k = min(n - 1, int(self.fraction(t) * n + EPS))
        return (n - k) / (n + 1) if output_side is healthy else (k + 1) / (n + 1)

    def repeat(
        self, period: float, keyframes: Callable[[int], Sequence[tuple[float, T]]]
    ) -> Iterator[tuple[float, T]]:
        """Session times and values of a pattern repeated every period, cut at the step's end.

        keyframes(k) gives the (offset, value) pairs of the k-th cycle (the
        pillow's segments; the belt and the butterfly play movements instead).
        """
        k = 0
        while (base := self.start + k * period) < self.end - EPS:
            for offset, value in keyframes(k):
                t = base + offset
                if t >= self.end - EPS:
                    return
                yield t, value
            k += 1

    def movements(
        self, pattern: Callable[[float], Sequence[tuple[float, T]]]
    ) -> list[tuple[float, T]]:
        """Session times and values of the step's movements, one after the other.

        The step holds exactly ``step.movement_count`` movements, each in a slot
        of the step's length / count; pattern(slot) gives one movement's
        (offset, value) pairs within its slot, its last value the rest.
        """
        count = self.step.movement_count
        if count <= 0 or self.end - self.start <= EPS:
            return []
        slot = (self.end - self.start) / count
        out: list[tuple[float, T]] = []
        frames = pattern(slot)
        for k in range(count):
            base = self.start + k * slot
            out.extend((base + offset, value) for offset, value in frames if offset < slot - EPS)
        return out

    def active_s(self, slot: float) -> float:
        """Seconds of a slot the movement takes; the rest of the slot is the rest at zero.

        Every movement is followed by REST_S at the technique's nominal time
        (stretched or shrunk with the slot), so every step ends at zero; a
        timed vibration is one burst followed by REST_S (half a short step).
        """
        if self.technique is Technique.VIBRATION and self.step.repetitions is None:
            return slot - min(REST_S, slot / 2)
        nominal = REPETITION_S[self.technique]
        return slot * (1.0 - REST_S / nominal)


def side_matches(output_side: Side, wanted: Side) -> bool:
    """Whether an output on output_side should play a step on the wanted side."""
    return wanted is Side.BOTH or output_side is Side.BOTH or output_side is wanted
