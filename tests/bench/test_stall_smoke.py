"""bench/stall.py runs to the end with one trial and prints its JSON line.

No timing is asserted here (the figures are for docs/safety.md); only that every
device was seen to stop at all after each way of losing its host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_stall_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "stall.py"), "--trials", "1"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "stall"
    for way in ("baseline_link_drop", "sigstop", "sigkill"):
        devices = {k: v for k, v in result[way].items() if isinstance(v, dict)}
        assert len(devices) == 4, devices
        for stats in devices.values():
            assert stats["n"] == 1
            assert stats["missed"] == 0
