"""Techniques on the VB1 belt: patterns of motor levels (0..255) by place and side."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Final

from devices.capabilities import Capabilities, Motor, Place, Side
from devices.outputs import BeltOutput
from programs.model import REPETITION_S, Technique
from programs.render_common import Frame, StepContext, grid, side_matches

logger = logging.getLogger(__name__)

Shape = dict[int, float]
"""Motor index -> fraction 0..1 of the step's intensity."""

Pattern = tuple[float, Callable[[int], Sequence[tuple[float, Shape]]]]
"""A period in seconds and the keyframes of cycle k."""

FRAME_S: Final = 0.25
"""Keyframe spacing of the moving patterns; the driver refreshes the belt every 250 ms anyway."""

_HEAD_TO_BACK: Final = (Place.NECK, Place.SHOULDER, Place.UPPER_BACK)

_RING: Final = (
    (Place.NECK, Side.LEFT),
    (Place.NECK, Side.RIGHT),
    (Place.SHOULDER, Side.RIGHT),
    (Place.UPPER_BACK, Side.RIGHT),
    (Place.UPPER_BACK, Side.LEFT),
    (Place.SHOULDER, Side.LEFT),
)
"""The motors in order around the collar zone, for circular movement."""


def zone_motors(caps: Capabilities, ctx: StepContext) -> list[Motor]:
    """The belt's motors in the step's zone and on its side."""
    return [m for m in caps.motors if m.place in ctx.places and side_matches(m.side, ctx.side)]


def _stroking(motors: Sequence[Motor]) -> Pattern:
    """A wave from the neck down: each place swells and fades, the next one overlapping."""
    period = REPETITION_S[Technique.STROKING]
    places = [p for p in _HEAD_TO_BACK if any(m.place == p for m in motors)]
    width = 0.25 * period
    centres = {p: width + k * 0.2 * period for k, p in enumerate(places)}
    frames: list[tuple[float, Shape]] = []
    for t in grid(period, FRAME_S):
        shape = {m.index: max(0.0, 1.0 - abs(t - centres[m.place]) / width) for m in motors}
        frames.append((t, shape))
    return period, lambda k: frames


def _alternating_sides(motors: Sequence[Motor]) -> list[list[Motor]]:
    """The motors grouped left, right (only the sides present)."""
    groups = [[m for m in motors if m.side == side] for side in (Side.LEFT, Side.RIGHT)]
    both = [m for m in motors if m.side == Side.BOTH]
    return [g + both for g in groups if g] or [list(motors)]


def _rubbing(motors: Sequence[Motor]) -> Pattern:
    """Fast pulses alternating left and right; on one side, pulses with gaps."""
    groups = _alternating_sides(motors)
    slots = groups if len(groups) > 1 else [groups[0], []]
    frames = [
        (t, {m.index: 1.0 for m in slots[i % len(slots)]})
        for i, t in enumerate(grid(REPETITION_S[Technique.RUBBING], FRAME_S))
    ]
    return REPETITION_S[Technique.RUBBING], lambda k: frames


def _pressing(motors: Sequence[Motor]) -> Pattern:
    """A steady level rising through each press, a short hold, then release."""
    period = REPETITION_S[Technique.PRESSING]
    rise = period - 1.5
    frames: list[tuple[float, Shape]] = []
    for t in grid(period, 0.5):
        if t <= rise:
            level = 0.3 + 0.7 * t / rise
        elif t < period - 0.5:
            level = 1.0
        else:
            level = 0.0
        frames.append((t, {m.index: level for m in motors}))
    return period, lambda k: frames


def _kneading(motors: Sequence[Motor]) -> Pattern:
    """Slow swells alternating between the sides, never quite letting go."""
    period = REPETITION_S[Technique.KNEADING]
    groups = _alternating_sides(motors)
    frames: list[tuple[float, Shape]] = []
    for t in grid(period, FRAME_S):
        wave = math.sin(2 * math.pi * t / (period / 2))
        shape: Shape = {}
        for g, group in enumerate(groups):
            swell = 0.5 + 0.5 * (wave if g == 0 else -wave)
            shape.update({m.index: 0.3 + 0.7 * swell for m in group})
        frames.append((t, shape))
    return period, lambda k: frames


def _circular(motors: Sequence[Motor]) -> Pattern:
    """A light peak rotating around the zone's motors, one turn every 2 s."""
    period = REPETITION_S[Technique.CIRCULAR]
    turn = 2.0
    ring = sorted(motors, key=lambda m: _RING.index((m.place, m.side)))
    frames: list[tuple[float, Shape]] = []
    for t in grid(period, FRAME_S):
        theta = 2 * math.pi * t / turn
        if len(ring) == 1:
            shape = {ring[0].index: 0.4 + 0.6 * (0.5 + 0.5 * math.cos(theta))}
        else:
            shape = {
                m.index: 0.25 + 0.75 * max(0.0, math.cos(theta - 2 * math.pi * j / len(ring)))
                for j, m in enumerate(ring)
            }
        frames.append((t, shape))
    return period, lambda k: frames


def _vibration(motors: Sequence[Motor]) -> Pattern:
    """Every motor of the zone steady; refreshed so that a ramp can move."""
    shape = {m.index: 1.0 for m in motors}
    return 0.5, lambda k: [(0.0, shape)]


def _tapping(motors: Sequence[Motor]) -> Pattern:
    """Short sharp pulses: 150 ms on, 350 ms off."""
    on = {m.index: 1.0 for m in motors}
    return 0.5, lambda k: [(0.0, on), (0.15, {})]


PATTERNS: Final[dict[Technique, Callable[[Sequence[Motor]], Pattern]]] = {
    Technique.STROKING: _stroking,
    Technique.RUBBING: _rubbing,
    Technique.PRESSING: _pressing,
    Technique.KNEADING: _kneading,
    Technique.CIRCULAR: _circular,
    Technique.VIBRATION: _vibration,
    Technique.TAPPING: _tapping,
}


def belt_off(caps: Capabilities) -> BeltOutput:
    """Every motor at 0, heater off."""
    return BeltOutput.off(len(caps.motors))


def belt_frames(ctx: StepContext) -> list[Frame]:
    """The belt's outputs for one step; empty when the belt does not play it."""
    caps = ctx.caps
    make = PATTERNS.get(ctx.technique)
    motors = zone_motors(caps, ctx)
    if make is None or not motors:
        return []
    period, keyframes = make(motors)
    slots = {m.index: i for i, m in enumerate(caps.motors)}
    frames: list[Frame] = []
    for t, shape in ctx.repeat(period, keyframes):
        intensity = ctx.intensity(t)
        levels = [0] * len(caps.motors)
        for m in motors:
            fraction = min(1.0, max(0.0, shape.get(m.index, 0.0) * intensity))
            levels[slots[m.index]] = round(fraction * m.max_level)
        frames.append((t, BeltOutput(levels=tuple(levels), heat=ctx.heat)))
    return frames
