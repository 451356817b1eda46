"""The local control interface: JSON lines over a Unix socket, one request per line.

Only the daemon's owner may connect (socket 0600 in a 0700 folder), or also a
configured group (0660 / 0750): file permissions are the access control, as
for Docker's or Mosquitto's local sockets. A request is
``{"command": "run", "payload": {...}}``; the answer is the API's
``{"status": "ok"|"error", "data": ..., "error": ...}`` on one line.

An emergency stop must get through whatever else holds the socket (issue 11:
20,000 idle connections took every file descriptor, the stop timed out and the
session ran on). So the server accepts connections itself, not through
asyncio's server, and:

- serves at most ``max_connections`` at once; a new connection over the cap
  closes the connection that has been idle longest (never one being
  answered), so a fresh request always gets a slot;
- closes a connection that sends no complete line for ``idle_timeout`` seconds;
- keeps one file descriptor in reserve: when accept fails for want of
  descriptors (EMFILE), it frees the reserve, accepts, closes an idle
  connection to make room (or refuses the new one with an answer when every
  slot is busy), and takes the reserve back. asyncio's own server logged the
  error and stopped accepting for a second at a time instead;
- answers a line that is too long, not UTF-8, not JSON or nested too deeply
  with an error, as MQTT does (controller.jsonline decodes for both).

Every refusal of a connection is answered with ``"busy": true`` in the error,
so a client knows that its request was not carried out and may send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

from controller import jsonline
from controller.api import DaemonAPI, dispatch, error
from controller.errors import DaemonNotRunningError, JsonError

# The socket path's check lives with the paths (the command line runs it before this
# module loads); re-exported here for the server and the clients.
from controller.paths import UNIX_PATH_MAX as UNIX_PATH_MAX
from controller.paths import check_socket_path as check_socket_path
from controller.quick_control import RETRY_S, RETRY_SAFE, not_running
from devices.errors import ConfigError, DeviceTimeoutError, LinkError, MassagedError

logger = logging.getLogger(__name__)

MAX_LINE = jsonline.MAX_BYTES
"""Longest request line accepted; a longer one is refused and the connection closed."""
DEFAULT_CALL_TIMEOUT = 10.0
"""Seconds for a command line call (a run answers once the session has started)."""
IDLE_TIMEOUT = 30.0
"""A client connection that sends no complete line for this long is closed."""
MAX_CONNECTIONS = 64
"""Client connections served at once (far below the usual 1024 descriptors per process)."""
BACKLOG = 64
"""Connections the kernel queues for accept."""
ACCEPT_BATCH = 8
"""Connections accepted per turn of the event loop. A newcomer is the last to be closed
for room: that takes MAX_CONNECTIONS more arrivals, at least MAX_CONNECTIONS / ACCEPT_BATCH
turns, and its waiting line is read in two or three."""
EXHAUSTED_RETRY_S = 0.05
"""When out of descriptors with no connection of ours to close, try again this often.
(When one is closing, accepting resumes as soon as its descriptor is free.)"""
SEND_TIMEOUT = 5.0
"""Seconds to hand an answer to a client that does not read."""
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def busy(message: str) -> dict[str, Any]:
    """The answer to a connection that was closed or refused unserved: it may ask again."""
    return {**error(message), "busy": True}


def _line(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, default=str).encode() + b"\n"


class _Client:
    """One accepted connection and the task serving it."""

    __slots__ = ("busy", "evicted", "idle_since", "sock", "task", "writer")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.evicted = False
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = now
        self.busy = False


class ControlServer:
    """Serves the API on a Unix socket until closed."""

    def __init__(
        self,
        api: DaemonAPI,
        path: Path,
        *,
        group: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.api = api
        self.path = path
        self.group = group
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._accepting = False
        self._reserve: int | None = None
        self._clients: dict[_Client, None] = {}  # in order of arrival
        self._closing = 0  # evicted connections whose tasks have not ended yet
        self._tasks: set[asyncio.Task[None]] = set()  # also those of evicted clients
        # Said once per episode: at the cap, out of descriptors (with the count it began at).
        self._at_cap = False
        self._short_at: int | None = None

    @property
    def connections(self) -> int:
        """Client connections being served."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind the socket with private permissions and start serving."""
        check_socket_path(self.path)  # before its folder is made
        gid = _group_id(self.group) if self.group else None
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o750 if gid is not None else 0o700)
        if folder.stat().st_uid != os.getuid():
            raise ConfigError(f"{folder} is not owned by this user: refusing to put a socket there")
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ConfigError(f"{self.path} exists and is not a socket")
            if await _answers(self.path):
                raise ConfigError(f"another massaged daemon already listens on {self.path}")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a restrictive umask so the socket is never open to others, not even briefly.
        old_umask = os.umask(0o177 if gid is None else 0o117)
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(self.path, -1, gid)
            os.chown(folder, -1, gid)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        self._reserve = _reserve_descriptor()
        self._resume()
        logger.info("control socket %s", self.path)

    async def close(self) -> None:
        """Stop serving, end every connection, remove the socket; safe to call twice."""
        if self._sock is None:
            return
        self._pause()
        sock, self._sock = self._sock, None
        sock.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- accepting ----------------------------------------------------------------------
    # Out of descriptors, the reserve is the only way in: the server never accepts
    # without it in hand (a plain accept would take the descriptor the reserve
    # needs back), and it is given up only to accept a newcomer for whom an idle
    # connection is closed. While that one closes, accepting pauses; its task's
    # end takes the reserve back and resumes.

    def _resume(self) -> None:
        if self._sock is None or self._accepting:
            return
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept_ready)
        self._accepting = True

    def _pause(self, retry: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self._accepting and self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._accepting = False
        if retry is not None:
            loop.call_later(retry, self._resume)

    def _accept_ready(self) -> None:
        if self._sock is None:
            return
        if self._reserve is None:
            with contextlib.suppress(OSError):
                self._reserve = _reserve_descriptor()
        if self._reserve is None:
            self._make_room()
            return
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as err:
                if err.errno in _OUT_OF_DESCRIPTORS:
                    self._out_of_descriptors(err)
                else:
                    logger.warning("control socket: accept failed: %s", err)
                return
            self._admit(conn)

    def _make_room(self) -> None:
        """No reserve: close the longest idle connection for it, and wait until that is done."""
        if self._closing == 0:
            victim = self._longest_idle()
            if victim is not None:
                self._evict(victim)
        # Resumed when an evicted connection's task ends, else polled.
        self._pause(retry=None if self._closing else EXHAUSTED_RETRY_S)

    def _out_of_descriptors(self, err: OSError) -> None:
        """Accept with the reserve descriptor: room is made for the newcomer, or it is refused."""
        assert self._sock is not None
        assert self._reserve is not None
        if self._short_at is None:
            self._short_at = len(self._clients)
            logger.warning(
                "control socket: out of file descriptors (%s) with %d connections: "
                "closing idle ones to make room",
                err.strerror,
                len(self._clients),
            )
        os.close(self._reserve)
        self._reserve = None
        try:
            conn, _ = self._sock.accept()
        except OSError:  # nothing waiting after all, or the descriptor was taken elsewhere
            self._make_room()
            return
        victim = self._longest_idle()
        if victim is None:
            _refuse(conn, "every control connection is busy: try again")
            with contextlib.suppress(OSError):
                self._reserve = _reserve_descriptor()
            self._pause(retry=EXHAUSTED_RETRY_S)
            return
        self._evict(victim)
        self._admit(conn, room_made=True)
        self._pause()  # until the evicted one has let its descriptor go

    def _admit(self, conn: socket.socket, *, room_made: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if not room_made and len(self._clients) >= self.max_connections:
            victim = self._longest_idle()
            if victim is None:
                _refuse(conn, f"all {self.max_connections} control connections are busy")
                return
            if not self._at_cap:
                self._at_cap = True
                logger.warning(
                    "control socket: %d connections (the most served at once): "
                    "closing the longest idle to make room for each new one",
                    len(self._clients),
                )
            self._evict(victim)
        else:
            self._episodes_over()
        conn.setblocking(False)
        client = _Client(conn, loop.time())
        task = loop.create_task(self._serve(client), name="control-client")
        client.task = task
        self._clients[client] = None
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._forget(client, t))

    def _episodes_over(self) -> None:
        """Say so when a flood has gone: half the connections of its start, or fewer."""
        count = len(self._clients)
        if self._at_cap and count < self.max_connections // 2:
            self._at_cap = False
            logger.info("control socket: back to %d connections", count)
        if self._short_at is not None and count <= self._short_at // 2:
            self._short_at = None
            logger.info("control socket: descriptors to spare again (%d connections)", count)

    def _longest_idle(self) -> _Client | None:
        idle = [c for c in self._clients if not c.busy]
        return min(idle, key=lambda c: c.idle_since) if idle else None

    def _evict(self, client: _Client) -> None:
        """Close an idle connection, telling it why; its descriptor is freed on the next turns."""
        self._clients.pop(client, None)
        client.evicted = True
        self._closing += 1
        if client.writer is not None:
            with contextlib.suppress(Exception):
                client.writer.write(_line(busy("closed: the longest idle of too many connections")))
        if client.task is not None:
            client.task.cancel()

    def _forget(self, client: _Client, task: asyncio.Task[None]) -> None:
        self._clients.pop(client, None)
        self._tasks.discard(task)
        if client.writer is None:
            # Cancelled before its streams existed: the socket is still this server's to close
            # (a half-made transport has already stopped watching it).
            client.sock.close()
        if client.evicted:
            self._closing -= 1
            if self._reserve is None and self._sock is not None:
                # Its descriptor is free now: the reserve first, then the next newcomer.
                with contextlib.suppress(OSError):
                    self._reserve = _reserve_descriptor()
                self._resume()
        if not task.cancelled() and task.exception() is not None:
            logger.error("control connection failed", exc_info=task.exception())

    # -- serving ------------------------------------------------------------------------

    async def _serve(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_unix_connection(sock=client.sock, limit=MAX_LINE)
        client.writer = writer
        try:
            while True:
                client.busy = False
                client.idle_since = loop.time()
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        line = await reader.readline()
                except TimeoutError:
                    writer.write(_line(error(f"closed: no request for {self.idle_timeout:g} s")))
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    client.busy = True
                    await _send(writer, error(f"request longer than {MAX_LINE} bytes: closed"))
                    return
                if not line:
                    return
                client.busy = True
                await _send(writer, await self._answer(line))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except asyncio.CancelledError:
                writer.transport.abort()
                raise
            except Exception:  # a client that reads nothing cannot hold its descriptor
                writer.transport.abort()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = jsonline.decode(line)
        except JsonError as err:
            return error(f"request refused: {err}")
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return error('a request is {"command": NAME, "payload": {...}}')
        try:
            return await dispatch(self.api, message["command"], message.get("payload"))
        except Exception as err:  # a bug must not take the control interface down
            logger.exception("control request %s failed", message.get("command"))
            return error(f"internal error: {err}")


def _reserve_descriptor() -> int:
    """A descriptor held only to be given up when the process runs out of them."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _refuse(conn: socket.socket, message: str) -> None:
    """Answer a connection that will not be served, and close it at once."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(_line(busy(message)))
    conn.close()


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(_line(answer))
    async with asyncio.timeout(SEND_TIMEOUT):
        await writer.drain()


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"[daemon] socket_group: no group named {name!r}") from None


async def _answers(path: Path) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_unix_connection(str(path))
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def call(
    path: Path,
    command: str,
    payload: dict[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_CALL_TIMEOUT,
) -> dict[str, Any]:
    """Send one request to a running daemon and return its answer.

    A request that is safe to repeat (controller.quick_control.RETRY_SAFE) is
    sent again, within the same time-out, when the daemon closed the connection
    unserved to make room for others.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            left = max(deadline - loop.time(), 0.001)
            answer = await _call_once(path, command, payload, left, timeout)
        except LinkError as err:
            if command not in RETRY_SAFE or isinstance(
                err, DeviceTimeoutError | DaemonNotRunningError
            ):
                raise
            if loop.time() + RETRY_S >= deadline:
                raise
        else:
            if not (answer.get("busy") and command in RETRY_SAFE):
                return answer
            if loop.time() + RETRY_S >= deadline:
                return answer
        await asyncio.sleep(RETRY_S)


async def _call_once(
    path: Path, command: str, payload: dict[str, Any] | None, timeout: float, shown: float
) -> dict[str, Any]:
    """One connection, one request, one answer; errors name the caller's time-out (shown)."""
    check_socket_path(path)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as err:
        raise not_running(path, err) from err
    except TimeoutError as err:
        raise DeviceTimeoutError(f"the daemon on {path} did not accept in {shown} s") from err
    try:
        writer.write(json.dumps({"command": command, "payload": payload or {}}).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await writer.drain()
            line = await reader.readline()
    except TimeoutError as err:
        raise DeviceTimeoutError(f"the daemon did not answer {command!r} in {shown} s") from err
    except OSError as err:
        raise LinkError(f"the daemon connection failed: {err}") from err
    finally:
        writer.close()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the close completes, and the caller (a poll task
        # being cancelled at the end of a session) would then never end.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    if not line:
        raise LinkError("the daemon closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


async def daemon_running(path: Path) -> bool:
    """True when a daemon answers on the control socket."""
    try:
        answer = await call(path, "status", timeout=2.0)
    except MassagedError:
        return False
    return answer.get("status") == "ok"
