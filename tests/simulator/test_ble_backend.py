"""The simulated radio under the real bleak API: scan, GATT, faults, and other processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from devices.capabilities import DeviceKind
from devices.links.sim_radio import default_radio_path
from devices.protocols import eb1, sp1, vb1
from simulator.ble.backend import SimBleakClient, SimBleakScanner
from simulator.ble.peripheral import (
    CharacteristicSpec,
    GattTable,
    Peripheral,
    ServiceSpec,
    eb1_gatt,
    gatt_for,
    nus_gatt,
    sp1_gatt,
)
from simulator.ble.radio import SimRadio
from simulator.ble.wire import (
    RadioConnection,
    decode,
    encode,
    radio_request,
)
from simulator.errors import RadioError, WireError
from simulator.faults import LinkFaults
from simulator.firmware.base import Firmware

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "a0e10001-0000-1000-8000-00805f9b34fb"
WRITE = "a0e10002-0000-1000-8000-00805f9b34fb"
NOTIFY = "a0e10003-0000-1000-8000-00805f9b34fb"
BATTERY = "a0e10004-0000-1000-8000-00805f9b34fb"
ADDRESS = "AA:BB:CC:00:00:01"
NAME = "ECHO-1"
WAIT = 2.0
"""Seconds any test waits for something that should happen within milliseconds."""

ECHO_GATT: GattTable = (
    ServiceSpec(
        SERVICE,
        (
            CharacteristicSpec(WRITE, ("write-without-response", "write")),
            CharacteristicSpec(NOTIFY, ("notify",), stream=True),
            CharacteristicSpec(BATTERY, ("read",)),
        ),
    ),
)


class EchoFirmware(Firmware):
    """Notifies every write back reversed; battery reads 100; records link changes."""

    kind = DeviceKind.PILLOW
    ble_name = NAME
    service_uuids = (SERVICE,)

    def __init__(self, device_id: str = "echo-1") -> None:
        super().__init__(device_id)
        self.received: list[tuple[bytes, str | None]] = []
        self.link_ups = 0
        self.link_downs = 0
        self.stop_presses = 0
        self.occupied = True

    def receive(self, data: bytes, now: float, source: str | None = None) -> None:
        """Echo reversed to the notify characteristic."""
        self.received.append((data, source))
        self.outbox.append((NOTIFY, data[::-1]))

    def tick(self, now: float) -> None:
        """Nothing runs on time."""

    def next_deadline(self, now: float) -> float:
        """No timers."""
        return now + 0.5

    def link_up(self, now: float) -> None:
        """Count connections."""
        self.link_ups += 1

    def link_down(self, now: float) -> None:
        """Count dropped links."""
        self.link_downs += 1

    def read_attribute(self, uuid: str, now: float) -> bytes:
        """The battery level."""
        if uuid == BATTERY:
            return bytes([100])
        raise KeyError(uuid)

    def press_stop_button(self, now: float) -> None:
        """A physical fault with only a time."""
        self.stop_presses += 1

    def set_occupied(self, occupied: bool, now: float) -> None:
        """A physical fault with a value."""
        self.occupied = occupied


@dataclass
class Rig:
    """A running radio with one echo peripheral."""

    radio: SimRadio
    path: Path
    firmware: EchoFirmware
    peripheral: Peripheral


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (AF_UNIX paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="msr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def rig(sock_dir: Path) -> AsyncIterator[Rig]:
    """A radio serving one EchoFirmware at ADDRESS."""
    path = sock_dir / "radio.sock"
    radio = SimRadio(path)
    firmware = EchoFirmware()
    peripheral = radio.add_peripheral(firmware, address=ADDRESS, rssi=-61, gatt=ECHO_GATT)
    async with radio:
        yield Rig(radio, path, firmware, peripheral)


@pytest.fixture
async def dropping_rig(sock_dir: Path) -> AsyncIterator[Rig]:
    """A radio with the older, kinder model: a link drops when its host's socket closes."""
    path = sock_dir / "radio.sock"
    radio = SimRadio(path, links_outlive_host=False)
    firmware = EchoFirmware()
    peripheral = radio.add_peripheral(firmware, address=ADDRESS, rssi=-61, gatt=ECHO_GATT)
    async with radio:
        yield Rig(radio, path, firmware, peripheral)


