"""The session runner over in-process simulated devices (MemoryLink to the firmware models)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from controller.errors import StoreError
from controller.profiles import Audience, Contraindication, Profile
from controller.safety import BURST_MAX_S, BURST_REST_S, CHILD_CAPS
from controller.session import (
    DeviceState,
    Outcome,
    RunnerEvent,
    ScaledClock,
    SessionResult,
    SessionRunner,
    SessionState,
    Timing,
    check_profile,
    output_channels,
)
from controller.session.deadline import Deadline
from controller.store import Store
from devices.capabilities import DeviceKind, KneadDirection
from devices.drivers.base import Device
from devices.drivers.eb1 import EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from devices.errors import SafetyError
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from devices.protocols import eb1
from programs.bursts import bursts
from programs.timeline import Cue, DeviceTimeline, SessionPlan, StepSpan
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.firmware.sp1 import SP1Firmware
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder
from tests.method.virtual_time import run_virtual

FAST = Timing(ramp_s=0.5, fade_s=0.5, empty_pause_s=0.5, reconnect_first_s=0.2)
"""Short ramps and fades: the tests are about order and levels, not comfort."""
RAMPED = Timing(ramp_s=1.5, fade_s=0.5, reconnect_first_s=0.2)
"""A ramp long enough to be seen on a busy machine."""
BELT_CAP = math.floor(255 * 0.8)
"""The default profile's belt cap in levels."""
EMS_CAP = math.floor(200 * 0.5)


def belt(level: int) -> BeltOutput:
    """Every motor of a 4-motor belt at one level."""
    return BeltOutput((level,) * 4)


def ems(strength: int, intensity: int = 100) -> ButterflyOutput:
    """Both butterfly channels alike."""
    channel = EmsChannelOutput(strength=strength, frequency=50, intensity=intensity)
    return ButterflyOutput(a=channel, b=channel)


def pillow(speed: int) -> PillowOutput:
    """Kneading at a speed, clockwise, no heat."""
    return PillowOutput(speed=speed, direction=KneadDirection.CLOCKWISE)


OFF: dict[str, Output] = {"belt": belt(0), "pillow": pillow(0), "butterfly": ems(0, 0)}


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll every 10 ms; fail after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or 'a condition'}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    """Simulated devices wired to drivers in this process, with one recording."""

    recorder: Recorder
    firmware: dict[str, Firmware]
    links: dict[str, MemoryLink]
    devices: dict[str, Device]
    events: list[RunnerEvent] = field(default_factory=list)

    def values(self, device: str, channel: str, since: float = -math.inf) -> list[int]:
        """The recorded values of a channel from loop time since on."""
        return [
            cast(int, r["value"])
            for r in self.recorder.rows
            if r["device"] == device and r["channel"] == channel and cast(float, r["t"]) >= since
        ]

    def changes(self, device: str, channel: str, clock: ScaledClock) -> list[tuple[float, int]]:
        """(plan time, value) of each recorded change of a channel (no pauses in between)."""
        start = clock.started_at
        assert start is not None
        return [
            ((cast(float, r["t"]) - start) * clock.speed, cast(int, r["value"]))
            for r in self.recorder.rows
            if r["device"] == device and r["channel"] == channel
        ]

    def quiet(self, names: tuple[str, ...] | None = None) -> bool:
        """True when every (named) firmware puts out nothing."""
        return all(self.firmware[n].is_quiet for n in names or tuple(self.firmware))

    def kinds(self) -> set[DeviceKind]:
        """The kinds in the rig."""
        return {d.kind for d in self.devices.values()}


def _now() -> float:
    return asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def make_rig(
    names: tuple[str, ...] = ("belt", "pillow", "butterfly"),
    *,
    pillow_speed: float = 1.0,
) -> AsyncIterator[Rig]:
    """Connected drivers over MemoryLinks to firmware models that share one recording."""
    recorder = Recorder()
    now = _now()
    firmware: dict[str, Firmware] = {}
    links: dict[str, MemoryLink] = {}
    devices: dict[str, Device] = {}
    for name in names:
        if name == "belt":
            fw: Firmware = VB1Firmware(name, motors=4, battery=None, recorder=recorder, now=now)
        elif name == "pillow":
            fw = SP1Firmware(name, heater=False, recorder=recorder, speed=pillow_speed, now=now)
        else:
            fw = EB1Firmware(name, recorder=recorder, now=now)
        link = MemoryLink(fw, faults=LinkFaults())
        driver = {"belt": VB1Driver, "pillow": SP1Driver, "butterfly": EB1Driver}[name]
        firmware[name], links[name], devices[name] = fw, link, driver(link, name=name)
    try:
        await asyncio.gather(*(d.connect() for d in devices.values()))
        yield Rig(recorder, firmware, links, devices)
    finally:
        await asyncio.gather(*(d.close() for d in devices.values()))


