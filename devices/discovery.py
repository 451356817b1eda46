"""Finding massage devices: BLE advertisements and USB serial ports (or the simulator's).

BLE devices are recognised by the models table (``devices.kinds.classify``):
by name prefix first (real DG-LAB Coyotes do not advertise their services),
then by advertised service; serial belts by their USB product string. In
simulator mode (``radio_path`` given) the BLE scan goes through the simulated
radio and its serial endpoints are listed too (``devices.links.sim_radio``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from devices.capabilities import DeviceKind
from devices.errors import BluetoothUnavailableError, LinkError
from devices.kinds import MODELS, classify, model_spec
from devices.links import sim_radio
from devices.links.ble import bluetooth_unavailable

logger = logging.getLogger(__name__)

DEFAULT_SCAN_TIMEOUT = 5.0
"""Seconds to listen for BLE advertisements."""
START_GRACE = 5.0
"""Seconds allowed on top of the scan time for starting and stopping the scanner."""
SERIAL_LIST_TIMEOUT = 5.0
"""Seconds to enumerate serial ports or ask the simulated radio for its endpoints."""

Transport = Literal["ble", "serial"]
ListSerialPorts = Callable[..., list[tuple[str, str]]]


@dataclass(frozen=True)
class Found:
    """One device found: its kind, where to reach it and how well it is heard."""

    kind: DeviceKind
    address: str
    """BLE address, or serial port path."""
    name: str
    transport: Transport
    rssi: int | None
    """Signal strength in dBm (BLE only)."""
    model: str = ""
    """The device model (devices.kinds.MODELS), "" when only the kind is known."""


async def scan(
    timeout: float = DEFAULT_SCAN_TIMEOUT,
    *,
    scanner_backend: type[BaseBleakScanner] | None = None,
    scanner_kwargs: dict[str, Any] | None = None,
    include_serial: bool = True,
    radio_path: Path | None = None,
    settle: float | None = None,
) -> list[Found]:
    """Every device found in timeout seconds.

    settle: end the Bluetooth scan this many seconds after the last new device was heard
    (once one has been), sooner than timeout: for a radio whose every device advertises
    within settle (the simulator's does at once), not for a real room, where a unit may
    advertise once in seconds.

    Raises LinkError when every source failed, or when the Bluetooth scan failed and
    nothing was found (BluetoothUnavailableError when there is no Bluetooth at all).
    """
    backend = scanner_backend
    kwargs = dict(scanner_kwargs or {})
    if radio_path is not None:
        # Simulator mode: loaded only here, so a daemon on hardware never loads the simulator.
        simulated = sim_radio.scanner_backend()
        backend = backend or simulated
        if issubclass(backend, simulated):
            kwargs.setdefault("radio", radio_path)

    sources: dict[str, Coroutine[Any, Any, list[Found]]] = {
        "ble": _scan_ble(timeout, backend, kwargs, settle)
    }
    if include_serial:
        sources["serial ports"] = _scan_serial_ports()
        if radio_path is not None:
            sources["simulated serial"] = _scan_radio_serial(radio_path)
    results = await asyncio.gather(*sources.values(), return_exceptions=True)

    found: dict[tuple[str, str], Found] = {}
    errors: list[str] = []
    failures: dict[str, Exception] = {}
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            logger.info("discovery: %s failed: %r", source, result)
            errors.append(f"{source}: {result!r}")
            failures[source] = result
            continue
        for item in result:
            found.setdefault((item.transport, item.address), item)
    ble_error = failures.get("ble")
    if ble_error is not None and not found:
        # "Nothing found" would send the user looking for a device when the fault is here.
        raise _ble_failure(ble_error, radio_path) from ble_error
    if errors and len(errors) == len(sources):
        raise LinkError("discovery failed: " + "; ".join(errors))
    for error in errors:
        # A partial result is still a result: say what is missing from it, once.
        logger.warning("discovery: %s", error)
    return sorted(found.values(), key=lambda f: (f.kind.value, f.transport, f.address))


def _ble_failure(err: Exception, radio_path: Path | None) -> LinkError:
    """The error a scan that found nothing ends in when its Bluetooth part failed."""
    if radio_path is not None:
        if bluetooth_unavailable(err) is not None:
            return BluetoothUnavailableError(
                f"no simulated radio at {radio_path}: is 'massaged simulate' running?"
            )
        return LinkError(f"the scan of the simulated radio at {radio_path} failed: {err}")
    why = bluetooth_unavailable(err)
    if why is not None:
        return BluetoothUnavailableError(why)
    if isinstance(err, TimeoutError):
        return LinkError(f"the Bluetooth scan did not end within {START_GRACE:g} s of its time")
    return LinkError(f"the Bluetooth scan failed: {err or type(err).__name__}")


async def _scan_ble(
    timeout: float,
    backend: type[BaseBleakScanner] | None,
    kwargs: dict[str, Any],
    settle: float | None = None,
) -> list[Found]:
    found: dict[str, Found] = {}
    heard = asyncio.Event()

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        name = adv.local_name or device.name
        spec = classify(name, adv.service_uuids)
        if spec is not None:
            if device.address not in found:
                heard.set()
            found[device.address] = Found(
                spec.kind, device.address, name or device.address, "ble", adv.rssi, spec.model
            )

    async with (
        asyncio.timeout(timeout + START_GRACE),
        BleakScanner(on_advertisement, backend=backend, **kwargs),
    ):
        if settle is None:
            await asyncio.sleep(timeout)
        else:
            await _until_settled(heard, timeout, settle)
    logger.info("discovery: %d BLE device(s)", len(found))
    return list(found.values())


async def _until_settled(heard: asyncio.Event, timeout: float, settle: float) -> None:
    """Wait until settle seconds pass with no new device after one was heard, or timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    # Heard already (as the scanner started), or not yet: then the whole scan.
    quiet_until = loop.time() + settle if heard.is_set() else end
    while (now := loop.time()) < min(end, quiet_until):
        heard.clear()
        try:
            async with asyncio.timeout(min(end, quiet_until) - now):
                await heard.wait()
        except TimeoutError:
            return
        quiet_until = loop.time() + settle


async def _scan_serial_ports() -> list[Found]:
    try:
        module = importlib.import_module("devices.links.serial")
    except ImportError:
        logger.debug("discovery: no serial link module, serial ports not listed")
        return []
    list_ports = cast(ListSerialPorts, module.list_serial_ports)
    found: list[Found] = []
    for spec in MODELS.values():
        if spec.usb_product_prefix is None:
            continue
        async with asyncio.timeout(SERIAL_LIST_TIMEOUT):
            ports = await asyncio.to_thread(list_ports, product_prefix=spec.usb_product_prefix)
        found += [
            Found(spec.kind, path, description or path, "serial", None, spec.model)
            for path, description in ports
        ]
    return found


async def _scan_radio_serial(radio_path: Path) -> list[Found]:
    out: list[Found] = []
    for entry in await sim_radio.list_serial(radio_path, SERIAL_LIST_TIMEOUT):
        try:
            kind = DeviceKind(entry["kind"])
        except (KeyError, ValueError):
            logger.warning("discovery: simulated serial endpoint of unknown kind: %r", entry)
            continue
        model = model_spec(str(entry.get("model", "")), kind)
        out.append(
            Found(kind, str(entry["path"]), str(entry.get("id", "")), "serial", None, model.model)
        )
    return out
