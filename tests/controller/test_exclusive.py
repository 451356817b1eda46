"""One controller per device: an exclusive serial port, one daemon per database.

The whole path, with a real daemon and ``massaged run``, is in
tests/controller/test_daemon_process.py::test_a_second_controller_is_refused_with_one_line.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.errors import DaemonRunningError
from controller.locks import DaemonLock, daemon_holding, daemon_lock_path
from devices.capabilities import DeviceKind
from devices.errors import LinkBusyError
from devices.links.serial import SerialLink
from simulator.endpoints.pty import PtyEndpoint
from simulator.firmware.base import Firmware


class SilentFirmware(Firmware):
    """Takes every byte and answers nothing: only the port matters here."""

    kind = DeviceKind.BELT

    def __init__(self) -> None:
        super().__init__("silent-1")

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Ignore the bytes."""

    def tick(self, now: float) -> None:
        """Nothing runs on a clock."""

    def next_deadline(self, now: float) -> float:
        """No timer."""
        return math.inf


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[PtyEndpoint]:
    """A device on a pseudo-terminal: the simulator holds the master, hosts open the slave."""
    ep = PtyEndpoint(SilentFirmware(), link_path=tmp_path / "ttyBELT")
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


async def test_a_second_serial_link_on_one_port_is_refused_until_the_first_closes(
    endpoint: PtyEndpoint,
) -> None:
    first, second = SerialLink(endpoint.path), SerialLink(endpoint.path)
    try:
        await first.open(timeout=2.0)
        with pytest.raises(LinkBusyError) as info:
            await second.open(timeout=2.0)
        # One clear sentence naming the port; the first link is untouched and still works.
        assert str(info.value) == f"{endpoint.path} is in use by another program"
        assert info.value.device == endpoint.path
        assert not second.is_open
        assert first.is_open
        await first.write(b"\xa5")
        # By the pty's own name too: the lock is on the device, not on the path used.
        by_name = SerialLink(str(endpoint.tty_name))
        with pytest.raises(LinkBusyError):
            await by_name.open(timeout=2.0)
        await first.close()
        await second.open(timeout=2.0)  # free again once the first one let go
        assert second.is_open
    finally:
        await first.close()
        await second.close()


def test_a_second_daemon_on_one_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "massaged.db"
    assert daemon_holding(db) is None
    with DaemonLock(db):
        assert daemon_holding(db) == os.getpid()
        # flock belongs to an open file: a second holder in this process is refused
        # exactly as one in another process is.
        with pytest.raises(DaemonRunningError) as info:
            DaemonLock(db).acquire()
        assert str(info.value) == f"another massaged daemon (pid {os.getpid()}) already uses {db}"
    # Released (as a crash releases it): the next daemon starts, the file is reused.
    assert daemon_holding(db) is None
    assert daemon_lock_path(db).exists()
    with DaemonLock(db):
        assert daemon_holding(db) == os.getpid()
