"""Before a session: is today a day for massage, and is now the time for one?

The method asks for a few things before a session that no device can measure, so
the person says them, every time, whichever way the session is started (the
command line asks on a terminal or takes a flag; the daemon's run request, from
the control socket or MQTT, carries a field):

- **well today**: "if you feel unwell, it is better to postpone the procedure"
  (the method). Always asked (simulated sessions too: they play the same flow);
- **the caution**: a profile flagged for complex osteochondrosis is shown the
  method's caution that hardware massage does not suit every such case, and must
  accept it;
- **the spacing**: a real session earlier than the course's spacing (every 1-3
  days), or within the rest time after the last real session (10-15 minutes),
  needs an explicit override (controller.courses.spacing_warnings). Simulated
  sessions neither need it nor count.

A contraindication recorded for today (controller.profiles.ForToday) postpones
the session outright: no confirmation overrides it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from controller.courses import spacing_warnings
from controller.errors import StoreError
from devices.errors import SafetyError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The profile and store layers are imported where they are used: `massaged run`
# registers its flags from Confirm, and must not pay pydantic's start-up for it.
if TYPE_CHECKING:
    from controller.profiles import Profile
    from controller.store import Store

logger = logging.getLogger(__name__)


class Confirm(StrEnum):
    """What a person may confirm before a session; the value is the run request's field."""

    WELL_TODAY = "well_today"
    ACCEPT_CAUTION = "accept_caution"
    OVERRIDE_SPACING = "override_spacing"


FLAGS: dict[Confirm, str] = {
    Confirm.WELL_TODAY: "--well",
    Confirm.ACCEPT_CAUTION: "--accept-caution",
    Confirm.OVERRIDE_SPACING: "--override-spacing",
}
"""The command line's flag for each confirmation."""


@dataclass(frozen=True, slots=True)
class Question:
    """One thing to confirm before this session: why, and the question to ask."""

    confirm: Confirm
    reason: str
    """Why it is asked, one line (shown before the question, and in a refusal)."""
    prompt: str
    """The yes/no question for a terminal."""

    @property
    def flag(self) -> str:
        """The command line's flag that answers it."""
        return FLAGS[self.confirm]


def postponement(profile: Profile, today: date | None = None) -> str | None:
    """Why the session is postponed today (a contraindication recorded for today), or None."""
    from controller.profiles import contraindication_message

    items = profile.today_contraindications(today)
    if not items:
        return None
    reasons = "; ".join(contraindication_message(c) for c in sorted(items, key=str))
    return (
        f"postponed: for today, profile {profile.name!r} records {reasons}. "
        "Try again another day (massaged profiles set "
        f"{profile.name} --clear-today once it no longer applies)"
    )


def questions(
    profile: Profile,
    store: Store | None,
    *,
    simulated: bool,
    now: datetime | None = None,
) -> list[Question]:
    """What must be confirmed before a session of this profile starts now, in order."""
    who = "you are" if profile.name == "default" else f"{profile.name} is"
    asked = [
        Question(
            Confirm.WELL_TODAY,
            "the method: if you feel unwell, it is better to postpone the session",
            f"Is it true that {who} well today (no fever, no illness coming on)?",
        )
    ]
    if profile.complex_osteochondrosis:
        from controller.profiles import OSTEOCHONDROSIS_CAUTION

        asked.append(
            Question(
                Confirm.ACCEPT_CAUTION,
                f"profile {profile.name!r} has complex osteochondrosis: {OSTEOCHONDROSIS_CAUTION}",
                "Go ahead all the same?",
            )
        )
    if not simulated and store is not None:
        try:
            early = spacing_warnings(store, profile.name, now=now)
        except StoreError as err:
            # The massage never depends on the history: without it, nothing to compare.
            logger.warning("the course's spacing is not checked: %s", err)
            early = []
        if early:
            asked.append(
                Question(
                    Confirm.OVERRIDE_SPACING,
                    "too early: " + "; ".join(early),
                    "Start anyway?",
                )
            )
    return asked


def check_ready(
    profile: Profile,
    store: Store | None,
    confirmed: Callable[[Confirm], bool],
    *,
    simulated: bool,
    now: datetime | None = None,
    field_hint: bool = True,
    wording: Callable[[Question], str] | None = None,
) -> list[Question]:
    """SafetyError naming what is missing, unless the session may start; the questions
    that were confirmed (to show them).

    confirmed tells whether a confirmation was given; field_hint names the request's
    field in a refusal (the daemon) rather than only the command line's flag; wording,
    when given, words the refusal instead (a Python caller names its own argument).
    """
    moment = now if now is not None else datetime.now(UTC)
    postponed = postponement(profile, moment.astimezone().date())
    if postponed is not None:
        raise SafetyError(postponed)
    asked = questions(profile, store, simulated=simulated, now=moment)
    for question in asked:
        if not confirmed(question.confirm):
            if wording is not None:
                raise SafetyError(wording(question))
            raise SafetyError(refusal(question, field_hint=field_hint))
    return asked


def refusal(question: Question, *, field_hint: bool = True) -> str:
    """The one-line refusal for an unconfirmed question, naming how to confirm it."""
    how = f"add {question.flag}"
    if field_hint:
        how = f'put "{question.confirm.value}": true in the run request (command line: {how})'
    return f"not started: {question.reason}; to confirm, {how}"
