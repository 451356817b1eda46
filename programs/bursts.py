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
recording (the loader refuses a program whose plan breaks the rule, see
programs/plan_checks.py), and :class:`BurstGuard` decides at run time,
output by output, whether a level may be sent or must be zero, for the
safety layer to enforce the rule on anything that got past the loader.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

logger = logging.getLogger(__name__)

MAX_BURST_S: Final = 15.0
"""The method: vibration "up to 15 seconds" at a time."""

MIN_REST_S: Final = 2.0
"""Seconds at zero that count as a rest between two bursts (massaged's choice).

Why 2 s: a VB1 motor spins down in a few hundred milliseconds, so after 2 s
it is still and the skin feels the hand lift off, not a flicker of the same
vibration (the 350 ms gaps between taps, or a pattern's dips, are felt as one
vibration and so must not reset the 15 s). It is also short enough that every
technique's own pause between two movements (2.5 s, see
programs/render_belt.py) is a rest, so a program that follows the method
never needs an extra pause. The method gives no figure: this is a product
decision, documented in docs/programs.md.
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


@dataclass(slots=True)
class _Track:
    """One output's state: since when it vibrates, since when it is at zero."""

    run_start: float | None = None
    zero_since: float | None = None
    forced_until: float = -math.inf


class BurstGuard:
    """Run-time enforcement: given (time, levels), the levels that may be sent.

    Call :meth:`decide` with every request (one level per vibrating output)
    and send what it returns. A burst that reaches ``max_burst_s`` is cut:
    that output is held at zero for ``min_rest_s`` whatever is asked, then
    may start a new burst. The guard only sees the calls, so a burst can
    overrun by the gap between two calls: call again by :meth:`due` (the
    session runner passes at least every 50 ms). Times are any monotonic
    seconds (the session's clock).
    """

    def __init__(
        self,
        outputs: int,
        *,
        max_burst_s: float = MAX_BURST_S,
        min_rest_s: float = MIN_REST_S,
    ) -> None:
        if outputs < 0 or max_burst_s <= 0 or min_rest_s <= 0:
            raise ValueError("outputs ≥ 0 and positive times, please")
        self.max_burst_s = max_burst_s
        self.min_rest_s = min_rest_s
        self._tracks = [_Track() for _ in range(outputs)]
        self.cuts = 0
        """How many bursts the guard has cut (the plan should never need it)."""

    def decide(self, t: float, levels: Sequence[int]) -> tuple[int, ...]:
        """The levels that may be sent at time t: each as asked, or 0 while it must rest."""
        if len(levels) != len(self._tracks):
            raise ValueError(f"expected {len(self._tracks)} levels, got {len(levels)}")
        return tuple(self._one(track, t, level) for track, level in zip(self._tracks, levels))

    def _one(self, track: _Track, t: float, level: int) -> int:
        sent = level if t >= track.forced_until else 0
        if sent > 0:
            rested = track.zero_since is not None and t - track.zero_since >= self.min_rest_s
            if track.run_start is None or rested:
                track.run_start = t
            track.zero_since = None
            if t - track.run_start >= self.max_burst_s:
                logger.warning(
                    "a vibration ran %.1f s without a rest: held at zero for %g s",
                    t - track.run_start,
                    self.min_rest_s,
                )
                self.cuts += 1
                track.forced_until = t + self.min_rest_s
                track.run_start = None
                track.zero_since = t
                return 0
            return sent
        if track.zero_since is None:
            track.zero_since = t
        if track.run_start is not None and t - track.zero_since >= self.min_rest_s:
            track.run_start = None
        return 0

    def due(self) -> float | None:
        """The latest time to call decide again: when a running burst reaches its limit."""
        ends = [
            track.run_start + self.max_burst_s
            for track in self._tracks
            if track.run_start is not None and track.zero_since is None
        ]
        return min(ends, default=None)
