"""VB1 belt driver: what only the belt does (retries, watchdog, identification, NUS)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from devices.capabilities import DeviceKind, Place
from devices.drivers.vb1 import VB1Driver
from devices.errors import DeviceRefusedError, FrameError, IdentificationError, LinkLostError
from devices.events import DeviceEvent, LinkLost, LowBattery, WatchdogTripped
from devices.outputs import BeltOutput, PillowOutput
from devices.protocols import vb1
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.recording import Recorder
from tests.devices.behaviour import wait_until
from tests.devices.test_drivers_memory import belt_pair

ON = BeltOutput(levels=(10, 64, 128, 255), heat=False)


def frames(link: MemoryLink) -> list[vb1.Frame]:
    """Every frame the driver wrote."""
    parser = vb1.FrameParser()
    return [frame for message in link.written for frame in parser.feed(message.data)]


async def test_hello_is_the_vendor_vector() -> None:
    driver, _, link = belt_pair()
    try:
        await driver.connect()
        assert link.written[0].data == bytes.fromhex("a502010181ec")
        assert [f.cmd for f in frames(link)] == [vb1.Command.HELLO, vb1.Command.STOP]
    finally:
        await driver.close()


async def test_six_motor_belt_without_heater() -> None:
    driver, _, link = belt_pair(motors=6, heater=False)
    try:
        caps = await driver.connect()
        assert len(caps.motors) == 6
        assert [m.place for m in caps.motors_at(Place.UPPER_BACK)] == [Place.UPPER_BACK] * 2
        assert not caps.heater
        sent = len(link.written)
        with pytest.raises(DeviceRefusedError) as refused:
            await driver.apply(BeltOutput(levels=(1,) * 6, heat=True))
        assert refused.value.code == vb1.NakCode.UNSUPPORTED
        with pytest.raises(ValueError, match="levels"):
            await driver.apply(BeltOutput(levels=(1, 2, 3, 4)))
        with pytest.raises(TypeError):
            await driver.apply(PillowOutput(speed=1))
        assert len(link.written) == sent, "a refused output reached the wire"
    finally:
        await driver.close()


async def test_a_dropped_answer_is_recovered_by_resending_the_same_frame() -> None:
    driver, _, link = belt_pair()
    try:
        await driver.connect()
        link.drop_next_answers = 1
        report = await driver.status()
        assert report.kind == DeviceKind.BELT
        assert driver.resends == 1
        status_frames = [
            m for m in link.written if vb1.decode(m.data).cmd == vb1.Command.GET_STATUS
        ]
        assert len(status_frames) == 2
        # Rule 7: the very same frame (same SEQ) again, after the 100 ms answer time.
        assert status_frames[0].data == status_frames[1].data
        assert 0.09 <= status_frames[1].t - status_frames[0].t <= 0.2
    finally:
        await driver.close()


async def test_three_retries_recover_but_no_more() -> None:
    driver, _, link = belt_pair()
    events: list[DeviceEvent] = []
    driver.add_listener(events.append)
    try:
        await driver.connect()
        link.drop_next_answers = 3
        await driver.status()
        assert driver.resends == 3

        link.drop_next_answers = 4
        before = len(link.written)
        with pytest.raises(LinkLostError):
            await driver.status()
        sent = link.written[before:]
        assert len(sent) == 4, "one frame and 3 retries (rule 2)"
        assert len({m.data for m in sent}) == 1
        assert not driver.is_connected
        assert [type(e) for e in events] == [LinkLost]
        assert not link.is_open
    finally:
        await driver.close()


async def test_lost_answers_under_random_faults() -> None:
    faults = LinkFaults(drop_answer_rate=0.3)
    driver, firmware, _ = belt_pair(faults=faults)
    try:
        await driver.connect()
        driver.renew_lease(10)
        for level in (10, 20, 30, 40, 50):
            await driver.apply(BeltOutput(levels=(level,) * 4))
            assert firmware.levels == (level,) * 4
        assert driver.resends > 0
    finally:
        faults.clear()
        await driver.close()


async def test_keepalive_feeds_the_watchdog_while_on() -> None:
    driver, firmware, link = belt_pair()
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(ON)
        start = len(link.written)
        await asyncio.sleep(1.5)
        times = [m.t for m in link.written[start - 1 :]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps
        assert max(gaps) <= vb1.FEED_INTERVAL
        assert firmware.watchdog_tripped_count == 0
        assert firmware.levels == ON.levels
    finally:
        await driver.close()


async def test_nothing_on_means_no_keepalive() -> None:
    driver, _, link = belt_pair()
    try:
        await driver.connect()
        driver.renew_lease(10)
        sent = len(link.written)
        await asyncio.sleep(0.5)
        assert len(link.written) == sent
    finally:
        await driver.close()


async def test_revoked_lease_lets_the_watchdog_trip() -> None:
    recorder = Recorder()
    driver, firmware, link = belt_pair(recorder=recorder)
    events: list[DeviceEvent] = []
    driver.add_listener(events.append)
    loop = asyncio.get_running_loop()
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(ON)
        await asyncio.sleep(0.3)
        driver.revoke_lease()
        revoked_at = loop.time()
        sent = len(link.written)
        await wait_until(lambda: firmware.watchdog_tripped_count == 1, timeout=2.0)
        last_frame = link.written[-1].t
        assert len(link.written) == sent, "the host kept talking after the lease was revoked"
        tripped_at = max(
            float(row["t"])  # type: ignore[arg-type]
            for row in recorder.rows
            if row["channel"] == "motor4" and row["value"] == 0
        )
        # Rule 4: 1000 ms after the last valid frame; the last feed was at most 200 ms
        # before the revocation.
        assert 0.999 <= tripped_at - last_frame <= 1.05  # the recorder rounds to 0.1 ms
        assert 0.75 <= tripped_at - revoked_at <= 1.5
        await wait_until(lambda: any(isinstance(e, WatchdogTripped) for e in events))
        assert driver.output.is_zero
        assert driver.is_connected
    finally:
        await driver.close()


async def test_low_battery_event() -> None:
    driver, firmware, link = belt_pair(battery=50)
    events: list[DeviceEvent] = []
    driver.add_listener(events.append)
    loop = asyncio.get_running_loop()
    try:
        await driver.connect()
        assert (await driver.status()).battery == 50
        firmware.set_battery(5, loop.time())
        link.wake()
        await wait_until(lambda: any(isinstance(e, LowBattery) for e in events))
        assert "low_battery" in (await driver.status()).flags
    finally:
        await driver.close()


async def test_ble_nus_frames_split_across_notifications() -> None:
    faults = LinkFaults(split=True)
    driver, firmware, link = belt_pair(faults=faults, ble=True)
    link.default_target = vb1.NUS_RX
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(ON)
        assert firmware.levels == ON.levels
        assert all(m.channel == vb1.NUS_RX for m in link.written)
        assert {m.channel for m in link.delivered} == {vb1.NUS_TX}
        for message in link.delivered:
            with pytest.raises(FrameError):
                vb1.decode(message.data)  # every frame came in two pieces
    finally:
        await driver.close()


class AckHelloFirmware(Firmware):
    """A belt that answers HELLO with ACK, as the vendor's test vector shows."""

    kind = DeviceKind.BELT

    def __init__(self) -> None:
        super().__init__("odd-belt")
        self._parser = vb1.FrameParser()

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        for frame in self._parser.feed(data):
            self.outbox.append((None, vb1.encode(vb1.ack(frame.seq, frame.cmd))))

    def tick(self, now: float) -> None:
        pass

    def next_deadline(self, now: float) -> float:
        return now + 1.0


async def test_ack_instead_of_info_is_an_identification_error() -> None:
    link = MemoryLink(AckHelloFirmware())
    driver = VB1Driver(link, name="odd-belt")
    try:
        with pytest.raises(IdentificationError, match="ACK"):
            await driver.connect()
        assert not driver.is_connected
        assert not link.is_open
    finally:
        await driver.close()


async def test_connect_times_out_on_a_silent_device() -> None:
    driver, _, link = belt_pair()
    link.drop_next_answers = 100
    with pytest.raises(LinkLostError):
        await driver.connect(timeout=5.0)
    assert not link.is_open
    await driver.close()
