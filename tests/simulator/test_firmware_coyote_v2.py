"""Simulated Coyote V2 firmware, its GATT table, its name-only advertisement, its fleet spec."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak import BleakScanner

from devices.capabilities import DeviceKind
from devices.errors import ConfigError
from devices.protocols import coyote_v2 as cv2
from simulator.ble.backend import SimBleakScanner
from simulator.ble.peripheral import gatt_for_firmware
from simulator.ble.radio import SimRadio
from simulator.firmware.coyote_v2 import CoyoteV2Firmware
from simulator.firmware.eb1 import EB1Firmware
from simulator.fleet import Fleet, parse_spec
from simulator.recording import Recorder

A, B = cv2.WAVEFORM_A_UUID, cv2.WAVEFORM_B_UUID


def test_strengths_are_kept_and_answered() -> None:
    fw = CoyoteV2Firmware("c", now=0.0)
    fw.receive(bytes.fromhex("78e515"), 0.0, cv2.STRENGTH_UUID)  # A 700, B 1400
    assert fw.wire_strengths == (700, 1400)
    assert fw.strengths == (100, 200)
    assert fw.take_outgoing() == [(cv2.STRENGTH_UUID, bytes.fromhex("78e515"))]
    assert fw.is_quiet  # a strength without waveform puts nothing out
    assert fw.read_attribute(cv2.STRENGTH_UUID, 0.0) == bytes.fromhex("78e515")


def test_a_host_past_1400_shows() -> None:
    fw = CoyoteV2Firmware("c", now=0.0)
    fw.receive(((2047 << 11) | 1401).to_bytes(3, "little"), 0.0, cv2.STRENGTH_UUID)
    assert fw.max_wire_strength == 2047
    assert fw.wire_strengths == (2047, 1401)


def test_each_waveform_lasts_100ms_on_its_own_channel() -> None:
    rec = Recorder()
    fw = CoyoteV2Firmware("c", recorder=rec, now=0.0)
    fw.receive(cv2.encode_strengths(70, 140), 0.0, cv2.STRENGTH_UUID)
    fw.receive(cv2.encode_waveform(cv2.Waveform(1, 9, 20)), 0.0, A)
    assert fw.effective_outputs == (10, 0)
    fw.receive(cv2.encode_waveform(cv2.Waveform(1, 9, 10)), 0.05, B)
    assert fw.effective_outputs == (10, 10)
    assert fw.next_deadline(0.06) == pytest.approx(0.1)
    fw.receive(cv2.encode_waveform(cv2.Waveform(1, 9, 20)), 0.1, A)  # on time: no gap
    fw.tick(0.151)
    assert fw.effective_outputs == (10, 0)
    fw.tick(0.2)
    assert fw.is_quiet
    channels = {row["channel"] for row in rec.rows}
    assert channels == {"strength_a", "strength_b", "output_a", "output_b"}
    # A at 0 at the start and when its second waveform ran out: no gap at 0.1 between.
    zeros = [r["t"] for r in rec.rows if r["channel"] == "output_a" and r["value"] == 0]
    assert zeros == [0.0, 0.2]


def test_the_channel_mapping_is_the_codecs_one_constant() -> None:
    fw = CoyoteV2Firmware("c", now=0.0)
    fw.receive(cv2.encode_strengths(70, 0), 0.0, cv2.STRENGTH_UUID)
    fw.receive(
        cv2.encode_waveform(cv2.Waveform(1, 9, 20)), 0.0, "955a1506-0fe2-f5aa-a094-84b8d4f3e8ad"
    )
    assert fw.waveforms[0] == cv2.Waveform(1, 9, 20)  # 0x1506 is channel A (vendor's table)
    assert fw.waveforms[1] is None


def test_turn_wheel_is_a_change_the_host_did_not_write() -> None:
    fw = CoyoteV2Firmware("c", now=0.0)
    fw.turn_wheel(None, 5, 0.0)
    assert fw.take_outgoing() == [(cv2.STRENGTH_UUID, cv2.encode_strengths(0, 35))]


def test_battery() -> None:
    fw = CoyoteV2Firmware("c", battery=40, now=0.0)
    assert fw.read_attribute(cv2.BATTERY_UUID, 0.0) == bytes((40,))
    fw.set_battery(39, 0.0)
    assert fw.take_outgoing() == [(cv2.BATTERY_UUID, bytes((39,)))]
    with pytest.raises(ValueError, match="battery"):
        CoyoteV2Firmware("c", battery=101)


def test_bad_writes_are_ignored() -> None:
    fw = CoyoteV2Firmware("c", now=0.0)
    fw.receive(b"\x00\x00\xff", 0.0, cv2.STRENGTH_UUID)
    fw.receive(b"\x00", 0.0, A)
    fw.receive(b"\x00\x00\x00", 0.0, "0000180a-0000-1000-8000-00805f9b34fb")
    assert fw.wire_strengths == (0, 0)
    assert fw.take_outgoing() == []


def test_gatt_table() -> None:
    gatt = gatt_for_firmware(CoyoteV2Firmware("c"))
    chars = {c.uuid: c.properties for s in gatt for c in s.characteristics}
    assert [s.uuid for s in gatt] == [cv2.BATTERY_SERVICE_UUID, cv2.SERVICE_UUID]
    assert chars[cv2.STRENGTH_UUID] == ("read", "write", "notify")
    assert chars[A] == chars[B] == ("read", "write")
    assert chars[cv2.BATTERY_UUID] == ("read", "notify")


def test_fleet_specs() -> None:
    spec = parse_spec("coyote")
    assert spec.kind == DeviceKind.BUTTERFLY
    assert spec.model == "coyote_v2"
    assert not spec.advertise_services
    assert parse_spec("butterfly,model=coyote_v2") == spec
    eb1 = parse_spec("butterfly:ble,name=47L121000,advertise_services=false")
    assert (eb1.model, eb1.name, eb1.advertise_services) == ("eb1", "47L121000", False)
    assert parse_spec("butterfly").model == "eb1"
    assert parse_spec("belt").model is None
    for bad, what in (
        ("butterfly,model=v9", "model"),
        ("coyote,advertise_services=yes", "name only"),
        ("butterfly,advertise_services=maybe", "advertise_services"),
        ("pillow,name=x", "unknown option"),
        ("butterfly,name=", "name"),
    ):
        with pytest.raises(ConfigError, match=what):
            parse_spec(bad)


@pytest.fixture
async def radio_path() -> AsyncIterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="msd-cv2-"))
    yield folder / "radio.sock"
    shutil.rmtree(folder, ignore_errors=True)


async def test_names_only_found_by_the_real_bleak_scanner(radio_path: Path) -> None:
    now = asyncio.get_running_loop().time()
    async with SimRadio(radio_path) as radio:
        radio.add_peripheral(CoyoteV2Firmware("c", now=now), address="5A:1D:03:00:00:01")
        radio.add_peripheral(
            EB1Firmware("e", name="47L121000", advertise_services=False, now=now),
            address="5A:1D:03:00:00:02",
        )
        radio.add_peripheral(EB1Firmware("f", now=now), address="5A:1D:03:00:00:03")
        # The scanner's start() scans once: what it saw is there when the block starts.
        async with BleakScanner(backend=SimBleakScanner, radio=radio_path) as scanner:
            found = scanner.discovered_devices_and_advertisement_data
        adverts = {adv.local_name: adv.service_uuids for _, adv in found.values()}
        assert adverts["D-LAB ESTIM01"] == []
        assert adverts["47L121000"] == []
        assert adverts["EB1-47L121000"]  # the document's EB1 still advertises its service
        # Filtered by service, the name-only units are not found (as with real ones).
        async with BleakScanner(
            service_uuids=[cv2.SERVICE_UUID], backend=SimBleakScanner, radio=radio_path
        ) as scanner:
            assert scanner.discovered_devices_and_advertisement_data == {}


async def test_simulate_serves_a_coyote(radio_path: Path) -> None:
    specs = [parse_spec("coyote"), parse_spec("butterfly,name=47L121000,advertise_services=no")]
    async with Fleet(specs, radio_path=radio_path) as fleet:
        coyote, eb1 = fleet.devices
        assert isinstance(coyote.firmware, CoyoteV2Firmware)
        assert coyote.describe()["name"] == "D-LAB ESTIM01"
        assert coyote.describe()["model"] == "coyote_v2"
        assert eb1.firmware.ble_name == "47L121000"
        adverts = {p.name: p.advert() for p in fleet.radio.peripherals.values()}
        assert adverts["D-LAB ESTIM01"]["service_uuids"] == []
        assert adverts["47L121000"]["service_uuids"] == []
