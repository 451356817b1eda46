"""Which database file a command opens, and the checks made before anything is opened.

Split from :mod:`controller.store` (sqlite3, the profile models, the session
states), which re-exports every name here: a command given a wrong ``--db`` (a
folder, a TOML file, a path that does not exist) is refused in one line without
loading the store. Standard library and the light controller.paths and
controller.errors only: keep it so.
"""

from __future__ import annotations

from pathlib import Path

from controller import paths
from controller.errors import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def database_path(path: Path | str | None = None) -> Path:
    """The database file for path (None: the default one, its private folder made)."""
    if path is not None:
        return Path(path).expanduser()
    db = paths.db_path()
    try:
        paths.ensure_private_dir(db.parent)
    except OSError as err:
        raise StoreError(f"cannot create the data folder {db.parent}: {err}") from err
    return db


def check_database_file(path: Path) -> None:
    """StoreError, before anything is opened or changed, when an existing path is not
    an SQLite database: a folder, a TOML file, a file this user cannot read."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder: give the database file, e.g. {path / 'massaged.db'}")
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as err:
        raise StoreError(f"cannot read the database {path}: {err.strerror or err}") from err
    # An empty file is an empty database to SQLite (one being created by another process).
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is damaged or not a massaged database (not an SQLite file)")


def check_database_to_open(path: Path | str | None = None) -> None:
    """What Store.open refuses of path (None: the default) before it changes anything,
    checked without making a folder or opening a file for writing."""
    check_database_file(paths.db_path() if path is None else Path(path).expanduser())


def database_to_read(
    path: Path | str | None = None, *, missing_is_empty: bool = False
) -> tuple[Path, bool]:
    """The database a command that only reads opens (Store.open_for_reading), and whether
    it exists: the default one not made yet is an empty history, and so is any path
    when missing_is_empty (the configured one: the daemon makes it on its first start).

    StoreError, before anything is opened, for a --db that does not exist or is not an
    SQLite file. Nothing is created or changed.
    """
    db = paths.db_path() if path is None else Path(path).expanduser()
    if not db.exists():
        if path is None or missing_is_empty or db == paths.db_path():
            return db, False
        raise StoreError(f"no database at {db}: check the path (nothing was created)")
    check_database_file(db)
    return db, True
