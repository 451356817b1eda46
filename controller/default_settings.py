"""The few settings most command lines read, found without the settings' models when
nothing can change them.

Most command lines run with no configuration file and no ``MASSAGED_<SECTION>_<KEY>``
variable: every setting is then its default, and loading :mod:`controller.config`
(pydantic and the settings' models: about two thirds of such a command's start-up)
would only confirm it. :func:`surely_defaults` gives the settings that ``devices``,
``attach``, ``run`` and ``web token`` read (the control socket, the database, the
[session] defaults) in that case, by the rules of :func:`controller.config.load_config`,
and None whenever a file or a variable could change or refuse anything: the caller
then loads the configuration, which validates it and names every problem.

Standard library and the light modules only (controller.paths, quick_control's
reading of the file): keep it so. tests/controller/test_cli_startup.py checks that
these defaults are the models' own.
"""

from __future__ import annotations

import os
from pathlib import Path

from controller import paths
from controller.profile_terms import DEFAULT_PROFILE_NAME
from controller.quick_control import SECTIONS, config_location, read_config_text

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from controller.config import Config

DEFAULT_PROGRAM = "collar-zone"
"""[session] default_program when the configuration does not say (controller.config's default)."""
DEFAULT_DISPLAY = True
"""[session] display when the configuration does not say (controller.config's default)."""

_OVERRIDES = tuple(f"MASSAGED_{section.upper()}_" for section in sorted(SECTIONS))
"""The prefixes of the variables that set a setting (controller.config.env_var)."""


class Settings:
    """The control socket, the database and the [session] defaults, as configured."""

    __slots__ = ("db", "default_program", "display", "profile", "socket")

    def __init__(
        self, *, socket: Path, db: Path, profile: str, default_program: str, display: bool
    ) -> None:
        self.socket = socket
        """[daemon] socket."""
        self.db = db
        """[store] path."""
        self.profile = profile
        """[session] profile."""
        self.default_program = default_program
        """[session] default_program."""
        self.display = display
        """[session] display."""

    def __repr__(self) -> str:
        return (
            f"Settings(socket={self.socket!r}, db={self.db!r}, profile={self.profile!r}, "
            f"default_program={self.default_program!r}, display={self.display!r})"
        )


def surely_defaults(
    config_flag: str | Path | None, environ: Mapping[str, str] | None = None
) -> Settings | None:
    """The settings when no file and no variable sets any; else None (load the configuration).

    config_flag is ``--config``. A file that is named (``--config``, ``$MASSAGED_CONFIG``)
    but cannot be read raises ConfigError, in load_config's words, as load_config would.
    """
    env = os.environ if environ is None else environ
    if any(variable.startswith(_OVERRIDES) for variable in env):
        return None
    location, explicit = config_location(config_flag, env)
    if read_config_text(location, explicit) is not None:
        return None
    # load_config's own line (and logger): -vv shows the same whichever way was taken.
    import logging

    logging.getLogger("controller.config").debug("no configuration file at %s: defaults", location)
    return Settings(
        socket=paths.default_control_socket(env),
        db=paths.db_path(env),
        profile=DEFAULT_PROFILE_NAME,
        default_program=DEFAULT_PROGRAM,
        display=DEFAULT_DISPLAY,
    )


def settings_of(config: Config) -> Settings:
    """The same settings from a loaded (validated) configuration."""
    return Settings(
        socket=Path(config.daemon.socket),
        db=Path(config.store.path),
        profile=config.session.profile,
        default_program=config.session.default_program,
        display=config.session.display,
    )