def make_plan(
    devices: Mapping[str, Device],
    steps: list[tuple[float, Mapping[str, Output]]],
    *,
    audience: str = "adult",
) -> SessionPlan:
    """A plan of steps played end to end: (seconds, output per device name)."""
    spans: list[StepSpan] = []
    t = 0.0
    for i, (seconds, _) in enumerate(steps):
        spans.append(StepSpan(i, "test", "collar_zone", f"step {i + 1}", t, t + seconds))
        t += seconds
    timelines = {}
    for name, device in devices.items():
        cues = [
            Cue(span.start, outputs[name], span.index)
            for span, (_, outputs) in zip(spans, steps, strict=True)
        ]
        cues.append(Cue(t, OFF[name], len(steps) - 1))
        timelines[name] = DeviceTimeline(name, device.capabilities, cues)
    return SessionPlan("test", "A test program", audience, t, spans, timelines)


def steady(
    seconds: float, level: int = 100, speed: int = 2, strength: int = 20
) -> list[tuple[float, Mapping[str, Output]]]:
    """One step with a steady output on every device."""
    return [(seconds, {"belt": belt(level), "pillow": pillow(speed), "butterfly": ems(strength)})]


def make_runner(
    rig: Rig,
    plan: SessionPlan,
    *,
    speed: float = 1.0,
    monotonic: Callable[[], float] | None = None,
    timing: Timing = FAST,
    **options: Any,
) -> SessionRunner:
    """A runner on the rig's clock (the loop's), with its events collected in rig.events."""
    loop = asyncio.get_running_loop()
    clock = ScaledClock(speed, monotonic=monotonic or loop.time)
    devices = {name: rig.devices[name] for name in plan.timelines}
    runner = SessionRunner(plan, devices, clock=clock, timing=timing, **options)
    runner.add_listener(rig.events.append)
    return runner


@contextlib.asynccontextmanager
async def running(runner: SessionRunner) -> AsyncIterator[asyncio.Task[SessionResult]]:
    """Run the session in a task; whatever happens, the task is awaited."""
    task = asyncio.get_running_loop().create_task(runner.run())
    try:
        await wait_until(lambda: runner.state != SessionState.READY or task.done(), what="start")
        yield task
    finally:
        if not task.done():
            await runner.emergency_stop()
        with contextlib.suppress(Exception):
            await task


def kinds_of(events: list[RunnerEvent]) -> list[str]:
    """The kinds of the collected events, in order."""
    return [e.kind for e in events]


def first_change_at(changes: list[tuple[float, int]], after: float, value: int) -> float:
    """The plan time at which a channel first took value at or after a time."""
    return next(t for t, v in changes if t >= after - 0.05 and v == value)


# -- the clock ----------------------------------------------------------------


def test_scaled_clock_scales_and_leaves_pauses_out() -> None:
    now = [100.0]
    clock = ScaledClock(10.0, monotonic=lambda: now[0])
    assert clock.now() == 0.0
    clock.start()
    now[0] += 1.0
    assert clock.now() == pytest.approx(10.0)
    clock.pause()
    now[0] += 2.0
    assert clock.now() == pytest.approx(10.0)
    assert clock.wall() == pytest.approx(30.0)
    clock.resume()
    now[0] += 0.5
    assert clock.now() == pytest.approx(15.0)
    assert clock.real() == pytest.approx(3.5)
    assert clock.real_seconds(5.0) == pytest.approx(0.5)


def test_check_profile() -> None:
    kinds = set(DeviceKind)
    assert check_profile(Profile(), kinds) == frozenset()
    with pytest.raises(SafetyError, match="fever"):
        check_profile(Profile(contraindications=frozenset({Contraindication.FEVER})), kinds)
    pregnant = Profile(contraindications=frozenset({Contraindication.PREGNANCY}))
    assert check_profile(pregnant, kinds) == {DeviceKind.BUTTERFLY}
    assert check_profile(pregnant, {DeviceKind.BELT}) == frozenset()
    with pytest.raises(SafetyError, match="pregnancy"):
        check_profile(pregnant, {DeviceKind.BUTTERFLY})


def test_output_channels() -> None:
    assert output_channels(belt(7)) == {
        "motor1": 7,
        "motor2": 7,
        "motor3": 7,
        "motor4": 7,
        "heater": 0,
    }
    assert output_channels(pillow(2))["speed"] == 2
    assert output_channels(ems(9))["strength_b"] == 9


# -- playing a plan ---------------------------------------------------------------


