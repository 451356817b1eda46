"""Property tests: any valid program renders, and every cue stays within its device's range."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devices.capabilities import Capabilities, DeviceKind, Side, belt_motors
from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput
from programs.model import (
    CHILD_MAX_INTENSITY,
    MAX_SESSION_MIN,
    MIN_STEP_S,
    PILLOW_ZONES,
    REPETITION_S,
    Audience,
    Program,
    StepSide,
    Technique,
    Zone,
)
from programs.movements import MIN_PAUSE_S, count_in, counted_channels, movements, plan_series
from programs.render import default_devices, render
from programs.render_butterfly import NOMINAL_MAX_STRENGTH
from programs.render_common import REST_S

intensities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def steps(draw: st.DrawFn, audience: Audience) -> dict[str, Any]:
    technique = draw(st.sampled_from(Technique))
    zone = draw(st.sampled_from(Zone))
    step: dict[str, Any] = {
        "technique": technique.value,
        "zone": zone.value,
        "side": draw(st.sampled_from(StepSide)).value,
    }
    longest = 15.0 if technique is Technique.VIBRATION else 120.0
    if draw(st.booleans()):
        most = int(longest // REPETITION_S[technique])
        step["repetitions"] = draw(st.integers(min_value=1, max_value=max(1, min(most, 12))))
    else:
        step["duration_s"] = draw(
            st.floats(min_value=MIN_STEP_S, max_value=longest, allow_nan=False)
        )
    top = CHILD_MAX_INTENSITY if audience is Audience.CHILD else 1.0
    level = st.floats(min_value=0.0, max_value=top, allow_nan=False)
    if technique is not Technique.REST:
        if draw(st.booleans()):
            step["intensity"] = draw(level)
        else:
            a, b = draw(level), draw(level)
            if technique is Technique.PRESSING:
                a, b = min(a, b), max(a, b)
            step["start_intensity"], step["end_intensity"] = a, b
        step["heat"] = draw(st.booleans())
    kinds = draw(st.none() | st.lists(st.sampled_from(DeviceKind), min_size=1, unique=True))
    if kinds is not None:
        if set(kinds) == {DeviceKind.PILLOW} and zone not in PILLOW_ZONES:
            kinds.append(DeviceKind.BELT)
        step["devices"] = [k.value for k in kinds]
    return step


@st.composite
def programs(draw: st.DrawFn) -> Program:
    audience = draw(st.sampled_from(Audience))
    chosen = draw(st.lists(steps(audience), min_size=1, max_size=6))
    total = sum(
        s.get("duration_s") or s["repetitions"] * REPETITION_S[Technique(s["technique"])]
        for s in chosen
    )
    assume(total <= MAX_SESSION_MIN[audience] * 60)
    return Program.model_validate(
        {
            "id": "random",
            "title": "Random",
            "audience": audience.value,
            "max_duration": MAX_SESSION_MIN[audience],
            "description": "d",
            "cites": "c",
            "steps": chosen,
        }
    )


@st.composite
def device_sets(draw: st.DrawFn) -> dict[str, Capabilities]:
    devices = default_devices()
    belt = devices["belt"].model_copy(
        update={"motors": belt_motors(draw(st.sampled_from([4, 6]))), "heater": draw(st.booleans())}
    )
    chosen = {"belt": belt, "pillow": devices["pillow"], "butterfly": devices["butterfly"]}
    names = draw(st.lists(st.sampled_from(sorted(chosen)), min_size=1, unique=True))
    return {name: chosen[name] for name in names}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=programs(),
    devices=device_sets(),
    painful=st.sampled_from([None, Side.LEFT, Side.RIGHT, Side.BOTH]),
)
def test_random_programs_render_within_device_ranges(
    program: Program, devices: dict[str, Capabilities], painful: Side | None
) -> None:
    plan = render(program, devices, painful_side=painful)
    assert (
        plan.duration == program.total_duration
        or abs(plan.duration - program.total_duration) < 0.01
    )
    for name, timeline in plan.timelines.items():
        caps = devices[name]
        cues = timeline.cues
        assert cues[0].t == 0
        assert cues[-1].output.is_zero
        assert abs(cues[-1].t - plan.duration) < 0.01
        assert all(a.t <= b.t for a, b in itertools.pairwise(cues))
        for cue in cues:
            assert 0 <= cue.t <= plan.duration + 0.01
            assert 0 <= cue.step < len(program.steps)
            out = cue.output
            if caps.kind is DeviceKind.BELT:
                assert isinstance(out, BeltOutput)
                assert len(out.levels) == len(caps.motors)
                assert all(0 <= v <= 255 for v in out.levels)
                assert caps.heater or not out.heat
            elif caps.kind is DeviceKind.PILLOW:
                assert isinstance(out, PillowOutput)
                assert caps.kneading is not None
                assert 0 <= out.speed <= caps.kneading.max_speed
                assert out.direction in caps.kneading.directions
            else:
                assert isinstance(out, ButterflyOutput)
                for ch in (out.a, out.b):
                    assert 0 <= ch.strength <= NOMINAL_MAX_STRENGTH
                    assert 10 <= ch.frequency <= 240
                    assert 0 <= ch.intensity <= 100
        if caps.kind is DeviceKind.BUTTERFLY:
            for a, b in itertools.pairwise(cues):
                assert isinstance(a.output, ButterflyOutput)
                assert isinstance(b.output, ButterflyOutput)
                for x, y in ((a.output.a, b.output.a), (a.output.b, b.output.b)):
                    assert y.strength - x.strength <= 5
        for cue in cues[:-1]:
            step = program.steps[cue.step]
            if step.technique is Technique.REST or (
                step.devices is not None and caps.kind not in step.devices
            ):
                assert cue.output.is_zero


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=programs(),
    devices=device_sets(),
    painful=st.sampled_from([None, Side.LEFT, Side.RIGHT, Side.BOTH]),
)
def test_random_programs_play_one_movement_per_repetition(
    program: Program, devices: dict[str, Capabilities], painful: Side | None
) -> None:
    plan = render(program, devices, painful_side=painful)
    for timeline in plan.timelines.values():
        for channel in counted_channels(timeline):
            series = plan_series(timeline, channel)
            found = movements(series, end=plan.duration)
            readable = True
            for span, step in zip(plan.steps, program.steps, strict=True):
                inside = [v for t, v in series if span.start <= t < span.end]
                want = step.movement_count if any(inside) else 0
                got = count_in(found, span.start, span.end)
                # A movement at (nearly) zero intensity cannot be felt nor counted, and
                # one whose rest (or the step before's) is shorter than a pause reads
                # as part of its neighbour: a step of a second or less.
                weakest = min(step.intensity_at(0), step.intensity_at(1))
                if step.side is StepSide.TO_PAINFUL:
                    weakest /= step.movement_count + 1
                if step.technique is Technique.VIBRATION and step.repetitions is None:
                    rest = min(REST_S, step.duration / 2)
                else:
                    rest = REST_S * step.duration / max(1, step.movement_count)
                    rest /= REPETITION_S[step.technique]
                readable_now = rest >= MIN_PAUSE_S or step.technique is Technique.REST
                if weakest >= 0.05 and readable and readable_now:
                    assert got == want
                else:
                    assert got <= want
                readable = readable_now
                # every step ends at zero on every vibrating and EMS output
                after = [v for t, v in series if t <= span.end - 1e-3]
                assert after[-1] == 0
