"""The daemon as users run it: a process beside ``massaged simulate``, driven from the CLI.

These tests start real processes: the simulator (serial belt on a
pseudo-terminal, pillow and butterfly on the simulated radio) and the daemon
with ``--simulator --auto-pair``, then act as a user would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.store import Store
from simulator.ble.wire import radio_request
from tests.daemon_processes import Setup, simulator_beside
from tests.simulator.recording_checks import check_stopped_in_time


@pytest.fixture
def setup() -> Iterator[Setup]:
    with simulator_beside("msd-d-") as s:
        yield s


def wait_every_device_on(setup: Setup, timeout: float = 20.0) -> None:
    """Until the recording shows every device putting something out at the same moment."""
    deadline = time.monotonic() + timeout
    state: dict[tuple[str, str], Any] = {}
    kinds: dict[str, str] = {}
    seen = 0  # rows already folded into state: each poll reads only the new ones
    while time.monotonic() < deadline:
        rows = setup.written()  # in the order written: a count of them is a mark
        for row in rows[seen:]:
            state[(row["device"], row["channel"])] = row["value"]
            kinds[row["device"]] = row["kind"]
        seen = len(rows)
        on = {
            device
            for (device, channel), value in state.items()
            if isinstance(value, int)
            and value
            and (kinds[device] != "butterfly" or channel.startswith("output"))
        }
        if kinds and on == set(kinds):
            return
        time.sleep(0.02)
    raise AssertionError("the devices were never all on at once")


def test_sigkill_mid_session_devices_stop_and_restart_finds_them(setup: Setup) -> None:
    daemon = setup.start("daemon", "--simulator", "--auto-pair")
    setup.wait_devices_up(3)
    answer = setup.api("run", {"program": "collar-zone", "transaction": "t-1"})
    assert answer["status"] == "ok", answer
    assert answer["transaction"] == "t-1"
    # Killed while every device is on (a stroke is a movement with rests between them).
    wait_every_device_on(setup)
    killed_at = time.monotonic() - setup.t0
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=5)
    time.sleep(2.5)
    # The simulator keeps a dead host's BLE links up, as BlueZ does: the daemon's host guard
    # ended them (through the radio's Disconnect), so the pillow stopped too.
    check_stopped_in_time(setup.rows(), killed_at)
    radio = Path(setup.env["MASSAGED_SIM_RADIO"])
    listed = asyncio.run(radio_request(radio, "list_devices"))["devices"]
    assert not [d["id"] for d in listed if d["transport"] == "ble" and d["connected"]]

    # A new daemon, no user action: it finds the paired devices again.
    setup.start("daemon", "--simulator")
    devices = setup.wait_devices_up(3)
    assert {d["kind"] for d in devices} == {"belt", "pillow", "butterfly"}
    # The history says what happened: the killed session was closed as a fault on restart.
    with Store.open(setup.folder / "data" / "massaged.db") as store:
        sessions = store.list_sessions(5)
    assert sessions
    assert sessions[0].program == "collar-zone"
    assert sessions[0].ended_at is not None


def test_cli_run_stop_and_sigterm(setup: Setup) -> None:
    daemon = setup.start("daemon", "--simulator", "--auto-pair")
    setup.wait_devices_up(3)
    # `massaged run` finds the daemon and runs the session there, following it to its end.
    run = setup.start("run", "collar-zone", "--no-display", "--well")
    # Until the session runs (a fixed 2.5 s sleep failed on a loaded machine, where the
    # run's start took longer), with a deadline. Asked over the socket: a `massaged status`
    # process per poll cost a process start each; the command line says it once after.
    deadline = time.monotonic() + 20.0
    while True:
        session = setup.api("status")["data"]["session"]
        if (session and session["state"] == "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    status = setup.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    session = json.loads(status.stdout)["session"]
    assert session is not None, "no session 20 s after massaged run"
    assert session["state"] == "running"
    stopped = setup.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    out, _ = run.communicate(timeout=15)
    assert run.returncode == 0, out
    assert "session stopped" in out
    assert "Rest for 10–15 minutes" in out
    assert json.loads(setup.cli("status", "--json").stdout)["session"] is None
    # Every output ended at zero after the fade.
    last: dict[tuple[str, str], Any] = {}
    for row in setup.rows():
        last[(row["device"], row["channel"])] = row["value"]
    # (An EB1 keeps its strength setting; what the body feels is output_a/output_b.)
    on = {
        k: v
        for k, v in last.items()
        if isinstance(v, int) and v and not k[1].startswith("strength")
    }
    assert not on, on
    # A second session, then SIGTERM: the daemon stops every device first and exits cleanly.
    assert setup.api("run", {"program": "collar-zone"})["status"] == "ok"
    time.sleep(1.5)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=15) == 0
    with Store.open(setup.folder / "data" / "massaged.db") as store:
        outcomes = [s.outcome.value if s.outcome else None for s in store.list_sessions(5)]
    assert outcomes[:2] == ["stopped", "stopped"]


def test_a_second_controller_is_refused_with_one_line(setup: Setup) -> None:
    # Finding 7: a second daemon on the same database, and `run --no-daemon --device`,
    # drove the belt the running daemon drove. Each is refused, in one line, exit 1.
    daemon = setup.start("daemon", "--simulator", "--auto-pair")
    devices = setup.wait_devices_up(3)
    belt = next(d for d in devices if d["kind"] == "belt")
    db = setup.folder / "data" / "massaged.db"

    def refused(*args: str) -> str:
        answer = setup.cli(*args)
        assert answer.returncode == 1, answer
        assert "Traceback" not in answer.stderr
        lines = answer.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("massaged: error: "), lines
        return lines[0]

    # Another daemon on the same database, on another socket: refused before anything.
    other = setup.folder / "other.sock"
    line = refused("daemon", "--simulator", "--socket", str(other))
    assert f"another massaged daemon (pid {daemon.pid}) already uses {db}" in line
    assert not other.exists()
    # A run of its own on the daemon's devices (the same database): the daemon's alone.
    line = refused("run", "collar-zone", "--no-daemon", "--device", f"belt={belt['address']}")
    assert f"another massaged daemon (pid {daemon.pid}) already uses {db}" in line
    assert "drives belt" in line
    # Even from another database, the belt's port is the daemon's.
    line = refused(
        "run",
        "collar-zone",
        "--no-daemon",
        "--device",
        f"belt={belt['address']}",
        "--db",
        str(setup.folder / "other.db"),
        "--well",
    )
    assert f"belt: {belt['address']} is in use by another program" in line
    assert "is the massaged daemon running?" in line
    # The daemon served throughout, its belt still up.
    assert all(d["link"] == "up" for d in setup.api("devices")["data"])
    assert daemon.poll() is None