async def test_steps_play_in_order_and_devices_stay_in_step() -> None:
    async with make_rig() as rig:
        plan = make_plan(
            rig.devices,
            [
                (1.0, {"belt": belt(60), "pillow": pillow(1), "butterfly": ems(20, 50)}),
                (1.0, {"belt": belt(120), "pillow": pillow(2), "butterfly": ems(20, 100)}),
                (1.0, {"belt": belt(255), "pillow": pillow(3), "butterfly": ems(20, 50)}),
            ],
        )
        runner = make_runner(rig, plan)
        async with running(runner) as task:
            await wait_until(lambda: runner.snapshot().step_index == 1, what="step 2")
            snap = runner.snapshot()
            assert snap.state == SessionState.RUNNING
            assert snap.step_label == "step 2"
            assert snap.step_count == 3
            assert 1.0 <= snap.elapsed < snap.duration
            assert snap.devices["belt"].link == "up"
            assert snap.devices["pillow"].state == DeviceState.RUNNING
            result = await task
        assert result.outcome == Outcome.COMPLETED
        assert result.elapsed == pytest.approx(3.0, abs=0.3)
        clock = runner.clock
        belt_changes = rig.changes("belt", "motor1", clock)
        pillow_changes = rig.changes("pillow", "speed", clock)
        # The butterfly's effective output follows its waveform intensity at once.
        ems_changes = rig.changes("butterfly", "output_a", clock)
        # Every device shows each step's output, in order, at the step's start.
        for boundary, (level, speed, output) in ((1.0, (120, 2, 20)), (2.0, (BELT_CAP, 3, 10))):
            times = [
                first_change_at(belt_changes, boundary, level),
                first_change_at(pillow_changes, boundary, speed),
                first_change_at(ems_changes, boundary, output),
            ]
            for t in times:
                assert boundary - 0.05 <= t <= boundary + 0.5, (boundary, times)
            assert max(times) - min(times) <= 0.5
        assert max(v for _, v in belt_changes) == BELT_CAP, "never above the cap"
        assert rig.quiet()
        assert [e.detail["index"] for e in rig.events if e.kind == "step"] == [0, 1, 2]


async def test_pause_zeroes_and_resume_ramps_from_zero() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(8.0, level=200))
        runner = make_runner(rig, plan, timing=RAMPED)
        async with running(runner) as task:
            await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [200], what="full")
            runner.pause()
            await wait_until(rig.quiet, timeout=1.0, what="every output at zero")
            assert runner.state == SessionState.PAUSED
            assert not any(d.lease_valid for d in rig.devices.values())
            held = runner.snapshot().elapsed
            await asyncio.sleep(0.3)
            assert rig.quiet(), "something came back on during the pause"
            assert runner.snapshot().elapsed == pytest.approx(held, abs=1e-6)
            resumed_at = _now()
            runner.resume()
            await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [200], what="full")
            after = [v for v in rig.values("belt", "motor1", since=resumed_at) if v]
            assert after[0] < 100, f"no fresh ramp: {after[:5]}"
            assert after == sorted(after)
            assert runner.snapshot().elapsed > held
            runner.stop()
            result = await task
        assert result.outcome == Outcome.STOPPED
        assert kinds_of(rig.events).count("pause") == 1
        assert kinds_of(rig.events).count("resume") == 1


async def test_stop_fades_out_then_zero() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(20.0, level=200))
        runner = make_runner(rig, plan, timing=Timing(ramp_s=0.2, fade_s=1.0))
        async with running(runner) as task:
            await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [200], what="full")
            stopped_at = _now()
            runner.stop()
            result = await task
        assert result.outcome == Outcome.STOPPED
        fade = rig.values("belt", "motor1", since=stopped_at)
        assert fade[-1] == 0
        assert len([v for v in fade if 0 < v < 200]) >= 3, f"no fade: {fade}"
        assert fade == sorted(fade, reverse=True)
        assert rig.quiet()
        assert all(not d.lease_valid for d in rig.devices.values())


async def test_emergency_stop_zeroes_every_output_at_once() -> None:
    async with make_rig() as rig:
        # Late answers keep a belt command in flight most of the time.
        assert rig.links["belt"].faults is not None
        plan = make_plan(
            rig.devices,
            [
                (0.05 * (i + 1), {"belt": belt(100 + i), "pillow": pillow(2), "butterfly": ems(20)})
                for i in range(100)
            ],
        )
        runner = make_runner(rig, plan)
        async with running(runner) as task:
            await wait_until(
                lambda: (
                    not rig.quiet(("belt", "pillow"))
                    and rig.firmware["butterfly"].outputs.get("strength_a") == 20
                ),
                what="everything on",
            )
            rig.links["belt"].faults.delay = 0.03
            await asyncio.sleep(0.2)
            stopped_at = _now()
            await runner.emergency_stop()
            assert rig.quiet(), {n: f.outputs for n, f in rig.firmware.items()}
            result = await task
        assert result.outcome == Outcome.EMERGENCY_STOP
        after = rig.values("belt", "motor1", since=stopped_at)
        assert after == [0], f"an emergency stop never fades: {after}"
        await asyncio.sleep(0.3)
        assert rig.quiet(), "something came back on after the emergency stop"


