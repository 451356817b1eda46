"""Before a session: well today, a contraindication for today, the caution, the spacing.

The command line (a prompt on a terminal, or flags), and the daemon's run request
(which the control socket and MQTT both validate and carry out the same way).
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from controller import api
from controller.cli import main
from controller.courses import REST_AFTER_S, course_status, start_course
from controller.daemon import Daemon
from controller.profiles import (
    OSTEOCHONDROSIS_CAUTION,
    Audience,
    Contraindication,
    ForToday,
    Profile,
)
from controller.readiness import Confirm, check_ready, questions
from controller.session import Outcome
from controller.store import Store
from devices.errors import SafetyError

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _record(
    store: Store,
    *,
    ended: datetime,
    outcome: Outcome = Outcome.COMPLETED,
    simulated: bool = False,
    profile: str = "default",
) -> int:
    session = store.begin_session(
        "collar-zone",
        ["belt"],
        profile,
        started_at=ended - timedelta(minutes=5),
        simulated=simulated,
    )
    store.finish_session(session, outcome, ended_at=ended)
    return session


def _nothing(_: Confirm) -> bool:
    return False


def _all(_: Confirm) -> bool:
    return True


# -- the rules ------------------------------------------------------------------


def test_well_today_is_always_asked_and_a_refusal_names_the_field_and_the_flag(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "db") as store:
        with pytest.raises(SafetyError, match=r'"well_today": true .*--well') as err:
            check_ready(Profile(), store, _nothing, simulated=True, now=NOW)
        assert "\n" not in str(err.value)
        asked = check_ready(Profile(), store, _all, simulated=True, now=NOW)
        assert [q.confirm for q in asked] == [Confirm.WELL_TODAY]


def test_a_contraindication_for_today_postpones_and_lapses_the_next_day() -> None:
    today = NOW.astimezone().date()
    flu = Profile(for_today=ForToday(day=today, items=frozenset({Contraindication.FEVER})))
    with pytest.raises(SafetyError, match=r"postponed: .*fever"):
        check_ready(flu, None, _all, simulated=True, now=NOW)
    # Nothing overrides it today; tomorrow it no longer applies.
    check_ready(flu, None, _all, simulated=True, now=NOW + timedelta(days=1))


def test_complex_osteochondrosis_shows_the_methods_caution_and_asks_for_it() -> None:
    profile = Profile(complex_osteochondrosis=True)
    with pytest.raises(SafetyError, match=r"complex osteochondrosis.*accept_caution"):
        check_ready(profile, None, lambda c: c == Confirm.WELL_TODAY, simulated=True, now=NOW)
    (well, caution) = questions(profile, None, simulated=True, now=NOW)
    assert (well.confirm, caution.confirm) == (Confirm.WELL_TODAY, Confirm.ACCEPT_CAUTION)
    assert OSTEOCHONDROSIS_CAUTION in caution.reason
    assert "hardware massage does not suit every case" in caution.reason
    check_ready(profile, None, _all, simulated=True, now=NOW)


def test_a_start_within_the_rest_after_the_last_real_session_asks_for_an_override(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path / "db") as store:
        _record(store, ended=NOW - timedelta(minutes=5), outcome=Outcome.STOPPED)
        with pytest.raises(SafetyError, match=r"ended 5 min ago.*override_spacing"):
            check_ready(
                Profile(), store, lambda c: c != Confirm.OVERRIDE_SPACING, simulated=False, now=NOW
            )
        check_ready(Profile(), store, _all, simulated=False, now=NOW)
        # A simulated session needs no rest after it, and a simulated one is not checked.
        later = NOW + timedelta(seconds=REST_AFTER_S)
        _record(store, ended=later - timedelta(minutes=1), simulated=True)
        assert [q.confirm for q in questions(Profile(), store, simulated=False, now=later)] == [
            Confirm.WELL_TODAY
        ]
        assert [q.confirm for q in questions(Profile(), store, simulated=True, now=NOW)] == [
            Confirm.WELL_TODAY
        ]


def test_a_start_earlier_than_the_courses_spacing_asks_for_an_override(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        start_course(store, "default", every_days=2, started_at=NOW - timedelta(days=3))
        _record(store, ended=NOW - timedelta(hours=3))
        with pytest.raises(SafetyError, match=r"every 2 day\(s\).*due on"):
            check_ready(
                Profile(), store, lambda c: c != Confirm.OVERRIDE_SPACING, simulated=False, now=NOW
            )
        assert [q.confirm for q in questions(Profile(), store, simulated=False, now=NOW)][-1] == (
            Confirm.OVERRIDE_SPACING
        )
        # Two days on, the session is due: nothing to override.
        assert [
            q.confirm
            for q in questions(Profile(), store, simulated=False, now=NOW + timedelta(days=2))
        ] == [Confirm.WELL_TODAY]


def test_simulated_and_cut_sessions_never_count_toward_a_course(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        start_course(store, "default", started_at=NOW - timedelta(days=5))
        _record(store, ended=NOW - timedelta(days=4), simulated=True)
        _record(store, ended=NOW - timedelta(days=3), outcome=Outcome.CUT)
        assert store.list_sessions(1)[0].outcome == Outcome.CUT
        progress = course_status(store, "default", today=NOW.date())
        assert progress is not None
        assert progress.completed == 0
        _record(store, ended=NOW - timedelta(days=2))
        progress = course_status(store, "default", today=NOW.date())
        assert progress is not None
        assert progress.completed == 1


# -- the daemon's run request (the control socket and MQTT) -------------------------


async def test_the_run_request_is_refused_without_its_confirmations(tmp_path: Path) -> None:
    with Store.open(tmp_path / "db") as store:
        _record(store, ended=datetime.now(UTC) - timedelta(minutes=2))
        daemon = Daemon(store)  # on real devices (none paired): the spacing is checked
        await daemon.start()
        try:
            answer = await api.dispatch(daemon, "run", {"program": "collar-zone"})
            assert answer["status"] == "error"
            assert '"well_today": true' in answer["error"]
            answer = await api.dispatch(
                daemon, "run", {"program": "collar-zone", "well_today": True}
            )
            assert answer["status"] == "error"
            assert '"override_spacing": true' in answer["error"]
            confirmed = {"program": "collar-zone", "well_today": True, "override_spacing": True}
            answer = await api.dispatch(daemon, "run", confirmed)
            # Past every question: refused only because no device is paired.
            assert answer["status"] == "error"
            assert "no paired device" in answer["error"] or "connected" in answer["error"]
            # A strict model: a confirmation is a JSON true, never a string.
            answer = await api.dispatch(daemon, "run", {**confirmed, "well_today": "yes"})
            assert answer["status"] == "error"
            assert "well_today" in answer["error"]
        finally:
            await daemon.close()


# -- the command line ---------------------------------------------------------------


class _Terminal(io.StringIO):
    """Standard input on a terminal, with the person's answers typed in advance."""

    def isatty(self) -> bool:
        return True


