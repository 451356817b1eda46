"""Drivers for the massage devices massaged runs: find them, connect to them, drive them.

The public surface is ``__all__`` below (docs/library.md): import from ``devices``,
never from a module path, which a refactor may move. Everything but the
exceptions is imported on first use, so ``import devices`` stays as cheap as the
emergency stop's quick path needs (no pydantic, no bleak, no pyserial).
"""

from __future__ import annotations

from devices._lazy import lazy_names
from devices.errors import (
    BluetoothUnavailableError,
    ConfigError,
    DeviceRefusedError,
    DeviceTimeoutError,
    FrameError,
    IdentificationError,
    LinkBusyError,
    LinkError,
    LinkLostError,
    MassagedError,
    ProtocolError,
    SafetyError,
)

# Not typing.TYPE_CHECKING: the quick path must not import typing (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from devices.capabilities import (
        Capabilities,
        DeviceKind,
        EmsChannel,
        KneadDirection,
        Kneading,
        Motor,
        Place,
        Side,
    )
    from devices.connection import connect
    from devices.discovery import DEFAULT_SCAN_TIMEOUT, Found, scan
    from devices.drivers.base import DEFAULT_CONNECT_TIMEOUT, Device
    from devices.events import DeviceEvent, StatusReport
    from devices.kinds import make_device
    from devices.outputs import (
        BeltOutput,
        ButterflyOutput,
        EmsChannelOutput,
        Output,
        PillowOutput,
    )

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SCAN_TIMEOUT",
    "BeltOutput",
    "BluetoothUnavailableError",
    "ButterflyOutput",
    "Capabilities",
    "ConfigError",
    "Device",
    "DeviceEvent",
    "DeviceKind",
    "DeviceRefusedError",
    "DeviceTimeoutError",
    "EmsChannel",
    "EmsChannelOutput",
    "Found",
    "FrameError",
    "IdentificationError",
    "KneadDirection",
    "Kneading",
    "LinkBusyError",
    "LinkError",
    "LinkLostError",
    "MassagedError",
    "Motor",
    "Output",
    "PillowOutput",
    "Place",
    "ProtocolError",
    "SafetyError",
    "Side",
    "StatusReport",
    "connect",
    "make_device",
    "scan",
]

_LAZY: dict[str, str] = {
    "Capabilities": "devices.capabilities",
    "DeviceKind": "devices.capabilities",
    "EmsChannel": "devices.capabilities",
    "Kneading": "devices.capabilities",
    "KneadDirection": "devices.capabilities",
    "Motor": "devices.capabilities",
    "Place": "devices.capabilities",
    "Side": "devices.capabilities",
    "connect": "devices.connection",
    "DEFAULT_SCAN_TIMEOUT": "devices.discovery",
    "Found": "devices.discovery",
    "scan": "devices.discovery",
    "DEFAULT_CONNECT_TIMEOUT": "devices.drivers.base",
    "Device": "devices.drivers.base",
    "DeviceEvent": "devices.events",
    "StatusReport": "devices.events",
    "make_device": "devices.kinds",
    "BeltOutput": "devices.outputs",
    "ButterflyOutput": "devices.outputs",
    "EmsChannelOutput": "devices.outputs",
    "Output": "devices.outputs",
    "PillowOutput": "devices.outputs",
}
"""Public name -> the module that defines it, imported on first use."""

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
