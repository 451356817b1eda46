"""A rendered program: for each device, what it should put out and when.

The renderer produces a SessionPlan; the session runner plays it; the
command line prints and plots it. Outputs are in device units at the
program's nominal intensity: the safety layer applies the user's scale,
"gentler" and every cap on top, so a plan alone can never exceed a limit
that the runner enforces.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from devices.capabilities import Capabilities
from devices.outputs import Output


@dataclass(frozen=True, slots=True)
class Cue:
    """At t seconds from the session start, the device should put out output."""

    t: float
    output: Output
    step: int
    """Index of the program step this cue belongs to."""


@dataclass(frozen=True, slots=True)
class StepSpan:
    """Where one program step sits in the session."""

    index: int
    technique: str
    zone: str
    label: str
    start: float
    end: float


@dataclass
class DeviceTimeline:
    """The cues of one device, sorted by time."""

    device: str
    capabilities: Capabilities
    cues: list[Cue] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cues.sort(key=lambda c: c.t)
        self._times = [c.t for c in self.cues]

    def cue_at(self, t: float) -> Cue | None:
        """The cue in force at t (the last one at or before t), or None before the first."""
        i = bisect.bisect_right(self._times, t) - 1
        return self.cues[i] if i >= 0 else None

    def next_change_after(self, t: float) -> float | None:
        """The time of the first cue strictly after t, or None."""
        i = bisect.bisect_right(self._times, t)
        return self._times[i] if i < len(self._times) else None


@dataclass
class SessionPlan:
    """A program rendered onto a set of devices."""

    program_id: str
    title: str
    audience: str
    duration: float
    """Seconds from start to the end of the last step."""
    steps: list[StepSpan]
    timelines: dict[str, DeviceTimeline]

    def step_at(self, t: float) -> StepSpan | None:
        """The step running at t, or None outside the session."""
        for span in self.steps:
            if span.start <= t < span.end:
                return span
        return None
