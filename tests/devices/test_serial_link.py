"""SerialLink against a simulated device on a pseudo-terminal, and on pyserial's loop://."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import serial
import serial.tools.list_ports

from devices.capabilities import DeviceKind
from devices.errors import DeviceTimeoutError, LinkError, LinkLostError
from devices.links.base import SERIAL_SOURCE
from devices.links.serial import SerialLink, list_serial_ports
from simulator.endpoints.pty import PtyEndpoint
from simulator.firmware.base import Firmware


class EchoFirmware(Firmware):
    """Sends back every chunk it receives."""

    kind = DeviceKind.BELT

    def __init__(self) -> None:
        super().__init__("echo-1")
        self.received = bytearray()

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Echo the chunk."""
        self.received += data
        self.outbox.append((None, data))

    def tick(self, now: float) -> None:
        """Nothing runs on a clock."""

    def next_deadline(self, now: float) -> float:
        """No timer."""
        return math.inf


class Host:
    """Collects what a link receives and whether it was lost."""

    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.data = bytearray()
        self.sources: set[str] = set()
        self.lost: list[str] = []
        self._changed = asyncio.Event()
        link.set_callbacks(self._on_receive, self._on_lost)

    def _on_receive(self, source: str, data: bytes) -> None:
        self.sources.add(source)
        self.data += data
        self._changed.set()

    def _on_lost(self, reason: str) -> None:
        self.lost.append(reason)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until condition() holds."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[PtyEndpoint]:
    """An echo device on a pty, reachable at a stable symlink."""
    ep = PtyEndpoint(EchoFirmware(), link_path=tmp_path / "ttyECHO")
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


@pytest.fixture
async def link(endpoint: PtyEndpoint) -> AsyncIterator[SerialLink]:
    """A SerialLink on the echo device (not yet opened)."""
    lk = SerialLink(endpoint.path)
    try:
        yield lk
    finally:
        await lk.close()


async def test_open_write_receive(endpoint: PtyEndpoint, link: SerialLink) -> None:
    host = Host(link)
    await link.open(timeout=2.0)
    assert link.is_open
    await link.write(b"\xa5\x02\x01\x01\x81\xec")
    await link.write(b"\x00\x0d\x0a\xff", target="ignored")
    expected = b"\xa5\x02\x01\x01\x81\xec\x00\x0d\x0a\xff"
    await host.until(lambda: len(host.data) >= len(expected))
    assert bytes(host.data) == expected
    assert host.sources == {SERIAL_SOURCE}
    assert host.lost == []


async def test_open_by_tty_name_without_symlink() -> None:
    endpoint = PtyEndpoint(EchoFirmware())
    await endpoint.start()
    link = SerialLink(endpoint.path)
    try:
        assert endpoint.path.startswith("/dev/")
        host = Host(link)
        await link.open()
        await link.write(b"abc")
        await host.until(lambda: len(host.data) >= 3)
        assert bytes(host.data) == b"abc"
    finally:
        await link.close()
        await endpoint.stop()


async def test_close_is_idempotent_and_not_a_loss(link: SerialLink) -> None:
    host = Host(link)
    await link.open()
    await link.close()
    await link.close()
    assert not link.is_open
    assert host.lost == []
    with pytest.raises(LinkLostError):
        await link.write(b"x")


async def test_reopen_after_close(endpoint: PtyEndpoint, link: SerialLink) -> None:
    host = Host(link)
    await link.open()
    await link.close()
    await link.open()
    await link.write(b"again")
    await host.until(lambda: bytes(host.data) == b"again")


async def test_unplug_reports_lost_once(endpoint: PtyEndpoint, link: SerialLink) -> None:
    host = Host(link)
    await link.open()
    await link.write(b"hi")
    await host.until(lambda: bytes(host.data) == b"hi")
    endpoint.unplug()
    await host.until(lambda: bool(host.lost))
    assert not link.is_open
    with pytest.raises(LinkLostError):
        await link.write(b"x")
    await link.close()
    await asyncio.sleep(0.05)
    assert len(host.lost) == 1
    # Plugged in again at the same path, the same link object opens again.
    await endpoint.replug()
    await link.open()
    await link.write(b"back")
    await host.until(lambda: bytes(host.data).endswith(b"back"))


async def test_write_after_unplug_raises_and_reports_lost(
    endpoint: PtyEndpoint, link: SerialLink
) -> None:
    host = Host(link)
    await link.open()
    endpoint.unplug()
    # No await in between: the reader has not run yet, so the write is first to see the hang-up.
    with pytest.raises(LinkLostError) as info:
        await link.write(b"x")
    assert isinstance(info.value.__cause__, OSError)
    assert not link.is_open
    await asyncio.sleep(0.05)
    assert len(host.lost) == 1


