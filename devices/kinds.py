"""The device kinds massaged drives, as one table: driver, discovery data and links.

Everything that differs between kinds lives in ``KINDS``; ``make_device`` builds
a driver over the right link from a kind and an address.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from devices.capabilities import DeviceKind
from devices.drivers.base import Device
from devices.drivers.eb1 import EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from devices.errors import ConfigError
from devices.links.base import Link
from devices.protocols import eb1, sp1, vb1

logger = logging.getLogger(__name__)

Transport = Literal["serial", "ble"]


class LinkOptions(NamedTuple):
    """What a link factory may need besides the address."""

    ble_backend: Any = None
    """A bleak client backend class (the simulator's SimBleakClient), None for the platform's."""
    ble_kwargs: Mapping[str, Any] | None = None
    """Extra keyword arguments for the BleakClient."""


LinkFactory = Callable[["KindSpec", str, LinkOptions], Link]


class KindSpec(NamedTuple):
    """Everything kind-specific: the driver, how to find the device and how to reach it."""

    kind: DeviceKind
    driver: Callable[..., Device]
    """The driver class, called as driver(link, name=..., **driver_opts)."""
    model: str
    ble_name_prefix: str
    service_uuids: tuple[str, ...]
    write_uuid: str
    notify_uuids: tuple[str, ...]
    write_response: bool
    """BLE writes with response (EB1's 0x150A is "write"; the others write without)."""
    serial: bool
    """The device also comes as a USB serial model."""
    baudrate: int | None
    usb_product_prefix: str | None
    default_link: LinkFactory
    """The link for an address that names no transport by its form."""


def serial_link(spec: KindSpec, address: str, options: LinkOptions) -> Link:
    """A serial port (path or pyserial URL) for a kind with a serial model."""
    if not spec.serial or spec.baudrate is None:
        raise ConfigError(f"a {spec.model} {spec.kind.value} has no serial model: {address!r}")
    # Imported here: the serial link pulls in pyserial, which BLE-only setups do not need.
    from devices.links.serial import SerialLink

    return SerialLink(address, baudrate=spec.baudrate)


def ble_link(spec: KindSpec, address: str, options: LinkOptions) -> Link:
    """A BLE connection with the kind's write and notify characteristics."""
    # Imported here: bleak is heavy and not needed to drive a serial belt.
    from devices.links.ble import BleLink

    return BleLink(
        address,
        write_uuid=spec.write_uuid,
        notify_uuids=spec.notify_uuids,
        write_response=spec.write_response,
        client_backend=options.ble_backend,
        client_kwargs=dict(options.ble_kwargs or {}),
    )


KINDS: dict[DeviceKind, KindSpec] = {
    DeviceKind.BELT: KindSpec(
        kind=DeviceKind.BELT,
        driver=VB1Driver,
        model="VB1",
        ble_name_prefix=vb1.BLE_NAME_PREFIX,
        service_uuids=(vb1.NUS_SERVICE,),
        write_uuid=vb1.NUS_RX,
        notify_uuids=(vb1.NUS_TX,),
        write_response=False,
        serial=True,
        baudrate=vb1.BAUDRATE,
        usb_product_prefix=vb1.USB_PRODUCT_PREFIX,
        default_link=serial_link,
    ),
    DeviceKind.PILLOW: KindSpec(
        kind=DeviceKind.PILLOW,
        driver=SP1Driver,
        model="SP1",
        ble_name_prefix=sp1.BLE_NAME_PREFIX,
        service_uuids=(sp1.SERVICE_UUID,),
        write_uuid=sp1.DATA_UUID,
        notify_uuids=(sp1.DATA_UUID,),
        write_response=False,
        serial=False,
        baudrate=None,
        usb_product_prefix=None,
        default_link=ble_link,
    ),
    DeviceKind.BUTTERFLY: KindSpec(
        kind=DeviceKind.BUTTERFLY,
        driver=EB1Driver,
        model="EB1",
        ble_name_prefix=eb1.BLE_NAME_PREFIX,
        service_uuids=(eb1.SERVICE_UUID, eb1.BATTERY_SERVICE_UUID),
        write_uuid=eb1.WRITE_UUID,
        notify_uuids=(eb1.NOTIFY_UUID, eb1.BATTERY_UUID),
        write_response=True,
        serial=False,
        baudrate=None,
        usb_product_prefix=None,
        default_link=ble_link,
    ),
}
"""Every device kind and what massaged needs to know to drive it."""

_SERIAL_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WINDOWS_PORT = re.compile(r"^(\\\\\.\\)?COM\d+$", re.IGNORECASE)
_BLE_MAC = re.compile(r"^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$", re.IGNORECASE)
_BLE_UUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)


def guess_transport(address: str) -> Transport | None:
    """ "serial" for a path or pyserial URL, "ble" for a MAC or CoreBluetooth UUID, else None."""
    if address.startswith(("/", "./", "../", "~")) or _SERIAL_URL.match(address):
        return "serial"
    if _WINDOWS_PORT.match(address):
        return "serial"
    if _BLE_MAC.match(address) or _BLE_UUID.match(address):
        return "ble"
    return None


def kind_spec(kind: DeviceKind | str) -> KindSpec:
    """The table entry of a kind given as DeviceKind or its name; ConfigError if unknown."""
    try:
        return KINDS[DeviceKind(kind)]
    except ValueError:
        names = ", ".join(k.value for k in DeviceKind)
        raise ConfigError(f"device kind {kind!r} is not one of {names}") from None


def make_link(
    kind: DeviceKind | str,
    address: str,
    *,
    transport: Transport | None = None,
    ble_backend: Any = None,
    ble_kwargs: Mapping[str, Any] | None = None,
) -> Link:
    """The link to a device of this kind at this address."""
    spec = kind_spec(kind)
    options = LinkOptions(ble_backend=ble_backend, ble_kwargs=ble_kwargs)
    chosen = transport or guess_transport(address)
    if chosen == "serial":
        return serial_link(spec, address, options)
    if chosen == "ble":
        return ble_link(spec, address, options)
    if chosen is not None:
        raise ConfigError(f"transport must be 'serial' or 'ble', not {chosen!r}")
    return spec.default_link(spec, address, options)


def make_device(
    kind: DeviceKind | str,
    address: str,
    *,
    transport: Transport | None = None,
    name: str | None = None,
    ble_backend: Any = None,
    ble_kwargs: Mapping[str, Any] | None = None,
    **driver_opts: Any,
) -> Device:
    """A driver for a device of this kind at this address, not yet connected."""
    spec = kind_spec(kind)
    link = make_link(
        spec.kind, address, transport=transport, ble_backend=ble_backend, ble_kwargs=ble_kwargs
    )
    logger.debug("%s: %s over %s", name or address, spec.model, type(link).__name__)
    return spec.driver(link, name=name, **driver_opts)
