"""A repetition is one movement: the counter, and every plan counted back with it."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from typing import Any

import pytest

from devices.capabilities import Side, belt_motors
from programs.bursts import MIN_REST_S
from programs.library import builtin_ids, get
from programs.model import Program
from programs.movements import (
    MIN_PAUSE_S,
    count_in,
    counted_channels,
    movements,
    plan_series,
)
from programs.render import default_devices, render
from programs.timeline import SessionPlan


def make(*steps: dict[str, Any]) -> Program:
    return Program.model_validate(
        {
            "id": "test",
            "title": "Test",
            "audience": "adult",
            "max_duration": 30,
            "description": "d",
            "cites": "c",
            "steps": list(steps),
        }
    )


def test_a_movement_is_a_rise_a_peak_and_a_fall_back_to_rest() -> None:
    series = [(0.0, 0.0), (1.0, 50.0), (2.0, 120.0), (3.0, 40.0), (4.0, 0.0), (6.0, 90.0)]
    found = movements([*series, (7.0, 0.0)], end=10.0)
    assert [(m.start, m.peak_t, m.peak, m.end) for m in found] == [
        (1.0, 2.0, 120.0, 4.0),
        (6.0, 6.0, 90.0, 7.0),
    ]


def test_a_dip_shorter_than_a_pause_is_inside_one_movement() -> None:
    taps = [(t / 2, 100.0 if t % 2 == 0 else 0.0) for t in range(8)]  # 0.5 s on/off
    short = [(t * 0.5 + d, v) for t in range(4) for d, v in ((0.0, 100.0), (0.15, 0.0))]
    assert len(movements(short, end=10.0)) == 1  # 350 ms gaps: one tapping series
    assert MIN_PAUSE_S <= 0.5
    assert len(movements(taps, end=10.0)) == 4


def test_a_level_that_never_falls_to_rest_is_one_movement() -> None:
    # The finding: kneading swelled 12 times but never fell below 46/255.
    swells = [(t * 0.5, 46.0 + (t % 4) * 40.0) for t in range(120)]
    assert len(movements(swells, end=60.0)) == 1


def plans(program: Program) -> list[SessionPlan]:
    """The program on the preview devices and on a 4-motor belt, for every painful side."""
    devices = default_devices()
    four = dict(devices, belt=devices["belt"].model_copy(update={"motors": belt_motors(4)}))
    return [
        render(program, d, painful_side=pain)
        for d in (devices, four)
        for pain in (None, Side.LEFT, Side.RIGHT, Side.BOTH)
    ]


@pytest.mark.parametrize("program_id", builtin_ids())
def test_every_builtin_plan_counts_back_to_its_repetitions(program_id: str) -> None:
    program = get(program_id).program
    for plan in plans(program):
        for name, timeline in plan.timelines.items():
            for channel in counted_channels(timeline):
                series = plan_series(timeline, channel)
                found = movements(series, end=plan.duration)
                # A plan's series is in time order: a step's points are one slice of it.
                times = [t for t, _ in series]
                assert times == sorted(times)
                for span, step in zip(plan.steps, program.steps, strict=True):
                    got = count_in(found, span.start, span.end)
                    inside = series[bisect_left(times, span.start) : bisect_left(times, span.end)]
                    want = step.movement_count if any(v for _, v in inside) else 0
                    assert got == want, (name, channel, span.index)


def test_each_movement_falls_to_zero_and_rests_before_the_next() -> None:
    techniques = ["stroking", "rubbing", "pressing", "kneading", "circular", "tapping"]
    for side in ("both", "left"):
        for technique in techniques:
            plan = render(
                make({"technique": technique, "repetitions": 4, "intensity": 0.8, "side": side})
            )
            timeline = plan.timelines["belt"]
            for channel in counted_channels(timeline):
                found = movements(plan_series(timeline, channel), end=plan.duration)
                if not found:
                    continue
                assert len(found) == 4, (technique, side, channel)
                for a, b in itertools.pairwise(found):
                    assert b.start - a.end >= MIN_REST_S, (technique, side, channel)


def test_a_range_count_is_checked_and_shown() -> None:
    step = {"technique": "kneading", "repetitions": 6, "intensity": 0.5, "method_count": "5-7"}
    program = make(step)
    assert program.steps[0].describe_amount() == "6 kneadings × 10 s (method 5–7)"
    with pytest.raises(ValueError, match="outside the method's count 5-7"):
        make(step | {"repetitions": 8})
    with pytest.raises(ValueError, match="needs repetitions"):
        make({"technique": "kneading", "duration_s": 60, "intensity": 0.5, "method_count": "5-7"})
    timed = make({"technique": "rubbing", "duration_s": 40, "intensity": 0.5})
    assert timed.steps[0].movement_count == 6
    assert timed.steps[0].describe_amount() == "40 s: 6 rubs"
