"""A throw-away mosquitto on a free loopback port, for tests, benchmarks and developers
trying MQTT without touching the system broker.

One private ``mosquitto`` process with a generated configuration in a folder
of the caller's (``mosquitto.conf`` and its output in ``mosquitto.log``):
anonymous, no persistence, listening on 127.0.0.1 only. The port is chosen
once, when the object is made, and kept for its whole life, so the broker
can be killed and started again on the same port and clients can come back
(the reconnection tests need exactly that)::

    binary = require_mosquitto()  # MosquittoMissingError says how to install it
    with Broker(binary, folder) as broker:  # or: async with
        settings = MqttSettings(enabled=True, host="127.0.0.1", port=broker.port)
        ...

Every wait has a time-out, and stopping never leaves a process behind:
SIGTERM, SIGKILL if it lingers, and the process is waited for either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from simulator.errors import MosquittoError, MosquittoMissingError

HOST = "127.0.0.1"
"""Loopback only: a throw-away broker with anonymous access must not be reachable from outside."""
SBIN_FOLDERS = (
    Path("/usr/sbin"),
    Path("/usr/local/sbin"),
    Path("/opt/homebrew/sbin"),
    Path("/sbin"),
)
"""Where mosquitto is installed but PATH often does not look (Debian puts it in /usr/sbin)."""
INSTALL_HINT = (
    "install it (Debian/Ubuntu: sudo apt-get install mosquitto; macOS: brew install mosquitto); "
    "./dev test installs it by itself"
)
START_TIMEOUT_S = 10.0
"""Longest wait for the port to accept (mosquitto needs milliseconds; a busy machine is slow)."""
STOP_TIMEOUT_S = 5.0
"""Longest wait for the process to exit after SIGTERM, and again after SIGKILL."""
POLL_S = 0.02
"""How often the port and the process are looked at while waiting."""
PROBE_TIMEOUT_S = 0.2
"""Longest wait for one connection attempt (on loopback the answer comes at once)."""


def find_mosquitto(
    search_path: str | None = None, folders: Sequence[Path] | None = None
) -> str | None:
    """The mosquitto binary: on PATH (or search_path), else in folders (default SBIN_FOLDERS).

    None when there is none.
    """
    found = shutil.which("mosquitto", path=search_path)
    if found:
        return found
    for folder in SBIN_FOLDERS if folders is None else folders:
        candidate = folder / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_mosquitto(search_path: str | None = None, folders: Sequence[Path] | None = None) -> str:
    """The mosquitto binary, or MosquittoMissingError saying how to install it."""
    found = find_mosquitto(search_path, folders)
    if found is None:
        folders = SBIN_FOLDERS if folders is None else folders
        where = "on PATH" + (f" nor in {', '.join(str(f) for f in folders)}" if folders else "")
        raise MosquittoMissingError(
            f"mosquitto not found {where}: {INSTALL_HINT}. "
            "The MQTT tests and benchmarks start a broker of their own and need it."
        )
    return found


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""The ports the kernel hands out to outgoing connections (Linux)."""
PORT_TRIES = 3
"""First starts tried on a new port when the chosen one was taken meanwhile."""


def free_port() -> int:
    """A loopback port nobody listens on right now, below the kernel's ephemeral range.

    Not one the kernel picks (bind to port 0): that comes from the range outgoing
    connections take their local ports from, and with many clients about (a test suite
    in parallel) one of them could hold it by the time mosquitto binds it.
    """
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = max(1024, low - 12000)
    below = [random.randrange(first, low) for _ in range(50)] if low > first else []
    for port in [*below, 0]:  # 0 last: the kernel's choice rather than none
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    raise MosquittoError(f"no free loopback port on {HOST}")


