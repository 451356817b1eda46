"""A Bluetooth LE link over bleak: GATT writes out, notifications in.

The same code drives hardware (bleak's platform backend) and the simulator
(``client_backend=SimBleakClient``); only the backend class differs.

Every open link is also listed in :data:`HELD_LINKS`, with how another process
can end it: on Linux BlueZ keeps a connection up after the process that opened
it dies or freezes, so the host guard (``controller.guard``) must be able to
end it from outside.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)
from bleak.uuids import normalize_uuid_str

from devices.errors import (
    BluetoothUnavailableError,
    DeviceTimeoutError,
    IdentificationError,
    LinkError,
    LinkLostError,
)
from devices.links.base import (
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    Hex,
    Link,
)

logger = logging.getLogger(__name__)

NotificationHandler = Callable[[BleakGATTCharacteristic, bytearray], None]

CLOSE_TIMEOUT = 2.0
"""Seconds close() waits for a clean BLE disconnect before giving up on it."""
DEFAULT_ADAPTER = "hci0"
"""The BlueZ adapter a client uses when none is named."""

HeldLinksListener = Callable[[str, str | None], None]
"""Called with (address, route) when a link is held, (address, None) when it is let go."""


class HeldLinks:
    """The BLE links this process holds, and how another process can end each one."""

    def __init__(self) -> None:
        self._links: dict[str, str] = {}
        self._listeners: list[HeldLinksListener] = []

    def hold(self, address: str, route: str) -> None:
        """Note a link as held; route says how to end it ("bluez:<path>" or "sim:<radio>")."""
        self._links[address] = route
        self._tell(address, route)

    def free(self, address: str) -> None:
        """Note a link as ended (disconnected or lost)."""
        if self._links.pop(address, None) is not None:
            self._tell(address, None)

    def snapshot(self) -> dict[str, str]:
        """Every held link: address -> route."""
        return dict(self._links)

    def subscribe(self, listener: HeldLinksListener) -> Callable[[], None]:
        """Call listener on every change; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _tell(self, address: str, route: str | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(address, route)
            except Exception:
                # The link itself must not fail because a watcher did.
                logger.exception("held-links listener failed for %s", address)


HELD_LINKS = HeldLinks()
"""This process's held BLE links (one process-wide list: the host guard reads it)."""


def system_disconnect_route(
    client: BleakClient, address: str, client_kwargs: Mapping[str, Any]
) -> str | None:
    """How a process other than this one ends client's link, or None where none is needed."""
    backend = getattr(client, "_backend", None)
    route = getattr(backend, "system_disconnect_route", None)
    if isinstance(route, str):
        return route  # the simulator's radio
    if not sys.platform.startswith("linux"):
        # CoreBluetooth and WinRT end a process's connections when it exits.
        return None
    path = getattr(backend, "_device_path", None)
    if not isinstance(path, str) or not path:
        bluez = client_kwargs.get("bluez")
        adapter = bluez.get("adapter") if isinstance(bluez, Mapping) else None
        adapter = adapter or client_kwargs.get("adapter") or DEFAULT_ADAPTER
        path = f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"
    return f"bluez:{path}"


class BleLink(Link):
    """A connection to one BLE peripheral through the real bleak.BleakClient."""

    def __init__(
        self,
        address: str,
        *,
        write_uuid: str,
        notify_uuids: tuple[str, ...],
        write_response: bool = False,
        client_backend: type[BaseBleakClient] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(address)
        self.write_uuid = normalize_uuid_str(write_uuid)
        self.notify_uuids = tuple(normalize_uuid_str(u) for u in notify_uuids)
        self.write_response = write_response
        self.client_backend = client_backend
        self.client_kwargs = dict(client_kwargs or {})
        self._client: BleakClient | None = None
        self._open = False
        self._closing = False
        self._lost_reported = False

    @property
    def is_open(self) -> bool:
        """True while connected and subscribed."""
        return self._open and self._client is not None and self._client.is_connected

    async def open(self, timeout: float = DEFAULT_OPEN_TIMEOUT) -> None:
        """Connect, discover services and subscribe to every notify UUID within the time-out."""
        if self.is_open:
            return
        await self._drop_client()
        self._closing = False
        self._lost_reported = False
        client = BleakClient(
            self.address,
            disconnected_callback=self._on_disconnected,
            backend=self.client_backend,
            timeout=timeout,
            **self.client_kwargs,
        )
        self._client = client
        try:
            async with asyncio.timeout(timeout):
                await client.connect()
                # Listed before anything else can fail or hang: the link is up from here.
                route = system_disconnect_route(client, self.address, self.client_kwargs)
                if route is not None:
                    HELD_LINKS.hold(self.address, route)
                self._check_services(client)
                for uuid in self.notify_uuids:
                    await client.start_notify(uuid, self._notification_handler(uuid))
        except TimeoutError as err:
            await self._drop_client()
            raise DeviceTimeoutError(
                f"no BLE connection within {timeout:g} s", device=self.address
            ) from err
        except BleakDeviceNotFoundError as err:
            await self._drop_client()
            raise LinkError(f"BLE device not found: {err}", device=self.address) from err
        except (BleakError, OSError) as err:
            await self._drop_client()
            if (why := bluetooth_unavailable(err)) is not None:
                raise BluetoothUnavailableError(why, device=self.address) from err
            raise LinkError(f"cannot connect over BLE: {err}", device=self.address) from err
        except BaseException:
            # Cancelled, or not the device expected: release the connection first.
            await self._drop_client()
            raise
        self._open = True
        logger.info("%s: BLE link open", self.address)

    def _check_services(self, client: BleakClient) -> None:
        """IdentificationError naming what the device is when it lacks our characteristics."""
        services = client.services
        wanted = (self.write_uuid, *self.notify_uuids)
        if all(services.get_characteristic(uuid) is not None for uuid in wanted):
            return
        # Imported here: the models table imports every driver, which a link does not need.
        from devices.kinds import MODELS

        expected = next((m for m in MODELS.values() if m.write_uuid == self.write_uuid), None)
        offered = {normalize_uuid_str(s.uuid) for s in services}
        actual = [
            m
            for m in MODELS.values()
            if m is not expected and any(normalize_uuid_str(u) in offered for u in m.service_uuids)
        ]
        what = f"a {expected.kind.value}" if expected is not None else "the expected device"
        seems = f": it offers a {actual[0].kind.value}'s services" if actual else ""
        if expected is not None and actual and actual[0].kind == expected.kind:
            # Two models of one kind (EB1, Coyote V2): only the model tells them apart.
            what = f"{what} of model {expected.model}"
            seems = f": it offers the services of model {actual[0].model}"
        raise IdentificationError(
            f"{self.address} is not {what}{seems}",
            found_model=actual[0].model if actual else None,
        )

    async def close(self) -> None:
        """Disconnect; never raises, safe to call twice, no lost callback."""
        self._closing = True
        self._open = False
        await self._drop_client()

    async def write(
        self, data: bytes, *, target: str | None = None, timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> None:
        """Write to a characteristic (default: the write UUID); LinkLostError on any failure."""
        client = self._client
        if client is None or not self.is_open:
            raise LinkLostError("BLE link is not open", device=self.address)
        uuid = self.write_uuid if target is None else normalize_uuid_str(target)
        logger.debug("%s -> %s %s", self.address, uuid, Hex(data))
        try:
            async with asyncio.timeout(timeout):
                await client.write_gatt_char(uuid, data, response=self.write_response)
        except TimeoutError as err:
            raise LinkLostError(
                f"BLE write not taken within {timeout:g} s", device=self.address
            ) from err
        except (BleakError, OSError) as err:
            raise LinkLostError(f"BLE write failed: {err}", device=self.address) from err

    async def read(self, target: str, *, timeout: float = DEFAULT_READ_TIMEOUT) -> bytes:
        """Read a characteristic; DeviceTimeoutError, LinkLostError or LinkError on failure."""
        client = self._client
        if client is None or not self.is_open:
            raise LinkLostError("BLE link is not open", device=self.address)
        uuid = normalize_uuid_str(target)
        try:
            async with asyncio.timeout(timeout):
                data = await client.read_gatt_char(uuid)
        except TimeoutError as err:
            raise DeviceTimeoutError(
                f"no answer to a read of {uuid} within {timeout:g} s", device=self.address
            ) from err
        except (BleakError, OSError) as err:
            if not client.is_connected:
                raise LinkLostError(f"BLE read failed: {err}", device=self.address) from err
            raise LinkError(f"cannot read {uuid}: {err}", device=self.address) from err
        logger.debug("%s read %s: %s", self.address, uuid, Hex(data))
        return bytes(data)

    def _notification_handler(self, uuid: str) -> NotificationHandler:
        def handler(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            self._deliver(uuid, bytes(data))

        return handler

    def _on_disconnected(self, client: BleakClient) -> None:
        if client is not self._client:
            return  # a client already given up by close() or a new open()
        was_open, self._open = self._open, False
        HELD_LINKS.free(self.address)
        if self._closing or self._lost_reported or not was_open:
            return
        self._lost_reported = True
        self._report_lost("BLE peripheral disconnected")

    async def _drop_client(self) -> None:
        """Disconnect the current client, bounded in time; never raises."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await client.disconnect()
        except Exception as err:
            # The link may still be up (BlueZ keeps it): it stays listed for the guard.
            logger.debug("%s: BLE disconnect failed: %r", self.address, err)
        else:
            HELD_LINKS.free(self.address)


_NO_BLUEZ = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)
"""D-Bus errors that mean BlueZ (org.bluez) is not running."""


def bluetooth_unavailable(err: BaseException) -> str | None:
    """A sentence when err means this machine cannot use Bluetooth at all, else None."""
    if isinstance(err, BleakBluetoothNotAvailableError):
        # str() of this error shows its (message, reason) tuple: the message alone reads well.
        message = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
        return f"Bluetooth is unavailable: {message.rstrip('.')}"
    if isinstance(err, BleakDBusError) and err.dbus_error in _NO_BLUEZ:
        return "Bluetooth is unavailable: BlueZ (bluetoothd) is not running"
    if isinstance(err, FileNotFoundError | ConnectionRefusedError):
        # bleak reaches BlueZ over the system D-Bus socket; without it there is no Bluetooth.
        return "Bluetooth is unavailable: no system D-Bus to reach BlueZ (bluetoothd)"
    return None
