"""One daemon, as it runs in production, over an in-process simulator: the fault matrix's world.

The devices are served by a :class:`simulator.fleet.Fleet` on real endpoints
(a pseudo-terminal for the serial belt, the simulated BLE radio for the
pillow and the butterfly), reached by the daemon's own drivers through the
registry. The daemon serves its control socket, runs a short program of the
user's program folder at a scaled session clock, and writes its history to a
private SQLite file. Everything lives in one event loop, so a cell starts in
milliseconds; a stall is a loop callback that blocks it (World.freeze).

Cells about the daemon as a process (stopped with SIGSTOP, its descriptors
flooded) get :func:`daemon_process`: the same simulated devices in this
process, recorded the same way, and ``massaged daemon --simulator`` as a real
process beside them, with its own host guard. A SIGKILLed daemon lives in
tests/controller/test_daemon_process.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

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
from tests.reliability.checks import LEASE_S, OutputAudit, device_cap

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
ROOT = Path(__file__).resolve().parents[2]
START_WAIT = 60.0
"""Longest wait for a daemon process to come up with every device (a loaded machine)."""
Mark = Callable[[OutputAudit], None]
"""Something the audit is told before a given row (a service gap, a lowered cap)."""


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


class Simulated:
    """The simulated devices, the recording of what they did, and the daemon's socket."""

    def __init__(
        self, folder: Path, fleet: Fleet, recorder: Recorder, speed: float, socket: Path
    ) -> None:
        self.folder = folder
        self.fleet = fleet
        self.recorder = recorder
        self.speed = speed
        self.socket = socket
        """The daemon's control socket."""
        self.user_rows: set[int] = set()
        """Indices of recording rows the user set on a device itself (the EB1 wheel)."""
        self.marks: dict[int, list[Mark]] = {}
        """What the audit is told before the row of each index (a gap, a lowered cap)."""

    def mark(self, what: Mark) -> None:
        """Tell the audit something before the next row to be recorded."""
        self.marks.setdefault(len(self.recorder.rows), []).append(what)

    def gap_ended(self, t: float | None = None) -> float:
        """The daemon's service resumed now (or at session time t): a gap for every device."""
        end = self.t() if t is None else t
        self.mark(lambda audit: audit.gap(end))
        return end

    def cap_lowered(self, name: str, fraction: float) -> int:
        """A device's cap lowered now to fraction: the audit holds it to it; its units."""
        kind = kind_of(name)
        units = device_cap(kind.value, DEFAULT_PROFILE.caps.for_kind(kind), fraction)
        at = self.t()
        self.mark(lambda audit: audit.lower_cap(name, units, at))
        return units

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
        """Every recorded output checked against its cap, the EMS ramp and the marks."""
        return (audit or self.new_audit()).feed_all(
            self.rows, user=self.user_rows, marks=self.marks, now=self.t()
        )

    async def call(self, command: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request over the control socket, as the command line sends it."""
        if command == "run" and payload is not None:
            # The person confirms being well before a session (controller.readiness).
            payload = {"well_today": True, **payload}
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

    async def status(self) -> dict[str, Any]:
        """The daemon answers a status request (it keeps serving)."""
        answer = await self.call("status")
        assert answer["status"] == "ok", answer
        data: dict[str, Any] = answer["data"]
        return data


class World(Simulated):
    """The daemon, its control socket, its store and the simulated devices it drives."""

    def __init__(
        self,
        folder: Path,
        fleet: Fleet,
        recorder: Recorder,
        store: Store,
        daemon: Daemon,
        server: ControlServer,
        speed: float,
    ) -> None:
        super().__init__(folder, fleet, recorder, speed, server.path)
        self.store = store
        self.daemon = daemon
        self.server = server

    async def freeze(self, seconds: float) -> float:
        """Block the event loop for seconds, as a stalled daemon; the gap's end (session time).

        The daemon and the simulated devices share the loop: the firmware catches up on
        its own timers afterwards. The audit learns of the gap before any later row.
        """
        assert seconds > LEASE_S, "a stall within the lease is no gap"
        loop = asyncio.get_running_loop()
        over: asyncio.Future[float] = loop.create_future()

        def block() -> None:
            time.sleep(seconds)  # deliberate: nothing on this loop may run meanwhile
            over.set_result(self.gap_ended())

        loop.call_soon(block)
        return await over

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
        if command == "run":
            # The person confirms being well before a session (controller.readiness).
            payload = {"well_today": True, **payload}
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


# -- the daemon as a process --------------------------------------------------------------


class DaemonProcess(Simulated):
    """``massaged daemon --simulator`` as a process, over simulated devices in this one."""

    def __init__(
        self,
        folder: Path,
        fleet: Fleet,
        recorder: Recorder,
        speed: float,
        proc: asyncio.subprocess.Process,
        log: Path,
    ) -> None:
        super().__init__(folder, fleet, recorder, speed, folder / "control.sock")
        self.proc = proc
        self.log = log
        self.stopped = False

    def sigstop(self) -> float:
        """Stop the daemon (kill -STOP, as a frozen process); the session time it was."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True
        return self.t()

    def sigcont(self) -> float:
        """Let it run again (kill -CONT): a service gap ends now; its session time."""
        end = self.gap_ended()
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False
        return end

    def log_text(self) -> str:
        """What the daemon (and its host guard) wrote on stdout and stderr so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def session(self) -> dict[str, Any] | None:
        """The running session as status shows it, None when there is none."""
        session: dict[str, Any] | None = (await self.status())["session"]
        return session

    async def wait_ended(self, timeout: float = WAIT) -> dict[str, Any]:
        """Until no session runs; the last session as status shows it."""
        deadline = self.loop_time + timeout
        while True:
            status = await self.status()
            if status["session"] is None:
                last: dict[str, Any] = status["last_session"]
                return last
            if self.loop_time > deadline:
                pytest.fail(f"the session did not end within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def terminate(self) -> int:
        """SIGTERM (after SIGCONT if stopped), as systemd stops it; its exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if self.stopped:
                    self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15.0):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return cast(int, self.proc.returncode)

    def store(self) -> Store:
        """The daemon's history file (open it once the daemon is gone)."""
        return Store.open(self.folder / "data" / "massaged.db")


