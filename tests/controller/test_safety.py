"""The safety layer: caps, scale, "gentler", EMS ramp, heater and session time limits."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.profiles import Audience, KindCaps, Profile
from controller.safety import (
    BURST_CUT_S,
    BURST_IMPOSED_REST_S,
    BURST_MAX_S,
    BURST_REST_S,
    CHILD_CAPS,
    GENTLER_STEP,
    RAMP_WINDOW_US,
    BurstState,
    RampState,
    Rule,
    SafeDevice,
    SafetyLimits,
    SessionClock,
    SessionSafety,
    burst_step,
    cap_units,
    clamp,
    ramp_step,
    scale_output,
)
from devices.capabilities import (
    Capabilities,
    DeviceKind,
    KneadDirection,
    Kneading,
    belt_motors,
    butterfly_channels,
)
from devices.drivers.base import Device
from devices.errors import ConfigError, SafetyError
from devices.events import (
    EmsWheelChanged,
    PillowOccupancy,
    StatusReport,
    StopButtonPressed,
)
from devices.links.base import Link
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput

# -- fakes --------------------------------------------------------------------


class FakeLink(Link):
    """A link that is always open and goes nowhere."""

    @property
    def is_open(self) -> bool:
        return True

    async def open(self, timeout: float = 1.0) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write(self, data: bytes, *, target: str | None = None, timeout: float = 1.0) -> None:
        return None


class FakeDevice(Device):
    """Records what the safety layer sends; zero after stop()."""

    kind: ClassVar[DeviceKind] = DeviceKind.BELT

    def __init__(self, capabilities: Capabilities, off: Output) -> None:
        super().__init__(FakeLink(f"fake-{capabilities.kind}"), name=f"fake-{capabilities.kind}")
        self._capabilities = capabilities
        self._off = off
        self._output: Output = off
        self.sent: list[Output] = []
        self.stops = 0

    @property
    def is_connected(self) -> bool:
        return True

    @property
    def output(self) -> Output:
        return self._output

    async def connect(self, timeout: float = 1.0) -> Capabilities:
        return self.capabilities

    async def close(self) -> None:
        return None

    async def apply(self, output: Output) -> None:
        self.sent.append(output)
        self._output = output

    async def stop(self) -> None:
        self.stops += 1
        self._output = self._off

    async def status(self) -> StatusReport:
        return StatusReport(self.name, self.kind, None, None)

    def emit(self, event: object) -> None:
        self._emit(event)  # type: ignore[arg-type]


class FakeBelt(FakeDevice):
    kind: ClassVar[DeviceKind] = DeviceKind.BELT

    def __init__(self, motors: int = 4, heater: bool = True) -> None:
        caps = Capabilities(
            kind=DeviceKind.BELT, model="VB1", motors=belt_motors(motors), heater=heater
        )
        super().__init__(caps, BeltOutput.off(motors))


class FakePillow(FakeDevice):
    kind: ClassVar[DeviceKind] = DeviceKind.PILLOW

    def __init__(self) -> None:
        caps = Capabilities(
            kind=DeviceKind.PILLOW,
            model="SP1",
            heater=True,
            kneading=Kneading(nodes=4, max_speed=3),
        )
        super().__init__(caps, PillowOutput.off())


class FakeButterfly(FakeDevice):
    kind: ClassVar[DeviceKind] = DeviceKind.BUTTERFLY

    def __init__(self) -> None:
        caps = Capabilities(
            kind=DeviceKind.BUTTERFLY, model="EB1", ems_channels=butterfly_channels()
        )
        super().__init__(caps, ButterflyOutput.off())


@dataclass
class FakeTime:
    """A clock the test moves by hand."""

    t: float = 0.0

    def __call__(self) -> float:
        return self.t


def make_session(limits: SafetyLimits) -> tuple[SessionSafety, FakeTime]:
    now = FakeTime()
    return SessionSafety(limits, clock=SessionClock(limits.session_limit_s, now=now)), now


# -- strategies ---------------------------------------------------------------

fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
channels = st.builds(
    EmsChannelOutput,
    strength=st.integers(-20, 400),
    frequency=st.integers(-5, 300),
    intensity=st.integers(-5, 150),
)
belt_outputs = st.builds(
    BeltOutput,
    levels=st.one_of(
        st.tuples(*[st.integers(-50, 600)] * 4), st.tuples(*[st.integers(-50, 600)] * 6)
    ),
    heat=st.booleans(),
)
pillow_outputs = st.builds(
    PillowOutput,
    speed=st.integers(-2, 8),
    direction=st.sampled_from(list(KneadDirection)),
    heat=st.booleans(),
)
butterfly_outputs = st.builds(ButterflyOutput, a=channels, b=channels)
outputs = st.one_of(belt_outputs, pillow_outputs, butterfly_outputs)
limits_st = st.builds(
    SafetyLimits,
    audience=st.sampled_from(list(Audience)),
    caps=st.builds(KindCaps, belt=fractions, pillow=fractions, butterfly=fractions),
    scale=fractions,
    ems_max_raise_per_100ms=st.integers(1, 5),
)


def intensities(output: Output) -> tuple[int, ...]:
    """Every intensity of an output, in a fixed order, for comparisons."""
    if isinstance(output, BeltOutput):
        return output.levels
    if isinstance(output, PillowOutput):
        return (output.speed,)
    assert isinstance(output, ButterflyOutput)
    return (output.a.strength, output.b.strength)


def assert_within_caps(output: Output, limits: SafetyLimits) -> None:
    """No intensity above its cap, every value in the device's range."""
    if isinstance(output, BeltOutput):
        cap = limits.caps.belt
        assert all(0 <= level <= cap * 255 + 1e-9 for level in output.levels)
    elif isinstance(output, PillowOutput):
        assert 0 <= output.speed <= limits.caps.pillow * 3 + 1e-9
    else:
        assert isinstance(output, ButterflyOutput)
        for ch in (output.a, output.b):
            assert 0 <= ch.strength <= limits.caps.butterfly * 200 + 1e-9
            assert 10 <= ch.frequency <= 240
            assert 0 <= ch.intensity <= 100