def _run(db: Path, *extra: str, program: str = "collar-zone-child") -> int:
    args = ["run", program, "--simulate", "--speed", "120", "--no-display", "--db", str(db)]
    return main([*args, *extra])


def test_without_a_terminal_or_the_flag_the_run_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    assert _run(db) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--well" in err
    assert "postpone" in err
    with Store.open(db) as store:
        assert store.list_sessions() == []


def test_on_a_terminal_the_run_asks_and_a_no_postpones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "db"
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    assert _run(db) == 1
    out, err = capsys.readouterr()
    assert "well today" in out
    assert "postpone" in err
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    assert _run(db) == 0
    assert "session completed" in capsys.readouterr().out


def test_profiles_set_today_postpones_todays_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    assert main(["profiles", "set", "ann", "--today", "fever", "--db", str(db)]) == 0
    assert "for today" in capsys.readouterr().out
    assert _run(db, "--profile", "ann", "--well") == 1
    assert "postponed" in capsys.readouterr().err
    with Store.open(db) as store:
        ann = store.get_profile("ann")
        assert ann.for_today is not None
        assert ann.for_today.day == date.today()
        # Recorded yesterday: it no longer applies.
        store.save_profile(ann.updated(for_today={"day": "2020-01-01", "items": ["fever"]}))
    assert _run(db, "--profile", "ann", "--well") == 0


def test_the_caution_is_shown_and_must_be_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    assert main(["profiles", "set", "bo", "--complex-osteochondrosis", "--db", str(db)]) == 0
    assert "hardware massage does not suit every case" in capsys.readouterr().out
    assert _run(db, "--profile", "bo", "--well") == 1
    err = capsys.readouterr().err
    assert "hardware massage does not suit every case" in err
    assert "--accept-caution" in err
    assert _run(db, "--profile", "bo", "--well", "--accept-caution") == 0


def test_a_simulated_run_is_marked_simulated_and_never_counts_toward_the_course(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    assert main(["course", "start", "--db", str(db)]) == 0
    assert _run(db, "--well") == 0
    assert main(["history", "--db", str(db)]) == 0
    assert "simulated" in capsys.readouterr().out.splitlines()[-1]
    with Store.open(db) as store:
        (session,) = store.list_sessions()
        assert session.simulated
        assert session.outcome == Outcome.COMPLETED
        progress = course_status(store, "default")
        assert progress is not None
        assert progress.completed == 0


def test_an_adult_program_too_long_for_a_child_is_refused_naming_the_childs_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db"
    with Store.open(db) as store:
        store.save_profile(Profile(name="kid", audience=Audience.CHILD))
    code = _run(db, "--profile", "kid", "--well", program="classic-three-stage")
    assert code == 1
    err = capsys.readouterr().err
    assert "child" in err
    assert "collar-zone-child" in err
    with Store.open(db) as store:
        assert store.list_sessions() == [], "refused before it started, never cut"


async def test_a_daemon_refuses_too_long_a_program_for_a_child_and_marks_simulated() -> None:
    from tests.reliability.world import world

    def kid(store: Store) -> None:
        store.save_profile(Profile(name="kid", audience=Audience.CHILD))

    async with world(prepare_store=kid) as w:
        # The control socket (and MQTT, through the same API): refused up front, by name.
        refused = await w.call("run", {"program": "classic-three-stage", "profile": "kid"})
        assert refused["status"] == "error", refused
        assert "collar-zone-child" in refused["error"]
        assert w.store.list_sessions(10) == [], "refused, never started and cut"
        assert w.quiet()
        # A program that fits runs with the child's rules: no EMS.
        await w.run(program="collar-zone", profile="kid")
        await w.wait_on("belt-1")
        assert w.device_state("butterfly-1") == "dropped"
        assert (await w.call("stop"))["status"] == "ok"
        result = await w.wait_ended()
        record = w.record(result)
        assert record.simulated, "a daemon on the simulator marks its sessions simulated"
        assert record.outcome == Outcome.STOPPED
