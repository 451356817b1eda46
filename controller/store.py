"""The SQLite store: profiles, session history and events, courses, paired devices.

One file (``massaged.db`` in the data directory, see controller.paths),
private to its owner (file 0600, default directory 0700): it holds health
data. The journal is WAL with ``synchronous=FULL``, and every write is one
``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, so a crash or a power cut at any
moment leaves every finished record intact and nothing half-applied.

The schema is migrated by version (``PRAGMA user_version``, one entry of
:data:`MIGRATIONS` per version, each applied in its own transaction).

The API is synchronous on purpose: every call is a local, indexed query that
takes well under a millisecond (a commit's fsync a few milliseconds), far
below the 100 ms tick of a session; an async wrapper would add a thread hop
and nothing else. The connection is guarded by a lock, so the daemon may also
call it through ``asyncio.to_thread``.

A file without write permission is opened read-only: history can be read,
and every write raises :class:`StoreError` without touching the file.

A write that finds the database busy in another process waits for it
(SQLite's busy time-out) and is tried again a few times with a growing pause
(:data:`WRITE_RETRY_DELAYS`) before it raises :class:`StoreError`.

A running session's row names its owner: the store that began it, which holds
a lock (controller.locks) for as long as it is open. :meth:`Store.close_unfinished`
closes only the rows whose owner is provably gone, never a session that
another process is still running.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from controller import paths
from controller.errors import LockError, NotFoundError, StoreError
from controller.profile_terms import DEFAULT_PROFILE_NAME

# The checks made before anything is opened live in a light module (a command refuses a
# wrong --db without loading this one); they are re-exported from here.
from controller.store_paths import SQLITE_MAGIC as SQLITE_MAGIC
from controller.store_paths import check_database_file as check_database_file
from controller.store_paths import database_path as database_path
from controller.store_paths import database_to_read
from devices.capabilities import DeviceKind
from devices.errors import ConfigError

# The profile models (pydantic) and the session's outcomes (with the device layer's
# models) are imported where a profile or an outcome is read or written: a listing
# of an empty history, a device registry or a course does without them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from controller.locks import OwnerLock
    from controller.profiles import Profile
    from controller.session.states import Outcome

logger = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
BUSY_TIMEOUT_S = 1.2
"""How long one attempt at a write waits for another process's transaction."""
WRITE_RETRY_DELAYS: tuple[float, ...] = (0.1, 0.4)
"""Pauses before the second and later attempts at a write the database was too busy for.

With the busy time-out, a write gives up after about 4 s: inside the session's
5 s history time-out, so what the session reports is what the file holds.
"""
_CONNECT_OPTIONS: dict[str, Any] = {
    # Autocommit: every transaction is an explicit BEGIN IMMEDIATE ... COMMIT.
    "isolation_level": None,
    # The lock in Store serialises use, so asyncio.to_thread callers are safe.
    "check_same_thread": False,
}


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema.
    (
        """CREATE TABLE profiles (
            name TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            program TEXT NOT NULL,
            devices TEXT NOT NULL,
            profile TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT CHECK (outcome IN ('completed', 'stopped', 'emergency_stop', 'fault')),
            gentler_presses INTEGER NOT NULL DEFAULT 0 CHECK (gentler_presses >= 0),
            detail TEXT NOT NULL DEFAULT '{}',
            CHECK ((ended_at IS NULL) = (outcome IS NULL))
        )""",
        "CREATE INDEX sessions_by_start ON sessions (started_at)",
        "CREATE INDEX sessions_by_profile ON sessions (profile, started_at)",
        """CREATE TABLE session_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            t REAL NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX session_events_by_session ON session_events (session_id, t)",
        """CREATE TABLE courses (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            profile TEXT NOT NULL,
            started_at TEXT NOT NULL,
            sessions INTEGER NOT NULL CHECK (sessions >= 1),
            every_days INTEGER NOT NULL CHECK (every_days IN (1, 2, 3)),
            ended_at TEXT
        )""",
        "CREATE INDEX courses_by_profile ON courses (profile, started_at)",
        """CREATE TABLE devices (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('belt', 'pillow', 'butterfly')),
            address TEXT NOT NULL,
            transport TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            firmware TEXT NOT NULL DEFAULT '',
            serial TEXT NOT NULL DEFAULT '',
            caps TEXT NOT NULL DEFAULT '{}',
            added_at TEXT NOT NULL
        )""",
    ),
    # 2: a running session names its owner (controller.locks), so that only the
    # owner, or someone who can prove the owner gone, closes it.
    ("ALTER TABLE sessions ADD COLUMN owner TEXT",),
    # 3: a session cut by a limit is its own outcome (never "completed"), and a session
    # on simulated devices is marked so (it never counts toward a course). SQLite cannot
    # change a CHECK in place: the table is rebuilt (its ids kept, so the events' foreign
    # keys still hold; Store._migrate turns the foreign keys off around it).
    (
        """CREATE TABLE sessions_v3 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            program TEXT NOT NULL,
            devices TEXT NOT NULL,
            profile TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            outcome TEXT CHECK (outcome IN
                ('completed', 'stopped', 'emergency_stop', 'fault', 'cut')),
            gentler_presses INTEGER NOT NULL DEFAULT 0 CHECK (gentler_presses >= 0),
            detail TEXT NOT NULL DEFAULT '{}',
            owner TEXT,
            simulated INTEGER NOT NULL DEFAULT 0 CHECK (simulated IN (0, 1)),
            CHECK ((ended_at IS NULL) = (outcome IS NULL))
        )""",
        """INSERT INTO sessions_v3 (id, program, devices, profile, started_at, ended_at,
            outcome, gentler_presses, detail, owner)
        SELECT id, program, devices, profile, started_at, ended_at, outcome,
            gentler_presses, detail, owner FROM sessions""",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_v3 RENAME TO sessions",
        "CREATE INDEX sessions_by_start ON sessions (started_at)",
        "CREATE INDEX sessions_by_profile ON sessions (profile, started_at)",
    ),
)
"""Schema migrations: entry i takes the database from version i to i + 1. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)


