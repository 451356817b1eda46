"""The page's WebSocket: state, device events and live outputs pushed; Stop taken.

One pump for all clients: daemon events mark the state dirty, and at most
every STATE_PERIOD_S the latest status (the ``status`` command's answer,
through the one API) goes to every logged-in client; outputs at most every
OUTPUTS_PERIOD_S. Each client holds only the latest state, the latest
outputs and a short queue of events, so a slow phone costs a fixed amount of
memory: what it cannot take in time is replaced by newer news, and a client
that cannot take one message in SEND_TIMEOUT_S is closed.

Stop and emergency stop are carried out as they arrive, ahead of anything
else the client asked; other commands (logged in only) run beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import WSMsgType, web

from controller import api
from controller.web.routes import CONTEXT, OPEN_COMMANDS, DaemonLike

logger = logging.getLogger(__name__)

STATE_PERIOD_S: Final = 0.05
"""State pushed at most 20 times a second (a change reaches the page within ~50 ms)."""
OUTPUTS_PERIOD_S: Final = 0.1
"""Live output levels at most 10 times a second."""
REFRESH_S: Final = 1.0
"""During a session the state is pushed at least this often (time left)."""
SEND_TIMEOUT_S: Final = 5.0
"""A client that cannot take one message in this long is closed."""
MAX_CLIENTS: Final = 16
MAX_EVENTS: Final = 64
"""Events kept per client; older ones are dropped (and counted) when a client lags."""
MAX_ANSWERS: Final = 16
MAX_RUNNING: Final = 4
"""Commands other than stop in flight per client at most."""
MAX_MESSAGE_BYTES: Final = 96 * 1024
HEARTBEAT_S: Final = 20.0
"""Ping period: a phone that went away is noticed within about this long."""
EVENT_KINDS: Final = frozenset({"device_event", "session_event"})


@dataclass(eq=False)
class _Client:
    """One socket's pending news: only the latest state and outputs, few events."""

    ws: web.WebSocketResponse
    logged_in: bool
    state: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    answers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ANSWERS))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    dropped: int = 0

    def push_event(self, event: dict[str, Any]) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self.events.append(event)
        self.wake.set()

    def next_message(self) -> dict[str, Any] | None:
        """Answers first (a Stop's answer must not wait), then state, events, outputs."""
        if self.answers:
            return self.answers.popleft()
        if self.state is not None:
            message, self.state = self.state, None
            return message
        if self.events:
            return self.events.popleft()
        if self.outputs is not None:
            message, self.outputs = self.outputs, None
            return message
        return None


