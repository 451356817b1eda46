"""The plan readers' column fast paths give exactly what the plain code gives.

programs/movements.py reads a belt's channel straight from its levels
(plan_series) and every channel of a one-belt timeline a column at a time
(plan_channels). Each is checked here against the plain code it replaced (kept
below as the reference), on timelines made to hit every branch: mixed motor
counts, mixed kinds, odd channel names, repeated and shared outputs. The built-in
and random programs are compared in tests/programs/test_fast_paths.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from programs.movements import Series, output_value, plan_channels, plan_series
from programs.plan_checks import belt_caps
from programs.timeline import Cue, DeviceTimeline

# -- the reference: the plain code the fast paths replaced ---------------------------


def ref_plan_series(timeline: DeviceTimeline, channel: str) -> Series:
    return [(cue.t, output_value(cue.output, channel)) for cue in timeline.cues]


def ref_plan_channels(timeline: DeviceTimeline) -> dict[str, Series]:
    cues = timeline.cues
    for cue in cues:
        output_value(cue.output, "motor1")  # raises on a kind without movements, in cue order
    found: dict[str, Series] = {}
    for i, cue in enumerate(cues):
        felt = cue.output.felt()
        for name, value in felt:
            series = found.get(name)
            if series is None:
                series = found[name] = [(before.t, 0.0) for before in cues[:i]]
            series.append((cue.t, value))
        if len(felt) != len(found):
            for series in found.values():
                if len(series) <= i:
                    series.append((cue.t, 0.0))
    return found


CHANNELS = [
    *(f"motor{i}" for i in range(0, 20)),
    "motor01",
    "motor",
    "motor-1",
    "motor\u0661",  # a decimal digit that is not ASCII: not a motor name
    "motorx",
    "output_a",
    "output_b",
    "speed",
    "heater",
]


def _timeline(outputs: list[Output]) -> DeviceTimeline:
    return DeviceTimeline(
        device="belt",
        capabilities=belt_caps(6),
        cues=[Cue(t=i * 0.25, output=o, step=i // 3) for i, o in enumerate(outputs)],
    )


def _compare(outputs: list[Output]) -> None:
    timeline = _timeline(outputs)
    try:
        want = ref_plan_channels(timeline)
    except ValueError as err:
        with pytest.raises(ValueError, match=str(err)):
            plan_channels(timeline)
        return
    got = plan_channels(timeline)
    assert got == want
    assert list(got) == list(want)
    for channel in CHANNELS:
        assert plan_series(timeline, channel) == ref_plan_series(timeline, channel), channel


levels = st.integers(min_value=0, max_value=255)
belts = st.builds(
    BeltOutput,
    levels=st.one_of(
        st.tuples(*[levels] * 6),
        st.lists(levels, min_size=0, max_size=18).map(tuple),
    ),
    heat=st.booleans(),
)
ems = st.builds(
    EmsChannelOutput,
    strength=st.integers(0, 200),
    frequency=st.just(10),
    intensity=st.integers(0, 100),
)
butterflies = st.builds(ButterflyOutput, a=ems, b=ems)
pillows = st.builds(PillowOutput, speed=st.integers(0, 3))


@settings(max_examples=60, deadline=None)
@given(
    pool=st.lists(st.one_of(belts, belts, butterflies, pillows), min_size=1, max_size=5),
    picks=st.lists(st.integers(min_value=0, max_value=4), max_size=30),
)
def test_any_timeline_reads_as_the_reference(pool: list[Output], picks: list[int]) -> None:
    # Outputs drawn from a small pool: shared objects, as the renderers make them.
    _compare([pool[i % len(pool)] for i in picks])


@pytest.mark.parametrize(
    "outputs",
    [
        [],
        [BeltOutput(levels=(1, 2, 3, 4, 5, 6))] * 3,
        [BeltOutput(levels=()), BeltOutput(levels=())],
        [BeltOutput(levels=(1, 2, 3, 4)), BeltOutput(levels=(1, 2, 3, 4, 5, 6))],
        [BeltOutput(levels=tuple(range(18))), BeltOutput(levels=tuple(range(1, 19)))],
        [BeltOutput(levels=(9,) * 6), ButterflyOutput(a=EmsChannelOutput(20, 10, 50))],
        [ButterflyOutput(), ButterflyOutput(b=EmsChannelOutput(20, 10, 50))],
        [BeltOutput(levels=(9,) * 6), PillowOutput(speed=2)],
    ],
    ids=[
        "empty",
        "one-output",
        "no-motors",
        "4-then-6",
        "18-motors",
        "belt-and-ems",
        "ems",
        "pillow",
    ],
)
def test_edge_timelines_read_as_the_reference(outputs: list[Output]) -> None:
    _compare(outputs)
