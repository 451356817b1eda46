"""Signals and the terminal (issue 13): one rule for a session started from a terminal.

SIGTERM and SIGHUP stop a session softly, as Ctrl-C does, wherever it runs: in
the process (``run --simulate``), in the daemon for a ``run`` client, and in
``demo``. Each ends with every simulated device at zero in the recording, a
true history row (stopped, with its end), and exit status 128 + the signal. A
session started with ``--detach`` runs on, and ``massaged attach`` shows it
again; attach is a viewer that Ctrl-C leaves without stopping the session.

These start real processes on the simulator, sped up, so each takes seconds. The
tests of a ``run`` client and of ``attach`` share one simulator and daemon (each
ends its session, and a fresh daemon is not what they test); the others start
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.control import call
from controller.session import Outcome
from controller.store import Store
from tests.conftest import KEEP_ENV
from tests.daemon_processes import stop_processes

SPEED = "20"
"""collar-zone's 5¼ minutes in about 16 s: time to signal it mid-session."""
DAEMON_SPEED = "10"
"""The shared daemon's: collar-zone in about 32 s. The detach test attaches to one session
twice, with command lines in between, which on a loaded machine can outlast 16 s."""
SIGNALS = [signal.SIGTERM, signal.SIGHUP]
MPL_CACHE = Path(tempfile.gettempdir()) / f"massaged-tests-mpl-{os.getuid()}"
"""matplotlib's cache, shared by the tests' demos (it writes it under a lock)."""


