"""What a session is and was: its states, its events, the snapshots the live view and
MQTT show, and how it ended (:class:`Outcome`, also the history's column)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Named in annotations only: the store imports Outcome from here, and the safety
    # layer would bring the drivers and asyncio with it.
    from controller.profiles import Audience
    from controller.safety import Violation
    from devices.capabilities import DeviceKind
    from devices.outputs import Output

PAUSE_USER = "user"
"""A pause reason: the user asked for it."""
PAUSE_PILLOW_EMPTY = "pillow_empty"
"""A pause reason: the pillow stayed empty."""
SCALE_STEP = 0.1
"""How much one "+" or "-" of the live view changes the overall intensity scale."""


class Outcome(StrEnum):
    """How a session ended."""

    COMPLETED = "completed"
    STOPPED = "stopped"
    EMERGENCY_STOP = "emergency_stop"
    FAULT = "fault"
    CUT = "cut"
    """Ended by a limit (the session's time limit) before the program did: never completed."""


class SessionState(StrEnum):
    """Where the session is."""

    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    ENDED = "ended"


class DeviceState(StrEnum):
    """Where one device of the session is."""

    CONNECTING = "connecting"
    RUNNING = "running"
    PAUSED = "paused"
    LOST = "lost"
    """The link is gone; the runner is reconnecting."""
    ENDED = "ended"
    """The user pressed the device's own stop button: it stays off for the session."""
    DROPPED = "dropped"
    """Left out of the session (an EMS-only contraindication)."""
    STOPPED = "stopped"
    """The session is over."""


@dataclass(frozen=True, slots=True)
class RunnerEvent:
    """Something that happened in a session, at plan position t."""

    t: float
    kind: str
    device: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


RunnerListener = Callable[[RunnerEvent], None]


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One device as the live display shows it."""

    name: str
    kind: DeviceKind
    state: DeviceState
    output: dict[str, int | str]
    """Channel -> value, named as in the recording format."""
    link: str
    """"up", "down" or "reconnecting"."""


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """The whole session at one moment, for the live display (and MQTT)."""

    program_id: str
    title: str
    state: SessionState
    step_index: int | None
    step_label: str
    step_count: int
    elapsed: float
    """Plan position in session seconds."""
    remaining: float
    """Session seconds left (the plan's end or the safety limit, whichever is sooner)."""
    duration: float
    scale: float
    gentler_presses: int
    gentler_factor: float
    pause_reasons: tuple[str, ...]
    devices: dict[str, DeviceSnapshot]


@dataclass(frozen=True, slots=True)
class SessionResult:
    """How a session ended."""

    outcome: Outcome
    reason: str
    elapsed: float
    gentler_presses: int
    session_id: int | None
    audience: Audience
    devices: dict[str, DeviceState]
    violations: tuple[Violation, ...]
    dropped: tuple[str, ...]


def output_channels(output: Output) -> dict[str, int | str]:
    """An output as channel -> value, named as in the recording format."""
    # Imported here: the store reads states (outcomes) without the device models.
    from devices.outputs import record

    return record(output)
