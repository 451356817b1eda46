"""A short soak run (bench/soak.py) as part of the suite: zero unsafe outputs, zero lost rows.

The long run is documented in docs/safety.md; this one runs the same script,
as a user would, for a few seconds and reads its final JSON line, with the
faults of issue 11 in its mix: stalls (the event loop blocked past the lease)
and caps changed mid-session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"


def test_a_short_soak_is_safe_and_loses_no_history() -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "6", "--devices", "4", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result = json.loads(lines[-1])
    assert result["unsafe_outputs"] == 0, result["problems"]
    assert result["lost_history_rows"] == 0, result["problems"]
    assert done.returncode == 0, done.stderr
    assert result["sessions"] >= 2
    assert result["faults_total"] >= 1
    # The stalls (a blocked loop past the lease) and the cap changes are in its mix, and
    # every stall was judged as a service gap.
    assert result["stalls"] >= 1, result["faults"]
    assert result["gaps_judged"] == result["stalls"]
    assert sum(result["cap_changes"].values()) >= 1, result["faults"]
    assert result["outputs_checked"] > 0
    assert sum(result["outcomes"].values()) == result["sessions"] - result["refused"]
    assert result["rss_end_mib"] > 0


def test_the_soak_refuses_a_bad_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--devices", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--devices" in done.stderr
