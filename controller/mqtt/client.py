"""A thin adapter over aiomqtt: one connection that comes back by itself, forever.

The bridge never sees aiomqtt. This module connects with a last will
(``<base>/bridge/state`` = ``{"state": "offline"}``, retained), and on every
(re)connect publishes ``{"state": "online"}`` retained, subscribes again and
calls the ``on_connected`` hook. When the connection drops it calls
``on_disconnected`` and tries again after an exponential backoff with jitter
(``reconnect_min`` doubling up to ``reconnect_max``); it never gives up. Every
publish and subscribe has a time-out.

A fresh ``aiomqtt.Client`` is made for every attempt: reusing one after an
unexpected disconnect could report "connected" before the broker's CONNACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiomqtt

from controller.backoff import Backoff
from controller.errors import BrokerError
from controller.mqtt.settings import MqttSettings

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds one publish, subscribe or CONNACK may take."""
CONNECT_TIMEOUT = 15.0
"""Seconds one connection attempt may take in all (TCP, TLS and CONNACK)."""
KEEPALIVE = 30
"""Seconds between MQTT pings: a silently dead broker is noticed within 1.5 × this."""
ONLINE = {"state": "online"}
OFFLINE = {"state": "offline"}

Payload = str | bytes | dict[str, Any] | list[Any] | None
OnConnected = Callable[[], Awaitable[None]]
OnMessage = Callable[[str, bytes, bool], Awaitable[None]]
"""Called with (topic, payload, retained) for every message received."""
OnDisconnected = Callable[[], None]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel tasks and wait until they have ended, cancelling again if one shrugs it off.

    Python 3.11's asyncio.wait_for (which aiomqtt uses) can swallow a cancellation
    that arrives just as the awaited thing completes; one cancel() is then not enough.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            names = ", ".join(sorted(task.get_name() for task in pending))
            logger.error("MQTT: tasks still running after %g s: %s", timeout, names)
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.debug("MQTT: task %s ended with %r", task.get_name(), task.exception())


