"""Coyote V2 driver: the behaviour suite (memory link and the real BleakClient over the
simulated radio) and the daemon rules of docs/protocols/coyote-v2.md on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from devices.drivers.base import Device
from devices.drivers.coyote_v2 import WAVE_INTERVAL, CoyoteV2Driver
from devices.errors import IdentificationError, LinkError
from devices.events import DeviceEvent, DeviceFault, ServiceGap
from devices.links.ble import BleLink
from devices.outputs import ButterflyOutput, EmsChannelOutput
from devices.protocols import coyote_v2 as cv2
from simulator.ble.backend import SimBleakClient
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.firmware.coyote_v2 import CoyoteV2Firmware
from tests.devices.behaviour import CoyoteV2Behaviour, Pair, wait_until
from tests.devices.test_drivers_memory import MemoryEndpoint
from tests.devices.test_drivers_real_endpoints import RadioEndpointMixin
from tests.method.virtual_time import run_virtual


def _now() -> float:
    return asyncio.get_running_loop().time()


def coyote_pair(
    *, faults: LinkFaults | None = None, **options: Any
) -> tuple[CoyoteV2Driver, CoyoteV2Firmware, MemoryLink]:
    """A Coyote V2 driver over a MemoryLink to a simulated unit."""
    driver_options = options.pop("driver_options", {})
    firmware = CoyoteV2Firmware("butterfly-1", now=_now(), **options)
    link = MemoryLink(firmware, faults=faults)
    return CoyoteV2Driver(link, name="butterfly-1", **driver_options), firmware, link


def ble_coyote_link(address: str, radio: str) -> BleLink:
    """The BleLink the model table gives a Coyote V2 (writes with response, two notifies)."""
    return BleLink(
        address,
        write_uuid=cv2.STRENGTH_UUID,
        notify_uuids=(cv2.STRENGTH_UUID, cv2.BATTERY_UUID),
        write_response=True,
        client_backend=SimBleakClient,
        client_kwargs={"radio": radio},
    )


# -- the behaviour suite ------------------------------------------------------------


class TestCoyoteV2Memory(MemoryEndpoint, CoyoteV2Behaviour):
    """Coyote V2 over MemoryLink."""

    async def make_pair(self, **firmware_options: Any) -> Pair:
        driver, firmware, _ = coyote_pair(faults=LinkFaults(), **firmware_options)
        return driver, firmware


class TestCoyoteV2BleRadio(RadioEndpointMixin, CoyoteV2Behaviour):
    """Coyote V2 over the simulated radio, through bleak's real BleakClient."""

    async def make_pair(self, **firmware_options: Any) -> Pair:
        n = len(self.peripherals) + 1
        firmware: Firmware = CoyoteV2Firmware(f"butterfly-{n}", now=_now(), **firmware_options)
        address = f"5A:1D:03:00:00:{n:02X}"
        peripheral = self.radio.add_peripheral(firmware, address=address, faults=LinkFaults())
        link = ble_coyote_link(address, str(self.radio.socket_path))
        device: Device = CoyoteV2Driver(link, name=f"butterfly-{n}")
        self.peripherals[id(device)] = peripheral
        return device, firmware


# -- the daemon rules on the wire -----------------------------------------------------


def out(a: int, b: int, *, intensity: int = 100, frequency: int = 50) -> ButterflyOutput:
    """Both channels at these strengths."""
    return ButterflyOutput(
        a=EmsChannelOutput(strength=a, frequency=frequency, intensity=intensity),
        b=EmsChannelOutput(strength=b, frequency=frequency, intensity=intensity),
    )


Connected = tuple[CoyoteV2Driver, CoyoteV2Firmware, MemoryLink]


@contextlib.asynccontextmanager
async def connected(**options: Any) -> AsyncIterator[Connected]:
    """A coyote_pair, connected with a 30 s lease, closed after."""
    driver, firmware, link = coyote_pair(faults=LinkFaults(), **options)
    try:
        await driver.connect()
        driver.renew_lease(30)
        yield driver, firmware, link
    finally:
        if link.faults is not None:
            link.faults.clear()
        await driver.close()


