"""What a script learns of each simulated device once it is served: its id, kind and address."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devices.capabilities import DeviceKind
from devices.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServedDevice:
    """One simulated device and where a host reaches it (``massaged simulate`` prints these)."""

    id: str
    """belt-1, pillow-1, butterfly-1, ... (what sim-fault and the recording call it)."""
    kind: DeviceKind
    link: str
    """"serial" or "ble"."""
    address: str
    """The serial port's path, or the BLE address on the simulated radio."""
    name: str
    """The advertised name (BLE), else the id."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServedDevice:
        """From one line ``massaged simulate`` prints; ConfigError naming what is missing."""
        try:
            return cls(
                id=str(data["id"]),
                kind=DeviceKind(data["kind"]),
                link=str(data["link"]),
                address=str(data["address"]),
                name=str(data.get("name") or data["id"]),
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(
                f"not a simulated device description: {data!r:.200} ({err})"
            ) from None
