"""EB1 butterfly driver: daemon rules 1-4 on the wire, timing against the firmware's clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devices.drivers.eb1 import EB1Driver
from devices.errors import IdentificationError, LinkError
from devices.events import DeviceEvent, EmsWheelChanged, LinkLost
from devices.outputs import ButterflyOutput, EmsChannelOutput
from devices.protocols import eb1
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.eb1 import EB1Firmware
from simulator.recording import Recorder
from tests.devices.behaviour import wait_until
from tests.devices.test_drivers_memory import butterfly_pair
from tests.method.virtual_time import run_virtual


def out(a: int, b: int, *, intensity: int = 100) -> ButterflyOutput:
    """Both channels at these strengths, 50 Hz-ish, full waveform intensity."""
    return ButterflyOutput(
        a=EmsChannelOutput(strength=a, frequency=50, intensity=intensity),
        b=EmsChannelOutput(strength=b, frequency=80, intensity=intensity),
    )


def b0s(link: MemoryLink, start: int = 0) -> list[tuple[float, eb1.B0]]:
    """Every B0 the driver wrote from written[start], with its time."""
    found = []
    for message in link.written[start:]:
        decoded = eb1.decode(message.data)
        if isinstance(decoded, eb1.B0):
            found.append((message.t, decoded))
    return found


def levels(
    written: list[tuple[float, eb1.B0]], start: tuple[int, int] = (0, 0)
) -> list[tuple[float, eb1.B0, tuple[int, int]]]:
    """Each B0 with the strengths the unit holds after it, from start, by the device's own
    rule (eb1.apply_strength): what the wire alone does, with no wheel and no soft limit."""
    level = list(start)
    found = []
    for t, b0 in written:
        for ch, (mode, value) in enumerate(((b0.mode_a, b0.value_a), (b0.mode_b, b0.value_b))):
            level[ch] = eb1.apply_strength(level[ch], mode, value, eb1.MAX_STRENGTH)
        found.append((t, b0, (level[0], level[1])))
    return found


def sets_a_nonzero_strength(b0: eb1.B0) -> bool:
    """A "set to" other than 0: the driver writes none (a change is relative; see the driver)."""
    return any(
        mode == eb1.StrengthMode.SET and value != 0
        for mode, value in ((b0.mode_a, b0.value_a), (b0.mode_b, b0.value_b))
    )


Connected = tuple[EB1Driver, EB1Firmware, MemoryLink]


@contextlib.asynccontextmanager
async def connected(**options: Any) -> AsyncIterator[Connected]:
    """A butterfly_pair(**options), connected with a 30 s lease; faults cleared and closed after."""
    driver, firmware, link = butterfly_pair(**options)
    try:
        await driver.connect()
        driver.renew_lease(30)
        yield driver, firmware, link
    finally:
        if link.faults is not None:
            link.faults.clear()  # so that close() can stop the unit
        await driver.close()


async def drive_to(
    driver: EB1Driver, firmware: EB1Firmware, a: int, b: int, *, timeout: float = 2.0
) -> None:
    """Apply strengths a and b and wait until the unit holds them."""
    await driver.apply(out(a, b))
    await wait_until(lambda: firmware.strengths == (a, b), timeout=timeout, what=f"({a}, {b})")


def is_zeroing(b0: eb1.B0) -> bool:
    """Both strengths set to 0, both channels silent (daemon rule 3)."""
    return (
        b0.seq != 0
        and b0.mode_a == b0.mode_b == eb1.StrengthMode.SET
        and b0.value_a == b0.value_b == 0
        and not eb1.wave_valid(b0.freq_a, b0.intensity_a)
        and not eb1.wave_valid(b0.freq_b, b0.intensity_b)
    )


async def test_connect_writes_soft_limits_then_zeroes_with_a_sequenced_b0() -> None:
    driver, firmware, link = butterfly_pair(driver_options={"soft_limits": (150, 30)})
    try:
        caps = await driver.connect()
        assert link.written[0].data == bytes.fromhex("bf961e80808080")
        # The vendor's vector: sequence 1, set both to 0, both channels silent.
        assert link.written[1].data == bytes.fromhex("b01f000000000000000000650000000000000065")
        assert firmware.soft_limits == (150, 30)
        assert driver.soft_limits == (150, 30)
        # The capabilities say what the unit can do; the soft limits are a session's rule.
        assert [ch.max_strength for ch in caps.ems_channels] == [200, 200]
        assert all(m.channel == eb1.WRITE_UUID for m in link.written)
    finally:
        await driver.close()


class WrongBEFirmware(EB1Firmware):
    """A unit whose BE does not confirm the BF (say, another protocol revision)."""

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        if data[:1] == b"\xbf":
            self.outbox.append((eb1.NOTIFY_UUID, bytes.fromhex("be646480808080")))
            return
        super().receive(data, now, source)


async def test_a_be_that_does_not_match_is_an_identification_error() -> None:
    link = MemoryLink(WrongBEFirmware("odd", now=asyncio.get_running_loop().time()))
    driver = EB1Driver(link, soft_limits=(150, 30))
    try:
        with pytest.raises(IdentificationError, match="BE"):
            await driver.connect()
        assert not link.is_open
        assert not any(isinstance(eb1.decode(m.data), eb1.B0) for m in link.written)
    finally:
        await driver.close()


def test_bad_options() -> None:
    link = MemoryLink(EB1Firmware("x"))
    with pytest.raises(ValueError, match="max_raise"):
        EB1Driver(link, max_raise_per_100ms=6)
    with pytest.raises(ValueError, match="soft limits"):
        EB1Driver(link, soft_limits=(201, 10))


async def test_ramp_raises_at_most_5_per_b0_and_waits_for_each_b1() -> None:
    # A slow radio: every answer takes 150 ms, longer than one B0 period.
    recorder = Recorder()
    async with connected(faults=LinkFaults(delay=0.15), recorder=recorder) as (driver, fw, link):
        start = len(link.written)
        await drive_to(driver, fw, 23, 11, timeout=4.0)
        written = b0s(link, start)
        changes: list[tuple[float, int]] = []
        before = (0, 0)
        for t, b0, after in levels(written):
            assert not sets_a_nonzero_strength(b0), b0
            for ch in (0, 1):
                assert after[ch] - before[ch] <= 5, f"raised {before[ch]} -> {after[ch]}"
            before = after
            if b0.changes_strength:
                assert b0.seq != 0
                changes.append((t, b0.seq))
        # Never a new change before the B1 of the previous one arrived.
        b1_times: dict[int, list[float]] = {}
        for message in link.delivered:
            decoded = eb1.decode(message.data)
            if isinstance(decoded, eb1.B1) and decoded.seq:
                b1_times.setdefault(decoded.seq, []).append(message.t)
        for (t_prev, seq_prev), (t_next, seq_next) in itertools.pairwise(changes):
            assert seq_next != seq_prev
            assert any(t_prev < t <= t_next for t in b1_times[seq_prev])
        # The waveform kept coming every 100 ms while changes waited for their B1.
        times = [t for t, _ in written]
        assert max(b - a for a, b in itertools.pairwise(times)) < 0.13
        # The firmware's own record: no step up larger than 5.
        for channel in ("strength_a", "strength_b"):
            values = [int(r["value"]) for r in recorder.rows if r["channel"] == channel]  # type: ignore[call-overload]
            assert all(b - a <= 5 for a, b in itertools.pairwise(values))


async def test_a_slower_ramp_from_the_profile() -> None:
    async with connected(driver_options={"max_raise_per_100ms": 2}) as (driver, firmware, link):
        assert driver.max_raise == 2
        start = len(link.written)
        await drive_to(driver, firmware, 6, 0)
        raises = [(t, level[0]) for t, b0, level in levels(b0s(link, start)) if b0.changes_strength]
        assert raises[-1][1] == 6
        # Never more than 2 per 100 ms, counted on elapsed time from the first raise.
        t0 = raises[0][0]
        for (_, a), (t, b) in itertools.pairwise(raises):
            assert 0 < b - a <= 2
            assert b <= 2 + 2 * (t - t0) / 0.1 + 1e-6


async def test_lowering_is_at_once() -> None:
    async with connected() as (driver, firmware, _link):
        await drive_to(driver, firmware, 15, 15)
        await drive_to(driver, firmware, 2, 15, timeout=0.25)


async def test_revoked_lease_output_ends_within_100ms_of_the_last_b0() -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    async with connected(recorder=recorder) as (driver, firmware, link):
        await drive_to(driver, firmware, 10, 10)
        driver.revoke_lease()
        revoked_at = loop.time()
        await wait_until(
            lambda: firmware.outputs["output_a"] == 0 and firmware.outputs["output_b"] == 0,
            timeout=0.5,
        )
        await asyncio.sleep(0.2)
        last_b0 = b0s(link)[-1][0]
        assert last_b0 <= revoked_at + 0.11, "B0s went on after the lease was revoked"
        silenced = max(
            float(r["t"])  # type: ignore[arg-type]
            for r in recorder.rows
            if r["channel"] in ("output_a", "output_b") and r["value"] == 0
        )
        assert last_b0 < silenced <= last_b0 + 0.1 + 0.01
        # The strength itself is kept by the unit; the driver knows the waveform stopped.
        assert firmware.strengths == (10, 10)
        assert driver.output.is_zero

        # A renewed lease starts again from 0 and ramps.
        start = len(link.written)
        driver.renew_lease(30)
        await driver.apply(out(10, 10))
        await wait_until(lambda: any(b0.changes_strength for _, b0 in b0s(link, start)))
        first_change = next(b0 for _, b0 in b0s(link, start) if b0.changes_strength)
        assert (first_change.value_a, first_change.value_b) == (0, 0)
        await wait_until(lambda: firmware.outputs["output_a"] == 10, timeout=2.0)


async def test_stop_sends_one_zeroing_b0_then_nothing() -> None:
    async with connected() as (driver, firmware, link):
        await drive_to(driver, firmware, 10, 10)
        start = len(link.written)
        await driver.stop()
        await asyncio.sleep(0.3)
        after = b0s(link, start)
        assert len(after) >= 1
        assert is_zeroing(after[-1][1])
        assert [b0 for _, b0 in after if b0.changes_strength] == [after[-1][1]]
        assert firmware.strengths == (0, 0)
        assert firmware.is_quiet


async def test_lease_expiry_and_pause_send_the_zeroing_b0() -> None:
    async with connected() as (driver, firmware, link):
        # Pause: the program asks for strength 0 on both channels.
        await drive_to(driver, firmware, 5, 5, timeout=1.0)
        await drive_to(driver, firmware, 0, 0, timeout=0.3)
        await asyncio.sleep(0.15)
        count = len(link.written)
        assert is_zeroing(b0s(link)[-1][1])
        await asyncio.sleep(0.3)
        assert len(link.written) == count, "B0s went on during a pause"

        # Lease expiry: the same zeroing B0, then silence.
        driver.revoke_lease()  # renew_lease never shortens a lease
        driver.renew_lease(0.4)
        await drive_to(driver, firmware, 5, 5, timeout=1.0)
        await wait_until(lambda: firmware.strengths == (0, 0), timeout=0.6)
        assert is_zeroing(b0s(link)[-1][1])
        assert driver.output.is_zero


async def test_wheel_raise_is_adopted_and_not_fought() -> None:
    events: list[DeviceEvent] = []
    loop = asyncio.get_running_loop()
    async with connected() as (driver, firmware, link):
        driver.add_listener(events.append)
        await drive_to(driver, firmware, 10, 10)
        firmware.turn_wheel(None, 14, loop.time())
        link.wake()
        await wait_until(lambda: any(isinstance(e, EmsWheelChanged) for e in events))
        await asyncio.sleep(0.3)
        assert firmware.strengths == (10, 14), "the driver fought the user's wheel"
        assert driver.strengths == (10, 14)
        assert driver.user_ceiling == (None, 14)
        # A new program strength is obeyed again, under the ceiling.
        await driver.apply(out(10, 30))
        await asyncio.sleep(0.4)
        assert firmware.strengths == (10, 14)
        await drive_to(driver, firmware, 10, 6, timeout=0.3)
        driver.reset_session()
        await drive_to(driver, firmware, 10, 16, timeout=1.0)


def test_a_raise_on_its_way_as_the_wheel_turns_down_lands_a_step_above_the_word() -> None:
    # On virtual time, so the crossing happens exactly as planned whatever the load.
    run_virtual(raise_crossing_the_wheel())


async def raise_crossing_the_wheel(*, lose_its_answer: bool = False) -> None:
    # Answers take 150 ms on this radio. The user turns the wheel from 20 down to 4,
    # 80 ms after the unit took a raise to 20: the B1 of that raise reaches the host
    # first, the host sends the next raise at once, and the unit takes it before the
    # host hears of the wheel. That raise must land one ramp step above the user's
    # word, not at 25 (as "set to 25" would), and then go down to the word. With its
    # answer lost, the host must not resend it as a raise (4 + 5 + 5): it takes it back.
    loop = asyncio.get_running_loop()
    async with connected(faults=LinkFaults(delay=0.15)) as (driver, firmware, link):
        events: list[DeviceEvent] = []
        driver.add_listener(events.append)
        after_turn: list[int] = []
        turned: list[float] = []

        def turn() -> None:
            turned.append(loop.time())
            firmware.turn_wheel(4, None, loop.time())
            link.wake()
            if lose_its_answer:
                # After the wheel's B1 has left (at the wake), before the crossing raise
                # lands: the next answer is that raise's.
                loop.call_later(0.01, lambda: setattr(link, "drop_next_answers", 1))

        def on_output(channel: str, value: int | str) -> None:
            if channel != "strength_a":
                return
            if turned:
                after_turn.append(int(value))
            elif value == 20:
                loop.call_later(0.08, turn)

        firmware.on_output = on_output
        await driver.apply(out(40, 0))
        await wait_until(lambda: any(isinstance(e, EmsWheelChanged) for e in events), timeout=3)
        await asyncio.sleep(0.6)
        # The crossing happened (else this test proves nothing), and cost one step at most.
        assert after_turn[0] == 4, after_turn
        assert max(after_turn) == 4 + eb1.MAX_RAISE_PER_B0, after_turn
        assert after_turn[-1] == 4, after_turn
        assert firmware.strengths[0] == 4
        if lose_its_answer:
            assert link.dropped_answers == 1
            assert after_turn == [4, 4 + eb1.MAX_RAISE_PER_B0, 4], "taken back by the resend"
        assert driver.user_ceiling == (4, None)


def test_a_crossing_raise_whose_answer_is_lost_is_taken_back_not_resent() -> None:
    run_virtual(raise_crossing_the_wheel(lose_its_answer=True))


async def test_lost_b1_is_resent_and_three_misses_lose_the_link() -> None:
    events: list[DeviceEvent] = []
    async with connected() as (driver, firmware, link):
        driver.add_listener(events.append)
        start = len(link.written)
        link.drop_next_answers = 1
        await driver.apply(out(5, 0))

        def raises() -> list[eb1.B0]:
            return [
                b0
                for _, b0 in b0s(link, start)
                if b0.changes_strength and b0.mode_a == eb1.StrengthMode.INCREASE
            ]

        await wait_until(
            lambda: len(raises()) == 2 and driver.strengths == firmware.strengths == (5, 0),
            timeout=1.5,
        )
        first, again = raises()
        assert again == first, "the same change, resent"
        # Its first write had landed (only the answer was lost): the raise landed twice, one
        # ramp step over the target, and the B1 of the resend brought it down at once.
        assert [level for _, _, level in levels(b0s(link, start))][-1] == (5, 0)
        assert max(level[0] for _, _, level in levels(b0s(link, start))) == 10

        start = len(link.written)
        link.drop_next_answers = 100
        await driver.apply(out(10, 0))
        await wait_until(lambda: any(isinstance(e, LinkLost) for e in events), timeout=2.5)
        assert not driver.is_connected
        assert len(raises()) == 4
        assert len({b0.seq for b0 in raises()}) == 1
        with pytest.raises(LinkError):
            await driver.stop()


async def test_status_reads_the_battery() -> None:
    async with connected(battery=73) as (driver, firmware, _link):
        await driver.apply(out(8, 0, intensity=50))
        await wait_until(lambda: firmware.strengths == (8, 0), timeout=1.0)
        report = await driver.status()
        assert report.battery == 73
        assert report.temperature is None
        assert report.outputs == {"strength_a": 8, "strength_b": 0, "output_a": 4, "output_b": 0}
