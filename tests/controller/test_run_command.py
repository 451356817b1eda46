"""``massaged run`` through controller.cli.main, on the in-process simulated devices."""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import pytest

from controller.cli import main
from controller.courses import AFTER_SESSION_ADVICE
from controller.live import LinePrinter, handle_key, render_snapshot
from controller.profiles import Contraindication, Profile
from controller.session import Outcome, RunnerEvent, SessionRunner
from controller.store import Store
from devices.drivers.vb1 import VB1Driver
from programs import library
from programs.render import default_devices, render
from simulator.endpoints.memory import MemoryLink
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import read_recording


def _by_channel(rows: list[dict[str, object]]) -> dict[tuple[str, str], list[int]]:
    values: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        if isinstance(row["value"], int):
            values[(cast(str, row["kind"]), cast(str, row["channel"]))].append(row["value"])
    return values


def test_collar_zone_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record, db = tmp_path / "session.jsonl", tmp_path / "db"
    args = ["run", "collar-zone", "--simulate", "--speed", "60", "--no-display", "--well"]
    assert main([*args, "--record", str(record), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "step 1/8" in out
    assert "step 8/8" in out
    assert "session completed" in out
    assert AFTER_SESSION_ADVICE in out

    rows = read_recording(record)
    values = _by_channel(rows)
    assert {cast(str, r["kind"]) for r in rows} == {"belt", "pillow", "butterfly"}
    # Every device was active...
    assert max(values[("belt", "motor1")]) > 0
    assert max(values[("pillow", "speed")]) > 0
    assert max(values[("butterfly", "strength_a")]) > 0
    assert max(values[("butterfly", "output_a")]) > 0
    # ...never past the default profile's caps...
    for (kind, channel), seen in values.items():
        if kind == "belt" and channel.startswith("motor"):
            assert max(seen) <= math.floor(255 * 0.8), channel
        if kind == "butterfly" and channel.startswith("strength"):
            assert max(seen) <= math.floor(200 * 0.5), channel
        # ...and everything at zero at the end.
        assert seen[-1] == 0, (kind, channel)

    with Store.open(db) as store:
        (session,) = store.list_sessions()
        assert session.outcome == Outcome.COMPLETED
        assert session.program == "collar-zone"
        assert session.devices == ("belt-1", "pillow-1", "butterfly-1")


def test_ems_only_contraindication_leaves_the_butterfly_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, record = tmp_path / "db", tmp_path / "rec.jsonl"
    with Store.open(db) as store:
        store.save_profile(
            Profile(name="ann", contraindications=frozenset({Contraindication.PREGNANCY}))
        )
    args = ["run", "collar-zone-child", "--simulate", "--speed", "120", "--no-display", "--well"]
    assert main([*args, "--profile", "ann", "--db", str(db), "--record", str(record)]) == 0
    out = capsys.readouterr().out
    assert "butterfly is left out" in out
    assert "Let the child rest" in out
    assert "butterfly" not in {r["kind"] for r in read_recording(record)}


def test_general_contraindication_refuses_the_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    with Store.open(db) as store:
        store.save_profile(
            Profile(name="bob", contraindications=frozenset({Contraindication.FEVER}))
        )
    assert main(["run", "collar-zone", "--simulate", "--profile", "bob", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "session refused" in err
    assert "fever" in err
    with Store.open(db) as store:
        assert store.list_sessions() == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "belt=/dev/null", "--speed", "10"], "--speed only works with --simulate"),
        (["--device", "belt=/dev/null", "--record", "x.jsonl"], "--record only works"),
        (["--simulate", "--speed", "500"], "--speed must be 1..120"),
        (["--simulate", "--scale", "1.5"], "--scale must be 0..1"),
        (["--simulate", "--device", "belt=/dev/null"], "leave out --device"),
        (["--device", "belt"], "expected KIND=ADDRESS"),
        ([], "no devices"),
    ],
)
def test_refused_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["run", "collar-zone", *extra, "--db", str(tmp_path / "db")]) == 1
    assert message in capsys.readouterr().err


def test_unknown_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no-such-program", "--simulate", "--db", str(tmp_path / "db")]) == 1
    assert "no-such-program" in capsys.readouterr().err


