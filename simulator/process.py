"""``massaged simulate`` as a child process, for a script or a test: started, ready, stopped.

``SimulatorProcess`` runs ``python -m controller simulate`` (the ``massaged``
command, without relying on it being on PATH), waits until it has printed one
line per device and its radio line (it serves from then on), and on stop sends
Ctrl-C (its soft stop), then kills it if it has not ended in time. Everything
has a time-out, and nothing is left running: the pipes are read by two tasks
that stop() awaits, so a chatty simulator never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from devices.errors import ConfigError, DeviceTimeoutError, LinkError
from simulator.served import ServedDevice

logger = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT = 20.0
"""Seconds for the simulator to start serving (Python's start-up and its imports included)."""
DEFAULT_STOP_TIMEOUT = 10.0
"""Seconds for it to end after Ctrl-C, before it is killed."""
_KEPT_LINES = 20
"""Lines of the simulator's stderr kept to explain a failure."""


class SimulatorProcess:
    """``massaged simulate`` in a child process (an async context manager)."""

    def __init__(
        self,
        devices: Sequence[str] = ("belt", "pillow", "butterfly"),
        *,
        radio_path: Path | None = None,
        speed: float = 1.0,
        record: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not devices:
            raise ConfigError("SimulatorProcess: give at least one device")
        self.specs = list(devices)
        if radio_path is None:
            from devices.links.sim_radio import default_radio_path

            radio_path = default_radio_path()
        self.radio_path = radio_path
        """The radio's socket: hosts reach the BLE devices (and list the serial ones) here."""
        self.speed = speed
        self.record = record
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(os.environ if env is None else env)
        self.devices: tuple[ServedDevice, ...] = ()
        """The devices served, once started."""
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._stderr: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)

    def command(self) -> list[str]:
        """The command line that is run."""
        argv = [sys.executable, "-m", "controller", "simulate", "--radio", str(self.radio_path)]
        for spec in self.specs:
            argv += ["--device", spec]
        argv += ["--speed", repr(float(self.speed))]
        if self.record is not None:
            argv += ["--record", str(self.record)]
        return argv

    async def start(self) -> tuple[ServedDevice, ...]:
        """Start it and wait until it serves; on failure it is stopped and the error says why.

        LinkError (with the simulator's own error line) when it exits instead of serving,
        DeviceTimeoutError when it is not serving within start_timeout seconds.
        """
        if self._proc is not None:
            raise LinkError("this SimulatorProcess was already started")
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            async with asyncio.timeout(self.start_timeout):
                self.devices = await self._wait_ready(self._proc)
        except TimeoutError as err:
            await self.stop()
            raise DeviceTimeoutError(
                f"massaged simulate did not start serving within {self.start_timeout:g} s"
                + self._why()
            ) from err
        except BaseException:
            await self.stop()
            raise
        logger.info("massaged simulate (pid %d) serves on %s", self._proc.pid, self.radio_path)
        return self.devices

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> tuple[ServedDevice, ...]:
        assert proc.stdout is not None
        assert proc.stderr is not None
        devices: list[ServedDevice] = []
        # One JSON line per device on stdout, then "# radio ..." on stderr: from there it serves.
        while len(devices) < len(self.specs):
            line = await proc.stdout.readline()
            if not line:
                await self._collect_stderr(proc)
                raise LinkError("massaged simulate exited before serving" + self._why())
            try:
                description = json.loads(line)
            except json.JSONDecodeError:
                raise LinkError(f"massaged simulate printed {line!r:.120}, not a device") from None
            devices.append(ServedDevice.from_json(description))
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise LinkError("massaged simulate exited before serving" + self._why())
            text = line.decode(errors="replace").rstrip()
            if text.startswith("# radio "):
                break
            self._stderr.append(text)
        self._readers = [
            asyncio.get_running_loop().create_task(self._drain(proc.stdout, None)),
            asyncio.get_running_loop().create_task(self._drain(proc.stderr, self._stderr)),
        ]
        return tuple(devices)

    async def _collect_stderr(self, proc: asyncio.subprocess.Process) -> None:
        """What it said before exiting (a bounded wait: the process is already going)."""
        assert proc.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.stop_timeout):
                async for line in proc.stderr:
                    self._stderr.append(line.decode(errors="replace").rstrip())

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, keep: collections.deque[str] | None) -> None:
        async for line in stream:
            if keep is not None:
                keep.append(line.decode(errors="replace").rstrip())

    def _why(self) -> str:
        errors = [line for line in self._stderr if line.startswith("massaged: error:")]
        last = errors[-1] if errors else (self._stderr[-1] if self._stderr else "")
        return f": {last}" if last else ""

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return None if self._proc is None else self._proc.pid

    async def stop(self) -> int:
        """Ctrl-C, then a kill after stop_timeout seconds; its exit status. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await proc.wait()
            except TimeoutError:
                logger.warning("massaged simulate (pid %d) ignored Ctrl-C: killed", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        # The pipes end with the process; the readers finish with them.
        readers, self._readers = self._readers, []
        if readers:
            _, pending = await asyncio.wait(readers, timeout=self.stop_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        self.returncode = proc.returncode
        return proc.returncode if proc.returncode is not None else 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