# -- records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session in the history (ended_at and outcome are None while it runs)."""

    id: int
    program: str
    devices: tuple[str, ...]
    profile: str
    started_at: datetime
    ended_at: datetime | None
    outcome: Outcome | None
    gentler_presses: int
    detail: dict[str, Any]
    simulated: bool = False
    """Played on simulated devices: shown as such, and never counted toward a course."""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while unfinished."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something that happened in a session at t seconds: a "gentler" press, a device event."""

    session_id: int
    t: float
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A paired device in the registry.

    caps lowers the profile's limits for this device: kind name ("belt",
    "pillow", "butterfly") to a fraction 0..1, and "ems_max_raise_per_100ms" 1..5.
    """

    name: str
    kind: DeviceKind
    address: str
    transport: str
    model: str = ""
    firmware: str = ""
    serial: str = ""
    caps: dict[str, float] = field(default_factory=dict)
    added_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CourseRecord:
    """A course of sessions for one profile (ended_at set once replaced or ended)."""

    id: int
    profile: str
    started_at: datetime
    sessions: int
    every_days: int
    ended_at: datetime | None = None


_DEVICE_FIELDS = tuple(f.name for f in fields(DeviceRecord))
_DEVICE_CAP_KINDS = frozenset(k.value for k in DeviceKind)


def validate_device_caps(caps: Mapping[str, Any]) -> dict[str, float]:
    """A registry entry's caps, checked: ConfigError names the bad key."""
    checked: dict[str, float] = {}
    for key, value in caps.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"device caps: {key} must be a number, not {value!r}")
        if key in _DEVICE_CAP_KINDS:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"device caps: {key} must be a fraction 0..1, not {value}")
        elif key == "ems_max_raise_per_100ms":
            if value != int(value) or not 1 <= value <= 5:
                raise ConfigError(f"device caps: {key} must be a whole number 1..5, not {value}")
        else:
            known = ", ".join([*sorted(_DEVICE_CAP_KINDS), "ems_max_raise_per_100ms"])
            raise ConfigError(f"device caps: unknown key {key!r}; known: {known}")
        checked[key] = value
    return checked


