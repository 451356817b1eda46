"""The local control interface: JSON lines over a Unix socket, one request per line.

Only the daemon's owner may connect (socket 0600 in a 0700 folder), or also a
configured group (0660 / 0750): file permissions are the access control, as
for Docker's or Mosquitto's local sockets. A request is
``{"command": "run", "payload": {...}}``; the answer is the API's
``{"status": "ok"|"error", "data": ..., "error": ...}`` on one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

from controller.api import DaemonAPI, dispatch, error
from controller.quick_control import DaemonNotRunningError as DaemonNotRunningError
from controller.quick_control import not_running
from devices.errors import ConfigError, DeviceTimeoutError, LinkError, MassagedError

logger = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
"""Longest request line accepted; a longer one is refused and the connection closed."""
DEFAULT_CALL_TIMEOUT = 10.0
"""Seconds for a command line call (a run answers once the session has started)."""
IDLE_TIMEOUT = 300.0
"""A client connection silent this long is closed."""


class ControlServer:
    """Serves the API on a Unix socket until closed."""

    def __init__(self, api: DaemonAPI, path: Path, *, group: str | None = None) -> None:
        self.api = api
        self.path = path
        self.group = group
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the socket with private permissions and start serving."""
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
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(self.path, -1, gid)
            os.chown(folder, -1, gid)
        sock.listen(16)
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        logger.info("control socket %s", self.path)

    async def close(self) -> None:
        """Stop serving, end every connection, remove the socket; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, error(f"request longer than {MAX_LINE} bytes"))
                    return
                if not line:
                    return
                answer = await self._answer(line)
                await _send(writer, answer)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return error(f"not JSON: {err}")
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return error('a request is {"command": NAME, "payload": {...}}')
        try:
            return await dispatch(self.api, message["command"], message.get("payload"))
        except Exception as err:  # a bug must not take the control interface down
            logger.exception("control request %s failed", message.get("command"))
            return error(f"internal error: {err}")


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer, default=str).encode() + b"\n")
    async with asyncio.timeout(5.0):
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
    """Send one request to a running daemon and return its answer."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as err:
        raise not_running(path, err) from err
    except TimeoutError as err:
        raise DeviceTimeoutError(f"the daemon on {path} did not accept in {timeout} s") from err
    try:
        writer.write(json.dumps({"command": command, "payload": payload or {}}).encode() + b"\n")
        async with asyncio.timeout(timeout):
            await writer.drain()
            line = await reader.readline()
    except TimeoutError as err:
        raise DeviceTimeoutError(f"the daemon did not answer {command!r} in {timeout} s") from err
    except OSError as err:
        raise LinkError(f"the daemon connection failed: {err}") from err
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
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
