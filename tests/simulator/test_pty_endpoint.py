"""PtyEndpoint: serving a firmware on a pseudo-terminal, its transport faults and its cable."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devices.capabilities import DeviceKind
from simulator.endpoints.pty import PtyEndpoint
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware

WATCHDOG = 0.2


class TestFirmware(Firmware):
    """Echoes every chunk; b"3" answers three frames; WATCHDOG s of silence sends b"WD" once."""

    __test__ = False
    kind = DeviceKind.BELT

    def __init__(self) -> None:
        super().__init__("test-1")
        self.received = bytearray()
        self.last_rx: float | None = None
        self.watchdog_fired = 0
        self.links: list[str] = []
        self.fail = False
        self.changed = asyncio.Event()

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Echo, or answer three frames to b"3"."""
        if self.fail:
            raise RuntimeError("firmware bug")
        self.received += data
        self.last_rx = now
        self.changed.set()
        if data == b"3":
            self.outbox += [(None, b"one"), (None, b"two"), (None, b"three")]
        else:
            self.outbox.append((None, data))

    def tick(self, now: float) -> None:
        """Fire the watchdog once per silence."""
        if self.last_rx is not None and now >= self.last_rx + WATCHDOG:
            self.last_rx = None
            self.watchdog_fired += 1
            self.changed.set()
            self.outbox.append((None, b"WD"))

    def next_deadline(self, now: float) -> float:
        """The watchdog expiry, if armed."""
        return math.inf if self.last_rx is None else self.last_rx + WATCHDOG

    def link_up(self, now: float) -> None:
        """Note the plug-in."""
        self.links.append("up")

    def link_down(self, now: float) -> None:
        """Note the unplug."""
        self.links.append("down")


