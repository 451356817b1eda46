"""The drivers' background tasks wake only when something is due, and the butterfly's
B0s go out as soon as they have something new to carry.

Counts and orderings rather than durations: the machines these run on are shared and
noisy, so every time bound here is a generous one, or a lower bound the driver keeps
by construction (a gap it never shortens), never a latency it must meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from devices.capabilities import KneadDirection
from devices.drivers.eb1 import B0_INTERVAL, MIN_B0_GAP, EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from devices.errors import SafetyError
from devices.events import DeviceEvent, ServiceGap
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from devices.protocols import eb1, sp1, vb1
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.firmware.eb1 import EB1Firmware
from tests.devices.behaviour import wait_until
from tests.devices.test_driver_eb1 import b0s, connected, drive_to, is_zeroing, levels, out
from tests.devices.test_drivers_memory import belt_pair, butterfly_pair, pillow_pair
from tests.method.virtual_time import run_virtual

Driver = VB1Driver | SP1Driver | EB1Driver
D = TypeVar("D", bound=Driver)
F = TypeVar("F", bound=Firmware)

IDLE_S = 0.5
"""How long an idle driver is watched."""
MAX_IDLE_PASSES = 3
"""Passes allowed in IDLE_S while idle: the polling loops made about 10 (VB1, SP1) or 6 (EB1)."""
SETTLE_S = 0.05
"""Time for the answers to a connect or a stop to arrive before counting starts."""
LEASE_S = 0.3
"""A short lease, for the expiry tests."""
PROMPT_S = 0.5
"""A generous bound for "at once" on a busy machine: half the belt's watchdog time."""


BELT_ON = BeltOutput(levels=(10, 64, 128, 255))
PILLOW_ON = PillowOutput(speed=2, direction=KneadDirection.CLOCKWISE)


@dataclass(frozen=True)
class Kind:
    """One device kind as these tests drive it."""

    name: str
    make: Callable[[], tuple[Driver, Firmware, MemoryLink]]
    on: Output
    is_stop: Callable[[bytes], bool]
    """True for the frame the driver writes when the lease ends with something on."""


KINDS = (
    Kind(
        "belt",
        belt_pair,
        BELT_ON,
        lambda data: vb1.decode(data).cmd == vb1.Command.STOP,
    ),
    Kind(
        "pillow",
        pillow_pair,
        PILLOW_ON,
        lambda data: sp1.decode(data).cmd == sp1.Command.STOP,
    ),
    Kind(
        "butterfly",
        butterfly_pair,
        out(10, 10),
        lambda data: isinstance(b0 := eb1.decode(data), eb1.B0) and is_zeroing(b0),
    ),
)


@contextlib.asynccontextmanager
async def opened(
    make: Callable[[], tuple[D, F, MemoryLink]], *, lease: float | None = 30.0
) -> AsyncIterator[tuple[D, F, MemoryLink]]:
    """A driver from make(), connected (and given a lease unless None); closed after."""
    driver, firmware, link = make()
    try:
        await driver.connect()
        if lease is not None:
            driver.renew_lease(lease)
        yield driver, firmware, link
    finally:
        await driver.close()


async def watch_idle(driver: Driver, link: MemoryLink) -> tuple[int, int]:
    """Passes of the driver's task and messages written over IDLE_S, once settled."""
    await asyncio.sleep(SETTLE_S)
    passes, sent = driver.wakeups, len(link.written)
    await asyncio.sleep(IDLE_S)
    return driver.wakeups - passes, len(link.written) - sent


async def assert_idle(driver: Driver, link: MemoryLink) -> None:
    """Over IDLE_S: nothing written, and the task hardly woke (a polling loop would have)."""
    passes, written = await watch_idle(driver, link)
    assert written == 0, f"{written} messages written while idle"
    assert passes < MAX_IDLE_PASSES, f"{passes} passes while idle"


async def b0s_from(
    link: MemoryLink, start: int, count: int, timeout: float = 2.0
) -> list[tuple[float, eb1.B0]]:
    """Wait until count B0s were written from written[start]; every B0 from there."""
    await wait_until(lambda: len(b0s(link, start)) >= count, timeout=timeout, what=f"{count} B0s")
    return b0s(link, start)


