"""The Coyote V2 wherever the EB1 goes: selftest, the pairing pulse, MQTT discovery, the
scan's model column, and a fault it reports within a session (issue 14, part 1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from controller import pairing
from controller.commands.selftest import run_selftest
from controller.live import LinePrinter
from controller.mqtt.discovery import DeviceDescription, Topics, device_discovery, table_model
from controller.profiles import KindCaps
from controller.safety import SafetyLimits
from controller.session import RunnerEvent
from controller.store import DeviceRecord
from devices.capabilities import Capabilities, DeviceKind, belt_motors, butterfly_channels
from devices.drivers.coyote_v2 import CoyoteV2Driver
from devices.drivers.eb1 import EB1Driver
from devices.errors import ConfigError
from devices.events import DeviceFault
from devices.kinds import make_device
from devices.outputs import ButterflyOutput, EmsChannelOutput
from simulator.endpoints.memory import MemoryLink
from simulator.faults import LinkFaults
from simulator.firmware.coyote_v2 import CoyoteV2Firmware
from simulator.fleet import Fleet, parse_spec
from simulator.recording import Recorder
from tests.controller.test_safety import FakeButterfly, make_session
from tests.controller.test_session import (
    Rig,
    ems,
    kinds_of,
    make_plan,
    make_runner,
    running,
    wait_until,
)
from tests.daemon_processes import Setup, simulator_beside

TOPICS = Topics("massaged", "massaged", "homeassistant")


def _now() -> float:
    return asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def fleet(*specs: str) -> AsyncIterator[tuple[Fleet, Recorder]]:
    """Simulated devices on a private radio (a short path: Unix sockets are limited)."""
    folder = Path(tempfile.mkdtemp(prefix="msd-cy-"))
    recorder = Recorder(t0=_now())
    served = Fleet([parse_spec(s) for s in specs], radio_path=folder / "r", recorder=recorder)
    try:
        async with served:
            yield served, recorder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def strengths(recorder: Recorder, device: str) -> list[int]:
    return [
        cast(int, r["value"])
        for r in recorder.rows
        if r["device"] == device and str(r["channel"]).startswith("strength")
    ]


# -- selftest ---------------------------------------------------------------------------


def selftest_args(radio: Path, *targets: str) -> argparse.Namespace:
    return argparse.Namespace(targets=list(targets), simulator=True, radio=str(radio), timeout=5.0)


async def test_selftest_drives_a_coyote(capsys: pytest.CaptureFixture[str]) -> None:
    async with fleet("coyote") as (served, recorder):
        (coyote,) = served.devices
        args = selftest_args(served.radio_path, f"butterfly:CoyoteV2={coyote.address}")
        assert await run_selftest(args) == 0
    out = capsys.readouterr().out
    assert f"butterfly at {coyote.address}: Coyote V2" in out
    assert "EMS channel A (left)" in out
    assert "EMS channel B (right)" in out
    assert "stopped: every output at zero" in out
    seen = strengths(recorder, coyote.id)
    assert max(seen) > 0  # it really drove the unit, gently...
    assert max(seen) <= 8
    assert seen[-1] == 0  # ...and left it at zero


async def test_selftest_names_a_device_of_the_wrong_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with fleet("coyote", "butterfly") as (served, recorder):
        coyote, eb1 = served.devices
        args = selftest_args(
            served.radio_path,
            f"butterfly={coyote.address}",  # the kind's default model: an EB1
            f"butterfly:coyote_v2={eb1.address}",
        )
        assert await run_selftest(args) == 1
    out, err = capsys.readouterr()
    assert "2 of 2 self-tests failed" in err
    assert (
        f"{coyote.address} is not a butterfly of model EB1: it offers the services of "
        f"model Coyote V2 (give its model: butterfly:CoyoteV2={coyote.address})"
    ) in out
    assert (
        f"{eb1.address} is not a butterfly of model Coyote V2: it offers the services of "
        f"model EB1 (give its model: butterfly:EB1={eb1.address})"
    ) in out
    assert not any(
        strengths(recorder, d.id) and max(strengths(recorder, d.id)) for d in (coyote, eb1)
    )


# -- the pairing pulse ------------------------------------------------------------------


async def test_the_confirmation_pulse_on_a_coyote() -> None:
    recorder = Recorder(t0=_now())
    firmware = CoyoteV2Firmware("butterfly-1", recorder=recorder, now=_now())
    driver = CoyoteV2Driver(MemoryLink(firmware, faults=LinkFaults()), name="butterfly-1")
    await driver.connect()
    try:
        await pairing.confirmation_pulse(driver, seconds=0.6)
        assert firmware.strengths == (0, 0)
    finally:
        await driver.close()
    outputs = [
        cast(int, r["value"]) for r in recorder.rows if str(r["channel"]).startswith("output")
    ]
    assert max(outputs) > 0  # felt: the waveform ran with a strength
    assert max(strengths(recorder, "butterfly-1")) == 6  # the pulse's gentle strength
    assert firmware.max_wire_strength == 6 * 7
    assert outputs[-1] == 0


# -- MQTT discovery ---------------------------------------------------------------------


def ha_device(description: DeviceDescription) -> dict[str, object]:
    device = device_discovery(TOPICS, description, ["collar-zone"], "1")[1]["device"]
    return cast(dict[str, object], device)


def test_discovery_names_the_coyote_model() -> None:
    caps = Capabilities(
        kind=DeviceKind.BUTTERFLY, model="Coyote V2", ems_channels=butterfly_channels()
    )
    record = DeviceRecord(
        name="coyote",
        kind=DeviceKind.BUTTERFLY,
        address="5A:1D:03:00:00:01",
        transport="ble",
        model="Coyote V2",
    )
    device = ha_device(DeviceDescription.from_record(record, caps))
    assert device["model"] == "Coyote V2 EMS butterfly"
    assert "model_id" not in device
    # Before its first connection, the registry's model alone says it.
    assert ha_device(DeviceDescription.from_record(record))["model"] == "Coyote V2 EMS butterfly"


def test_discovery_models_come_from_the_table() -> None:
    # A record from before models existed is the kind's default model.
    old = DeviceDescription(name="butterfly", kind=DeviceKind.BUTTERFLY)
    assert ha_device(old)["model"] == "EB1 EMS butterfly"
    # A model as a driver reports it is shown as the table names it, the rest as model_id.
    caps = Capabilities(kind=DeviceKind.BELT, model="VB1-6", motors=belt_motors(6))
    belt = ha_device(
        DeviceDescription(name="belt", kind=DeviceKind.BELT, model="VB1-6", capabilities=caps)
    )
    assert belt["model"] == "VB1 vibration belt"
    assert belt["model_id"] == "VB1-6"
    assert table_model(DeviceKind.BUTTERFLY, "EB1-47L121000") == "EB1"
    # A model this massaged does not know (a newer one's record) is shown as stored.
    assert table_model(DeviceKind.BUTTERFLY, "Coyote V9") == "Coyote V9"


# -- the registry's models -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "driver"),
    [
        ("", EB1Driver),
        ("EB1", EB1Driver),
        ("EB1-47L121000", EB1Driver),
        ("Coyote V2", CoyoteV2Driver),
    ],
)
def test_a_records_model_picks_the_driver(model: str, driver: type) -> None:
    device = make_device(DeviceKind.BUTTERFLY, "5A:1D:03:00:00:01", model=model)
    assert type(device) is driver


def test_a_record_of_a_model_of_another_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="a Coyote V2 is a butterfly, not a belt"):
        make_device(DeviceKind.BELT, "5A:1D:03:00:00:01", model="Coyote V2")


# -- a fault within a session ---------------------------------------------------------


async def test_a_fault_sets_the_safety_layers_ceiling() -> None:
    session, now = make_session(SafetyLimits(caps=KindCaps(butterfly=1.0)))
    device = FakeButterfly()
    safe = session.wrap(device)
    wanted = ButterflyOutput(a=EmsChannelOutput(150, 100, 50), b=EmsChannelOutput(150, 100, 50))
    for tick in range(1, 20):
        now.t = tick / 10
        await safe.apply(wanted)
    fault = DeviceFault(device.name, DeviceKind.BUTTERFLY, "held S (140, 0)", ceiling_a=9)
    device.emit(fault)
    b_strengths = []
    for tick in range(20, 60):
        now.t = tick / 10
        out = await safe.apply(wanted)
        assert isinstance(out, ButterflyOutput)
        assert out.a.strength <= 9  # never past the lower value again...
        b_strengths.append(out.b.strength)
    assert max(b_strengths) > 9  # ...on that channel only


async def test_a_coyote_fault_is_a_session_event_and_a_ceiling() -> None:
    recorder = Recorder()
    # Named as the session tests' butterfly, so their plans and helpers fit it.
    firmware = CoyoteV2Firmware("butterfly", recorder=recorder, now=_now())
    link = MemoryLink(firmware, faults=LinkFaults())
    driver = CoyoteV2Driver(link, name="butterfly")
    await driver.connect()
    try:
        rig = Rig(recorder, {"butterfly": firmware}, {"butterfly": link}, {"butterfly": driver})
        plan = make_plan(rig.devices, [(4.0, {"butterfly": ems(40)})])
        runner = make_runner(rig, plan)
        lines: list[str] = []
        runner.add_listener(LinePrinter(lines.append))
        async with running(runner) as task:
            await wait_until(lambda: firmware.strengths[0] >= 15, what="EMS on")
            # The unit jumps A to 30 by itself: the driver falls back to what it wrote.
            firmware.turn_wheel(30, None, _now())
            link.wake()
            await wait_until(lambda: "device_fault" in kinds_of(rig.events), what="the fault")
            fault = next(e for e in rig.events if e.kind == "device_fault")
            faulted = _now()
            await asyncio.sleep(0.6)
            runner.stop()
            await task
    finally:
        await driver.close()
    assert fault.device == "butterfly"
    assert "not the S" in fault.detail["reason"]
    ceiling = fault.detail["a"]
    assert isinstance(ceiling, int)
    assert 15 <= ceiling <= 30
    assert fault.detail["b"] is None
    # Never raised past the lower value afterwards (the plan asks for 40).
    after = [
        cast(int, r["value"])
        for r in recorder.rows
        if r["channel"] == "strength_a" and cast(float, r["t"]) >= faulted
    ]
    assert after
    assert max(after) <= ceiling
    assert firmware.strengths == (0, 0)
    assert any("butterfly: fault:" in line for line in lines)


def test_a_fault_is_told_in_the_lines() -> None:
    lines: list[str] = []
    LinePrinter(lines.append)(
        RunnerEvent(1.0, "device_fault", "coyote", {"reason": "the unit holds S", "a": 3})
    )
    assert lines == [
        "0:01  coyote: fault: the unit holds S; never more than the lower value from now on"
    ]


# -- scan -------------------------------------------------------------------------------


@pytest.fixture
def simulated() -> Iterator[Setup]:
    with simulator_beside(
        "msd-cs-", ["belt", "coyote", "butterfly,name=47L121000,advertise_services=no"]
    ) as s:
        yield s


def test_scan_shows_each_devices_model(simulated: Setup) -> None:
    result = simulated.cli("scan", "--simulator", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["KIND", "MODEL", "ADDRESS"]
    by_address = {d["address"]: d for d in simulated.served}
    coyote = next(a for a, d in by_address.items() if d.get("model") == "coyote_v2")
    eb1 = next(a for a, d in by_address.items() if d.get("model") == "eb1")
    assert any(line.split()[:4] == ["butterfly", "Coyote", "V2", coyote] for line in lines)
    assert any(line.split()[:3] == ["butterfly", "EB1", eb1] for line in lines)
    assert any(line.split()[:2] == ["belt", "VB1"] for line in lines)


# -- pairing and the daemon ---------------------------------------------------------------


class EventSpy:
    """Stands in for the MQTT bridge: notes what the daemon would publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, object]]] = []

    def publish_event(self, kind: str, data: dict[str, object] | None = None) -> None:
        self.published.append((kind, dict(data or {})))

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None  # device states, availability: not looked at here


