"""A serial link: a USB CDC-ACM port, a pseudo-terminal or any pyserial URL.

Ports with a file descriptor are read with ``loop.add_reader`` and written
with non-blocking ``os.write``; ports without one (``loop://``, ``rfc2217://``)
are polled by a task and written from an executor thread.

A port is opened exclusively (pyserial's ``exclusive=True``: an ``flock`` on
the open port, released by the kernel when its holder dies), so two massaged
processes never drive one device: the second is refused with
:class:`LinkBusyError`. TIOCEXCL is not used: root (a service often runs as
root) is exempt from it, so it would not stop the case that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
from typing import Protocol, cast

import serial
import serial.tools.list_ports

from devices.errors import DeviceTimeoutError, LinkBusyError, LinkError, LinkLostError
from devices.links.base import (
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
    SERIAL_SOURCE,
    Hex,
    Link,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
"""Bytes asked for in one read; far more than any frame."""
POLL_INTERVAL = 0.005
"""Seconds between polls of a port without a file descriptor (well inside a 20 ms answer)."""
_BUSY_ERRNOS = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EBUSY})
"""How opening a port fails when another program holds it (its flock, or TIOCEXCL)."""


class _Port(Protocol):
    """What this module uses of a pyserial port object."""

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read."""

    def read(self, size: int = 1) -> bytes:
        """Read up to size bytes (never blocks: the port is opened with timeout=0)."""

    def write(self, data: bytes) -> int | None:
        """Write bytes, blocking at most the port's write_timeout."""

    def close(self) -> None:
        """Close the port."""


