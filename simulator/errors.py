"""The simulator's errors, in one place, all under massaged's one root (MassagedError)."""

from __future__ import annotations

from devices.errors import MassagedError, ProtocolError

__all__ = [
    "MosquittoError",
    "MosquittoMissingError",
    "RadioClosedError",
    "RadioError",
    "WireError",
]


class WireError(ProtocolError):
    """A message on the radio socket could not be decoded."""


class RadioError(MassagedError):
    """The radio refused a request; ``code`` says why, ``gatt`` carries an ATT error code."""

    def __init__(self, code: str, message: str, *, gatt: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message
        """The message without its code: what goes on the wire, and what users read."""
        self.gatt = gatt


class RadioClosedError(RadioError):
    """The connection to the radio closed (or was never open)."""

    def __init__(self, message: str = "connection to the radio closed") -> None:
        super().__init__("closed", message)


class MosquittoError(MassagedError):
    """The private mosquitto exited at start, did not listen in time, or did not exit."""


class MosquittoMissingError(MosquittoError):
    """No mosquitto binary to run; the message says how to install one."""
