"""The controller's exceptions, all under the one root, devices.errors.MassagedError.

devices.errors holds the root and what the devices raise (link, protocol,
safety, configuration); this module holds what the controller adds: the
control socket's, the daemon's requests, the store and its locks, the
configuration file, MQTT and the terminal. The emergency stop's quick path
(controller.quick_control) imports it, so it imports nothing but devices.errors:
no typing, no pydantic, no asyncio.
"""

from __future__ import annotations

from devices.errors import ConfigError, LinkError, MassagedError

# Not typing.TYPE_CHECKING: the quick path must not import typing (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from controller.config import ConfigIssue

__all__ = [
    "BadConfigError",
    "BadPayload",
    "BrokerError",
    "ConnectionDroppedError",
    "ControlError",
    "DaemonNotRunningError",
    "DaemonRunningError",
    "JsonError",
    "LockError",
    "NoTerminalError",
    "NotFoundError",
    "RequestError",
    "StoreError",
]


# -- the control socket ------------------------------------------------------------


class ControlError(LinkError):
    """The request could not be sent or answered; shown as ``massaged: error: ...``."""


class ConnectionDroppedError(ControlError):
    """The daemon closed the connection before answering."""


class DaemonNotRunningError(ControlError):
    """No daemon to reach on the socket; shown with a hint to start one.

    Raised by the quick client (controller.quick_control) and the asyncio one
    (controller.control.call) alike.
    """


class JsonError(ConfigError):
    """Bytes that are not one acceptable JSON value; the message says why, in a few words."""


class RequestError(ConfigError):
    """A request that cannot be accepted; the message says what is wrong."""


# -- the daemon's process and its store -----------------------------------------------


class LockError(MassagedError):
    """A lock is held by another process, or its file cannot be made; the message says which."""


class DaemonRunningError(LockError):
    """Another daemon already uses this database."""

    def __init__(self, db: Path, pid: int | None) -> None:
        who = "another massaged daemon" + (f" (pid {pid})" if pid else "")
        super().__init__(f"{who} already uses {db}")
        self.db = db
        self.pid = pid


class StoreError(MassagedError):
    """The store cannot be opened, read or written; the message says why and what to do."""


class NotFoundError(StoreError):
    """No record with that name or id."""


# -- configuration, MQTT and the terminal ---------------------------------------------


class BadConfigError(ConfigError):
    """The configuration file or environment is invalid; one line per issue."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class BrokerError(MassagedError):
    """The MQTT broker is not connected, or did not answer in time."""


class BadPayload(ConfigError):
    """A payload an MQTT command topic does not take; the text says what it takes."""


class NoTerminalError(MassagedError):
    """A question needs an answer and there is no terminal to ask on; names the flag."""
