"""``massaged history`` (past sessions) and ``massaged course`` (a course of sessions)."""

from __future__ import annotations

import argparse
import logging

from controller.argtypes import count
from controller.commands.profiles import add_db_option, open_store, open_store_for_reading
from controller.courses import (
    COURSE_INTERVALS,
    COURSE_SESSIONS,
    after_session_advice,
    course_status,
    start_course,
)
from controller.output import add_json_option, format_time, print_json, print_table
from controller.profile_terms import DEFAULT_PROFILE_NAME

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The store's records (pydantic, sqlite) are read through open_store, imported there.
if TYPE_CHECKING:
    from collections.abc import Container

    from controller.courses import CourseProgress
    from controller.store import SessionRecord

logger = logging.getLogger(__name__)


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    words: Container[str] | None = None,
) -> None:
    """Add ``history`` and ``course`` (words: only these of them, see controller.cli)."""
    if words is None or "history" in words:
        _add_history(subparsers)
    if words is None or "course" in words:
        _add_course(subparsers)


def _add_history(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "history",
        help="past sessions, newest first",
        description=(
            "Past sessions, newest first: when, which program on which devices, for whom, "
            "how long the program ran (session time, also for a sped-up simulated session), "
            "how it ended, and how often gentler was pressed."
        ),
    )
    p.add_argument("--limit", type=count, default=20, metavar="N", help="at most N (20)")
    p.add_argument("--profile", metavar="NAME", help="only this profile's sessions")
    add_json_option(p)
    add_db_option(p)
    p.set_defaults(func=cmd_history)


