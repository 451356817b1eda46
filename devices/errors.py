"""The one exception tree of massaged: every error the project raises derives from MassagedError."""

from __future__ import annotations


class MassagedError(Exception):
    """Root of every error massaged raises on purpose."""


class ProtocolError(MassagedError):
    """A frame or answer broke the device's wire protocol."""


class FrameError(ProtocolError):
    """Bytes that cannot be decoded as a frame (bad length, checksum or field)."""


class LinkError(MassagedError):
    """The link to a device could not be opened or failed while in use."""

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(message if device is None else f"{device}: {message}")
        self.device = device


class LinkBusyError(LinkError):
    """Another program holds the device's port: a second controller is refused, not shared."""

    def __init__(self, address: str) -> None:
        super().__init__(f"{address} is in use by another program")
        self.device = address


class BluetoothUnavailableError(LinkError):
    """This machine cannot use Bluetooth at all: no adapter, adapter off, or BlueZ not running."""


class LinkLostError(LinkError):
    """The link dropped, or the device stopped answering after every retry."""


class DeviceTimeoutError(LinkError, TimeoutError):
    """A device did not answer in time; also a built-in TimeoutError."""


class DeviceRefusedError(ProtocolError):
    """The device answered a command with a refusal (VB1 NAK and the like)."""

    def __init__(self, message: str, *, command: int, code: int, device: str | None = None) -> None:
        super().__init__(message if device is None else f"{device}: {message}")
        self.command = command
        self.code = code
        self.device = device


class IdentificationError(ProtocolError):
    """The device at an address is not the kind or model that was expected."""

    def __init__(self, message: str, *, found_model: str | None = None) -> None:
        super().__init__(message)
        self.found_model = found_model
        """The model (devices.kinds.MODELS) the device showed itself to be, where known."""


class SafetyError(MassagedError):
    """A request would break a safety rule (a cap, a ramp, a time limit, a contraindication)."""


class ConfigError(MassagedError):
    """A configuration, program or payload is invalid; the message names what and where."""
