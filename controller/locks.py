"""Process locks beside the database: one daemon per database, and who owns a running session.

Both are ``flock`` locks on small files next to the database, so the kernel
releases them when their holder dies, however it dies (``kill -9``, a power
cut of the process, an uncaught error): a lock that can be taken proves its
holder is gone. flock locks belong to one open file description, so two
holders in the same process exclude each other as two processes do.

- ``massaged.db-daemon.lock``: held by a daemon for its whole life, taken
  before it touches the database or a device. It holds the daemon's pid, for
  the message that refuses a second one.
- ``massaged.db-owners/<token>.lock``: held by a store that has begun a
  session, for as long as it stays open. A session row names its owner's
  token; a row is left by a crash only when nobody holds that token's lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
from pathlib import Path

from controller.errors import DaemonRunningError, LockError

logger = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_BUSY = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})
"""What flock(LOCK_NB) fails with when someone else holds the lock."""
_TOKEN = re.compile(r"^[0-9]+-[0-9a-f]{16}$")


def daemon_lock_path(db: Path) -> Path:
    """The daemon's lock file for a database."""
    # Resolved: one database reached by two paths (a symlink, a relative --db) has one lock.
    real = db.expanduser().resolve()
    return real.with_name(real.name + "-daemon.lock")


def owners_dir(db: Path) -> Path:
    """The folder of the session owners' lock files for a database."""
    real = db.expanduser().resolve()
    return real.with_name(real.name + "-owners")


def _try_flock(fd: int, operation: int) -> bool:
    """flock without waiting: True if taken, False if someone else holds it."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _BUSY:
            return False
        raise
    return True


class DaemonLock:
    """One daemon per database: an exclusive flock held for the daemon's life."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = daemon_lock_path(db)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DaemonRunningError (or LockError if it cannot be made)."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        except OSError as err:
            raise LockError(
                f"cannot make the daemon's lock file {self.path}: {err.strerror or err}"
            ) from err
        try:
            if not _try_flock(fd, fcntl.LOCK_EX):
                raise DaemonRunningError(self.db, _read_pid(fd))
            # Ours now: say who holds it, for the message that refuses the next one.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException as err:
            os.close(fd)
            if isinstance(err, OSError):
                raise LockError(f"cannot lock {self.path}: {err.strerror or err}") from err
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (safe to call twice); the file stays, as a lock file must."""
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing drops the flock. The file is not removed: a daemon starting at this
            # moment may already hold it open, and would lock a file nobody else can see.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def daemon_holding(db: Path) -> int | None:
    """The pid of the daemon that holds db's lock (0 if it did not say), or None if none does."""
    try:
        fd = os.open(daemon_lock_path(db), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(fd, fcntl.LOCK_SH):
            return None
        return _read_pid(fd) or 0
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class OwnerLock:
    """A store's claim on the sessions it runs: a token, and an flock that ends with its holder."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self._fd: int | None = None
        self._path: Path | None = None

    @property
    def held(self) -> bool:
        """True once acquired and until released."""
        return self._fd is not None

    def acquire(self) -> None:
        """Make and lock this owner's file (LockError if it cannot be made)."""
        if self._fd is not None:
            return
        folder = owners_dir(self.db)
        path = folder / f"{self.token}.lock"
        # Locked under a name nobody probes, then renamed: a prober never finds the
        # owner's file unlocked and takes it for a dead owner's.
        making = folder / f"{self.token}.making"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            fd = os.open(making, flags, PRIVATE_FILE_MODE)
        except OSError as err:
            raise LockError(
                f"cannot make the session owner's lock file {path}: {err.strerror or err}"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(making, path)
        except OSError as err:
            os.close(fd)
            with contextlib.suppress(OSError):
                making.unlink()
            raise LockError(
                f"cannot make the session owner's lock file {path}: {err.strerror or err}"
            ) from err
        self._fd, self._path = fd, path

    def release(self) -> None:
        """Remove the file, then drop the lock (safe to call twice)."""
        fd, self._fd = self._fd, None
        path, self._path = self._path, None
        if fd is None:
            return
        # Removed first: a prober then finds no file (gone) rather than a lock it could take.
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)


def owner_is_gone(db: Path, token: str | None) -> bool:
    """True if the owner named by token provably no longer holds its lock."""
    if token is None or not _TOKEN.match(token):
        # A row from before owners were recorded, or not ours to read: nobody can hold it.
        return True
    path = owners_dir(db) / f"{token}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot tell: leave the row to its owner
    try:
        try:
            if not _try_flock(fd, fcntl.LOCK_SH):
                return False
        except OSError:
            return False  # cannot tell: leave the row to its owner
        # Its holder died (the kernel let the lock go): the file is left over, tidy it.
        with contextlib.suppress(OSError):
            path.unlink()
        return True
    finally:
        os.close(fd)


def sweep_gone_owners(db: Path) -> int:
    """Remove the lock files of owners that died after their last session ended; how many."""
    try:
        names = [p.name for p in owners_dir(db).iterdir() if p.suffix == ".lock"]
    except OSError:
        return 0
    return sum(owner_is_gone(db, name.removesuffix(".lock")) for name in names)