async def test_gentler_lowers_every_output_at_once_and_for_good(tmp_path: Path) -> None:
    async with make_rig() as rig:
        plan = make_plan(
            rig.devices,
            [
                (2.0, {"belt": belt(200), "pillow": pillow(3), "butterfly": ems(60)}),
                (1.0, {"belt": belt(150), "pillow": pillow(3), "butterfly": ems(60)}),
            ],
        )
        with Store.open(tmp_path / "db") as store:
            runner = make_runner(rig, plan, store=store)
            async with running(runner) as task:
                fw = rig.firmware
                await wait_until(lambda: fw["belt"].outputs["motor1"] == 200, what="the belt full")
                pressed_at = _now()
                assert runner.gentler() == pytest.approx(0.7)
                await wait_until(lambda: fw["belt"].outputs["motor1"] == 140, what="belt lower")
                await wait_until(lambda: fw["pillow"].outputs["speed"] == 2, what="pillow lower")
                # The EMS strength climbs under its ramp, now to the gentler level only.
                await wait_until(lambda: fw["butterfly"].outputs["strength_a"] == 42, what="EMS")
                result = await task
            assert result.gentler_presses == 1
            record = store.get_session(cast(int, result.session_id))
            assert record.gentler_presses == 1
            assert "gentler" in [e.kind for e in store.session_events(record.id)]
        belt_after = [v for v in rig.values("belt", "motor1", since=pressed_at + 0.01) if v]
        assert max(belt_after) <= 140
        assert 105 in belt_after, "the second step is gentler too"
        assert max(rig.values("pillow", "speed", since=pressed_at + 0.01)) <= 2
        assert max(rig.values("butterfly", "strength_a", since=pressed_at + 0.01)) <= 42


async def test_scale_lowers_and_never_passes_the_caps() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(3.0, level=255, strength=200))
        runner = make_runner(rig, plan, scale=0.5)
        async with running(runner) as task:
            await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [127], what="half")
            assert runner.set_scale(2.0) == 1.0
            await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [BELT_CAP], what="cap")
            runner.stop()
            await task
        assert max(rig.values("belt", "motor1")) == BELT_CAP
        assert max(rig.values("butterfly", "strength_a")) <= EMS_CAP
        assert "scale" in kinds_of(rig.events)


# -- device events ------------------------------------------------------------------


async def test_belt_stop_button_ends_the_belt_only() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(2.0))
        runner = make_runner(rig, plan)
        async with running(runner) as task:
            await wait_until(lambda: not rig.quiet(("belt",)), what="the belt on")
            belt_fw = cast(VB1Firmware, rig.firmware["belt"])
            pressed_at = _now()
            belt_fw.press_stop_button(pressed_at)
            rig.links["belt"].wake()
            await wait_until(
                lambda: runner.snapshot().devices["belt"].state == DeviceState.ENDED,
                what="the belt ended",
            )
            await asyncio.sleep(0.5)
            assert not rig.quiet(("pillow",))
            assert not rig.quiet(("butterfly",))
            result = await task
        assert result.outcome == Outcome.COMPLETED
        assert result.devices["belt"] == DeviceState.ENDED
        assert set(rig.values("belt", "motor1", since=pressed_at + 0.01)) <= {0}
        assert "stop_button" in kinds_of(rig.events)


async def test_pillow_auto_off_is_rearmed() -> None:
    # 15 simulated minutes of the pillow's own timer pass in 0.3 s.
    async with make_rig(("pillow",), pillow_speed=3000.0) as rig:
        plan = make_plan(rig.devices, [(2.0, {"pillow": pillow(2)})])
        runner = make_runner(rig, plan)
        async with running(runner) as task:
            await wait_until(lambda: "auto_off" in kinds_of(rig.events), what="auto-off")
            fired = _now()
            await wait_until(
                lambda: rig.firmware["pillow"].outputs.get("speed") == 2, what="kneading again"
            )
            result = await task
        assert result.outcome == Outcome.COMPLETED
        assert 2 in rig.values("pillow", "speed", since=fired)