# -- idle -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_an_idle_driver_does_not_wake(kind: Kind) -> None:
    # A running lease alone, with every output at zero, needs nothing.
    async with opened(kind.make) as (driver, firmware, link):
        await assert_idle(driver, link)
        # After a session output and its stop, idle again.
        await driver.apply(kind.on)
        await asyncio.sleep(0.2)
        assert not firmware.is_quiet
        await driver.stop()
        await assert_idle(driver, link)
        assert firmware.is_quiet


# -- the lease --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_the_lease_expiry_stop_comes_at_once(kind: Kind) -> None:
    loop = asyncio.get_running_loop()
    async with opened(kind.make, lease=None) as (driver, firmware, link):
        start = len(link.written)
        lease_from = loop.time()
        driver.renew_lease(LEASE_S)
        await driver.apply(kind.on)
        await wait_until(
            lambda: any(kind.is_stop(m.data) for m in link.written[start:]),
            timeout=LEASE_S + 2.0,
            what="the stop at the lease's end",
        )
        stopped_at = next(m.t for m in link.written[start:] if kind.is_stop(m.data))
        assert lease_from + LEASE_S <= stopped_at, "stopped before the lease ended"
        assert stopped_at <= lease_from + LEASE_S + PROMPT_S
        await wait_until(lambda: firmware.is_quiet, what="the device quiet")
        assert driver.output.is_zero
        # Then idle: nothing more to do until the next session.
        await assert_idle(driver, link)


async def test_a_revoked_belt_stays_silent_until_the_lease_comes_back() -> None:
    async with opened(belt_pair) as (driver, firmware, link):
        await driver.apply(BELT_ON)
        driver.revoke_lease()
        # Silent and asleep: the belt's own watchdog would stop it (rule 4), a second after
        # the SET_LEVELS.
        await assert_idle(driver, link)
        assert not driver.output.is_zero
        # A new lease before the watchdog trips: the feeding starts again at once.
        start = len(link.written)
        driver.renew_lease(30)
        await wait_until(
            lambda: any(vb1.decode(m.data).cmd == vb1.Command.PING for m in link.written[start:]),
            timeout=PROMPT_S,
            what="a PING",
        )
        await asyncio.sleep(1.2)
        assert firmware.watchdog_tripped_count == 0
        assert firmware.levels == BELT_ON.levels


async def test_a_revoked_pillow_is_stopped_by_the_next_frame() -> None:
    async with opened(pillow_pair) as (driver, firmware, link):
        await driver.apply(PILLOW_ON)
        start = len(link.written)
        driver.revoke_lease()
        await wait_until(lambda: len(link.written) > start, timeout=PROMPT_S, what="a frame")
        assert sp1.decode(link.written[start].data).cmd == sp1.Command.STOP
        await wait_until(lambda: firmware.is_quiet)


async def test_a_revoked_butterfly_writes_no_more_b0s_and_sleeps() -> None:
    async with connected() as (driver, firmware, link):
        await drive_to(driver, firmware, 10, 10)
        driver.revoke_lease()
        await assert_idle(driver, link)
        # The unit's own rule: no B0 for 100 ms, no output.
        assert firmware.is_quiet


# -- a gap in service: a stall past the lease ----------------------------------------------

STALL_S = 0.7
"""A stall past the lease (0.5 s) but within the belt's 1 s watchdog: it still runs."""
OWNER_LEASE_S = 0.5
"""The session runner's lease, renewed every OWNER_PASS_S as the runner does."""
OWNER_PASS_S = 0.05

OUTPUT_FRAME: dict[str, Callable[[bytes], bool]] = {
    "belt": lambda data: (
        vb1.decode(data).cmd in (vb1.Command.SET_LEVELS, vb1.Command.SET_HEAT, vb1.Command.PING)
    ),
    "pillow": lambda data: sp1.decode(data).cmd == sp1.Command.SET,
    "butterfly": lambda data: isinstance(b0 := eb1.decode(data), eb1.B0) and not is_zeroing(b0),
}
"""Per kind: True for a frame that puts something out or keeps it on (not a stop)."""


