"""The SQLite store: migrations, permissions, crash safety, errors, CRUD."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller import paths
from controller.errors import NotFoundError, StoreError
from controller.profiles import Audience, Profile
from controller.session import Outcome
from controller.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    WRITE_RETRY_DELAYS,
    DeviceRecord,
    Store,
)
from devices.capabilities import DeviceKind
from devices.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    """The permission bits of a path."""
    return stat.S_IMODE(path.stat().st_mode)


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary folder."""
    with Store.open(tmp_path / "m.db") as opened:
        yield opened


# -- opening, migrations, permissions -----------------------------------------


def test_fresh_file_is_migrated_to_the_latest_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.db") as s:
        assert s.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
        assert {"profiles", "sessions", "session_events", "courses", "devices"} <= tables
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert s.integrity_check() == "ok"


def test_an_empty_existing_file_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    with Store.open(db) as s:
        assert s.schema_version == SCHEMA_VERSION
        s.begin_session("p", ["belt"], "default", started_at=T0)
    with Store.open(db) as s:  # re-opening migrates nothing and keeps the data
        assert s.schema_version == SCHEMA_VERSION
        assert len(s.list_sessions()) == 1


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this massaged understands"):
        Store.open(db)


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="damaged or not a massaged database"):
        Store.open(db)


def test_default_location_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data" / "massaged"
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(data))
    with Store.open() as s:
        assert s.path == data / "massaged.db"
        s.begin_session("p", ["belt"], "default")
        assert mode(data) == 0o700
        assert mode(s.path) == 0o600
        wal = s.path.with_name("massaged.db-wal")
        assert wal.exists()
        assert mode(wal) == 0o600


def test_a_shared_override_folder_is_not_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(shared))
    Store.open().close()
    assert mode(shared) == 0o755  # not ours to change: only the file is private
    assert mode(shared / "massaged.db") == 0o600


def test_an_existing_world_readable_file_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "open.db"
    Store.open(db).close()
    db.chmod(0o644)
    Store.open(db).close()
    assert mode(db) == 0o600