async def test_empty_pillow_pauses_the_session_and_resumes_when_occupied() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(6.0))
        runner = make_runner(rig, plan)
        pillow_fw = cast(SP1Firmware, rig.firmware["pillow"])
        async with running(runner) as task:
            await wait_until(lambda: not rig.quiet(), what="everything on")
            pillow_fw.set_occupied(False, _now())
            rig.links["pillow"].wake()
            await wait_until(lambda: runner.paused, what="the pause")
            await wait_until(rig.quiet, timeout=1.0, what="every output at zero")
            assert runner.snapshot().pause_reasons == ("pillow_empty",)
            pillow_fw.set_occupied(True, _now())
            rig.links["pillow"].wake()
            await wait_until(lambda: runner.state == SessionState.RUNNING, what="the resume")
            await wait_until(lambda: not rig.quiet(("belt", "pillow")), what="back on")
            runner.stop()
            await task
        events = kinds_of(rig.events)
        assert events.index("pillow_empty") < events.index("pause") < events.index("resume")
        assert "pillow_occupied" in events


async def test_a_pillow_empty_from_the_start_never_kneads_and_pauses_the_session() -> None:
    """An empty pillow is a standing condition: a session that starts on it learns of it."""
    async with make_rig(("belt", "pillow")) as rig:
        pillow_fw = cast(SP1Firmware, rig.firmware["pillow"])
        pillow_fw.set_occupied(False, _now())
        rig.links["pillow"].wake()
        await wait_until(lambda: bool(rig.devices["pillow"].standing_events()), what="empty")
        plan = make_plan(rig.devices, [(6.0, {"belt": belt(100), "pillow": pillow(2)})])
        runner = make_runner(rig, plan)
        async with running(runner) as task:
            await wait_until(lambda: runner.paused, what="the pause")
            assert runner.snapshot().pause_reasons == ("pillow_empty",)
            assert rig.values("pillow", "speed") in ([], [0])
            pillow_fw.set_occupied(True, _now())
            rig.links["pillow"].wake()
            await wait_until(lambda: runner.state == SessionState.RUNNING, what="the resume")
            await wait_until(lambda: not rig.quiet(("pillow",)), what="kneading")
            runner.stop()
            await task
        events = kinds_of(rig.events)
        assert events.index("pillow_empty") < events.index("pause") < events.index("resume")


async def test_ems_wheel_is_adopted() -> None:
    async with make_rig(("butterfly",)) as rig:
        plan = make_plan(rig.devices, [(3.0, {"butterfly": ems(40)})])
        runner = make_runner(rig, plan)
        fw = cast(EB1Firmware, rig.firmware["butterfly"])
        async with running(runner) as task:
            await wait_until(lambda: fw.strengths[0] >= 20, what="EMS on")
            turned = _now()
            fw.turn_wheel(4, None, turned)
            rig.links["butterfly"].wake()
            await wait_until(lambda: "ems_wheel" in kinds_of(rig.events), what="the wheel event")
            await asyncio.sleep(0.5)
            runner.stop()
            await task
        wheel = next(e for e in rig.events if e.kind == "ems_wheel")
        assert wheel.device == "butterfly"
        assert wheel.detail["a"] == 4
        # The wheel's word is each channel's ceiling for the rest of the session, from when
        # the host hears of it. A B0 already on its way as the wheel turned (the host writes
        # before the unit's B1 reaches it, as on the radio) can land after the turn: that
        # one change may be a ramp step above the word, and the driver's next brings it down.
        for channel, word in (("strength_a", 4), ("strength_b", wheel.detail["b"])):
            after = rig.values("butterfly", channel, since=turned)
            above = [v for v in after if v > word]
            assert len(above) <= 1, (channel, word, after)
            assert all(v <= word + eb1.MAX_RAISE_PER_B0 for v in above), (channel, word, after)
            assert after[-1] <= word, (channel, word, after)


async def test_link_loss_reconnects_through_a_fresh_ramp(tmp_path: Path) -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(8.0, level=200))
        with Store.open(tmp_path / "db") as store:
            runner = make_runner(rig, plan, store=store, timing=RAMPED)
            link = rig.links["belt"]
            assert link.faults is not None
            async with running(runner) as task:
                await wait_until(lambda: rig.values("belt", "motor1")[-1:] == [200], what="full")
                link.faults.link_down = True
                await link.drop("test cut the cable")
                await wait_until(
                    lambda: runner.snapshot().devices["belt"].state == DeviceState.LOST,
                    what="the belt lost",
                )
                assert not rig.devices["belt"].lease_valid
                assert runner.snapshot().devices["belt"].link == "reconnecting"
                await asyncio.sleep(0.5)
                assert not rig.quiet(("pillow", "butterfly")), "the others go on"
                restored = _now()
                link.faults.link_down = False
                await wait_until(lambda: "reconnected" in kinds_of(rig.events), what="reconnect")
                await wait_until(
                    lambda: rig.values("belt", "motor1")[-1:] == [200], what="full again"
                )
                runner.stop()
                result = await task
            events = [e.kind for e in store.session_events(cast(int, result.session_id))]
        after = [v for v in rig.values("belt", "motor1", since=restored) if v]
        assert after[0] < 100, f"no fresh ramp after the reconnect: {after[:5]}"
        assert "link_lost" in events
        assert "reconnected" in events


