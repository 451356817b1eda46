"""The host guard: a frozen or dead daemon's BLE links are ended from outside it.

Unit tests run the real guard process against a radio in this process (the
daemon's side is a HostGuard in this event loop). The process tests run the
daemon beside ``massaged simulate`` and judge by the simulator's recording of
what the devices physically did, never by the daemon's word.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller import sdnotify
from controller.guard import HostGuard, guarded
from devices.kinds import make_link
from devices.links.ble import HELD_LINKS, BleLink
from simulator.ble.backend import SimBleakClient
from simulator.ble.radio import SimRadio
from simulator.ble.wire import radio_request
from simulator.firmware.sp1 import SP1Firmware
from tests.controller.test_daemon_process import (
    setup,  # noqa: F401 - a fixture
    wait_every_device_on,
)
from tests.daemon_processes import Setup
from tests.simulator.test_ble_backend import sock_dir  # noqa: F401 - a fixture
from tests.simulator.test_dead_host import running_at

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "5A:1D:02:00:00:01"
WAIT = 5.0
"""The promise: every device at zero within 5 s of the daemon freezing or dying."""
SETTLE = 2.0
"""Seconds the guard gets to act in the unit tests (its bound is 1.5 s after a stall)."""


@dataclass
class Rig:
    """A radio with one SP1 pillow, a BLE link to it, and a host guard."""

    radio: SimRadio
    firmware: SP1Firmware
    link: BleLink
    guard: HostGuard


@pytest.fixture
async def rig(sock_dir: Path) -> AsyncIterator[Rig]:  # noqa: F811
    radio = SimRadio(sock_dir / "radio.sock")
    firmware = SP1Firmware("pillow-1")
    radio.add_peripheral(firmware, address=ADDRESS)
    async with radio:
        link = make_link(
            "pillow",
            ADDRESS,
            transport="ble",
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": str(radio.socket_path)},
        )
        assert isinstance(link, BleLink)
        link.set_callbacks(lambda _s, _d: None, lambda _e: None)
        guard = HostGuard()
        await guard.start()
        try:
            await link.open(timeout=WAIT)
            yield Rig(radio, firmware, link, guard)
        finally:
            await link.close()
            await guard.close()


def _connected(radio: SimRadio) -> bool:
    return radio.peripherals[ADDRESS].central is not None


async def _until(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the state lives in the radio
            await asyncio.sleep(0.02)


async def test_no_heartbeat_ends_every_held_link(rig: Rig) -> None:
    assert _connected(rig.radio)
    # The heartbeat stops as when the loop blocks or the process is stopped.
    assert rig.guard._task is not None
    rig.guard._task.cancel()
    await _until(lambda: not _connected(rig.radio), rig.guard.stall_after + SETTLE)


async def test_a_healthy_daemon_keeps_its_links(rig: Rig) -> None:
    await asyncio.sleep(rig.guard.stall_after * 2)
    assert _connected(rig.radio)
    assert rig.link.is_open


async def test_daemon_gone_with_links_held_ends_them(rig: Rig) -> None:
    # The daemon's end of the socket closes with a link still held: as when it dies.
    assert ADDRESS in HELD_LINKS.snapshot()
    await rig.guard.close()
    assert not _connected(rig.radio)


async def test_a_killed_guard_is_restarted_and_knows_the_links(rig: Rig) -> None:
    first = rig.guard.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await _until(lambda: rig.guard.restarts == 1, SETTLE)
    assert rig.guard.pid not in (None, first)
    # The new guard was told of the link: starving it ends the link.
    assert rig.guard._task is not None
    rig.guard._task.cancel()
    await _until(lambda: not _connected(rig.radio), rig.guard.stall_after + SETTLE)


async def test_the_guard_outlives_sigterm_until_the_daemon_is_gone(rig: Rig) -> None:
    # systemd signals the whole unit on stop: the guard keeps watching while we fade out.
    pid = rig.guard.pid
    assert pid is not None
    await _until(lambda: rig.guard.ready, SETTLE)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert rig.guard.process is not None
    assert rig.guard.process.poll() is None
    assert rig.guard.restarts == 0


def test_systemd_watchdog_pings_once_a_second_and_bounds_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == pytest.approx(1.0)
    unit = (ROOT / "packaging" / "massaged.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("WatchdogSec=")]
    # A blocked daemon must be killed soon enough to matter (the promise is 5 s).
    assert float(line.split("=", 1)[1]) <= 5


# -- the daemon as users run it ------------------------------------------------------------


RECENTLY_S = 2.0
"""A device counts as running at the freeze if it put something out this shortly before it
(the butterfly's effective outputs come and go with its pulse pattern)."""


def zero_times(rows: list[dict[str, Any]], since: float, until: float) -> dict[str, float]:
    """Per device: seconds after since until its outputs fell to zero and stayed so until until."""
    state: dict[tuple[str, str], Any] = {}
    last_on: dict[str, float] = {}
    zero_at: dict[str, float] = {}
    kinds = {row["device"]: row["kind"] for row in rows}

    def running(device: str) -> bool:
        values = [v for (d, c), v in state.items() if d == device and isinstance(v, int)]
        if kinds[device] == "butterfly":  # what the body feels
            values = [v for (d, c), v in state.items() if d == device and c.startswith("output")]
        return any(values)

    seen_since = False
    for row in rows:
        if row["t"] > until:
            break
        if row["t"] > since and not seen_since:
            seen_since = True
            zero_at = {d: since for d in kinds if not running(d)}  # quiet at that moment
        device = row["device"]
        state[(device, row["channel"])] = row["value"]
        if running(device):
            last_on[device] = row["t"]
            zero_at.pop(device, None)
        elif row["t"] > since:
            zero_at.setdefault(device, row["t"])
    if not seen_since:
        zero_at = {d: since for d in kinds if not running(d)}
    stale = {d for d in kinds if last_on.get(d, -1.0) < since - RECENTLY_S}
    assert not stale, f"not running when the daemon froze or died: {sorted(stale)}"
    missing = set(kinds) - set(zero_at)
    assert not missing, f"still running: {sorted(missing)}"
    return {device: t - since for device, t in zero_at.items()}


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(x) for x in text.split())
    return found