async def test_live_view_and_keys() -> None:
    plan = render(library.get("collar-zone").program, default_devices())
    device = VB1Driver(MemoryLink(VB1Firmware("belt", motors=6)), name="belt")
    plan.timelines = {"belt": plan.timelines["belt"]}
    runner = SessionRunner(plan, {"belt": device}, scale=0.5)
    text = render_snapshot(runner.snapshot(), width=60)
    assert "collar-zone: Cervical-collar zone massage" in text
    assert "belt (belt)" in text
    assert "motor6" in text
    assert "intensity 50%" in text
    assert handle_key(runner, "+") == "intensity 60%"
    assert handle_key(runner, "-") == "intensity 50%"
    assert handle_key(runner, "x") is None

    lines: list[str] = []
    printer = LinePrinter(lines.append)
    printer(RunnerEvent(35.0, "step", None, {"index": 1, "label": "Rubs", "count": 8}))
    printer(RunnerEvent(40.0, "link_lost", "belt", {"reason": "cable"}))
    printer(RunnerEvent(41.0, "nothing-to-say", None, {}))
    assert lines == ["0:35  step 2/8  Rubs", "0:40  belt: link lost (cable): reconnecting"]


SHORT_PROGRAM = """
id = "short"
title = "Short"
audience = "adult"
max_duration = 30
description = "One short step, for the history tests."
cites = "none: a test program"

[[steps]]
technique = "stroking"
zone = "collar_zone"
duration_s = 60
intensity = 0.5
label = "Stroking"
"""


@pytest.fixture
def locked_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[sqlite3.Connection]]:
    """The database locked by another connection (as another process would) at the session end.

    Returns the database and the list that will hold the connection holding the lock.
    """
    db = tmp_path / "db"
    monkeypatch.setattr("controller.store.BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr("controller.store.WRITE_RETRY_DELAYS", (0.01, 0.01))
    blockers: list[sqlite3.Connection] = []
    finish = Store.finish_session

    def locked_finish(self: Store, *args: Any, **kwargs: Any) -> Any:
        if not blockers:
            # The session writes its end from a worker thread: the lock is taken there.
            blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            blocker.execute("BEGIN EXCLUSIVE")
            blockers.append(blocker)
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(Store, "finish_session", locked_finish)
    return db, blockers


def test_a_session_end_the_history_cannot_take_fails_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    locked_at_the_end: tuple[Path, list[sqlite3.Connection]],
) -> None:
    # Finding 9: the end could not be written, yet the run printed "(history #22)" and
    # exited 0 with the row left running. It is tried again, then reported.
    db, blockers = locked_at_the_end
    program = tmp_path / "short.toml"
    program.write_text(SHORT_PROGRAM)
    args = [
        "run",
        str(program),
        "--simulate",
        "--speed",
        "120",
        "--no-display",
        "--well",
        "--db",
        str(db),
    ]
    try:
        code = main(args)
    finally:
        for blocker in blockers:
            blocker.close()
    out, err = capsys.readouterr()
    assert code == 1
    assert "session completed" in out  # the session itself ran and stopped as usual
    assert "(history #" not in out
    assert "massaged: error: the end of this session could not be written to the history" in err
    assert "busy in another process" in err  # the reason, from the store's last attempt
    assert "Traceback" not in err
    with Store.open(db) as store:
        (record,) = store.list_sessions()
        assert record.ended_at is None  # what was reported is what the file holds


def test_a_session_end_written_on_a_second_attempt_is_a_normal_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    locked_at_the_end: tuple[Path, list[sqlite3.Connection]],
) -> None:
    db, blockers = locked_at_the_end

    def pause(_: float) -> None:
        for blocker in blockers:
            if blocker.in_transaction:
                blocker.execute("COMMIT")  # the other process ends its transaction

    monkeypatch.setattr("controller.store._backoff_sleep", pause)
    program = tmp_path / "short.toml"
    program.write_text(SHORT_PROGRAM)
    args = [
        "run",
        str(program),
        "--simulate",
        "--speed",
        "120",
        "--no-display",
        "--well",
        "--db",
        str(db),
    ]
    try:
        assert main(args) == 0
    finally:
        for blocker in blockers:
            blocker.close()
    out = capsys.readouterr().out
    assert "session completed" in out
    with Store.open(db) as store:
        (record,) = store.list_sessions()
        assert record.outcome == Outcome.COMPLETED
        assert f"(history #{record.id})" in out
