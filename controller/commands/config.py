"""``massaged config``: show, check and locate the configuration file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from controller.config import (
    CONFIG_ENV,
    config_path,
    config_sources,
    effective_config_text,
    load_config,
)
from devices.errors import ConfigError

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
    )
    add_config_option(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("path", help="print the path of the configuration file")
    add_config_option(p)
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("check", help="validate the configuration; exit 1 if it is wrong")
    add_config_option(p)
    p.set_defaults(func=cmd_check)


def _given(args: argparse.Namespace) -> Path | None:
    given: Path | None = getattr(args, "config", None)
    return given


def cmd_show(args: argparse.Namespace) -> int:
    """Print the effective configuration as TOML, secrets masked."""
    config = load_config(_given(args))
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
    location = config_path(_given(args))
    print(location.path)
    if not location.path.exists():
        note = "is missing" if location.explicit else "does not exist: every setting is a default"
        print(f"massaged: note: {location.path} {note}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate file and environment; exit 1 with every problem on stderr."""
    try:
        config = load_config(_given(args))
    except ConfigError as err:
        print(f"massaged: error: {err}", file=sys.stderr)
        return 1
    sources = config_sources(config)
    from_file = sum(1 for source in sources.values() if source == "file")
    from_env = sum(1 for source in sources.values() if source == "env")
    where = str(config.file) if config.file is not None else "no file (defaults)"
    print(f"{where}: valid; {from_file} set in the file, {from_env} by the environment")
    return 0
