"""One daemon, as it runs in production, over an in-process simulator: the fault matrix's world.

The devices are served by a :class:`simulator.fleet.Fleet` on real endpoints
(a pseudo-terminal for the serial belt, the simulated BLE radio for the
pillow and the butterfly), reached by the daemon's own drivers through the
registry. The daemon serves its control socket, runs a short program of the
user's program folder at a scaled session clock, and writes its history to a
private SQLite file. Everything lives in one event loop, so a cell starts in
milliseconds; only the process-level cells (a SIGKILLed daemon) need real
processes, and they live in tests/controller/test_daemon_process.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from controller.config import Config
from controller.control import ControlServer, call
from controller.daemon import Daemon
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.runtime import DaemonBridge, start_bridge
from controller.mqtt.settings import MqttSettings
from controller.profiles import DEFAULT_PROFILE
from controller.session import SessionState
from controller.store import DeviceRecord, SessionRecord, Store
from devices.capabilities import DeviceKind
from simulator.ble.backend import SimBleakClient
from simulator.firmware.base import Firmware
from simulator.fleet import Fleet, SimDevice, parse_spec
from simulator.recording import Recorder
from tests.controller.mqtt.conftest import Broker, Spy, find_mosquitto
from tests.reliability.checks import OutputAudit, device_cap

SPEED = 20.0
"""Session time runs this much faster than real time (physics of the simulator too)."""
PROGRAM_ID = "fault-matrix"
SPECS = ("belt", "pillow", "butterfly")
"""A serial VB1 belt (6 motors, heater), an SP1 pillow with heater, an EB1 butterfly."""
REGISTRY_CAPS: Mapping[str, dict[str, float]] = {
    "belt": {"belt": 0.7},
    "pillow": {"pillow": 0.67},
    "butterfly": {"butterfly": 0.4},
}
"""Registry entries lower than the default profile's caps, so both kinds of cap are seen."""
WAIT = 10.0
"""Generous time-out for anything a cell waits for (a noisy machine is slow, not wrong)."""


def program_text(seconds: float, *, heat: bool = True, program_id: str = PROGRAM_ID) -> str:
    """A one-step program at full intensity (every cap is reached) lasting seconds."""
    return f"""
id = "{program_id}"
title = "Fault matrix"
audience = "adult"
max_duration = 30
description = "Full intensity on every device, for the fault matrix."
cites = "none: a test program"

[[steps]]
technique = "kneading"
zone = "collar_zone"
duration_s = {seconds:g}
intensity = 1.0
heat = {"true" if heat else "false"}
label = "Everything at its cap"
"""