def sim_client(
    rig: Rig,
    address: str = ADDRESS,
    disconnected_callback: Callable[[BleakClient], None] | None = None,
) -> BleakClient:
    """A real BleakClient on the simulated backend."""
    return BleakClient(
        address, disconnected_callback, backend=SimBleakClient, radio=rig.path, timeout=WAIT
    )


async def wait_until(predicate: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll until predicate() is true (the state lives in the radio, which has no event for it)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.01)


def client_tasks() -> list[asyncio.Task[object]]:
    """Tasks the bleak backends left running (their radio connections' readers and pollers)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith(("radio-reader:", "sim-ble-scanner:")) and not t.done()
    ]


# -- wire ---------------------------------------------------------------------------


def test_wire_roundtrip_and_errors() -> None:
    message = {"id": 1, "op": "write", "data": "a502"}
    assert decode(encode(message)) == message
    with pytest.raises(WireError):
        decode(b"[1, 2]\n")
    with pytest.raises(WireError):
        decode(b"{nope\n")


def test_default_radio_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASSAGED_SIM_RADIO", str(tmp_path / "x.sock"))
    assert default_radio_path() == tmp_path / "x.sock"
    monkeypatch.delenv("MASSAGED_SIM_RADIO")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_radio_path() == tmp_path / "massaged" / "sim-radio.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_radio_path() == Path(f"/tmp/massaged-{os.getuid()}/sim-radio.sock")


def test_gatt_tables_use_the_protocol_uuids() -> None:
    nus = {c.uuid: c for s in nus_gatt() for c in s.characteristics}
    assert nus[vb1.NUS_RX].properties[0] == "write-without-response"
    assert nus[vb1.NUS_TX].stream
    assert sp1_gatt()[0].characteristics[0].properties == ("write-without-response", "notify")
    eb1_chars = {c.uuid: c.properties for s in eb1_gatt() for c in s.characteristics}
    assert eb1_chars == {
        eb1.WRITE_UUID: ("write",),
        eb1.NOTIFY_UUID: ("notify",),
        eb1.BATTERY_UUID: ("read", "notify"),
    }
    assert gatt_for(DeviceKind.PILLOW)[0].uuid == sp1.SERVICE_UUID


# -- radio lifecycle ------------------------------------------------------------------


async def test_socket_is_private_and_a_second_radio_is_refused(rig: Rig) -> None:
    assert rig.path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(RadioError) as err:
        await SimRadio(rig.path).start()
    assert err.value.code == "busy"


async def test_stale_socket_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "radio.sock"
    # A socket file with nobody behind it, as a killed radio leaves.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    async with SimRadio(path):
        reply = await radio_request(path, "scan")
    assert reply["adverts"] == []
    assert not path.exists()


async def test_radio_missing_is_bluetooth_not_available(sock_dir: Path) -> None:
    with pytest.raises(BleakBluetoothNotAvailableError):
        await BleakScanner(backend=SimBleakScanner, radio=sock_dir / "none.sock").start()
    client = BleakClient(ADDRESS, backend=SimBleakClient, radio=sock_dir / "none.sock")
    with pytest.raises(BleakBluetoothNotAvailableError):
        await client.connect()


# -- scanning ---------------------------------------------------------------------------


async def test_scanner_finds_by_name_with_rssi(rig: Rig) -> None:
    async with BleakScanner(backend=SimBleakScanner, radio=rig.path) as scanner:
        async with asyncio.timeout(WAIT):
            async for found, adv in scanner.advertisement_data():
                if adv.local_name == NAME:
                    device = found
                    break
        assert device.address == ADDRESS
        assert device.name == NAME
        assert adv.rssi == -61
        assert adv.service_uuids == [SERVICE]
        assert ADDRESS in scanner.discovered_devices_and_advertisement_data
    assert not client_tasks()


async def test_scanner_honours_the_service_filter(rig: Rig) -> None:
    async with BleakScanner(
        service_uuids=[SERVICE.upper()], backend=SimBleakScanner, radio=rig.path
    ) as scanner:
        await asyncio.sleep(0.05)
        assert [d.address for d in scanner.discovered_devices] == [ADDRESS]
    async with BleakScanner(
        service_uuids=[sp1.SERVICE_UUID], backend=SimBleakScanner, radio=rig.path
    ) as scanner:
        await asyncio.sleep(0.3)
        assert scanner.discovered_devices == []


async def test_connected_or_cut_peripheral_does_not_advertise(rig: Rig) -> None:
    async with sim_client(rig):
        reply = await radio_request(rig.path, "scan")
        assert reply["adverts"] == []
    rig.radio.fault(ADDRESS, "link_down")
    assert (await radio_request(rig.path, "scan"))["adverts"] == []
    rig.radio.fault(ADDRESS, "link_up")
    assert [a["name"] for a in (await radio_request(rig.path, "scan"))["adverts"]] == [NAME]


# -- GATT -------------------------------------------------------------------------------


async def test_client_connects_writes_reads_and_gets_notifications(rig: Rig) -> None:
    got: asyncio.Queue[bytearray] = asyncio.Queue()
    async with sim_client(rig) as client:
        assert client.is_connected
        assert client.name == NAME
        assert client.mtu_size == 247
        char = client.services.get_characteristic(WRITE)
        assert char is not None
        assert char.service_uuid == SERVICE
        assert set(char.properties) == {"write-without-response", "write"}
        assert char.max_write_without_response_size == 244
        await client.start_notify(NOTIFY, lambda _c, data: got.put_nowait(data))
        await client.write_gatt_char(WRITE, b"\x01\x02\x03", response=False)
        assert await asyncio.wait_for(got.get(), WAIT) == bytearray(b"\x03\x02\x01")
        await client.write_gatt_char(WRITE, b"\x04\x05", response=True)
        assert await asyncio.wait_for(got.get(), WAIT) == bytearray(b"\x05\x04")
        assert await client.read_gatt_char(BATTERY) == bytearray(b"\x64")
        await client.stop_notify(NOTIFY)
        await client.write_gatt_char(WRITE, b"\x06", response=False)
        await asyncio.sleep(0.05)
        assert got.empty()
    assert not client.is_connected
    assert not client_tasks()
    assert rig.firmware.received == [
        (b"\x01\x02\x03", WRITE),
        (b"\x04\x05", WRITE),
        (b"\x06", WRITE),
    ]
    assert (rig.firmware.link_ups, rig.firmware.link_downs) == (1, 1)


async def test_gatt_errors_are_bleak_errors(rig: Rig) -> None:
    async with sim_client(rig) as client:
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.write_gatt_char(NOTIFY, b"\x00", response=False)
        assert err.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.read_gatt_char(WRITE)
        assert err.value.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as err:
            await client.write_gatt_char(WRITE, bytes(300), response=False)
        assert err.value.code == BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
        with pytest.raises(BleakError):
            await client.start_notify(WRITE, lambda _c, _d: None)
        char = client.services.get_characteristic(NOTIFY)
        assert char is not None
        descriptor = BleakGATTDescriptor(None, 99, "00002901-0000-1000-8000-00805f9b34fb", char)
        with pytest.raises(BleakError):
            await client.read_gatt_descriptor(descriptor)
        with pytest.raises(BleakError):
            await client.write_gatt_descriptor(descriptor, b"\x00")
        await client.pair()
        await client.unpair()
    with pytest.raises(BleakError):
        await client.write_gatt_char(WRITE, b"\x00", response=False)


async def test_unknown_address_is_not_found(rig: Rig) -> None:
    with pytest.raises(BleakDeviceNotFoundError):
        await sim_client(rig, "AA:BB:CC:99:99:99").connect()


async def test_one_central_per_peripheral(rig: Rig) -> None:
    async with sim_client(rig):
        second = sim_client(rig)
        with pytest.raises(BleakError):
            await second.connect()
        assert not second.is_connected


async def test_client_from_scanned_device_reuses_the_radio(rig: Rig) -> None:
    async with BleakScanner(backend=SimBleakScanner, radio=rig.path) as scanner:
        await asyncio.sleep(0.05)
        (device,) = scanner.discovered_devices
    # No radio= here: the BLEDevice carries it.
    async with BleakClient(device, backend=SimBleakClient, timeout=WAIT) as client:
        assert client.is_connected


# -- faults -----------------------------------------------------------------------------


async def test_link_down_disconnects_and_refuses_until_link_up(rig: Rig) -> None:
    dropped = asyncio.Event()
    client = sim_client(rig, disconnected_callback=lambda _c: dropped.set())
    await client.connect()
    rig.peripheral.faults.link_down = True  # set in-process, as a test or the simulator would
    await asyncio.wait_for(dropped.wait(), WAIT)
    assert not client.is_connected
    assert rig.firmware.link_downs == 1
    with pytest.raises(BleakDeviceNotFoundError):
        await client.connect()
    await radio_request(rig.path, "fault", device="echo-1", name="link_up")
    await client.connect()
    assert client.is_connected
    await client.disconnect()
    assert not client_tasks()
    assert rig.firmware.link_downs == 2
    assert rig.firmware.link_ups == 2


async def test_wire_fault_link_down_fires_the_callback_once(rig: Rig) -> None:
    calls: list[BleakClient] = []
    async with sim_client(rig, disconnected_callback=calls.append) as client:
        await radio_request(rig.path, "fault", device=ADDRESS.lower(), name="link_down")
        await wait_until(lambda: calls)
        await asyncio.sleep(0.1)
    assert calls == [client]


async def test_closing_the_central_socket_is_a_dropped_link_when_asked(
    dropping_rig: Rig,
) -> None:
    rig = dropping_rig
    connection = RadioConnection(rig.path)
    await connection.open()
    await connection.request("connect", address=ADDRESS)
    assert rig.firmware.link_ups == 1
    connection.abort()
    await wait_until(lambda: rig.firmware.link_downs == 1)
    await connection.close()
    assert rig.peripheral.central is None


async def test_notification_faults(rig: Rig) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    faults = rig.peripheral.faults
    async with sim_client(rig) as client:
        await client.start_notify(NOTIFY, lambda _c, data: got.put_nowait(bytes(data)))

        rig.radio.fault("echo-1", "drop", 1.0)
        await client.write_gatt_char(WRITE, b"\x01", response=False)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(got.get(), 0.2)

        rig.radio.fault("echo-1", "clear")
        rig.radio.fault("echo-1", "split")
        await client.write_gatt_char(WRITE, b"\x01\x02\x03\x04", response=False)
        first = await asyncio.wait_for(got.get(), WAIT)
        second = await asyncio.wait_for(got.get(), WAIT)
        assert (first, second) == (b"\x04\x03", b"\x02\x01")

        rig.radio.fault("echo-1", "clear")
        rig.radio.fault("echo-1", "delay", 0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.write_gatt_char(WRITE, b"\x05", response=False)
        assert await asyncio.wait_for(got.get(), WAIT) == b"\x05"
        assert loop.time() - start >= 0.15

        rig.radio.fault("echo-1", "clear")
        rig.radio.fault("echo-1", "corrupt", 1.0)
        await client.write_gatt_char(WRITE, b"\x00\x00", response=False)
        echoed = await asyncio.wait_for(got.get(), WAIT)
        written = rig.firmware.received[-1][0]
        assert bin(int.from_bytes(written, "big")).count("1") == 1
        flipped = int.from_bytes(echoed, "big") ^ int.from_bytes(written[::-1], "big")
        assert bin(flipped).count("1") == 1
    assert faults.corrupt_rate == 1.0


async def test_fault_op_dispatch(rig: Rig) -> None:
    await radio_request(rig.path, "fault", device=NAME, name="press_stop_button")
    assert rig.firmware.stop_presses == 1
    await radio_request(rig.path, "fault", device="echo-1", name="set_occupied", value=False)
    assert rig.firmware.occupied is False
    for device, name, code in [
        ("echo-1", "turn_wheel", "unknown_fault"),
        ("echo-1", "explode", "unknown_fault"),
        ("nobody", "link_down", "unknown_device"),
        ("echo-1", "set_occupied", "fault_failed"),
        ("echo-1", "drop", "bad_request"),
    ]:
        value = 7 if name == "drop" else None
        with pytest.raises(RadioError) as err:
            await radio_request(rig.path, "fault", device=device, name=name, value=value)
        assert err.value.code == code, name


async def test_serial_endpoints_are_listed_and_take_faults(rig: Rig) -> None:
    faults = LinkFaults()
    woken: list[bool] = []
    serial_fw = EchoFirmware("belt-2")
    rig.radio.register_serial(
        "belt",
        "/dev/pts/77",
        "belt-2",
        firmware=serial_fw,
        faults=faults,
        wake=lambda: woken.append(True),
    )
    reply = await radio_request(rig.path, "list_serial")
    assert reply["serial"] == [{"kind": "belt", "path": "/dev/pts/77", "id": "belt-2"}]
    await radio_request(rig.path, "fault", device="belt-2", name="link_down")
    await radio_request(rig.path, "fault", device="/dev/pts/77", name="press_stop_button")
    assert faults.link_down
    assert serial_fw.stop_presses == 1
    assert woken == [True, True]
    devices = (await radio_request(rig.path, "list_devices"))["devices"]
    assert {(d["id"], d["transport"]) for d in devices} == {("echo-1", "ble"), ("belt-2", "serial")}


async def test_closing_the_radio_disconnects_centrals(sock_dir: Path) -> None:
    radio = SimRadio(sock_dir / "radio.sock")
    firmware = EchoFirmware()
    radio.add_peripheral(firmware, address=ADDRESS, gatt=ECHO_GATT)
    await radio.start()
    dropped = asyncio.Event()
    client = BleakClient(
        ADDRESS,
        lambda _c: dropped.set(),
        backend=SimBleakClient,
        radio=sock_dir / "radio.sock",
        timeout=WAIT,
    )
    await client.connect()
    await radio.close()
    await asyncio.wait_for(dropped.wait(), WAIT)
    assert firmware.link_downs == 1
    await client.disconnect()
    await radio.close()
    assert not (sock_dir / "radio.sock").exists()


# -- across processes ---------------------------------------------------------------------


def serve_echo(path: str) -> None:
    """Run a radio with the echo firmware until killed (the subprocess side of a test)."""

    async def main() -> None:
        radio = SimRadio(Path(path))
        radio.add_peripheral(EchoFirmware(), address=ADDRESS, gatt=ECHO_GATT)
        async with radio:
            await asyncio.Event().wait()

    asyncio.run(main())


CENTRAL_SCRIPT = """
import asyncio, sys
from bleak import BleakClient
from simulator.ble.backend import SimBleakClient