def _add_course(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    course = subparsers.add_parser(
        "course",
        help="a course of sessions (15, every 1, 2 or 3 days)",
        description="The method recommends a course of 15 sessions, every 1, 2 or 3 days.",
    )
    sub = course.add_subparsers(dest="course_action", metavar="ACTION", required=True)

    p = sub.add_parser(
        "show",
        help="progress and the next due date",
        description="The current course of a profile: sessions done, the last one, the next due.",
    )
    p.add_argument("--profile", metavar="NAME", help="whose course (default: the default profile)")
    add_json_option(p)
    add_db_option(p)
    p.set_defaults(func=cmd_course_show)

    p = sub.add_parser(
        "start",
        help="start a new course (ends the current one)",
        description="Start a new course for a profile; the current one, if any, ends.",
    )
    p.add_argument("--profile", metavar="NAME", help="whose course (default: the default profile)")
    p.add_argument(
        "--sessions",
        type=count,
        default=COURSE_SESSIONS,
        metavar="N",
        help=f"sessions in the course ({COURSE_SESSIONS})",
    )
    p.add_argument(
        "--every",
        type=int,
        choices=COURSE_INTERVALS,
        default=1,
        metavar="DAYS",
        help="days between sessions: 1, 2 or 3 (1)",
    )
    add_db_option(p)
    p.set_defaults(func=cmd_course_start)


def _course_profile(args: argparse.Namespace) -> str:
    """The profile named by --profile, else the default one."""
    name: str | None = args.profile
    return DEFAULT_PROFILE_NAME if name is None else name


def program_seconds(s: SessionRecord) -> float | None:
    """How long the program ran, in session seconds; None while it runs.

    The session's own clock (detail "elapsed"), not the wall clock: a session
    simulated at x120 ran 5 minutes of program in under 3 seconds. A row written
    without it falls back to the wall-clock length.
    """
    elapsed = s.detail.get("elapsed") if isinstance(s.detail, dict) else None
    if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
        return float(elapsed)
    return s.duration


def _length(s: SessionRecord) -> str:
    if s.ended_at is None:
        return "running"
    seconds = program_seconds(s)
    return "-" if seconds is None else format_time(seconds)


def _session_row(s: SessionRecord) -> tuple[object, ...]:
    return (
        s.id,
        s.started_at.astimezone().strftime("%Y-%m-%d %H:%M"),
        s.program,
        ",".join(s.devices) or "-",
        s.profile,
        _length(s),
        s.outcome.value if s.outcome is not None else "-",
        s.gentler_presses,
        "simulated" if s.simulated else "real",
    )


def _session_data(s: SessionRecord) -> dict[str, object]:
    return {
        "id": s.id,
        "program": s.program,
        "devices": list(s.devices),
        "profile": s.profile,
        "started_at": s.started_at.isoformat(),
        "ended_at": None if s.ended_at is None else s.ended_at.isoformat(),
        "outcome": None if s.outcome is None else s.outcome.value,
        "reason": s.detail.get("reason") if isinstance(s.detail, dict) else None,
        "program_seconds": None if s.ended_at is None else program_seconds(s),
        "wall_seconds": s.duration,
        "gentler_presses": s.gentler_presses,
        "simulated": s.simulated,
    }


def cmd_history(args: argparse.Namespace) -> int:
    """Print the latest sessions."""
    with open_store_for_reading(args) as store:
        sessions = store.list_sessions(args.limit, profile=args.profile)
    if args.json:
        print_json([_session_data(s) for s in sessions])
        return 0
    if not sessions:
        print("no sessions yet")
        return 0
    header = ("id", "started", "program", "devices", "profile", "length", "outcome", "gentler")
    print_table((*header, "devices were"), [_session_row(s) for s in sessions], right=(0, 5, 7))
    return 0


def cmd_course_show(args: argparse.Namespace) -> int:
    """Print the current course's progress and next due date."""
    name = _course_profile(args)
    with open_store_for_reading(args) as store:
        # Only its audience is shown, and only with a course: the built-in default
        # profile is not made (its models loaded) to say that there is none.
        store.require_profile(name)
        progress = course_status(store, name)
        profile = None if progress is None else store.get_profile(name)
    if getattr(args, "json", False):
        print_json(None if progress is None else _course_data(progress))
        return 0
    if progress is None:
        hint = "" if name == DEFAULT_PROFILE_NAME else f" --profile {name}"
        print(f"no course for profile {name}; start one with: massaged course start{hint}")
        return 0
    course = progress.course
    started = course.started_at.astimezone().date().isoformat()
    print(
        f"course for {course.profile}: started {started}, "
        f"{course.sessions} sessions, every {course.every_days} day(s)"
    )
    print(f"done: {progress.completed} of {course.sessions} ({progress.remaining} to go)")
    print("(only completed sessions on real devices count: not cut, stopped or simulated ones)")
    if progress.last_session is not None:
        print(f"last session: {progress.last_session.isoformat()}")
    if progress.done:
        print("the course is complete")
    elif progress.next_due is not None:
        due = progress.next_due.isoformat()
        if progress.overdue:
            print(f"next session: due now (it was due {due})")
        elif progress.due_now:
            print("next session: due today")
        else:
            print(f"next session: due {due}")
    assert profile is not None  # read with the course
    print(f"after each session: {after_session_advice(profile.audience)}")
    return 0


def _course_data(progress: CourseProgress) -> dict[str, object]:
    course = progress.course
    return {
        "profile": course.profile,
        "started_at": course.started_at.isoformat(),
        "sessions": course.sessions,
        "every_days": course.every_days,
        "completed": progress.completed,
        "remaining": progress.remaining,
        "last_session": None
        if progress.last_session is None
        else progress.last_session.isoformat(),
        "next_due": progress.next_due,
        "due_now": progress.due_now,
        "overdue": progress.overdue,
        "done": progress.done,
    }


def cmd_course_start(args: argparse.Namespace) -> int:
    """Start a course for a profile."""
    with open_store(args) as store:
        course = start_course(
            store, _course_profile(args), sessions=args.sessions, every_days=args.every
        )
    print(
        f"started a course for {course.profile}: {course.sessions} sessions, "
        f"every {course.every_days} day(s)"
    )
    return 0