async def freeze(seconds: float, then: Callable[[], None] | None = None) -> float:
    """Block the event loop for seconds from inside it (a stalled daemon); when it ended.

    then: called at once after the stall, before anything else on the loop runs.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[float] = loop.create_future()

    def block() -> None:
        time.sleep(seconds)  # deliberate: nothing on this loop may run meanwhile
        resumed = loop.time()
        if then is not None:
            then()
        ended.set_result(resumed)

    loop.call_soon(block)
    return await ended


@contextlib.asynccontextmanager
async def owner(driver: Driver) -> AsyncIterator[None]:
    """A healthy owner meanwhile: the lease renewed on every pass, as the runner does."""

    async def renew() -> None:
        while True:
            driver.renew_lease(OWNER_LEASE_S)
            await asyncio.sleep(OWNER_PASS_S)

    task = asyncio.get_running_loop().create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gaps(events: list[DeviceEvent]) -> int:
    """How many ServiceGap events were reported."""
    return sum(isinstance(e, ServiceGap) for e in events)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_renewing_a_lapsed_lease_is_a_gap_the_device_is_zeroed_first(kind: Kind) -> None:
    """Promises 2 and 4: the owner's first act after a stall is to renew (as the runner's
    is). That renewal does not extend the lease: it reports ServiceGap and the driver has
    forgotten what it held before anything else runs; the first frame after the stall
    stops the device, and nothing brings the held output back."""
    events: list[DeviceEvent] = []
    seen: list[tuple[int, bool, bool]] = []
    async with opened(kind.make, lease=None) as (driver, firmware, link):
        driver.add_listener(events.append)
        async with owner(driver):
            await driver.apply(kind.on)
            await wait_until(lambda: not firmware.is_quiet, what="the device on")
            await asyncio.sleep(0.25)  # the keepalive or the B0 cadence under way

            def renew() -> None:
                driver.renew_lease(OWNER_LEASE_S)
                seen.append((gaps(events), driver.output.is_zero, driver.lease_valid))

            resumed = await freeze(STALL_S, then=renew)
            # Right inside renew_lease: the gap reported, the targets gone, a new lease.
            assert seen == [(1, True, True)]
            await wait_until(lambda: firmware.is_quiet, timeout=PROMPT_S, what="the device off")
            await asyncio.sleep(0.3)  # still leased: nothing comes back by itself
        after = [m for m in link.written if m.t >= resumed]
        assert after, "nothing was sent after the stall: the device ran on"
        assert kind.is_stop(after[0].data), "the first frame after the stall is not a stop"
        assert not any(OUTPUT_FRAME[kind.name](m.data) for m in after)
        assert firmware.is_quiet
        assert driver.output.is_zero
        assert gaps(events) == 1
        if isinstance(firmware, EB1Firmware):
            # The unit keeps a strength through silence: zeroed, so none comes back.
            assert firmware.strengths == (0, 0)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
async def test_a_frame_awaiting_its_answer_through_a_stall_is_never_resent(kind: Kind) -> None:
    """Promise 2: no frame built before a gap in service is sent after it. The answer to
    the first output frame is lost, so its resend is due during the stall; after it the
    driver finds the lapsed lease, drops the resend and stops the device instead."""
    events: list[DeviceEvent] = []
    async with opened(kind.make, lease=None) as (driver, firmware, link):
        driver.add_listener(events.append)
        async with owner(driver):
            start = len(link.written)
            link.drop_next_answers = 1
            applying = asyncio.ensure_future(driver.apply(kind.on))
            await wait_until(
                lambda: any(OUTPUT_FRAME[kind.name](m.data) for m in link.written[start:]),
                timeout=PROMPT_S,
                what="the output frame",
            )
            resumed = await freeze(STALL_S)
            (outcome,) = await asyncio.gather(applying, return_exceptions=True)
            await wait_until(lambda: firmware.is_quiet, timeout=PROMPT_S, what="the device off")
            await asyncio.sleep(0.3)
        # The belt's and the pillow's apply was waiting for its answer: it is refused.
        assert outcome is None or isinstance(outcome, SafetyError), outcome
        after = [m for m in link.written if m.t >= resumed]
        assert not any(OUTPUT_FRAME[kind.name](m.data) for m in after), "a stale frame was sent"
        assert gaps(events) == 1
        assert driver.output.is_zero


# -- the butterfly's B0s -------------------------------------------------------------------


def carries(b0: eb1.B0, target: ButterflyOutput, previous: ButterflyOutput) -> bool:
    """True when b0 takes each strength that changed from previous to target's, and has
    target's waveform."""
    for mode, value, new, old in (
        (b0.mode_a, b0.value_a, target.a, previous.a),
        (b0.mode_b, b0.value_b, target.b, previous.b),
    ):
        reached = eb1.apply_strength(old.strength, mode, value, eb1.MAX_STRENGTH)
        if new.strength != old.strength and reached != new.strength:
            return False
    return (
        b0.freq_a == (target.a.frequency,) * 4
        and b0.intensity_a == (target.a.intensity,) * 4
        and b0.freq_b == (target.b.frequency,) * 4
        and b0.intensity_b == (target.b.intensity,) * 4
    )