async def test_an_apply_that_hangs_counts_as_a_lost_link_and_the_watchdog_stops_it() -> None:
    """A send that never returns must not keep the device fed: past apply_timeout_s the
    lane is lost, its lease revoked, and the belt's own watchdog stops it."""
    async with make_rig(("belt", "pillow")) as rig:
        plan = make_plan(
            rig.devices, [(0.6, {"belt": belt(100 + i), "pillow": pillow(2)}) for i in range(10)]
        )
        runner = make_runner(rig, plan, timing=dataclasses.replace(FAST, apply_timeout_s=0.3))
        belt_driver = rig.devices["belt"]
        real_apply = belt_driver.apply
        hung = asyncio.Event()

        async def hang_after_the_first(output: Output) -> None:
            if rig.values("belt", "motor1") and any(rig.values("belt", "motor1")):
                hung.set()
                await asyncio.Event().wait()  # never returns: a send stuck somewhere
            await real_apply(output)

        belt_driver.apply = hang_after_the_first  # type: ignore[method-assign]
        async with running(runner):
            await wait_until(hung.is_set, what="the belt's apply stuck")
            stuck_at = _now()
            await wait_until(lambda: "link_lost" in kinds_of(rig.events), what="lost")
            assert not belt_driver.lease_valid
            lost = next(e for e in rig.events if e.kind == "link_lost")
            assert lost.detail["reason"] == "no answer within 0.3 s"
            # The belt's firmware watchdog (1 s after the last frame) stops it; the pillow
            # goes on.
            await wait_until(lambda: rig.quiet(("belt",)), timeout=3.0, what="belt stopped")
            assert not rig.quiet(("pillow",))
            assert _now() - stuck_at < 3.0
            await runner.emergency_stop()


async def test_every_device_lost_ends_in_a_fault(tmp_path: Path) -> None:
    async with make_rig(("belt",)) as rig:
        plan = make_plan(rig.devices, [(30.0, {"belt": belt(100)})])
        timing = Timing(ramp_s=0.2, fault_grace_s=0.5, reconnect_first_s=0.1)
        with Store.open(tmp_path / "db") as store:
            runner = make_runner(rig, plan, store=store, timing=timing)
            link = rig.links["belt"]
            assert link.faults is not None
            async with running(runner) as task:
                await wait_until(lambda: not rig.quiet(), what="the belt on")
                link.faults.link_down = True
                await link.drop("gone")
                result = await asyncio.wait_for(task, 5.0)
            assert result.outcome == Outcome.FAULT
            assert store.get_session(cast(int, result.session_id)).outcome == Outcome.FAULT


# -- profiles, history, limits ----------------------------------------------------------


async def test_contraindicated_profile_is_refused() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(1.0))
        profile = Profile(contraindications=frozenset({Contraindication.THROMBOSIS}))
        runner = make_runner(rig, plan, profile=profile)
        with pytest.raises(SafetyError, match="thrombosis"):
            await runner.run()
        assert runner.done.is_set()
        assert not [r for r in rig.recorder.rows if r["value"] not in (0, "clockwise")]


async def test_ems_only_contraindication_drops_the_butterfly() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(1.5))
        profile = Profile(contraindications=frozenset({Contraindication.IMPLANTED_ELECTRONICS}))
        runner = make_runner(rig, plan, profile=profile)
        result = await runner.run()
        assert result.outcome == Outcome.COMPLETED
        assert result.dropped == ("butterfly",)
        assert result.devices["butterfly"] == DeviceState.DROPPED
        assert set(rig.values("butterfly", "strength_a")) == {0}
        assert max(rig.values("belt", "motor1")) > 0


