"""BleLink and discovery over the real bleak API on the simulated radio."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devices import discovery
from devices.capabilities import DeviceKind
from devices.discovery import Found
from devices.errors import ConfigError, DeviceTimeoutError, LinkError, LinkLostError
from devices.kinds import MODELS, classify, make_link
from devices.links.ble import BleLink
from devices.protocols import eb1, sp1, vb1
from simulator.ble.backend import SimBleakClient
from simulator.ble.radio import SimRadio
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware

WAIT = 2.0
"""Seconds any test waits for something that should happen within milliseconds."""
PILLOW = "AA:BB:CC:00:00:02"
BELT = "AA:BB:CC:00:00:01"
BUTTERFLY = "AA:BB:CC:00:00:03"
OTHER = "AA:BB:CC:00:00:09"


class EchoFirmware(Firmware):
    """Echoes every write to one characteristic; the battery reads 77 %."""

    def __init__(
        self,
        device_id: str,
        kind: DeviceKind,
        name: str,
        notify_uuid: str,
        service_uuids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(device_id)
        self.kind = kind
        self.ble_name = name
        self.service_uuids = service_uuids
        self.notify_uuid = notify_uuid
        self.received: list[tuple[bytes, str | None]] = []
        self.link_downs = 0

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Echo as is."""
        self.received.append((data, source))
        self.outbox.append((self.notify_uuid, data))

    def tick(self, now: float) -> None:
        """No timers."""

    def next_deadline(self, now: float) -> float:
        """No timers."""
        return now + 1.0

    def link_down(self, now: float) -> None:
        """Count dropped links."""
        self.link_downs += 1

    def read_attribute(self, uuid: str, now: float) -> bytes:
        """The EB1 battery level."""
        if uuid == eb1.BATTERY_UUID:
            self.outbox.append((eb1.BATTERY_UUID, b"\x4d"))  # a read also notifies, for the test
            return b"\x4d"
        raise KeyError(uuid)


@dataclass
class Rig:
    """A radio with one device of each kind, plus an unrelated peripheral."""

    radio: SimRadio
    path: Path
    pillow: EchoFirmware
    belt: EchoFirmware
    butterfly: EchoFirmware
    received: list[tuple[str, bytes]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)

    def link(self, kind: str, address: str) -> BleLink:
        """A link to one of the rig's devices with callbacks into the rig."""
        link = ble_link_for(kind, address, SimBleakClient, {"radio": self.path})
        link.set_callbacks(self._on_receive, self.lost.append)
        return link

    def _on_receive(self, source: str, data: bytes) -> None:
        self.received.append((source, data))
        self.queue.put_nowait((source, data))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="msl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def rig(sock_dir: Path) -> AsyncIterator[Rig]:
    """A running radio with a pillow, a belt, a butterfly and a stranger."""
    path = sock_dir / "radio.sock"
    radio = SimRadio(path)
    pillow = EchoFirmware(
        "pillow-1", DeviceKind.PILLOW, "SP1-0001", sp1.DATA_UUID, (sp1.SERVICE_UUID,)
    )
    # No name prefix: recognised by its advertised service alone.
    belt = EchoFirmware("belt-1", DeviceKind.BELT, "Massager", vb1.NUS_TX, (vb1.NUS_SERVICE,))
    butterfly = EchoFirmware(
        "butterfly-1", DeviceKind.BUTTERFLY, "EB1-47L121000", eb1.NOTIFY_UUID, (eb1.SERVICE_UUID,)
    )
    stranger = EchoFirmware(
        "other",
        DeviceKind.PILLOW,
        "Headphones",
        sp1.DATA_UUID,
        ("0000180f-0000-1000-8000-00805f9b34fb",),
    )
    radio.add_peripheral(pillow, address=PILLOW, rssi=-48)
    radio.add_peripheral(belt, address=BELT)
    radio.add_peripheral(butterfly, address=BUTTERFLY)
    radio.add_peripheral(stranger, address=OTHER)
    async with radio:
        yield Rig(radio, path, pillow, belt, butterfly)