@dataclass
class World:
    """A private folder, the environment pointing every path into it, and the processes."""

    folder: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.folder / "control.sock"

    @property
    def db(self) -> Path:
        return self.folder / "data" / "massaged.db"

    def start(self, *args: str, group: bool = False) -> subprocess.Popen[str]:
        """massaged args in the background; group: in its own process group, as a
        terminal's foreground job is (a terminal signals the whole group)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.folder,
            start_new_session=group,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.folder,
            timeout=30,
        )

    def api(self, command: str) -> dict[str, Any]:
        """The daemon's answer over its control socket (a check, not the command under test:
        no command line process to start)."""
        answer = asyncio.run(call(self.socket, command))
        assert answer["status"] == "ok", answer
        return answer

    def session(self) -> dict[str, Any] | None:
        session: dict[str, Any] | None = self.api("status")["data"]["session"]
        return session


@contextlib.contextmanager
def new_world() -> Iterator[World]:
    """A private folder and an environment with every massaged path in it."""
    folder = Path(tempfile.mkdtemp(prefix="msd-sig-"))
    # Built here, not from tests/conftest.py's private paths: a module's shared world is set
    # up before them. The developer's own MASSAGED_ settings are left out all the same.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MASSAGED_") or k in KEEP_ENV},
        "HOME": str(folder / "home"),
        "XDG_RUNTIME_DIR": str(folder / "run"),
        "XDG_DATA_HOME": str(folder / "xdg-data"),
        "XDG_CONFIG_HOME": str(folder / "xdg-config"),
        "MASSAGED_DATA_DIR": str(folder / "data"),
        "MASSAGED_CONFIG_DIR": str(folder / "config"),
        "MASSAGED_SIM_RADIO": str(folder / "radio.sock"),
        "MASSAGED_DAEMON_SOCKET": str(folder / "control.sock"),
        "MASSAGED_WEB_PORT": "0",  # any free port: never fight over the page's 8765
        # The simulated radio answers at once: a short scan keeps a daemon's start-up
        # (--auto-pair, in the demo's too) quick. No test here is about the scan.
        "MASSAGED_DAEMON_SCAN_TIMEOUT": "1",
        # matplotlib's font cache (the demo plots at its end), kept between tests: built
        # afresh in each private HOME it cost every demo a fifth of a CPU-second.
        "MPLCONFIGDIR": str(MPL_CACHE),
    }
    w = World(folder, env)
    try:
        yield w
    finally:
        stop_processes(w.procs, timeout=15)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def world() -> Iterator[World]:
    with new_world() as w:
        yield w


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[tuple[World, Path]]:
    """One simulator and daemon (sped up) for the module; the world and the recording."""
    with new_world() as w:
        yield w, start_daemon(w)


@pytest.fixture
def served(shared_daemon: tuple[World, Path]) -> Iterator[tuple[World, Path]]:
    """The shared daemon, idle; the processes a test starts beside it end with the test."""
    w, record = shared_daemon
    wait_idle(w)
    before = len(w.procs)
    try:
        yield w, record
    finally:
        stop_processes(w.procs[before:], timeout=15)
        del w.procs[before:]
        # A test that failed midway may have left its session running: not into the next one.
        if w.session() is not None:
            w.api("stop")


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 30.0) -> str:
    """stdout of proc up to the first line matching pattern (AssertionError on time-out)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                continue
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.search(pattern, line):
                return "".join(seen)
    raise AssertionError(f"no line matching {pattern!r} in: {''.join(seen)}")


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_driven(record: Path, timeout: float = 20.0) -> None:
    """Until the recording shows some output on: the session is moving something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists() and any(on(rows(record))):
            return
        time.sleep(0.1)
    raise AssertionError("no device was ever driven")


def on(recording: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """The outputs left on at the end of a recording (an EB1's strength is a setting)."""
    last: dict[tuple[str, str], Any] = {}
    for row in recording:
        last[(row["device"], row["channel"])] = row["value"]
    return {
        key: value
        for key, value in last.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and value
        and not key[1].startswith("strength")
    }


def check_ended(proc: subprocess.Popen[str], sig: signal.Signals, record: Path) -> str:
    """proc stopped its session softly for sig: status, output, recording."""
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in out + err, err
    assert proc.returncode == 128 + int(sig), (proc.returncode, out, err)
    assert "session stopped" in out, out
    recording = rows(record)
    assert recording, "nothing recorded"
    assert not on(recording), on(recording)
    return out


def history_rows(db: Path) -> int:
    """How many sessions the history holds (a shared daemon's tests add to it)."""
    if not db.exists():
        return 0
    with Store.open_for_reading(db) as store:
        return len(store.list_sessions(None))


def check_history_stopped(db: Path, before: int = 0) -> None:
    """The test's own session, the one row added since before rows, ended stopped."""
    with Store.open_for_reading(db) as store:
        sessions = store.list_sessions(None)
    assert len(sessions) == before + 1, f"not one new history row: {sessions}"
    assert sessions[0].outcome == Outcome.STOPPED, sessions[0]
    assert sessions[0].ended_at is not None


def start_daemon(world: World) -> Path:
    """The simulator and a daemon on it, sped up; returns the recording."""
    record = world.folder / "rec.jsonl"
    sim = world.start("simulate", "--record", str(record), "--speed", DAEMON_SPEED)
    assert sim.stdout is not None
    for _ in range(3):
        json.loads(sim.stdout.readline())
    world.start("daemon", "--simulator", "--auto-pair", "--speed", DAEMON_SPEED)
    deadline = time.monotonic() + 30
    devices: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        # Asked over the socket: a command line per poll would cost a process start each.
        with contextlib.suppress(Exception):  # not listening yet
            devices = world.api("devices")["data"]
            if len(devices) == 3 and all(d["link"] == "up" for d in devices):
                return record
        time.sleep(0.1)
    raise AssertionError(f"the daemon did not connect the simulated devices: {devices}")


def wait_idle(world: World, timeout: float = 30.0) -> None:
    """Until the daemon runs no session (a stopped one fades out first)."""
    deadline = time.monotonic() + timeout
    while world.session() is not None:
        assert time.monotonic() < deadline, world.session()
        time.sleep(0.1)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_run_simulate_stops_softly_on_a_signal(world: World, sig: signal.Signals) -> None:
    record = world.folder / "rec.jsonl"
    run = world.start(
        "run", "--simulate", "--record", str(record), "--speed", SPEED, "--well", "--no-display"
    )
    read_until(run, r"step 1/8")
    wait_driven(record)
    run.send_signal(sig)
    out = check_ended(run, sig, record)
    assert f"{sig.name}: stopping softly" in out
    check_history_stopped(world.db)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_run_client_of_the_daemon_stops_its_session_on_a_signal(
    served: tuple[World, Path], sig: signal.Signals
) -> None:
    world, record = served
    before = history_rows(world.db)
    run = world.start("run", "collar-zone", "--no-display", "--well")
    read_until(run, r"collar-zone")
    wait_driven(record)
    run.send_signal(sig)
    check_ended(run, sig, record)
    assert world.session() is None  # not left running in the daemon
    check_history_stopped(world.db, before)


def test_detach_then_attach_shows_the_running_session(served: tuple[World, Path]) -> None:
    world, record = served
    before = history_rows(world.db)
    detached = world.cli("run", "collar-zone", "--detach", "--well", "--no-display")
    assert detached.returncode == 0, detached.stderr
    assert "massaged attach" in detached.stdout
    session = world.session()
    assert session is not None
    assert session["state"] == "running"
    wait_driven(record)

    # A second run says how to get the session back, in one line.
    again = world.cli("run", "collar-zone", "--well", "--no-display")
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert "massaged attach" in again.stderr
    assert "Traceback" not in again.stderr

    # attach is a viewer: Ctrl-C leaves it, the session runs on.
    viewer = world.start("attach", "--no-display")
    shown = read_until(viewer, r"attached to collar-zone")
    assert "Ctrl-C leaves it running" in shown
    read_until(viewer, r"step \d+/8")
    viewer.send_signal(signal.SIGINT)
    out, err = viewer.communicate(timeout=15)
    assert viewer.returncode == 0, err
    assert "left the view: the session runs on" in out
    session = world.session()
    assert session is not None
    assert session["state"] == "running"

    # Attached again, it follows the session to its end (stopped from elsewhere).
    viewer = world.start("attach", "--no-display")
    read_until(viewer, r"attached to collar-zone")
    assert world.cli("stop").returncode == 0
    out, err = viewer.communicate(timeout=30)
    assert viewer.returncode == 0, err
    assert "session stopped" in out
    assert not on(rows(record))
    check_history_stopped(world.db, before)


def test_attach_without_a_session_says_so(served: tuple[World, Path]) -> None:
    world, _ = served
    answer = world.cli("attach")
    assert answer.returncode == 1
    assert answer.stderr.strip() == (
        f"massaged: error: no session is running on the daemon at {world.socket}"
    )


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_demo_stops_its_session_softly_on_a_signal(world: World, sig: signal.Signals) -> None:
    out_dir = world.folder / "demo-out"
    demo = world.start("demo", "--out", str(out_dir), "--speed", SPEED, "--no-display", group=True)
    read_until(demo, r"^4\. ", timeout=60)
    record = out_dir / "recording.jsonl"
    read_until(demo, r"step \d+/8")
    # As a terminal does (Ctrl-C, hang-up): to the whole foreground group, the demo's
    # simulator and daemon too unless they keep out of it.
    os.killpg(demo.pid, sig)
    out = check_ended(demo, sig, record)
    # The demo's daemon ran on: the session was stopped, not lost with its daemon.
    assert "no massaged daemon" not in out
    # It exits without drawing (a stop is not a wait), and says how to draw what it kept.
    assert not list(out_dir.glob("*.png")), list(out_dir.iterdir())
    assert f"massaged programs plot-recording {record} --out recording.png" in out, out


def test_closing_the_terminal_stops_a_live_session_softly(world: World) -> None:
    """The real hang-up: run's live view on a terminal (a pseudo-terminal here) that closes.

    The kernel sends SIGHUP, and from then on the terminal answers every write and the
    restoring of its settings with EIO: before, that ended in a traceback and status 1.
    """
    import fcntl
    import pty
    import termios

    record = world.folder / "rec.jsonl"
    err = world.folder / "err.txt"
    master, slave = pty.openpty()

    def own_terminal() -> None:  # in the child: the pty becomes its controlling terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    argv = ["run", "--simulate", "--record", str(record), "--speed", SPEED, "--well"]
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", *argv],
            stdin=slave,
            stdout=slave,
            stderr=err_file,
            env={**world.env, "TERM": "xterm"},
            cwd=world.folder,
            preexec_fn=own_terminal,  # this test starts no threads: a pre-exec hook is safe
        )
    os.close(slave)
    try:
        screen = b""
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as sel:
            sel.register(master, selectors.EVENT_READ)
            while b"Strokes" not in screen and time.monotonic() < deadline:
                if sel.select(timeout=0.5):
                    screen += os.read(master, 65536)
        assert b"Strokes" in screen, screen[-500:]  # the live view is on
        wait_driven(record)
    finally:
        os.close(master)  # the terminal goes away
    assert proc.wait(timeout=30) == 128 + signal.SIGHUP
    assert "Traceback" not in err.read_text()
    assert err.read_text().strip() == ""
    assert not on(rows(record)), on(rows(record))
    check_history_stopped(world.db)
