"""Real processes for a test: ``massaged simulate`` in a private folder, then daemons and
command lines beside it, all stopped and the folder removed at the end.

Shared by the tests that must see the daemon as users run it (a SIGKILL, a SIGSTOP, a
flood of connections): one way to start, drive and clean up, instead of one per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from controller.control import call
from simulator.recording import in_time_order

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    """The folder, environment and processes of one test."""

    folder: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    t0: float = 0.0
    """The simulator's monotonic clock at its recording's t = 0."""
    served: list[dict[str, Any]] = field(default_factory=list)
    """What the simulator printed of each device it serves (id, kind, address, ...)."""
    _rows: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    """The recording's rows parsed so far (rows() reads only what came after them)."""
    _read_to: int = field(default=0, init=False, repr=False)
    """The recording's bytes those rows came from."""
    _rows_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    """rows() from two threads at once (a web test's helpers) must not read a part twice."""

    @property
    def socket(self) -> Path:
        return self.folder / "control.sock"

    @property
    def record(self) -> Path:
        return self.folder / "rec.jsonl"

    @property
    def log(self) -> Path:
        return self.folder / "daemon.log"

    def start(self, *args: str, stderr: IO[str] | int = subprocess.PIPE) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )

    def api(self, command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        if command == "run" and payload is not None:
            # The person confirms being well before a session (controller.readiness).
            payload = {"well_today": True, **payload}
        return asyncio.run(call(self.socket, command, payload))

    def wait_devices_up(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        devices: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                answer = self.api("devices")
            except Exception:  # not listening yet
                time.sleep(0.2)
                continue
            devices = answer["data"]
            if len(devices) == count and all(d["link"] == "up" for d in devices):
                return devices
            time.sleep(0.2)
        raise AssertionError(f"devices not up in {timeout} s: {devices}")

    def rows(self) -> list[dict[str, Any]]:
        """Every row of the recording so far, in time order (a new list each call; a
        change stamped late comes after another device's later line: simulator/recording.py)."""
        return in_time_order(self.written())

    def written(self) -> list[dict[str, Any]]:
        """Every row of the recording so far, in the order written (a new list each call):
        a position in it is a mark of what was written after it.

        Only what was appended since the last call is read and parsed: the tests poll the
        recording every few tens of milliseconds while it grows, and parsing all of it
        each time cost seconds of CPU. A line still being written waits for the next call.
        """
        with self._rows_lock, self.record.open("rb") as file:
            if os.fstat(file.fileno()).st_size < self._read_to:  # a new recording: from the top
                self._rows.clear()
                self._read_to = 0
            file.seek(self._read_to)
            data = file.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._read_to += len(complete)
            self._rows.extend(json.loads(line) for line in complete.splitlines() if line)
            return list(self._rows)


def private_env(folder: Path) -> dict[str, str]:
    """This environment, with every massaged path inside folder."""
    return {
        **os.environ,
        "MASSAGED_DATA_DIR": str(folder / "data"),
        "MASSAGED_CONFIG_DIR": str(folder / "config"),
        "MASSAGED_SIM_RADIO": str(folder / "radio.sock"),
        "MASSAGED_DAEMON_SOCKET": str(folder / "control.sock"),
        "MASSAGED_WEB_PORT": "0",  # any free port: never fight over the page's 8765
        # The simulated radio answers at once: a short scan keeps a daemon's start-up
        # (--auto-pair) quick. No test here is about the scan's own length.
        "MASSAGED_DAEMON_SCAN_TIMEOUT": "1",
    }


def stop_processes(procs: list[subprocess.Popen[str]], timeout: float = 10.0) -> None:
    """Each process still running gets a Ctrl-C (its soft stop), then a kill; newest first."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def simulator_beside(
    prefix: str, devices: Sequence[str] = (), *, speed: float = 1.0
) -> Iterator[Setup]:
    """A private folder with ``massaged simulate`` recording in it, ready for a daemon.

    devices: ``--device`` specs (default: the simulator's belt, pillow and butterfly);
    what it prints of each is in ``Setup.served``.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    s = Setup(folder, private_env(folder))
    try:
        options = [arg for spec in devices for arg in ("--device", spec)]
        if speed != 1.0:
            options += ["--speed", f"{speed:g}"]
        sim = s.start("simulate", "--record", str(s.record), *options)
        assert sim.stdout is not None
        assert sim.stderr is not None
        for _ in range(len(devices) or 3):  # one line per simulated device
            s.served.append(json.loads(sim.stdout.readline()))
        match = re.search(r"monotonic ([0-9.]+)", sim.stderr.readline())
        assert match
        s.t0 = float(match.group(1))
        yield s
    finally:
        stop_processes(s.procs)
        shutil.rmtree(folder, ignore_errors=True)
