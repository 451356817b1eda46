"""``massaged web token``: a new login token for the web page, shown once."""

from __future__ import annotations

import argparse
import sys

from controller.commands.config import add_config_option, read_settings

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    """Add ``web`` and its actions."""
    parser = sub.add_parser(
        "web",
        help="the web page served by the daemon: its login token",
        description=(
            "The daemon serves a web page ([web] in the configuration; docs/web.md). "
            "On the LAN everything but Stop needs the login token."
        ),
    )
    actions = parser.add_subparsers(dest="web_action", metavar="ACTION", required=True)
    token = actions.add_parser(
        "token",
        help="make a new login token and print it (once): old logins end",
        description=(
            "Make a new login token for the web page and print it; only its hash is kept. "
            "Every browser logged in with the old token is logged out; a running daemon "
            "takes the new one at once."
        ),
    )
    add_config_option(token)
    token.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    """Renew the token beside the database and print it."""
    db = read_settings(args).db
    from controller.paths import ensure_private_dir
    from controller.store_paths import database_path
    from controller.web.auth import TokenFile, token_path

    folder = database_path(db).parent
    ensure_private_dir(folder)
    token = TokenFile(token_path(folder)).renew()
    print(token)
    print(
        f"massaged: new web login token (its hash is in {token_path(folder)}); "
        "every browser logged in before must log in again",
        file=sys.stderr,
    )
    return 0