async def main():
    client = BleakClient(sys.argv[1], backend=SimBleakClient, radio=sys.argv[2], timeout=5)
    await client.connect()
    await client.write_gatt_char(sys.argv[3], b"hi", response=False)
    print("connected", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _python(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill a child and reap it (only once: a second kill() would reap it behind asyncio's back)."""
    if process.returncode is None:
        process.kill()
        async with asyncio.timeout(WAIT):
            await process.communicate()


async def test_radio_in_another_process(sock_dir: Path) -> None:
    path = sock_dir / "radio.sock"
    process = await _python(
        "-c", f"from tests.simulator.test_ble_backend import serve_echo; serve_echo({str(path)!r})"
    )
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    await radio_request(path, "scan", timeout=0.5)
                    break
                except RadioError:
                    await asyncio.sleep(0.05)
        got: asyncio.Queue[bytearray] = asyncio.Queue()
        dropped = asyncio.Event()
        client = BleakClient(
            ADDRESS, lambda _c: dropped.set(), backend=SimBleakClient, radio=path, timeout=WAIT
        )
        await client.connect()
        await client.start_notify(NOTIFY, lambda _c, data: got.put_nowait(data))
        await client.write_gatt_char(WRITE, b"ab", response=False)
        assert await asyncio.wait_for(got.get(), WAIT) == bytearray(b"ba")
        # The radio's process dies: the central sees its link drop.
        await _kill(process)
        await asyncio.wait_for(dropped.wait(), WAIT)
        assert not client.is_connected
        await client.disconnect()
    finally:
        await _kill(process)


async def test_central_process_death_is_a_dropped_link_when_asked(dropping_rig: Rig) -> None:
    rig = dropping_rig
    process = await _python("-c", CENTRAL_SCRIPT, ADDRESS, str(rig.path), WRITE)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.strip() == b"connected"
        assert rig.firmware.received == [(b"hi", WRITE)]
        assert rig.firmware.link_downs == 0
        await _kill(process)
        await wait_until(lambda: rig.firmware.link_downs == 1)
        assert rig.peripheral.central is None
    finally:
        await _kill(process)
