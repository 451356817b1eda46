"""Acceptance: real DG-LAB Coyotes, which advertise a name and no service, are found by scan.

The real bleak.BleakScanner over the simulated radio (SimBleakScanner), through
devices.discovery.scan: a Coyote V3 named ``47L121000`` is an EB1, a Coyote V2
named ``D-LAB ESTIM01`` is a Coyote V2, and neither advertises a service UUID.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakScanner

from devices import discovery
from devices.capabilities import DeviceKind
from devices.kinds import MODELS, classify
from simulator.ble.backend import SimBleakScanner
from simulator.ble.radio import SimRadio
from simulator.firmware.coyote_v2 import CoyoteV2Firmware
from simulator.firmware.eb1 import EB1Firmware

COYOTE_V3 = "C0:FF:EE:00:00:03"
COYOTE_V2 = "C0:FF:EE:00:00:02"
SCAN_S = 0.3


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="msn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def radio(sock_dir: Path) -> AsyncIterator[Path]:
    """A running radio with a Coyote V3 and a Coyote V2, both advertising their name only."""
    path = sock_dir / "radio.sock"
    radio = SimRadio(path)
    radio.add_peripheral(
        EB1Firmware("coyote-3", name="47L121000", advertise_services=False), address=COYOTE_V3
    )
    radio.add_peripheral(CoyoteV2Firmware("coyote-2", name="D-LAB ESTIM01"), address=COYOTE_V2)
    async with radio:
        yield path


async def test_the_advertisements_carry_no_service(radio: Path) -> None:
    # The premise: without it, classification by service would hide a name-matching bug.
    kwargs: dict[str, Any] = {"radio": radio}  # the simulated backend's own argument
    found = await BleakScanner.discover(SCAN_S, return_adv=True, backend=SimBleakScanner, **kwargs)
    seen = {device.address: adv for device, adv in found.values()}
    assert seen[COYOTE_V3].local_name == "47L121000"
    assert seen[COYOTE_V2].local_name == "D-LAB ESTIM01"
    assert seen[COYOTE_V3].service_uuids == []
    assert seen[COYOTE_V2].service_uuids == []
    assert classify(seen[COYOTE_V3].local_name, seen[COYOTE_V3].service_uuids) is MODELS["EB1"]


async def test_a_scan_classifies_both_coyotes_by_name(radio: Path) -> None:
    found = {f.address: f for f in await discovery.scan(SCAN_S, radio_path=radio)}
    assert found[COYOTE_V3] == discovery.Found(
        DeviceKind.BUTTERFLY, COYOTE_V3, "47L121000", "ble", found[COYOTE_V3].rssi, "EB1"
    )
    assert found[COYOTE_V2] == discovery.Found(
        DeviceKind.BUTTERFLY, COYOTE_V2, "D-LAB ESTIM01", "ble", found[COYOTE_V2].rssi, "Coyote V2"
    )


# -- a scan that ends once it has heard everything (--auto-pair's) ------------------------


async def test_a_settling_scan_ends_soon_after_the_last_new_device(radio: Path) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await discovery.scan(30.0, radio_path=radio, settle=0.3, include_serial=False)
    assert {f.address for f in found} == {COYOTE_V3, COYOTE_V2}
    # Far from the 30 s the scan was given (a loose bound: a shared machine is slow).
    assert loop.time() - started < 15.0


async def test_a_settling_scan_that_hears_nothing_takes_its_whole_time(sock_dir: Path) -> None:
    path = sock_dir / "empty.sock"
    async with SimRadio(path):
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await discovery.scan(0.6, radio_path=path, settle=0.1, include_serial=False)
        assert found == []
        assert loop.time() - started >= 0.6


async def test_each_new_device_gives_the_scan_its_settle_time_again(sock_dir: Path) -> None:
    path = sock_dir / "late.sock"
    radio = SimRadio(path)
    radio.add_peripheral(EB1Firmware("first", name="47L121000"), address=COYOTE_V3)
    third = "C0:FF:EE:00:00:04"
    async with radio:
        loop = asyncio.get_running_loop()

        def arrive(name: str, address: str) -> None:
            radio.add_peripheral(CoyoteV2Firmware(name, name="D-LAB ESTIM01"), address=address)

        # The third comes after the first one's settle time but within the second's: only
        # a scan that starts counting again at each new device hears it.
        loop.call_later(0.7, arrive, "second", COYOTE_V2)
        loop.call_later(1.4, arrive, "third", third)
        found = await discovery.scan(20.0, radio_path=path, settle=1.0, include_serial=False)
    assert {f.address for f in found} == {COYOTE_V3, COYOTE_V2, third}
