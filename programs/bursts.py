"""Vibration in bursts: no vibrating output runs longer than 15 s without a rest at zero.

The method: "Perform vibration reception - up to 15 seconds". A vibration
belt vibrates in every technique, not only in the one named vibration, so
the rule is about what each motor does, whatever the step is called:

- a **burst** is a stretch of time in which a motor is above zero, where a
  dip to zero shorter than :data:`MIN_REST_S` does not count as a rest;
- no burst lasts longer than :data:`MAX_BURST_S` (the method's 15 s);
- a **rest** is at least :data:`MIN_REST_S` at zero.

Only the belt's motors vibrate. The butterfly's EMS channels contract and
relax (each contraction is a movement, see programs/movements.py), and the
pillow's nodes knead: they are bounded by the pillow's own 15-minute
auto-off, the plan's pause before it, the speed cap and the session limit.

This module is pure: :func:`bursts` reads a rendered timeline or a
recording. The loader refuses a program whose plan breaks the rule
(programs/plan_checks.py); the safety layer enforces it at run time on
anything that got past the loader (controller/safety.py, burst_step).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

MAX_BURST_S: Final = 15.0
"""The method: vibration "up to 15 seconds" at a time."""

MIN_REST_S: Final = 3.0
"""Seconds at zero that count as a rest between two bursts (massaged's choice, not the method's).

Why 3 s: a VB1 motor spins down in a few hundred milliseconds, so well within
3 s it is still and the skin feels the hand lift off, not a flicker of the
same vibration (the 350 ms gaps between taps, or a pattern's dips, are felt
as one vibration and so must not reset the 15 s); it is a fifth of a full
burst. Every technique's own pause after each movement (REST_S, 3.25 s, in
programs/render_common.py) is longer, so a program that follows the method
never needs an extra pause. The safety layer enforces the same figures at run
time (controller/safety.py, BURST_MAX_S and BURST_REST_S).
"""


@dataclass(frozen=True, slots=True)
class Burst:
    """One continuous vibration: from start to end (seconds)."""

    start: float
    end: float

    @property
    def length(self) -> float:
        """Seconds the burst lasts."""
        return self.end - self.start


def bursts(
    series: Iterable[tuple[float, float]], *, end: float, min_rest: float = MIN_REST_S
) -> list[Burst]:
    """The bursts of one output's step function (time, level) up to time end."""
    found: list[Burst] = []
    start: float | None = None
    zero_since: float | None = None
    for t, level in series:
        if t > end:
            break
        if level > 0:
            if start is not None and zero_since is not None and t - zero_since >= min_rest:
                found.append(Burst(start, zero_since))
                start = None
            if start is None:
                start = t
            zero_since = None
        elif start is not None and zero_since is None:
            zero_since = t
    if start is not None:
        found.append(Burst(start, zero_since if zero_since is not None else end))
    return found


def longest_burst(series: Iterable[tuple[float, float]], *, end: float) -> float:
    """Seconds of the longest burst (0 when the output never vibrates)."""
    return max((b.length for b in bursts(series, end=end)), default=0.0)
