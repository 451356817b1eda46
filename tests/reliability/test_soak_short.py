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
from typing import Any

from tests.reliability.checks import CAP_GRACE_S, GAP_FRESH_S, OutputAudit

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


# -- the soak's checker can fail ---------------------------------------------------------------


def belt_row(t: float, value: int) -> dict[str, Any]:
    """A recording row of the belt's first motor."""
    return {"t": t, "device": "belt-1", "kind": "belt", "channel": "motor1", "value": value}


def ems_rows(t: float, strength: int, output: int) -> list[dict[str, Any]]:
    """The rows of one EB1 change on channel A: its strength, then its output."""
    common = {"t": t, "device": "butterfly-1", "kind": "butterfly"}
    return [
        {**common, "channel": "strength_a", "value": strength},
        {**common, "channel": "output_a", "value": output},
    ]


def new_audit() -> OutputAudit:
    """An audit of a belt (cap 200) and a butterfly (cap 100) in real time."""
    return OutputAudit(
        {"belt-1": 200, "butterfly-1": 100}, {"belt-1": "belt", "butterfly-1": "butterfly"}
    )


def test_the_checker_flags_a_device_held_on_after_a_service_gap() -> None:
    # The belt goes on at its held level after the gap, never through zero.
    held = new_audit()
    held.feed(belt_row(0.0, 150))
    held.gap(10.0)
    held.feed(belt_row(10.01, 150))
    held.check_due(10.0 + GAP_FRESH_S + 0.1)
    assert any("held level" in p for p in held.problems), held.problems
    # Back through zero, then on again: a fresh start (a frame in flight before it is fine).
    fresh = new_audit()
    fresh.feed(belt_row(0.0, 150))
    fresh.gap(10.0)
    for t, value in ((10.001, 140), (10.05, 0), (10.2, 30)):
        fresh.feed(belt_row(t, value))
    fresh.check_due(20.0)
    assert fresh.problems == []


def test_the_checker_wants_the_ems_back_through_its_ramp_from_zero() -> None:
    # The waveform ran out in the gap; the host then resumes at the held strength of 80.
    held = new_audit()
    for rows in (ems_rows(0.0, 80, 40), ems_rows(0.05, 80, 0)):
        held.feed_all(rows)
    held.gap(2.0)
    held.feed_all([ems_rows(2.01, 80, 40)[1]])
    held.check_due(2.0 + GAP_FRESH_S + 0.1)
    assert any("held level" in p for p in held.problems), held.problems
    # Strength back to 0 and up 5 per 100 ms: no problem.
    fresh = new_audit()
    for rows in (ems_rows(0.0, 80, 40), ems_rows(0.05, 80, 0)):
        fresh.feed_all(rows)
    fresh.gap(2.0)
    fresh.feed_all(ems_rows(2.01, 0, 0))
    for i in range(1, 10):
        fresh.feed_all(ems_rows(2.01 + 0.1 * i, 5 * i, 3 * i))
    fresh.check_due(10.0)
    assert fresh.problems == []


def test_the_checker_holds_outputs_to_a_lowered_cap_after_its_grace() -> None:
    held = new_audit()
    held.feed(belt_row(0.0, 150))
    held.lower_cap("belt-1", 50, at=1.0)
    held.feed(belt_row(1.0 + CAP_GRACE_S / 2, 120))  # within the grace: the old cap holds
    assert held.problems == []
    held.check_due(1.0 + CAP_GRACE_S + 0.01)
    assert any("held at 120" in p for p in held.problems), held.problems
    held.feed(belt_row(3.0, 60))
    assert any("motor1=60 is past its cap 50" in p for p in held.problems), held.problems
    # Down within the grace and never above it again: no problem.
    obeyed = new_audit()
    obeyed.feed(belt_row(0.0, 150))
    obeyed.lower_cap("belt-1", 50, at=1.0)
    obeyed.feed(belt_row(1.1, 50))
    obeyed.check_due(5.0)
    assert obeyed.problems == []