async def next_received(rig: Rig) -> tuple[str, bytes]:
    """The next (source, data) the link delivered."""
    return await asyncio.wait_for(rig.queue.get(), WAIT)


# -- BleLink ---------------------------------------------------------------------------


def ble_link_for(
    kind: str | DeviceKind, address: str, backend: Any = None, kwargs: Any = None
) -> BleLink:
    """The BLE link to a device of this kind's default model, built by the models table."""
    link = make_link(kind, address, transport="ble", ble_backend=backend, ble_kwargs=kwargs)
    assert isinstance(link, BleLink)
    return link


def test_every_kind_has_a_ble_model_and_the_factory_uses_it() -> None:
    assert {m.kind for m in MODELS.values()} == set(DeviceKind)
    belt = ble_link_for("belt", "x")
    assert (belt.write_uuid, belt.notify_uuids, belt.write_response) == (
        vb1.NUS_RX,
        (vb1.NUS_TX,),
        False,
    )
    pillow = ble_link_for(DeviceKind.PILLOW, "x")
    assert (pillow.write_uuid, pillow.notify_uuids) == (sp1.DATA_UUID, (sp1.DATA_UUID,))
    butterfly = ble_link_for("butterfly", "x")
    assert butterfly.write_uuid == eb1.WRITE_UUID
    assert butterfly.notify_uuids == (eb1.NOTIFY_UUID, eb1.BATTERY_UUID)
    assert butterfly.write_response
    with pytest.raises(ConfigError):
        ble_link_for("toaster", "x")


async def test_open_write_and_notifications_with_their_source(rig: Rig) -> None:
    link = rig.link("pillow", PILLOW)
    assert not link.is_open
    await link.open(timeout=WAIT)
    assert link.is_open
    await link.write(b"\x55\xaa\x01\x01\x02")
    assert await next_received(rig) == (sp1.DATA_UUID, b"\x55\xaa\x01\x01\x02")
    assert rig.pillow.received == [(b"\x55\xaa\x01\x01\x02", sp1.DATA_UUID)]
    await link.close()
    assert not link.is_open
    assert rig.lost == []
    assert rig.pillow.link_downs == 1


async def test_butterfly_writes_with_response_and_reads_the_battery(rig: Rig) -> None:
    link = rig.link("butterfly", BUTTERFLY)
    await link.open(timeout=WAIT)
    try:
        await link.write(b"\xbf\x96\x1e\x80\x80\x80\x80")
        assert await next_received(rig) == (eb1.NOTIFY_UUID, b"\xbf\x96\x1e\x80\x80\x80\x80")
        assert await link.read(eb1.BATTERY_UUID) == b"\x4d"
        assert await next_received(rig) == (eb1.BATTERY_UUID, b"\x4d")
        with pytest.raises(LinkError) as err:
            await link.read(eb1.NOTIFY_UUID)
        assert not isinstance(err.value, LinkLostError)
        assert link.is_open
    finally:
        await link.close()


async def test_belt_stream_arrives_split_under_the_split_fault(rig: Rig) -> None:
    link = rig.link("belt", BELT)
    await link.open(timeout=WAIT)
    rig.radio.fault("belt-1", "split")
    hello = bytes.fromhex("a5020101 81ec")
    await link.write(hello)
    first = await next_received(rig)
    second = await next_received(rig)
    assert (first[0], second[0]) == (vb1.NUS_TX, vb1.NUS_TX)
    assert first[1] + second[1] == hello
    assert len(first[1]) == 3
    await link.close()