def accepting(port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when something accepts TCP connections on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


class Broker:
    """A mosquitto of our own, on one loopback port for its whole life so clients can come back.

    The configuration is written here, once, and read at every start: a caller
    that needs more (a password file, TLS) may rewrite ``config`` before
    starting it, keeping the ``listener`` line on ``port``.
    """

    def __init__(
        self,
        binary: str,
        folder: Path,
        *,
        nodelay: bool = False,
        start_timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.binary = binary
        self.nodelay = nodelay
        """mosquitto's set_tcp_nodelay (its default is false: Nagle's algorithm on)."""
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.host = HOST
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence false",
            # Only when asked: "default" must mean the installed mosquitto's own default,
            # and an older mosquitto without the option still starts.
            *(["set_tcp_nodelay true"] if nodelay else []),
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._listened = False
        """It accepted once: its port is kept from then on (clients come back to it)."""

    @property
    def running(self) -> bool:
        """True while the broker process lives."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it has one."""
        return None if self._process is None else self._process.pid

    def log_tail(self, lines: int = 30) -> str:
        """The end of the broker's output, for an error message."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    # -- starting -------------------------------------------------------------------------

    def _launch(self) -> None:
        if self.running:
            return
        self._reap()  # a broker that died by itself: its log handle is still open
        self._log_file = self.log.open("ab")
        try:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError as err:
            self._reap()
            raise MosquittoMissingError(f"cannot run {self.binary}: {err}; {INSTALL_HINT}") from err
        except OSError as err:
            self._reap()
            raise MosquittoError(f"cannot run {self.binary}: {err}") from err

    def _check_alive(self) -> None:
        """MosquittoError when the process has exited (a bad config, the port taken)."""
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            self._reap()
            raise MosquittoError(
                f"mosquitto exited with code {code} at start (port {self.port}):\n{self.log_tail()}"
            )

    def _too_late(self, timeout: float) -> MosquittoError:
        return MosquittoError(
            f"mosquitto did not listen on {HOST}:{self.port} within {timeout:g} s:\n"
            f"{self.log_tail()}"
        )

    def start(self, timeout: float | None = None) -> None:
        """Start it and wait until the port accepts (blocking: for set-up outside a loop)."""
        for attempt in range(PORT_TRIES):
            try:
                self._start_once(timeout)
                return
            except MosquittoError:
                if not self._port_was_taken(attempt):
                    raise

    def _start_once(self, timeout: float | None) -> None:
        wait = self.start_timeout if timeout is None else timeout
        self._launch()
        deadline = time.monotonic() + wait
        try:
            while not accepting(self.port):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise self._too_late(wait)
                time.sleep(POLL_S)
            # Something accepts: if another process took the port first, mosquitto has
            # exited (address in use) or is about to; catch the first case at least.
            self._check_alive()
            self._listened = True
        except BaseException:
            self.kill()  # a half-started broker is never left behind
            raise

    async def astart(self, timeout: float | None = None) -> None:
        """Start it and wait until the port accepts, without blocking the event loop."""
        for attempt in range(PORT_TRIES):
            try:
                await self._astart_once(timeout)
                return
            except MosquittoError:
                if not self._port_was_taken(attempt):
                    raise

    async def _astart_once(self, timeout: float | None) -> None:
        wait = self.start_timeout if timeout is None else timeout
        self._launch()
        try:
            async with asyncio.timeout(wait):
                while not accepting(self.port):
                    self._check_alive()
                    await asyncio.sleep(POLL_S)
            self._check_alive()
            self._listened = True
        except TimeoutError:
            self.kill()
            raise self._too_late(wait) from None
        except BaseException:
            self.kill()  # also on cancellation: a half-started broker is never left behind
            raise

    def _port_was_taken(self, attempt: int) -> bool:
        """After a failed start: True when a first start found its port taken and a new
        port is now in the configuration (a restart keeps its port: clients come back)."""
        if self._listened or attempt + 1 >= PORT_TRIES:
            return False
        if "Address already in use" not in self.log_tail(5):
            return False
        old, self.port = self.port, free_port()
        text = self.config.read_text()
        self.config.write_text(text.replace(f"listener {old} ", f"listener {self.port} "))
        self.log.write_text("")  # the next attempt's words only
        return True

    # -- stopping -------------------------------------------------------------------------

    def _reap(self) -> None:
        """Forget an exited process and close its log."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None
        if self._process is None and self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _wait(self, timeout: float) -> None:
        """Wait for the process to exit; MosquittoError when even SIGKILL did not end it."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MosquittoError(
                f"mosquitto (pid {self._process.pid}) did not exit within {timeout:g} s"
            ) from None

    def kill(self) -> None:
        """Kill it at once (SIGKILL): every client loses its connection, no goodbye."""
        if self.running:
            assert self._process is not None
            self._process.kill()
            self._wait(self.stop_timeout)
        self._reap()

    def stop(self, timeout: float | None = None) -> None:
        """Stop it cleanly (SIGTERM), killing it if it lingers past the time-out (blocking)."""
        if self.running:
            assert self._process is not None
            self._process.terminate()
            # Past the time-out, kill() below ends it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=self.stop_timeout if timeout is None else timeout)
        self.kill()

    async def astop(self, timeout: float | None = None) -> None:
        """Stop it cleanly (SIGTERM), killing it if it lingers, without blocking the loop."""
        if self.running:
            assert self._process is not None
            self._process.terminate()
            try:
                # Past the time-out, kill() below ends it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.stop_timeout if timeout is None else timeout):
                        # Popen has no awaitable wait: poll (mosquitto exits in milliseconds).
                        while self._process.poll() is None:  # noqa: ASYNC110
                            await asyncio.sleep(POLL_S)
            finally:
                # Also when cancelled: whatever happens, no broker outlives this call.
                self.kill()
        self._reap()

    async def restart(self, timeout: float | None = None) -> None:
        """Kill it and start again on the same port (retained messages are gone: no persistence)."""
        self.kill()
        await self.astart(timeout)

    # -- as a context manager ---------------------------------------------------------------

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Broker:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
