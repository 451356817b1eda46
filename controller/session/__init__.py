"""A massage session: plays a rendered program on every device at once, in step, safely.

- :mod:`~controller.session.runner`: :class:`SessionRunner`, the one loop and its controls;
- :mod:`~controller.session.lanes`: one device in the session (its worker, state, lease);
- :mod:`~controller.session.clock`: session time (:class:`ScaledClock`) and :class:`Timing`;
- :mod:`~controller.session.states`: states, events, snapshots and the :class:`Outcome`;
- :mod:`~controller.session.checks`: a profile's and a plan's checks before anything moves;
- :mod:`~controller.session.history`: the session's row and events in the history.
"""

# No module here imports controller.store at run time: the store imports Outcome from here.
from controller.session.checks import (
    NO_EMS_FOR_A_CHILD,
    check_fits,
    check_profile,
    limits_for,
)
from controller.session.clock import ScaledClock, Timing
from controller.session.runner import SCALE_STEP, SessionRunner
from controller.session.states import (
    PAUSE_PILLOW_EMPTY,
    PAUSE_USER,
    DeviceSnapshot,
    DeviceState,
    Outcome,
    RunnerEvent,
    RunnerListener,
    SessionResult,
    SessionSnapshot,
    SessionState,
    output_channels,
)

__all__ = [
    "NO_EMS_FOR_A_CHILD",
    "PAUSE_PILLOW_EMPTY",
    "PAUSE_USER",
    "SCALE_STEP",
    "DeviceSnapshot",
    "DeviceState",
    "Outcome",
    "RunnerEvent",
    "RunnerListener",
    "ScaledClock",
    "SessionResult",
    "SessionRunner",
    "SessionSnapshot",
    "SessionState",
    "Timing",
    "check_fits",
    "check_profile",
    "limits_for",
    "output_channels",
]
