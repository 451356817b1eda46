"""A massage session: plays a rendered program on every device at once, in step, safely.

- :mod:`~controller.session.runner`: :class:`SessionRunner`, the one loop and its controls;
- :mod:`~controller.session.lanes`: one device in the session (its worker, state, lease);
- :mod:`~controller.session.clock`: session time (:class:`ScaledClock`) and :class:`Timing`;
- :mod:`~controller.session.states`: states, events, snapshots and the :class:`Outcome`;
- :mod:`~controller.session.checks`: a profile's and a plan's checks before anything moves;
- :mod:`~controller.session.history`: the session's row and events in the history.

Each name is imported on first use: the store and the history read :class:`Outcome`
from :mod:`~controller.session.states`, and that must not bring in the runner, the
safety layer and asyncio with it.
"""

# No module here imports controller.store at run time: the store imports Outcome from here.
from devices._lazy import lazy_names

# Not typing.TYPE_CHECKING: this package is imported by the store, which needs only Outcome.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from controller.session.checks import (
        NO_EMS_FOR_A_CHILD,
        check_fits,
        check_profile,
        limits_for,
    )
    from controller.session.clock import ScaledClock, Timing
    from controller.session.runner import SessionRunner
    from controller.session.states import (
        PAUSE_PILLOW_EMPTY,
        PAUSE_USER,
        SCALE_STEP,
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

_LAZY: dict[str, str] = {
    "NO_EMS_FOR_A_CHILD": "controller.session.checks",
    "check_fits": "controller.session.checks",
    "check_profile": "controller.session.checks",
    "limits_for": "controller.session.checks",
    "ScaledClock": "controller.session.clock",
    "Timing": "controller.session.clock",
    "SCALE_STEP": "controller.session.states",
    "SessionRunner": "controller.session.runner",
    "PAUSE_PILLOW_EMPTY": "controller.session.states",
    "PAUSE_USER": "controller.session.states",
    "DeviceSnapshot": "controller.session.states",
    "DeviceState": "controller.session.states",
    "Outcome": "controller.session.states",
    "RunnerEvent": "controller.session.states",
    "RunnerListener": "controller.session.states",
    "SessionResult": "controller.session.states",
    "SessionSnapshot": "controller.session.states",
    "SessionState": "controller.session.states",
    "output_channels": "controller.session.states",
}
"""Public name -> the module that defines it, imported on first use."""

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