class RawHost:
    """A host that opens the pty path with plain os calls and collects every chunk read."""

    def __init__(self, path: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.chunks: list[bytes] = []
        self.hung_up = False
        self._changed = asyncio.Event()
        self.loop.add_reader(self.fd, self._on_readable)

    @property
    def data(self) -> bytes:
        """Everything read so far."""
        return b"".join(self.chunks)

    def _on_readable(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.chunks.append(data)
        else:
            self.hung_up = True
            self.loop.remove_reader(self.fd)
        self._changed.set()

    def write(self, data: bytes) -> None:
        """Write to the port."""
        assert self.fd is not None
        os.write(self.fd, data)

    async def until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until condition() holds."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def close(self) -> None:
        """Close the port."""
        if self.fd is not None:
            if not self.hung_up:
                self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None


async def eventually(
    firmware: TestFirmware, condition: Callable[[], bool], timeout: float = 2.0
) -> None:
    """Wait until condition() holds, checking each time the firmware changes."""
    async with asyncio.timeout(timeout):
        while not condition():
            firmware.changed.clear()
            await firmware.changed.wait()


@pytest.fixture
def firmware() -> TestFirmware:
    """The test firmware."""
    return TestFirmware()


@pytest.fixture
def faults() -> LinkFaults:
    """No faults until a test sets some."""
    return LinkFaults()


@pytest.fixture
async def endpoint(
    firmware: TestFirmware, faults: LinkFaults, tmp_path: Path
) -> AsyncIterator[PtyEndpoint]:
    """The test firmware on a pty behind a symlink."""
    ep = PtyEndpoint(firmware, faults=faults, link_path=tmp_path / "ttyTEST")
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


@pytest.fixture
async def host(endpoint: PtyEndpoint) -> AsyncIterator[RawHost]:
    """A raw host on the endpoint's path."""
    h = RawHost(endpoint.path)
    try:
        yield h
    finally:
        h.close()


async def test_raw_mode_passes_every_byte_unchanged(firmware: TestFirmware, host: RawHost) -> None:
    # CR, LF, ^C, ^D, XON, XOFF, DEL and 8-bit bytes: what a cooked tty would eat or translate.
    payload = bytes([0x0D, 0x0A, 0x03, 0x04, 0x11, 0x13, 0x7F, 0xA5, 0xFF, 0x00, 0x1A])
    host.write(payload)
    await host.until(lambda: len(host.data) >= len(payload))
    assert host.data == payload
    assert bytes(firmware.received) == payload


async def test_frames_keep_their_order(host: RawHost) -> None:
    host.write(b"3")
    await host.until(lambda: len(host.data) >= len(b"onetwothree"))
    assert host.data == b"onetwothree"


async def test_tick_runs_at_the_firmware_deadline(firmware: TestFirmware, host: RawHost) -> None:
    loop = asyncio.get_running_loop()
    host.write(b"a")
    await host.until(lambda: host.data == b"a")
    sent = loop.time()
    await host.until(lambda: host.data == b"aWD")
    assert loop.time() - sent >= WATCHDOG - 0.05
    assert firmware.watchdog_fired == 1


async def test_wake_sends_what_the_firmware_did_by_itself(
    endpoint: PtyEndpoint, firmware: TestFirmware, host: RawHost
) -> None:
    # Poked from outside (a button, a fault): no timer is due, only wake() gets it out.
    firmware.outbox.append((None, b"BTN"))
    endpoint.wake()
    await host.until(lambda: host.data == b"BTN")


async def test_corrupt_flips_bits_both_ways(
    firmware: TestFirmware, faults: LinkFaults, host: RawHost
) -> None:
    faults.corrupt_rate = 1.0
    sent = bytes(range(0x30, 0x40))
    host.write(sent)
    await host.until(lambda: len(host.data) >= len(sent))
    got_in = bytes(firmware.received)
    assert len(got_in) == len(sent)
    # Every byte on the way in has exactly one bit flipped...
    assert all((a ^ b).bit_count() == 1 for a, b in zip(sent, got_in, strict=True))
    # ...and again on the way out, relative to what the firmware sent back.
    assert all((a ^ b).bit_count() == 1 for a, b in zip(got_in, host.data, strict=True))


async def test_drop_loses_whole_answers(
    firmware: TestFirmware, faults: LinkFaults, host: RawHost
) -> None:
    faults.drop_answer_rate = 1.0
    host.write(b"lost")
    await eventually(firmware, lambda: firmware.received == b"lost")
    await asyncio.sleep(0.1)
    assert host.data == b""
    faults.clear()
    host.write(b"kept")
    await host.until(lambda: len(host.data) >= 4)
    assert host.data == b"kept"


async def test_delay_holds_each_frame_and_keeps_order(faults: LinkFaults, host: RawHost) -> None:
    loop = asyncio.get_running_loop()
    faults.delay = 0.3
    sent = loop.time()
    host.write(b"3")
    await host.until(lambda: len(host.data) >= len(b"onetwothree"))
    assert loop.time() - sent >= 0.3 - 0.01
    assert host.data == b"onetwothree"


async def test_split_sends_one_byte_at_a_time(faults: LinkFaults, host: RawHost) -> None:
    faults.split = True
    host.write(b"3")
    await host.until(lambda: len(host.data) >= len(b"onetwothree"))
    assert host.data == b"onetwothree"
    # Without the fault the three frames go out in one write; split, they arrive in pieces.
    assert len(host.chunks) > 3


async def test_link_down_cuts_both_ways_and_the_watchdog_fires_alone(
    firmware: TestFirmware, faults: LinkFaults, host: RawHost
) -> None:
    host.write(b"a")
    await host.until(lambda: host.data == b"a")
    faults.link_down = True
    host.write(b"b")
    # Nothing reaches the firmware: its watchdog fires by itself, and its message is lost too.
    await eventually(firmware, lambda: firmware.watchdog_fired == 1)
    await asyncio.sleep(0.05)
    assert firmware.received == b"a"
    assert host.data == b"a"
    faults.link_down = False
    host.write(b"c")
    await host.until(lambda: host.data == b"ac")
    assert firmware.received == b"ac"


async def test_host_can_close_and_reopen(endpoint: PtyEndpoint, host: RawHost) -> None:
    host.write(b"x")
    await host.until(lambda: host.data == b"x")
    host.close()
    again = RawHost(endpoint.path)
    try:
        again.write(b"y")
        await again.until(lambda: again.data == b"y")
        assert not again.hung_up
    finally:
        again.close()


async def test_symlink_is_stable_across_unplug_and_replug(
    endpoint: PtyEndpoint, firmware: TestFirmware, host: RawHost, tmp_path: Path
) -> None:
    link = tmp_path / "ttyTEST"
    assert endpoint.path == str(link)
    assert link.is_symlink()
    assert os.readlink(link) == endpoint.tty_name
    endpoint.unplug()
    assert not endpoint.plugged
    await host.until(lambda: host.hung_up)
    # Unplugged, the device node is gone, as with a real USB port.
    assert not link.exists()
    assert endpoint.path == str(link)
    await endpoint.replug()
    assert endpoint.plugged
    assert endpoint.path == str(link)
    assert link.is_symlink()
    assert os.readlink(link) == endpoint.tty_name
    assert firmware.links == ["up", "down", "up"]
    again = RawHost(endpoint.path)
    try:
        again.write(b"hello again")
        await again.until(lambda: again.data == b"hello again")
    finally:
        again.close()


async def test_stop_is_idempotent_and_removes_the_symlink(tmp_path: Path) -> None:
    firmware = TestFirmware()
    link = tmp_path / "ttyTEST"
    endpoint = PtyEndpoint(firmware, link_path=link)
    await endpoint.stop()
    await endpoint.start()
    assert link.is_symlink()
    await endpoint.stop()
    await endpoint.stop()
    assert not link.exists()
    assert not link.is_symlink()
    assert not endpoint.plugged
    assert firmware.links == ["up", "down"]


async def test_path_without_symlink_is_the_tty() -> None:
    endpoint = PtyEndpoint(TestFirmware())
    with pytest.raises(RuntimeError):
        _ = endpoint.path
    await endpoint.start()
    try:
        assert endpoint.path == endpoint.tty_name
        host = RawHost(endpoint.path)
        try:
            host.write(b"z")
            await host.until(lambda: host.data == b"z")
        finally:
            host.close()
    finally:
        await endpoint.stop()


async def test_stop_reraises_a_firmware_failure(firmware: TestFirmware) -> None:
    endpoint = PtyEndpoint(firmware)
    await endpoint.start()
    host = RawHost(endpoint.path)
    try:
        firmware.fail = True
        host.write(b"boom")
        await asyncio.sleep(0.1)
    finally:
        host.close()
    with pytest.raises(RuntimeError, match="firmware bug"):
        await endpoint.stop()
    await endpoint.stop()
