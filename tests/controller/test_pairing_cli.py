"""``massaged scan``, ``pair``, ``devices`` against a running ``massaged simulate`` (no daemon)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
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
    for _ in range(3):
        json.loads(sim.stdout.readline())
    try:
        yield environment
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
        for stream in (sim.stdout, sim.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(folder, ignore_errors=True)


def massaged(env: dict[str, str], *args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would, typing answer at its prompts."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        input=answer,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_scan_pair_confirm_list_rename_cap_unpair(env: dict[str, str]) -> None:
    scan = massaged(env, "scan", "--simulator", "--timeout", "1", "--json")
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
    assert "not paired" in refused.stdout
    # Felt it: paired, under the name given.
    paired = massaged(env, "pair", pillow, "--simulator", "--name", "sofa", answer="y\n")
    assert paired.returncode == 0, paired.stderr
    assert "paired sofa" in paired.stdout
    again = massaged(env, "pair", pillow, "--simulator", "--yes")
    assert again.returncode == 1
    assert "already paired" in again.stdout
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
