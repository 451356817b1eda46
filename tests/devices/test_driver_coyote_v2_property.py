"""Coyote V2 daemon rules 1-3 as a property over every frame the driver writes.

Random sequences of outputs, caps, ramps, stalls and lease ends drive a real
CoyoteV2Driver over a MemoryLink to the simulated unit; every frame captured at
the link must decode to a strength within the cap in force, rise at most the ramp
within any 100 ms, and carry Z <= 20. Time is virtual (an event loop whose clock
jumps to its next timer), so a minute of driving costs milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.drivers.coyote_v2 import CoyoteV2Driver
from devices.errors import SafetyError
from devices.outputs import ButterflyOutput, EmsChannelOutput
from devices.protocols import coyote_v2 as cv2
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.coyote_v2 import CoyoteV2Firmware


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer when nothing else is ready.

    Nothing here waits on real I/O (the MemoryLink is in-process), so the loop never
    needs to sleep: time passes exactly as the timers say, and no test waits for it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 1000.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let the clock jump ahead (a stalled loop: timers fire late)."""
        self._now += seconds

    def _run_once(self) -> None:
        ready = self._ready  # type: ignore[attr-defined]
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if not ready and scheduled:
            self._now = max(self._now, scheduled[0]._when)
        super()._run_once()  # type: ignore[misc]


@dataclass(frozen=True)
class Step:
    """One thing the owner does, then how long it waits."""

    a: int
    b: int
    intensity: int
    frequency: int
    caps: tuple[int, int] | None
    max_raise: int | None
    stall: float
    """Seconds the loop is blocked before this step (the pump runs late)."""
    lease: float
    wait: float


steps = st.builds(
    Step,
    a=st.integers(0, 200),
    b=st.integers(0, 200),
    intensity=st.sampled_from([0, 3, 5, 50, 100]),
    frequency=st.integers(10, 240),
    caps=st.none() | st.tuples(st.integers(0, 200), st.integers(0, 200)),
    max_raise=st.none() | st.integers(1, 5),
    stall=st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.12, 0.5]),
    lease=st.sampled_from([0.0, 0.2, 1.0, 5.0]),
    wait=st.floats(0.0, 1.5),
)


@dataclass
class Rules:
    """The cap and ramp in force from a frame on (its index in the link's written list)."""

    first_frame: int
    caps: tuple[int, int]
    max_raise: int


def check_frames(link: MemoryLink, rules: list[Rules]) -> None:
    """Every strength frame within the cap in force; rises <= ramp in any 100 ms; Z <= 20.

    Rules are tied to frame indexes, not times: a cap changed at the same virtual instant
    as a write applies to the frames written after the change, as in the driver.
    """
    raises: list[tuple[float, int, int]] = []
    level = [0, 0]
    for index, message in enumerate(link.written):
        if message.channel in cv2.WAVEFORM_UUID_BY_CHANNEL:
            wave = cv2.decode_waveform(message.data)
            assert wave.z <= cv2.MAX_Z, wave
            continue
        assert message.channel == cv2.STRENGTH_UUID
        wire = cv2.decode_strengths(message.data)
        rule = [r for r in rules if r.first_frame <= index][-1]
        for ch in range(2):
            assert wire[ch] % 7 == 0
            value = wire[ch] // 7
            assert value <= rule.caps[ch], (message.t, wire, rule)
            if value > level[ch]:
                raises.append((message.t, ch, value - level[ch]))
                window = sum(r for t, c, r in raises if c == ch and message.t - 0.1 < t)
                assert window <= rule.max_raise, (message.t, ch, window, rule)
            level[ch] = value


async def scenario(plan: list[Step], loop: VirtualTimeLoop) -> None:
    firmware = CoyoteV2Firmware("p", now=loop.time())
    link = MemoryLink(firmware, faults=LinkFaults())
    driver = CoyoteV2Driver(link)
    rules = [Rules(0, driver.soft_limits, driver.max_raise)]
    await driver.connect()
    try:
        for step in plan:
            if step.stall:
                loop.advance(step.stall)
            if step.caps is not None or step.max_raise is not None:
                caps = step.caps if step.caps is not None else driver.soft_limits
                if step.max_raise is not None:
                    driver.set_max_raise(step.max_raise)
                await driver.set_soft_limits(caps)
                rules.append(Rules(len(link.written), caps, driver.max_raise))
            if step.lease:
                driver.renew_lease(step.lease)
            output = ButterflyOutput(
                a=EmsChannelOutput(step.a, step.frequency, step.intensity),
                b=EmsChannelOutput(step.b, step.frequency, step.intensity),
            )
            with contextlib.suppress(SafetyError):
                # A request handled after a gap in service is dropped: allowed.
                await driver.apply(output)
            await asyncio.sleep(step.wait)
        await driver.stop()
        await asyncio.sleep(0.3)
        # After stop: zero, then nothing more.
        assert firmware.wire_strengths == (0, 0)
        assert firmware.is_quiet
    finally:
        await driver.close()
    assert firmware.max_z <= cv2.MAX_Z
    check_frames(link, rules)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=8))
def test_every_frame_within_cap_ramp_and_z(plan: list[Step]) -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(plan, loop), timeout=600))
    finally:
        loop.close()


def test_the_property_fails_on_a_driver_that_ramps_too_fast() -> None:
    """The check can fail: a driver allowed to raise by 10 per 100 ms is caught."""
    loop = VirtualTimeLoop()

    async def run() -> None:
        firmware = CoyoteV2Firmware("p", now=loop.time())
        link = MemoryLink(firmware)
        driver = CoyoteV2Driver(link)
        driver.max_raise = 10  # past rule 2, behind the setter's back
        await driver.connect()
        driver.renew_lease(5)
        await driver.apply(ButterflyOutput(a=EmsChannelOutput(60, 50, 100)))
        await asyncio.sleep(1.0)
        await driver.close()
        try:
            check_frames(link, [Rules(0, (200, 200), 5)])
        except AssertionError:
            return
        raise AssertionError("a ramp of 10 per 100 ms went unnoticed")

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