LIMIT_NOFILE = """\
import os, resource, sys
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
os.execv(sys.executable, [sys.executable, "-m", "controller", *sys.argv[2:]])
"""
"""Run ``massaged ARGS`` with at most N open files (a daemon whose descriptors can run out)."""


@contextlib.asynccontextmanager
async def daemon_process(
    *,
    speed: float = SPEED,
    program_seconds: float = 40.0,
    heat: bool = True,
    nofile: int | None = None,
) -> AsyncIterator[DaemonProcess]:
    """A daemon process with paired simulated devices (served here), all connected.

    nofile: the daemon's limit of open files (its descriptors can then be exhausted).
    """
    folder = short_dir("msd-proc-")
    for name in ("programs", "config", "data"):
        (folder / name).mkdir(mode=0o700)
    (folder / "programs" / f"{PROGRAM_ID}.toml").write_text(
        program_text(program_seconds, heat=heat)
    )
    (folder / "config" / "config.toml").write_text('[daemon]\nlog_level = "warning"\n')
    loop = asyncio.get_running_loop()
    recorder = Recorder(t0=loop.time(), speed=speed)
    radio = folder / "radio.sock"
    fleet = Fleet([parse_spec(s) for s in SPECS], radio_path=radio, recorder=recorder, speed=speed)
    log = folder / "daemon.log"
    handle: IO[bytes] | None = None
    w: DaemonProcess | None = None
    try:
        served = await fleet.start()
        with Store.open(folder / "data" / "massaged.db") as store:
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
        env = {
            **os.environ,
            "MASSAGED_DATA_DIR": str(folder / "data"),
            "MASSAGED_CONFIG_DIR": str(folder / "config"),
            "MASSAGED_PROGRAMS_DIR": str(folder / "programs"),
            "MASSAGED_DAEMON_SOCKET": str(folder / "control.sock"),
            "MASSAGED_SIM_RADIO": str(radio),
        }
        for name in ("MASSAGED_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        args = ["daemon", "--simulator", "--radio", str(radio), "--speed", f"{speed:g}"]
        launcher = [sys.executable, "-m", "controller"]
        if nofile is not None:
            launcher = [sys.executable, "-c", LIMIT_NOFILE, str(nofile)]
        handle = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            *launcher,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=handle,
            stderr=handle,
            env=env,
            cwd=str(ROOT),
        )
        w = DaemonProcess(folder, fleet, recorder, speed, proc, log)
        await _wait_devices_up(w, len(served))
        yield w
    finally:
        # The daemon first (it stops every device), then the devices themselves.
        if w is not None:
            await w.terminate()
        await fleet.close()
        if handle is not None:
            handle.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_devices_up(w: DaemonProcess, count: int) -> None:
    """Until the daemon answers with count devices, every link up."""
    from devices.errors import MassagedError

    deadline = w.loop_time + START_WAIT
    devices: list[dict[str, Any]] = []
    while w.loop_time < deadline:
        if w.proc.returncode is not None:
            pytest.fail(f"the daemon exited ({w.proc.returncode}):\n{w.log_text()[-3000:]}")
        with contextlib.suppress(MassagedError, OSError, TimeoutError):
            answer = await call(w.socket, "devices", timeout=2.0)
            devices = answer.get("data") or []
            if len(devices) >= count and all(d.get("link") == "up" for d in devices):
                return
        await asyncio.sleep(0.1)
    pytest.fail(f"devices not up within {START_WAIT:g} s: {devices}\n{w.log_text()[-3000:]}")
