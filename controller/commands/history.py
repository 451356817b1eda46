"""``massaged history`` (past sessions) and ``massaged course`` (a course of sessions)."""

from __future__ import annotations

import argparse
import logging

from controller.commands.profiles import add_db_option, open_store
from controller.courses import (
    COURSE_INTERVALS,
    COURSE_SESSIONS,
    after_session_advice,
    course_status,
    start_course,
)
from controller.profiles import DEFAULT_PROFILE_NAME
from controller.store import SessionRecord

logger = logging.getLogger(__name__)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``history`` and ``course``."""
    p = subparsers.add_parser("history", help="past sessions, newest first")
    p.add_argument("--limit", type=_positive, default=20, metavar="N", help="at most N (20)")
    p.add_argument("--profile", metavar="NAME", help="only this profile's sessions")
    add_db_option(p)
    p.set_defaults(func=cmd_history)

    course = subparsers.add_parser(
        "course",
        help="a course of sessions (15, every 1, 2 or 3 days)",
        description="The method recommends a course of 15 sessions, every 1, 2 or 3 days.",
    )
    sub = course.add_subparsers(dest="course_action", metavar="ACTION", required=True)

    p = sub.add_parser("show", help="progress and the next due date")
    p.add_argument("--profile", default=DEFAULT_PROFILE_NAME, metavar="NAME")
    add_db_option(p)
    p.set_defaults(func=cmd_course_show)

    p = sub.add_parser("start", help="start a new course (ends the current one)")
    p.add_argument("--profile", default=DEFAULT_PROFILE_NAME, metavar="NAME")
    p.add_argument(
        "--sessions",
        type=_positive,
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


def _format_session(s: SessionRecord) -> str:
    started = s.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
    duration = "running" if s.duration is None else f"{s.duration / 60:.0f} min"
    outcome = s.outcome.value if s.outcome is not None else "-"
    devices = ",".join(s.devices) or "-"
    return (
        f"{s.id:>5}  {started}  {s.program:<24} {devices:<24} {s.profile:<12} "
        f"{duration:>8}  {outcome:<14} {s.gentler_presses:<7}  "
        + ("simulated" if s.simulated else "real")
    ).rstrip()


def cmd_history(args: argparse.Namespace) -> int:
    """Print the latest sessions."""
    with open_store(args) as store:
        sessions = store.list_sessions(args.limit, profile=args.profile)
    if not sessions:
        print("no sessions yet")
        return 0
    print(
        f"{'id':>5}  {'started':<16}  {'program':<24} {'devices':<24} {'profile':<12} "
        f"{'length':>8}  {'outcome':<14} gentler  devices were"
    )
    for session in sessions:
        print(_format_session(session))
    return 0


def cmd_course_show(args: argparse.Namespace) -> int:
    """Print the current course's progress and next due date."""
    with open_store(args) as store:
        profile = store.get_profile(args.profile)
        progress = course_status(store, args.profile)
    if progress is None:
        hint = "" if args.profile == DEFAULT_PROFILE_NAME else f" --profile {args.profile}"
        print(f"no course for profile {args.profile}; start one with: massaged course start{hint}")
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
    print(f"after each session: {after_session_advice(profile.audience)}")
    return 0


def cmd_course_start(args: argparse.Namespace) -> int:
    """Start a course for a profile."""
    with open_store(args) as store:
        course = start_course(store, args.profile, sessions=args.sessions, every_days=args.every)
    print(
        f"started a course for {course.profile}: {course.sessions} sessions, "
        f"every {course.every_days} day(s)"
    )
    return 0