@dataclass
class World:
    """The daemon, its control socket, its store and the simulated devices it drives."""

    folder: Path
    fleet: Fleet
    recorder: Recorder
    store: Store
    daemon: Daemon
    server: ControlServer
    speed: float
    user_rows: set[int] = field(default_factory=set)
    """Indices of recording rows the user set on a device itself (the EB1 wheel)."""

    @property
    def socket(self) -> Path:
        """The daemon's control socket."""
        return self.server.path

    @property
    def loop_time(self) -> float:
        """The event loop's clock (the firmware's and the recording's)."""
        return asyncio.get_running_loop().time()

    def t(self, loop_time: float | None = None) -> float:
        """A loop time as recording time (session seconds since the recording began)."""
        now = self.loop_time if loop_time is None else loop_time
        return (now - self.recorder.t0) * self.speed

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded output change so far."""
        return list(self.recorder.rows)

    def sim(self, name: str) -> SimDevice:
        """A served device by id (belt-1, pillow-1, butterfly-1)."""
        return self.fleet.find(name)

    def firmware(self, name: str) -> Firmware:
        """The firmware model of a served device."""
        return self.sim(name).firmware

    def fault(self, name: str, fault: str, value: object = None) -> None:
        """Inject a fault as ``massaged sim-fault`` does."""
        self.fleet.radio.fault(name, fault, value)

    def user_fault(self, name: str, fault: str, value: object = None) -> None:
        """A fault that is the user's own act on the device (the wheel): its rows are theirs."""
        first = len(self.recorder.rows)
        self.fault(name, fault, value)
        self.user_rows.update(range(first, len(self.recorder.rows)))

    def quiet(self, *names: str) -> bool:
        """True when every (named) device puts out nothing."""
        wanted = names or tuple(d.id for d in self.fleet.devices)
        return all(self.firmware(n).is_quiet for n in wanted)

    def caps(self) -> dict[str, int]:
        """Each device's cap in device units: the default profile's and the registry's."""
        caps: dict[str, int] = {}
        for device in self.fleet.devices:
            kind = device.spec.kind.value
            profile = DEFAULT_PROFILE.caps.for_kind(device.spec.kind)
            caps[device.id] = device_cap(kind, profile, *REGISTRY_CAPS[kind].values())
        return caps

    def new_audit(self) -> OutputAudit:
        """An audit of this world's devices, caps and speed."""
        kinds = {d.id: d.spec.kind.value for d in self.fleet.devices}
        return OutputAudit(self.caps(), kinds, speed=self.speed)

    def audit(self, audit: OutputAudit | None = None) -> list[str]:
        """Every recorded output checked against its cap and the EMS ramp."""
        return (audit or self.new_audit()).feed_all(self.rows, user=self.user_rows)

    async def call(self, command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request over the control socket, as the command line sends it."""
        return await call(self.socket, command, payload, timeout=WAIT)

    async def run(self, **payload: Any) -> dict[str, Any]:
        """Start the test program (or another) over the control socket; the session's data."""
        answer = await self.call("run", {"program": PROGRAM_ID, **payload})
        assert answer["status"] == "ok", answer
        data: dict[str, Any] = answer["data"]
        return data

    async def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT
    ) -> None:
        """Poll every 10 ms; fail the test after timeout seconds, naming what was awaited."""
        deadline = self.loop_time + timeout
        while not condition():
            if self.loop_time > deadline:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.01)

    async def wait_on(self, *names: str) -> None:
        """Until every (named) device is driven."""
        wanted = names or tuple(d.id for d in self.fleet.devices)
        await self.wait_for(
            lambda: all(not self.firmware(n).is_quiet for n in wanted), "devices on"
        )

    def device_state(self, name: str) -> str:
        """The running session's state of one device (running, lost, ended, ...)."""
        runner = self.daemon.runner
        assert runner is not None
        return runner.snapshot().devices[name].state.value

    def session_running(self) -> bool:
        """True while a session is in progress."""
        runner = self.daemon.runner
        return runner is not None and runner.state != SessionState.ENDED

    def runner_events(self) -> list[str]:
        """The kinds of the running (or last) session's events so far, from the history."""
        runner = self.daemon.runner
        if runner is None or (runner.result is None and runner.state == SessionState.READY):
            return []
        session_id = self.session_id()
        if session_id is None:
            return []
        return [e.kind for e in self.store.session_events(session_id)]

    def session_id(self) -> int | None:
        """The history id of the latest session."""
        sessions = self.store.list_sessions(1)
        return sessions[0].id if sessions else None

    async def wait_ended(self, timeout: float = WAIT) -> dict[str, Any]:
        """Until the session has ended; the daemon's last_result."""
        await self.wait_for(lambda: not self.session_running(), "the session's end", timeout)
        result = self.daemon.last_result
        assert result is not None
        return result

    async def ends_within(self, seconds: float) -> bool:
        """True when the session ends within this many seconds."""
        deadline = self.loop_time + seconds
        while self.session_running():
            if self.loop_time > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def record(self, result: Mapping[str, Any]) -> SessionRecord:
        """The history row of a finished session."""
        return self.store.get_session(cast(int, result["session_id"]))

    def events(self, result: Mapping[str, Any]) -> list[str]:
        """The kinds of a finished session's events in the history."""
        return [e.kind for e in self.store.session_events(cast(int, result["session_id"]))]

    async def status(self) -> dict[str, Any]:
        """The daemon answers a status request (it keeps serving)."""
        answer = await self.call("status")
        assert answer["status"] == "ok", answer
        data: dict[str, Any] = answer["data"]
        return data