def on_virtual_time(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on virtual time: every timer fires when due, so what the wire
    shows is the driver's timing, not how busy the machine running the test is."""

    @functools.wraps(test)
    def run() -> None:
        run_virtual(test())

    return run


def strengths_written(link: MemoryLink, start: int = 0) -> list[tuple[float, tuple[int, int]]]:
    """(time, wire strengths) of every 0x1504 write from written[start]."""
    return [
        (m.t, cv2.decode_strengths(m.data))
        for m in link.written[start:]
        if m.channel == cv2.STRENGTH_UUID
    ]


def waves_written(link: MemoryLink, channel: int, start: int = 0) -> list[float]:
    """Times of every waveform write to a channel from written[start]."""
    uuid = cv2.WAVEFORM_UUID_BY_CHANNEL[channel]
    return [m.t for m in link.written[start:] if m.channel == uuid]


async def test_connect_reads_then_zeroes() -> None:
    driver, firmware, link = coyote_pair()
    firmware.turn_wheel(9, 3, _now())  # left over from an earlier session
    try:
        caps = await driver.connect()
        assert caps.model == "Coyote V2"
        assert [m.data for m in link.written] == [bytes.fromhex("000000")]
        assert firmware.wire_strengths == (0, 0)
        assert driver.strengths == (0, 0)
    finally:
        await driver.close()


async def test_a_unit_that_is_not_a_coyote_is_refused() -> None:
    class Odd(CoyoteV2Firmware):
        def read_attribute(self, uuid: str, now: float) -> bytes:
            return b"\x01" if uuid == cv2.STRENGTH_UUID else super().read_attribute(uuid, now)

    link = MemoryLink(Odd("odd", now=_now()))
    driver = CoyoteV2Driver(link)
    with pytest.raises(IdentificationError):
        await driver.connect()
    assert not link.is_open
    assert link.written == []


def test_bad_options() -> None:
    link = MemoryLink(CoyoteV2Firmware("x"))
    with pytest.raises(ValueError, match="max_raise"):
        CoyoteV2Driver(link, max_raise_per_100ms=6)
    with pytest.raises(ValueError, match="soft limits"):
        CoyoteV2Driver(link, soft_limits=(201, 0))
    with pytest.raises(ValueError, match="wave_interval"):
        CoyoteV2Driver(link, wave_interval=0.1)


def test_the_ramp_is_5_per_100ms_and_waveforms_keep_it_alive() -> None:
    # On virtual time: every timer fires when due, so the cadence checked is the driver's,
    # not how busy the machine running the test is (a real-time gap is the firmware
    # rule's business: WAVEFORM_EXPIRY, tested below).
    run_virtual(_ramp_and_cadence())


async def _ramp_and_cadence() -> None:
    async with connected() as (driver, firmware, link):
        start = len(link.written)
        await driver.apply(out(20, 10))
        await wait_until(lambda: firmware.strengths == (20, 10), timeout=3.0, what="(20, 10)")
        written = strengths_written(link, start)
        # Steps of at most S 35 per channel per 100 ms, from 0.
        for (_, s1), (_, s2) in itertools.pairwise(written):
            for ch in range(2):
                if s2[ch] > s1[ch]:
                    assert s2[ch] - s1[ch] <= 35
        assert [s for _, s in written][:2] == [(35, 35), (70, 70)]
        assert written[1][0] - written[0][0] >= 0.1 - 1e-6
        # Both channels fed all along: no gap of 100 ms between two waveform writes.
        await asyncio.sleep(0.5)
        for ch in range(2):
            times = waves_written(link, ch, start)
            assert len(times) >= 8
            assert max(b - a for a, b in itertools.pairwise(times)) < 0.1
        assert firmware.max_z == 20
        assert not firmware.is_quiet


@on_virtual_time
async def test_caps_are_held_on_the_host() -> None:
    async with connected(driver_options={"soft_limits": (8, 200)}) as (driver, firmware, link):
        await driver.apply(out(50, 6))
        await wait_until(lambda: firmware.strengths == (8, 6), what="(8, 6)")
        await asyncio.sleep(0.3)
        assert firmware.strengths == (8, 6)
        await driver.set_soft_limits((3, 3))
        await wait_until(lambda: firmware.strengths == (3, 3), what="(3, 3)")
        assert max(s for _, pair in strengths_written(link) for s in pair) <= 8 * 7


@on_virtual_time
async def test_stop_writes_zero_first_then_no_waveform() -> None:
    async with connected() as (driver, firmware, link):
        await driver.apply(out(10, 10))
        await wait_until(lambda: firmware.strengths == (10, 10), what="(10, 10)")
        mark = len(link.written)
        await driver.stop()
        assert link.written[mark].channel == cv2.STRENGTH_UUID
        assert link.written[mark].data == bytes.fromhex("000000")
        await asyncio.sleep(0.3)
        assert len(link.written) == mark + 1, "a write followed the stop"
        assert firmware.is_quiet
        assert firmware.strengths == (0, 0)


@on_virtual_time
async def test_no_waveform_without_a_lease() -> None:
    async with connected() as (driver, firmware, link):
        driver.revoke_lease()
        mark = len(link.written)
        await driver.apply(out(10, 10))
        await asyncio.sleep(0.3)
        assert link.written[mark:] == []
        assert firmware.is_quiet


@on_virtual_time
async def test_intensity_0_feeds_nothing_and_the_channel_ramps_afresh() -> None:
    async with connected() as (driver, firmware, link):
        await driver.apply(out(10, 10))
        await wait_until(lambda: firmware.strengths == (10, 10), what="(10, 10)")
        await driver.apply(
            ButterflyOutput(a=EmsChannelOutput(10, 50, 0), b=EmsChannelOutput(10, 50, 100))
        )
        await wait_until(lambda: firmware.strengths == (0, 10), what="A at 0")
        mark = len(link.written)
        await asyncio.sleep(0.25)
        assert waves_written(link, 0, mark) == []
        assert len(waves_written(link, 1, mark)) >= 2
        await driver.apply(out(10, 10))
        await wait_until(lambda: firmware.strengths == (10, 10), what="A back at 10")
        a_values = [s[0] for _, s in strengths_written(link, mark)]
        assert a_values[0] == 35  # from 0, not at the level held before


async def test_a_stalled_pump_ramps_afresh() -> None:
    async with connected() as (driver, firmware, link):
        await driver.apply(out(10, 10))
        await wait_until(lambda: firmware.strengths == (10, 10), what="(10, 10)")
        mark = len(link.written)
        time.sleep(0.15)  # noqa: ASYNC251 - the event loop stalls: the waveforms run out
        await wait_until(lambda: len(strengths_written(link, mark)) >= 2, what="a fresh ramp")
        first = strengths_written(link, mark)[0][1]
        assert first == (0, 0)


@on_virtual_time
async def test_a_gap_in_service_zeroes_and_ramps_afresh() -> None:
    async with connected() as (driver, firmware, link):
        events: list[DeviceEvent] = []
        driver.add_listener(events.append)
        driver.revoke_lease()
        driver.renew_lease(0.3)  # a short lease, left to lapse unrevoked
        await driver.apply(out(10, 10))
        await wait_until(lambda: any(isinstance(e, ServiceGap) for e in events), what="a gap")
        await wait_until(lambda: firmware.strengths == (0, 0), what="zero")
        await asyncio.sleep(0.2)
        assert firmware.is_quiet
        # The owner comes back: the unit starts again from 0, never at the held 10.
        mark = len(link.written)
        driver.renew_lease(30)
        await driver.apply(out(10, 10))
        await wait_until(lambda: firmware.strengths == (10, 10), what="back at 10")
        assert strengths_written(link, mark)[0][1] == (35, 35)


@on_virtual_time
async def test_a_strength_the_unit_did_not_get_is_a_fault_and_a_ceiling() -> None:
    async with connected() as (driver, firmware, link):
        events: list[DeviceEvent] = []
        driver.add_listener(events.append)
        await driver.apply(out(20, 20))
        await wait_until(lambda: firmware.strengths == (20, 20), timeout=3.0, what="(20, 20)")
        firmware.turn_wheel(None, 5, _now())
        link.wake()
        await wait_until(lambda: any(isinstance(e, DeviceFault) for e in events), what="fault")
        assert driver.user_ceiling == (None, 5)
        await asyncio.sleep(0.3)
        assert firmware.strengths == (20, 5)
        driver.reset_session()
        await wait_until(lambda: firmware.strengths == (20, 20), what="B free again")


@on_virtual_time
async def test_delayed_answers_are_not_faults() -> None:
    async with connected() as (driver, firmware, link):
        assert link.faults is not None
        link.faults.delay = 0.25
        events: list[DeviceEvent] = []
        driver.add_listener(events.append)
        await driver.apply(out(20, 20))
        await wait_until(lambda: firmware.strengths == (20, 20), timeout=3.0, what="(20, 20)")
        await asyncio.sleep(0.4)
        assert not [e for e in events if isinstance(e, DeviceFault)]


async def test_status_reads_the_unit() -> None:
    async with connected(battery=77) as (driver, firmware, _link):
        await driver.apply(out(6, 4, intensity=50))
        await wait_until(lambda: firmware.strengths == (6, 4), what="(6, 4)")
        report = await driver.status()
        assert report.battery == 77
        assert report.outputs == {"strength_a": 6, "strength_b": 4, "output_a": 3, "output_b": 2}
        assert "writing" in report.flags


async def test_apply_checks_its_input() -> None:
    async with connected() as (driver, _, _link):
        with pytest.raises(ValueError, match="strength A"):
            await driver.apply(out(201, 0))
        with pytest.raises(ValueError, match="frequency"):
            await driver.apply(out(1, 1, frequency=9))
        with pytest.raises(TypeError):
            await driver.apply(object())  # type: ignore[arg-type]
    with pytest.raises(LinkError):
        await driver.apply(out(1, 1))


def test_cadence_is_under_the_expiry() -> None:
    assert WAVE_INTERVAL < cv2.WAVEFORM_EXPIRY
