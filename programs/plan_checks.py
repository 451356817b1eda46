"""Rules checked on the rendered plan: what the devices would do, not what the steps are called.

Every technique vibrates on a belt, so the vibration rule (programs/bursts.py:
no motor above zero for more than 15 s without a 2 s rest) is checked on the
belt's rendered timeline: on a 6- and a 4-motor belt, and for every painful
side a profile may have (a healthy-then-painful pair plays on both sides at
once when both hurt, which can join two bursts into one).
"""

from __future__ import annotations

import functools
import logging
from typing import Final

from devices.capabilities import Capabilities, DeviceKind, Side, belt_motors
from programs.bursts import MAX_BURST_S, MIN_REST_S, bursts
from programs.model import Program, ProgramIssue, StepSide, fmt_number
from programs.movements import plan_channels, plan_series
from programs.render import render_device, step_spans
from programs.render_common import EPS

logger = logging.getLogger(__name__)

BELT_MOTORS: Final = (6, 4)
"""The VB1 belts a program may play on."""


@functools.cache
def belt_caps(count: int) -> Capabilities:
    """The capabilities of a VB1 belt with count motors, made once (on first use: making
    them builds the models' validators, which an import that checks nothing need not pay)."""
    return Capabilities(kind=DeviceKind.BELT, model="VB1", motors=belt_motors(count))


_SIDED: Final = frozenset({StepSide.HEALTHY, StepSide.PAINFUL, StepSide.TO_PAINFUL, StepSide.BOTH})
"""Steps whose render depends on the painful side: healthy/painful resolve from it, and a
step on both sides works the healthy one first (with the pain on the left, the right
first: after steps on the right, that can join two bursts into one)."""

_PAIN_WORDS: Final[dict[Side | None, str]] = {
    None: "",
    Side.LEFT: " with the pain on the left",
    Side.RIGHT: " with the pain on the right",
    Side.BOTH: " with the pain on both sides",
}


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def burst_issues(program: Program) -> list[ProgramIssue]:
    """One issue per step in which a belt motor passes 15 s of vibration without a rest."""
    return list(_burst_issues(program))


@functools.lru_cache(maxsize=64)
def _burst_issues(program: Program) -> tuple[ProgramIssue, ...]:
    """burst_issues, kept by program: a program is immutable and its check costs renders.

    The daemon checks the same program more than once: the web page's check, then its
    save, and every listing of the programs loads the user's files again.
    """
    spans = step_spans(program)
    if not spans:
        return ()
    end = spans[-1].end
    sided = any(step.side in _SIDED for step in program.steps)
    # Pain on the right plays exactly as no pain known (programs/render_common.py: with
    # none known the healthy side is the left), so its bursts are those of None, already
    # reported: it is not rendered again (tests/programs/test_fast_paths.py checks it).
    pains: tuple[Side | None, ...] = (None, Side.LEFT, Side.BOTH) if sided else (None,)
    found: dict[int, ProgramIssue] = {}
    for count in BELT_MOTORS:
        caps = belt_caps(count)
        for pain in pains:
            timeline = render_device(program, "belt", caps, spans, painful_side=pain)
            channels = plan_channels(timeline)
            for motor in caps.motors:
                channel = f"motor{motor.index}"
                series = channels.get(channel) or plan_series(timeline, channel)
                for burst in bursts(series, end=end):
                    if burst.length <= MAX_BURST_S + EPS:
                        continue
                    passed = burst.start + MAX_BURST_S
                    span = next(s for s in spans if s.start - EPS <= passed < s.end + EPS)
                    if span.index in found:
                        continue
                    step = program.steps[span.index]
                    where = f"{motor.place.value} {motor.side.value}"
                    found[span.index] = ProgramIssue(
                        message=(
                            f"the belt's motor {motor.index} ({where}) would vibrate for "
                            f"{fmt_number(round(burst.length, 1))} s from {_clock(burst.start)} "
                            f"without {fmt_number(MIN_REST_S)} s at rest{_PAIN_WORDS[pain]}; "
                            f"vibration may last at most {fmt_number(MAX_BURST_S)} s at a time: "
                            "shorten the step or put a rest step before it"
                        ),
                        step=span.index,
                        technique=step.technique.value,
                        field="duration_s" if step.duration_s is not None else "repetitions",
                    )
    return tuple(found[i] for i in sorted(found))
