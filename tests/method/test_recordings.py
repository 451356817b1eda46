"""The method in the body: every built-in program, read back from the simulator's recording.

Each program plays on a simulated belt, pillow and butterfly through the
session runner, the safety layer and the real drivers (tests/method/recorded.py),
for an adult, for a profile with pain on one side, and for a child (a
program longer than a child's 15 minutes must be refused up front). Per
step, the recording must show: the step's count of movements on every
output it plays and none elsewhere (programs/movements.py, the same counter
as the plan's), no vibration longer than 15 s without a 3 s rest
(programs/bursts.py), nothing above the step's nominal peak or the
profile's cap, and every vibrating and EMS output back at zero when the
step ends.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable

import pytest

from devices.capabilities import DeviceKind, EmsChannel, Side
from devices.errors import SafetyError
from programs.bursts import MAX_BURST_S, bursts
from programs.library import builtin_ids, builtin_paths, get
from programs.model import Program, Technique
from programs.movements import Movement, count_in, counted_channels, movements, plan_series
from programs.render_butterfly import strength_for
from programs.render_pillow import speed_for
from programs.timeline import StepSpan
from tests.method.recorded import PROFILES, Recorded, play_recorded, recorded

# One worker plays each recording once for both files (recorded() keeps them per process).
pytestmark = pytest.mark.xdist_group("method-recordings")

CHILD_S = 15 * 60


def total_duration(program_id: str) -> float:
    """A built-in's length, read without the loader's plan checks: these cost seconds and
    collection runs in every xdist worker (the tests themselves load the program fully)."""
    text = builtin_paths()[program_id].read_text()
    return Program.model_validate(tomllib.loads(text)).total_duration


CASES = [
    (program_id, profile)
    for program_id in builtin_ids()
    for profile in PROFILES
    if profile != "child" or total_duration(program_id) <= CHILD_S
]


def value_at(series: list[tuple[float, float]], t: float) -> float:
    """A step function's value at time t."""
    value = 0.0
    for when, v in series:
        if when > t:
            break
        value = v
    return value


def plays(series: list[tuple[float, float]], span: StepSpan) -> bool:
    """Whether the plan (its series for one channel) puts anything out during a step."""
    before = value_at(series, span.start)
    inside = [v for t, v in series if span.start <= t < span.end]
    return any(v > 0 for v in [before, *inside])


def recorded_movements(rec: Recorded, device: str, channel: str) -> list[Movement]:
    return movements(rec.series(device, channel), end=rec.plan.duration + 5)


def counted(rec: Recorded) -> list[tuple[str, str]]:
    """(device, channel) of every output whose movements count: belt motors, EMS outputs."""
    return [
        (name, channel)
        for name in rec.devices
        for channel in counted_channels(rec.plan.timelines[name])
    ]


@pytest.mark.parametrize(("program_id", "profile"), CASES)
def test_each_step_plays_its_count_in_bursts_under_its_ceiling_and_ends_at_zero(
    program_id: str, profile: str
) -> None:
    program = get(program_id).program
    rec = recorded(program_id, profile)
    assert rec.result.reason == "completed"
    end = rec.plan.duration
    for device, channel in counted(rec):
        plan = plan_series(rec.plan.timelines[device], channel)  # once: it is costly
        planned = movements(plan, end=end)
        found = recorded_movements(rec, device, channel)
        series = rec.series(device, channel)
        for span, step in zip(rec.plan.steps, program.steps, strict=True):
            where = (
                f"{program_id}/{profile}: step {span.index + 1} ({span.label}) {device}.{channel}"
            )
            want = step.movement_count if plays(plan, span) else 0
            # the count: the plan and the recording, read by one counter
            assert count_in(planned, span.start, span.end) == want, where
            assert count_in(found, span.start, span.end) == want, where
            # the end at zero: every movement ends with a rest, so every step does
            assert value_at(series, span.end - 0.05) == 0, where
        if device == "belt":
            # the longest continuous vibration, whatever the step is called
            longest = max((b.length for b in bursts(series, end=end + 5)), default=0.0)
            assert longest <= MAX_BURST_S, f"{program_id}/{profile}: {channel} {longest:.1f} s"
    check_ceilings(program, rec, f"{program_id}/{profile}")
    if profile == "child":
        # a child's rules come from the profile, whatever the program: never EMS
        ems = [r for r in rec.rows if r["kind"] == "butterfly" and r["channel"].startswith("out")]
        assert not any(r["value"] for r in ems)
    # and the session ends with everything at zero, pillow and heaters included
    last: dict[tuple[str, str], object] = {}
    for row in rec.rows:
        last[(row["device"], row["channel"])] = row["value"]
    assert all(v in (0, "clockwise", "counter_clockwise", "auto_reverse") for v in last.values())


def check_ceilings(program: Program, rec: Recorded, what: str) -> None:
    """Nothing above a step's nominal peak, nor above the profile's cap for the device."""
    caps = rec.limits.caps
    channel = EmsChannel(name="A", side=Side.LEFT)

    def belt(p: float) -> float:
        return min(math.floor(caps.for_kind(DeviceKind.BELT) * 255 + 1e-9), round(p * 255))

    def ems(p: float) -> float:
        cap = math.floor(caps.for_kind(DeviceKind.BUTTERFLY) * 200 + 1e-9)
        return min(cap, strength_for(p, channel))

    def pillow(p: float) -> float:
        return min(math.floor(caps.for_kind(DeviceKind.PILLOW) * 3 + 1e-9), speed_for(p, 3))

    channels: dict[str, tuple[list[str], Callable[[float], float]]] = {
        "belt": ([f"motor{i}" for i in range(1, 7)], belt),
        "butterfly": (["strength_a", "strength_b"], ems),
        "pillow": (["speed"], pillow),
    }
    for device, (names, ceiling) in channels.items():
        if device not in rec.devices:
            continue
        for name in names:
            series = rec.series(device, name)
            for span, step in zip(rec.plan.steps, program.steps, strict=True):
                # a hair in: the output of the step before may still be fading out
                inside = [v for t, v in series if span.start + 0.3 <= t < span.end]
                top = ceiling(step.peak_intensity) if step.technique is not Technique.REST else 0
                assert max(inside, default=0) <= top, f"{what}: step {span.index + 1} {name}"


@pytest.mark.parametrize(
    "program_id",
    [p for p in builtin_ids() if total_duration(p) > CHILD_S],
)
def test_a_program_longer_than_a_childs_session_is_refused_up_front(program_id: str) -> None:
    # Refused before anything moves, the child's program named, never cut in the middle.
    with pytest.raises(SafetyError, match="collar-zone-child"):
        play_recorded(get(program_id).program, PROFILES["child"])
