"""The simulated BLE radio: serves firmware models as GATT peripherals on a Unix socket.

Centrals are bleak backend objects (``simulator.ble.backend``) in any process;
each opens one socket connection (protocol: ``simulator.ble.wire``).

What happens to a link when the process that opened it dies is BlueZ's rule
by default: the link outlives its host. BlueZ keeps an LE connection up after
the process that asked for it exits or is killed (bleak issues #1222, #315),
so the peripheral stays connected and a device without a watchdog of its own
(the SP1 pillow) goes on running. Here a central's socket closing without a
``disconnect`` leaves its links *orphaned*: the firmware still sees a
connection, nobody hears its notifications, and any process may take the link
over with ``connect`` (as a new process may connect to a device BlueZ already
holds) or end it with ``device_disconnect`` (``org.bluez.Device1.Disconnect``,
which any process on the system bus may call). ``SimRadio(...,
links_outlive_host=False)`` gives the kinder, older model instead: a central's
socket closing drops every link it held. The radio also lists the simulator's
serial endpoints and takes fault injection for every simulated device by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from devices.links.sim_radio import default_radio_path
from simulator.ble.peripheral import (
    DEFAULT_RSSI,
    Central,
    GattTable,
    Peripheral,
    gatt_for_firmware,
    normalize_uuid_str,
)
from simulator.ble.wire import (
    MAX_LINE,
    SEND_TIMEOUT,
    Message,
    close_writer,
    hex_bytes,
    read_message,
    send_message,
)
from simulator.errors import RadioError, WireError
from simulator.faults import LinkFaults, check_fault_value
from simulator.firmware.base import Firmware
from simulator.firmware.physics import SETTLED_STEP

logger = logging.getLogger(__name__)

__all__ = [
    "LINK_FAULTS",
    "PHYSICAL_FAULTS",
    "SerialEndpoint",
    "SimRadio",
    "default_radio_path",
]

MAX_TICK_WAIT = SETTLED_STEP
"""Longest sleep of a tick loop (a firmware with no deadline still ticks this often).

A LinkFaults changed in-process wakes the loop at once (LinkFaults.watch)."""
STALE_PROBE_TIMEOUT = 0.5
"""Seconds to find out whether a leftover socket file still has a radio behind it."""
LINK_FAULTS = ("link_down", "link_up", "corrupt", "drop", "delay", "split", "clear")
"""Fault names that act on a device's LinkFaults."""
PHYSICAL_FAULTS = ("press_stop_button", "overheat", "set_occupied", "turn_wheel")
"""Fault names dispatched to a firmware method of that name, when the firmware has one."""
_FAULT_DEFAULTS: dict[str, float] = {"corrupt": 0.1, "drop": 0.5, "delay": 0.2}


@dataclass
class SerialEndpoint:
    """A simulated serial device the radio lists and injects faults into."""

    kind: str
    path: str
    device_id: str
    firmware: Firmware | None = None
    faults: LinkFaults | None = None
    wake: Callable[[], None] | None = None
    """Called after a fault so the endpoint runs its firmware now."""


class AttError(enum.IntEnum):
    """The ATT error codes the radio answers with (Bluetooth Core, Vol 3, Part F, 3.4.1.1).

    The same values as bleak's BleakGATTProtocolErrorCode, which the backend raises
    from them; defined here so that serving the radio does not import bleak.
    """

    INVALID_HANDLE = 0x01
    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    REQUEST_NOT_SUPPORTED = 0x06
    ATTRIBUTE_NOT_FOUND = 0x0A
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D


def _gatt_error(code: AttError, message: str) -> RadioError:
    return RadioError("gatt", message, gatt=int(code))


def _flip_one_bit(faults: LinkFaults, data: bytes) -> bytes:
    """Corrupt about corrupt_rate of BLE messages, one bit each (the LinkFaults contract)."""
    if not data or faults.corrupt_rate <= 0 or faults.rng.random() >= faults.corrupt_rate:
        return data
    out = bytearray(data)
    out[faults.rng.randrange(len(out))] ^= 1 << faults.rng.randrange(8)
    return bytes(out)