def test_paths_follow_xdg_and_overrides(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": "/x/data", "XDG_CONFIG_HOME": "/x/config"}
    assert paths.data_dir(env) == Path("/x/data/massaged")
    assert paths.config_dir(env) == Path("/x/config/massaged")
    env |= {paths.DATA_DIR_ENV: str(tmp_path / "d"), paths.CONFIG_DIR_ENV: str(tmp_path / "c")}
    assert paths.db_path(env) == tmp_path / "d" / "massaged.db"
    assert paths.config_dir(env) == tmp_path / "c"


# -- crash safety ---------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from controller.session import Outcome
    from controller.store import Store

    store = Store.open(sys.argv[1])
    done = store.begin_session("neck-basic", ["belt", "pillow"], "default")
    store.add_event(done, 1.5, "gentler", {"factor": 0.7})
    store.finish_session(done, Outcome.COMPLETED, detail={"note": "finished"})
    running = store.begin_session("neck-long", ["belt"], "default")
    print(done, running, flush=True)
    i = 0
    while True:  # killed somewhere in here, mid-transaction or mid-fsync
        store.add_event(running, i / 10, "tick", {"i": i, "pad": "x" * 2000})
        i += 1
    """
)


def test_a_finished_record_survives_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(db)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    done_id, running_id = (int(x) for x in line.split())
    # Let it write a while, so the kill lands in the middle of a write.
    with Store.open(db) as watcher:
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len(watcher.session_events(running_id)) < 20 and datetime.now(UTC) < deadline:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    with Store.open(db) as s:
        assert s.integrity_check() == "ok"
        done = s.get_session(done_id)
        assert done.outcome == Outcome.COMPLETED
        assert done.gentler_presses == 1
        assert done.detail == {"note": "finished"}
        assert done.devices == ("belt", "pillow")
        assert [e.kind for e in s.session_events(done_id)] == ["gentler"]
        running = s.get_session(running_id)
        assert running.outcome is None
        ticks = s.session_events(running_id)
        assert len(ticks) >= 20
        # Every event that made it is whole: numbered 0, 1, 2, ... without a gap.
        assert [e.detail["i"] for e in ticks] == list(range(len(ticks)))
        assert s.close_unfinished() == [running_id]
        assert s.get_session(running_id).outcome == Outcome.FAULT


OWNER_SCRIPT = textwrap.dedent(
    """
    import sys
    from controller.store import Store

    store = Store.open(sys.argv[1])
    print(store.begin_session("collar-zone", ["belt"], "default"), flush=True)
    sys.stdin.read()  # runs the session until told to go (or killed)
    """
)


@contextmanager
def owner_process(db: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Another process running a session on db: the process and the session's id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        yield proc, int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()


def test_only_a_session_whose_owner_is_gone_is_closed(tmp_path: Path) -> None:
    # Finding 9: a daemon starting on the database marked a session another process was
    # still running as a fault. Only its owner closes a row, or whoever proves it gone.
    db = tmp_path / "owned.db"
    with owner_process(db) as (proc, running_id):
        with Store.open(db) as s:
            assert s.close_unfinished() == []  # its owner is alive: not ours to close
            assert s.get_session(running_id).outcome is None
            # This store's own running session is not closed by itself either.
            mine = s.begin_session("p", ["pillow"], "default")
            assert s.close_unfinished() == []
            s.finish_session(mine, Outcome.COMPLETED)
        proc.kill()  # the owner dies as a crash does: the kernel drops its lock
        proc.wait(timeout=10)
        with Store.open(db) as s:
            assert s.close_unfinished() == [running_id]
            record = s.get_session(running_id)
            assert record.outcome == Outcome.FAULT
            assert "ended before its end was recorded" in record.detail["reason"]
            assert s.close_unfinished() == []
    assert list((tmp_path / "owned.db-owners").iterdir()) == []  # its lock file is tidied


async def test_a_daemon_starting_closes_only_what_a_crash_left(tmp_path: Path) -> None:
    # The finding's path: Daemon.start() on a database where `run --simulate` is running.
    from controller.daemon import Daemon

    db = tmp_path / "m.db"
    with owner_process(db) as (crashed, left), owner_process(db) as (_, running):
        crashed.kill()
        crashed.wait(timeout=10)
        with Store.open(db) as store:
            daemon = Daemon(store)
            await daemon.start()
            await daemon.close()
            assert store.get_session(left).outcome == Outcome.FAULT
            assert store.get_session(running).outcome is None


def test_a_store_closed_with_its_session_unfinished_leaves_it_to_the_next_start(
    tmp_path: Path,
) -> None:
    # Another owner in this process (another store) is as alive as another process.
    db = tmp_path / "m.db"
    with Store.open(db) as owner, Store.open(db) as other:
        running = owner.begin_session("p", ["belt"], "default")
        assert other.close_unfinished() == []
        owner.close()  # its end was never written: the owner is gone now
        assert other.close_unfinished() == [running]


def test_a_version_1_database_gains_owners_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO sessions (program, devices, profile, started_at) "
        "VALUES ('old', '[\"belt\"]', 'default', '2024-05-01T09:00:00.000000+00:00')"
    )
    conn.close()
    with Store.open(db) as s:
        assert s.schema_version == SCHEMA_VERSION
        (old,) = s.list_sessions()
        assert old.program == "old"
        # A row from before owners were recorded names none: nobody can hold it.
        assert s.close_unfinished() == [old.id]
        new = s.begin_session("new", ["belt"], "default")
        assert s.close_unfinished() == []
        assert s.get_session(new).outcome is None


def test_a_version_2_database_gains_cut_and_simulated_and_keeps_every_row(
    tmp_path: Path,
) -> None:
    db = tmp_path / "v2.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO sessions (program, devices, profile, started_at, ended_at, outcome, "
        "gentler_presses, detail) VALUES ('old', '[\"belt\"]', 'default', "
        "'2024-05-01T09:00:00.000000+00:00', '2024-05-01T09:20:00.000000+00:00', "
        "'completed', 1, '{\"reason\": \"completed\"}')"
    )
    conn.execute("INSERT INTO session_events (session_id, t, kind) VALUES (1, 5.0, 'gentler')")
    conn.close()
    with Store.open(db) as s:
        assert s.schema_version == SCHEMA_VERSION
        (old,) = s.list_sessions()
        assert (old.program, old.outcome, old.gentler_presses) == ("old", Outcome.COMPLETED, 1)
        assert old.detail == {"reason": "completed"}
        assert not old.simulated
        # The events survive the rebuilt table, and still belong to their session.
        assert [e.kind for e in s.session_events(old.id)] == ["gentler"]
        assert s.integrity_check() == "ok"
        new = s.begin_session("new", ["belt"], "default", simulated=True)
        assert s.finish_session(new, Outcome.CUT).outcome == Outcome.CUT
        assert s.get_session(new).simulated
        assert [r.id for r in s.list_sessions(simulated=False)] == [old.id]
        assert s.session_events(new) == []
        s.add_event(new, 1.0, "pause")
    with Store.open(db) as s:  # a second open migrates nothing
        assert [e.kind for e in s.session_events(new)] == ["pause"]


@pytest.fixture
def fast_busy(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A short busy time-out; returns the list of pauses the store took between attempts."""
    monkeypatch.setattr("controller.store.BUSY_TIMEOUT_S", 0.05)
    pauses: list[float] = []
    monkeypatch.setattr("controller.store._backoff_sleep", pauses.append)
    return pauses


def exclusive_lock(db: Path) -> sqlite3.Connection:
    """Another connection holding the database's write lock, as another process would."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_a_write_finding_the_database_busy_is_tried_again(
    tmp_path: Path, fast_busy: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "busy.db"
    with Store.open(db) as s:
        sid = s.begin_session("p", ["belt"], "default")
        blocker = exclusive_lock(db)

        def pause(seconds: float) -> None:
            fast_busy.append(seconds)
            blocker.execute("COMMIT")  # the other process finishes its transaction

        monkeypatch.setattr("controller.store._backoff_sleep", pause)
        record = s.finish_session(sid, Outcome.COMPLETED)
        blocker.close()
        assert record.outcome == Outcome.COMPLETED
        assert fast_busy == [WRITE_RETRY_DELAYS[0]]


def test_a_write_the_database_stays_too_busy_for_raises_after_its_retries(
    tmp_path: Path, fast_busy: list[float]
) -> None:
    db = tmp_path / "busy.db"
    with Store.open(db) as s:
        sid = s.begin_session("p", ["belt"], "default")
        blocker = exclusive_lock(db)
        try:
            with pytest.raises(StoreError, match="busy in another process") as info:
                s.finish_session(sid, Outcome.COMPLETED)
        finally:
            blocker.close()
        assert str(db) in str(info.value)
        assert fast_busy == list(WRITE_RETRY_DELAYS)  # every attempt, with a growing pause
        assert s.get_session(sid).outcome is None  # nothing half-written
        s.finish_session(sid, Outcome.COMPLETED)  # and the store still works after it


# -- errors ---------------------------------------------------------------------


def test_read_only_file_refuses_writes_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    with Store.open(db) as s:
        first = s.begin_session("p", ["belt"], "default", started_at=T0)
        s.finish_session(first, Outcome.COMPLETED, ended_at=T0 + timedelta(minutes=20))
    before = digest(db)
    db.chmod(0o400)
    try:
        with Store.open(db) as s:
            assert s.read_only
            assert [r.id for r in s.list_sessions()] == [first]  # reading still works
            with pytest.raises(StoreError, match="read-only") as info:
                s.begin_session("p", ["belt"], "default")
            assert str(db) in str(info.value)
            assert "nothing was changed" in str(info.value)
            with pytest.raises(StoreError, match="read-only"):
                s.save_profile(Profile(name="bob"))
    finally:
        db.chmod(0o600)
    assert digest(db) == before
    with Store.open(db) as s:
        assert [r.id for r in s.list_sessions()] == [first]
        assert s.find_profile("bob") is None


def test_read_only_database_error_from_sqlite_is_translated(tmp_path: Path) -> None:
    # The same message when SQLite itself refuses the write (e.g. a read-only mount).
    db = tmp_path / "ro2.db"
    Store.open(db).close()
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    s = Store(conn, db, read_only=False)
    with pytest.raises(StoreError, match="is read-only") as info:
        s.begin_session("p", ["belt"], "default")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    s.close()


def test_disk_full_raises_and_keeps_earlier_records(store: Store) -> None:
    first = store.begin_session("p", ["belt"], "default", started_at=T0)
    store.finish_session(first, Outcome.COMPLETED)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # a disk with no room left
    session = store.begin_session("p", ["belt"], "default")
    error: StoreError | None = None
    for i in range(1000):
        try:
            store.add_event(session, i, "tick", {"pad": "x" * 4000})
        except StoreError as err:
            error = err
            break
    assert error is not None
    assert "disk holding" in str(error)
    assert "is full" in str(error)
    assert "nothing was changed" in str(error)
    assert store.get_session(first).outcome == Outcome.COMPLETED
    assert store.integrity_check() == "ok"
    # The failed event was rolled back whole; the connection still works.
    count = len(store.session_events(session))
    assert count < 1000
    store.finish_session(session, Outcome.STOPPED)


# -- sessions -------------------------------------------------------------------


def test_session_life_cycle(store: Store) -> None:
    sid = store.begin_session(
        "neck-basic", ["belt", "butterfly"], "default", started_at=T0, detail={"scale": 0.8}
    )
    store.add_event(sid, 10.0, "gentler", {"factor": 0.7})
    store.add_event(sid, 20.0, "device", {"event": "Overheated"})
    store.add_event(sid, 30.0, "gentler")
    running = store.get_session(sid)
    assert running.outcome is None
    assert running.duration is None
    record = store.finish_session(
        sid, "completed", ended_at=T0 + timedelta(minutes=30), detail={"violations": 0}
    )
    assert record.outcome == Outcome.COMPLETED
    assert record.gentler_presses == 2
    assert record.duration == 1800
    assert record.detail == {"scale": 0.8, "violations": 0}
    assert [e.t for e in store.session_events(sid)] == [10.0, 20.0, 30.0]
    with pytest.raises(StoreError, match="already ended"):
        store.finish_session(sid, Outcome.STOPPED)
    with pytest.raises(NotFoundError):
        store.finish_session(999, Outcome.STOPPED)
    with pytest.raises(NotFoundError, match="no session 999"):
        store.add_event(999, 1.0, "gentler")
    with pytest.raises(ConfigError, match="unknown session outcome 'exploded'"):
        store.finish_session(sid, "exploded")


def test_list_sessions_newest_first_with_filters(store: Store) -> None:
    ids = [
        store.begin_session("p", ["belt"], name, started_at=T0 + timedelta(days=i))
        for i, name in enumerate(["default", "anna", "default"])
    ]
    store.finish_session(ids[0], Outcome.COMPLETED)
    assert [s.id for s in store.list_sessions()] == ids[::-1]
    assert [s.id for s in store.list_sessions(1)] == [ids[2]]
    assert [s.id for s in store.list_sessions(None, profile="default")] == [ids[2], ids[0]]
    assert [s.id for s in store.list_sessions(since=T0 + timedelta(days=1))] == ids[:0:-1]
    assert [s.id for s in store.list_sessions(outcome=Outcome.COMPLETED)] == [ids[0]]


# -- profiles, devices, courses -------------------------------------------------


def test_profiles_crud(store: Store) -> None:
    assert [p.name for p in store.list_profiles()] == ["default"]
    with pytest.raises(NotFoundError, match="no profile named 'bob'"):
        store.get_profile("bob")
    bob = Profile(name="bob", audience=Audience.CHILD)
    store.save_profile(bob)
    assert store.get_profile("bob") == bob
    store.save_profile(bob.updated(painful_side="right"))
    assert store.get_profile("bob").painful_side == "right"
    assert [p.name for p in store.list_profiles()] == ["bob", "default"]
    assert store.delete_profile("bob")
    assert not store.delete_profile("bob")


def test_devices_crud(store: Store) -> None:
    belt = DeviceRecord(
        name="belt-1",
        kind=DeviceKind.BELT,
        address="/dev/ttyACM0",
        transport="serial",
        model="VB1",
        firmware="1.2",
        serial="VB100001",
        caps={"belt": 0.6},
    )
    added = store.add_device(belt)
    assert added.added_at is not None
    assert added.caps == {"belt": 0.6}
    with pytest.raises(StoreError, match="already registered"):
        store.add_device(belt)
    bad = {"ems_max_raise_per_100ms": 9.0}
    with pytest.raises(ConfigError, match="ems_max_raise_per_100ms"):
        store.add_device(DeviceRecord("eb1", DeviceKind.BUTTERFLY, "AA:BB", "ble", caps=bad))
    with pytest.raises(ConfigError, match="unknown key"):
        store.update_device("belt-1", caps={"volume": 1})
    updated = store.update_device("belt-1", firmware="1.3", name="neck-belt")
    assert (updated.name, updated.firmware, updated.serial) == ("neck-belt", "1.3", "VB100001")
    assert store.find_device("belt-1") is None
    assert [d.name for d in store.list_devices()] == ["neck-belt"]
    with pytest.raises(NotFoundError):
        store.update_device("nope", firmware="x")
    assert store.remove_device("neck-belt")
    assert store.list_devices() == []


def test_starting_a_course_ends_the_current_one(store: Store) -> None:
    first = store.start_course("default", sessions=15, every_days=2, started_at=T0)
    assert store.active_course("default") == first
    second = store.start_course(
        "default", sessions=10, every_days=1, started_at=T0 + timedelta(days=3)
    )
    assert store.active_course("default") == second
    assert store.get_course(first.id).ended_at == T0 + timedelta(days=3)
    assert [c.id for c in store.list_courses("default")] == [second.id, first.id]
    with pytest.raises(ConfigError, match="every 1, 2 or 3 days"):
        store.start_course("default", sessions=10, every_days=5)
    assert store.active_course("default") == second  # the failed start changed nothing
