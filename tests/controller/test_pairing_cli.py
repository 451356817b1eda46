"""``massaged scan``, ``pair``, ``devices`` against a running ``massaged simulate`` (no daemon)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.store import Store


@dataclass
class Simulated:
    """A running ``massaged simulate``: the environment that reaches it, what it serves."""

    env: dict[str, str]
    devices: list[dict[str, Any]]
    """What the simulator printed of each device (id, kind, address, ...)."""


@pytest.fixture
def simulated() -> Iterator[Simulated]:
    folder = Path(tempfile.mkdtemp(prefix="msd-pair-"))
    environment = {
        **os.environ,
        "MASSAGED_DATA_DIR": str(folder / "data"),
        "MASSAGED_CONFIG_DIR": str(folder / "config"),
        "MASSAGED_SIM_RADIO": str(folder / "radio.sock"),
        "MASSAGED_DAEMON_SOCKET": str(folder / "control.sock"),
        "MASSAGED_DAEMON_SCAN_TIMEOUT": "1",
    }
    sim = subprocess.Popen(
        [sys.executable, "-m", "controller", "simulate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert sim.stdout is not None
    devices = [json.loads(sim.stdout.readline()) for _ in range(3)]
    try:
        yield Simulated(environment, devices)
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
        for stream in (sim.stdout, sim.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def env(simulated: Simulated) -> dict[str, str]:
    """The environment of a command line beside the running simulator."""
    return simulated.env


SCAN_S = "3"
"""Seconds of a scan: on a loaded machine a 1 s scan once heard only the serial belt."""


def massaged(env: dict[str, str], *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would, typing answer at its prompts on a terminal.

    Without an answer, stdin is /dev/null: no terminal, as from a script.
    """
    if not answer:
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())  # typed ahead: the terminal keeps the line
        return subprocess.run(
            [sys.executable, "-m", "controller", *args],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        os.close(terminal)
        os.close(controller)


def paired(env: dict[str, str]) -> list[str]:
    """The names in the registry, read from its file (a check: no command line to start)."""
    db = Path(env["MASSAGED_DATA_DIR"]) / "massaged.db"
    if not db.exists():  # nothing was ever stored
        return []
    with Store.open_for_reading(db) as store:
        return [record.name for record in store.list_devices()]


def test_scan_pair_confirm_list_rename_cap_unpair(env: dict[str, str]) -> None:
    scan = massaged(env, "scan", "--simulator", "--timeout", SCAN_S, "--json")
    assert scan.returncode == 0, scan.stderr
    found = {f["kind"]: f for f in json.loads(scan.stdout)}
    assert set(found) == {"belt", "pillow", "butterfly"}
    assert found["pillow"]["rssi"] is not None  # BLE: signal strength
    assert found["belt"]["transport"] == "serial"

    # The user did not feel the pulse: nothing is stored.
    pillow = found["pillow"]["address"]
    refused = massaged(env, "pair", pillow, "--simulator", answer="n\n")
    assert refused.returncode == 1
    assert "gentle pulse" in refused.stdout
    assert "not paired" in refused.stderr
    # Felt it: paired, under the name given.
    paired = massaged(env, "pair", pillow, "--simulator", "--name", "sofa", answer="y\n")
    assert paired.returncode == 0, paired.stderr
    assert "paired sofa" in paired.stdout
    again = massaged(env, "pair", pillow, "--simulator", "--yes")
    assert again.returncode == 1
    assert "already paired" in again.stderr
    belt = massaged(env, "pair", found["belt"]["address"], "--simulator", "--yes")
    assert belt.returncode == 0, belt.stderr

    listing = massaged(env, "devices", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert {d["name"] for d in json.loads(listing.stdout)} == {"sofa", "belt"}

    assert massaged(env, "devices", "rename", "sofa", "pillow").returncode == 0
    assert massaged(env, "devices", "set", "belt", "--max-intensity", "0.5").returncode == 0
    bad = massaged(env, "devices", "set", "belt", "--max-intensity", "1.5")
    assert bad.returncode == 1
    assert "max_intensity" in bad.stderr
    bad_name = massaged(env, "devices", "rename", "belt", "no spaces please")
    assert bad_name.returncode == 1
    devices = {d["name"]: d for d in json.loads(massaged(env, "devices", "--json").stdout)}
    assert set(devices) == {"pillow", "belt"}
    assert devices["belt"]["caps"] == {"belt": 0.5}
    assert massaged(env, "unpair", "pillow").returncode == 0
    assert {d["name"] for d in json.loads(massaged(env, "devices", "--json").stdout)} == {"belt"}


def test_pair_without_a_terminal_names_the_flag(simulated: Simulated) -> None:
    """No terminal (stdin /dev/null): refused at once, one line naming --yes, no traceback."""
    env = simulated.env
    # The pillow's address as the simulator serves it: the scan is the first test's, and a
    # scan here cost a process and its seconds of listening for one address.
    pillow = next(d for d in simulated.devices if d["kind"] == "pillow")["address"]
    for args in ((pillow,), ()):
        done = massaged(env, "pair", *args, "--simulator")
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "--yes" in done.stderr
        assert "connecting" not in done.stdout  # refused before any device was touched
    assert paired(env) == []


def test_pair_yes_with_several_devices_does_not_pick_one(env: dict[str, str]) -> None:
    """--yes answers the pulse question only: with three unpaired devices it lists them."""
    done = massaged(env, "pair", "--simulator", "--yes")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ADDRESS" in done.stderr
    for kind in ("belt", "pillow", "butterfly"):
        assert kind in done.stderr
    assert paired(env) == []


def test_pair_asks_which_one_on_a_terminal(env: dict[str, str]) -> None:
    """On a terminal, several unpaired devices: a numbered table, then the chosen one."""
    done = massaged(env, "pair", "--simulator", answer="2\ny\n")
    assert done.returncode == 0, done.stderr
    assert "which one? [1-3]" in done.stdout
    header = next(line for line in done.stdout.splitlines() if "ADDRESS" in line)
    assert header.split() == ["#", "KIND", "ADDRESS", "NAME"]  # a table sized to its content
    assert len(paired(env)) == 1
