"""Techniques on the VB1 belt: one movement per repetition, by place and side (levels 0..255).

Every repetition is one movement on every motor it plays: a rise from zero,
a peak and a fall back to zero, then the whole zone rests (REST_S at the
nominal repetition time; programs/render_common.py). How the movement
travels depends on the technique:

- stroking: a wave from the neck down, place by place, overlapping;
- rubbing: a firm push on the healthy (or left) side, then the other side;
- kneading: a slow swell on one side, then the other;
- circular: a peak that goes once around the zone's motors;
- pressing: all motors together, rising from 30 % to full, a short hold;
- tapping: one series of light taps (150 ms on, 350 ms off);
- vibration: every motor steady, one burst (a timed step is one burst that
  fills it; each repetition is a short burst and a rest).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Final

from devices.capabilities import Capabilities, Motor, Place, Side
from devices.outputs import BeltOutput
from programs.model import StepSide, Technique
from programs.render_common import EPS, Frame, StepContext, side_matches

logger = logging.getLogger(__name__)

Shape = dict[int, float]
"""Motor index -> fraction 0..1 of the step's intensity."""

Movement = list[tuple[float, Shape]]
"""One movement: (offset in its slot, shape), ending with the rest (every motor 0)."""

FRAME_S: Final = 0.25
"""Keyframe spacing of the moving patterns; the driver refreshes the belt every 250 ms anyway."""

TAP_ON_S: Final = 0.15
TAP_PERIOD_S: Final = 0.5
"""A tap: 150 ms on, 350 ms off; the taps of one series read as one movement."""

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


def _rest(motors: Sequence[Motor]) -> Shape:
    return {m.index: 0.0 for m in motors}


def _triangle(x: float) -> float:
    return x


def _plateau(x: float) -> float:
    """A firm push: up quickly, held, down quickly."""
    return min(1.0, 2.0 * x)


def _swell(x: float) -> float:
    """A smooth swell (kneading)."""
    return math.sin(math.pi * x / 2) ** 2


def wave(
    groups: Sequence[Sequence[Motor]], active: float, profile: Callable[[float], float]
) -> Movement:
    """One pass through the groups in order, each rising and falling once, neighbours overlapping.

    Group j plays in [j·w, (j+2)·w] with w = active / (groups + 1), peaking
    in the middle, so the movement starts and ends at zero inside the slot.
    """
    motors = [m for g in groups for m in g]
    w = active / (len(groups) + 1)
    frame = min(FRAME_S, w / 3)
    frames: Movement = []
    count = max(1, math.ceil(active / frame - EPS))
    for i in range(count):
        t = i * frame
        shape = _rest(motors)
        for j, group in enumerate(groups):
            x = 1.0 - abs(t - (j + 1) * w) / w
            if x > 0:
                for m in group:
                    shape[m.index] = max(shape[m.index], profile(x))
        frames.append((round(t, 6), shape))
    frames.append((active, _rest(motors)))
    return frames


def _sides(motors: Sequence[Motor], ctx: StepContext) -> list[list[Motor]]:
    """The motors by side, the healthy (or left) side first; only the sides present."""
    both = [m for m in motors if m.side is Side.BOTH]
    groups = [[m for m in motors if m.side is side] + both for side in ctx.side_order]
    return [g for g in groups if g] or [list(motors)]