async def test_loop_url_uses_the_polling_fallback() -> None:
    link = SerialLink("loop://")
    host = Host(link)
    await link.open()
    try:
        assert link.is_open
        assert link._fd is None
        assert link._poll_task is not None
        await link.write(b"\xa5\x02\x03\x06\x97\x69")
        await host.until(lambda: len(host.data) >= 6)
        assert bytes(host.data) == b"\xa5\x02\x03\x06\x97\x69"
    finally:
        await link.close()
    await link.close()
    assert not link.is_open
    assert host.lost == []


async def test_bad_path_raises_link_error_naming_it(tmp_path: Path) -> None:
    bad = str(tmp_path / "no-such-tty")
    link = SerialLink(bad)
    with pytest.raises(LinkError, match="no-such-tty") as info:
        await link.open(timeout=2.0)
    assert not isinstance(info.value, DeviceTimeoutError)
    assert info.value.device == bad
    assert isinstance(info.value.__cause__, OSError)
    assert not link.is_open


class SlowPort:
    """A port whose open takes longer than the caller waits."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    @property
    def in_waiting(self) -> int:
        """Nothing to read."""
        return 0

    def read(self, size: int = 1) -> bytes:
        """Nothing to read."""
        return b""

    def write(self, data: bytes) -> int:
        """Swallow the bytes."""
        return len(data)

    def close(self) -> None:
        """Note the close."""
        self.closed.set()


async def test_open_timeout_raises_and_releases_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = SlowPort()

    def slow_open(url: str, **kwargs: object) -> SlowPort:
        time.sleep(0.3)
        return port

    monkeypatch.setattr(serial, "serial_for_url", slow_open)
    link = SerialLink("/dev/ttyslow")
    with pytest.raises(DeviceTimeoutError) as info:
        await link.open(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, TimeoutError)
    # The port the worker thread opened too late is closed, not leaked.
    assert await asyncio.to_thread(port.closed.wait, 5.0)
    assert not link.is_open


async def test_cancelled_open_releases_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = SlowPort()

    def slow_open(url: str, **kwargs: object) -> SlowPort:
        time.sleep(0.3)
        return port

    monkeypatch.setattr(serial, "serial_for_url", slow_open)
    link = SerialLink("/dev/ttyslow")
    task = asyncio.create_task(link.open(timeout=5.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(port.closed.wait, 5.0)
    assert not link.is_open


def test_list_serial_ports_filters_by_product(monkeypatch: pytest.MonkeyPatch) -> None:
    class Info:
        def __init__(self, device: str, product: str | None) -> None:
            self.device = device
            self.product = product

    ports = [
        Info("/dev/ttyACM1", "VB1 belt"),
        Info("/dev/ttyACM0", "VB1-L"),
        Info("/dev/ttyUSB0", "FT232R"),
        Info("/dev/ttyS0", None),
    ]
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: ports)
    assert list_serial_ports() == [("/dev/ttyACM0", "VB1-L"), ("/dev/ttyACM1", "VB1 belt")]
    assert list_serial_ports("FT") == [("/dev/ttyUSB0", "FT232R")]


class _SlowReader:
    """The far end of a raw pty that reads only when told: the host's writes fill the buffer."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        os.set_blocking(self.master, False)

    def drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


async def test_a_write_the_port_cannot_take_whole_finishes_in_order() -> None:
    # The fast path writes what the port takes at once; the rest must follow through
    # the locked path, and a second write must not slip in between the two parts.
    far = _SlowReader()
    link = SerialLink(far.path)
    try:
        await link.open(timeout=2.0)
        big = bytes(range(256)) * 256  # 64 KiB: far more than a pty's buffer
        small = b"\xa5after"
        first = asyncio.create_task(link.write(big, timeout=5.0))
        await asyncio.sleep(0)  # the first write has filled the buffer and now waits
        assert not first.done()
        second = asyncio.create_task(link.write(small, timeout=5.0))
        received = bytearray()
        async with asyncio.timeout(5.0):
            while len(received) < len(big) + len(small):
                await asyncio.sleep(0.005)
                received += far.drain()
        await asyncio.gather(first, second)
        assert bytes(received) == big + small
    finally:
        await link.close()
        far.close()


async def test_a_write_that_never_drains_times_out_as_a_lost_link() -> None:
    far = _SlowReader()
    link = SerialLink(far.path)
    lost: list[str] = []
    link.set_callbacks(lambda source, data: None, lost.append)
    try:
        await link.open(timeout=2.0)
        with pytest.raises(LinkLostError, match="timed out"):
            await link.write(bytes(65536), timeout=0.2)
        assert lost
        assert "timed out" in lost[0]
    finally:
        await link.close()
        far.close()
