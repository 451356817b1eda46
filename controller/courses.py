"""Courses of sessions: the method recommends 15 sessions, every 1, 2 or 3 days.

Progress counts the *completed* sessions of the course's profile since the
course started, at most one per calendar day (local time): a course session
is a day's session, and a second one the same day does not bring the course
to an end sooner. Stopped, emergency-stopped and faulty sessions do not count.
The next session is due ``every_days`` after the last counted one (the start
day while none is done); when it lies in the past, the course is overdue and
the next session is simply due now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from controller.profiles import Audience
from controller.store import CourseRecord, Outcome, SessionRecord, Store
from devices.errors import ConfigError

logger = logging.getLogger(__name__)

COURSE_SESSIONS = 15
"""The method: a course of 15 sessions for the best effect."""
COURSE_INTERVALS = (1, 2, 3)
"""The method: sessions every 1, 2 or 3 days, depending on the problem and purpose."""

AFTER_SESSION_ADVICE = (
    "Rest for 10–15 minutes before getting up, then get up slowly, without sudden movements."
)
"""The method: stay seated or lying 10–15 minutes after the session, then rise smoothly."""
AFTER_SESSION_ADVICE_CHILD = (
    "Let the child rest for 10–15 minutes, then help them get up slowly, without sudden movements."
)


def after_session_advice(audience: Audience = Audience.ADULT) -> str:
    """What to do once a session ends (the method's rest and slow rise)."""
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
    days = {
        _local_date(s.started_at, tz)
        for s in sessions
        if s.outcome == Outcome.COMPLETED
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
    store.get_profile(profile)  # NotFoundError for a typo, before anything is written
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
    course = store.active_course(profile)
    if course is None:
        return None
    history = store.list_sessions(
        None, profile=profile, since=course.started_at, outcome=Outcome.COMPLETED
    )
    return course_progress(course, history, today=today, tz=tz)
