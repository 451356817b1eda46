"""Losing the broker: reconnection by itself, republishing, and the grace-time stop."""

from __future__ import annotations

import asyncio
import time

from devices.errors import MassagedError
from tests.controller.mqtt.conftest import (
    WAIT,
    BridgeFactory,
    Broker,
    FakeAPI,
    SpyFactory,
)


async def start_over_mqtt(spy: SpyFactory, api: FakeAPI) -> None:
    """Start a session the way Home Assistant does: the device's start button."""
    client = await spy("massaged/bridge/response/#")
    await client.publish("massaged/pillow/set/start", b"PRESS")
    await api.wait_for("run")


async def until(condition: object, timeout: float = WAIT) -> None:
    """Wait until condition() is true."""
    assert callable(condition)
    async with asyncio.timeout(timeout):
        # Polling a counter of the client: there is no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_broker_restart_reconnects_and_republishes(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    bridge = await make_bridge()
    bridge.device_state("belt", {"running": True, "time_left": 300, "battery": 55})
    bridge.device_available("belt", True)
    watcher = await spy("massaged/belt")
    await watcher.wait_for(lambda m: m.json().get("time_left") == 300)
    await broker.restart()  # every retained message is gone with it (no persistence)
    await until(lambda: bridge.client.connections >= 2)
    await bridge.wait_connected(WAIT)
    fresh = await spy("massaged/#", "homeassistant/#")
    state = await fresh.wait_topic("massaged/bridge/state")
    assert state.retain
    assert state.json() == {"state": "online"}
    belt = await fresh.wait_topic("massaged/belt")
    assert belt.retain
    assert (belt.json()["time_left"], belt.json()["battery"]) == (300, 55)
    availability = await fresh.wait_topic("massaged/belt/availability")
    assert availability.payload == b"online"
    discovery = await fresh.wait_topic("homeassistant/device/massaged_belt/config")
    assert discovery.retain
    await fresh.wait_topic("massaged/bridge/info")
    # Commands work again.
    assert (await fresh.request("status", {}))["status"] == "ok"


async def test_the_bridge_starts_before_the_broker(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory
) -> None:
    broker.kill()
    bridge = await make_bridge(connect=False)
    await asyncio.sleep(0.3)  # a few refused attempts
    assert not bridge.connected
    await broker.astart()
    await bridge.wait_connected(WAIT)
    watcher = await spy("massaged/bridge/state")
    assert (await watcher.wait_topic("massaged/bridge/state")).json() == {"state": "online"}


async def test_grace_time_stops_a_session_started_over_mqtt(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge(grace_seconds=0.5)
    await start_over_mqtt(spy, api)
    assert bridge.mqtt_session
    killed = time.monotonic()
    broker.kill()
    await api.wait_for("stop")
    assert time.monotonic() - killed >= 0.45  # not before the grace time
    assert api.commands() == ["run", "stop"]
    assert not bridge.mqtt_session


async def test_a_session_started_elsewhere_is_not_stopped(
    broker: Broker, make_bridge: BridgeFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge(grace_seconds=0.3)
    bridge.device_state("belt", {"running": True})  # a session from the command line
    broker.kill()
    await asyncio.sleep(1.2)  # four grace times
    assert api.calls == []
    assert not bridge.mqtt_session


async def test_a_session_that_ended_is_not_stopped(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge(grace_seconds=0.3)
    await start_over_mqtt(spy, api)
    bridge.session_event(None, "finished", {})
    assert not bridge.mqtt_session
    broker.kill()
    await asyncio.sleep(1.2)
    assert api.commands() == ["run"]


async def test_broker_back_within_the_grace_time_keeps_the_session(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    grace = 3.0
    bridge = await make_bridge(grace_seconds=grace)
    await start_over_mqtt(spy, api)
    killed = time.monotonic()
    await broker.restart()
    await bridge.wait_connected(WAIT)
    back = time.monotonic() - killed
    assert back < grace, f"the broker came back only after {back:.1f} s"
    # Wait past the moment the grace timer would have fired.
    await asyncio.sleep(grace - back + 0.5)
    assert api.commands() == ["run"]
    assert bridge.mqtt_session


async def test_a_session_started_while_the_broker_is_away_is_covered(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    # The run answer arrives after the broker went: the grace timer must start then.
    release = asyncio.Event()
    answer = api.handle

    async def slow_run(command: str, request: object) -> object:
        if command == "run":
            await release.wait()
        return await answer(command, request)  # type: ignore[arg-type]

    api.handle = slow_run  # type: ignore[method-assign]
    await make_bridge(grace_seconds=0.3)
    client = await spy("massaged/bridge/response/#")
    await client.publish("massaged/belt/set/start", b"PRESS")
    await asyncio.sleep(0.2)
    broker.kill()
    release.set()
    await api.wait_for("stop")
    assert api.commands() == ["run", "stop"]


async def test_a_failed_grace_stop_still_clears_the_flag(
    broker: Broker, make_bridge: BridgeFactory, spy: SpyFactory, api: FakeAPI
) -> None:
    bridge = await make_bridge(grace_seconds=0.3)
    await start_over_mqtt(spy, api)
    api.errors["stop"] = MassagedError("no session is running")
    broker.kill()
    await api.wait_for("stop")
    await until(lambda: not bridge.mqtt_session)