async def test_a_new_target_is_the_next_b0_and_restarts_the_cadence() -> None:
    # A long cadence: a B0 that follows apply() long before it is the wake-up's doing.
    interval = 0.5
    async with connected(driver_options={"b0_interval": interval}) as (driver, firmware, link):
        await drive_to(driver, firmware, 10, 10)
        previous = out(10, 10)
        for target in (out(6, 10), out(6, 10, intensity=40), out(8, 9, intensity=70)):
            # Past the ramp window and the minimum gap: this target can go at once.
            await asyncio.sleep(0.15)
            last_before = b0s(link)[-1][0]
            start = len(link.written)
            await driver.apply(target)
            t, first = (await b0s_from(link, start, 1))[0]
            assert carries(first, target, previous), f"{first} does not carry {target}"
            assert t - last_before < interval, "the change waited for the cadence"
            # The cadence starts again from that write.
            t_next, _ = (await b0s_from(link, start, 2, timeout=2 * interval))[1]
            assert t_next - t >= interval - 1e-3
            previous = target
        assert firmware.strengths == (8, 9)


async def test_a_change_that_waited_for_its_b1_goes_when_the_b1_arrives() -> None:
    # A slow radio (every answer 200 ms late); no resend and no cadence B0 meanwhile.
    options = {"answer_timeout": 2.0, "b0_interval": 0.5}
    async with connected(faults=LinkFaults(delay=0.2), driver_options=options) as (
        driver,
        firmware,
        link,
    ):
        start = len(link.written)
        await driver.apply(out(3, 0))
        await b0s_from(link, start, 1)
        await driver.apply(out(1, 0))  # lowering: rule 2 does not hold it back
        await wait_until(lambda: firmware.strengths == (1, 0), timeout=3.0)
        changes = [(t, b0) for t, b0 in b0s(link, start) if b0.changes_strength]
        assert [level[0] for _, b0, level in levels(b0s(link, start)) if b0.changes_strength] == [
            3,
            1,
        ]
        (t_first, first), (t_second, _) = changes
        b1_at = next(
            m.t
            for m in link.delivered
            if isinstance(b1 := eb1.decode(m.data), eb1.B1) and b1.seq == first.seq
        )
        assert t_first < b1_at <= t_second, "a change went out before the B1 of the last"
        after_b1 = [b0 for t, b0 in b0s(link, start) if t >= b1_at]
        assert after_b1[0].changes_strength, "the waiting change was not the next B0"


def allowed_rise(seconds: float, max_raise: int = eb1.MAX_RAISE_PER_B0) -> int:
    """Rule 2 between two B0s this far apart: max_raise per started 100 ms."""
    return max_raise * max(1, math.ceil(seconds / 0.1 - 1e-9))


def waveform(b0: eb1.B0) -> tuple[object, ...]:
    """What a B0 plays, without its strengths."""
    return (b0.freq_a, b0.intensity_a, b0.freq_b, b0.intensity_b)


