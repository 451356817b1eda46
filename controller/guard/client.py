"""The daemon's side of the host guard: start it, feed it beats, tell it the held links.

See ``controller.guard.process`` for why the guard exists. The beat comes from a
task on the event loop, so a blocked loop and a stopped process both starve
it; the link list comes from :data:`devices.links.ble.HELD_LINKS`, which every
BLE link keeps up to date whoever opened it. If the guard process dies, the
next beat notices and starts a new one (and tells it every held link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from devices.links.ble import HELD_LINKS, HeldLinks

logger = logging.getLogger(__name__)

BEAT_EVERY_S = 0.25
"""Seconds between two heartbeats from the event loop."""
STALL_AFTER_S = 1.5
"""Seconds without a heartbeat after which the guard ends the links (a frozen daemon)."""
RESPAWN_BACKOFF_S = 5.0
"""Seconds between two attempts to start a guard that failed to start."""
EXIT_TIMEOUT_S = 3.0
"""Seconds the guard gets to end leftover links and exit after close()."""
PROCESS = Path(__file__).with_name("process.py")
"""The guard's script: run by path, so it imports nothing of the project."""


class HostGuard:
    """A guard process watching this one, fed from the event loop; restarted if it dies."""

    def __init__(
        self,
        *,
        beat_every: float = BEAT_EVERY_S,
        stall_after: float = STALL_AFTER_S,
        links: HeldLinks = HELD_LINKS,
    ) -> None:
        self.beat_every = beat_every
        self.stall_after = stall_after
        self.links = links
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        """How many times the guard died and was started again."""
        self.ready = False
        """The current guard process has set itself up (its signals) and is watching."""
        self._sock: socket.socket | None = None
        self._broken = False
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def pid(self) -> int | None:
        """The guard process's id while one runs."""
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the guard process and the heartbeat; idempotent."""
        if self._task is not None:
            return
        self._spawn()
        self._unsubscribe = self.links.subscribe(self._on_link)
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="host-guard-beat")

    async def close(self) -> None:
        """Stop the heartbeat and let the guard go (it ends any link still held, then exits)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.to_thread(self._stop_process)

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

    # -- the process --------------------------------------------------------------

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        self._sock = ours
        self._broken = False
        self.ready = False
        # What the guard must know goes into the socket before the process exists: a
        # daemon frozen right after the fork still has a guard that knows every link.
        for address, route in self.links.snapshot().items():
            self._send(f"hold {address} {route}")
        self._send("beat")
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-S",  # no site-packages at start: the guard adds them only for BlueZ
                    str(PROCESS),
                    "--fd",
                    str(theirs.fileno()),
                    "--stall-after",
                    f"{self.stall_after:g}",
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # Its own session: a terminal's Ctrl-Z or a kill -STOP of us leaves it running.
                start_new_session=True,
            )
        except OSError:
            self._sock = None
            ours.close()
            raise
        finally:
            theirs.close()
        logger.info("host guard started (pid %d)", self.process.pid)

    def _stop_process(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # end of file: the guard ends what is still held and exits
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("host guard (pid %d) did not exit: killed", process.pid)
            process.kill()
            process.wait(timeout=EXIT_TIMEOUT_S)

    def _respawn_if_dead(self) -> None:
        process = self.process
        if process is not None and process.poll() is None and not self._broken:
            return
        rc = process.poll() if process is not None else None
        if process is not None and rc is None:
            process.kill()  # its socket failed: start afresh
            process.wait(timeout=EXIT_TIMEOUT_S)
        logger.warning("host guard died (exit code %s); starting a new one", rc)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.restarts += 1
        self._spawn()

    # -- talking to it ------------------------------------------------------------

    def _send(self, line: str) -> None:
        sock = self._sock
        if sock is None or self._broken:
            return
        try:
            sock.send(line.encode() + b"\n")
        except OSError as err:
            # Full (the guard is stopped) or closed (it died): the next beat restarts it.
            logger.debug("host guard: cannot send %r: %r", line, err)
            self._broken = True

    def _read_replies(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._broken = True  # the guard's end closed: it died
        elif b"ready\n" in data:
            self.ready = True

    def _on_link(self, address: str, route: str | None) -> None:
        self._send(f"hold {address} {route}" if route is not None else f"free {address}")

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        next_try = 0.0
        while True:
            self._read_replies()
            if loop.time() >= next_try:
                try:
                    self._respawn_if_dead()
                except (OSError, subprocess.SubprocessError) as err:
                    # Logged once per back-off, not on every beat.
                    logger.error("host guard cannot be started: %r", err)
                    next_try = loop.time() + RESPAWN_BACKOFF_S
            self._send("beat")
            await asyncio.sleep(self.beat_every)


@contextlib.asynccontextmanager
async def guarded() -> AsyncIterator[HostGuard | None]:
    """A host guard for the duration of a block that drives devices (None where unavailable)."""
    guard = HostGuard()
    try:
        await guard.start()
    except OSError as err:
        # A guard that cannot start must not stop a session: the devices' own rules remain.
        logger.error("host guard not started: %r", err)
        yield None
        return
    try:
        yield guard
    finally:
        await guard.close()
