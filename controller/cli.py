"""The ``massaged`` command line: parses arguments and hands over to a command module."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence

from devices.errors import MassagedError

logger = logging.getLogger(__name__)

COMMAND_MODULES = (
    "controller.commands.simulate",
    "controller.commands.selftest",
    "controller.commands.demo",
    "controller.commands.programs",
    "controller.commands.run",
    "controller.commands.profiles",
    "controller.commands.history",
    "controller.commands.config",
    "controller.commands.daemon",
)
"""Every command module; each registers its own subcommands."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="massaged",
        description="Run home massage devices by the cervical-collar massage method.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: wire bytes in hex)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # a command not built yet in this checkout
        module.register(sub)
    return parser


def setup_logging(verbosity: int) -> None:
    """One readable line per event; -v for info, -vv for debug (wire hex)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``massaged`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        result = func(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into head or less that closed early: not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except MassagedError as err:
        print(f"massaged: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
