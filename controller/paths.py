"""Where massaged keeps its data and configuration on this platform.

The daemon is Unix-only (Unix sockets, owner-only modes, BlueZ), and its
folders follow the XDG base directory specification
(``$XDG_DATA_HOME/massaged``, ``$XDG_CONFIG_HOME/massaged``). The environment
variables ``MASSAGED_DATA_DIR`` and ``MASSAGED_CONFIG_DIR`` override
everything (tests and unusual set-ups use them).

This module is imported by the command line's quick emergency stop
(:mod:`controller.quick_control`), so it must stay cheap to import: standard
library only, nothing slow at module level.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "massaged"
DATA_DIR_ENV = "MASSAGED_DATA_DIR"
CONFIG_DIR_ENV = "MASSAGED_CONFIG_DIR"
DB_FILENAME = "massaged.db"
PRIVATE_DIR_MODE = 0o700
"""Health data lives here: only the owner may list or enter the directory."""


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _base_dir(environ: Mapping[str, str], xdg_var: str, xdg_default: str) -> Path:
    xdg = environ.get(xdg_var)
    # The XDG spec says a relative path is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    return Path.home() / xdg_default


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory for the history database and other data (not created here)."""
    env = _env(environ)
    override = env.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return _base_dir(env, "XDG_DATA_HOME", ".local/share") / APP_NAME


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory for configuration files (not created here)."""
    env = _env(environ)
    override = env.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return _base_dir(env, "XDG_CONFIG_HOME", ".config") / APP_NAME


def default_control_socket(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_RUNTIME_DIR/massaged/control.sock, else /tmp/massaged-<uid>/control.sock."""
    env = _env(environ)
    runtime = env.get("XDG_RUNTIME_DIR")
    # The XDG spec says a relative path is invalid and must be ignored.
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "massaged" / "control.sock"
    return Path(f"/tmp/massaged-{os.getuid()}") / "control.sock"


UNIX_PATH_MAX = 108
"""The size of Linux's sockaddr_un.sun_path: a socket path needs one byte less (its end)."""


def check_socket_path(path: Path) -> None:
    """ConfigError, in one clear line, for a socket path too long for a Unix socket.

    Here, not with the control socket's server and client (controller.control, which
    re-exports it): run, attach and the daemon check --socket before anything slow loads.
    """
    size = len(os.fsencode(path))
    if size >= UNIX_PATH_MAX:
        # Imported only for the error: this module stays standard library only.
        from devices.errors import ConfigError

        raise ConfigError(
            f"the control socket path {path} is {size} bytes, over the Unix limit of "
            f"{UNIX_PATH_MAX - 1}: choose a shorter one ([daemon] socket, "
            "MASSAGED_DAEMON_SOCKET or --socket)"
        )


def no_socket_at(path: Path) -> bool:
    """True when nothing is at path, so no daemon can answer there.

    Connecting to a Unix socket that is not there fails with ENOENT, which the
    control socket's clients take as "no daemon": the commands that fall back to
    working without one check this first and skip asyncio and the client. Only
    a certain absence counts (a dangling symbolic link included, as for connect):
    anything else (a file, a folder that cannot be searched) is left to the client.
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def db_path(environ: Mapping[str, str] | None = None) -> Path:
    """The default path of the SQLite store: data dir / massaged.db."""
    return data_dir(environ) / DB_FILENAME


def ensure_private_dir(path: Path) -> Path:
    """Create path (and parents) if needed and make it owner-only (0700).

    An existing directory is tightened only when it is massaged's own (named
    "massaged"): an override such as MASSAGED_DATA_DIR=/tmp must never change
    the permissions of a shared folder; it gets a warning instead.
    """
    # Imported here: this module is on the command line's emergency-stop path, which
    # must start fast, and logging alone costs that path a fifth of its start-up.
    import logging

    logger = logging.getLogger(__name__)
    existed = path.is_dir()
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode == PRIVATE_DIR_MODE:
        return path
    if not existed or path.name == APP_NAME:
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        logger.info("making %s private (0700)", path)
        path.chmod(PRIVATE_DIR_MODE)
    elif mode & 0o077:
        logger.warning("%s is open to other users (%o): keep massaged's data elsewhere", path, mode)
    return path
