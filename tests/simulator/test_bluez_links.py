"""BlueZ's rule in the simulated radio: a BLE link outlives the host process that opened it.

On Linux, BlueZ keeps an LE connection up after the process that asked for it
exits or is killed (bleak issues #1222, #315). The radio does the same by
default: the link is left orphaned, the peripheral stays connected, any
process can end it with ``device_disconnect`` (``org.bluez.Device1.Disconnect``)
or take it over with a new ``connect``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from bleak.exc import BleakError

from devices.kinds import make_link
from devices.links.ble import HELD_LINKS, system_disconnect_route
from simulator.ble.backend import SimBleakClient
from simulator.ble.radio import SimRadio
from simulator.ble.wire import RadioConnection, radio_request
from tests.simulator.test_ble_backend import (
    ADDRESS,
    CENTRAL_SCRIPT,
    WAIT,
    WRITE,
    Rig,
    _kill,
    _python,
    rig,  # noqa: F401 - a fixture
    sim_client,
    sock_dir,  # noqa: F401 - a fixture
    wait_until,
)


def _orphaned(radio: SimRadio) -> bool:
    (device,) = [d for d in radio.devices() if d["address"] == ADDRESS]
    return bool(device["orphaned"])


def test_bluez_rule_is_the_default(tmp_path: Path) -> None:
    assert SimRadio(tmp_path / "r.sock").links_outlive_host


async def test_closing_the_central_socket_leaves_the_link_up(rig: Rig) -> None:  # noqa: F811
    connection = RadioConnection(rig.path)
    await connection.open()
    await connection.request("connect", address=ADDRESS)
    connection.abort()
    await connection.close()
    # The radio has seen the socket go (a positive sign), and the link is still up.
    await wait_until(lambda: _orphaned(rig.radio))
    assert rig.firmware.link_downs == 0
    assert rig.peripheral.central is not None


async def test_central_process_death_leaves_the_link_up(rig: Rig) -> None:  # noqa: F811
    process = await _python("-c", CENTRAL_SCRIPT, ADDRESS, str(rig.path), WRITE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.strip() == b"connected"
        await _kill(process)
        await wait_until(lambda: _orphaned(rig.radio))
        assert rig.firmware.link_downs == 0
    finally:
        await _kill(process)


async def test_device_disconnect_ends_an_orphaned_link(rig: Rig) -> None:  # noqa: F811
    connection = RadioConnection(rig.path)
    await connection.open()
    await connection.request("connect", address=ADDRESS)
    connection.abort()
    await connection.close()
    await wait_until(lambda: _orphaned(rig.radio))
    # Any process may ask, as any process on the system bus may ask BlueZ.
    reply = await radio_request(rig.path, "device_disconnect", address=ADDRESS.lower())
    assert reply["was_connected"] is True
    assert rig.firmware.link_downs == 1
    assert rig.peripheral.central is None
    again = await radio_request(rig.path, "device_disconnect", address=ADDRESS)
    assert again["was_connected"] is False


async def test_device_disconnect_ends_a_live_link_and_its_holder_hears(
    rig: Rig,  # noqa: F811
) -> None:
    dropped = asyncio.Event()
    client = sim_client(rig, disconnected_callback=lambda _c: dropped.set())
    await client.connect()
    await radio_request(rig.path, "device_disconnect", address=ADDRESS)
    await asyncio.wait_for(dropped.wait(), WAIT)
    assert rig.firmware.link_downs == 1
    assert not client.is_connected
    await client.disconnect()


async def test_a_new_central_takes_an_orphaned_link_over(rig: Rig) -> None:  # noqa: F811
    process = await _python("-c", CENTRAL_SCRIPT, ADDRESS, str(rig.path), WRITE)
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 20)).strip() == b"connected"
        # While its host lives, the link is its host's alone.
        with pytest.raises(BleakError):
            await sim_client(rig).connect()
        await _kill(process)
        await wait_until(lambda: _orphaned(rig.radio))
    finally:
        await _kill(process)
    async with sim_client(rig) as client:
        await client.write_gatt_char(WRITE, b"ok", response=False)
        await wait_until(lambda: len(rig.firmware.received) == 2)
        # One radio connection all along: the peripheral never saw it drop or come back.
        assert (rig.firmware.link_ups, rig.firmware.link_downs) == (1, 0)
        assert not _orphaned(rig.radio)
    assert rig.firmware.link_downs == 1  # a clean disconnect ends it


async def test_held_links_follow_open_close_and_loss(sock_dir: Path) -> None:  # noqa: F811
    from simulator.firmware.sp1 import SP1Firmware

    radio = SimRadio(sock_dir / "radio.sock")
    radio.add_peripheral(SP1Firmware("pillow-1"), address=ADDRESS)
    async with radio:
        # The route another process needs is listed from connect to disconnect or loss.
        link = make_link(
            "pillow",
            ADDRESS,
            transport="ble",
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": str(radio.socket_path)},
        )
        link.set_callbacks(lambda _s, _d: None, lambda _e: None)
        assert ADDRESS not in HELD_LINKS.snapshot()
        await link.open(timeout=WAIT)
        assert HELD_LINKS.snapshot()[ADDRESS] == f"sim:{radio.socket_path}"
        await link.close()
        assert ADDRESS not in HELD_LINKS.snapshot()
        await link.open(timeout=WAIT)
        assert ADDRESS in HELD_LINKS.snapshot()
        await radio_request(radio.socket_path, "device_disconnect", address=ADDRESS)
        await wait_until(lambda: ADDRESS not in HELD_LINKS.snapshot())
        await link.close()


def test_bluez_route_is_the_device_object_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    known = SimpleNamespace(_backend=SimpleNamespace(_device_path="/org/bluez/hci1/dev_AA"))
    assert system_disconnect_route(known, ADDRESS, {}) == "bluez:/org/bluez/hci1/dev_AA"  # type: ignore[arg-type]
    unknown = SimpleNamespace(_backend=SimpleNamespace(_device_path=None))
    route = system_disconnect_route(unknown, ADDRESS, {"bluez": {"adapter": "hci2"}})  # type: ignore[arg-type]
    assert route == "bluez:/org/bluez/hci2/dev_AA_BB_CC_00_00_01"
    monkeypatch.setattr("sys.platform", "darwin")
    assert system_disconnect_route(unknown, ADDRESS, {}) is None  # type: ignore[arg-type]