def _stroking(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    places = [[m for m in motors if m.place is p] for p in _HEAD_TO_BACK]
    return wave([g for g in places if g], active, _triangle)


def _rubbing(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    return wave(_sides(motors, ctx), active, _plateau)


def _kneading(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    return wave(_sides(motors, ctx), active, _swell)


def _circular(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    ring = sorted(motors, key=lambda m: _RING.index((m.place, m.side)))
    return wave([[m] for m in ring], active, _triangle)


def _pressing(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    """Pressing with gradually increasing force: 30 % rising to full, a short hold, release."""
    rise = 0.8 * active
    frames: Movement = []
    t = 0.0
    while t < active - EPS:
        level = 0.3 + 0.7 * min(1.0, t / rise) if rise > 0 else 1.0
        frames.append((round(t, 6), {m.index: level for m in motors}))
        t += 0.5
    frames.append((active, _rest(motors)))
    return frames


def _tapping(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    on = {m.index: 1.0 for m in motors}
    taps = max(1, math.floor(active / TAP_PERIOD_S + EPS))
    frames: Movement = []
    for k in range(taps):
        frames.append((k * TAP_PERIOD_S, on))
        frames.append((k * TAP_PERIOD_S + min(TAP_ON_S, active / 2), _rest(motors)))
    return frames


def _vibration(ctx: StepContext, motors: Sequence[Motor], active: float) -> Movement:
    """Every motor steady; refreshed every 0.5 s so that a ramp can move."""
    on = {m.index: 1.0 for m in motors}
    count = max(1, math.ceil(active / 0.5 - EPS))
    frames: Movement = [(i * 0.5, on) for i in range(count)]
    frames.append((active, _rest(motors)))
    return frames


PATTERNS: Final[dict[Technique, Callable[[StepContext, Sequence[Motor], float], Movement]]] = {
    Technique.STROKING: _stroking,
    Technique.RUBBING: _rubbing,
    Technique.PRESSING: _pressing,
    Technique.KNEADING: _kneading,
    Technique.CIRCULAR: _circular,
    Technique.VIBRATION: _vibration,
    Technique.TAPPING: _tapping,
}
"""One movement of each technique (rest has none)."""


def belt_frames(ctx: StepContext) -> list[Frame]:
    """The belt's outputs for one step; empty when the belt does not play it."""
    caps = ctx.caps
    make = PATTERNS.get(ctx.technique)
    motors = zone_motors(caps, ctx)
    if make is None or not motors:
        return []
    slots = {m.index: i for i, m in enumerate(caps.motors)}
    playing = [(m.index, slots[m.index], m.max_level, m.side) for m in motors]
    sides = tuple(dict.fromkeys(m.side for m in motors))
    # The level of each motor is shape × intensity × side weight. Only a ramp's intensity
    # and a transition's side weights change with time; the rest hold all step long.
    steady = None if ctx.step.is_ramp else ctx.intensity(ctx.start)
    fixed = None
    if ctx.step.side is not StepSide.TO_PAINFUL:
        fixed = {side: ctx.side_weight(side, ctx.start) for side in sides}
    # Every movement of a step repeats the same shapes (ctx.movements reuses the pattern's
    # frames), so a shape's moving motors are found once, and its levels at one intensity
    # and side weight are computed once.
    moving: dict[int, list[tuple[int, float, int, Side]]] = {}
    made: dict[tuple[int, float, tuple[float, ...]], BeltOutput] = {}
    count = len(caps.motors)
    heat = ctx.heat

    def output(
        shape: Shape, intensity: float, weights: dict[Side, float], key_weights: tuple[float, ...]
    ) -> BeltOutput:
        key = (id(shape), intensity, key_weights)
        made_output = made.get(key)
        if made_output is None:
            parts = moving.get(id(shape))
            if parts is None:
                # A motor at 0 in the shape stays at 0 whatever the intensity and weight.
                parts = moving[id(shape)] = [
                    (slot, x, top, side)
                    for index, slot, top, side in playing
                    if (x := shape.get(index, 0.0))
                ]
            levels = [0] * count
            for slot, x, top, side in parts:
                levels[slot] = round(min(1.0, max(0.0, x * intensity * weights[side])) * top)
            made_output = made[key] = BeltOutput(levels=tuple(levels), heat=heat)
        return made_output

    if fixed is not None:
        fixed_key = tuple(fixed.values())
        if steady is not None:
            # Neither the intensity nor the side weights move: every movement plays the same
            # outputs, made once from the pattern's keyframes and laid out by ctx.movements.
            def outputs(slot: float) -> list[tuple[float, BeltOutput]]:
                shapes = make(ctx, motors, ctx.active_s(slot))
                return [
                    (offset, output(shape, steady, fixed, fixed_key)) for offset, shape in shapes
                ]

            return ctx.movements(outputs)
        # A ramp: the intensity moves, the side weights hold.
        return [
            (t, output(shape, ctx.intensity(t), fixed, fixed_key))
            for t, shape in ctx.movements(lambda slot: make(ctx, motors, ctx.active_s(slot)))
        ]
    frames: list[Frame] = []
    for t, shape in ctx.movements(lambda slot: make(ctx, motors, ctx.active_s(slot))):
        intensity = steady if steady is not None else ctx.intensity(t)
        weights = {s: ctx.side_weight(s, t) for s in sides}
        frames.append((t, output(shape, intensity, weights, tuple(weights.values()))))
    return frames
