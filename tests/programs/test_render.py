"""Rendering programs onto devices: patterns, zones, sides, device lists, the shared time axis."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from devices.capabilities import (
    Capabilities,
    DeviceKind,
    EmsChannel,
    KneadDirection,
    Place,
    Side,
    belt_motors,
)
from devices.outputs import BeltOutput, ButterflyOutput, PillowOutput
from programs.library import builtin_ids, get
from programs.model import Program, Zone
from programs.render import default_devices, render
from programs.render_butterfly import NOMINAL_MAX_STRENGTH
from programs.render_pillow import AUTO_OFF_S
from programs.timeline import Cue, SessionPlan

EMS_ZONES = {Zone.NECK.value, Zone.SHOULDERS.value, Zone.UPPER_BACK.value, Zone.COLLAR_ZONE.value}


def make(*steps: dict[str, Any], audience: str = "adult", max_duration: float = 30) -> Program:
    return Program.model_validate(
        {
            "id": "test",
            "title": "Test",
            "audience": audience,
            "max_duration": max_duration,
            "description": "d",
            "cites": "c",
            "steps": list(steps),
        }
    )


def step(technique: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"technique": technique}
    if technique != "rest":
        base["intensity"] = 0.5
    if "repetitions" not in fields and "duration_s" not in fields:
        base["duration_s"] = 10
    return base | fields


def cues_in(plan: SessionPlan, device: str, index: int) -> list[Cue]:
    """The cues of one step (not the final zero cue at the session's end)."""
    end = plan.steps[index].end
    return [c for c in plan.timelines[device].cues if c.step == index and c.t < end]


def belt_levels(cues: list[Cue]) -> list[tuple[int, ...]]:
    out = []
    for c in cues:
        assert isinstance(c.output, BeltOutput)
        out.append(c.output.levels)
    return out


def butterflies(cues: list[Cue]) -> list[ButterflyOutput]:
    out = []
    for c in cues:
        assert isinstance(c.output, ButterflyOutput)
        out.append(c.output)
    return out


@pytest.fixture(scope="module")
def builtin_plans() -> dict[str, SessionPlan]:
    return {pid: render(get(pid).program) for pid in builtin_ids()}


def test_steps_are_placed_end_to_end(builtin_plans: dict[str, SessionPlan]) -> None:
    for pid, plan in builtin_plans.items():
        program = get(pid).program
        assert plan.steps[0].start == 0
        for a, b in zip(plan.steps, plan.steps[1:], strict=False):
            assert a.end == b.start
        assert plan.duration == pytest.approx(program.total_duration)
        assert set(plan.timelines) == {"belt", "pillow", "butterfly"}


def test_every_timeline_ends_at_zero_at_the_end(builtin_plans: dict[str, SessionPlan]) -> None:
    for plan in builtin_plans.values():
        for timeline in plan.timelines.values():
            last = timeline.cues[-1]
            assert last.t == pytest.approx(plan.duration)
            assert last.output.is_zero
            assert all(c.t <= plan.duration for c in timeline.cues)
            assert timeline.cues[0].t == 0


def test_belt_stroke_is_a_wave_from_neck_to_shoulders() -> None:
    plan = render(get("collar-zone").program)
    first = [c for c in cues_in(plan, "belt", 0) if c.t < 5.0]  # the first stroke
    peak_time: dict[int, float] = {}
    for motor in (0, 2, 4):  # motors 1, 3, 5: neck, shoulder, upper back (left)
        best = max(first, key=lambda c: (c.output.levels[motor], -c.t))  # type: ignore[union-attr]
        peak_time[motor] = best.t
    assert peak_time[0] < peak_time[2] < peak_time[4]
    # overlapping: the shoulder starts before the neck has faded out
    overlap = [levels for levels in belt_levels(first) if levels[0] and levels[2]]
    assert overlap


@pytest.mark.parametrize(
    ("side", "silent_motors", "silent_channel"),
    [("left", (1, 3, 5), "b"), ("right", (0, 2, 4), "a")],
)
def test_sides_are_respected(
    side: str, silent_motors: tuple[int, ...], silent_channel: str
) -> None:
    techniques = ["stroking", "rubbing", "pressing", "kneading", "circular", "vibration", "tapping"]
    plan = render(make(*(step(t, side=side) for t in techniques)))
    for levels in belt_levels(plan.timelines["belt"].cues):
        assert all(levels[m] == 0 for m in silent_motors)
    played = [lv for lv in belt_levels(plan.timelines["belt"].cues) if any(lv)]
    assert played
    for out in butterflies(plan.timelines["butterfly"].cues):
        assert getattr(out, silent_channel).is_zero
    # the pillow cannot do one side, so it rests rather than work the other side too
    assert all(c.output.is_zero for c in plan.timelines["pillow"].cues)


def test_zones_pick_the_motors() -> None:
    plan = render(make(step("kneading", zone="shoulders"), step("vibration", zone="upper_back")))
    for levels in belt_levels(cues_in(plan, "belt", 0)):
        assert levels[0] == levels[1] == levels[4] == levels[5] == 0
    assert any(levels[2] for levels in belt_levels(cues_in(plan, "belt", 0)))
    played = {lv for lv in belt_levels(cues_in(plan, "belt", 1)) if any(lv)}
    assert played == {(0, 0, 0, 0, 128, 128)}
    # the pillow only reaches the neck
    assert all(c.output.is_zero for c in plan.timelines["pillow"].cues)


def test_four_motor_belt_rests_on_the_upper_back() -> None:
    devices = default_devices()
    devices["belt"] = devices["belt"].model_copy(update={"motors": belt_motors(4)})
    plan = render(make(step("kneading", zone="upper_back")), devices)
    assert all(c.output.is_zero for c in plan.timelines["belt"].cues)
    assert all(len(c.output.levels) == 4 for c in plan.timelines["belt"].cues)  # type: ignore[union-attr]


def test_butterfly_only_plays_back_of_neck_shoulders_upper_back(
    builtin_plans: dict[str, SessionPlan],
) -> None:
    # There is no front-of-neck zone at all: "neck" is the back of the neck.
    assert {z.value for z in Zone} == EMS_ZONES
    for plan in builtin_plans.values():
        for cue in plan.timelines["butterfly"].cues:
            if not cue.output.is_zero:
                assert plan.steps[cue.step].zone in EMS_ZONES


def test_butterfly_channels_follow_their_pad_places() -> None:
    pads_on_shoulders = Capabilities(
        kind=DeviceKind.BUTTERFLY,
        model="EB1",
        ems_channels=(
            EmsChannel(name="A", side=Side.LEFT, places=(Place.SHOULDER,)),
            EmsChannel(name="B", side=Side.RIGHT, places=(Place.SHOULDER,)),
        ),
    )
    program = make(step("kneading", zone="neck"), step("kneading", zone="shoulders"))
    plan = render(program, {"ems": pads_on_shoulders})
    assert all(c.output.is_zero for c in cues_in(plan, "ems", 0))
    assert any(not c.output.is_zero for c in cues_in(plan, "ems", 1))


def test_butterfly_contracts_and_relaxes_modestly_and_smoothly() -> None:
    plan = render(make(step("kneading", intensity=1.0, duration_s=30), step("rest")))
    outs = butterflies(plan.timelines["butterfly"].cues)
    strengths = [max(o.a.strength, o.b.strength) for o in outs]
    assert max(strengths) == NOMINAL_MAX_STRENGTH
    waves = [o.a.intensity for o in outs]
    assert 100 in waves
    assert 0 in waves
    assert {o.a.frequency for o in outs if o.a.intensity} == {30}


def test_ems_strength_rises_at_most_5_per_100_ms(builtin_plans: dict[str, SessionPlan]) -> None:
    plans = [*builtin_plans.values(), render(make(step("vibration", intensity=1.0)))]
    for plan in plans:
        cues = plan.timelines["butterfly"].cues
        for before, after in itertools.pairwise(cues):
            a, b = before.output, after.output
            assert isinstance(a, ButterflyOutput)
            assert isinstance(b, ButterflyOutput)
            for x, y in ((a.a, b.a), (a.b, b.b)):
                if y.strength > x.strength:
                    assert y.strength - x.strength <= 5
                    assert after.t - before.t >= 0.1 - 1e-6


def test_devices_list_is_respected() -> None:
    plan = render(make(step("kneading", zone="neck", devices=["pillow"]), step("kneading")))
    assert all(c.output.is_zero for c in cues_in(plan, "belt", 0))
    assert all(c.output.is_zero for c in cues_in(plan, "butterfly", 0))
    assert not cues_in(plan, "pillow", 0)[0].output.is_zero
    for device in ("belt", "pillow", "butterfly"):
        assert any(not c.output.is_zero for c in cues_in(plan, device, 1))


def test_rest_is_all_off() -> None:
    plan = render(make(step("kneading"), step("rest", duration_s=20), step("kneading")))
    for device in plan.timelines:
        assert all(c.output.is_zero for c in cues_in(plan, device, 1))


def test_heat_only_when_asked_and_fitted() -> None:
    program = make(step("stroking", heat=True), step("stroking"))
    plan = render(program)
    for device in ("belt", "pillow"):
        assert all(c.output.heat for c in cues_in(plan, device, 0))
        assert not any(c.output.heat for c in cues_in(plan, device, 1))
    devices = default_devices()
    devices["belt"] = devices["belt"].model_copy(update={"heater": False})
    plan = render(program, devices)
    assert not any(c.output.heat for c in plan.timelines["belt"].cues)


def test_pillow_speed_and_direction() -> None:
    plan = render(
        make(
            step("circular", zone="neck", intensity=0.9),
            step("kneading", zone="neck", intensity=0.2, duration_s=60),
        )
    )
    circular = [c.output for c in cues_in(plan, "pillow", 0)]
    assert circular == [PillowOutput(3, KneadDirection.AUTO_REVERSE, False)]
    kneading = [c.output for c in cues_in(plan, "pillow", 1)]
    assert {o.speed for o in kneading} == {1}  # type: ignore[union-attr]
    assert {o.direction for o in kneading} == {  # type: ignore[union-attr]
        KneadDirection.CLOCKWISE,
        KneadDirection.COUNTER_CLOCKWISE,
    }


def test_pillow_without_auto_reverse_alternates() -> None:
    devices = default_devices()
    kneading = devices["pillow"].kneading
    assert kneading is not None
    devices["pillow"] = devices["pillow"].model_copy(
        update={
            "kneading": kneading.model_copy(
                update={"directions": (KneadDirection.CLOCKWISE, KneadDirection.COUNTER_CLOCKWISE)}
            )
        }
    )
    plan = render(make(step("circular", zone="neck", duration_s=60)), devices)
    directions = {c.output.direction for c in plan.timelines["pillow"].cues[:-1]}  # type: ignore[union-attr]
    assert directions == {KneadDirection.CLOCKWISE, KneadDirection.COUNTER_CLOCKWISE}


def test_pillow_pauses_before_its_auto_off() -> None:
    plan = render(make(step("kneading", zone="neck", duration_s=20 * 60, devices=["pillow"])))
    cues = plan.timelines["pillow"].cues
    run_start: float | None = None
    pauses = 0
    for cue in cues:
        if cue.output.is_zero:
            if run_start is not None:
                assert cue.t - run_start < AUTO_OFF_S
                pauses += 1
            run_start = None
        elif run_start is None:
            run_start = cue.t
    assert pauses == 2  # the pause before 15 min, and the end


def test_painful_side_ordering() -> None:
    program = get("cervical-osteochondrosis").program

    def first_side(plan: SessionPlan, index: int) -> str:
        played = [lv for lv in belt_levels(cues_in(plan, "belt", index)) if any(lv)]
        left = any(lv[0] or lv[2] or lv[4] for lv in played)
        right = any(lv[1] or lv[3] or lv[5] for lv in played)
        assert left != right
        return "left" if left else "right"

    # steps 0, 1, 2: healthy side, the transition, painful side
    default = render(program)
    assert [first_side(default, i) for i in (0, 2)] == ["left", "right"]
    pain_left = render(program, painful_side=Side.LEFT)
    assert [first_side(pain_left, i) for i in (0, 2)] == ["right", "left"]
    pain_right = render(program, painful_side=Side.RIGHT)
    assert [first_side(pain_right, i) for i in (0, 2)] == ["left", "right"]
    both = render(program, painful_side=Side.BOTH)
    played = [lv for lv in belt_levels(cues_in(both, "belt", 0)) if any(lv)]
    assert any(lv[0] for lv in played)
    assert any(lv[1] for lv in played)


def test_ramp_rises_through_the_step() -> None:
    plan = render(make(step("vibration", start_intensity=0.2, end_intensity=0.8, intensity=None)))
    levels = [lv[0] for lv in belt_levels(plan.timelines["belt"].cues[:-1]) if lv[0]]
    assert levels == sorted(levels)
    assert levels[0] < levels[-1]


def test_cue_at_follows_the_plan() -> None:
    plan = render(make(step("vibration", intensity=1.0), step("rest")))
    belt = plan.timelines["belt"]
    cue = belt.cue_at(5.0)
    assert cue is not None
    assert cue.output == BeltOutput((255,) * 6, heat=False)
    end = belt.cue_at(plan.duration)
    assert end is not None
    assert end.output.is_zero
    span = plan.step_at(12.0)
    assert span is not None
    assert span.technique == "rest"
