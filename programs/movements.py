"""Reading movements back: one counter for a rendered timeline and for a simulator recording.

A movement is what the method counts as one repetition: the output rises
from rest, peaks, and falls back to rest. Rest is zero (:data:`REST_LEVEL`):
every technique on the belt and the butterfly falls all the way back, so a
pause is a pause. A dip to rest shorter than :data:`MIN_PAUSE_S` does not end
a movement: it is inside one (the gaps between the taps of one tapping
series, 350 ms), too short to be felt as the hand lifting off.

The same function reads a plan (:func:`plan_series`) and a recording
(:func:`recording_series`), so a test counts a program's repetitions the same
way on paper and in what the devices physically did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devices.kinds import kind_spec, off_output
from devices.outputs import Output
from programs.timeline import DeviceTimeline

logger = logging.getLogger(__name__)

REST_LEVEL: Final = 0.0
"""An output at or below this level is at rest: movements fall back to zero."""

MIN_PAUSE_S: Final = 0.5
"""Seconds at rest that end a movement; a shorter dip is inside one movement."""

Series = list[tuple[float, float]]
"""A step function: (time in seconds, value), each value holding until the next."""


@dataclass(frozen=True, slots=True)
class Movement:
    """One rise from rest, its peak, and the fall back to rest."""

    start: float
    """When the output left rest."""
    peak_t: float
    """When it first reached its peak."""
    peak: float
    end: float
    """When it was back at rest (for good: a pause of at least MIN_PAUSE_S followed)."""


def movements(
    series: Iterable[tuple[float, float]],
    *,
    end: float,
    rest: float = REST_LEVEL,
    min_pause: float = MIN_PAUSE_S,
) -> list[Movement]:
    """The movements of one output's step function, up to time end."""
    found: list[Movement] = []
    start: float | None = None
    peak_t = peak = 0.0
    resting_since: float | None = None
    for t, value in series:
        if t > end:
            break
        if value > rest:
            if start is not None and resting_since is not None and t - resting_since >= min_pause:
                found.append(Movement(start, peak_t, peak, resting_since))
                start = None
            if start is None:
                start, peak_t, peak = t, t, value
            elif value > peak:
                peak_t, peak = t, value
            resting_since = None
        elif start is not None and resting_since is None:
            resting_since = t
    if start is not None:
        found.append(
            Movement(start, peak_t, peak, resting_since if resting_since is not None else end)
        )
    return found


def count_in(found: Sequence[Movement], start: float, end: float) -> int:
    """How many movements start in [start, end)."""
    return sum(1 for m in found if start - 1e-6 <= m.start < end - 1e-6)


# -- a plan -------------------------------------------------------------------


def output_value(output: Output, channel: str) -> float:
    """One channel's value: a belt motor's level, or what a butterfly channel puts out.

    Channel names are the recording's (docs/simulator.md): ``motor1``..``motor6``
    and ``output_a``/``output_b`` (strength × waveform intensity / 100).
    """
    if not kind_spec(output.kind).movements:
        raise ValueError(f"no movements on a {output.kind.value} output")
    # A motor the output does not drive (fewer motors than asked about) is at rest.
    return dict(output.felt()).get(channel, 0.0)


def counted_channels(timeline: DeviceTimeline) -> list[str]:
    """The channels of a device whose movements count: belt motors and EMS outputs."""
    caps = timeline.capabilities
    if not kind_spec(caps.kind).movements:
        return []
    return [channel for channel, _ in off_output(caps).felt()]


def plan_series(timeline: DeviceTimeline, channel: str) -> Series:
    """One channel of a rendered timeline as a step function."""
    return [(cue.t, output_value(cue.output, channel)) for cue in timeline.cues]


# -- a recording --------------------------------------------------------------


def recording_series(
    rows: Iterable[Mapping[str, object]],
    device: str,
    channel: str,
    *,
    t0: float = 0.0,
    speed: float = 1.0,
) -> Series:
    """One channel of a simulator recording as a step function in plan seconds.

    t0 is the recording time the plan started at and speed the session's
    speed, so times read as (t - t0) × speed, as the runner's clock does.
    """
    series: Series = [(0.0, 0.0)]
    for row in rows:
        if row.get("device") != device or row.get("channel") != channel:
            continue
        value = row.get("value")
        t = row.get("t")
        if isinstance(value, int | float) and isinstance(t, int | float):
            series.append(((float(t) - t0) * speed, float(value)))
    return series