# -- helpers ------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    # Naive datetimes are taken as local time; stored text is always UTC, one
    # fixed format, so that text order is time order.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _describe(err: sqlite3.Error, path: Path, action: str) -> str:
    code = getattr(err, "sqlite_errorname", "") or ""
    if code.startswith("SQLITE_READONLY"):
        return (
            f"cannot {action}: the database {path} is read-only "
            "(check the permissions of the file and its folder); nothing was changed"
        )
    if code.startswith("SQLITE_FULL"):
        return (
            f"cannot {action}: the disk holding {path} is full; nothing was changed, "
            "free some space and try again"
        )
    if code.startswith("SQLITE_CANTOPEN"):
        return (
            f"cannot open the database {path}: the file or its folder is missing or not accessible"
        )
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return f"the database {path} is damaged or not a massaged database ({err})"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"cannot {action}: the database {path} is busy in another process; try again"
    if code.startswith("SQLITE_IOERR"):
        return f"cannot {action}: input/output error on {path} ({err}); nothing was changed"
    return f"cannot {action} in {path}: {err}"


def _is_busy(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorname", "") or ""
    return code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _backoff_sleep(seconds: float) -> None:
    """The pause between attempts at a busy write (its own name, so tests can step it)."""
    time.sleep(seconds)


def _is_read_only_file(path: Path) -> bool:
    # Root ignores permission bits, so os.access alone would miss a file the
    # user made read-only on purpose: look at the owner's write bit as well.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    return not os.access(path, os.W_OK) or not mode & stat.S_IWUSR


# -- the store ----------------------------------------------------------------


class Store:
    """The SQLite store; open with Store.open(), close with close() or a with block."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        self._owner: OwnerLock | None = None
        """This store's claim on the sessions it begins; made and taken at the first one
        (_claim): a store that only reads does without it and its lock module."""

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str | None = None) -> Store:
        """Open (creating and migrating as needed) the store at path, or the default one."""
        db = database_path(path)
        check_database_file(db)
        read_only = _is_read_only_file(db)
        if not read_only:
            _create_private_file(db)
        try:
            if read_only:
                uri = db.resolve().as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, **_CONNECT_OPTIONS)
            else:
                conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, **_CONNECT_OPTIONS)
        except sqlite3.Error as err:
            raise StoreError(_describe(err, db, "open the database")) from err
        store = cls(conn, db, read_only=read_only)
        try:
            # Before the WAL journal is set: another program's database is left as it is.
            store._refuse_foreign()
            store._configure()
            store._migrate()
        except BaseException:
            conn.close()
            raise
        if read_only:
            logger.warning("%s is read-only: history can be read, nothing can be saved", db)
        return store

    @classmethod
    def open_for_reading(
        cls, path: Path | str | None = None, *, missing_is_empty: bool = False
    ) -> Store:
        """The store at path (or the default one) for a command that only reads it.

        Nothing is created or changed: not the file, its folder, their permissions,
        nor SQLite's -wal and -shm files (issue 13). A missing default database is an
        empty one (a fresh install has no history yet), and so is a missing path when
        missing_is_empty (the configured one); a missing --db is an error.
        """
        db, found = database_to_read(path, missing_is_empty=missing_is_empty)
        if not found:
            return cls._empty(db)
        conn = _connect_read_only(db)
        store = cls(conn, db, read_only=True)
        try:
            version = store.schema_version
        except BaseException:
            conn.close()
            raise
        if version == SCHEMA_VERSION:
            return store
        conn.close()
        if version == 0:
            raise StoreError(f"{db} is an SQLite database but not a massaged one")
        # massaged's own database from another release: upgraded as any command would,
        # or the error that says why it cannot be (newer schema, read-only file).
        return cls.open(db)

    @classmethod
    def _empty(cls, db: Path) -> Store:
        """An empty store in memory named after db: what a database not made yet holds."""
        conn = sqlite3.connect(":memory:", **_CONNECT_OPTIONS)
        store = cls(conn, db, read_only=False)
        store._migrate()
        store.read_only = True  # a write would be lost: refuse it instead
        return store

    def _configure(self) -> None:
        with self._reading("open the database"):
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute("PRAGMA synchronous = FULL")
            if not self.read_only:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: cannot use the WAL journal (got {mode})")

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this "
                f"massaged understands ({SCHEMA_VERSION}): upgrade massaged"
            )
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(
                f"the database {self.path} needs an upgrade (schema {version} to "
                f"{SCHEMA_VERSION}) but it is read-only"
            )
        # A migration may rebuild a table: dropping the old one must not cascade to the
        # rows that refer to it. The pragma only takes effect outside a transaction.
        with self._reading("upgrade the database"):
            self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                self._migrate_to(target)
        finally:
            with self._reading("upgrade the database"):
                self._conn.execute("PRAGMA foreign_keys = ON")

    def _refuse_foreign(self) -> None:
        """StoreError for another program's database (--db naming the wrong file)."""
        if self.schema_version == 0 and self._has_tables():
            raise StoreError(f"{self.path} is an SQLite database but not a massaged one")

    def _has_tables(self) -> bool:
        with self._reading("read the database") as conn:
            row = conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        return row is not None

    def _migrate_to(self, target: int) -> None:
        with self._writing(f"upgrade the database to schema {target}") as cur:
            # Re-read inside the lock: another process may have migrated meanwhile.
            current = cur.execute("PRAGMA user_version").fetchone()[0]
            if current >= target:
                return
            for statement in MIGRATIONS[target - 1]:
                cur.execute(statement)
            broken = cur.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                # Rolled back by _writing: the file stays at the old version, intact.
                raise StoreError(
                    f"cannot upgrade {self.path} to schema {target}: "
                    f"{len(broken)} row(s) would lose what they refer to"
                )
            cur.execute(f"PRAGMA user_version = {target:d}")
        logger.info("%s: schema migrated to version %d", self.path, target)

    def close(self) -> None:
        """Close the connection and give up the claim on its sessions (safe to call twice)."""
        with self._lock:
            self._conn.close()
            # After the connection: a session of ours still running from here on is
            # one whose end was never written, and the next daemon may close it.
            if self._owner is not None:
                self._owner.release()

    def _claim(self) -> OwnerLock:
        """This store's claim on its sessions, made on first use."""
        if self._owner is None:
            from controller.locks import OwnerLock

            self._owner = OwnerLock(self.path)
        return self._owner

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------

    @contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Cursor]:
        """One write transaction: all of it is committed, or none of it."""
        if self.read_only:
            raise StoreError(
                f"cannot {action}: the database {self.path} is read-only "
                "(check the permissions of the file and its folder); nothing was changed"
            )
        with self._lock:
            cur = self._conn.cursor()
            try:
                self._begin(cur)
                yield cur
                cur.execute("COMMIT")
            except BaseException as err:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        logger.exception("%s: rollback failed", self.path)
                if isinstance(err, sqlite3.Error):
                    raise StoreError(_describe(err, self.path, action)) from err
                raise
            finally:
                cur.close()

    def _begin(self, cur: sqlite3.Cursor) -> None:
        """BEGIN IMMEDIATE, tried again after a pause while another process keeps it busy."""
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if delay is None or not _is_busy(err):
                    raise
                logger.warning("%s is busy in another process: trying again", self.path)
            # Nothing is begun yet: trying again cannot apply anything twice.
            _backoff_sleep(delay)

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as err:
                raise StoreError(_describe(err, self.path, action)) from err

    # -- maintenance ------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """PRAGMA user_version: the number of migrations applied."""
        with self._reading("read the schema version") as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def integrity_check(self) -> str:
        """SQLite's integrity check: "ok", or the problems found."""
        with self._reading("check the database") as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # -- sessions ---------------------------------------------------------------

    def begin_session(
        self,
        program: str,
        devices: Sequence[str],
        profile: str,
        *,
        started_at: datetime | None = None,
        detail: Mapping[str, Any] | None = None,
        simulated: bool = False,
    ) -> int:
        """Record a session that starts now, owned by this store; returns its id.

        simulated marks a session on simulated devices: it never counts toward a course.
        """
        with self._writing("record the session start") as cur:
            try:
                # Before the row exists: a row whose owner holds no lock counts as crashed.
                owner = self._claim()
                owner.acquire()
            except LockError as err:
                raise StoreError(f"cannot record the session start: {err}") from err
            cur.execute(
                "INSERT INTO sessions (program, devices, profile, started_at, detail, owner, "
                "simulated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    program,
                    _json(list(devices)),
                    profile,
                    _ts(started_at or utc_now()),
                    _json(dict(detail or {})),
                    owner.token,
                    int(simulated),
                ),
            )
            session_id = cur.lastrowid
        assert session_id is not None  # an INSERT into a rowid table always sets it
        logger.info("session %d started: %s on %s", session_id, program, ", ".join(devices))
        return session_id

    def add_event(
        self, session_id: int, t: float, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """Record an event t seconds into a session ("gentler", a device event, ...)."""
        try:
            with self._writing("record the session event") as cur:
                cur.execute(
                    "INSERT INTO session_events (session_id, t, kind, detail) VALUES (?, ?, ?, ?)",
                    (session_id, float(t), kind, _json(dict(detail or {}))),
                )
        except StoreError as err:
            if isinstance(err.__cause__, sqlite3.IntegrityError):
                raise NotFoundError(f"no session {session_id}") from err
            raise

    def finish_session(
        self,
        session_id: int,
        outcome: Outcome | str,
        *,
        ended_at: datetime | None = None,
        gentler_presses: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> SessionRecord:
        """Record how a session ended; gentler_presses defaults to its "gentler" events."""
        from controller.session.states import Outcome

        try:
            result = Outcome(outcome)
        except ValueError:
            known = ", ".join(o.value for o in Outcome)
            raise ConfigError(f"unknown session outcome {outcome!r}; known: {known}") from None
        with self._writing("record the session end") as cur:
            row = cur.execute(
                "SELECT ended_at, detail FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no session {session_id}")
            if row[0] is not None:
                raise StoreError(f"session {session_id} has already ended")
            if gentler_presses is None:
                gentler_presses = cur.execute(
                    "SELECT COUNT(*) FROM session_events WHERE session_id = ? AND kind = 'gentler'",
                    (session_id,),
                ).fetchone()[0]
            merged = {**json.loads(row[1]), **dict(detail or {})}
            cur.execute(
                "UPDATE sessions SET ended_at = ?, outcome = ?, gentler_presses = ?, detail = ? "
                "WHERE id = ?",
                (
                    _ts(ended_at or utc_now()),
                    result.value,
                    gentler_presses,
                    _json(merged),
                    session_id,
                ),
            )
        logger.info("session %d ended: %s", session_id, result.value)
        return self.get_session(session_id)

    def close_unfinished(
        self, reason: str = "the process that ran it ended before its end was recorded"
    ) -> list[int]:
        """Mark as a fault every session without an end whose owner is gone; their ids.

        A session another process (or another store in this one) still runs is
        left alone: only its owner closes it.
        """
        from controller.locks import owner_is_gone, sweep_gone_owners

        now = _ts(utc_now())
        closed: list[int] = []
        ours = self._owner
        with self._writing("close unfinished sessions") as cur:
            rows = cur.execute(
                "SELECT id, detail, owner FROM sessions WHERE ended_at IS NULL"
            ).fetchall()
            for session_id, detail, owner in rows:
                if ours is not None and owner == ours.token and ours.held:
                    continue  # our own, still running
                if not owner_is_gone(self.path, owner):
                    logger.info("session %d is still running in another process", session_id)
                    continue
                merged = {**json.loads(detail), "reason": reason}
                cur.execute(
                    "UPDATE sessions SET ended_at = ?, outcome = 'fault', detail = ? WHERE id = ?",
                    (now, _json(merged), session_id),
                )
                closed.append(session_id)
        # Owners that died between sessions left only a file: tidy those too.
        sweep_gone_owners(self.path)
        return closed

    def get_session(self, session_id: int) -> SessionRecord:
        """One session by id (NotFoundError if there is none)."""
        with self._reading("read the session") as conn:
            row = conn.execute(f"{_SESSION_SELECT} WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no session {session_id}")
        return _session(row)

    def list_sessions(
        self,
        limit: int | None = 20,
        *,
        profile: str | None = None,
        since: datetime | None = None,
        outcome: Outcome | None = None,
        simulated: bool | None = None,
    ) -> list[SessionRecord]:
        """Sessions, newest first (limit None: all; simulated None: both kinds)."""
        where: list[str] = []
        args: list[Any] = []
        if simulated is not None:
            where.append("simulated = ?")
            args.append(int(simulated))
        if profile is not None:
            where.append("profile = ?")
            args.append(profile)
        if since is not None:
            where.append("started_at >= ?")
            args.append(_ts(since))
        if outcome is not None:
            from controller.session.states import Outcome

            where.append("outcome = ?")
            args.append(Outcome(outcome).value)
        sql = _SESSION_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._reading("read the history") as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_session(r) for r in rows]

    def session_events(self, session_id: int) -> list[SessionEvent]:
        """A session's events in time order."""
        with self._reading("read the session events") as conn:
            rows = conn.execute(
                "SELECT session_id, t, kind, detail FROM session_events "
                "WHERE session_id = ? ORDER BY t, id",
                (session_id,),
            ).fetchall()
        return [SessionEvent(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    # -- profiles ---------------------------------------------------------------

    def find_profile(self, name: str) -> Profile | None:
        """A stored profile, the built-in default for "default", or None."""
        with self._reading("read the profile") as conn:
            row = conn.execute("SELECT data FROM profiles WHERE name = ?", (name,)).fetchone()
        if row is not None:
            from controller.profiles import parse_profile

            return parse_profile(row[0])
        if name != DEFAULT_PROFILE_NAME:
            return None  # told without the profile models
        from controller.profiles import DEFAULT_PROFILE

        return DEFAULT_PROFILE

    def require_profile(self, name: str) -> None:
        """NotFoundError unless there is a profile of this name: get_profile's check
        (a stored one is read and validated), without making the built-in default."""
        with self._reading("read the profile") as conn:
            row = conn.execute("SELECT data FROM profiles WHERE name = ?", (name,)).fetchone()
        if row is None and name == DEFAULT_PROFILE_NAME:
            return  # the built-in default: its models need not load to say it exists
        self.get_profile(name)

    def get_profile(self, name: str) -> Profile:
        """A profile by name (NotFoundError if there is none)."""
        profile = self.find_profile(name)
        if profile is None:
            raise NotFoundError(f"no profile named {name!r} (see: massaged profiles list)")
        return profile

    def list_profiles(self) -> list[Profile]:
        """Every profile by name, the built-in default included."""
        from controller.profiles import DEFAULT_PROFILE, parse_profile

        with self._reading("read the profiles") as conn:
            rows = conn.execute("SELECT data FROM profiles ORDER BY name").fetchall()
        profiles = {p.name: p for p in (parse_profile(r[0]) for r in rows)}
        profiles.setdefault(DEFAULT_PROFILE_NAME, DEFAULT_PROFILE)
        return [profiles[name] for name in sorted(profiles)]

    def save_profile(self, profile: Profile) -> None:
        """Create or replace a profile."""
        with self._writing(f"save the profile {profile.name!r}") as cur:
            cur.execute(
                "INSERT INTO profiles (name, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
                "updated_at = excluded.updated_at",
                (profile.name, profile.to_json(), _ts(utc_now())),
            )

    def delete_profile(self, name: str) -> bool:
        """Remove a stored profile; True if there was one."""
        with self._writing(f"delete the profile {name!r}") as cur:
            cur.execute("DELETE FROM profiles WHERE name = ?", (name,))
            return cur.rowcount > 0

    # -- devices ----------------------------------------------------------------

    def add_device(self, device: DeviceRecord) -> DeviceRecord:
        """Register a paired device (StoreError if the name is taken)."""
        record = _checked_device(device)
        if record.added_at is None:
            record = replace(record, added_at=utc_now())
        try:
            with self._writing(f"register the device {record.name!r}") as cur:
                cur.execute(
                    "INSERT INTO devices (name, kind, address, transport, model, firmware, "
                    "serial, caps, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _device_row(record),
                )
        except StoreError as err:
            if isinstance(err.__cause__, sqlite3.IntegrityError):
                raise StoreError(f"a device named {record.name!r} is already registered") from err
            raise
        return self.get_device(record.name)

    def find_device(self, name: str) -> DeviceRecord | None:
        """A registered device by name, or None."""
        with self._reading("read the device") as conn:
            row = conn.execute(f"{_DEVICE_SELECT} WHERE name = ?", (name,)).fetchone()
        return None if row is None else _device(row)

    def get_device(self, name: str) -> DeviceRecord:
        """A registered device by name (NotFoundError if there is none)."""
        record = self.find_device(name)
        if record is None:
            raise NotFoundError(f"no device named {name!r}")
        return record

    def list_devices(self) -> list[DeviceRecord]:
        """Every registered device by name."""
        with self._reading("read the devices") as conn:
            rows = conn.execute(f"{_DEVICE_SELECT} ORDER BY name").fetchall()
        return [_device(r) for r in rows]

    def update_device(self, name: str, /, **changes: Any) -> DeviceRecord:
        """Change fields of a registered device (name included); returns the new record."""
        unknown = set(changes) - set(_DEVICE_FIELDS) | ({"added_at"} & set(changes))
        if unknown:
            raise ConfigError(f"cannot change device field(s): {', '.join(sorted(unknown))}")
        try:
            with self._writing(f"update the device {name!r}") as cur:
                row = cur.execute(f"{_DEVICE_SELECT} WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise NotFoundError(f"no device named {name!r}")
                record = _checked_device(replace(_device(row), **changes))
                cur.execute(
                    "UPDATE devices SET name = ?, kind = ?, address = ?, transport = ?, "
                    "model = ?, firmware = ?, serial = ?, caps = ?, added_at = ? WHERE name = ?",
                    (*_device_row(record), name),
                )
        except StoreError as err:
            if isinstance(err.__cause__, sqlite3.IntegrityError):
                raise StoreError(f"a device named {changes.get('name')!r} already exists") from err
            raise
        return self.get_device(record.name)

    def remove_device(self, name: str) -> bool:
        """Forget a registered device; True if there was one."""
        with self._writing(f"remove the device {name!r}") as cur:
            cur.execute("DELETE FROM devices WHERE name = ?", (name,))
            return cur.rowcount > 0

    # -- courses ----------------------------------------------------------------

    def start_course(
        self,
        profile: str,
        *,
        sessions: int,
        every_days: int,
        started_at: datetime | None = None,
    ) -> CourseRecord:
        """Start a course for a profile, ending its current one in the same transaction."""
        start = started_at or utc_now()
        try:
            with self._writing("start the course") as cur:
                cur.execute(
                    "UPDATE courses SET ended_at = ? WHERE profile = ? AND ended_at IS NULL",
                    (_ts(start), profile),
                )
                cur.execute(
                    "INSERT INTO courses (profile, started_at, sessions, every_days) "
                    "VALUES (?, ?, ?, ?)",
                    (profile, _ts(start), sessions, every_days),
                )
                course_id = cur.lastrowid
        except StoreError as err:
            if isinstance(err.__cause__, sqlite3.IntegrityError):
                raise ConfigError(
                    f"invalid course: {sessions} sessions every {every_days} days "
                    "(at least 1 session; every 1, 2 or 3 days)"
                ) from err
            raise
        assert course_id is not None  # an INSERT into a rowid table always sets it
        return self.get_course(course_id)

    def get_course(self, course_id: int) -> CourseRecord:
        """A course by id (NotFoundError if there is none)."""
        with self._reading("read the course") as conn:
            row = conn.execute(f"{_COURSE_SELECT} WHERE id = ?", (course_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no course {course_id}")
        return _course(row)

    def active_course(self, profile: str) -> CourseRecord | None:
        """The profile's current course, or None."""
        with self._reading("read the course") as conn:
            row = conn.execute(
                f"{_COURSE_SELECT} WHERE profile = ? AND ended_at IS NULL "
                "ORDER BY started_at DESC, id DESC LIMIT 1",
                (profile,),
            ).fetchone()
        return None if row is None else _course(row)

    def list_courses(self, profile: str | None = None) -> list[CourseRecord]:
        """Courses, newest first."""
        sql = _COURSE_SELECT
        args: tuple[Any, ...] = ()
        if profile is not None:
            sql += " WHERE profile = ?"
            args = (profile,)
        with self._reading("read the courses") as conn:
            rows = conn.execute(sql + " ORDER BY started_at DESC, id DESC", args).fetchall()
        return [_course(r) for r in rows]


# -- row mapping --------------------------------------------------------------

_SESSION_SELECT = (
    "SELECT id, program, devices, profile, started_at, ended_at, outcome, gentler_presses, detail, "
    "simulated FROM sessions"
)
_DEVICE_SELECT = (
    "SELECT name, kind, address, transport, model, firmware, serial, caps, added_at FROM devices"
)
_COURSE_SELECT = "SELECT id, profile, started_at, sessions, every_days, ended_at FROM courses"


def _session(row: Sequence[Any]) -> SessionRecord:
    from controller.session.states import Outcome

    started = _parse_ts(row[4])
    assert started is not None  # NOT NULL in the schema
    return SessionRecord(
        id=row[0],
        program=row[1],
        devices=tuple(json.loads(row[2])),
        profile=row[3],
        started_at=started,
        ended_at=_parse_ts(row[5]),
        outcome=None if row[6] is None else Outcome(row[6]),
        gentler_presses=row[7],
        detail=json.loads(row[8]),
        simulated=bool(row[9]),
    )


def _device(row: Sequence[Any]) -> DeviceRecord:
    return DeviceRecord(
        name=row[0],
        kind=DeviceKind(row[1]),
        address=row[2],
        transport=row[3],
        model=row[4],
        firmware=row[5],
        serial=row[6],
        caps=json.loads(row[7]),
        added_at=_parse_ts(row[8]),
    )


def _device_row(record: DeviceRecord) -> tuple[Any, ...]:
    assert record.added_at is not None  # set by add_device before any write
    return (
        record.name,
        record.kind.value,
        record.address,
        record.transport,
        record.model,
        record.firmware,
        record.serial,
        _json(record.caps),
        _ts(record.added_at),
    )


def _checked_device(record: DeviceRecord) -> DeviceRecord:
    if not record.name.strip():
        raise ConfigError("device name: must not be empty")
    try:
        kind = DeviceKind(record.kind)
    except ValueError:
        kinds = ", ".join(k.value for k in DeviceKind)
        raise ConfigError(f"device kind: {record.kind!r} is not one of {kinds}") from None
    return replace(record, kind=kind, caps=validate_device_caps(record.caps))


def _course(row: Sequence[Any]) -> CourseRecord:
    started = _parse_ts(row[2])
    assert started is not None  # NOT NULL in the schema
    return CourseRecord(
        id=row[0],
        profile=row[1],
        started_at=started,
        sessions=row[3],
        every_days=row[4],
        ended_at=_parse_ts(row[5]),
    )


def _connect_read_only(db: Path) -> sqlite3.Connection:
    """A read-only connection that creates nothing next to db.

    SQLite's mode=ro still makes the -wal and -shm files of a WAL database and leaves
    them behind. When there is no -wal, no writer has anything uncommitted to the main
    file, so it is read as immutable (nothing made); with one, a writer is or was there
    and its -shm is used (mode=ro), as a read-only folder allows too.
    """
    uri = db.resolve().as_uri() + "?mode=ro"
    wal = db.with_name(db.name + "-wal")
    if not wal.exists():
        uri += "&immutable=1"
    try:
        conn: sqlite3.Connection = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, **_CONNECT_OPTIONS
        )
    except sqlite3.Error as err:
        raise StoreError(_describe(err, db, "open the database")) from err
    return conn


def _schema_in_header(path: Path) -> int:
    """The user_version in an SQLite file's header (0: none, or not readable)."""
    try:
        with path.open("rb") as file:
            header = file.read(64)
    except OSError:
        return 0
    if len(header) < 64 or not header.startswith(SQLITE_MAGIC):
        return 0
    return int.from_bytes(header[60:64], "big")


def _create_private_file(path: Path) -> None:
    """Create the database file owner-only before SQLite does (it would use the umask)."""
    try:
        path.parent.mkdir(mode=paths.PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077 and _schema_in_header(path) > 0:
            # Only massaged's own database: never a file it was wrongly given (issue 13).
            # SQLite gives the -wal and -shm files the database file's mode: tighten it.
            logger.warning("%s was readable by others (%o): making it private", path, mode)
            path.chmod(mode & 0o700)
        return
    except OSError as err:
        raise StoreError(f"cannot create the database {path}: {err.strerror or err}") from err
    os.close(fd)
    # O_CREAT's mode is filtered by the umask; make sure it is exactly 0600.
    path.chmod(PRIVATE_FILE_MODE)
