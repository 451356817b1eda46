"""bleak backends that reach the simulated radio instead of a Bluetooth adapter.

Pass them to the real bleak API and nothing else changes::

    BleakScanner(backend=SimBleakScanner, radio=path)
    BleakClient(address, backend=SimBleakClient, radio=path)

``radio`` (optional) is the radio's socket; without it ``default_radio_path()``
is used. A client built from a ``BLEDevice`` that a SimBleakScanner found
reuses that scanner's radio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast, get_args

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)
from bleak.uuids import normalize_uuid_str

from devices.links.sim_radio import default_radio_path
from simulator.ble.wire import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    Message,
    RadioConnection,
    hex_bytes,
)
from simulator.errors import RadioClosedError, RadioError

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.2
"""Seconds between two scans of the radio while a scanner runs."""
ABANDON_TIMEOUT = 0.5
"""Seconds to end a half-made link when a connect is cancelled or times out."""
MIN_MTU = 23
"""The ATT MTU before a connection negotiates a larger one."""
_PROPERTY_NAMES: frozenset[str] = frozenset(get_args(CharacteristicPropertyName))


def _radio_path(radio: Path | str | None, device: BLEDevice | str | None = None) -> Path:
    if radio is not None:
        return Path(radio)
    if isinstance(device, BLEDevice) and isinstance(device.details, dict):
        found = device.details.get("radio")
        if isinstance(found, str):
            return Path(found)
    return default_radio_path()


def _unavailable(err: RadioClosedError) -> BleakBluetoothNotAvailableError:
    return BleakBluetoothNotAvailableError(
        f"simulated radio not available: {err.reason}",
        BleakBluetoothNotAvailableReason.NO_BLUETOOTH,
    )


class SimBleakScanner(BaseBleakScanner):
    """A bleak scanner backend that lists the simulated radio's advertisements."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        radio: Path | str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        # Active and passive scans look alike here: the radio has no scan responses.
        self._scanning_mode = scanning_mode
        self.radio_path = _radio_path(radio)
        self._poll_interval = poll_interval
        self._request_timeout = request_timeout
        self._connection: RadioConnection | None = None
        self._poll_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start scanning: one scan now, then one every poll interval."""
        await self.stop()
        self.seen_devices = {}
        connection = RadioConnection(self.radio_path)
        try:
            await connection.open(DEFAULT_CONNECT_TIMEOUT)
            self._connection = connection
            await self._scan_once(connection)
        except RadioClosedError as err:
            await self.stop()
            raise _unavailable(err) from err
        except BaseException:
            await self.stop()
            raise
        self._poll_task = asyncio.create_task(
            self._poll(connection), name=f"sim-ble-scanner:{self.radio_path}"
        )

    async def stop(self) -> None:
        """Stop scanning and close the connection to the radio; safe to call twice."""
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _poll(self, connection: RadioConnection) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._scan_once(connection)
            except (RadioError, TimeoutError) as err:
                logger.warning("scanning the simulated radio failed, scan ends: %r", err)
                return

    async def _scan_once(self, connection: RadioConnection) -> None:
        reply = await connection.request("scan", timeout=self._request_timeout)
        for advert in reply.get("adverts", []):
            address = str(advert["address"])
            name = advert.get("name")
            uuids = [normalize_uuid_str(str(u)) for u in advert.get("service_uuids", [])]
            if not self.is_allowed_uuid(uuids):
                continue
            data = AdvertisementData(
                local_name=name,
                manufacturer_data={},
                service_data={},
                service_uuids=uuids,
                tx_power=None,
                rssi=int(advert.get("rssi", -127)),
                platform_data=(advert,),
            )
            device = self.create_or_update_device(
                address, address, name, {"radio": str(self.radio_path)}, data
            )
            try:
                self.call_detection_callbacks(device, data)
            except Exception:
                # One faulty callback must not stop the scan for the others.
                logger.exception("a detection callback failed for %s", address)


class SimBleakClient(BaseBleakClient):
    """A bleak client backend that talks GATT to a peripheral on the simulated radio."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        radio: Path | str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        # bleak also passes services=, bluez=, winrt=: nothing to filter or tune here.
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self.address = self.address.upper()
        self.radio_path = _radio_path(radio, address_or_ble_device)
        self._request_timeout = request_timeout
        self._connection: RadioConnection | None = None
        self._connected = False
        self._mtu = MIN_MTU
        self._name: str | None = None
        self._notify: dict[str, NotifyCallback] = {}

    # -- properties -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The advertised name, or the address with dashes before a connection."""
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        """The ATT MTU of this connection."""
        return self._mtu

    @property
    def is_connected(self) -> bool:
        """True while connected to the peripheral."""
        return self._connected and self._connection is not None and self._connection.is_open

    # -- connection -----------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect and discover services within the time-out; BleakDeviceNotFoundError if absent."""
        if self.is_connected:
            return
        await self._release()
        timeout = float(kwargs.get("timeout", self._timeout))
        connection = RadioConnection(
            self.radio_path, on_event=self._on_event, on_closed=self._on_radio_closed
        )
        try:
            async with asyncio.timeout(timeout):
                await connection.open(timeout)
                reply = await connection.request("connect", timeout=timeout, address=self.address)
        except RadioClosedError as err:
            await connection.close()
            raise _unavailable(err) from err
        except RadioError as err:
            await connection.close()
            if err.code in ("not_found", "unreachable"):
                raise BleakDeviceNotFoundError(
                    self.address, f"Device with address {self.address} was not found: {err}"
                ) from err
            raise BleakError(f"cannot connect to {self.address}: {err}") from err
        except BaseException:
            # Time-out or cancellation: the radio keeps a link whose process let go of it
            # (as BlueZ does), so a half-made one is ended explicitly before the socket closes.
            await self._abandon(connection)
            raise
        self._connection = connection
        self._mtu = int(reply.get("mtu", MIN_MTU))
        name = reply.get("name")
        self._name = name if isinstance(name, str) else None
        self.services = self._build_services(reply.get("services", []))
        self._connected = True
        if pair:
            await self.pair()
        logger.debug("connected to %s on %s", self.address, self.radio_path)

    async def disconnect(self) -> None:
        """Disconnect; safe to call when not connected, never leaves a task behind."""
        connection, self._connection = self._connection, None
        was_connected, self._connected = self._connected, False
        self._notify.clear()
        if connection is None:
            return
        if was_connected and connection.is_open:
            with contextlib.suppress(RadioError, TimeoutError):
                await connection.request(
                    "disconnect", timeout=self._request_timeout, address=self.address
                )
        await connection.close()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Simulated peripherals need no pairing: nothing to do."""
        logger.debug("pairing with simulated %s: nothing to do", self.address)

    async def unpair(self) -> None:
        """Simulated peripherals keep no bond: nothing to do."""
        logger.debug("unpairing simulated %s: nothing to do", self.address)

    async def _abandon(self, connection: RadioConnection) -> None:
        """End a link that connect() gave up on, bounded in time; never raises."""
        if connection.is_open:
            with contextlib.suppress(RadioError, TimeoutError):
                await connection.request(
                    "disconnect", timeout=ABANDON_TIMEOUT, address=self.address
                )
        await connection.close()

    @property
    def system_disconnect_route(self) -> str:
        """How another process ends this link (the host guard): the radio's Disconnect op."""
        return f"sim:{self.radio_path}"

    async def _release(self) -> None:
        """Finish a connection the radio dropped earlier."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def _build_services(self, services: list[Message]) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for entry in services:
            service = BleakGATTService(
                entry, int(entry["handle"]), normalize_uuid_str(entry["uuid"])
            )
            collection.add_service(service)
            for char in entry.get("characteristics", []):
                properties = [
                    cast(CharacteristicPropertyName, p)
                    for p in char.get("properties", [])
                    if p in _PROPERTY_NAMES
                ]
                collection.add_characteristic(
                    BleakGATTCharacteristic(
                        char,
                        int(char["handle"]),
                        normalize_uuid_str(char["uuid"]),
                        properties,
                        lambda: self._mtu - 3,
                        service,
                    )
                )
        return collection

    # -- events from the radio ----------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        if str(message.get("address", "")).upper() != self.address:
            return
        event = message.get("event")
        if event == "notify":
            callback = self._notify.get(normalize_uuid_str(str(message.get("uuid"))))
            if callback is not None:
                callback(bytearray(hex_bytes(message.get("data"))))
        elif event == "disconnected":
            self._lost(str(message.get("reason", "disconnected")))

    def _on_radio_closed(self) -> None:
        self._lost("the simulated radio went away")

    def _lost(self, reason: str) -> None:
        """The radio dropped the link: tell bleak's owner once, close the socket."""
        if not self._connected:
            return
        self._connected = False
        self._notify.clear()
        logger.info("%s disconnected: %s", self.address, reason)
        if self._connection is not None:
            self._connection.abort()
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected callback for %s failed", self.address)

    # -- GATT operations ------------------------------------------------------------------

    async def _request(self, op: str, **args: Any) -> Message:
        connection = self._connection
        if connection is None or not self.is_connected:
            raise BleakError("Not connected")
        try:
            return await connection.request(
                op, timeout=self._request_timeout, address=self.address, **args
            )
        except RadioError as err:
            if err.gatt is not None:
                raise BleakGATTProtocolError(err.gatt) from err
            if isinstance(err, RadioClosedError) or err.code == "not_connected":
                raise BleakError("Not connected") from err
            raise BleakError(f"{op} on {self.address} failed: {err}") from err

    async def read_gatt_char(
        self,
        characteristic: BleakGATTCharacteristic,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        """Read a characteristic's value from the peripheral (there is no cache)."""
        reply = await self._request("read", uuid=characteristic.uuid)
        return bytearray(hex_bytes(reply.get("data")))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write to a characteristic, with or without response."""
        await self._request(
            "write", uuid=characteristic.uuid, data=bytes(data).hex(), response=response
        )

    async def start_notify(
        self,
        characteristic: BleakGATTCharacteristic,
        callback: NotifyCallback,
        **kwargs: Any,
    ) -> None:
        """Subscribe to a characteristic's notifications."""
        # Registered first: the first notification may arrive right behind the reply.
        self._notify[characteristic.uuid] = callback
        try:
            await self._request("start_notify", uuid=characteristic.uuid)
        except BaseException:
            self._notify.pop(characteristic.uuid, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe from a characteristic's notifications."""
        self._notify.pop(characteristic.uuid, None)
        await self._request("stop_notify", uuid=characteristic.uuid)

    async def read_gatt_descriptor(
        self,
        descriptor: BleakGATTDescriptor,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        """Descriptors are not simulated."""
        raise BleakError(f"descriptor {descriptor.uuid} is not simulated")

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Descriptors are not simulated."""
        raise BleakError(f"descriptor {descriptor.uuid} is not simulated")