async def test_lost_is_reported_once_and_close_is_idempotent(rig: Rig) -> None:
    link = rig.link("pillow", PILLOW)
    await link.open(timeout=WAIT)
    rig.radio.fault("pillow-1", "link_down")
    async with asyncio.timeout(WAIT):
        while not rig.lost:  # noqa: ASYNC110 - the callback is the event under test
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(rig.lost) == 1
    assert not link.is_open
    with pytest.raises(LinkLostError):
        await link.write(b"\x00")
    with pytest.raises(LinkLostError):
        await link.read(sp1.DATA_UUID)
    await link.close()
    await link.close()
    assert len(rig.lost) == 1
    assert rig.pillow.link_downs == 1
    # The link can be opened again once the device is back.
    rig.radio.fault("pillow-1", "link_up")
    await link.open(timeout=WAIT)
    await link.write(b"\x01")
    assert await next_received(rig) == (sp1.DATA_UUID, b"\x01")
    await link.close()
    assert len(rig.lost) == 1


async def test_open_fails_on_an_unknown_address_or_a_missing_radio(rig: Rig) -> None:
    with pytest.raises(LinkError):
        await rig.link("pillow", "AA:BB:CC:99:99:99").open(timeout=WAIT)
    link = ble_link_for(
        "pillow", PILLOW, SimBleakClient, {"radio": rig.path.with_name("none.sock")}
    )
    with pytest.raises(LinkError):
        await link.open(timeout=WAIT)
    assert not link.is_open
    await link.close()


async def test_open_times_out_when_the_radio_never_answers(sock_dir: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    path = sock_dir / "silent.sock"
    server = await asyncio.start_unix_server(silent, path)
    try:
        link = ble_link_for("pillow", PILLOW, SimBleakClient, {"radio": path})
        with pytest.raises(DeviceTimeoutError):
            await link.open(timeout=0.3)
        assert not link.is_open
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_open_is_cancelled_cleanly(rig: Rig) -> None:
    link = rig.link("pillow", PILLOW)
    task = asyncio.create_task(link.open(timeout=WAIT))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not link.is_open
    await link.close()
    await asyncio.sleep(0.1)
    # Nothing holds the pillow any more: it can be opened again.
    await link.open(timeout=WAIT)
    await link.close()


# -- discovery ---------------------------------------------------------------------------


def test_classify() -> None:
    assert classify("VB1-1234", []) is MODELS["VB1"]
    assert classify("SP1-1", []) is MODELS["SP1"]
    assert classify(None, [eb1.SERVICE_UUID.upper()]) is MODELS["EB1"]
    assert classify("Headphones", ["180f"]) is None


async def test_scan_finds_ble_and_simulated_serial_devices(rig: Rig) -> None:
    rig.radio.register_serial("belt", "/dev/pts/42", "belt-2", faults=LinkFaults())
    found = await discovery.scan(0.3, radio_path=rig.path)
    by_address = {f.address: f for f in found}
    assert by_address[PILLOW] == Found(DeviceKind.PILLOW, PILLOW, "SP1-0001", "ble", -48, "SP1")
    assert by_address[BELT].kind is DeviceKind.BELT
    assert by_address[BUTTERFLY].kind is DeviceKind.BUTTERFLY
    assert OTHER not in by_address
    assert by_address["/dev/pts/42"] == Found(
        DeviceKind.BELT, "/dev/pts/42", "belt-2", "serial", None, "VB1"
    )


async def test_scan_without_serial_and_with_explicit_backend(rig: Rig) -> None:
    from simulator.ble.backend import SimBleakScanner

    kwargs: dict[str, Any] = {"radio": rig.path}
    found = await discovery.scan(
        0.3, scanner_backend=SimBleakScanner, scanner_kwargs=kwargs, include_serial=False
    )
    assert {f.transport for f in found} == {"ble"}
    assert len(found) == 3


async def test_scan_fails_only_when_every_source_fails(sock_dir: Path) -> None:
    with pytest.raises(LinkError):
        await discovery.scan(0.1, radio_path=sock_dir / "none.sock", include_serial=False)
