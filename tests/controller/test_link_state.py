"""A device's link as ``status`` reports it (devices[].link) tells the truth during a session.

The web page's Devices list and the MQTT availability topic read it. While a
session holds a device the session's lane reconnects it by itself, so the
supervisor's entry has to follow the lane: it said "down" for a pillow and a
butterfly the session was driving (their links had dropped while the session
was being prepared, and the lane brought them back), and "up" for a device
whose link had gone. Here the daemon runs in-process over the simulator
(tests/reliability/world.py), and the links are cut with the simulator's
faults, as ``massaged sim-fault`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

import controller.daemon
import controller.session_setup
from controller.session_setup import prepare_session
from controller.store import DeviceRecord
from controller.supervisor import DeviceSupervisor
from devices.capabilities import Capabilities, DeviceKind
from devices.events import LinkLost
from tests.controller.mqtt.conftest import Spy
from tests.controller.test_safety import FakeBelt
from tests.reliability.world import World, mqtt, world

DEVICE = "butterfly-1"
LONG = 600.0
"""Session seconds of the test program: 30 s at the world's speed, so a session outlasts
every cut and reconnect here (each test stops it)."""


def daemon_links(w: World) -> dict[str, tuple[str, bool]]:
    """What the API reports of each device: (link, in_session)."""
    return {
        e.record.name: (str(e.describe()["link"]), e.in_session)
        for e in w.daemon.supervisor.devices.values()
    }


def lane_link(w: World, name: str) -> str:
    runner = w.daemon.runner
    assert runner is not None
    return runner.snapshot().devices[name].link


def record_links(w: World) -> list[tuple[str, object]]:
    """Every "device" event the daemon sends (what MQTT availability and the page follow)."""
    seen: list[tuple[str, object]] = []

    def listen(kind: str, data: dict[str, Any]) -> None:
        if kind == "device":
            seen.append((str(data["name"]), data["link"]))

    w.daemon.add_listener(listen)
    return seen


async def test_a_link_lost_in_a_session_is_down_and_back_up_when_the_lane_reconnects() -> None:
    async with world(program_seconds=LONG) as w:
        seen = record_links(w)
        await w.run()
        await w.wait_on(DEVICE)
        w.fault(DEVICE, "link_down")
        await w.wait_for(lambda: w.device_state(DEVICE) == "lost", "the lane seeing it lost")
        status = {d["name"]: d for d in (await w.status())["devices"]}
        assert status[DEVICE]["link"] == "down", status[DEVICE]
        assert status[DEVICE]["in_session"] is True
        assert (DEVICE, "down") in seen, seen
        w.fault(DEVICE, "link_up")
        await w.wait_for(lambda: w.device_state(DEVICE) == "running", "the lane reconnecting")
        status = {d["name"]: d for d in (await w.status())["devices"]}
        assert status[DEVICE]["link"] == "up", status[DEVICE]
        assert lane_link(w, DEVICE) == "up"
        # Told, not only answered: MQTT availability and the page follow these events.
        assert (DEVICE, "up") in seen[seen.index((DEVICE, "down")) :], seen
        assert (await w.call("stop"))["status"] == "ok"
        await w.wait_ended()
        # Given back connected: up, and the supervisor keeps the link the lane made.
        await asyncio.sleep(0.3)
        assert daemon_links(w)[DEVICE] == ("up", False)
        assert w.daemon.supervisor.devices[DEVICE].device.is_connected


async def test_a_link_lost_while_the_session_is_prepared_is_up_once_the_lane_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The screenshot run: the link drops between choosing the devices and lending them."""
    async with world(program_seconds=LONG) as w:

        async def prepare_then_drop(*args: Any, **kwargs: Any) -> Any:
            runner = await prepare_session(*args, **kwargs)
            # The devices are chosen (all up); now one's link goes and the supervisor,
            # still in charge of it, fails to reconnect it before it is lent.
            w.fault(DEVICE, "link_down")
            entry = w.daemon.supervisor.devices[DEVICE]
            await w.wait_for(lambda: "not found" in entry.last_error, "its reconnect failing")
            await w.wait_for(lambda: entry.link == "down", "the supervisor seeing it down")
            return runner

        # The daemon imports prepare_session when a session starts: patched at its home.
        monkeypatch.setattr(controller.session_setup, "prepare_session", prepare_then_drop)
        started = await w.run()
        assert DEVICE in started["devices"]
        w.fault(DEVICE, "link_up")
        # The lane connects it (the supervisor stands back): the session drives it ...
        await w.wait_for(lambda: w.device_state(DEVICE) == "running", "the lane connecting it")
        await w.wait_on(DEVICE)
        # ... and status says so, as the session's own view does.
        await w.wait_for(lambda: daemon_links(w)[DEVICE] == ("up", True), "status saying up")
        status = {d["name"]: d for d in (await w.status())["devices"]}
        session = (await w.status())["session"]
        assert status[DEVICE]["link"] == session["devices"][DEVICE]["link"] == "up"
        assert (await w.call("stop"))["status"] == "ok"
        await w.wait_ended()
        await asyncio.sleep(0.3)
        assert daemon_links(w)[DEVICE] == ("up", False)


