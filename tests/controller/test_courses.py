"""Courses: progress from the history, next due date, advice, and the commands."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from controller.commands import history as history_cmd
from controller.courses import (
    AFTER_SESSION_ADVICE,
    COURSE_SESSIONS,
    after_session_advice,
    course_progress,
    course_status,
    next_due_date,
    start_course,
    validate_course,
)
from controller.errors import NotFoundError
from controller.profiles import Audience, Profile
from controller.session import Outcome
from controller.store import CourseRecord, SessionRecord, Store
from devices.errors import ConfigError

START = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def course(sessions: int = 15, every_days: int = 2, profile: str = "default") -> CourseRecord:
    """A course that started on 1 May 2024."""
    return CourseRecord(1, profile, START, sessions, every_days)


def session(
    day: int,
    hour: int = 18,
    outcome: Outcome | None = Outcome.COMPLETED,
    profile: str = "default",
) -> SessionRecord:
    """A session on day `day` of May 2024 (day 0 is 30 April)."""
    started = datetime(2024, 4, 30, hour, tzinfo=UTC) + timedelta(days=day)
    return SessionRecord(
        id=day * 100 + hour,
        program="neck-basic",
        devices=("belt",),
        profile=profile,
        started_at=started,
        ended_at=None if outcome is None else started + timedelta(minutes=30),
        outcome=outcome,
        gentler_presses=0,
        detail={},
    )


def test_method_defaults_and_rules() -> None:
    assert COURSE_SESSIONS == 15
    validate_course(15, 1)
    validate_course(15, 3)
    with pytest.raises(ConfigError, match="every_days"):
        validate_course(15, 4)
    with pytest.raises(ConfigError, match="sessions"):
        validate_course(0, 1)


def test_advice_after_a_session() -> None:
    assert "10–15 minutes" in AFTER_SESSION_ADVICE
    assert "slowly" in AFTER_SESSION_ADVICE
    assert "child" in after_session_advice(Audience.CHILD)


def test_no_session_yet_is_due_on_the_start_day() -> None:
    progress = course_progress(course(), [], today=date(2024, 5, 1), tz=UTC)
    assert progress.completed == 0
    assert progress.remaining == 15
    assert progress.next_due == date(2024, 5, 1)
    assert progress.due_now
    assert not progress.overdue


def test_next_due_is_every_days_after_the_last_session() -> None:
    history = [session(1), session(3), session(5)]
    progress = course_progress(course(every_days=2), history, today=date(2024, 5, 6), tz=UTC)
    assert progress.completed == 3
    assert progress.last_session == date(2024, 5, 5)
    assert progress.next_due == date(2024, 5, 7)
    assert not progress.due_now
    late = course_progress(course(every_days=2), history, today=date(2024, 5, 9), tz=UTC)
    assert late.overdue
    assert course_progress(course(every_days=3), history, tz=UTC).next_due == date(2024, 5, 8)


def test_only_completed_sessions_of_the_course_count_once_a_day() -> None:
    history = [
        session(0),  # before the course started
        session(1, hour=9),
        session(1, hour=19),  # a second session the same day
        session(2, outcome=Outcome.STOPPED),
        session(3, outcome=Outcome.EMERGENCY_STOP),
        session(4, outcome=None),  # still running
        session(5, profile="anna"),
    ]
    progress = course_progress(course(every_days=1), history, today=date(2024, 5, 6), tz=UTC)
    assert progress.completed == 1
    assert progress.next_due == date(2024, 5, 2)


def test_local_days_decide() -> None:
    # 23:30 UTC on 1 May is already 2 May at UTC+2.
    late = SessionRecord(
        1,
        "p",
        ("belt",),
        "default",
        START.replace(hour=23, minute=30),
        None,
        Outcome.COMPLETED,
        0,
        {},
    )
    plus2 = timezone(timedelta(hours=2))
    assert course_progress(course(every_days=1), [late], tz=plus2).last_session == date(2024, 5, 2)
    assert course_progress(course(every_days=1), [late], tz=UTC).last_session == date(2024, 5, 1)


def test_a_complete_course_has_no_next_date() -> None:
    history = [session(d) for d in range(1, 16)]
    progress = course_progress(course(every_days=1), history, tz=UTC)
    assert progress.completed == 15
    assert progress.done
    assert progress.next_due is None
    assert next_due_date(course(sessions=2), [date(2024, 5, 1), date(2024, 5, 2)]) is None


def test_course_status_from_the_store(tmp_path: Path) -> None:
    with Store.open(tmp_path / "m.db") as store:
        assert course_status(store, "default") is None
        with pytest.raises(NotFoundError, match="bob"):
            start_course(store, "bob")
        with pytest.raises(ConfigError, match="every_days"):
            start_course(store, "default", every_days=7)
        assert store.active_course("default") is None
        start_course(store, "default", sessions=5, every_days=2, started_at=START)
        for day in (1, 3):
            sid = store.begin_session("p", ["belt"], "default", started_at=session(day).started_at)
            store.finish_session(sid, Outcome.COMPLETED)
        sid = store.begin_session("p", ["belt"], "default", started_at=session(4).started_at)
        store.finish_session(sid, Outcome.STOPPED)
        progress = course_status(store, "default", today=date(2024, 5, 4), tz=UTC)
        assert progress is not None
        assert (progress.completed, progress.remaining) == (2, 3)
        assert progress.next_due == date(2024, 5, 5)


# -- the commands ---------------------------------------------------------------


def run(argv: list[str]) -> int:
    """Parse and run a ``history`` or ``course`` command on its own parser."""
    parser = argparse.ArgumentParser(prog="massaged")
    history_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_history_and_course_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "m.db")
    with Store.open(db):  # a new database: read commands create none (issue 13)
        pass
    assert run(["history", "--db", db]) == 0
    assert "no sessions yet" in capsys.readouterr().out
    with Store.open(db) as store:
        store.save_profile(Profile(name="kid", audience=Audience.CHILD))
        for program in ("neck-basic", "shoulders"):
            sid = store.begin_session(program, ["belt", "pillow"], "default")
            store.add_event(sid, 5.0, "gentler")
            store.finish_session(sid, Outcome.COMPLETED)
    assert run(["history", "--limit", "1", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "shoulders" in out
    assert "neck-basic" not in out
    assert "completed" in out

    assert run(["course", "show", "--db", db]) == 0
    assert "no course" in capsys.readouterr().out
    assert run(["course", "start", "--every", "2", "--sessions", "10", "--db", db]) == 0
    assert "10 sessions, every 2 day(s)" in capsys.readouterr().out
    assert run(["course", "show", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "done: 0 of 10" in out
    assert "due today" in out
    assert "10–15 minutes" in out
    assert run(["course", "start", "--profile", "kid", "--db", db]) == 0
    capsys.readouterr()
    assert run(["course", "show", "--profile", "kid", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "15 sessions, every 1 day(s)" in out
    assert "help them get up slowly" in out
    with pytest.raises(SystemExit):
        run(["course", "start", "--every", "5", "--db", db])
