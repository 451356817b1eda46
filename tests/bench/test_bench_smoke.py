"""Each benchmark runs to the end with tiny parameters and prints its JSON line.

Nothing here asserts a timing: the benchmarks measure (docs/performance.md),
the tests only check that they still work. The four scripts start together
(each in its own processes) so the module takes about as long as the slowest.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
TIMEOUT_S = 110.0
"""Generous: a loaded 2-core machine is slow, not wrong (pytest's own limit is 120 s)."""

RUNS: dict[str, list[str]] = {
    "timing": ["--devices", "3", "--seconds", "1.5", "--warmup", "0.5"],
    # Sped up: each trial's session is on (past its start ramp) sooner; the stop path
    # does not depend on the speed.
    "stop": ["--devices", "3", "--trials", "2", "--speed", "10"],
    "mqtt_latency": ["--trials", "3", "--settle", "0.5", "--brokers", "default"],
    "footprint": ["--idle-seconds", "1", "--session-seconds", "1", "--settle", "0.2"],
    "web_stop": ["--trials", "2"],
}


class Run:
    """One benchmark process started by the fixture."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), *RUNS[name]],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, Any]:
        """Wait for the process; its last stdout line as JSON (the test fails otherwise)."""
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"{self.name} did not finish in {TIMEOUT_S:g} s:\n{out}\n{err}")
        assert self.proc.returncode == 0, f"{self.name} failed:\n{out}\n{err}"
        lines = out.strip().splitlines()
        assert lines, f"{self.name} printed nothing:\n{err}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["benchmark"] == self.name
        assert result["machine"]["nproc"] >= 1
        return result

    def kill(self) -> None:
        """End the process if a test left it running, and close its pipes (also when no test
        here read them: with plain -n, not --dist loadgroup, a worker may run none)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    """Every benchmark started at once."""
    started = {name: Run(name) for name in RUNS}
    try:
        yield started
    finally:
        for run in started.values():
            run.kill()


def check_stats(stats: dict[str, Any], n: int | None = None) -> None:
    """A summary has its keys, ordered percentiles and no absurd value."""
    assert {"n", "p50_ms", "p99_ms", "max_ms"} <= set(stats)
    assert stats["n"] >= 1
    if n is not None:
        assert stats["n"] == n
    assert -5.0 <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"] < 60_000


@pytest.mark.parametrize("name", sorted(RUNS))
def test_help(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run as a script, but in this process: the fixture's runs start each one as its own
    # process already, and an interpreter per --help costs its start-up for nothing.
    monkeypatch.setattr(sys, "argv", [str(BENCH / f"{name}.py"), "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository first
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    assert "usage:" in out


def test_timing(runs: dict[str, Run]) -> None:
    result = runs["timing"].result()
    (case,) = result["cases"]
    assert case["devices"] == 3
    assert case["kinds"] == {"belt": 1, "pillow": 1, "butterfly": 1}
    assert case["outcome"] == "completed"
    for side in ("runner", "baseline"):
        check_stats(case[side])
        assert case[side]["missed"] <= case[side]["cues"] // 2
    assert case["ratio_p99"] is None or case["ratio_p99"] > 0
    check_stats(case["by_kind"]["butterfly"]["runner"])


def test_stop(runs: dict[str, Run]) -> None:
    result = runs["stop"].result()
    (case,) = result["cases"]
    assert case["devices"] == 3
    check_stats(case["baseline"], n=2)
    fronts = case["front_ends"]
    for name in ("cli", "api"):
        check_stats(fronts[name], n=2)
        assert fronts[name]["missed"] == 0
    assert ("mqtt" in fronts) != ("mqtt" in case["skipped"])
    if "mqtt" in fronts:
        check_stats(fronts["mqtt"], n=2)


def test_mqtt_latency(runs: dict[str, Run]) -> None:
    result = runs["mqtt_latency"].result()
    (run,) = result["runs"]
    check_stats(run["baseline_round_trip"], n=3)
    check_stats(run["baseline_one_way"], n=3)
    check_stats(run["api_command"], n=3)
    if result["skipped"] is None:
        check_stats(run["mqtt_command"], n=3)
        assert run["ratio_p50"] > 0
    else:
        assert run["mqtt_command"] is None


def test_footprint(runs: dict[str, Run]) -> None:
    result = runs["footprint"].result()
    daemon = result["daemon"]
    assert 0 < daemon["startup"]["online_s"] <= daemon["startup"]["connected_s"] < 60
    for phase in ("idle", "session"):
        assert 0 <= daemon[phase]["cpu_percent"] <= 200
        assert 5 < daemon[phase]["rss_mb"] < 2000
    baseline = result["baseline"]
    assert 0 < baseline["startup_s"] < 60
    assert 1 < baseline["idle"]["rss_mb"] < daemon["idle"]["rss_mb"]


def test_web_stop(runs: dict[str, Run]) -> None:
    result = runs["web_stop"].result()
    assert result["devices"] == 3
    fronts = result["results"]["emergency_stop"]
    assert set(fronts) == {"socket", "http", "ws"}
    for stats in fronts.values():
        check_stats(stats, n=2)
        assert stats["missed"] == 0
    load = result["first_load"]
    assert load["sizes"]["/"] > 0
    assert load["by_kind"]["js"] > 0
    assert load["bytes"] == sum(load["sizes"].values())
