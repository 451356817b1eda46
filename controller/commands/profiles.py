"""``massaged profiles``: list, show, change and check user profiles."""

from __future__ import annotations

import argparse
import logging
from datetime import date
from pathlib import Path

from controller.errors import StoreError
from controller.output import add_json_option, print_json, print_table
from controller.profile_terms import Audience, Contraindication, PainfulSide
from controller.store_paths import check_database_to_open, database_to_read

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The profile and store layers (pydantic, sqlite) are imported where they are used:
# history and run import this module for add_db_option and open_store. The profile's
# words (controller.profile_terms) and the database's path checks (store_paths) are light.
if TYPE_CHECKING:
    from controller.profiles import Profile
    from controller.store import Store

logger = logging.getLogger(__name__)

EXIT_BLOCKED = 3
"""Exit code of ``profiles check`` when a contraindication blocks a device."""

_DOCTOR = (
    "This checks only what the profile records. If you feel unwell, postpone the session; "
    "when in doubt, ask your doctor."
)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The --db option every store-using command takes."""
    parser.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help=(
            "the database file (default: [store] path of the configuration, else "
            "$MASSAGED_DATA_DIR or the data folder / massaged.db)"
        ),
    )


def _configured_db(args: argparse.Namespace) -> Path | None:
    """The database the daemon uses too: [store] path of the configuration (None: the
    default one). A profile set here must be the one the daemon's sessions read."""
    from controller import paths
    from controller.commands.config import read_settings

    db = read_settings(args).db  # a configuration it cannot use is refused, in its words
    return None if db == paths.db_path() else db


def open_store(args: argparse.Namespace) -> Store:
    """The store named by --db, else the configured one, else the default one."""
    db: Path | None = getattr(args, "db", None)
    if db is not None and not db.expanduser().parent.is_dir():
        # A path the user typed: a typo must not leave new folders behind (issue 13).
        raise StoreError(f"--db {db}: the folder {db.expanduser().parent} does not exist")
    if db is None:
        db = _configured_db(args)
    check_database_to_open(db)  # a folder or a file that is not a database: before the store loads
    from controller.store import Store

    return Store.open(db)


