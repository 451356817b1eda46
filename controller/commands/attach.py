"""``massaged attach``: the live view of the session the daemon runs, again.

A session started with ``massaged run --detach``, or whose terminal was lost
some other way, keeps running in the daemon; attach shows it with the same
live view and keys as ``run``. Attach is a viewer: Ctrl-C, SIGTERM and SIGHUP
end the view and leave the session running (the key s, or ``massaged stop``,
stops it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from pathlib import Path

from controller.commands.config import add_config_option, read_settings
from controller.paths import check_socket_path, no_socket_at
from controller.quick_control import not_running

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_DETACHED = 0
"""The view ended by Ctrl-C (or SIGTERM, SIGHUP): the session runs on, nothing failed."""


def register(sub: Any) -> None:
    """Add the attach command."""
    p = sub.add_parser(
        "attach",
        help="show the daemon's running session again, with the live view and keys",
        description=(
            "Show the session the daemon runs (one started with massaged run --detach, or "
            "whose terminal was closed) with the live view and keys of massaged run. "
            "Ctrl-C leaves the view and the session runs on; s stops it softly."
        ),
        epilog=(
            "Exit status: 0 when the session completed or the view was left, "
            "1 when no session runs or it ended by a fault, 3 emergency stop."
        ),
    )
    p.add_argument(
        "--socket",
        type=Path,
        help="the daemon's control socket (default: from the configuration)",
    )
    p.add_argument(
        "--no-display",
        action="store_true",
        help="one line per step instead of the live view",
    )
    add_config_option(p)
    p.set_defaults(func=cmd_attach)


def cmd_attach(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Follow the running session until it ends or the view is left.

    The socket is found and checked here; the view is the coroutine returned, which
    controller.cli runs: a bad --socket or --config, or no daemon there, does without
    asyncio.
    """
    socket = Path(args.socket) if args.socket else read_settings(args).socket
    check_socket_path(socket)
    if no_socket_at(socket):
        # The client's own answer to a socket that is not there, without asyncio and
        # the client loaded to get it.
        raise not_running(socket, FileNotFoundError(socket))
    return _attach(args, socket)


async def _attach(args: argparse.Namespace, socket: Path) -> int:
    # The viewer's layers once the configuration and the socket are known to be good.
    from controller.commands.run import outcome_exit_code
    from controller.courses import after_session_advice
    from controller.output import format_time
    from controller.remote import attach
    from controller.session import Outcome

    live = not args.no_display and sys.stdout.isatty()
    remote = await attach(socket, live=live)
    if remote.detached.is_set():
        print(
            "left the view: the session runs on (massaged attach shows it again, massaged stop "
            "stops it)"
        )
        return EXIT_DETACHED
    result = remote.last
    if result is None:
        print("the session ended (no record of how)")
        return 1
    print(f"session {result['outcome']}: {result['reason']} after {format_time(result['elapsed'])}")
    print(after_session_advice())
    return outcome_exit_code(Outcome(result["outcome"]))