class LiveHub:
    """Every connected page, and the pump that feeds them."""

    def __init__(self, daemon: DaemonLike) -> None:
        self.daemon = daemon
        self.clients: set[_Client] = set()
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._remove_listener: Any = None
        self._last_outputs: dict[str, Any] | None = None
        self._last_signature: tuple[Any, ...] | None = None
        self._closing = False

    def start(self) -> None:
        """Listen to the daemon and start the pump."""
        self._remove_listener = self.daemon.add_listener(self._on_daemon_event)
        self._pump = asyncio.get_running_loop().create_task(self._run_pump(), name="web-pump")

    async def close(self) -> None:
        """Close every socket, stop the pump and every command task."""
        self._closing = True
        if self._remove_listener is not None:
            self._remove_listener()
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.ws.close(code=1001, message=b"daemon stopping")
        tasks = [t for t in (self._pump, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- daemon → clients --------------------------------------------------------------

    def _on_daemon_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in EVENT_KINDS:
            event = _event_message(kind, data)
            for client in self.clients:
                if client.logged_in:
                    client.push_event(event)
        self._dirty.set()

    async def _run_pump(self) -> None:
        loop = asyncio.get_running_loop()
        last_state = last_outputs = 0.0
        while True:
            if not any(c.logged_in for c in self.clients):
                # Nobody to tell: sleep until a client or an event comes.
                self._dirty.clear()
                await self._dirty.wait()
            now = loop.time()
            running = self._session_running()
            if now - last_outputs >= OUTPUTS_PERIOD_S:
                last_outputs = now
                self._push_outputs()
                if running and self._signature() != self._last_signature:
                    self._dirty.set()
            if self._dirty.is_set() or (running and now - last_state >= REFRESH_S):
                self._dirty.clear()
                last_state = now
                await self._push_state()
            await asyncio.sleep(STATE_PERIOD_S)

    def _session_running(self) -> bool:
        runner = getattr(self.daemon, "runner", None)
        return runner is not None and runner.state.value != "ended"

    def _signature(self) -> tuple[Any, ...]:
        """What makes a new state worth sending at once: step, count, state, links."""
        now = self.daemon.page_now()
        if now is None:
            return ()
        count = now.get("count") or {}
        links = tuple(sorted((n, d["link"], d["state"]) for n, d in now["devices"].items()))
        return (now["state"], now["step"], count.get("done"), now["scale"], links)

    async def _push_state(self) -> None:
        answer = await api.dispatch(self.daemon, "status", {})
        if answer.get("status") != "ok":
            return
        self._last_signature = self._signature()
        message = {"type": "state", "data": answer["data"]}
        for client in self.clients:
            if client.logged_in:
                client.state = message
                client.wake.set()

    def _push_outputs(self) -> None:
        levels = self.daemon.page_outputs()
        if levels == self._last_outputs:
            return
        self._last_outputs = levels
        message = {"type": "outputs", "data": levels}
        for client in self.clients:
            if client.logged_in:
                client.outputs = message
                client.wake.set()

    # -- one client ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /api/ws: the socket of one page."""
        ctx = request.app[CONTEXT]
        if len(self.clients) >= MAX_CLIENTS or self._closing:
            return web.json_response(
                api.error(f"too many live pages open (at most {MAX_CLIENTS})"), status=503
            )
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES, writer_limit=64 * 1024
        )
        await ws.prepare(request)
        client = _Client(ws, logged_in=ctx.logged_in(request))
        client.answers.append({"type": "hello", "logged_in": client.logged_in})
        if client.logged_in:
            self._dirty.set()  # the state at once
        self.clients.add(client)
        writer = asyncio.get_running_loop().create_task(self._write(client), name="web-ws-out")
        client.wake.set()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                await self._received(client, message.data)
        finally:
            self.clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if client.dropped:
                logger.info("web: a slow page missed %d event(s)", client.dropped)
        return ws

    async def _write(self, client: _Client) -> None:
        try:
            while not client.ws.closed:
                await client.wake.wait()
                client.wake.clear()
                while (message := client.next_message()) is not None:
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await client.ws.send_str(json.dumps(message, default=str))
        except (TimeoutError, ConnectionError, RuntimeError) as err:
            logger.info("web: closing a page that does not keep up (%s)", type(err).__name__)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await client.ws.close(code=1008, message=b"too slow")

    async def _received(self, client: _Client, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            self._answer(client, None, api.error('send {"command": "stop"} (a JSON object)'), None)
            return
        name: str = message["command"]
        payload = message.get("payload", {})
        ident = message.get("id")
        if name in OPEN_COMMANDS:
            # At once, in this reader: nothing queued ahead of a stop.
            self._answer(client, name, await api.dispatch(self.daemon, name, payload), ident)
            return
        if not client.logged_in:
            answer = api.error("log in first (only stop and emergency_stop work without)")
            self._answer(client, name, answer, ident)
            return
        if client.running >= MAX_RUNNING:
            self._answer(client, name, api.error("busy: wait for the answers first"), ident)
            return
        client.running += 1
        task = asyncio.get_running_loop().create_task(
            self._run(client, name, payload, ident), name=f"web-ws-{name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, client: _Client, name: str, payload: object, ident: object) -> None:
        try:
            self._answer(client, name, await api.dispatch(self.daemon, name, payload), ident)
        finally:
            client.running -= 1

    def _answer(
        self, client: _Client, name: str | None, answer: dict[str, Any], ident: object
    ) -> None:
        message: dict[str, Any] = {"type": "answer", "command": name, **answer}
        if isinstance(ident, str | int) and not isinstance(ident, bool):
            message["id"] = ident
        client.answers.append(message)
        client.wake.set()


def _event_message(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A daemon event as the page's event message."""
    if kind == "device_event":
        detail = {k: v for k, v in data.items() if k not in ("device", "event")}
        body = {"device": data.get("device"), "event": data.get("event"), "detail": detail}
    else:
        detail = {k: v for k, v in data.items() if k not in ("device", "type", "t")}
        body = {
            "device": data.get("device"),
            "event": data.get("type"),
            "detail": detail,
            "session_t": data.get("t"),
        }
    return {"type": "event", "data": {**body, "t": round(time.time(), 3)}}
