"""Fixtures of the MQTT tests: a real mosquitto on a free loopback port, a fake API and a spy.

The broker is a real ``mosquitto`` started for each test (it starts in a few
milliseconds), so the tests can kill and restart it to test reconnection.
When mosquitto is missing the tests FAIL, never skip: a silently skipped
bridge test would hide a broken bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
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

logger = logging.getLogger(__name__)

MOSQUITTO_MISSING = (
    "mosquitto not found: ./dev test installs it (Debian/Ubuntu: apt-get install mosquitto; "
    "macOS: brew install mosquitto); the MQTT tests need a real broker"
)
WAIT = 10.0
"""Generous time-out for anything the tests wait for (a noisy machine is slow, not wrong)."""
PROGRAMS = ["collar-zone", "collar-zone-child", "evening-pillow", "classic-three-stage"]


def find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, or in the sbin folders PATH often leaves out."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/sbin"):
        candidate = Path(folder) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """True when something accepts connections on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """A mosquitto of our own, on one port for its whole life so clients can come back."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def running(self) -> bool:
        """True while the broker process lives."""
        return self._process is not None and self._process.poll() is None

    def _launch(self) -> None:
        if self.running:
            return
        self._log_file = self.log.open("ab")
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def _check_started(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            pytest.fail(f"mosquitto exited at start:\n{self.log.read_text(errors='replace')}")

    def start(self, timeout: float = WAIT) -> None:
        """Start and wait until the port accepts (blocking: for fixture set-up)."""
        self._launch()
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            self._check_started()
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not listen on {self.port} within {timeout} s")
            time.sleep(0.02)

    async def astart(self, timeout: float = WAIT) -> None:
        """Start and wait until the port accepts, without blocking the event loop."""
        self._launch()
        async with asyncio.timeout(timeout):
            while not port_open(self.port):
                self._check_started()
                await asyncio.sleep(0.02)

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait(timeout=WAIT)
            self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL): every client loses its connection, no goodbye."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM), killing it if it lingers."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    async def restart(self) -> None:
        """Kill and start again on the same port (retained messages are gone: no persistence)."""
        self.kill()
        await self.astart()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running mosquitto of this test's own."""
    binary = find_mosquitto()
    if binary is None:
        pytest.fail(MOSQUITTO_MISSING)
    server = Broker(binary, tmp_path)
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
                self.messages.append(Received(message.topic.value, data, bool(message.retain)))
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
