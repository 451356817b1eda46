"""The simulated radio's message protocol, and a small client for it.

The radio (``simulator.ble.radio``) listens on a Unix socket; every bleak
backend object (``simulator.ble.backend``), discovery and the command line
reach it through one connection each. Messages are newline-delimited JSON
objects, one per line, UTF-8, at most ``MAX_LINE`` bytes; binary data travels
as lowercase hex strings.

Requests (central -> radio) carry an ``id`` chosen by the sender and an ``op``::

    {"id": 7, "op": "write", "address": "5A:...", "uuid": "6e400002-...",
     "data": "a50201", "response": false}

(shown on two lines here; one line on the wire).

Every request gets exactly one reply with the same ``id``::

    {"id": 7, "ok": true, ...results}
    {"id": 7, "ok": false, "code": "not_connected", "message": "...", "gatt": 3}

(``gatt`` is present only for a GATT protocol error code.) Unsolicited events
(radio -> central) carry ``event`` and no ``id``::

    {"event": "notify", "address": "...", "uuid": "...", "data": "a503..."}
    {"event": "disconnected", "address": "...", "reason": "link_down"}

Ops and their results:

=======================  ===========================================  ==========================
op                       arguments                                    result
=======================  ===========================================  ==========================
``scan``                 —                                            ``adverts``: list of
                                                                      {address, name,
                                                                      service_uuids, rssi}
``connect``              address                                      ``name``, ``mtu``,
                                                                      ``services``: list of
                                                                      {uuid, handle,
                                                                      characteristics: list of
                                                                      {uuid, handle,
                                                                      properties}}
``disconnect``           address                                      —
``device_disconnect``    address (ends the link whoever holds it)     ``was_connected``
                         (``org.bluez.Device1.Disconnect``)
``write``                address, uuid, data, response                —
``read``                 address, uuid                                ``data``
``start_notify``         address, uuid                                —
``stop_notify``          address, uuid                                —
``list_serial``          —                                            ``serial``: list of
                                                                      {kind, path, id}
``list_devices``         —                                            ``devices``: list of
                                                                      {id, kind, transport,
                                                                      address, name, connected,
                                                                      orphaned}
``fault``                device (id or address), name, value          —
=======================  ===========================================  ==========================

A central's socket closing without ``disconnect`` (its process died) leaves
its links up by default, as BlueZ does; ``connect`` from another central then
takes such an orphaned link over, and ``device_disconnect`` ends it.

Error codes: ``bad_request``, ``unknown_op``, ``not_found`` (no such
peripheral), ``unreachable`` (its link is cut), ``busy`` (another central holds
it), ``not_connected``, ``gatt`` (with ``gatt``: the ATT error code),
``unknown_device``, ``unknown_fault``, ``fault_failed``, ``shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.links.sim_radio import default_radio_path
from simulator.errors import RadioClosedError, RadioError, WireError

logger = logging.getLogger(__name__)

MAX_LINE = 256 * 1024
"""Longest accepted message line in bytes (a scan of many devices fits easily)."""
DEFAULT_REQUEST_TIMEOUT = 2.0
"""Seconds for one request to be answered."""
DEFAULT_CONNECT_TIMEOUT = 2.0
"""Seconds to open the Unix socket."""
SEND_TIMEOUT = 2.0
"""Seconds for one message to be taken by the peer (drain)."""
CLOSE_TIMEOUT = 1.0
"""Seconds to wait for a socket to finish closing."""

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every message: json.dumps with separators builds a new one per call."""

Message = dict[str, Any]
EventCallback = Callable[[Message], None]
ClosedCallback = Callable[[], None]


def encode(message: Message) -> bytes:
    """One message as a line of JSON."""
    line = _ENCODER.encode(message).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise WireError(f"message of {len(line)} bytes exceeds {MAX_LINE}")
    return line


