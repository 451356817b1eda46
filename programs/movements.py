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

import functools
import logging
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devices.capabilities import DeviceKind
from devices.kinds import kind_spec, off_output
from devices.outputs import BeltOutput, Output
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


@functools.cache
def _counts_movements(kind: DeviceKind) -> bool:
    """Whether a kind's outputs come in movements (devices.kinds), looked up once per kind."""
    return kind_spec(kind).movements


def output_value(output: Output, channel: str) -> float:
    """One channel's value: a belt motor's level, or what a butterfly channel puts out.

    Channel names are the recording's (docs/simulator.md): ``motor1``..``motor6``
    and ``output_a``/``output_b`` (strength × waveform intensity / 100).
    """
    if not _counts_movements(output.kind):
        raise ValueError(f"no movements on a {output.kind.value} output")
    # A motor the output does not drive (fewer motors than asked about) is at rest.
    return dict(output.felt()).get(channel, 0.0)


def counted_channels(timeline: DeviceTimeline) -> list[str]:
    """The channels of a device whose movements count: belt motors and EMS outputs."""
    caps = timeline.capabilities
    if not kind_spec(caps.kind).movements:
        return []
    return [channel for channel, _ in off_output(caps).felt()]


def _motor_slot(channel: str) -> int | None:
    """The level index of a belt channel ``motor1``..``motorN`` (as BeltOutput.felt names
    them), or None for any other name."""
    digits = channel[5:]
    if channel.startswith("motor") and digits.isdecimal() and digits.isascii() and digits[0] != "0":
        return int(digits) - 1
    return None


def plan_series(timeline: DeviceTimeline, channel: str) -> Series:
    """One channel of a rendered timeline as a step function."""
    # The renderers reuse one output object for repeated frames: each is read once.
    read: dict[int, float] = {}
    series: Series = []
    # A belt motor's value is its level (BeltOutput.felt): read straight from the levels,
    # without a dict of every motor per output (a test reads every channel in turn).
    slot = _motor_slot(channel)
    for cue in timeline.cues:
        output = cue.output
        value = read.get(id(output))
        if value is None:
            if slot is not None and type(output) is BeltOutput:
                levels = output.levels
                value = float(levels[slot]) if slot < len(levels) else 0.0
            else:
                value = output_value(output, channel)
            read[id(output)] = value
        series.append((cue.t, value))
    return series


def plan_channels(timeline: DeviceTimeline) -> dict[str, Series]:
    """Every channel of a rendered timeline as a step function, read in one pass.

    Each series is the one :func:`plan_series` gives for that channel (the
    plan checks read every motor of several belts, so each cue is read once).
    """
    cues = timeline.cues
    outputs = list(map(_OUTPUT, cues))
    for kind in dict.fromkeys(map(_KIND, outputs)):  # in the order of the cues
        if not _counts_movements(kind):
            raise ValueError(f"no movements on a {kind.value} output")
    if set(map(type, outputs)) == {BeltOutput}:
        levels = list(map(_LEVELS, outputs))
        if len(set(map(len, levels))) == 1:
            # One belt (the plan checks' case): every output has the same motors, and a
            # motor's value is its level (BeltOutput.felt), read a column at a time.
            names = [name for name, _ in outputs[0].felt()]
            times = list(map(_T, cues))
            return {
                name: list(zip(times, map(float, column), strict=True))
                for name, column in zip(names, zip(*levels, strict=True), strict=True)
            }
    found: dict[str, Series] = {}
    # The renderers reuse one output object for repeated frames: each is read once.
    read: dict[int, tuple[tuple[str, float], ...]] = {}
    for i, cue in enumerate(cues):
        felt = read.get(id(cue.output))
        if felt is None:
            felt = read[id(cue.output)] = cue.output.felt()
        for name, value in felt:
            series = found.get(name)
            if series is None:  # a channel the cues before did not have: at rest there
                series = found[name] = [(before.t, 0.0) for before in cues[:i]]
            series.append((cue.t, value))
        if len(felt) != len(found):  # a channel this output lacks is at rest
            for series in found.values():
                if len(series) <= i:
                    series.append((cue.t, 0.0))
    return found


_OUTPUT = operator.attrgetter("output")
_KIND = operator.attrgetter("kind")
_LEVELS = operator.attrgetter("levels")
_T = operator.attrgetter("t")


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
    # One comprehension: a recording has a row per channel per change, and a test reads
    # every channel of it.
    series += [
        ((float(t) - t0) * speed, float(value))
        for row in rows
        if row.get("channel") == channel
        and row.get("device") == device
        and isinstance(value := row.get("value"), int | float)
        and isinstance(t := row.get("t"), int | float)
    ]
    return series


def recording_channels(
    rows: Iterable[Mapping[str, object]], *, t0: float = 0.0, speed: float = 1.0
) -> dict[tuple[str, str], Series]:
    """Every channel of a simulator recording, by (device, channel), read in one pass.

    Each series is the one :func:`recording_series` gives for that device and
    channel; a channel with no numeric row is missing (recording_series gives
    ``[(0.0, 0.0)]`` for it).
    """
    found: dict[tuple[str, str], Series] = {}
    for row in rows:
        value = row.get("value")
        t = row.get("t")
        device = row.get("device")
        channel = row.get("channel")
        if (
            isinstance(value, int | float)
            and isinstance(t, int | float)
            and isinstance(device, str)
            and isinstance(channel, str)
        ):
            key = (device, channel)
            series = found.get(key)
            if series is None:
                series = found[key] = [(0.0, 0.0)]
            series.append(((float(t) - t0) * speed, float(value)))
    return found
