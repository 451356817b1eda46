"""The ``massaged`` command line: parses arguments and hands over to a command module.

The simple control commands (emergency-stop, stop, pause, resume, gentler,
status) are first given to :mod:`controller.quick_control`, which sends them
without importing any command module: an emergency stop typed on the command
line must reach the devices within milliseconds, Python's start-up included.
So this module imports at module level only what that quick path needs; the
full parser and everything it pulls in (pydantic, asyncio, bleak, aiomqtt)
are imported only on the full path.

The full path, too, imports only what the command given needs: the command
module that registers its word (:data:`COMMANDS`), whose handler then imports
the layers it uses. Every module is registered only for the help that lists
them all, and for an unknown command.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import types  # already loaded by contextlib: costs nothing

from controller import quick_control

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

COMMANDS: dict[str, tuple[str, ...]] = {
    # module: the command words its register() adds, in the order --help lists them
    "controller.commands.simulate": ("simulate", "sim-fault"),
    "controller.commands.selftest": ("selftest",),
    "controller.commands.demo": ("demo",),
    "controller.commands.programs": ("programs",),
    "controller.commands.run": ("run",),
    "controller.commands.attach": ("attach",),
    "controller.commands.profiles": ("profiles",),
    "controller.commands.history": ("history", "course"),
    "controller.commands.config": ("config",),
    "controller.commands.daemon": (
        "daemon",
        "scan",
        "pair",
        "devices",
        "unpair",
        *quick_control.SIMPLE_COMMANDS,
    ),
    "controller.commands.completion": ("completion",),
    "controller.commands.web": ("web",),
}
"""Every command module and the command words it registers.

A command line names one command, so only its module is imported and registered
(:func:`command_modules`): the others, and the layers they import, cost nothing.
tests/controller/test_cli_startup.py checks this table against what each
module's register() really adds.
"""
_MODULE_OF = {word: module for module, words in COMMANDS.items() for word in words}


def command_modules(argv: Sequence[str]) -> tuple[str, ...]:
    """The command modules to register for argv: the one of the command it names.

    The command word is the first argument that is not an option. Before it only
    the plain -v, -vv, ... and --verbose are passed over. --version there needs no
    command (argparse prints the version before it reads what follows); anything
    else there (--help, an abbreviation, a typo) and an unknown or missing word
    need every command registered, for the help that lists them or the error.
    """
    first = _first_argument(argv)
    if first == "--version":
        return ()
    module = None if first is None else _MODULE_OF.get(first)
    return tuple(COMMANDS) if module is None else (module,)


def command_word(argv: Sequence[str]) -> str | None:
    """The command word argv names (as command_modules finds it); None when it names none."""
    first = _first_argument(argv)
    return first if first in _MODULE_OF else None


def _first_argument(argv: Sequence[str]) -> str | None:
    """The first argument that is not a plain -v, -vv, ... or --verbose."""
    for arg in argv:
        if arg == "--verbose" or (len(arg) > 1 and arg[0] == "-" and set(arg[1:]) == {"v"}):
            continue
        return arg
    return None


def build_parser(
    modules: Iterable[str] = COMMANDS, word: str | None = None
) -> argparse.ArgumentParser:
    """The argument parser with the commands of these modules registered (default: all).

    word: the command the command line names; a module that registers several commands
    then registers only that one (the others' parsers would be built for nothing).
    """
    # Imported here, not at module level: the quick path of main() needs neither.
    import argparse
    import importlib

    class Version(argparse.Action):
        """--version, which looks the version up only when asked (importlib.metadata is slow)."""

        def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

        def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
            print(f"massaged {version()}")
            parser.exit()

    parser = argparse.ArgumentParser(
        prog="massaged",
        description="Run home massage devices by the cervical-collar massage method.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv: wire bytes in hex)"
    )
    parser.add_argument("--version", action=Version, help="show program's version number and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(name)
        if word is not None and len(COMMANDS[name]) > 1:
            module.register(sub, (word,))
        else:
            module.register(sub)
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
    global _collector_paused
    if argv is None and gc.isenabled():
        # The console script, python -m controller: the start-up (imports, the parser,
        # the configuration) makes objects that live as long as the process, so the
        # collector's passes over them find nothing, and cost about a twentieth of it.
        # It is off until a command that runs on starts (_full), or the process ends.
        # Not when called with arguments, from a program that goes on living.
        gc.disable()
        _collector_paused = True
    try:
        code = _main(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _pipe_closed()
    if argv is None:
        # The process ends next: what was allocated is freed with it, so the collector's
        # passes at exit, most of a short command's end, are skipped.
        gc.freeze()
    return code


_collector_paused = False
"""True while main() keeps the garbage collector off for the start-up."""


def _resume_collector() -> None:
    """The garbage collector back on, if main() paused it: the command runs on.

    What the start-up made is frozen first (gc.freeze): it lives as long as the process,
    and the collector would otherwise walk all of it once more in each older generation.
    """
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()


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
    """The full command line: the command asked for registered (every one when in
    doubt), its arguments parsed, then its handler run."""
    parser = build_parser(command_modules(argv), command_word(argv))
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        print("massaged: error: give a command (listed above)", file=sys.stderr)
        return 2

    def run() -> int:
        result = func(args)
        if isinstance(result, types.CoroutineType):
            # asyncio only for the commands that need it: importing it costs start-up time.
            import asyncio

            # The daemon, the simulator, a session: they run on, and make garbage.
            _resume_collector()
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