async def test_mqtt_availability_during_a_session_follows_the_link() -> None:
    topic = f"massaged/{DEVICE}/availability"
    async with world(program_seconds=LONG) as w, mqtt(w) as m, Spy(m.broker.port, [topic]) as ha:
        await ha.wait_for(lambda msg: msg.payload == b"online")
        await w.run()
        await w.wait_on(DEVICE)
        since = len(ha.messages)
        w.fault(DEVICE, "link_down")
        await ha.wait_for(lambda msg: msg.payload == b"offline", since=since)
        assert w.session_running()  # offline because the link is down, not the session over
        since = len(ha.messages)
        w.fault(DEVICE, "link_up")
        await w.wait_for(lambda: w.device_state(DEVICE) == "running", "the lane reconnecting")
        # Online again while the session still runs, not only once it is over.
        await ha.wait_for(lambda msg: msg.payload == b"online", since=since)
        assert w.session_running()
        assert (await w.call("stop"))["status"] == "ok"
        await w.wait_ended()


class GatedBelt(FakeBelt):
    """A belt whose connect waits for the test, counting connects running at once."""

    kind: ClassVar[DeviceKind] = DeviceKind.BELT

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.connecting = 0
        self.overlapped = False

    @property
    def is_connected(self) -> bool:
        return self.up

    async def connect(self, timeout: float = 1.0) -> Capabilities:
        self.connecting += 1
        self.overlapped |= self.connecting > 1
        self.started.set()
        try:
            await self.gate.wait()
        finally:
            self.connecting -= 1
        self.up = True
        return self.capabilities

    async def close(self) -> None:
        self.up = False

    def drop(self) -> None:
        self.up = False
        self.emit(LinkLost(self.name, DeviceKind.BELT, "cut"))


async def test_lend_waits_out_the_supervisors_own_connect_and_reports_the_truth() -> None:
    """Never two connects on one device: the supervisor's and then the lane's."""
    belt = GatedBelt()
    supervisor = DeviceSupervisor(lambda record: belt, reconnect_min=0.01, reconnect_max=0.02)
    try:
        record = DeviceRecord(
            name="belt", kind=DeviceKind.BELT, address="/dev/null", transport="serial"
        )
        entry = supervisor.add(record)
        async with asyncio.timeout(5.0):
            await belt.started.wait()  # the supervisor is connecting it
        lending = asyncio.ensure_future(supervisor.lend(["belt"]))
        await asyncio.sleep(0.05)
        assert not lending.done(), "lent while the supervisor was still connecting it"
        belt.gate.set()
        await lending
        assert entry.describe()["link"] == "up"
        # The session's lane holds it now: a drop is down, a reconnect by the lane is up.
        belt.drop()
        assert entry.describe()["link"] == "down"
        await asyncio.sleep(0.05)
        assert belt.connecting == 0, "the supervisor reconnects a lent device"
        assert not belt.up
        await belt.connect()
        supervisor.follow_links(["belt"])
        assert entry.describe()["link"] == "up"
        supervisor.give_back(["belt"])
        await asyncio.sleep(0.05)
        # Given back up: the loss during the session is not acted on afterwards.
        assert entry.describe()["link"] == "up"
        assert belt.up
        assert not belt.overlapped
    finally:
        await supervisor.close()