async def test_history_rows_and_failing_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_rig(("belt", "pillow")) as rig:
        plan = make_plan(rig.devices, [(1.0, {"belt": belt(50), "pillow": pillow(1)})])
        with Store.open(tmp_path / "db") as store:
            result = await make_runner(rig, plan, store=store, profile=Profile()).run()
            record = store.get_session(cast(int, result.session_id))
            assert record.outcome == Outcome.COMPLETED
            assert record.program == "test"
            assert record.devices == ("belt", "pillow")
            assert record.detail["reason"] == "completed"

            def broken(*args: Any, **kwargs: Any) -> None:
                raise StoreError("the disk is full")

            monkeypatch.setattr(store, "add_event", broken)
            monkeypatch.setattr(store, "finish_session", broken)
            runner = make_runner(rig, plan, store=store)
            async with running(runner) as task:
                runner.gentler()
                runner.stop()
                result = await task
            assert result.outcome == Outcome.STOPPED, "a failed history write never stops a stop"
        assert rig.quiet()


async def test_the_session_limit_cuts_a_long_plan(tmp_path: Path) -> None:
    # A plan that fits the child's 15 minutes, but a long pause (pauses count) takes the
    # session past them: it is cut there, and recorded as cut, never as completed.
    async with make_rig(("belt",)) as rig:
        loop = asyncio.get_running_loop()
        jump = [0.0]
        plan = make_plan(rig.devices, [(600.0, {"belt": belt(10)})])
        child = Profile(audience=Audience.CHILD)
        with Store.open(tmp_path / "db") as store:
            runner = make_runner(
                rig, plan, profile=child, store=store, monotonic=lambda: loop.time() + jump[0]
            )
            async with running(runner) as task:
                await wait_until(lambda: not rig.quiet(), what="the belt on")
                runner.pause()
                await wait_until(lambda: runner.paused, what="the pause")
                jump[0] = 899.0  # the clock is injected: skip to just before the 15 minutes
                runner.resume()
                result = await asyncio.wait_for(task, 10.0)
            assert result.outcome == Outcome.CUT
            assert result.reason == "cut at the session limit"
            assert result.elapsed < 600.0, "the plan itself had not ended"
            assert result.audience == Audience.CHILD
            record = store.get_session(cast(int, result.session_id))
            assert record.outcome == Outcome.CUT
        assert rig.quiet()


async def test_a_plan_longer_than_the_limit_is_refused_up_front_naming_the_childs_program() -> None:
    async with make_rig(("belt",)) as rig:
        plan = make_plan(rig.devices, [(1000.0, {"belt": belt(100)})])
        plan = dataclasses.replace(plan, program_id="collar-zone")
        runner = make_runner(rig, plan, profile=Profile(audience=Audience.CHILD))
        with pytest.raises(SafetyError, match=r"longer than a child's .* run collar-zone-child"):
            await runner.run()
        assert runner.done.is_set()
        assert set(rig.values("belt", "motor1")) <= {0}, "nothing moved"


async def test_a_childs_program_gets_the_childs_limit() -> None:
    async with make_rig(("belt",)) as rig:
        plan = make_plan(rig.devices, [(1.0, {"belt": belt(10)})], audience="child")
        runner = make_runner(rig, plan, profile=Profile(audience=Audience.ADULT))
        assert runner.limits.session_limit_s == 900.0
        assert runner.limits.caps == CHILD_CAPS, "every child rule, the caps too"


async def test_a_child_profile_gets_the_child_caps_and_no_ems_whatever_the_program() -> None:
    async with make_rig() as rig:
        # An adult program at full strength, EMS included, on a child's profile.
        plan = make_plan(rig.devices, steady(1.5, level=255, speed=3, strength=150))
        runner = make_runner(rig, plan, profile=Profile(audience=Audience.CHILD))
        result = await runner.run()
        assert result.outcome == Outcome.COMPLETED
        assert result.dropped == ("butterfly",)
        assert max(rig.values("belt", "motor1")) == math.floor(255 * CHILD_CAPS.belt) == 153
        assert max(rig.values("pillow", "speed")) == 2
        assert set(rig.values("butterfly", "strength_a")) <= {0}
        assert set(rig.values("butterfly", "strength_b")) <= {0}
        assert rig.quiet()


def vibration_runs(changes: list[tuple[float, int]]) -> tuple[list[float], list[float]]:
    """The lengths of the runs above zero and of the rests between them, from changes."""
    runs: list[float] = []
    rests: list[float] = []
    on_at: float | None = None
    off_at: float | None = None
    for t, value in changes:
        if value > 0 and on_at is None:
            on_at = t
            if off_at is not None:
                rests.append(t - off_at)
        elif value == 0 and on_at is not None:
            runs.append(t - on_at)
            on_at, off_at = None, t
    assert on_at is None, "the recording ends with the motor at zero"
    return runs, rests


