"""The shared behaviour suite over the real endpoints the simulator serves.

The serial belt runs over a pseudo-terminal through ``SerialLink`` (pyserial);
the Bluetooth devices run over the simulated radio through ``BleLink`` and the
real ``bleak.BleakClient`` with the simulator's backend class under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devices.capabilities import DeviceKind
from devices.drivers.base import Device
from devices.kinds import make_device
from simulator.ble.backend import SimBleakClient
from simulator.ble.peripheral import Peripheral
from simulator.ble.radio import SimRadio
from simulator.endpoints.pty import PtyEndpoint
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.firmware.sp1 import SP1Firmware
from simulator.firmware.vb1 import VB1Firmware
from tests.devices.behaviour import (
    BeltBehaviour,
    ButterflyBehaviour,
    DeviceBehaviour,
    Pair,
    PillowBehaviour,
)


def _now() -> float:
    return asyncio.get_running_loop().time()


class PtyEndpointMixin(DeviceBehaviour):
    """A VB1 belt on a pseudo-terminal, driven through pyserial."""

    @pytest.fixture(autouse=True)
    async def _endpoints(self) -> AsyncIterator[None]:
        self.endpoints: dict[int, PtyEndpoint] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="msd-pty-"))
        yield
        for endpoint in self.endpoints.values():
            await endpoint.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def make_pair(self, **firmware_options: Any) -> Pair:
        firmware_options.setdefault("motors", 4)
        firmware_options.setdefault("heater", True)
        firmware_options.setdefault("battery", None)
        firmware = VB1Firmware("belt-1", now=_now(), **firmware_options)
        endpoint = PtyEndpoint(
            firmware, faults=LinkFaults(), link_path=self.folder / f"belt-{len(self.endpoints)}"
        )
        await endpoint.start()
        device = make_device(DeviceKind.BELT, str(endpoint.path), name="belt-1")
        self.endpoints[id(device)] = endpoint
        return device, firmware

    async def drop_link(self, device: Device, firmware: Firmware) -> None:
        # Pulling the USB cable: the port hangs up under the host.
        self.endpoints[id(device)].unplug()

    async def restore_link(self, device: Device, firmware: Firmware) -> None:
        await self.endpoints[id(device)].replug()

    def firmware_changed(self, device: Device, firmware: Firmware) -> None:
        self.endpoints[id(device)].wake()


class RadioEndpointMixin(DeviceBehaviour):
    """A Bluetooth device on the simulated radio, driven through the real BleakClient."""

    firmware_factory: Any

    @pytest.fixture(autouse=True)
    async def _radio(self) -> AsyncIterator[None]:
        # Unix socket paths are short: keep the folder near the root.
        self.folder = Path(tempfile.mkdtemp(prefix="msd-ble-"))
        self.radio = SimRadio(self.folder / "radio.sock")
        self.peripherals: dict[int, Peripheral] = {}
        await self.radio.start()
        yield
        await self.radio.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def make_pair(self, **firmware_options: Any) -> Pair:
        n = len(self.peripherals) + 1
        firmware: Firmware = self.firmware_factory(f"{self.kind.value}-{n}", **firmware_options)
        address = f"5A:1D:00:00:00:{n:02X}"
        peripheral = self.radio.add_peripheral(firmware, address=address, faults=LinkFaults())
        device = make_device(
            self.kind,
            address,
            transport="ble",
            name=f"{self.kind.value}-{n}",
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": str(self.radio.socket_path)},
        )
        self.peripherals[id(device)] = peripheral
        return device, firmware

    async def drop_link(self, device: Device, firmware: Firmware) -> None:
        self.radio.fault(self.peripherals[id(device)].address, "link_down")

    async def restore_link(self, device: Device, firmware: Firmware) -> None:
        self.radio.fault(self.peripherals[id(device)].address, "link_up")

    def firmware_changed(self, device: Device, firmware: Firmware) -> None:
        with contextlib.suppress(KeyError):
            self.peripherals[id(device)].wake.set()


def _belt_ble(device_id: str, **options: Any) -> VB1Firmware:
    options.setdefault("motors", 4)
    options.setdefault("heater", True)
    options.setdefault("battery", None)
    return VB1Firmware(device_id, ble=True, now=_now(), **options)


def _pillow(device_id: str, **options: Any) -> SP1Firmware:
    return SP1Firmware(device_id, now=_now(), **options)


def _butterfly(device_id: str, **options: Any) -> EB1Firmware:
    return EB1Firmware(device_id, now=_now(), **options)


class TestBeltSerialPty(PtyEndpointMixin, BeltBehaviour):
    """VB1 over a pseudo-terminal and pyserial."""


class TestBeltBleRadio(RadioEndpointMixin, BeltBehaviour):
    """VB1-BLE over the Nordic UART service on the simulated radio."""

    firmware_factory = staticmethod(_belt_ble)


class TestPillowBleRadio(RadioEndpointMixin, PillowBehaviour):
    """SP1 over the simulated radio."""

    firmware_factory = staticmethod(_pillow)


class TestButterflyBleRadio(RadioEndpointMixin, ButterflyBehaviour):
    """EB1 over the simulated radio."""

    firmware_factory = staticmethod(_butterfly)
