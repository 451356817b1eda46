"""Techniques on the SP1 pillow: kneading speed by intensity, direction by technique, heat.

The pillow cannot aim at a zone or a side: it plays the steps on both sides
whose zone includes the neck, and rests during the others (a one-sided step
would otherwise also work the side the program means to spare).
"""

from __future__ import annotations

import logging
import math
from typing import Final

from devices.capabilities import Capabilities, KneadDirection, Place
from devices.outputs import PillowOutput
from programs.model import Technique
from programs.render_common import EPS, Frame, StepContext
from programs.timeline import Cue

logger = logging.getLogger(__name__)

SEGMENT_S: Final = 20.0
"""Seconds between the pillow's changes of direction or speed: its nodes turn slowly."""

AUTO_OFF_S: Final = 15 * 60.0
"""SP1 rule 3: the firmware stops everything after 15 minutes of continuous running."""

MAX_RUN_S: Final = AUTO_OFF_S - 30.0
"""The plan pauses the pillow before its auto-off would cut in."""

PAUSE_S: Final = 5.0
"""Length of that pause."""

_CW, _CCW, _AUTO = (
    KneadDirection.CLOCKWISE,
    KneadDirection.COUNTER_CLOCKWISE,
    KneadDirection.AUTO_REVERSE,
)

DIRECTIONS: Final[dict[Technique, tuple[KneadDirection, ...]]] = {
    Technique.STROKING: (_CW,),
    Technique.RUBBING: (_CW, _CCW),
    Technique.PRESSING: (_CW,),
    Technique.KNEADING: (_CW, _CCW),
    Technique.CIRCULAR: (_AUTO,),
    Technique.VIBRATION: (_CW,),
    Technique.TAPPING: (_CCW,),
}
"""Directions a technique cycles through, one per segment."""


def speed_for(intensity: float, max_speed: int) -> int:
    """Kneading speed 1..max_speed for an intensity above 0 (the nearest step, at least 1)."""
    if intensity <= 0:
        return 0
    return max(1, min(max_speed, math.floor(intensity * max_speed + 0.5)))


def _directions(
    technique: Technique, supported: tuple[KneadDirection, ...]
) -> list[KneadDirection]:
    """The technique's directions the pillow supports; circling alternates without auto-reverse."""
    wanted = list(DIRECTIONS.get(technique, (_CW,)))
    if wanted == [_AUTO] and _AUTO not in supported:
        wanted = [_CW, _CCW]
    usable = [d for d in wanted if d in supported]
    return usable or [supported[0] if supported else _CW]


def pillow_frames(ctx: StepContext) -> list[Frame]:
    """The pillow's outputs for one step; empty when the pillow does not play it."""
    kneading = ctx.caps.kneading
    if (
        kneading is None
        or ctx.technique is Technique.REST
        or Place.NECK not in ctx.places
        or ctx.one_sided
    ):
        return []
    directions = _directions(ctx.technique, kneading.directions)
    frames: list[Frame] = []
    for t, k in ctx.repeat(SEGMENT_S, lambda k: [(0.0, k)]):
        speed = speed_for(ctx.intensity(t), kneading.max_speed)
        direction = directions[k % len(directions)]
        frames.append((t, PillowOutput(speed=speed, direction=direction, heat=ctx.heat)))
    return frames


def avoid_auto_off(cues: list[Cue], caps: Capabilities) -> list[Cue]:
    """Pause the pillow briefly before 15 minutes of continuous running, then resume."""
    out: list[Cue] = []
    pending = list(reversed(cues))
    run_start: float | None = None
    while pending:
        cue = pending.pop()
        out.append(cue)
        if cue.output.is_zero:
            run_start = None
            continue
        if run_start is None:
            run_start = cue.t
        limit = run_start + MAX_RUN_S
        next_t = pending[-1].t if pending else math.inf
        if next_t > limit + EPS:
            logger.info("pillow paused at %.0f s: its auto-off would stop it at 15 min", limit)
            out.append(Cue(t=round(limit, 3), output=PillowOutput.off(), step=cue.step))
            run_start = None
            resume = limit + PAUSE_S
            if resume < next_t - EPS:
                pending.append(Cue(t=round(resume, 3), output=cue.output, step=cue.step))
    return out
