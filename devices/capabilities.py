"""What a device can do, described as data.

Programs, the command line and MQTT discovery are all generated from these
descriptions instead of keeping lists of their own.
"""

from __future__ import annotations

from enum import StrEnum

from devices._lazy import lazy_names

# Not typing.TYPE_CHECKING: a simulator imports DeviceKind from here and needs no typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from devices._capability_models import (
        Capabilities,
        EmsChannel,
        Kneading,
        Motor,
        belt_motors,
        butterfly_channels,
    )


class DeviceKind(StrEnum):
    """The three kinds of device massaged drives."""

    BELT = "belt"
    PILLOW = "pillow"
    BUTTERFLY = "butterfly"


class Place(StrEnum):
    """Where on the body an output acts."""

    NECK = "neck"
    SHOULDER = "shoulder"
    UPPER_BACK = "upper_back"


class Side(StrEnum):
    """Which side of the body an output acts on."""

    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"


class KneadDirection(StrEnum):
    """Direction of the pillow's kneading nodes (SP1 SET byte 2)."""

    CLOCKWISE = "clockwise"
    COUNTER_CLOCKWISE = "counter_clockwise"
    AUTO_REVERSE = "auto_reverse"


__all__ = [
    "Capabilities",
    "DeviceKind",
    "EmsChannel",
    "KneadDirection",
    "Kneading",
    "Motor",
    "Place",
    "Side",
    "belt_motors",
    "butterfly_channels",
]

_LAZY = {
    name: "devices._capability_models"
    for name in (
        "Capabilities",
        "EmsChannel",
        "Kneading",
        "Motor",
        "belt_motors",
        "butterfly_channels",
    )
}
"""The pydantic models, imported on first use: the enums above need no pydantic."""

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
