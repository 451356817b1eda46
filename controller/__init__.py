"""The massaged daemon, its command line and its home-automation hooks.

The public surface for scripts is ``__all__`` below (docs/library.md): run a
program on devices in this process, through the same checks and safety layer
as ``massaged run`` (:func:`run_program`), on simulated devices if need be
(:class:`SimulatedDevices`), or drive a running daemon (:class:`DaemonClient`).

This package is imported by the emergency stop's quick path, which must start
in milliseconds: nothing is imported here until a name is used (not even
typing or __future__; tests/controller/test_quick_control.py checks it).
"""

from devices._lazy import lazy_names

# Not typing.TYPE_CHECKING: the quick path must not import typing (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from controller.client import DaemonClient
    from controller.errors import DaemonNotRunningError, RequestError
    from controller.profiles import DEFAULT_PROFILE, Audience, Profile
    from controller.scripted import prepare_program, run_program
    from controller.session import (
        DeviceState,
        Outcome,
        RunnerEvent,
        SessionResult,
        SessionRunner,
        SessionState,
    )
    from controller.simulated import SimulatedDevices

__all__ = [
    "DEFAULT_PROFILE",
    "Audience",
    "DaemonClient",
    "DaemonNotRunningError",
    "DeviceState",
    "Outcome",
    "Profile",
    "RequestError",
    "RunnerEvent",
    "SessionResult",
    "SessionRunner",
    "SessionState",
    "SimulatedDevices",
    "prepare_program",
    "run_program",
]

_LAZY = {
    "RequestError": "controller.errors",
    "DaemonClient": "controller.client",
    "DEFAULT_PROFILE": "controller.profiles",
    "Audience": "controller.profiles",
    "Profile": "controller.profiles",
    "DaemonNotRunningError": "controller.errors",
    "prepare_program": "controller.scripted",
    "run_program": "controller.scripted",
    "DeviceState": "controller.session",
    "Outcome": "controller.session",
    "RunnerEvent": "controller.session",
    "SessionResult": "controller.session",
    "SessionRunner": "controller.session",
    "SessionState": "controller.session",
    "SimulatedDevices": "controller.simulated",
}
"""Public name -> the module that defines it, imported on first use."""

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