async def test_the_daemon_pairs_each_butterfly_as_its_model(tmp_path: Path) -> None:
    from controller.daemon import Daemon
    from controller.mqtt.runtime import DaemonBridge
    from controller.store import Store
    from simulator.ble.backend import SimBleakClient

    async with fleet("coyote", "butterfly,name=47L121000,advertise_services=no") as (served, _):
        coyote, eb1 = served.devices
        with Store.open(tmp_path / "db") as store:
            daemon = Daemon(
                store,
                ble_backend=SimBleakClient,
                ble_kwargs={"radio": str(served.radio_path)},
                radio_path=served.radio_path,
                scan_timeout=1.0,
            )
            spy = EventSpy()
            mqtt = DaemonBridge(daemon, cast(Any, spy))
            await daemon.start()
            try:
                # Found by its name alone in a scan: the scan's model is kept.
                found = await daemon.pair(eb1.address, name="v3", pulse=False)
                # Not scanned, only "a butterfly": it shows itself a Coyote V2.
                record = await daemon.pair(coyote.address, kind="butterfly", name="v2")
                assert (found.model, record.model) == ("EB1", "Coyote V2")
                assert {r.name: r.model for r in store.list_devices()} == {
                    "v3": "EB1",
                    "v2": "Coyote V2",
                }
                drivers = {n: e.device for n, e in daemon.supervisor.devices.items()}
                assert isinstance(drivers["v2"], CoyoteV2Driver)
                assert isinstance(drivers["v3"], EB1Driver)
                await wait_until(lambda: drivers["v2"].is_connected, what="v2 up")
                # The unit holds what it was not sent: a device event, on MQTT too.
                served.radio.fault(coyote.id, "turn_wheel", [30, None])
                await wait_until(
                    lambda: any(k == "device" for k, _ in spy.published), what="the event"
                )
            finally:
                mqtt._remove_listener()
                await daemon.close()
    (event,) = [d for k, d in spy.published if k == "device"]
    assert event["device"] == "v2"
    assert event["event"] == "DeviceFault"
    assert "not the S" in str(event["reason"])
    assert (event["ceiling_a"], event["ceiling_b"]) == (0, None)
