"""A simulated BLE peripheral: a firmware, its GATT table, its address and signal.

The GATT tables of the three device kinds follow the vendors' documents
(docs/protocols/); UUIDs come from the codecs in ``devices.protocols``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from devices.capabilities import DeviceKind
from devices.protocols import coyote_v2, eb1, sp1, vb1
from devices.wake import Wake
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware

if TYPE_CHECKING:
    # Only the annotation: the radio is the server side, and the simulate process need
    # not import bleak (the client library, a third of the simulator's import time).
    from bleak.assigned_numbers import CharacteristicPropertyName

logger = logging.getLogger(__name__)


def normalize_uuid_str(uuid: str) -> str:
    """A UUID as bleak writes it (``bleak.uuids.normalize_uuid_str``, same rules).

    Lower case, 128 bits: a 16- or 32-bit Bluetooth SIG UUID is expanded on the base
    UUID; anything that is no UUID raises ValueError. A copy of bleak's few lines, so
    that serving the radio does not import bleak (the client library).
    """
    if len(uuid) == 4:
        uuid = f"0000{uuid}-0000-1000-8000-00805f9b34fb"
    elif len(uuid) == 8:
        uuid = f"{uuid}-0000-1000-8000-00805f9b34fb"
    return str(UUID(uuid))


DEFAULT_RSSI = -55
"""Signal strength of a peripheral on the sofa next to the computer."""
DEFAULT_MTU = 247
"""The ATT MTU every simulated connection negotiates (a modern phone-class link)."""


@dataclass(frozen=True)
class CharacteristicSpec:
    """One characteristic: UUID, GATT properties, and whether it carries a byte stream."""

    uuid: str
    properties: tuple[CharacteristicPropertyName, ...]
    stream: bool = False
    """True when frames may span notifications (NUS), so a split fault may cut them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid_str(self.uuid))


@dataclass(frozen=True)
class ServiceSpec:
    """One primary service and its characteristics."""

    uuid: str
    characteristics: tuple[CharacteristicSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid_str(self.uuid))


GattTable = tuple[ServiceSpec, ...]
"""A peripheral's services, in handle order."""


def nus_gatt() -> GattTable:
    """VB1-BLE: the Nordic UART Service (RX write without response, TX notify)."""
    return (
        ServiceSpec(
            vb1.NUS_SERVICE,
            (
                CharacteristicSpec(vb1.NUS_RX, ("write-without-response", "write")),
                CharacteristicSpec(vb1.NUS_TX, ("notify",), stream=True),
            ),
        ),
    )


def sp1_gatt() -> GattTable:
    """SP1 pillow: one data characteristic, write without response and notify."""
    return (
        ServiceSpec(
            sp1.SERVICE_UUID,
            (CharacteristicSpec(sp1.DATA_UUID, ("write-without-response", "notify")),),
        ),
    )


def eb1_gatt() -> GattTable:
    """EB1 butterfly: 180C with 150A write and 150B notify; 180A with battery 1500."""
    return (
        ServiceSpec(
            eb1.SERVICE_UUID,
            (
                CharacteristicSpec(eb1.WRITE_UUID, ("write",)),
                CharacteristicSpec(eb1.NOTIFY_UUID, ("notify",)),
            ),
        ),
        ServiceSpec(
            eb1.BATTERY_SERVICE_UUID,
            (CharacteristicSpec(eb1.BATTERY_UUID, ("read", "notify")),),
        ),
    )


def coyote_v2_gatt() -> GattTable:
    """Coyote V2: 180A with battery 1500; 180B with strengths 1504 and two waveforms."""
    return (
        ServiceSpec(
            coyote_v2.BATTERY_SERVICE_UUID,
            (CharacteristicSpec(coyote_v2.BATTERY_UUID, ("read", "notify")),),
        ),
        ServiceSpec(
            coyote_v2.SERVICE_UUID,
            (
                CharacteristicSpec(coyote_v2.STRENGTH_UUID, ("read", "write", "notify")),
                # In handle order (0x1505 first), whichever channel each one carries.
                *(
                    CharacteristicSpec(uuid, ("read", "write"))
                    for uuid in sorted(coyote_v2.WAVEFORM_UUID_BY_CHANNEL)
                ),
            ),
        ),
    )