def decode(line: bytes) -> Message:
    """A line of JSON as a message; raise WireError if it is not a JSON object."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as err:
        raise WireError(f"not JSON: {line[:80]!r}") from err
    if not isinstance(message, dict):
        raise WireError(f"not a JSON object: {line[:80]!r}")
    return message


def hex_bytes(value: object) -> bytes:
    """Decode a hex data field; raise WireError if it is not hex."""
    if not isinstance(value, str):
        raise WireError(f"data must be a hex string, not {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError as err:
        raise WireError(f"bad hex data {value[:40]!r}") from err


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at end of stream; raise WireError on a bad or long line."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        if err.partial:
            logger.debug("dropping %d bytes of an unterminated line at EOF", len(err.partial))
        return None
    except asyncio.LimitOverrunError as err:
        raise WireError(f"line longer than {MAX_LINE} bytes") from err
    return decode(line)


async def send_message(
    writer: asyncio.StreamWriter, message: Message, *, timeout: float = SEND_TIMEOUT
) -> None:
    """Write one message and wait (bounded) until the peer's socket has taken it."""
    writer.write(encode(message))
    async with asyncio.timeout(timeout):
        await writer.drain()


async def close_writer(writer: asyncio.StreamWriter, *, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a stream and wait (bounded) for it to finish; never raises."""
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await writer.wait_closed()


class RadioConnection:
    """One client connection to the radio: requests with time-outs, events to a callback."""

    def __init__(
        self,
        path: Path,
        *,
        on_event: EventCallback | None = None,
        on_closed: ClosedCallback | None = None,
    ) -> None:
        self.path = path
        self._on_event = on_event
        self._on_closed = on_closed
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._closing = False

    @property
    def is_open(self) -> bool:
        """True while requests can be sent."""
        return self._writer is not None and not self._writer.is_closing()

    async def open(self, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        """Connect to the radio's socket; raise RadioClosedError if nobody listens there."""
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.path, limit=MAX_LINE
                )
        except (OSError, TimeoutError) as err:
            raise RadioClosedError(
                f"no simulated radio at {self.path}: {err.strerror or repr(err)}"
            ) from err
        self._reader_task = asyncio.create_task(
            self._read_loop(self._reader), name=f"radio-reader:{self.path}"
        )

    async def request(
        self, op: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT, **args: Any
    ) -> Message:
        """Send a request and return its reply; raise RadioError, or TimeoutError after timeout."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise RadioClosedError()
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                try:
                    await send_message(writer, {"id": request_id, "op": op, **args})
                except (OSError, RuntimeError) as err:
                    raise RadioClosedError(f"cannot send to the radio: {err!r}") from err
                reply = await future
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            gatt = reply.get("gatt")
            raise RadioError(
                str(reply.get("code", "error")),
                str(reply.get("message", "")),
                gatt=gatt if isinstance(gatt, int) else None,
            )
        return reply

    def abort(self) -> None:
        """Drop the connection now without waiting (the reader task then ends by itself)."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()

    async def close(self) -> None:
        """Close the connection and end the reader task; never raises, safe to call twice."""
        self._closing = True
        writer, self._writer = self._writer, None
        if writer is not None:
            await close_writer(writer)
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await task
        self._fail_pending()

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RadioClosedError())
        self._pending.clear()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_message(reader)
                if message is None:
                    break
                self._dispatch(message)
        except (OSError, WireError) as err:
            if not self._closing:
                logger.warning("radio connection %s failed: %r", self.path, err)
        finally:
            self._fail_pending()
            if self._writer is not None:
                self._writer.close()
            if not self._closing and self._on_closed is not None:
                self._on_closed()

    def _dispatch(self, message: Message) -> None:
        request_id = message.get("id")
        if isinstance(request_id, int):
            future = self._pending.get(request_id)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if "event" in message and self._on_event is not None:
            try:
                self._on_event(message)
            except Exception:
                # A faulty callback must not kill the connection for everybody else.
                logger.exception("radio event handler failed on %s", message.get("event"))


async def radio_request(
    path: Path | None, op: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT, **args: Any
) -> Message:
    """One request on a short-lived connection (discovery, the command line, fault injection)."""
    connection = RadioConnection(path or default_radio_path())
    try:
        async with asyncio.timeout(timeout):
            await connection.open(timeout)
            return await connection.request(op, timeout=timeout, **args)
    finally:
        await connection.close()