def open_store_for_reading(args: argparse.Namespace) -> Store:
    """The store named by --db, else the configured one, else the default one, for a
    command that only reads it: nothing is created or changed (Store.open_for_reading)."""
    db: Path | None = getattr(args, "db", None)
    configured = db is None
    if configured:
        db = _configured_db(args)
    # A wrong --db is refused before the store loads; a configured database the daemon
    # has not made yet is an empty history, as the default one is.
    database_to_read(db, missing_is_empty=configured)
    from controller.store import Store

    return Store.open_for_reading(db, missing_is_empty=configured)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``profiles`` and its actions."""
    from devices.capabilities import DeviceKind

    parser = subparsers.add_parser(
        "profiles",
        help="list, show, change and check user profiles",
        description="User profiles: audience, intensity caps, painful side, contraindications.",
    )
    sub = parser.add_subparsers(dest="profiles_action", metavar="ACTION", required=True)

    p = sub.add_parser(
        "list",
        help="every profile",
        description="Every profile: audience, painful side and how many contraindications.",
    )
    add_json_option(p)
    add_db_option(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "show",
        help="one profile in full",
        description="One profile in full: audience, caps, painful side, contraindications.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    add_db_option(p)
    p.set_defaults(func=cmd_show)

    kinds = ", ".join(k.value for k in DeviceKind)
    p = sub.add_parser(
        "set",
        help="create or change a profile",
        description="Create a profile (from the default settings) or change the given fields.",
        epilog="contraindications: " + ", ".join(c.value for c in Contraindication),
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--audience", choices=[a.value for a in Audience])
    p.add_argument(
        "--cap",
        action="append",
        default=[],
        metavar="KIND=FRACTION",
        help=f"intensity cap of a device kind ({kinds}), 0..1 of the device maximum",
    )
    p.add_argument(
        "--ems-max-raise",
        type=int,
        metavar="N",
        help="EMS strength raise per 100 ms, 1..5 (5 is the protocol's maximum)",
    )
    p.add_argument("--painful-side", choices=[s.value for s in PainfulSide])
    p.add_argument(
        "--contraindication",
        action="append",
        default=[],
        metavar="NAME",
        help="add a contraindication (repeatable; see the list below)",
    )
    p.add_argument(
        "--clear-contraindications",
        action="store_true",
        help="remove every contraindication (before adding the --contraindication ones)",
    )
    p.add_argument(
        "--today",
        action="append",
        default=[],
        metavar="NAME",
        help="a contraindication for today only (a cold, a fever): it postpones today's "
        "sessions and lapses tomorrow (repeatable)",
    )
    p.add_argument(
        "--clear-today",
        action="store_true",
        help="remove what was recorded for today (before adding the --today ones)",
    )
    p.add_argument(
        "--complex-osteochondrosis",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a complex case of osteochondrosis: every session shows the method's caution "
        "and asks to confirm it",
    )
    add_db_option(p)
    p.set_defaults(func=cmd_set)

    p = sub.add_parser(
        "check",
        help="which contraindications block which devices",
        description=f"Exit code 0 when nothing is blocked, {EXIT_BLOCKED} when something is.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--device",
        action="append",
        choices=[k.value for k in DeviceKind],
        metavar="KIND",
        help=f"check a session on these kinds only ({kinds}; repeatable; default: all)",
    )
    add_db_option(p)
    p.set_defaults(func=cmd_check)


def describe(profile: Profile) -> list[str]:
    """The lines that show a profile to a person."""
    from controller.profile_terms import HEATER_LIMITS_S, SESSION_LIMITS_S
    from controller.profiles import CONTRAINDICATIONS, OSTEOCHONDROSIS_CAUTION
    from devices.capabilities import DeviceKind

    session_min = SESSION_LIMITS_S[profile.audience] / 60
    heater_min = HEATER_LIMITS_S[profile.audience] / 60
    caps = ", ".join(f"{k.value} {profile.caps.for_kind(k):.2f}" for k in DeviceKind)
    items = sorted(profile.contraindications, key=lambda c: c.value)
    lines = [
        f"name: {profile.name}",
        f"audience: {profile.audience.value} "
        f"(session up to {session_min:g} min, heater up to {heater_min:g} min)",
        f"caps (fraction of the device maximum): {caps}",
        f"EMS raise: at most {profile.ems_max_raise_per_100ms} per 100 ms",
        f"painful side: {profile.painful_side.value}",
        "contraindications: " + (", ".join(c.value for c in items) if items else "none"),
    ]
    for item in items:
        if CONTRAINDICATIONS[item].ems_only:
            lines.append(f"  {item.value} blocks only the EMS butterfly")
    today = sorted(c.value for c in profile.today_contraindications())
    if today:
        lines.append("for today (postpones today's sessions): " + ", ".join(today))
    if profile.complex_osteochondrosis:
        lines.append(f"complex osteochondrosis: {OSTEOCHONDROSIS_CAUTION}")
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    """Print every profile, one line each."""
    with open_store_for_reading(args) as store:
        profiles = store.list_profiles()
    if getattr(args, "json", False):
        print_json([profile.model_dump(mode="json") for profile in profiles])
        return 0
    rows = [
        (p.name, p.audience.value, p.painful_side.value, len(p.contraindications)) for p in profiles
    ]
    print_table(("NAME", "AUDIENCE", "PAINFUL SIDE", "CONTRAINDICATIONS"), rows, right=(3,))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one profile."""
    with open_store_for_reading(args) as store:
        profile = store.get_profile(args.name)
    if args.json:
        import json  # here: only --json needs it

        print(json.dumps(profile.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(describe(profile)))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    """Create or change a profile and print it."""
    with open_store(args) as store:  # a wrong --db is refused before the models load
        from controller.profiles import DEFAULT_PROFILE, parse_contraindication, parse_kind_caps

        current = store.find_profile(args.name)
        created = current is None
        base = current or DEFAULT_PROFILE.updated(name=args.name)
        changes: dict[str, object] = {}
        if args.audience is not None:
            changes["audience"] = args.audience
        if args.cap:
            changes["caps"] = parse_kind_caps(args.cap, base.caps).model_dump()
        if args.ems_max_raise is not None:
            changes["ems_max_raise_per_100ms"] = args.ems_max_raise
        if args.painful_side is not None:
            changes["painful_side"] = args.painful_side
        if args.clear_contraindications or args.contraindication:
            items = set() if args.clear_contraindications else set(base.contraindications)
            items.update(parse_contraindication(name) for name in args.contraindication)
            changes["contraindications"] = sorted(c.value for c in items)
        if args.clear_today or args.today:
            today = date.today()
            kept = set() if args.clear_today else set(base.today_contraindications(today))
            kept.update(parse_contraindication(name) for name in args.today)
            changes["for_today"] = (
                {"day": today.isoformat(), "items": sorted(c.value for c in kept)} if kept else None
            )
        if args.complex_osteochondrosis is not None:
            changes["complex_osteochondrosis"] = args.complex_osteochondrosis
        profile = base.updated(**changes)
        store.save_profile(profile)
    tell_daemon(args)
    print(("created" if created else "saved") + f" profile {profile.name}")
    print("\n".join(describe(profile)))
    return 0


def tell_daemon(args: argparse.Namespace) -> None:
    """A running daemon follows the saved profile at once: a session running with it
    takes lowered caps and a slower EMS ramp (never a raise). No daemon: nothing to do."""
    from controller import quick_control
    from controller.paths import no_socket_at

    given: Path | None = getattr(args, "config", None)
    try:
        # The light rules first: when they are sure of the socket and nothing is there,
        # no daemon runs, and the configuration's models, asyncio and the client are
        # not loaded to find that out.
        quick = quick_control.control_socket(config_flag=None if given is None else str(given))
    except quick_control.FallBack:
        quick = None
    if quick is not None and no_socket_at(quick):
        logger.debug("no daemon told of the profile: nothing at %s", quick)
        return
    import asyncio

    from controller import control
    from controller.config import load_config
    from devices.errors import MassagedError

    try:
        socket = Path(load_config(given).daemon.socket)
        answer = asyncio.run(control.call(socket, "reload", timeout=TELL_DAEMON_TIMEOUT_S))
    except (MassagedError, OSError) as err:
        logger.debug("no daemon told of the profile: %s", err)
        return
    if answer.get("status") != "ok":
        print(f"warning: the daemon did not take the profile change: {answer.get('error')}")


TELL_DAEMON_TIMEOUT_S = 5.0
"""Seconds a running daemon may take to answer that it follows a saved profile."""


def cmd_check(args: argparse.Namespace) -> int:
    """Print which contraindications block which devices; exit 3 when any does."""
    from devices.capabilities import DeviceKind

    kinds = None if not args.device else {DeviceKind(k) for k in args.device}
    with open_store_for_reading(args) as store:
        profile = store.get_profile(args.name)
    from controller.profiles import check_contraindications

    result = check_contraindications(profile, kinds)
    for message in result.messages:
        print(message)
    if result.ok:
        print(f"no contraindication recorded for {profile.name}: every device may run")
    elif result.session_blocked:
        print("the whole session is blocked")
    else:
        blocked = ", ".join(sorted(k.value for k in result.blocked_kinds))
        allowed = ", ".join(sorted(k.value for k in result.allowed_kinds))
        print(f"blocked: {blocked}; may run: {allowed}")
    print(_DOCTOR)
    return 0 if result.ok else EXIT_BLOCKED