class _Session:
    """One central's socket connection: an ordered outbox and the peripherals it holds."""

    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer
        self.connected: dict[str, Peripheral] = {}
        self.closed = False
        self.writer_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Message | None] = asyncio.Queue()

    def __repr__(self) -> str:
        return f"<central #{self.number}>"

    def post(self, message: Message) -> None:
        """Queue a message for the central without waiting (a slow central never stalls us)."""
        if not self.closed:
            self._outbox.put_nowait(message)

    def finish(self) -> None:
        """Let the writer send what is queued, then stop."""
        self._outbox.put_nowait(None)

    async def write_loop(self) -> None:
        """Send queued messages in order; a central that stops reading is cut off."""
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            try:
                await send_message(self.writer, message, timeout=SEND_TIMEOUT)
            except (OSError, RuntimeError, TimeoutError) as err:
                logger.info("%r: cannot send, dropping it: %r", self, err)
                self.closed = True
                # Closing the transport ends the reader too, which releases the peripherals.
                self.writer.close()
                return


class SimRadio:
    """Serves simulated BLE peripherals (and lists serial endpoints) on a Unix socket."""

    def __init__(
        self,
        socket_path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        links_outlive_host: bool = True,
    ) -> None:
        self.socket_path = socket_path
        self.clock = clock
        self.links_outlive_host = links_outlive_host
        """BlueZ's rule (the default): a central's socket closing leaves its links up."""
        self.peripherals: dict[str, Peripheral] = {}
        """Address (upper case) -> peripheral."""
        self.serial: dict[str, SerialEndpoint] = {}
        """Device id -> serial endpoint."""
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._session_numbers = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._timers: dict[str, set[asyncio.TimerHandle]] = {}
        self._in_flight: dict[str, deque[tuple[float, Central, Message]]] = {}
        """Per peripheral, notifications on their way (delay fault), in the order sent."""

    # -- setup ------------------------------------------------------------------

    def add_peripheral(
        self,
        firmware: Firmware,
        *,
        address: str,
        rssi: int = DEFAULT_RSSI,
        faults: LinkFaults | None = None,
        gatt: GattTable | None = None,
    ) -> Peripheral:
        """Advertise a firmware at an address with a GATT table (default: its model's)."""
        peripheral = Peripheral(
            firmware=firmware,
            address=address,
            gatt=gatt if gatt is not None else gatt_for_firmware(firmware),
            rssi=rssi,
            faults=faults if faults is not None else LinkFaults(),
        )
        if peripheral.address in self.peripherals:
            raise ValueError(f"address {peripheral.address} is already in use")
        self.peripherals[peripheral.address] = peripheral
        self._timers[peripheral.address] = set()
        # A fault set in-process (link_down by a test) is handled now, not at the next tick.
        peripheral.faults.watch(peripheral.wake.set)
        if self._server is not None:
            self._start_peripheral(peripheral)
        logger.info("peripheral %s %s (%s)", peripheral.address, peripheral.name, firmware.kind)
        return peripheral

    def register_serial(
        self,
        kind: str,
        path: str | Path,
        device_id: str,
        *,
        firmware: Firmware | None = None,
        faults: LinkFaults | None = None,
        wake: Callable[[], None] | None = None,
    ) -> SerialEndpoint:
        """List a simulated serial device (and let faults reach its firmware and link)."""
        endpoint = SerialEndpoint(str(kind), str(path), device_id, firmware, faults, wake)
        self.serial[device_id] = endpoint
        return endpoint

    # -- lifecycle --------------------------------------------------------------

    @property
    def is_serving(self) -> bool:
        """True between start() and close()."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on the socket (mode 0600) and start every peripheral's firmware loop."""
        if self._server is not None:
            return
        sock = await self._bind()
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        for peripheral in self.peripherals.values():
            self._start_peripheral(peripheral)
        logger.info("simulated radio listening on %s", self.socket_path)

    async def close(self) -> None:
        """Disconnect every central, stop every loop, remove the socket; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for peripheral in self.peripherals.values():
            self._drop_central(peripheral, "radio shut down", tell_central=True)
        writers = [s.writer_task for s in self._sessions if s.writer_task is not None]
        for session in list(self._sessions):
            session.finish()
        # Centrals get a moment to receive their "disconnected"; then their sockets close,
        # which ends each handler normally (the server frowns on cancelled handlers).
        if writers:
            await asyncio.wait(writers, timeout=SEND_TIMEOUT / 4)
        for session in list(self._sessions):
            session.writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=SEND_TIMEOUT)
        tasks = [*self._tasks.values(), *self._handlers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._handlers.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SEND_TIMEOUT):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        logger.info("simulated radio on %s closed", self.socket_path)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _bind(self) -> socket.socket:
        path = self.socket_path
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        if path.parent.stat().st_uid != os.getuid():
            # Someone else's directory (a squatted /tmp/massaged-<uid>) could intercept centrals.
            raise RadioError("bad_request", f"{path.parent} is not owned by this user")
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise RadioError("bad_request", f"{path} exists and is not a socket")
            if await self._someone_listens(path):
                raise RadioError("busy", f"another simulated radio already listens on {path}")
            logger.info("removing stale radio socket %s", path)
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            # Nobody can connect before listen(), which start_unix_server does after this.
            os.chmod(path, 0o600)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    @staticmethod
    async def _someone_listens(path: Path) -> bool:
        try:
            async with asyncio.timeout(STALE_PROBE_TIMEOUT):
                _, writer = await asyncio.open_unix_connection(path)
        except (OSError, TimeoutError):
            return False
        await close_writer(writer)
        return True

    # -- firmware loops -----------------------------------------------------------

    def _start_peripheral(self, peripheral: Peripheral) -> None:
        self._tasks[peripheral.address] = asyncio.create_task(
            self._run_firmware(peripheral), name=f"sim-ble:{peripheral.address}"
        )

    async def _run_firmware(self, p: Peripheral) -> None:
        """Tick the firmware at its deadlines (or on a wake), connected or not."""
        loop = asyncio.get_running_loop()
        while True:
            p.wake.clear()
            now = self.clock()
            if p.faults.link_down and p.central is not None:
                self._drop_central(p, "link_down", tell_central=True)
            try:
                p.firmware.tick(now)
                self._flush(p, now)
                deadline = p.firmware.next_deadline(now)
            except Exception:
                # A firmware bug takes its device off the air, not the whole radio.
                logger.exception("firmware %s failed; %s goes silent", p.device_id, p.address)
                self._drop_central(p, "firmware failed", tell_central=True)
                return
            wait = min(max(0.0, deadline - now), MAX_TICK_WAIT)
            await p.wake.sleep_until(loop.time() + wait)

    def _flush(self, p: Peripheral, now: float) -> None:
        """Send the firmware's output to the subscribed central, through the link faults."""
        for target, data in p.firmware.take_outgoing():
            uuid = normalize_uuid_str(target) if target else p.default_notify_uuid
            session = p.central
            if (
                session is None
                or uuid is None
                or uuid not in p.subscriptions
                or p.faults.link_down
                or p.faults.should_drop()
            ):
                continue
            data = _flip_one_bit(p.faults, data)
            spec = p.characteristics.get(uuid)
            chunks = [data]
            if p.faults.split and spec is not None and spec.stream and len(data) > 1:
                half = len(data) // 2
                chunks = [data[:half], data[half:]]
            # Never let a shorter delay overtake an earlier notification.
            due = now + p.faults.delay
            queued = self._in_flight.get(p.address)
            if queued:
                due = max(due, queued[-1][0])
            for chunk in chunks:
                message: Message = {
                    "event": "notify",
                    "address": p.address,
                    "uuid": uuid,
                    "data": chunk.hex(),
                }
                if due <= now:
                    session.post(message)
                else:
                    self._post_later(p, session, due, message)

    def _post_later(self, p: Peripheral, session: Central, due: float, message: Message) -> None:
        timers = self._timers[p.address]
        queue = self._in_flight.setdefault(p.address, deque())
        queue.append((due, session, message))
        loop = asyncio.get_running_loop()
        delay = due - self.clock()

        def deliver() -> None:
            # Every notification due by now, oldest first: timers due at the same time may
            # fire in either order (the loop's heap does not keep the order of ties), and
            # a GATT notification stream does not reorder.
            timers.discard(handle)
            while queue and queue[0][0] <= due:
                _, to, first = queue.popleft()
                if p.central is to:
                    to.post(first)

        handle = loop.call_later(max(0.0, delay), deliver)
        timers.add(handle)

    def _forget_pending(self, p: Peripheral) -> None:
        """Cancel notifications still on their way (delay fault) to p's central."""
        for handle in self._timers[p.address]:
            handle.cancel()
        self._timers[p.address].clear()
        self._in_flight.pop(p.address, None)

    def _drop_central(self, p: Peripheral, reason: str, *, tell_central: bool) -> None:
        """End p's connection: the firmware sees link_down, pending notifications are lost."""
        session = p.central
        if session is None:
            return
        p.central = None
        p.subscriptions.clear()
        self._forget_pending(p)
        logger.info("%s: link to %r down (%s)", p.address, session, reason)
        session.connected.pop(p.address, None)
        if tell_central:
            session.post({"event": "disconnected", "address": p.address, "reason": reason})
        now = self.clock()
        try:
            p.firmware.link_down(now)
            p.firmware.take_outgoing()  # nobody is there to hear it
        except Exception:
            logger.exception("firmware %s failed in link_down", p.device_id)
        p.wake.set()

    # -- centrals ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._session_numbers += 1
        session = _Session(self._session_numbers, writer)
        self._sessions.add(session)
        writer_task = asyncio.create_task(session.write_loop(), name=f"sim-radio-writer:{session}")
        session.writer_task = writer_task
        logger.debug("%r connected", session)
        try:
            while not session.closed:
                try:
                    message = await read_message(reader)
                except WireError as err:
                    session.post({"ok": False, "code": "bad_request", "message": str(err)})
                    break
                if message is None:
                    break
                session.post(self._handle(session, message))
        except (OSError, asyncio.IncompleteReadError) as err:
            logger.debug("%r: read failed: %r", session, err)
        except asyncio.CancelledError:
            # Only close() cancels a handler, as a last resort; end quietly for the server.
            if self._server is not None:
                raise
        finally:
            # The central is gone (closed, or its process died) without a disconnect.
            session.closed = True
            for peripheral in list(session.connected.values()):
                if self.links_outlive_host and self._server is not None:
                    # BlueZ keeps the connection: the peripheral runs on, orphaned.
                    logger.info(
                        "%s: %r gone, its link stays up (orphaned)", peripheral.address, session
                    )
                else:
                    self._drop_central(peripheral, "central gone", tell_central=False)
            session.finish()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(SEND_TIMEOUT):
                    await asyncio.shield(writer_task)
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task
            session.closed = True
            self._sessions.discard(session)
            await close_writer(writer)
            if task is not None:
                self._handlers.discard(task)
            logger.debug("%r disconnected", session)

    def _handle(self, session: _Session, message: Message) -> Message:
        request_id = message.get("id")
        op = message.get("op")
        try:
            handler = self._ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise RadioError("unknown_op", f"unknown op {op!r}")
            result = handler(self, session, message)
        except RadioError as err:
            reply: Message = {
                "id": request_id,
                "ok": False,
                "code": err.code,
                "message": err.reason,
            }
            if err.gatt is not None:
                reply["gatt"] = err.gatt
            return reply
        except (WireError, KeyError, TypeError, ValueError) as err:
            return {"id": request_id, "ok": False, "code": "bad_request", "message": repr(err)}
        return {"id": request_id, "ok": True, **result}

    def _peripheral(self, message: Message) -> Peripheral:
        address = message.get("address")
        if not isinstance(address, str):
            raise RadioError("bad_request", "address missing")
        peripheral = self.peripherals.get(address.upper())
        if peripheral is None:
            raise RadioError("not_found", f"no peripheral at {address}")
        return peripheral

    def _connected(self, session: _Session, message: Message) -> Peripheral:
        p = self._peripheral(message)
        if p.faults.link_down and p.central is not None:
            self._drop_central(p, "link_down", tell_central=True)
        if p.central is not session:
            raise RadioError("not_connected", f"not connected to {p.address}")
        return p

    @staticmethod
    def _characteristic(p: Peripheral, message: Message) -> str:
        uuid = message.get("uuid")
        if not isinstance(uuid, str):
            raise RadioError("bad_request", "uuid missing")
        uuid = normalize_uuid_str(uuid)
        if uuid not in p.characteristics:
            raise _gatt_error(AttError.INVALID_HANDLE, f"no {uuid} here")
        return uuid

    def _op_scan(self, session: _Session, message: Message) -> Message:
        # Like real single-link peripherals, a connected (or cut-off) one does not advertise.
        adverts = [
            p.advert()
            for p in self.peripherals.values()
            if p.central is None and not p.faults.link_down
        ]
        return {"adverts": adverts}

    def _op_connect(self, session: _Session, message: Message) -> Message:
        p = self._peripheral(message)
        if p.faults.link_down:
            raise RadioError("unreachable", f"{p.address} is out of range (link_down)")
        if p.central is session:
            raise RadioError("busy", f"already connected to {p.address}")
        orphan = p.central
        if orphan is not None and not orphan.closed:
            raise RadioError("busy", f"{p.address} is connected to another central")
        p.central = session
        p.subscriptions.clear()
        session.connected[p.address] = p
        now = self.clock()
        if orphan is None:
            p.firmware.link_up(now)
        else:
            # The radio link never went down: the peripheral sees no new connection, the new
            # process simply uses the one its dead predecessor left (as BlueZ shares it).
            orphan.connected.pop(p.address, None)
            self._forget_pending(p)
            logger.info("%s: %r takes over the link %r left", p.address, session, orphan)
        self._flush(p, now)
        p.wake.set()
        logger.info("%s: %r connected", p.address, session)
        return {"name": p.name, "mtu": p.mtu, "services": p.services_message()}

    def _op_disconnect(self, session: _Session, message: Message) -> Message:
        p = self._peripheral(message)
        if p.central is session:
            self._drop_central(p, "central disconnected", tell_central=False)
        return {}

    def _op_device_disconnect(self, session: _Session, message: Message) -> Message:
        """org.bluez.Device1.Disconnect: any process ends a device's link, whoever holds it."""
        p = self._peripheral(message)
        holder = p.central
        if holder is None:
            return {"was_connected": False}
        # A live holder hears of it as BlueZ's Connected=false; an orphan's socket is gone.
        self._drop_central(p, "disconnected through the system", tell_central=holder is not session)
        return {"was_connected": True}

    def _op_write(self, session: _Session, message: Message) -> Message:
        p = self._connected(session, message)
        uuid = self._characteristic(p, message)
        data = hex_bytes(message.get("data"))
        response = bool(message.get("response", False))
        props = p.characteristics[uuid].properties
        wanted = "write" if response else "write-without-response"
        if wanted not in props:
            raise _gatt_error(AttError.WRITE_NOT_PERMITTED, f"{uuid} does not allow {wanted}")
        if len(data) > p.mtu - 3:
            raise _gatt_error(
                AttError.INVALID_ATTRIBUTE_VALUE_LENGTH,
                f"{len(data)} bytes exceed the MTU",
            )
        now = self.clock()
        p.firmware.receive(_flip_one_bit(p.faults, data), now, uuid)
        self._flush(p, now)
        p.wake.set()
        return {}

    def _op_read(self, session: _Session, message: Message) -> Message:
        p = self._connected(session, message)
        uuid = self._characteristic(p, message)
        if "read" not in p.characteristics[uuid].properties:
            raise _gatt_error(AttError.READ_NOT_PERMITTED, f"{uuid} not readable")
        now = self.clock()
        try:
            data = p.firmware.read_attribute(uuid, now)
        except KeyError as err:
            raise _gatt_error(AttError.ATTRIBUTE_NOT_FOUND, f"{uuid} has no value") from err
        self._flush(p, now)
        return {"data": data.hex()}

    def _op_start_notify(self, session: _Session, message: Message) -> Message:
        p = self._connected(session, message)
        uuid = self._characteristic(p, message)
        props = p.characteristics[uuid].properties
        if "notify" not in props and "indicate" not in props:
            raise _gatt_error(AttError.REQUEST_NOT_SUPPORTED, f"{uuid} does not notify")
        p.subscriptions.add(uuid)
        return {}

    def _op_stop_notify(self, session: _Session, message: Message) -> Message:
        p = self._connected(session, message)
        p.subscriptions.discard(self._characteristic(p, message))
        return {}

    def _op_list_serial(self, session: _Session, message: Message) -> Message:
        return {
            "serial": [
                {"kind": s.kind, "path": s.path, "id": s.device_id} for s in self.serial.values()
            ]
        }

    def _op_list_devices(self, session: _Session, message: Message) -> Message:
        return {"devices": self.devices()}

    def _op_fault(self, session: _Session, message: Message) -> Message:
        device = message.get("device")
        name = message.get("name")
        if not isinstance(device, str) or not isinstance(name, str):
            raise RadioError("bad_request", "fault needs a device and a name")
        self.fault(device, name, message.get("value"))
        return {}

    _ops: ClassVar[dict[str, Callable[[SimRadio, _Session, Message], Message]]] = {
        "scan": _op_scan,
        "connect": _op_connect,
        "disconnect": _op_disconnect,
        "device_disconnect": _op_device_disconnect,
        "write": _op_write,
        "read": _op_read,
        "start_notify": _op_start_notify,
        "stop_notify": _op_stop_notify,
        "list_serial": _op_list_serial,
        "list_devices": _op_list_devices,
        "fault": _op_fault,
    }

    # -- devices and faults --------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """Every simulated device the radio knows, BLE and serial."""
        out: list[dict[str, Any]] = [
            {
                "id": p.device_id,
                "kind": str(p.firmware.kind),
                "transport": "ble",
                "address": p.address,
                "name": p.name,
                "connected": p.central is not None,
                "orphaned": p.central is not None and p.central.closed,
            }
            for p in self.peripherals.values()
        ]
        out.extend(
            {
                "id": s.device_id,
                "kind": s.kind,
                "transport": "serial",
                "address": s.path,
                "name": s.device_id,
                "connected": None,
            }
            for s in self.serial.values()
        )
        return out

    def fault(self, device: str, name: str, value: object = None) -> None:
        """Inject a link or physical fault into a device named by id, BLE address or port."""
        peripheral, endpoint = self._find_device(device)
        firmware = peripheral.firmware if peripheral is not None else None
        faults = peripheral.faults if peripheral is not None else None
        if endpoint is not None:
            firmware, faults = endpoint.firmware, endpoint.faults
        if name in LINK_FAULTS:
            if faults is None:
                raise RadioError("unknown_fault", f"{device} has no link faults to set")
            self._check_value(name, value, "bad_request")
            self._link_fault(faults, name, value)
        elif name in PHYSICAL_FAULTS:
            if firmware is None or not callable(getattr(firmware, name, None)):
                raise RadioError("unknown_fault", f"{device} has no {name}")
            self._check_value(name, value, "fault_failed")
            self._physical_fault(firmware, name, value)
        else:
            valid = ", ".join((*LINK_FAULTS, *PHYSICAL_FAULTS))
            raise RadioError("unknown_fault", f"unknown fault {name!r}; valid: {valid}")
        logger.info("fault %s=%r on %s", name, value, device)
        if peripheral is not None:
            if peripheral.faults.link_down:
                self._drop_central(peripheral, "link_down", tell_central=True)
            if self._server is not None:
                self._flush(peripheral, self.clock())
            peripheral.wake.set()
        if endpoint is not None and endpoint.wake is not None:
            endpoint.wake()

    def _find_device(self, device: str) -> tuple[Peripheral | None, SerialEndpoint | None]:
        for p in self.peripherals.values():
            if device in (p.device_id, p.name) or device.upper() == p.address:
                return p, None
        for s in self.serial.values():
            if device in (s.device_id, s.path):
                return None, s
        raise RadioError("unknown_device", f"no simulated device {device!r}")

    @staticmethod
    def _check_value(name: str, value: object, code: str) -> None:
        """Refuse a value the fault cannot take before it touches the device."""
        try:
            check_fault_value(name, value)
        except ValueError as err:
            raise RadioError(code, str(err)) from None

    @staticmethod
    def _link_fault(faults: LinkFaults, name: str, value: object) -> None:
        if name == "link_down":
            faults.link_down = True
        elif name == "link_up":
            faults.link_down = False
        elif name == "clear":
            faults.clear()
        elif name == "split":
            faults.split = True if value is None else bool(value)
        else:
            number = _FAULT_DEFAULTS[name] if value is None else value
            if not isinstance(number, int | float) or isinstance(number, bool) or number < 0:
                raise RadioError("bad_request", f"{name} needs a non-negative number")
            if name == "delay":
                faults.delay = float(number)
            elif number > 1:
                raise RadioError("bad_request", f"{name} is a rate in 0..1")
            elif name == "corrupt":
                faults.corrupt_rate = float(number)
            else:
                faults.drop_answer_rate = float(number)

    def _physical_fault(self, firmware: Firmware, name: str, value: object) -> None:
        """Call firmware.<name> with ``now`` and the value(s) for its other parameters."""
        method: Callable[..., object] = getattr(firmware, name)
        values = list(value) if isinstance(value, list) else [] if value is None else [value]
        kwargs: dict[str, object] = {}
        for param in inspect.signature(method).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.name == "now":
                kwargs["now"] = self.clock()
            elif values:
                kwargs[param.name] = values.pop(0)
            elif param.default is param.empty:
                raise RadioError("fault_failed", f"{name} needs a value for {param.name}")
        if values:
            raise RadioError("fault_failed", f"{name} takes fewer values than {value!r}")
        try:
            method(**kwargs)
        except (TypeError, ValueError) as err:
            raise RadioError("fault_failed", f"{name}: {err}") from err
