"""``massaged config``: show, check and locate the configuration file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from controller.default_settings import Settings, settings_of, surely_defaults
from controller.output import add_json_option, print_json
from controller.quick_control import CONFIG_ENV, check_config_file, config_location
from devices.errors import ConfigError

# controller.config (pydantic, the settings models) is imported by the commands that
# read the configuration, when they run (read_config): registering these commands,
# --help, `config path` and a --config that cannot be read do without it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from controller.config import Config

logger = logging.getLogger(__name__)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The --config option; SUPPRESS so it never hides a global --config given earlier."""
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"the configuration file (default: ${CONFIG_ENV} or the config folder / config.toml)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config`` and its actions."""
    parser = subparsers.add_parser(
        "config",
        help="show, check or locate the configuration file",
        description=(
            "One TOML file; every setting has a default, and MASSAGED_<SECTION>_<KEY> "
            "environment variables override the file."
        ),
    )
    sub = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)

    p = sub.add_parser(
        "show",
        help="print the effective configuration and where each value came from",
        description=(
            "The configuration in effect, as TOML: every setting, each followed by where "
            "its value came from (default, file or $VARIABLE); secrets are masked."
        ),
    )
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "path",
        help="print the path of the configuration file",
        description=(
            "The configuration file that is read (--config, $MASSAGED_CONFIG, else "
            "config.toml in the configuration folder); a note on stderr if it does not exist."
        ),
    )
    add_config_option(p)
    p.set_defaults(func=cmd_path)

    p = sub.add_parser(
        "check",
        help="validate the configuration; exit 1 if it is wrong",
        description=(
            "Validate the configuration file and the MASSAGED_* variables; every problem is "
            "named with its file and line or variable. Exit 1 if anything is wrong."
        ),
    )
    add_config_option(p)
    p.set_defaults(func=cmd_check)


def read_config(args: argparse.Namespace) -> Config:
    """The configuration the command line names (--config, $MASSAGED_CONFIG, the default
    file), validated; BadConfigError or ConfigError says what is wrong.

    A file that cannot be read (missing, a folder, not UTF-8) is refused before the
    settings' models load, in the words load_config would use.
    """
    given = _given(args)
    check_config_file(given)
    from controller.config import load_config

    return load_config(given)


def read_settings(args: argparse.Namespace) -> Settings:
    """The control socket, the database and the [session] defaults the command line's
    configuration gives: read_config's, or its defaults found without loading it when
    no file and no variable sets anything (controller.default_settings)."""
    found = surely_defaults(_given(args))
    return settings_of(read_config(args)) if found is None else found


def apply_session_defaults(args: argparse.Namespace) -> Settings:
    """Fill what ``run`` was not told from [session]: program, profile and display.

    The command line wins: a PROGRAM, --profile or --no-display given is kept.
    The configuration is read (and validated) here, before any slow work, and
    its settings returned: validated once, they serve the rest of the command.
    """
    settings = read_settings(args)
    if getattr(args, "program", None) is None:
        args.program = settings.default_program
    if getattr(args, "profile", None) is None:
        args.profile = settings.profile
    if not settings.display:
        args.no_display = True
    return settings


def _given(args: argparse.Namespace) -> Path | None:
    given: Path | None = getattr(args, "config", None)
    return given


def cmd_show(args: argparse.Namespace) -> int:
    """Print the effective configuration as TOML, secrets masked."""
    config = read_config(args)
    from controller.config import (
        config_path,
        config_sources,
        effective_config_data,
        effective_config_text,
    )

    if getattr(args, "json", False):
        print_json(effective_config_data(config))
        return 0
    location = config_path(_given(args))
    if config.file is not None:
        print(f"# configuration file: {config.file}")
    else:
        print(f"# no configuration file ({location.path} does not exist): defaults")
    overridden = sorted(key for key, source in config_sources(config).items() if source == "env")
    if overridden:
        print(f"# overridden by the environment: {', '.join(overridden)}")
    print("# each value is followed by where it came from: default, file or $VARIABLE")
    print()
    print(effective_config_text(config, annotate=True), end="")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    """Print the file that would be read (a note on stderr if it does not exist)."""
    # controller.config.config_path's own rule, without loading controller.config.
    path, explicit = config_location(_given(args))
    print(path)
    if not path.exists():
        note = "is missing" if explicit else "does not exist: every setting is a default"
        print(f"massaged: note: {path} {note}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate file and environment; exit 1 with every problem on stderr."""
    try:
        config = read_config(args)
    except ConfigError as err:
        print(f"massaged: error: {err}", file=sys.stderr)
        return 1
    from controller.config import config_sources

    sources = config_sources(config)
    from_file = sum(1 for source in sources.values() if source == "file")
    from_env = sum(1 for source in sources.values() if source == "env")
    where = str(config.file) if config.file is not None else "no file (defaults)"
    print(f"{where}: valid; {from_file} set in the file, {from_env} by the environment")
    return 0
