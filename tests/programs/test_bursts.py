"""Vibration in bursts: on every belt motor, at most 15 s at a time, then at least 3 s at zero."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from controller.profiles import PainfulSide, Profile
from controller.safety import BURST_MAX_S, BURST_REST_S
from devices.capabilities import DeviceKind, Side
from programs.bursts import MAX_BURST_S, MIN_REST_S, Burst, bursts, longest_burst
from programs.errors import ProgramError
from programs.loader import validate_data
from programs.model import StepSide, Technique, Zone
from programs.movements import plan_series
from programs.render import render
from tests.method.recorded import play_recorded

MOTORS = [f"motor{i}" for i in range(1, 7)]


def data(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "mine",
        "title": "Mine",
        "audience": "adult",
        "max_duration": 30,
        "description": "d",
        "cites": "c",
        "steps": list(steps),
    }


def vibration(seconds: float, **fields: Any) -> dict[str, Any]:
    return {"technique": "vibration", "duration_s": seconds, "intensity": 0.8} | fields


def test_a_rest_shorter_than_the_minimum_does_not_end_a_burst() -> None:
    series = [(0.0, 100.0), (5.0, 0.0), (6.0, 80.0), (12.0, 0.0), (15.0, 90.0), (20.0, 0.0)]
    assert bursts(series, end=30.0) == [Burst(0.0, 12.0), Burst(15.0, 20.0)]
    # The loader and the safety layer hold programs to one rule.
    assert (MAX_BURST_S, MIN_REST_S) == (BURST_MAX_S, BURST_REST_S)
    assert longest_burst(series, end=30.0) == 12.0
    assert longest_burst([(0.0, 0.0)], end=30.0) == 0.0


def test_the_loader_refuses_continuous_vibration_naming_the_step() -> None:
    # Eight 3 s vibrations: each rests 1.5 s, too short to count, so 22.5 s in one go.
    with pytest.raises(ProgramError) as caught:
        validate_data(data(*(vibration(3) for _ in range(8))), source="mine.toml")
    message = str(caught.value)
    assert message.startswith("mine.toml: step 5 (vibration): duration_s: the belt's motor 1")
    assert "would vibrate for 22.5 s from 0:00 without 3 s at rest" in message
    (issue,) = caught.value.issues
    assert (issue.step, issue.field) == (4, "duration_s")


def test_the_loader_checks_rubbing_too_not_only_steps_named_vibration() -> None:
    rubs = [{"technique": "rubbing", "duration_s": 3, "intensity": 0.5} for _ in range(10)]
    with pytest.raises(ProgramError, match=r"step \d+ \(rubbing\): duration_s: the belt's motor"):
        validate_data(data(*rubs))


def test_the_loader_checks_pain_on_both_sides() -> None:
    # Healthy, then painful, short: with pain on one side each motor rests while the
    # other side works; with pain on both sides both play every step, with no rest.
    pair = [vibration(3, side="healthy"), vibration(3, side="painful")]
    with pytest.raises(ProgramError, match="with the pain on both sides"):
        validate_data(data(*pair * 4))


RIGHT_THEN_BOTH = data(
    *[
        {
            "technique": "stroking",
            "zone": "neck",
            "side": "right",
            "intensity": 1.0,
            "duration_s": 2.0,
        }
    ]
    * 6,
    {"technique": "kneading", "zone": "neck", "side": "both", "intensity": 1.0, "repetitions": 1},
)
"""Strokes on the right, then kneading on both sides (found by the property test below)."""


def test_the_loader_checks_the_order_of_a_step_on_both_sides() -> None:
    # A step on both sides works the healthy side first: with the pain on the left, the
    # right, straight after 12 s of strokes there (16.4 s in one go); with no pain known,
    # the left (a rest for the right). The loader tried only the latter.
    with pytest.raises(ProgramError, match=r"step 7 \(kneading\).* with the pain on the left"):
        validate_data(RIGHT_THEN_BOTH)


def test_three_15_s_vibrations_in_a_row_play_as_bursts_with_rests() -> None:
    # The finding: three 15 s vibration steps validated and ran 44.9 s without a pause.
    program = validate_data(data(vibration(15), vibration(15), vibration(15)))
    plan = render(program)
    belt = plan.timelines["belt"]
    for motor in MOTORS:
        found = bursts(plan_series(belt, motor), end=plan.duration)
        assert len(found) == 3
        assert all(b.length <= MAX_BURST_S for b in found)
        assert all(b.start - a.end >= MIN_REST_S for a, b in itertools.pairwise(found))
    rec = play_recorded(program, Profile())
    for motor in MOTORS:
        assert longest_burst(rec.series("belt", motor), end=plan.duration + 5) <= MAX_BURST_S


@st.composite
def user_steps(draw: st.DrawFn) -> dict[str, Any]:
    """One step of a user's program; short ones often."""
    technique = draw(st.sampled_from([t for t in Technique if t is not Technique.REST]))
    step: dict[str, Any] = {
        "technique": technique.value,
        "zone": draw(st.sampled_from(Zone)).value,
        "side": draw(st.sampled_from(StepSide)).value,
        "intensity": draw(st.floats(min_value=0.05, max_value=1.0)),
    }
    if draw(st.booleans()):
        step["repetitions"] = draw(st.integers(min_value=1, max_value=3))
    else:
        longest = 15.0 if technique is Technique.VIBRATION else 40.0
        short = st.floats(min_value=0.5, max_value=6.0)
        step["duration_s"] = draw(short | st.floats(min_value=0.5, max_value=longest))
    if draw(st.booleans()):
        step["devices"] = [DeviceKind.BELT.value]
    return step


@st.composite
def user_programs(draw: st.DrawFn) -> dict[str, Any]:
    """User programs: a few steps, each often copied a few times in a row (the hard case)."""
    chosen: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        chosen += [draw(user_steps())] * draw(st.integers(min_value=1, max_value=8))
    return data(*chosen)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=user_programs(), pain=st.sampled_from(PainfulSide))
@example(raw=RIGHT_THEN_BOTH, pain=PainfulSide.LEFT)
def test_no_program_the_loader_accepts_vibrates_over_15_s_in_the_recording(
    raw: dict[str, Any], pain: PainfulSide
) -> None:
    try:
        program = validate_data(raw)
    except ProgramError:
        assume(False)
        return
    # What the plan asks (the loader's promise) ...
    side = {PainfulSide.LEFT: Side.LEFT, PainfulSide.RIGHT: Side.RIGHT}.get(pain)
    plan = render(program, painful_side=side)
    for motor in MOTORS:
        series = plan_series(plan.timelines["belt"], motor)
        assert longest_burst(series, end=plan.duration) <= MAX_BURST_S
    # ... and what the belt physically did (the loader's and the safety layer's).
    rec = play_recorded(program, Profile(painful_side=pain))
    end = rec.plan.duration + 5
    for motor in MOTORS:
        assert longest_burst(rec.series("belt", motor), end=end) <= MAX_BURST_S
