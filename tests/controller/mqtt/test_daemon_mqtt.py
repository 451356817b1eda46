"""The daemon with simulated devices, end to end over a real broker (issue acceptance).

In-process: a Fleet serves a belt (pseudo-terminal), a pillow and a butterfly
(simulated radio); a Daemon pairs and supervises them; the bridge connects to
this test's own mosquitto. A spy client plays Home Assistant.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.daemon import Daemon
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.runtime import DaemonBridge
from controller.mqtt.settings import MqttSettings
from controller.store import Store
from simulator.ble.backend import SimBleakClient
from simulator.fleet import Fleet, parse_spec
from tests.controller.mqtt.conftest import Broker, Received, Spy, SpyFactory
from tests.devices.behaviour import wait_until

WAIT = 15.0
GRACE = 1.0


@dataclass
class World:
    """Everything one test runs."""

    fleet: Fleet
    daemon: Daemon
    link: DaemonBridge

    def quiet(self) -> bool:
        """True when no simulated device puts anything out."""
        return all(d.firmware.is_quiet for d in self.fleet.devices)


@pytest.fixture
async def world(broker: Broker) -> AsyncIterator[World]:
    folder = Path(tempfile.mkdtemp(prefix="msd-mq-"))
    fleet = Fleet([parse_spec(s) for s in ("belt", "pillow", "butterfly")], radio_path=folder / "r")
    store = Store.open(folder / "massaged.db")
    await fleet.start()
    daemon = Daemon(
        store,
        ble_backend=SimBleakClient,
        ble_kwargs={"radio": str(fleet.radio_path)},
        radio_path=fleet.radio_path,
        scan_timeout=1.0,
        speed=1.0,
    )
    await daemon.start()
    for device in fleet.devices:
        await daemon.pair(device.address, kind=device.spec.kind.value, pulse=False)
    settings = MqttSettings(
        enabled=True, port=broker.port, grace_seconds=GRACE, reconnect_min=0.2, reconnect_max=1.0
    )
    link = DaemonBridge(daemon, MqttBridge(settings, daemon))
    await link.start()
    try:
        yield World(fleet, daemon, link)
    finally:
        await link.close()
        await daemon.close()
        await fleet.close()
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


async def _eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    await wait_until(condition, timeout=timeout)


def _is(topic: str, payload: bytes | None = None) -> Callable[[Received], bool]:
    """A spy predicate: a message on topic (with this payload, when given)."""
    return lambda m: m.topic == topic and (payload is None or m.payload == payload)


async def _all_up(world: World) -> None:
    await _eventually(lambda: all(e.link == "up" for e in world.daemon.supervisor.devices.values()))
    # And the bridge subscribed: a request published before that is lost (not retained), as
    # happened on a loaded machine (no answer to a "run" in 10 s).
    await world.link.bridge.wait_connected(WAIT)


async def test_discovery_availability_state_and_bridge_commands(
    world: World, spy: SpyFactory
) -> None:
    await _all_up(world)
    ha: Spy = await spy("homeassistant/#", "massaged/#")
    for name in ("belt", "pillow", "butterfly"):
        config = await ha.wait_for(_is(f"homeassistant/device/massaged_{name}/config"))
        body = config.json()
        assert body["device"]["via_device"]
        assert {"program", "start", "stop", "emergency_stop", "gentler"} <= set(body["components"])
        await ha.wait_for(_is(f"massaged/{name}/availability", b"online"))
    assert (await ha.wait_topic("massaged/bridge/state")).json() == {"state": "online"}

    # well_today: the person's word that today is a day for massage (controller.readiness).
    run = {"program": "collar-zone", "well_today": True, "transaction": 41}
    answer = await ha.request("run", run)
    assert answer["status"] == "ok", answer
    assert answer["transaction"] == 41
    await ha.wait_for(lambda m: m.topic == "massaged/belt" and m.json().get("running") is True)
    await _eventually(lambda: not world.quiet())

    assert (await ha.request("gentler", {"transaction": "g"}))["status"] == "ok"
    # The heater only within a session, only where fitted.
    heat = await ha.request("heater", {"device": "pillow", "on": True})
    assert heat["status"] == "ok", heat
    none = await ha.request("heater", {"device": "butterfly", "on": True})
    assert none["status"] == "error"
    assert "no heater" in none["error"]
    stopped = await ha.request("emergency_stop", {"transaction": "e"})
    assert stopped == {"status": "ok", "data": {"state": "stopped"}, "transaction": "e"}
    await _eventually(world.quiet, timeout=2.0)

    # Bad and unsafe input: an error answer, and nothing changes.
    for command, payload in (
        ("run", "garbage{"),
        ("run", {"program": "no-such-program"}),
        ("run", {"program": "collar-zone", "scale": 1.5}),
        ("set_caps", {"name": "belt", "max_intensity": 2}),
        ("launch_rockets", {}),
    ):
        reply = await ha.request(command, payload)
        assert reply["status"] == "error", (command, reply)
        assert reply["error"]
    assert world.daemon.session_status() is None
    off_session = await ha.request("heater", {"device": "pillow", "on": True})
    assert off_session["status"] == "error"
    assert world.quiet()


async def test_broker_restart_mid_session_grace_stop_and_republish(
    world: World, broker: Broker, spy: SpyFactory
) -> None:
    await _all_up(world)
    ha = await spy("massaged/#")
    run = {"program": "collar-zone", "well_today": True}
    assert (await ha.request("run", run))["status"] == "ok"
    await _eventually(lambda: not world.quiet())
    # The broker dies longer than the grace time: the MQTT-started session fades and stops.
    broker.kill()
    await _eventually(lambda: world.daemon.session_status() is None, timeout=GRACE + 8)
    await _eventually(world.quiet, timeout=3.0)
    assert world.daemon.last_result is not None
    assert world.daemon.last_result["outcome"] == "stopped"
    await broker.astart()
    # The daemon comes back by itself, online again with its retained state republished.
    ha2 = await spy("massaged/#", "homeassistant/#")
    await ha2.wait_for(
        lambda m: m.topic == "massaged/bridge/state" and m.json()["state"] == "online"
    )
    await ha2.wait_for(lambda m: m.topic == "homeassistant/device/massaged_belt/config")
    await ha2.wait_for(lambda m: m.topic == "massaged/belt/availability" and m.payload == b"online")


async def test_session_from_the_command_line_outlives_the_broker(
    world: World, broker: Broker
) -> None:
    from controller import api

    await _all_up(world)
    answer = await api.dispatch(world.daemon, "run", {"program": "collar-zone", "well_today": True})
    assert answer["status"] == "ok"
    broker.kill()
    await asyncio.sleep(GRACE + 1.5)
    # MQTT is not the session's channel: it keeps running.
    status = world.daemon.session_status()
    assert status is not None
    assert status["state"] == "running"
    with contextlib.suppress(Exception):
        await api.dispatch(world.daemon, "stop", {})
