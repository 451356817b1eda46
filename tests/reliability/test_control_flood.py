"""An emergency stop through a flood of idle connections to the control socket.

The attack of issue 11: thousands of connections opened to the control socket
and held silent. Before the fix they took every file descriptor the daemon
had, ``massaged emergency-stop`` timed out while the session ran on, and the
log grew by a line per failed accept. Here the daemon runs beside
``massaged simulate`` with its descriptor limit lowered (so the flood is small
and fast), a thread keeps opening connections as fast as it can until every
device is at zero, and the stop must still arrive: every device at zero on the
simulator's recording (docs/safety.md promise 3, with a margin for a loaded
machine) and staying there, the session over, the daemon still serving, and the
log short.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_processes import Setup, simulator_beside

ROOT = Path(__file__).resolve().parents[2]
PROMISE_S = 1.0
"""docs/safety.md promise 3: every output at zero within 1 s of the request."""
MARGIN_S = 2.0
"""A busy machine's margin: two cores shared with the flood and the other tests."""
HELD = 2000
"""The flood holds at most this many connections (more than the daemon's descriptors)."""
LOG_LINES = 200
"""The daemon's log after the flood has at most this many lines (it had one per accept)."""


@pytest.fixture
def procs() -> Iterator[Setup]:
    with simulator_beside("msd-f-") as p:
        yield p


class Flood:
    """A thread that opens connections to a socket as fast as it can and holds them silent.

    It holds at most HELD (closing the oldest beyond that, so this process keeps
    its own descriptors), and drops those the daemon has closed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = 0
        self.held: deque[socket.socket] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30.0)
        while self.held:
            self.held.popleft().close()

    def wait_opened(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.opened < count:
            assert time.monotonic() < deadline, f"only {self.opened} connections in {timeout} s"
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(str(self.path))
            except OSError:  # the backlog is full (EAGAIN): the daemon is behind
                client.close()
                time.sleep(0.0005)
                continue
            self.opened += 1
            self.held.append(client)
            if len(self.held) > HELD:
                self.held.popleft().close()


def lower_descriptors(pid: int, limit: int) -> None:
    """The daemon's RLIMIT_NOFILE soft limit to limit (its hard limit unchanged)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def quiet_times(rows: list[dict[str, Any]]) -> tuple[dict[str, float | None], set[str]]:
    """Per device, the recording time its outputs last all became zero (None: still on)."""
    state: dict[tuple[str, str], Any] = {}
    quiet: dict[str, float | None] = {}
    was_on: set[str] = set()
    for row in rows:
        device = row["device"]
        state[(device, row["channel"])] = row["value"]
        values = [v for (d, c), v in state.items() if d == device and isinstance(v, int)]
        if row["kind"] == "butterfly":  # what the body feels: the outputs, not the settings
            values = [v for (d, c), v in state.items() if d == device and c.startswith("output")]
        if any(values):
            was_on.add(device)
            quiet[device] = None
        elif quiet.get(device) is None:
            quiet[device] = row["t"]
    return quiet, was_on


def wait_all_quiet(procs: Setup, until: float) -> None:
    """Until every device that ran is at zero on the recording, or the recording's time until."""
    while time.monotonic() - procs.t0 < until:
        quiet, was_on = quiet_times(procs.rows())
        if was_on and all(since is not None for since in quiet.values()):
            return
        time.sleep(0.05)


LIMIT = 256
"""The daemon's descriptors when they are to spare: far more than its connection cap needs."""
HEADROOM = 8
"""The daemon's descriptors above those it has open when they are to run out."""


@pytest.mark.parametrize(
    ("exhaust", "said"),
    [
        (False, "connections (the most served at once)"),
        (True, "control socket: out of file descriptors"),
    ],
    ids=["descriptors-to-spare", "descriptors-exhausted"],
)
def test_an_emergency_stop_gets_through_a_connection_flood(
    procs: Setup, exhaust: bool, said: str
) -> None:
    """Promise 3 under a flood: the stop arrives and every device is at zero on the recording.

    To spare: the daemon may open LIMIT descriptors, more than its connection
    cap needs, so the cap and its closing of idle connections let the stop in.
    Exhausted: it may open only HEADROOM more than it has open, below the cap,
    so the flood runs it out of descriptors and the reserve descriptor lets the
    stop in. Either way the log names the case, so each proves its own path.
    """
    with procs.log.open("w") as log:
        daemon = procs.start("daemon", "--simulator", "--auto-pair", stderr=log)
    procs.wait_devices_up(3)
    limit = open_descriptors(daemon.pid) + HEADROOM if exhaust else LIMIT
    lower_descriptors(daemon.pid, limit)
    # well_today: the person's word that today is a day for massage (controller.readiness).
    answer = procs.api("run", {"program": "collar-zone", "well_today": True})
    assert answer["status"] == "ok", answer
    time.sleep(2.0)  # the first stroke is under way on every device
    log_before = procs.log.read_text().count("\n")

    with Flood(procs.socket) as flood:
        flood.wait_opened(limit)  # as many as the daemon has descriptors, and more to come
        asked_at = time.monotonic() - procs.t0
        stop = subprocess.run(
            [sys.executable, "-m", "controller", "emergency-stop"],
            capture_output=True,
            text=True,
            env=procs.env,
            cwd=ROOT,
            timeout=60,
        )
        answered_at = time.monotonic() - procs.t0
        # The flood lasts until the recording has every device at zero (or the promise's
        # time is up), and until it has opened enough connections beyond the daemon's
        # descriptors that a log line for each would overrun LOG_LINES. Beyond that it
        # would only keep the daemon's core busy: the rest of the wait (every device
        # stays at zero) is without it.
        wait_all_quiet(procs, until=answered_at + PROMISE_S + MARGIN_S)
        flood.wait_opened(limit + 2 * LOG_LINES)
        opened = flood.opened
    time.sleep(max(0.0, answered_at + PROMISE_S + MARGIN_S - (time.monotonic() - procs.t0)))

    assert stop.returncode == 0, (stop.stderr, opened, procs.log.read_text()[-3000:])
    assert answered_at - asked_at <= PROMISE_S + MARGIN_S, answered_at - asked_at
    quiet, was_on = quiet_times(procs.rows())
    assert was_on == set(quiet) == {"belt-1", "pillow-1", "butterfly-1"}, was_on
    for device, since in quiet.items():
        assert since is not None, f"{device} still running after the emergency stop"
        assert since - asked_at <= PROMISE_S + MARGIN_S, (device, since - asked_at)
    # The daemon still serves once the flood is gone, and the session is over.
    status = procs.api("status")
    assert status["status"] == "ok", status
    assert status["data"]["session"] is None
    assert daemon.poll() is None
    text = procs.log.read_text()
    assert said in text  # the case took the path it is about
    assert text.count("\n") - log_before <= LOG_LINES, (opened, text[-3000:])