GATT_TABLES: dict[DeviceKind, GattTable] = {
    DeviceKind.BELT: nus_gatt(),
    DeviceKind.PILLOW: sp1_gatt(),
    DeviceKind.BUTTERFLY: eb1_gatt(),
}
"""The GATT table of each device kind's BLE model."""


def gatt_for(kind: DeviceKind) -> GattTable:
    """The GATT table of a device kind's BLE model."""
    return GATT_TABLES[kind]


MODEL_GATT_TABLES: dict[str, GattTable] = {"coyote_v2": coyote_v2_gatt()}
"""The GATT table of each further BLE model of a kind (Firmware.ble_model)."""


def gatt_for_firmware(firmware: Firmware) -> GattTable:
    """The GATT table a firmware is served with: its model's, else its kind's."""
    if firmware.ble_model is not None:
        return MODEL_GATT_TABLES[firmware.ble_model]
    return gatt_for(firmware.kind)


@dataclass(frozen=True)
class Handles:
    """ATT handles assigned to a GATT table (services and characteristic values)."""

    services: dict[str, int]
    characteristics: dict[str, int]


def assign_handles(gatt: GattTable) -> Handles:
    """Number services and characteristics the way a GATT server lays them out."""
    services: dict[str, int] = {}
    characteristics: dict[str, int] = {}
    handle = 0x10
    for service in gatt:
        services[service.uuid] = handle
        handle += 1
        for char in service.characteristics:
            # Declaration, value, and room for a CCCD: three handles per characteristic.
            characteristics[char.uuid] = handle + 1
            handle += 3
    return Handles(services, characteristics)


class Central(Protocol):
    """What a peripheral needs of the central connected to it."""

    connected: dict[str, Peripheral]
    closed: bool
    """The central's process let go of its socket (its links may live on, orphaned)."""

    def post(self, message: dict[str, Any]) -> None:
        """Queue a message for the central."""


@dataclass(eq=False)
class Peripheral:
    """A firmware advertised and served over the simulated radio."""

    firmware: Firmware
    address: str
    gatt: GattTable
    rssi: int = DEFAULT_RSSI
    faults: LinkFaults = field(default_factory=LinkFaults)
    mtu: int = DEFAULT_MTU
    central: Central | None = None
    """The radio session connected to this peripheral, or None."""
    subscriptions: set[str] = field(default_factory=set)
    """Characteristics the connected central subscribed to."""
    wake: Wake = field(default_factory=Wake)
    """Set to run the firmware's tick loop now (a write, a fault)."""

    def __post_init__(self) -> None:
        self.address = self.address.upper()
        self.handles = assign_handles(self.gatt)
        self.characteristics: dict[str, CharacteristicSpec] = {
            c.uuid: c for s in self.gatt for c in s.characteristics
        }

    @property
    def name(self) -> str | None:
        """The advertised local name."""
        return self.firmware.ble_name

    @property
    def device_id(self) -> str:
        """The firmware's device id (what fault injection names it by)."""
        return self.firmware.device_id

    @property
    def advertised_uuids(self) -> list[str]:
        """Service UUIDs in the advertisement (the firmware's, else the GATT table's first)."""
        if not self.firmware.advertises_services:
            return []  # a unit that advertises its name only (the Coyotes)
        if self.firmware.service_uuids:
            return [normalize_uuid_str(u) for u in self.firmware.service_uuids]
        return [self.gatt[0].uuid] if self.gatt else []

    @property
    def default_notify_uuid(self) -> str | None:
        """Where untargeted firmware output goes: the first notifying characteristic."""
        for char in self.characteristics.values():
            if "notify" in char.properties or "indicate" in char.properties:
                return char.uuid
        return None

    def advert(self) -> dict[str, object]:
        """The advertisement as a wire message entry."""
        return {
            "address": self.address,
            "name": self.name,
            "service_uuids": self.advertised_uuids,
            "rssi": self.rssi,
        }

    def services_message(self) -> list[dict[str, object]]:
        """The GATT table with handles, as the connect reply carries it."""
        return [
            {
                "uuid": service.uuid,
                "handle": self.handles.services[service.uuid],
                "characteristics": [
                    {
                        "uuid": char.uuid,
                        "handle": self.handles.characteristics[char.uuid],
                        "properties": list(char.properties),
                    }
                    for char in service.characteristics
                ],
            }
            for service in self.gatt
        ]
