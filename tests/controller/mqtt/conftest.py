"""Fixtures of the MQTT tests: a real mosquitto on a free loopback port, a fake API and a spy.

The broker is a real ``mosquitto`` started for each test (it starts in a few
milliseconds) by simulator.broker, so the tests can kill and restart it on
the same port to test reconnection.
When mosquitto is missing the tests FAIL, never skip: a silently skipped
bridge test would hide a broken bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from controller.api import Request
from controller.mqtt.bridge import MqttBridge
from controller.mqtt.client import cancel_and_wait
from controller.mqtt.discovery import DeviceDescription
from controller.mqtt.settings import MqttSettings
from devices.capabilities import (
    Capabilities,
    DeviceKind,
    Kneading,
    belt_motors,
    butterfly_channels,
)
from devices.errors import MassagedError

# Broker and find_mosquitto are re-exported: tests/reliability builds its brokers from here.
from simulator.broker import Broker as Broker
from simulator.broker import find_mosquitto as find_mosquitto
from simulator.broker import require_mosquitto
from simulator.errors import MosquittoMissingError

logger = logging.getLogger(__name__)

WAIT = 10.0
"""Generous time-out for anything the tests wait for (a noisy machine is slow, not wrong)."""
PROGRAMS = ["collar-zone", "collar-zone-child", "evening-pillow", "classic-three-stage"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running mosquitto of this test's own (fails, never skips, when mosquitto is missing)."""
    try:
        binary = require_mosquitto()
    except MosquittoMissingError as err:
        pytest.fail(str(err))
    server = Broker(binary, tmp_path, start_timeout=WAIT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeAPI:
    """A DaemonAPI that records each validated request and answers from a table."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Request]] = []
        self.answers: dict[str, Any] = {}
        self.errors: dict[str, MassagedError] = {}
        self._changed = asyncio.Event()

    async def handle(self, command: str, request: Request) -> Any:
        """Record the request, then answer or raise as the test set up."""
        self.calls.append((command, request))
        self._changed.set()
        if command in self.errors:
            raise self.errors[command]
        return self.answers.get(command, {"done": command})

    def commands(self) -> list[str]:
        """The commands received, in order."""
        return [command for command, _ in self.calls]

    async def wait_for(self, command: str, timeout: float = WAIT) -> Request:
        """The first request of this command, waiting for it if need be."""
        async with asyncio.timeout(timeout):
            while True:
                for name, request in self.calls:
                    if name == command:
                        return request
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def api() -> FakeAPI:
    """A fresh fake API."""
    return FakeAPI()


@dataclass(frozen=True)
class Received:
    """One message a spy saw."""

    topic: str
    payload: bytes
    retain: bool
    qos: int = 1
    """As delivered; the spy subscribes at QoS 1, so this is the publisher's QoS."""

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload)


class Spy:
    """A test client that records every message on its subscriptions."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.port = port
        self.topics = topics
        self.messages: list[Received] = []
        self._new = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spy:
        client = aiomqtt.Client("127.0.0.1", self.port, identifier=f"spy-{uuid.uuid4().hex[:8]}")
        async with asyncio.timeout(WAIT):
            await client.__aenter__()
        self._client = client
        for topic in self.topics:
            await client.subscribe(topic, qos=1, timeout=WAIT)
        self._reader = asyncio.create_task(self._read(client))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            await cancel_and_wait([self._reader])
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                self.messages.append(
                    Received(message.topic.value, data, bool(message.retain), message.qos)
                )
                self._new.set()

    async def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        """Publish as another client would (Home Assistant, a script)."""
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain, timeout=WAIT)

    def on(self, topic: str) -> list[Received]:
        """Every message seen on one topic, in order."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[Received], bool], *, since: int = 0, timeout: float = WAIT
    ) -> Received:
        """The first message from index since on that satisfies predicate."""
        seen = since
        async with asyncio.timeout(timeout):
            while True:
                while seen < len(self.messages):
                    message = self.messages[seen]
                    seen += 1
                    if predicate(message):
                        return message
                self._new.clear()
                await self._new.wait()

    async def wait_topic(self, topic: str, *, since: int = 0, timeout: float = WAIT) -> Received:
        """The first message on a topic from index since on."""
        return await self.wait_for(lambda m: m.topic == topic, since=since, timeout=timeout)

    async def request(
        self, command: str, payload: str | bytes | dict[str, Any], *, base: str = "massaged"
    ) -> dict[str, Any]:
        """Publish a request and return the next response to it (spy must see the response)."""
        since = len(self.messages)
        body = json.dumps(payload) if isinstance(payload, dict) else payload
        await self.publish(f"{base}/bridge/request/{command}", body)
        answer = await self.wait_topic(f"{base}/bridge/response/{command}", since=since)
        data: dict[str, Any] = answer.json()
        return data


SpyFactory = Callable[..., Awaitable[Spy]]


@pytest.fixture
async def spy(broker: Broker) -> AsyncIterator[SpyFactory]:
    """Makes spies on the test's broker; each is closed at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*topics: str) -> Spy:
            return await stack.enter_async_context(Spy(broker.port, list(topics) or ["#"]))

        yield make


def sample_devices() -> list[DeviceDescription]:
    """A belt without a heater, a pillow with one and a butterfly, as paired and connected."""
    return [
        DeviceDescription(
            name="belt",
            kind=DeviceKind.BELT,
            model="VB1",
            firmware="1.4",
            serial="VB100042",
            capabilities=Capabilities(
                kind=DeviceKind.BELT, model="VB1", motors=belt_motors(6), heater=False
            ),
            max_intensity=0.8,
        ),
        DeviceDescription(
            name="pillow",
            kind=DeviceKind.PILLOW,
            model="SP1",
            capabilities=Capabilities(
                kind=DeviceKind.PILLOW,
                model="SP1",
                heater=True,
                kneading=Kneading(nodes=4, max_speed=3),
            ),
        ),
        DeviceDescription(
            name="butterfly",
            kind=DeviceKind.BUTTERFLY,
            model="EB1",
            capabilities=Capabilities(
                kind=DeviceKind.BUTTERFLY, model="EB1", ems_channels=butterfly_channels()
            ),
        ),
    ]


BridgeFactory = Callable[..., Awaitable[MqttBridge]]


def bridge_settings(broker: Broker, **overrides: Any) -> MqttSettings:
    """Settings for a bridge on the test broker, with short timings."""
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": broker.port,
        "state_min_interval": 0.2,
        "grace_seconds": 0.5,
        "reconnect_min": 0.05,
        "reconnect_max": 0.3,
    }
    values.update(overrides)
    return MqttSettings(**values)


@pytest.fixture
async def make_bridge(broker: Broker, api: FakeAPI) -> AsyncIterator[BridgeFactory]:
    """Makes started, connected bridges over the fake API; each is closed at the end."""
    bridges: list[MqttBridge] = []

    async def make(*, connect: bool = True, **overrides: Any) -> MqttBridge:
        bridge = MqttBridge(
            bridge_settings(broker, **overrides), api, programs=PROGRAMS, version="0.1.0-test"
        )
        bridge.set_devices(sample_devices())
        bridges.append(bridge)
        await bridge.start()
        if connect:
            await bridge.wait_connected(WAIT)
        return bridge

    try:
        yield make
    finally:
        for bridge in bridges:
            await bridge.close()
