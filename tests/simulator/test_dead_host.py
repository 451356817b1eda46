"""A host killed with SIGKILL mid-session: every simulated device stops by itself.

The simulator runs as its own process (``massaged simulate``) and the host in
another, as on hardware: nothing in the dying process gets a chance to stop
the devices, so only the firmware rules can (VB1 watchdog 1 s, SP1 stop
within 1 s of a dropped link, EB1 output ends 100 ms after the last B0).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.simulator.recording_checks import check_stopped_in_time

HERE = Path(__file__).parent


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        raise AssertionError(f"process ended or timed out (rc={proc.poll()})")
    return line


def test_sigkilled_host_leaves_every_device_stopped() -> None:
    folder = Path(tempfile.mkdtemp(prefix="msd-dead-"))
    radio = folder / "radio.sock"
    record = folder / "rec.jsonl"
    env = {**os.environ, "MASSAGED_SIM_RADIO": str(radio)}
    sim = subprocess.Popen(
        [sys.executable, "-m", "controller", "simulate", "--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    host: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 20
        devices = [json.loads(_read_line(sim, deadline)) for _ in range(3)]
        assert {d["kind"] for d in devices} == {"belt", "pillow", "butterfly"}
        assert sim.stderr is not None
        banner = sim.stderr.readline()
        match = re.search(r"monotonic ([0-9.]+)", banner)
        assert match, banner
        t0 = float(match.group(1))

        host = subprocess.Popen(
            [sys.executable, str(HERE / "host_that_dies.py"), str(radio), json.dumps(devices)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert _read_line(host, deadline).strip() == "driving"
        time.sleep(0.5)  # a healthy session for a moment
        killed_at = time.monotonic() - t0
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=5)
        time.sleep(2.5)
    finally:
        if host is not None and host.poll() is None:
            host.kill()
            host.wait(timeout=5)
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=10)
        for proc in (sim, host):
            if proc is not None:
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    shutil.rmtree(folder, ignore_errors=True)
    check_stopped_in_time(rows, killed_at)
