"""Pairing: find a device, identify it, let the user feel it, and remember it.

Used by ``massaged pair`` (which asks the user to confirm the pulse) and by the
daemon's ``pair`` request (MQTT); both store the device through :func:`record_device`,
so both store exactly the same record.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from controller.store import DeviceRecord
from devices.capabilities import Capabilities, DeviceKind
from devices.errors import ConfigError, IdentificationError
from devices.kinds import guess_transport, kind_spec, make_device, model_spec

if TYPE_CHECKING:  # not at run time: a name check or a record needs no scanner (bleak)
    from controller.store import Store
    from devices.discovery import Found
    from devices.drivers.base import Device

logger = logging.getLogger(__name__)

PULSE_SECONDS = 1.0
"""How long the confirmation pulse lasts: short, gentle, unmistakable."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str) -> str:
    """A device name: letters, digits, '-' and '_' (it becomes an MQTT topic level)."""
    if not _NAME.match(name):
        raise ConfigError(
            f"device name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit (it becomes part of MQTT topics)"
        )
    return name


def default_name(kind: DeviceKind, taken: Iterable[str]) -> str:
    """belt, belt-2, belt-3, ... the first one not taken."""
    used = set(taken)
    if kind.value not in used:
        return kind.value
    n = 2
    while f"{kind.value}-{n}" in used:
        n += 1
    return f"{kind.value}-{n}"


def transport_for(address: str, found: Found | None) -> str:
    """serial or ble, from a scan result or the address's form."""
    if found is not None:
        return found.transport
    return guess_transport(address) or "ble"


def model_of(found: Found | None, kind: DeviceKind) -> str:
    """The model a scan named for a device of this kind ("" when none: see identify)."""
    return found.model if found is not None and found.kind == kind else ""


async def identify(
    kind: DeviceKind,
    address: str,
    *,
    transport: str,
    model: str = "",
    ble_backend: Any = None,
    ble_kwargs: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> tuple[Device, Capabilities]:
    """Connect and identify (HELLO / QUERY_INFO / BF-BE); the caller closes the device.

    model: the scan's (Found.model); "" tries the kind's default model, then the model of
    this kind the device shows itself to be (a Coyote V2 paired as "a butterfly").
    """
    try:
        return await _identify_as(kind, address, transport, model, ble_backend, ble_kwargs, timeout)
    except IdentificationError as err:
        found = err.found_model
        if model or not found or model_spec(found).kind != kind:
            raise  # a model named by the scan or the user, or a device of another kind
        logger.info("%s: not the %s's default model but a %s", address, kind.value, found)
        return await _identify_as(kind, address, transport, found, ble_backend, ble_kwargs, timeout)


async def _identify_as(
    kind: DeviceKind,
    address: str,
    transport: str,
    model: str,
    ble_backend: Any,
    ble_kwargs: Mapping[str, Any] | None,
    timeout: float,
) -> tuple[Device, Capabilities]:
    device = make_device(
        kind,
        address,
        model=model,
        transport="serial" if transport == "serial" else "ble",
        ble_backend=ble_backend,
        ble_kwargs=dict(ble_kwargs or {}),
    )
    try:
        caps = await device.connect(timeout=timeout)
    except BaseException:
        await device.close()
        raise
    return device, caps


async def confirmation_pulse(device: Device, seconds: float = PULSE_SECONDS) -> None:
    """A short, gentle pulse the user can feel, then everything off."""
    output = kind_spec(device.capabilities.kind).pulse(device.capabilities)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        device.renew_lease(0.5)
        await device.apply(output)
        while (left := end - loop.time()) > 0:
            device.renew_lease(0.5)
            await asyncio.sleep(min(0.1, left))
    finally:
        await device.stop()


def kind_of(found: Found | None, kind: str | None, address: str) -> DeviceKind:
    """The kind from a scan result or the user's word."""
    if kind is not None:
        try:
            return DeviceKind(kind)
        except ValueError:
            valid = ", ".join(k.value for k in DeviceKind)
            raise ConfigError(f"unknown kind {kind!r}; valid: {valid}") from None
    if found is not None:
        return found.kind
    raise ConfigError(
        f"{address}: not found by a scan; say which kind it is with --kind belt|pillow|butterfly"
    )


def record_device(
    store: Store,
    kind: DeviceKind,
    address: str,
    *,
    transport: str,
    capabilities: Capabilities,
    name: str | None = None,
) -> DeviceRecord:
    """Register an identified device: under name (checked), or the kind's first free name."""
    taken = [r.name for r in store.list_devices()]
    record_name = check_name(name) if name else default_name(kind, taken)
    return store.add_device(
        DeviceRecord(
            name=record_name,
            kind=kind,
            address=address,
            transport=transport,
            model=capabilities.model,
            firmware=capabilities.firmware,
            serial=capabilities.serial,
        )
    )