async def test_continuous_vibration_rests_after_15_s_on_every_motor(tmp_path: Path) -> None:
    # 45 s of steady vibration asked for (past any loader): the recording of what the
    # motors physically did shows bursts of at most 15 s, each followed by a rest.
    speed = 5.0
    async with make_rig(("belt",)) as rig:
        plan = make_plan(rig.devices, [(45.0, {"belt": belt(200)})])
        runner = make_runner(rig, plan, speed=speed)
        result = await asyncio.wait_for(runner.run(), 45.0 / speed + 10.0)
        assert result.outcome == Outcome.COMPLETED
        assert any(v.rule.value == "vibration_burst" for v in result.violations)
        clock = runner.clock
        for motor in ("motor1", "motor2", "motor3", "motor4"):
            changes = rig.changes("belt", motor, clock)
            runs, rests = vibration_runs(changes)
            assert len(runs) >= 3, f"{motor}: the vibration goes on in bursts ({runs})"
            assert max(runs) <= BURST_MAX_S, f"{motor}: a run over 15 s ({runs})"
            # The rests the rule imposes (a busy machine may shorten one by its latency).
            assert min(rests) >= BURST_REST_S - 0.5, f"{motor}: rests {rests}"
            # The same read back as the method's checks read it (a short dip is no rest).
            found = bursts([(t, float(v)) for t, v in changes], end=changes[-1][0])
            assert max(b.length for b in found) <= BURST_MAX_S, found
        assert rig.quiet()


async def test_cancelling_the_runner_stops_everything_and_leaves_no_task() -> None:
    async with make_rig() as rig:
        plan = make_plan(rig.devices, steady(10.0))
        runner = make_runner(rig, plan)
        task = asyncio.get_running_loop().create_task(runner.run())
        await wait_until(lambda: not rig.quiet(("belt", "pillow")), what="the devices on")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert runner.done.is_set()
        assert runner.result is not None
        assert runner.result.outcome == Outcome.STOPPED
        await wait_until(rig.quiet, timeout=1.5, what="every output at zero")
        ours = (":session", ":reconnect", "session-history", "emergency-stop")
        assert not [t for t in asyncio.all_tasks() if t.get_name().endswith(ours)]


async def test_a_pause_while_waiting_precisely_for_a_cue_is_handled_at_once() -> None:
    """The runner busy-waits the last cue_lead_s before a cue: it must still see controls."""
    async with make_rig(("belt",)) as rig:
        plan = make_plan(rig.devices, [(3.0, {"belt": belt(100)}), (3.0, {"belt": belt(120)})])
        # A lead far longer than real (1.5 ms) and no ticks in between put the pause
        # inside the precise wait for the cue at 3 s (from 1 s on).
        timing = dataclasses.replace(FAST, cue_lead_s=2.0, tick_s=5.0, ramp_s=0.0)
        runner = make_runner(rig, plan, timing=timing)
        async with running(runner):
            started = _now()
            await wait_until(lambda: not rig.quiet(), what="belt on")
            await asyncio.sleep(max(0.0, started + 1.5 - _now()))  # inside 1.0 .. 3.0 s
            runner.pause()
            await wait_until(lambda: runner.paused and rig.quiet(), what="paused")
            # Handled within the wait, not when the cue at 3 s would have ended it.
            assert _now() - started < 2.7
            await runner.emergency_stop()


async def test_a_session_freezes_the_collector_and_unfreezes_after() -> None:
    """No full garbage collection walks the daemon's heap during a session (controller/gc_quiet)."""
    assert gc.get_freeze_count() == 0
    async with make_rig(("belt",)) as rig:
        runner = make_runner(rig, make_plan(rig.devices, steady(0.3)))
        async with running(runner) as task:
            await wait_until(lambda: not rig.quiet(), what="belt on")
            assert gc.get_freeze_count() > 0
            result = await task
        assert result.outcome == Outcome.COMPLETED
    assert gc.get_freeze_count() == 0


def test_a_deadline_ends_only_the_block_that_overruns_it() -> None:
    """The worker's limit per send (controller/session/deadline.py), on virtual time: blocks
    that end in time are left alone however many come, the one that overruns gets
    TimeoutError exactly at its own limit, and a cancellation from elsewhere stays one."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(1.0)
        for _ in range(50):  # 5 s of blocks, each well within the limit
            with deadline:
                await asyncio.sleep(0.1)
        started = loop.time()
        with pytest.raises(TimeoutError), deadline:
            await asyncio.sleep(3.0)
        assert loop.time() - started == pytest.approx(1.0)
        with deadline:  # usable again after a time-out
            await asyncio.sleep(0.5)
        loop.call_later(0.2, task.cancel)
        with pytest.raises(asyncio.CancelledError), deadline:
            await asyncio.sleep(3.0)
        assert task.uncancel() == 0
        deadline.close()

    run_virtual(scenario())
