"""The ``massaged`` command line: parses arguments and hands over to a command module.

The simple control commands (emergency-stop, stop, pause, resume, gentler,
status) are first given to :mod:`controller.quick_control`, which sends them
without importing any command module: an emergency stop typed on the command
line must reach the devices within milliseconds, Python's start-up included.
So this module imports at module level only what that quick path needs; the
full parser and everything it pulls in (pydantic, asyncio, bleak, aiomqtt)
are imported only on the full path.
"""

from __future__ import annotations

import contextlib
import sys

from controller import quick_control

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

COMMAND_MODULES = (
    "controller.commands.simulate",
    "controller.commands.selftest",
    "controller.commands.demo",
    "controller.commands.programs",
    "controller.commands.run",
    "controller.commands.attach",
    "controller.commands.profiles",
    "controller.commands.history",
    "controller.commands.config",
    "controller.commands.daemon",
    "controller.commands.completion",
    "controller.commands.web",
)
"""Every command module; each registers its own subcommands."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command registered."""
    # Imported here, not at module level: the quick path of main() needs neither.
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="massaged",
        description="Run home massage devices by the cervical-collar massage method.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: wire bytes in hex)"
    )
    parser.add_argument("--version", action="version", version=f"massaged {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version() -> str:
    """The installed package's version ("unknown" when run from a bare source tree)."""
    from importlib import metadata

    try:
        return metadata.version("massaged")
    except metadata.PackageNotFoundError:
        return "unknown"


def setup_logging(verbosity: int) -> None:
    """One readable line per event; -v for info, -vv for debug (wire hex).

    A warning or error repeated from one place is let through a few times, then
    counted (controller.log_limit): a flood of failures must not flood the log.
    """
    import logging

    from controller.log_limit import RepeatLimit, limit_repeats

    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Only the handler made here: one already there (a test's) is its owner's business.
    for handler in root.handlers:
        if handler not in before and not any(isinstance(f, RepeatLimit) for f in handler.filters):
            limit_repeats(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``massaged`` console script.

    Whatever the command, and from the first import on: Ctrl-C ends with one
    line and status 130, a reader that went away (``| head``) ends quietly with
    141 (what a shell shows for SIGPIPE). stdout is flushed here, inside the
    guard, so the flush at exit cannot fail with a traceback.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _pipe_closed()
    return code


def _interrupted() -> int:
    with contextlib.suppress(OSError, ValueError):
        print("massaged: interrupted", file=sys.stderr)
    return 130


def _pipe_closed() -> int:
    from controller.output import silence_stdout

    silence_stdout()
    return 141


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    request = quick_control.parse(args)
    if request is not None:
        try:
            path = quick_control.control_socket(
                socket_flag=request.socket, config_flag=request.config
            )
        except quick_control.FallBack as why:
            # The full path validates everything and says what is wrong.
            _quick_debug(request.verbose, "quick path not taken: %s", why)
        else:
            _quick_debug(request.verbose, "quick path: %s to %s", request.api_command, path)
            return _guarded(
                lambda: quick_control.run_command(
                    path, request.api_command, as_json=request.as_json
                )
            )
    return _full(args)


def _quick_debug(verbosity: int, message: str, *args: object) -> None:
    """A debug line of the quick path, with -vv only.

    logging is imported only then: it is among the slowest imports left on the
    emergency stop's path, and the quick path has nothing to say below -vv.
    """
    if verbosity > 1:
        import logging

        setup_logging(verbosity)
        logging.getLogger(__name__).debug(message, *args)


def _full(argv: Sequence[str]) -> int:
    """The full command line: every command registered, then the one asked for."""
    import asyncio
    import inspect

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        print("massaged: error: give a command (listed above)", file=sys.stderr)
        return 2

    def run() -> int:
        result = func(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)

    return _guarded(run)


def _guarded(run: Callable[[], int]) -> int:
    """Run a command; Ctrl-C, a closed pipe and massaged's own errors end it readably."""
    from devices.errors import MassagedError

    try:
        return run()
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        # Output piped into head or less that closed early: not an error of ours.
        return _pipe_closed()
    except EOFError:
        # A question read past the end of stdin; controller.output.ask names the flag
        # instead, this is the net under any other reader.
        print("massaged: error: input ended before an answer (no terminal?)", file=sys.stderr)
        return 1
    except MassagedError as err:
        print(f"massaged: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # A file, folder or socket the system refused (permissions, a full or read-only
        # disk, a path too long): the user's to fix, so one line; -vv logs where it came from.
        import logging

        logging.getLogger(__name__).debug("system error", exc_info=True)
        print(f"massaged: error: {_os_error(err)}", file=sys.stderr)
        return 1


def _os_error(err: OSError) -> str:
    """An OSError as one line: its reason and the file it names."""
    reason = err.strerror or str(err) or type(err).__name__
    names = [n for n in (err.filename, err.filename2) if n is not None]
    return f"{' -> '.join(str(n) for n in names)}: {reason}" if names else reason


if __name__ == "__main__":
    sys.exit(main())