# -- pure rules ---------------------------------------------------------------


@given(output=outputs, limits=limits_st, presses=st.integers(0, 12), with_caps=st.booleans())
def test_clamp_never_exceeds_a_cap(
    output: Output, limits: SafetyLimits, presses: int, with_caps: bool
) -> None:
    capabilities = None
    if with_caps:
        if isinstance(output, BeltOutput):
            capabilities = FakeBelt(len(output.levels)).capabilities
        else:
            capabilities = make_device(output.kind).capabilities
    result = clamp(output, limits, gentler=GENTLER_STEP**presses, capabilities=capabilities)
    assert type(result) is type(output)
    assert_within_caps(result, limits)


@given(output=outputs, limits=limits_st, presses=st.integers(0, 10), more=st.integers(1, 5))
def test_more_gentler_presses_never_increase_anything(
    output: Output, limits: SafetyLimits, presses: int, more: int
) -> None:
    before = clamp(output, limits, gentler=GENTLER_STEP**presses)
    after = clamp(output, limits, gentler=GENTLER_STEP ** (presses + more))
    assert all(a <= b for a, b in zip(intensities(after), intensities(before), strict=True))


@given(output=outputs, factor=st.floats(min_value=-1.0, max_value=3.0, allow_nan=False))
def test_scale_never_amplifies(output: Output, factor: float) -> None:
    scaled = scale_output(output, factor)
    for new, old in zip(intensities(scaled), intensities(output), strict=True):
        assert new <= max(old, 0)
        assert new >= 0


def test_scale_rules() -> None:
    assert scale_output(BeltOutput((100, 255, 1, 0)), 0.5) == BeltOutput((50, 127, 0, 0))
    assert scale_output(PillowOutput(3), 0.7).speed == 2
    # A running pillow keeps speed 1 for three presses and stops at the fourth.
    assert scale_output(PillowOutput(1), GENTLER_STEP**3).speed == 1
    assert scale_output(PillowOutput(1), GENTLER_STEP**4).speed == 0
    ems = scale_output(ButterflyOutput(a=EmsChannelOutput(100, 50, 80)), 0.5)
    assert isinstance(ems, ButterflyOutput)
    assert ems.a == EmsChannelOutput(50, 50, 80)  # waveform intensity untouched


