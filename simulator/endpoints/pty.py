"""Serve a simulated serial device on a pseudo-terminal.

The host opens the slave side (``path``) like any serial port; the endpoint
holds the master, feeds what the host writes to the firmware and writes back
what the firmware sends. The endpoint also keeps the slave open, so that a
host closing and reopening the port never hangs the pty up; only ``unplug()``
does, the way pulling a USB cable does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import tty
from pathlib import Path

from devices.links.base import Hex
from devices.wake import Wake
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware, Outgoing

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
SPLIT_GAP = 0.001
"""Seconds between bytes under the split fault: long enough for the host to read each alone."""


class PtyEndpoint:
    """A firmware served on a pseudo-terminal, with transport faults and a cable to pull."""

    def __init__(
        self,
        firmware: Firmware,
        *,
        faults: LinkFaults | None = None,
        link_path: Path | None = None,
    ) -> None:
        self.firmware = firmware
        self.faults = faults if faults is not None else LinkFaults()
        self.link_path = link_path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._tty_name: str | None = None
        self._linked_to: str | None = None
        """The pty link_path points at since we made it (None: we made none)."""
        self._inbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._outq: collections.deque[tuple[int, float, bytes, bool]] = collections.deque()
        self._generation = 0
        """Counts plug-ins, so that bytes queued before an unplug never reach the next pty."""
        self._wake = Wake()
        self._send_wake = asyncio.Event()
        self._sending = False
        self._run_task: asyncio.Task[None] | None = None
        self._send_task: asyncio.Task[None] | None = None

    # -- public -------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Where a host opens the port: link_path when given, else the pty's own name."""
        if self.link_path is not None:
            return str(self.link_path)
        if self._tty_name is None:
            raise RuntimeError("the pty endpoint is not started")
        return self._tty_name

    @property
    def tty_name(self) -> str | None:
        """The current pty slave's device name (None while unplugged or stopped)."""
        return self._tty_name

    @property
    def plugged(self) -> bool:
        """True while a pty exists (between start/replug and unplug/stop)."""
        return self._master is not None

    async def start(self) -> None:
        """Create the pty and start serving the firmware."""
        if self._run_task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._plug()
        self._run_task = self._loop.create_task(self._run(), name=f"pty {self.firmware.device_id}")
        self._send_task = self._loop.create_task(
            self._send_loop(), name=f"pty send {self.firmware.device_id}"
        )

    async def stop(self) -> None:
        """Stop serving, close the pty, remove the symlink; safe to call twice."""
        tasks = [t for t in (self._run_task, self._send_task) if t is not None]
        self._run_task = self._send_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self.plugged and self._loop is not None:
            self.firmware.link_down(self._loop.time())
        self._unplug_pty()
        self._remove_link()
        for task in tasks:
            # A firmware bug ends the run task: say so rather than hide it.
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    def wake(self) -> None:
        """Run the firmware now (after poking it from outside, e.g. its stop button)."""
        self._wake.set()

    def unplug(self) -> None:
        """Pull the cable: the pty goes away (the host sees a hang-up) and the path with it."""
        if not self.plugged:
            return
        logger.info("%s: unplugged", self.path)
        self._unplug_pty()
        self._remove_link()
        if self._loop is not None:
            self.firmware.link_down(self._loop.time())
        self._wake.set()

    async def replug(self) -> None:
        """Plug the cable back in: a new pty, at the same link_path when one is given."""
        if self.plugged or self._run_task is None:
            return
        self._plug()
        logger.info("%s: plugged in again", self.path)

    # -- pty ----------------------------------------------------------------------

    def _plug(self) -> None:
        assert self._loop is not None
        master, slave = os.openpty()
        try:
            # Raw: no echo, no CR/LF translation, no flow control characters, 8 bits clean.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._tty_name = os.ttyname(slave)
            self._loop.add_reader(master, self._on_readable)
        except BaseException:
            os.close(master)
            os.close(slave)
            self._tty_name = None
            raise
        self._master, self._slave = master, slave
        self._generation += 1
        self._make_link()
        self.firmware.link_up(self._loop.time())
        self._wake.set()
        logger.info("%s: serving %s on %s", self.path, self.firmware.device_id, self._tty_name)

    def _unplug_pty(self) -> None:
        master, self._master = self._master, None
        slave, self._slave = self._slave, None
        self._tty_name = None
        self._outq.clear()
        if master is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(master)
            with contextlib.suppress(OSError):
                os.close(master)
        if slave is not None:
            with contextlib.suppress(OSError):
                os.close(slave)

    def _make_link(self) -> None:
        if self.link_path is None or self._tty_name is None:
            return
        # Replace atomically, so that a host never finds the path missing half-way.
        tmp = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self._tty_name)
        os.replace(tmp, self.link_path)
        self._linked_to = self._tty_name

    def _remove_link(self) -> None:
        target, self._linked_to = self._linked_to, None
        if self.link_path is None or target is None:
            return
        # Only our own link: a path that now points elsewhere belongs to someone else.
        with contextlib.suppress(FileNotFoundError, OSError):
            if os.readlink(self.link_path) == target:
                self.link_path.unlink()

    # -- host -> device -------------------------------------------------------------

    def _on_readable(self) -> None:
        master = self._master
        if master is None or self._loop is None:
            return
        try:
            data = os.read(master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            # Cannot happen while we hold the slave open; stop watching rather than spin.
            logger.warning("%s: pty read failed: %s", self._tty_name, err)
            self._loop.remove_reader(master)
            return
        if not data:
            return
        logger.debug("%s host -> %s", self._tty_name, Hex(data))
        if self.faults.link_down:
            return
        self._inbox.append((self._loop.time(), self.faults.corrupt(data)))
        self._wake.set()

    # -- the firmware's clock ----------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        fw = self.firmware
        try:
            await self._serve(loop, fw)
        except Exception:
            logger.exception("%s: the firmware failed; the device is dead", fw.device_id)
            raise

    async def _serve(self, loop: asyncio.AbstractEventLoop, fw: Firmware) -> None:
        while True:
            while self._inbox:
                arrived, data = self._inbox.popleft()
                fw.receive(data, arrived)
            fw.tick(loop.time())
            self._send(fw.take_outgoing())
            deadline = fw.next_deadline(loop.time())
            self._wake.clear()
            await self._wake.sleep_until(deadline if math.isfinite(deadline) else None)

    # -- device -> host ------------------------------------------------------------------

    def _send(self, outgoing: list[Outgoing]) -> None:
        assert self._loop is not None
        for _target, data in outgoing:
            if not self.plugged or self.faults.link_down:
                logger.debug("%s: cable cut, lost %s", self.firmware.device_id, Hex(data))
                continue
            if self.faults.should_drop():
                logger.debug("%s: dropped %s", self._tty_name, Hex(data))
                continue
            data = self.faults.corrupt(data)
            delay = max(0.0, self.faults.delay)
            split = self.faults.split
            if not delay and not split and not self._outq and not self._sending:
                self._write(data)
            else:
                self._outq.append((self._generation, self._loop.time() + delay, data, split))
                self._send_wake.set()

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._outq:
                self._send_wake.clear()
                await self._send_wake.wait()
                continue
            generation, due, data, split = self._outq.popleft()
            # While this frame waits, later ones queue behind it: order is kept.
            self._sending = True
            try:
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if split:
                    for i in range(len(data)):
                        self._write(data[i : i + 1], generation)
                        # A gap after every byte, the last one too: frames never touch.
                        await asyncio.sleep(SPLIT_GAP)
                else:
                    self._write(data, generation)
            finally:
                self._sending = False

    def _write(self, data: bytes, generation: int | None = None) -> None:
        master = self._master
        if master is None or self.faults.link_down:
            return
        if generation is not None and generation != self._generation:
            return
        logger.debug("%s host <- %s", self._tty_name, Hex(data))
        try:
            written = os.write(master, data)
        except BlockingIOError:
            # Nobody reads the port and its buffer is full: the bytes are lost, as on a wire.
            logger.debug("%s: pty full, lost %s", self._tty_name, Hex(data))
            return
        except OSError as err:
            logger.warning("%s: pty write failed: %s", self._tty_name, err)
            return
        if written < len(data):
            logger.debug("%s: pty full, lost %s", self._tty_name, Hex(data[written:]))