def _start_session(setup: Setup) -> subprocess.Popen[str]:  # noqa: F811
    daemon = setup.start("daemon", "--simulator", "--auto-pair")
    setup.wait_devices_up(3)
    answer = setup.api("run", {"program": "collar-zone", "well_today": True})
    assert answer["status"] == "ok", answer
    # The first stroke under way on every device: seen in the recording, not guessed.
    wait_every_device_on(setup)
    return daemon


def test_sigstopped_daemon_every_device_at_zero_within_5_s(setup: Setup) -> None:  # noqa: F811
    daemon = _start_session(setup)
    stopped_at = time.monotonic() - setup.t0
    daemon.send_signal(signal.SIGSTOP)
    try:
        time.sleep(WAIT + 0.5)
    finally:
        daemon.send_signal(signal.SIGCONT)
    times = zero_times(setup.rows(), stopped_at, stopped_at + WAIT)
    assert set(times) == {"belt-1", "pillow-1", "butterfly-1"}, times
    assert all(t <= WAIT for t in times.values()), times


def test_killed_guard_is_restarted_by_the_daemon(setup: Setup) -> None:  # noqa: F811
    daemon = _start_session(setup)
    (first,) = _children(daemon.pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        children = _children(daemon.pid) - {first}
        if children:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("no new host guard")
    # The restarted guard does the job: a stall stops every device.
    stopped_at = time.monotonic() - setup.t0
    daemon.send_signal(signal.SIGSTOP)
    try:
        time.sleep(WAIT + 0.5)
    finally:
        daemon.send_signal(signal.SIGCONT)
    times = zero_times(setup.rows(), stopped_at, stopped_at + WAIT)
    assert all(t <= WAIT for t in times.values()), times


def test_links_left_by_a_dead_daemon_and_guard_are_taken_over(setup: Setup) -> None:  # noqa: F811
    daemon = _start_session(setup)
    (guard,) = _children(daemon.pid)
    # The worst case: the guard and the daemon both die, the pillow's link is left up.
    daemon.send_signal(signal.SIGSTOP)  # so that it cannot start a new guard in between
    os.kill(guard, signal.SIGKILL)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=5)
    radio = Path(setup.env["MASSAGED_SIM_RADIO"])
    listed = asyncio.run(radio_request(radio, "list_devices"))["devices"]
    assert {d["id"] for d in listed if d.get("orphaned")} == {"pillow-1", "butterfly-1"}
    # A new daemon finds every device again, the orphaned pillow by taking its link over,
    # and nothing is left running on it.
    restarted_at = time.monotonic() - setup.t0
    setup.start("daemon", "--simulator")
    setup.wait_devices_up(3)
    assert running_at(setup.rows(), "pillow-1", restarted_at), "the orphaned pillow was not running"
    # The new daemon's connect handshake stops what its dead predecessor left running: seen in
    # the recording within a second (polled, so a quick stop is not waited out).
    deadline = time.monotonic() + 1.0
    while running_at(rows := setup.rows(), "pillow-1", rows[-1]["t"] + 1):
        assert time.monotonic() < deadline, "the new daemon left it running"
        time.sleep(0.02)


async def test_guarded_starts_a_guard_and_ends_it_with_the_block() -> None:
    # What `massaged run --no-daemon` and `massaged demo` wrap their device work in.
    async with guarded() as guard:
        assert guard is not None
        process = guard.process
        assert process is not None
        assert process.poll() is None
    assert process.poll() is not None


def test_bluez_unreachable_leaves_the_link_for_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.guard import process

    # No system bus here (or in a test sandbox): the failure is logged, never raised.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/massaged-test-bus")
    links = {ADDRESS: "bluez:/org/bluez/hci0/dev_5A_1D_02_00_00_01", "AA": "carrier:pigeon"}
    assert process.end_links(links) == {"AA"}  # an unknown route cannot be retried