def short_dir(prefix: str) -> Path:
    """A fresh folder with a short path (Unix socket paths are limited to ~100 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


@contextlib.asynccontextmanager
async def world(
    *,
    speed: float = SPEED,
    program_seconds: float = 40.0,
    heat: bool = True,
    specs: tuple[str, ...] = SPECS,
    prepare_store: Callable[[Store], None] | None = None,
) -> AsyncIterator[World]:
    """A daemon with paired simulated devices, all connected, and the test program."""
    folder = short_dir("msd-rel-")
    programs = folder / "programs"
    programs.mkdir()
    (programs / f"{PROGRAM_ID}.toml").write_text(program_text(program_seconds, heat=heat))
    old_programs = os.environ.get("MASSAGED_PROGRAMS_DIR")
    os.environ["MASSAGED_PROGRAMS_DIR"] = str(programs)
    loop = asyncio.get_running_loop()
    recorder = Recorder(t0=loop.time(), speed=speed)
    radio = folder / "radio.sock"
    fleet = Fleet([parse_spec(s) for s in specs], radio_path=radio, recorder=recorder, speed=speed)
    store: Store | None = None
    daemon: Daemon | None = None
    server: ControlServer | None = None
    try:
        served = await fleet.start()
        store = Store.open(folder / "data" / "massaged.db")
        for device in served:
            kind = device.spec.kind
            store.add_device(
                DeviceRecord(
                    name=device.id,
                    kind=kind,
                    address=device.address,
                    transport=device.spec.transport,
                    caps=dict(REGISTRY_CAPS[kind.value]),
                )
            )
        if prepare_store is not None:
            prepare_store(store)
        daemon = Daemon(
            store,
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": str(radio)},
            radio_path=radio,
            reconnect_min=0.2,
            reconnect_max=1.0,
            speed=speed,
        )
        server = ControlServer(daemon, folder / "run" / "control.sock")
        await server.start()
        await daemon.start()
        w = World(folder, fleet, recorder, store, daemon, server, speed)
        supervised = daemon.supervisor.devices
        await w.wait_for(
            lambda: (
                len(supervised) == len(served) and all(e.link == "up" for e in supervised.values())
            ),
            "every device connected",
        )
        yield w
    finally:
        # Devices first: whatever fails below, nothing is left running.
        if daemon is not None:
            await daemon.close()
        if server is not None:
            await server.close()
        await fleet.close()
        if store is not None:
            store.close()
        if old_programs is None:
            os.environ.pop("MASSAGED_PROGRAMS_DIR", None)
        else:
            os.environ["MASSAGED_PROGRAMS_DIR"] = old_programs
        shutil.rmtree(folder, ignore_errors=True)


def kind_of(name: str) -> DeviceKind:
    """The kind of a served device id (belt-1 -> belt)."""
    return DeviceKind(name.rsplit("-", 1)[0])


@dataclass
class Mqtt:
    """A mosquitto of the test's own, the daemon's bridge to it, and a client to talk over it."""

    broker: Broker
    link: DaemonBridge
    client: Spy
    stack: contextlib.AsyncExitStack

    @property
    def bridge(self) -> MqttBridge:
        """The daemon's MQTT bridge."""
        return self.link.bridge

    async def new_client(self) -> None:
        """A fresh client (after the broker came back: the old one was cut off)."""
        self.client = await self.stack.enter_async_context(
            Spy(self.broker.port, ["massaged/bridge/#"])
        )

    async def request(self, command: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request over MQTT (massaged/bridge/request/<command>) and its response."""
        return await self.client.request(command, payload)


@contextlib.asynccontextmanager
async def mqtt(w: World, *, grace: float = 1.0) -> AsyncIterator[Mqtt]:
    """A broker, the daemon's bridge (as ``massaged daemon`` starts it) and a client."""
    binary = find_mosquitto()
    assert binary is not None, "mosquitto is needed (./dev test installs it)"
    broker = Broker(binary, w.folder)
    link: DaemonBridge | None = None
    try:
        broker.start()
        config = Config(
            mqtt=MqttSettings(
                enabled=True,
                host="127.0.0.1",
                port=broker.port,
                grace_seconds=grace,
                state_min_interval=0.2,
                reconnect_min=0.05,
                reconnect_max=0.3,
            )
        )
        link = await start_bridge(w.daemon, config)
        await link.bridge.wait_connected(WAIT)
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(Spy(broker.port, ["massaged/bridge/#"]))
            yield Mqtt(broker, link, client, stack)
    finally:
        if link is not None:
            await link.close()
        broker.stop()
