"""Courses of sessions: the method recommends 15 sessions, every 1, 2 or 3 days.

Progress counts the *completed* sessions of the course's profile since the
course started, at most one per calendar day (local time): a course session
is a day's session, and a second one the same day does not bring the course
to an end sooner. Stopped, emergency-stopped, faulty and cut sessions (a limit
ended them before the program did) do not count, nor does any session on
simulated devices: nobody was massaged.
The next session is due ``every_days`` after the last counted one (the start
day while none is done); when it lies in the past, the course is overdue and
the next session is simply due now.

Before a session, :func:`spacing_warnings` says what a start now would break:
a session earlier than the course's spacing, or within the rest time after the
last real session (the method: stay seated 10–15 minutes afterwards). Either
asks the user for an explicit override (controller.readiness).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from devices.errors import ConfigError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The session, profile and store layers are imported where they are used: the
# course command's options (COURSE_SESSIONS, COURSE_INTERVALS) must not cost their
# start-up (pydantic, sqlite) to a command that fails on a bad option.
if TYPE_CHECKING:
    from controller.profiles import Audience
    from controller.store import CourseRecord, SessionRecord, Store

logger = logging.getLogger(__name__)

COURSE_SESSIONS = 15
"""The method: a course of 15 sessions for the best effect."""
COURSE_INTERVALS = (1, 2, 3)
"""The method: sessions every 1, 2 or 3 days, depending on the problem and purpose."""

REST_AFTER_S = 15 * 60.0
"""The method: rest 10–15 minutes after a session; a new one inside the longer bound is early."""

AFTER_SESSION_ADVICE = (
    "Rest for 10–15 minutes before getting up, then get up slowly, without sudden movements."
)
"""The method: stay seated or lying 10–15 minutes after the session, then rise smoothly."""
AFTER_SESSION_ADVICE_CHILD = (
    "Let the child rest for 10–15 minutes, then help them get up slowly, without sudden movements."
)


def after_session_advice(audience: Audience | None = None) -> str:
    """What to do once a session ends (the method's rest and slow rise); None: an adult."""
    from controller.profiles import Audience

    return AFTER_SESSION_ADVICE_CHILD if audience == Audience.CHILD else AFTER_SESSION_ADVICE


def validate_course(sessions: int, every_days: int) -> None:
    """ConfigError naming the field when a course is outside the method's rules."""
    if sessions < 1:
        raise ConfigError(f"course sessions: at least 1, not {sessions}")
    if every_days not in COURSE_INTERVALS:
        raise ConfigError(f"course every_days: every 1, 2 or 3 days (the method), not {every_days}")


def _local_date(moment: datetime, tz: tzinfo | None) -> date:
    return moment.astimezone(tz).date()


def course_session_days(
    course: CourseRecord, sessions: Iterable[SessionRecord], tz: tzinfo | None = None
) -> list[date]:
    """The distinct local days with a completed session of the course, in order."""
    from controller.session import Outcome

    days = {
        _local_date(s.started_at, tz)
        for s in sessions
        if s.outcome == Outcome.COMPLETED
        and not s.simulated
        and s.profile == course.profile
        and s.started_at >= course.started_at
        and (course.ended_at is None or s.started_at < course.ended_at)
    }
    return sorted(days)


def next_due_date(
    course: CourseRecord, session_days: list[date], tz: tzinfo | None = None
) -> date | None:
    """When the next session is due, or None once the course is complete."""
    if len(session_days) >= course.sessions:
        return None
    if not session_days:
        return _local_date(course.started_at, tz)
    return session_days[-1] + timedelta(days=course.every_days)


@dataclass(frozen=True, slots=True)
class CourseProgress:
    """How far a course has come and when the next session is due."""

    course: CourseRecord
    completed: int
    last_session: date | None
    next_due: date | None
    today: date

    @property
    def remaining(self) -> int:
        """Sessions still to do."""
        return max(0, self.course.sessions - self.completed)

    @property
    def done(self) -> bool:
        """True once every session of the course is done."""
        return self.completed >= self.course.sessions

    @property
    def due_now(self) -> bool:
        """True when a session is due today or overdue."""
        return self.next_due is not None and self.next_due <= self.today

    @property
    def overdue(self) -> bool:
        """True when the due day has passed without a session."""
        return self.next_due is not None and self.next_due < self.today


def course_progress(
    course: CourseRecord,
    sessions: Iterable[SessionRecord],
    *,
    today: date | None = None,
    tz: tzinfo | None = None,
) -> CourseProgress:
    """Progress of a course from the session history (tz: local time when None)."""
    days = course_session_days(course, sessions, tz)
    counted = days[: course.sessions]
    return CourseProgress(
        course=course,
        completed=len(counted),
        last_session=counted[-1] if counted else None,
        next_due=next_due_date(course, counted, tz),
        today=today if today is not None else datetime.now(tz).date(),
    )


def start_course(
    store: Store,
    profile: str,
    *,
    sessions: int = COURSE_SESSIONS,
    every_days: int = 1,
    started_at: datetime | None = None,
) -> CourseRecord:
    """Start a course for a profile (replacing its current one), after checking the rules."""
    validate_course(sessions, every_days)
    store.require_profile(profile)  # NotFoundError for a typo, before anything is written
    course = store.start_course(
        profile, sessions=sessions, every_days=every_days, started_at=started_at
    )
    logger.info(
        "course %d started for %s: %d every %d days", course.id, profile, sessions, every_days
    )
    return course


def course_status(
    store: Store, profile: str, *, today: date | None = None, tz: tzinfo | None = None
) -> CourseProgress | None:
    """The progress of a profile's current course, or None without one."""
    from controller.session import Outcome

    course = store.active_course(profile)
    if course is None:
        return None
    history = store.list_sessions(
        None, profile=profile, since=course.started_at, outcome=Outcome.COMPLETED, simulated=False
    )
    return course_progress(course, history, today=today, tz=tz)


def spacing_warnings(
    store: Store, profile: str, *, now: datetime | None = None, tz: tzinfo | None = None
) -> list[str]:
    """Why a real session of this profile starting now is too early (empty: it is not).

    Two rules of the method: the rest after the last real session (REST_AFTER_S, whatever
    its outcome: the body was massaged), and the spacing of the profile's course (the
    next session is due every_days after the last counted one). Simulated sessions are
    not looked at: nobody was massaged.
    """
    moment = now if now is not None else datetime.now(UTC)
    warnings: list[str] = []
    last = next(
        (s for s in store.list_sessions(5, profile=profile, simulated=False) if s.ended_at),
        None,
    )
    if last is not None and last.ended_at is not None:
        since = (moment - last.ended_at).total_seconds()
        if 0 <= since < REST_AFTER_S:
            warnings.append(
                f"the last session ended {since / 60:.0f} min ago: the method asks for "
                f"{REST_AFTER_S / 60:.0f} minutes of rest after a session"
            )
    progress = course_status(store, profile, today=_local_date(moment, tz), tz=tz)
    if progress is not None and progress.next_due is not None and not progress.due_now:
        course = progress.course
        warnings.append(
            f"the course has a session every {course.every_days} day(s): the next one is due "
            f"on {progress.next_due.isoformat()}, not today"
        )
    return warnings
