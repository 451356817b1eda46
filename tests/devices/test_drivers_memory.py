"""The shared driver behaviour over the in-process MemoryLink, for each kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devices.capabilities import DeviceKind
from devices.drivers.base import Device
from devices.drivers.eb1 import EB1Driver
from devices.drivers.sp1 import SP1Driver
from devices.drivers.vb1 import VB1Driver
from devices.errors import ConfigError
from devices.kinds import KINDS, MODELS, guess_transport, make_device
from devices.links.base import Link
from devices.links.ble import BleLink
from devices.links.serial import SerialLink
from devices.protocols import eb1, sp1, vb1
from simulator.endpoints.memory import MemoryLink
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


def memory_link(device: Device) -> MemoryLink:
    """The MemoryLink under a driver."""
    link: Link = device.link
    assert isinstance(link, MemoryLink)
    return link


def belt_pair(
    *, faults: LinkFaults | None = None, **options: Any
) -> tuple[VB1Driver, VB1Firmware, MemoryLink]:
    """A VB1 driver over a MemoryLink to a 4-motor belt with heater, on mains."""
    options.setdefault("motors", 4)
    options.setdefault("heater", True)
    options.setdefault("battery", None)
    driver_options = options.pop("driver_options", {})
    firmware = VB1Firmware("belt-1", now=_now(), **options)
    link = MemoryLink(firmware, faults=faults)
    return VB1Driver(link, name="belt-1", **driver_options), firmware, link


def pillow_pair(
    *, faults: LinkFaults | None = None, **options: Any
) -> tuple[SP1Driver, SP1Firmware, MemoryLink]:
    """An SP1 driver over a MemoryLink to a pillow with heater, on mains."""
    driver_options = options.pop("driver_options", {})
    firmware = SP1Firmware("pillow-1", now=_now(), **options)
    link = MemoryLink(firmware, faults=faults)
    return SP1Driver(link, name="pillow-1", **driver_options), firmware, link


def butterfly_pair(
    *, faults: LinkFaults | None = None, **options: Any
) -> tuple[EB1Driver, EB1Firmware, MemoryLink]:
    """An EB1 driver over a MemoryLink to a butterfly."""
    driver_options = options.pop("driver_options", {})
    firmware = EB1Firmware("butterfly-1", now=_now(), **options)
    link = MemoryLink(firmware, faults=faults)
    return EB1Driver(link, name="butterfly-1", **driver_options), firmware, link


class MemoryEndpoint(DeviceBehaviour):
    """Driver and firmware wired by a MemoryLink in this process."""

    async def drop_link(self, device: Device, firmware: Firmware) -> None:
        link = memory_link(device)
        assert link.faults is not None
        link.faults.link_down = True
        await link.drop("test cut the link")

    async def restore_link(self, device: Device, firmware: Firmware) -> None:
        link = memory_link(device)
        assert link.faults is not None
        link.faults.link_down = False

    def firmware_changed(self, device: Device, firmware: Firmware) -> None:
        memory_link(device).wake()


class TestBeltMemory(MemoryEndpoint, BeltBehaviour):
    """VB1 over MemoryLink."""

    async def make_pair(self, **firmware_options: Any) -> Pair:
        driver, firmware, _ = belt_pair(faults=LinkFaults(), **firmware_options)
        return driver, firmware


class TestPillowMemory(MemoryEndpoint, PillowBehaviour):
    """SP1 over MemoryLink."""

    async def make_pair(self, **firmware_options: Any) -> Pair:
        driver, firmware, _ = pillow_pair(faults=LinkFaults(), **firmware_options)
        return driver, firmware


class TestButterflyMemory(MemoryEndpoint, ButterflyBehaviour):
    """EB1 over MemoryLink."""

    async def make_pair(self, **firmware_options: Any) -> Pair:
        driver, firmware, _ = butterfly_pair(faults=LinkFaults(), **firmware_options)
        return driver, firmware


# -- the kinds table: one driver and the right link per kind -------------------


def test_every_kind_and_model_has_a_spec_with_its_driver() -> None:
    assert set(KINDS) == set(DeviceKind)
    for kind, spec in KINDS.items():
        assert spec.kind == kind
        assert spec.output.kind == kind
        assert spec.maximum == spec.output.maximum
        assert MODELS[spec.default_model].kind == kind
    for name, model in MODELS.items():
        assert model.model == name
        assert getattr(model.driver, "kind", None) == model.kind
        assert model.ble_name_prefixes
        assert model.write_uuid
        assert model.notify_uuids
    assert [m.model for m in MODELS.values() if m.serial] == ["VB1"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("/dev/ttyACM0", "serial"),
        ("./belt.pty", "serial"),
        ("COM3", "serial"),
        ("socket://localhost:7000", "serial"),
        ("loop://", "serial"),
        ("AA:BB:CC:DD:EE:FF", "ble"),
        ("aa-bb-cc-dd-ee-ff", "ble"),
        ("0BA1C6A1-9E1D-4C40-8C2A-6C0D6D1A2B3C", "ble"),
        ("belt-1", None),
    ],
)
def test_guess_transport(address: str, expected: str | None) -> None:
    assert guess_transport(address) == expected


def test_make_device_builds_the_right_link() -> None:
    belt = make_device("belt", "/dev/ttyACM0", name="belt-1")
    assert isinstance(belt, VB1Driver)
    assert isinstance(belt.link, SerialLink)
    assert belt.link.baudrate == vb1.BAUDRATE
    assert belt.name == "belt-1"

    ble_belt = make_device(DeviceKind.BELT, "AA:BB:CC:DD:EE:FF")
    assert isinstance(ble_belt.link, BleLink)
    assert ble_belt.link.write_uuid == vb1.NUS_RX
    assert ble_belt.link.notify_uuids == (vb1.NUS_TX,)

    pillow = make_device("pillow", "SP1-0001")
    assert isinstance(pillow, SP1Driver)
    assert isinstance(pillow.link, BleLink)
    assert pillow.link.write_uuid == sp1.DATA_UUID

    butterfly = make_device(
        "butterfly",
        "AA:BB:CC:DD:EE:01",
        ble_kwargs={"radio": "/tmp/radio"},
        soft_limits=(80, 60),
    )
    assert isinstance(butterfly, EB1Driver)
    assert butterfly.soft_limits == (80, 60)
    assert isinstance(butterfly.link, BleLink)
    assert butterfly.link.write_response
    assert butterfly.link.client_kwargs == {"radio": "/tmp/radio"}
    assert eb1.BATTERY_UUID in butterfly.link.notify_uuids


def test_make_device_refuses_what_cannot_be() -> None:
    with pytest.raises(ConfigError, match="serial"):
        make_device("pillow", "/dev/ttyUSB0")
    with pytest.raises(ConfigError, match="kind"):
        make_device("kettle", "/dev/ttyUSB0")