def test_cap_is_a_ceiling_not_a_multiplier() -> None:
    limits = SafetyLimits(caps=KindCaps(belt=0.5, pillow=1.0, butterfly=0.5))
    assert clamp(BeltOutput((10, 200, 255, 0)), limits) == BeltOutput((10, 127, 127, 0))
    assert cap_units(0.5, 200) == 100
    assert limits.max_units(DeviceKind.BUTTERFLY) == 100


@given(
    steps=st.lists(st.tuples(st.integers(0, 150), st.integers(0, 200)), max_size=60),
    max_raise=st.integers(1, 5),
)
def test_ramp_step_rises_at_most_max_raise_per_100ms(
    steps: list[tuple[int, int]], max_raise: int
) -> None:
    state = RampState()
    now = 0
    sent: list[tuple[int, int]] = [(0, 0)]
    for dt_ms, requested in steps:
        now += dt_ms * 1000
        value, state = ramp_step(state, requested, now, max_raise)
        assert value <= requested
        sent.append((now, value))
    assert_ramp(sent, max_raise)


def assert_ramp(sent: list[tuple[int, int]], max_raise: int) -> None:
    """Between any two sends, rise ≤ ceil(max_raise × elapsed / 100 ms)."""
    for i, (t_i, s_i) in enumerate(sent):
        for t_j, s_j in sent[i + 1 :]:
            bound = -(-max_raise * (t_j - t_i) // RAMP_WINDOW_US)
            assert s_j - s_i <= bound, (t_i, s_i, t_j, s_j)
            if t_j - t_i <= RAMP_WINDOW_US:
                assert s_j - s_i <= max_raise


def test_ramp_climbs_5_per_tick_and_falls_at_once() -> None:
    state = RampState()
    values = []
    for tick in range(1, 6):
        value, state = ramp_step(state, 100, tick * 100_000, 5)
        values.append(value)
    assert values == [5, 10, 15, 20, 25]
    value, state = ramp_step(state, 0, 600_000, 5)
    assert value == 0
    # Frequent calls still climb at the full rate (credit carries over).
    for k in range(1, 11):
        value, state = ramp_step(state, 100, 600_000 + k * 10_000, 5)
    assert value == 5


# -- vibration bursts -----------------------------------------------------------


def _bursts(requests: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """What burst_step lets through for (time, level) requests, with its change times."""
    state = BurstState()
    sent: list[tuple[float, int]] = []
    for t, level in requests:
        allowed, state = burst_step(state, level, t)
        sent.append((t, allowed))
    return sent


def _runs(sent: list[tuple[float, int]]) -> tuple[list[float], list[float]]:
    runs: list[float] = []
    rests: list[float] = []
    on_at: float | None = None
    off_at: float | None = None
    for t, level in sent:
        if level > 0 and on_at is None:
            on_at = t
            if off_at is not None:
                rests.append(t - off_at)
        elif level == 0 and on_at is not None:
            runs.append(t - on_at)
            on_at, off_at = None, t
    return runs, rests


def test_burst_step_rests_after_15_s_of_continuous_vibration() -> None:
    # 45 s asked for, a call every 0.1 s: bursts of at most 15 s, each followed by the rest.
    sent = _bursts([(i / 10, 200) for i in range(451)] + [(45.1, 0)])
    runs, rests = _runs(sent)
    assert len(runs) == 3
    assert max(runs) <= BURST_MAX_S
    assert min(runs[:-1]) >= BURST_MAX_S - 0.5, "the guard takes only a small margin"
    assert min(rests) >= BURST_REST_S


def test_burst_step_a_short_zero_does_not_end_a_burst_a_long_one_does() -> None:
    # 10 s on, 1 s off (shorter than the rest), on again: the burst goes on and is cut
    # 15 s (less the guard) after its first start.
    sent = _bursts(
        [(i / 10, 100) for i in range(100)]
        + [(10 + i / 10, 0) for i in range(10)]
        + [(11 + i / 10, 100) for i in range(100)]
    )
    first_cut = next(t for t, level in sent if t > 11 and level == 0)
    assert first_cut <= BURST_MAX_S
    # 10 s on, a full rest, 10 s on: two bursts, nothing cut.
    rest = BURST_REST_S
    sent = _bursts(
        [(i / 10, 100) for i in range(100)]
        + [(10 + i / 10, 0) for i in range(round(rest * 10))]
        + [(10 + rest + i / 10, 100) for i in range(100)]
    )
    assert all(level == 100 for t, level in sent if t < 10 or t >= 10 + rest)


def test_burst_state_says_when_to_call_again() -> None:
    level, state = burst_step(BurstState(), 50, 2.0)
    assert level == 50
    end = state.next_change(BURST_CUT_S)
    assert end == 2.0 + BURST_CUT_S < 2.0 + BURST_MAX_S
    assert burst_step(state, 50, end - 0.01)[0] == 50
    level, state = burst_step(state, 50, end)
    assert level == 0
    rest_end = state.next_change(BURST_CUT_S)
    assert rest_end == end + BURST_IMPOSED_REST_S > end + BURST_REST_S
    assert burst_step(state, 50, rest_end - 0.01)[0] == 0
    level, state = burst_step(state, 50, rest_end)
    assert level == 50


@given(
    st.lists(
        st.tuples(st.floats(0.01, 4.0), st.integers(0, 255)),
        min_size=1,
        max_size=60,
    )
)
@settings(max_examples=150, deadline=None)
def test_no_request_sequence_gets_a_run_past_15_s(steps: list[tuple[float, int]]) -> None:
    # Whatever the requests, called at each request and whenever the rule says: no run
    # of non-zero output reaches 15 s, and every run is followed by a rest at zero.
    state = BurstState()
    t = 0.0
    current = 0
    sent: list[tuple[float, int]] = []
    for gap, level in [*steps, (100.0, 0)]:  # the last request held long, then off
        end = t + gap
        while (change := state.next_change(BURST_CUT_S)) is not None and change < end:
            # The request in force is re-applied when the rule says (as the runner does).
            allowed, state = burst_step(state, current, change)
            sent.append((change, allowed))
        allowed, state = burst_step(state, level, end)
        sent.append((end, allowed))
        t, current = end, level
    runs, _ = _runs(sent)
    assert all(run <= BURST_MAX_S for run in runs)


# -- limits -------------------------------------------------------------------


def test_limits_from_profile_take_the_minimum_and_audience() -> None:
    child = Profile(name="kid", audience=Audience.CHILD, ems_max_raise_per_100ms=4)
    limits = SafetyLimits.from_profile(
        child, device_caps={"butterfly": 0.2, "belt": 0.9, "ems_max_raise_per_100ms": 3}
    )
    # A child's ceilings on top of everything: no EMS, the belt at most 0.6.
    assert limits.caps == KindCaps(belt=0.6, pillow=2 / 3, butterfly=0.0) == CHILD_CAPS
    assert limits.ems_max_raise_per_100ms == 3
    assert limits.session_limit_s == 900
    assert limits.heater_limit_s == 600
    adult = SafetyLimits.from_profile(
        Profile(), device_caps={"butterfly": 0.2, "belt": 0.9, "ems_max_raise_per_100ms": 3}
    )
    assert adult.caps.butterfly == 0.2
    assert adult.caps.belt == 0.8  # the profile's lower cap wins
    assert (adult.session_limit_s, adult.heater_limit_s) == (1800, 1200)
    # A lower child cap in the profile stays lower.
    careful = Profile(audience=Audience.CHILD, caps=KindCaps(belt=0.3, pillow=0.4))
    assert SafetyLimits.from_profile(careful).caps == KindCaps(belt=0.3, pillow=0.4, butterfly=0)


def test_limits_refuse_more_than_allowed() -> None:
    with pytest.raises(ConfigError, match="scale"):
        SafetyLimits.from_profile(Profile(), scale=1.2)
    with pytest.raises(ConfigError, match="unknown device cap"):
        SafetyLimits.from_profile(Profile(), device_caps={"bleet": 0.5})
    with pytest.raises(ValidationError, match="session_limit_s"):
        SafetyLimits(audience=Audience.CHILD, session_limit_s=1000)
    with pytest.raises(ValidationError, match="ems_max_raise_per_100ms"):
        SafetyLimits(ems_max_raise_per_100ms=6)
    limits = SafetyLimits(audience=Audience.CHILD)
    with pytest.raises(ConfigError, match="exceeds"):
        SessionSafety(limits, clock=SessionClock(1800))


async def test_device_limits_only_tighten() -> None:
    session, _ = make_session(SafetyLimits(caps=KindCaps(belt=0.5), scale=0.8))
    loose = SafetyLimits(caps=KindCaps(belt=1.0), scale=1.0)
    safe = session.wrap(FakeBelt(), limits=loose)
    assert safe.limits.caps.belt == 0.5
    assert safe.limits.scale == 0.8
    tight = session.wrap(FakeBelt(), limits=SafetyLimits(audience=Audience.CHILD))
    assert tight.limits.session_limit_s == 900
    assert tight.limits.heater_limit_s == 600


def test_session_clock() -> None:
    now = FakeTime(100.0)
    clock = SessionClock(60, now=now)
    now.t = 130.0
    assert clock.elapsed() == 30
    assert clock.remaining() == 30
    assert not clock.expired
    now.t = 160.0
    assert clock.expired
    assert clock.remaining() == 0


# -- SafeDevice sequences -----------------------------------------------------

step_st = st.tuples(
    st.integers(0, 250),  # ms since the previous step
    st.integers(0, 250),  # channel A / level request
    st.integers(0, 250),  # channel B request
    st.booleans(),  # heat
    st.booleans(),  # press "gentler" before this step
)


def request_for(kind: DeviceKind, a: int, b: int, heat: bool) -> Output:
    """A request of the given kind built from the step's numbers."""
    if kind == DeviceKind.BELT:
        return BeltOutput((a, b, a, b), heat=heat)
    if kind == DeviceKind.PILLOW:
        return PillowOutput(speed=a % 5, heat=heat)
    return ButterflyOutput(a=EmsChannelOutput(a, 100, 50), b=EmsChannelOutput(b, 100, 50))


def make_device(kind: DeviceKind) -> FakeDevice:
    """A fake device of the kind."""
    if kind == DeviceKind.BELT:
        return FakeBelt()
    if kind == DeviceKind.PILLOW:
        return FakePillow()
    return FakeButterfly()


@settings(deadline=None, max_examples=150)
@given(
    kind=st.sampled_from(list(DeviceKind)),
    limits=limits_st,
    session_s=st.integers(1, 8),
    heater_s=st.integers(0, 5),
    steps=st.lists(step_st, max_size=50),
)
def test_safe_device_sequences_keep_every_rule(
    kind: DeviceKind,
    limits: SafetyLimits,
    session_s: int,
    heater_s: int,
    steps: list[tuple[int, int, int, bool, bool]],
) -> None:
    limits = limits.model_copy(
        update={"session_limit_s": float(session_s), "heater_limit_s": float(heater_s)}
    )
    asyncio.run(_run_sequence(kind, limits, steps))


async def _run_sequence(
    kind: DeviceKind, limits: SafetyLimits, steps: list[tuple[int, int, int, bool, bool]]
) -> None:
    session, now = make_session(limits)
    plain_session, plain_now = make_session(limits)
    device = make_device(kind)
    safe = session.wrap(device)
    plain = plain_session.wrap(make_device(kind))  # the same requests, never "gentler"
    t_ms = 0
    sent: list[tuple[int, Output]] = []
    heat_on_ms = 0
    last_heat = False
    last_t = 0
    for dt_ms, a, b, heat, press in steps:
        t_ms += dt_ms
        now.t = plain_now.t = t_ms / 1000
        if last_heat:
            heat_on_ms += t_ms - last_t
        last_t = t_ms
        if press:
            session.gentler()
        request = request_for(kind, a, b, heat)
        result = await safe.apply(request)
        reference = await plain.apply(request)
        assert device.output == result or (device.output.is_zero and result.is_zero)
        assert_within_caps(result, limits)
        # "gentler" never increases any output, ramp state included.
        assert all(x <= y for x, y in zip(intensities(result), intensities(reference), strict=True))
        if t_ms >= limits.session_limit_s * 1000:
            assert result.is_zero, "nothing after the time limit"
            assert device.output.is_zero
        last_heat = isinstance(result, BeltOutput | PillowOutput) and result.heat
        if last_heat:
            assert heat_on_ms < limits.heater_limit_s * 1000
        sent.append((t_ms * 1000, result))
    if kind == DeviceKind.BUTTERFLY:
        for pick in (0, 1):
            series = [(t, intensities(out)[pick]) for t, out in sent]
            assert_ramp([(0, 0), *series], limits.ems_max_raise_per_100ms)
    if t_ms >= limits.session_limit_s * 1000 and steps:
        assert any(v.rule == Rule.SESSION_TIME for v in session.violations)


async def test_time_limit_refuses_and_records_once() -> None:
    session, now = make_session(SafetyLimits(session_limit_s=10))
    belt = FakeBelt()
    safe = session.wrap(belt)
    assert await safe.apply(BeltOutput((100, 100, 100, 100))) == BeltOutput((100,) * 4)
    now.t = 10.0
    assert await safe.apply(BeltOutput((100, 100, 100, 100))) == BeltOutput.off(4)
    assert belt.stops == 1
    now.t = 11.0
    assert (await safe.tick()) == BeltOutput.off(4)
    assert [v.rule for v in session.violations] == [Rule.SESSION_TIME]


async def test_heater_is_switched_off_after_its_limit() -> None:
    session, now = make_session(SafetyLimits(heater_limit_s=60))
    safe = session.wrap(FakeBelt())
    request = BeltOutput((0, 0, 0, 0), heat=True)
    assert (await safe.apply(request)) == request
    now.t = 59.9
    assert (await safe.tick()) == request
    now.t = 60.0
    assert (await safe.tick()) == BeltOutput.off(4)
    assert safe.heater_on_time == pytest.approx(60.0)
    assert [v.rule for v in session.violations] == [Rule.HEATER_TIME]


async def test_no_heat_without_a_heater() -> None:
    session, _ = make_session(SafetyLimits())
    safe = session.wrap(FakeBelt(heater=False))
    assert await safe.apply(BeltOutput((0, 0, 0, 0), heat=True)) == BeltOutput.off(4)


async def test_butterfly_ramp_through_the_device_and_held_back() -> None:
    session, now = make_session(SafetyLimits(caps=KindCaps(butterfly=1.0)))
    safe = session.wrap(FakeButterfly())
    request = ButterflyOutput(a=EmsChannelOutput(40, 100, 50))
    got = []
    for tick in range(12):
        now.t = tick / 10
        out = await safe.apply(request)
        assert isinstance(out, ButterflyOutput)
        got.append(out.a.strength)
    assert got == [0, 5, 10, 15, 20, 25, 30, 35, 40, 40, 40, 40]
    assert not safe.held_back
    now.t = 1.25
    out = await safe.apply(ButterflyOutput(a=EmsChannelOutput(200, 100, 50)))
    assert safe.held_back
    lowered = await safe.apply(ButterflyOutput(a=EmsChannelOutput(3, 100, 50)))
    assert isinstance(lowered, ButterflyOutput)
    assert lowered.a.strength == 3  # lowering is immediate


async def test_ems_wheel_becomes_the_ceiling() -> None:
    session, now = make_session(SafetyLimits(caps=KindCaps(butterfly=1.0)))
    device = FakeButterfly()
    safe = session.wrap(device)
    device.emit(EmsWheelChanged(device.name, DeviceKind.BUTTERFLY, strength_a=12, strength_b=0))
    for tick in range(1, 40):
        now.t = tick / 10
        out = await safe.apply(
            ButterflyOutput(a=EmsChannelOutput(150, 100, 50), b=EmsChannelOutput(150, 100, 50))
        )
        assert isinstance(out, ButterflyOutput)
        assert out.a.strength <= 12
        assert out.b.strength == 0


async def test_no_kneading_on_an_empty_pillow() -> None:
    session, _ = make_session(SafetyLimits())
    pillow = FakePillow()
    safe = session.wrap(pillow)
    pillow.emit(PillowOccupancy(pillow.name, DeviceKind.PILLOW, empty=True))
    assert await safe.apply(PillowOutput(speed=2)) == PillowOutput(speed=0)
    assert [v.rule for v in session.violations] == [Rule.EMPTY_PILLOW]
    pillow.emit(PillowOccupancy(pillow.name, DeviceKind.PILLOW, empty=False))
    assert await safe.apply(PillowOutput(speed=2)) == PillowOutput(speed=2)


async def test_stop_button_and_emergency_stop_latch() -> None:
    session, _ = make_session(SafetyLimits())
    belt, pillow = FakeBelt(), FakePillow()
    safe_belt, safe_pillow = session.wrap(belt), session.wrap(pillow)
    await safe_belt.apply(BeltOutput((50, 50, 50, 50)))
    belt.emit(StopButtonPressed(belt.name, DeviceKind.BELT))
    assert await safe_belt.apply(BeltOutput((50, 50, 50, 50))) == BeltOutput.off(4)
    assert await safe_pillow.apply(PillowOutput(speed=1)) == PillowOutput(speed=1)
    await session.emergency_stop()
    assert pillow.stops == 1
    assert pillow.output.is_zero
    assert await safe_pillow.apply(PillowOutput(speed=1)) == PillowOutput.off()
    rules = [v.rule for v in session.violations]
    assert rules == [Rule.STOP_BUTTON, Rule.EMERGENCY_STOP]


async def test_press_gentler_applies_at_once_and_never_goes_back_up() -> None:
    session, _ = make_session(SafetyLimits(caps=KindCaps(belt=1.0)))
    belt = FakeBelt()
    safe = session.wrap(belt)
    await safe.apply(BeltOutput((200, 200, 200, 200)))
    factor = await session.press_gentler()
    assert factor == pytest.approx(0.7)
    assert belt.output == BeltOutput((140, 140, 140, 140))
    await session.press_gentler()
    assert belt.output == BeltOutput((98, 98, 98, 98))
    assert session.gentler_factor == pytest.approx(0.49)


async def test_wrong_kind_is_refused() -> None:
    session, _ = make_session(SafetyLimits())
    safe: SafeDevice = session.wrap(FakeBelt())
    with pytest.raises(SafetyError, match="pillow"):
        await safe.apply(PillowOutput(speed=1))


def test_clamp_caps_exact_units() -> None:
    limits = SafetyLimits(caps=KindCaps(belt=0.8, pillow=0.5, butterfly=0.29))
    assert clamp(BeltOutput((255,) * 4), limits) == BeltOutput((204,) * 4)
    assert clamp(PillowOutput(3), limits) == PillowOutput(1)
    out = clamp(ButterflyOutput(a=EmsChannelOutput(200, 5, 500)), limits)
    assert isinstance(out, ButterflyOutput)
    assert out.a.strength == math.floor(0.29 * 200)
    assert (out.a.frequency, out.a.intensity) == (10, 100)


@settings(deadline=None, max_examples=100)
@given(
    first=limits_st,
    second=limits_st,
    belt_levels=st.lists(st.tuples(*[st.integers(-50, 600)] * 4), min_size=1, max_size=4),
    moves=st.lists(st.sampled_from(["same", "next", "gentler", "limits", "caps"]), max_size=25),
)
def test_safe_device_clamp_remembers_only_what_still_holds(
    first: SafetyLimits,
    second: SafetyLimits,
    belt_levels: list[tuple[int, int, int, int]],
    moves: list[str],
) -> None:
    """SafeDevice.clamp keeps its last answer: it must always equal a fresh clamp()."""
    session, _ = make_session(first)
    belt = FakeBelt()
    safe = session.wrap(belt)
    requests = [BeltOutput(levels, heat=True) for levels in belt_levels]
    request = requests[0]
    for i, move in enumerate(moves):
        if move == "next":
            request = requests[i % len(requests)]
        elif move == "gentler":
            session.gentler()
        elif move == "limits":
            safe.limits = second if safe.limits is first else first
        elif move == "caps":
            belt._capabilities = Capabilities(
                kind=DeviceKind.BELT, model="VB1", motors=belt_motors(4), heater=i % 2 == 0
            )
        expected = clamp(
            request,
            safe.limits,
            gentler=session.gentler_factor,
            capabilities=belt.capabilities,
        )
        assert safe.clamp(request) == expected
        assert safe.clamp(request) == expected  # and again, from memory