def test_rapid_target_changes_keep_the_ramp_the_b1_rule_and_the_gap() -> None:
    # On virtual time: the gaps measured are the driver's own, not the time a loaded
    # machine takes between the driver reading the clock and the link stamping the write.
    run_virtual(rapid_target_changes())


async def rapid_target_changes() -> None:
    # Answers a little late, so changes often have to wait for their B1.
    async with connected(faults=LinkFaults(delay=0.02)) as (driver, firmware, link):
        start = len(link.written)
        rng = random.Random(20240611)
        for _ in range(150):
            target = ButterflyOutput(
                a=EmsChannelOutput(rng.choice((0, 5, 20, 40, 60)), 50, rng.randint(0, 100)),
                b=EmsChannelOutput(rng.randint(0, 60), 80, rng.randint(0, 100)),
            )
            await driver.apply(target)
            await asyncio.sleep(rng.uniform(0.0, 0.03))
        await driver.stop()
        written = b0s(link, start)
        assert len(written) > 20
        assert firmware.is_quiet

    # Rule 2, per channel, between every pair of B0s (the levels they set).
    held = [(t, level) for t, _, level in levels(written)]
    assert held[-1][1] == firmware.strengths == (0, 0)
    assert max(max(level) for _, level in held) >= 2 * eb1.MAX_RAISE_PER_B0, "hardly raised"
    for (t_i, before), (t_j, after) in itertools.combinations(held, 2):
        for ch in (0, 1):
            rise = after[ch] - before[ch]
            assert rise <= allowed_rise(t_j - t_i), (
                f"channel {'AB'[ch]} rose {before[ch]} -> {after[ch]} in {t_j - t_i:.4f} s"
            )

    # The minimum gap between B0s that carry something new (a strength or a waveform the
    # B0 before did not); only a zeroing B0 may come sooner. A cadence B0 (nothing new)
    # does not count: news may follow it at once. The driver takes its time just before
    # the write, the link just after: allow 1 ms between the two.
    news = [
        (t, b0)
        for (_, prev), (t, b0) in itertools.pairwise(written)
        if b0.changes_strength or waveform(b0) != waveform(prev)
    ]
    assert len(news) > 20
    for (t_i, _), (t_j, b0) in itertools.pairwise(news):
        if not is_zeroing(b0):
            assert t_j - t_i >= MIN_B0_GAP - 1e-3

    # The B1 rule: a change only once the B1 of the one before has arrived (a zeroing
    # B0 never waits; a resend repeats its own sequence number).
    b1_times: dict[int, list[float]] = {}
    for message in link.delivered:
        decoded = eb1.decode(message.data)
        if isinstance(decoded, eb1.B1) and decoded.seq:
            b1_times.setdefault(decoded.seq, []).append(message.t)
    changes = [(t, b0) for t, b0 in written if b0.changes_strength]
    for (t_prev, prev), (t_next, nxt) in itertools.pairwise(changes):
        if is_zeroing(nxt) or nxt.seq == prev.seq:
            continue
        assert any(t_prev < t <= t_next for t in b1_times.get(prev.seq, [])), (
            f"sequence {nxt.seq} went before the B1 of {prev.seq}"
        )


async def test_the_steady_state_is_one_b0_per_interval() -> None:
    loop = asyncio.get_running_loop()
    async with connected() as (driver, firmware, link):
        target = out(10, 10)
        await drive_to(driver, firmware, 10, 10)
        await asyncio.sleep(0.15)  # the last change's B1 is in and the ramp is done
        start = len(link.written)
        began = loop.time()
        # The runner applies the same output again on every pass: that adds no B0.
        while loop.time() - began < 0.6:
            await driver.apply(target)
            await asyncio.sleep(0.02)
        written = b0s(link, start)
        ended = loop.time()
    assert written, "no B0 while a session output runs"
    assert not any(b0.changes_strength for _, b0 in written)
    assert all(b - a >= B0_INTERVAL - 1e-3 for (a, _), (b, _) in itertools.pairwise(written))
    assert len(written) <= (ended - began) / B0_INTERVAL + 1