def encode(payload: Payload) -> bytes:
    """A payload as bytes: dicts and lists as compact JSON, None as an empty message."""
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class MqttClient:
    """One broker connection, kept up by a task of its own until close()."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        subscriptions: Sequence[str],
        on_message: OnMessage,
        on_connected: OnConnected | None = None,
        on_disconnected: OnDisconnected | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        keepalive: int = KEEPALIVE,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        # Jitter: many clients that lost the same broker do not all come back at once.
        self.backoff = Backoff(settings.reconnect_min, settings.reconnect_max, jitter=0.5, rng=rng)
        """The waits between reconnects (reset by every connection made)."""
        self.state_topic = f"{settings.base_topic}/bridge/state"
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._made_connection = False
        self.connections = 0
        """How many times a connection was made (a diagnostic: one more after every loss)."""

    @property
    def connected(self) -> bool:
        """True from a (re)connect (online published, subscribed) until the next loss."""
        return self._up.is_set()

    @property
    def ready(self) -> bool:
        """True once the on_connected hook of this connection has finished too."""
        return self._ready.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once publishing is possible; BrokerError after timeout seconds."""
        await self._wait(self._up, timeout)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once connected and the on_connected hook is done; BrokerError after timeout."""
        await self._wait(self._ready, timeout)

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            raise BrokerError(f"not connected to the broker within {timeout:g} s") from None

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="mqtt-client")

    async def close(self, timeout: float = 5.0) -> None:
        """Say offline (retained), disconnect cleanly and stop reconnecting."""
        self._closing = True
        if self.connected:
            # A clean DISCONNECT suppresses the last will, so say offline ourselves.
            with contextlib.suppress(BrokerError):
                await self.publish(self.state_topic, OFFLINE, retain=True, timeout=timeout)
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    async def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        retain: bool = False,
        qos: int = 1,
        timeout: float | None = None,
    ) -> None:
        """Publish one message; BrokerError when not connected or not acknowledged in time."""
        client = self._client
        if client is None or not self._up.is_set():
            raise BrokerError(f"cannot publish to {topic}: not connected to the broker")
        wait = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                await client.publish(topic, encode(payload), qos=qos, retain=retain, timeout=wait)
        except TimeoutError:
            raise BrokerError(f"publish to {topic}: no answer within {wait:g} s") from None
        except aiomqtt.MqttError as err:
            raise BrokerError(f"publish to {topic}: {err}") from err

    # -- the connection loop ----------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        """A fresh aiomqtt client with the will, credentials and TLS of the settings."""
        s = self._settings
        tls = None
        if s.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=s.effective_client_id,
            will=aiomqtt.Will(self.state_topic, encode(OFFLINE), qos=1, retain=True),
            tls_params=tls,
            timeout=self._timeout,
            keepalive=self._keepalive,
            # Our own logger: paho's chatter at DEBUG, never the password.
            logger=logging.getLogger(f"{__name__}.paho"),
            # Small command packets must not wait for Nagle's algorithm (tens of ms): an
            # emergency stop from a dashboard is one of them.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _run(self) -> None:
        """Connect, serve, and after every loss wait and connect again, until cancelled."""
        where = f"{self._settings.host}:{self._settings.port}"
        while not self._closing:
            self._made_connection = False
            try:
                await self._serve()
            except (aiomqtt.MqttError, BrokerError, OSError, TimeoutError, ssl.SSLError) as err:
                if self.connected or self.backoff.attempts == 0:
                    logger.warning("MQTT broker %s: %s", where, err or type(err).__name__)
                else:
                    logger.debug("MQTT broker %s: %s", where, err or type(err).__name__)
            finally:
                self._ready.clear()
                if self._up.is_set():
                    self._up.clear()
                    if self._on_disconnected is not None and not self._closing:
                        self._call_disconnected()
                self._client = None
            if self._closing:
                return
            if self._made_connection:
                self.backoff.reset()
            delay = next(self.backoff)
            logger.info("MQTT: reconnecting to %s in %.2f s", where, delay)
            await asyncio.sleep(delay)

    def _call_disconnected(self) -> None:
        assert self._on_disconnected is not None
        try:
            self._on_disconnected()
        except Exception:
            logger.exception("MQTT: the on_disconnected hook failed")

    async def _serve(self) -> None:
        """One connection: connect, announce, subscribe, then deliver messages until it drops."""
        client = self._make_client()
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self._connect_timeout):
                await stack.enter_async_context(client)
            self._client = client
            # A connection that was made resets the backoff, however it ended.
            self._made_connection = True
            self.connections += 1
            logger.info(
                "MQTT: connected to %s:%s as %s",
                self._settings.host,
                self._settings.port,
                self._settings.effective_client_id,
            )
            async with asyncio.timeout(self._timeout):
                await client.publish(
                    self.state_topic, encode(ONLINE), qos=1, retain=True, timeout=self._timeout
                )
            for topic in self._subscriptions:
                async with asyncio.timeout(self._timeout):
                    await client.subscribe(topic, qos=1, timeout=self._timeout)
            self._up.set()
            if self._on_connected is not None:
                try:
                    await self._on_connected()
                except BrokerError:
                    raise
                except Exception:
                    # A bug in the hook must not keep the connection from serving commands.
                    logger.exception("MQTT: the on_connected hook failed")
            self._ready.set()
            async for message in client.messages:
                await self._deliver(message)

    async def _deliver(self, message: aiomqtt.Message) -> None:
        """Hand one message to the hook; nothing a message holds may end the loop."""
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        try:
            await self._on_message(message.topic.value, data, bool(message.retain))
        except BrokerError:
            raise
        except Exception:
            logger.exception("MQTT: handling a message on %s failed", message.topic.value)