class _OpenAttempt:
    """Hands an opened port from the executor thread, or closes it if nobody waits any more."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.port: _Port | None = None

    def keep(self, port: _Port) -> bool:
        """Called in the worker thread: False (and the port closed) if open() gave up."""
        with self.lock:
            if not self.abandoned:
                self.port = port
                return True
        _close_quietly(port)
        return False

    def abandon(self) -> None:
        """Called when open() timed out or was cancelled: release whatever was opened."""
        with self.lock:
            self.abandoned = True
            port, self.port = self.port, None
        if port is not None:
            _close_quietly(port)


def _close_quietly(port: _Port) -> None:
    try:
        port.close()
    except Exception:
        logger.debug("closing the port failed", exc_info=True)


def _fileno(port: _Port) -> int | None:
    """The port's file descriptor, or None for URL handlers that have none."""
    fileno = getattr(port, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except Exception:
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class SerialLink(Link):
    """A byte-stream link over a serial port; every chunk is delivered as SERIAL_SOURCE."""

    def __init__(self, url: str, *, baudrate: int = 115200) -> None:
        super().__init__(url)
        self.url = url
        self.baudrate = baudrate
        self._port: _Port | None = None
        self._fd: int | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock = asyncio.Lock()
        self._lost = False

    @property
    def is_open(self) -> bool:
        """True while the port is open and has not been lost."""
        return self._port is not None and not self._lost

    async def open(self, timeout: float = DEFAULT_OPEN_TIMEOUT) -> None:
        """Open the port in an executor thread; raise LinkError or DeviceTimeoutError."""
        if self._port is not None:
            return
        loop = asyncio.get_running_loop()
        attempt = _OpenAttempt()
        try:
            async with asyncio.timeout(timeout):
                port = await loop.run_in_executor(None, self._open_blocking, attempt)
        except TimeoutError as err:
            attempt.abandon()
            raise DeviceTimeoutError(
                f"opening the port took more than {timeout:g} s", device=self.url
            ) from err
        except asyncio.CancelledError:
            # The thread may still be opening it: whatever it opens is closed, not leaked.
            attempt.abandon()
            raise
        except (serial.SerialException, OSError, ValueError) as err:
            if getattr(err, "errno", None) in _BUSY_ERRNOS:
                raise LinkBusyError(self.url) from err
            raise LinkError(f"cannot open serial port: {err}", device=self.url) from err
        if port is None:
            raise LinkError("serial port opened after open() gave up", device=self.url)
        self._loop = loop
        self._port = port
        self._lost = False
        self._fd = _fileno(port)
        try:
            if self._fd is not None:
                os.set_blocking(self._fd, False)
                loop.add_reader(self._fd, self._on_readable)
            else:
                self._poll_task = loop.create_task(self._poll(port), name=f"poll {self.url}")
        except Exception as err:
            self._teardown()
            raise LinkError(f"cannot watch serial port: {err}", device=self.url) from err
        logger.info("%s: opened (%s)", self.url, "fd" if self._fd is not None else "polled")

    def _open_blocking(self, attempt: _OpenAttempt) -> _Port | None:
        port = cast(
            _Port,
            serial.serial_for_url(
                self.url,
                baudrate=self.baudrate,
                timeout=0,
                write_timeout=DEFAULT_WRITE_TIMEOUT,
                # One controller per device: a second opener is refused (URL ports ignore it).
                exclusive=True,
            ),
        )
        return port if attempt.keep(port) else None

    async def close(self) -> None:
        """Close the port and stop reading; never raises, safe to call twice."""
        task = self._poll_task
        self._teardown()
        if task is not None and task is not asyncio.current_task():
            # wait() rather than await: the task ends cancelled, and our own
            # cancellation must still propagate.
            await asyncio.wait({task})

    async def write(
        self, data: bytes, *, target: str | None = None, timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> None:
        """Send bytes (target ignored); on failure report the link lost and raise LinkLostError."""
        port = self._port
        if port is None or self._lost:
            raise LinkLostError("serial port is not open", device=self.url)
        logger.debug("%s -> %s", self.url, Hex(data))
        fd = self._fd
        try:
            if fd is not None and not self._write_lock.locked():
                # The common case: nobody else is writing and the port takes the whole
                # frame at once. Nothing awaits between the check and os.write, so no other
                # write can interleave; only a frame the port would not take whole pays
                # for the lock and the time-out below.
                try:
                    written = os.write(fd, data)
                except BlockingIOError:
                    written = 0
                if written == len(data):
                    return
                data = data[written:]
            async with asyncio.timeout(timeout), self._write_lock:
                if fd is not None:
                    await self._write_fd(fd, data)
                else:
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, port.write, data)
        except TimeoutError as err:
            self._fail(f"write timed out after {timeout:g} s")
            raise LinkLostError(f"write timed out after {timeout:g} s", device=self.url) from err
        except (serial.SerialException, OSError, ValueError, TypeError) as err:
            # A port closed under a pending write fails with ValueError/TypeError in pyserial.
            self._fail(f"write failed: {err}")
            raise LinkLostError(f"write failed: {err}", device=self.url) from err
        if self._port is not port or self._lost:
            raise LinkLostError("serial port closed during write", device=self.url)

    async def _write_fd(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await self._writable(fd)
                continue
            view = view[written:]

    async def _writable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_writable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, on_writable)
        try:
            await ready
        finally:
            loop.remove_writer(fd)

    # -- reading ----------------------------------------------------------------

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._fail(f"read failed: {err}")
            return
        if not data:
            # A hung-up tty (USB unplugged, pty master closed) reads as end of file.
            self._fail("end of file: the device went away")
            return
        self._deliver_safely(data)

    async def _poll(self, port: _Port) -> None:
        while self._port is port and not self._lost:
            try:
                waiting = port.in_waiting
                data = port.read(max(waiting, 1)) if waiting else b""
            except (serial.SerialException, OSError, ValueError, TypeError) as err:
                self._fail(f"read failed: {err}")
                return
            if data:
                self._deliver_safely(data)
                # More may follow at once; look again without sleeping.
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(POLL_INTERVAL)

    def _deliver_safely(self, data: bytes) -> None:
        try:
            self._deliver(SERIAL_SOURCE, data)
        except Exception:
            # A consumer's bug must not take the link down with it.
            logger.exception("%s: receive callback failed", self.url)

    # -- teardown ---------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        """The link dropped by itself: release everything, report once."""
        if self._port is None or self._lost:
            return
        self._lost = True
        self._teardown()
        self._report_lost(reason)

    def _teardown(self) -> None:
        port, self._port = self._port, None
        fd, self._fd = self._fd, None
        task, self._poll_task = self._poll_task, None
        if fd is not None and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if port is not None:
            _close_quietly(port)
            logger.info("%s: closed", self.url)


def list_serial_ports(product_prefix: str = "VB1") -> list[tuple[str, str]]:
    """(device, product) of every serial port whose USB product string starts with the prefix."""
    found: list[tuple[str, str]] = []
    for info in serial.tools.list_ports.comports():
        product = getattr(info, "product", None)
        if isinstance(product, str) and product.startswith(product_prefix):
            found.append((str(info.device), product))
    return sorted(found)
