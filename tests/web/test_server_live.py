"""The live socket against a daemon with simulated devices: state pushed, Stop taken."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from controller.web.live import MAX_EVENTS, _Client
from tests.reliability.world import PROGRAM_ID, World, world
from tests.web.server_fixtures import WebClient, client, serving

WAIT_S = 15.0


@pytest.fixture
async def live() -> AsyncIterator[tuple[World, WebClient]]:
    async with world() as w, serving(w.daemon, w.folder) as server, client(server) as c:
        yield w, c


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first message that wanted() accepts (fail after WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if wanted(message):
                return message


def running(message: dict[str, Any]) -> bool:
    return message["type"] == "state" and message["data"]["now"] is not None


async def test_a_session_start_reaches_the_socket_with_its_step_and_count(
    live: tuple[World, WebClient],
) -> None:
    w, c = live
    async with c.ws() as ws:
        hello = await ws.receive_json(timeout=WAIT_S)
        assert hello == {"type": "hello", "logged_in": True}
        first = await receive_until(ws, lambda m: m["type"] == "state")
        assert first["data"]["now"] is None
        assert {d["name"] for d in first["data"]["devices"]} == {
            "belt-1",
            "pillow-1",
            "butterfly-1",
        }
        await w.run()  # over the control socket: the page sees what any front end does
        state = await receive_until(ws, running)
        now = state["data"]["now"]
        assert now["program"] == PROGRAM_ID
        assert now["step_total"] >= 1
        assert set(now["devices"]) == {"belt-1", "pillow-1", "butterfly-1"}
        assert now["time_left"] > 0
        counted = await receive_until(ws, lambda m: running(m) and m["data"]["now"]["count"])
        count = counted["data"]["now"]["count"]
        assert count["technique"] == counted["data"]["now"]["technique"]
        assert 0 <= count["done"] < count["total"]
        outputs = await receive_until(
            ws,
            lambda m: (
                m["type"] == "outputs"
                and any(v > 0 for levels in m["data"].values() for v in levels.values())
            ),
        )
        for levels in outputs["data"].values():
            assert all(0.0 <= v <= 1.0 for v in levels.values())
        await ws.send_json({"command": "stop", "id": "s1"})
        answer = await receive_until(ws, lambda m: m["type"] == "answer")
        assert answer["status"] == "ok", answer
        assert answer["id"] == "s1"
        await w.wait_for(lambda: not w.session_running(), "the session's end")
        await w.wait_for(w.quiet, "every device at zero")
        ended = await receive_until(ws, lambda m: m["type"] == "state" and m["data"]["now"] is None)
        assert ended["data"]["last_session"]["outcome"] == "stopped"


async def test_emergency_stop_over_http_zeroes_every_device(
    live: tuple[World, WebClient],
) -> None:
    w, c = live
    await w.run()
    await w.wait_on()
    status, answer = await c.command("emergency_stop")
    assert status == 200, answer
    await w.wait_for(w.quiet, "every device at zero")
    await w.wait_for(lambda: not w.session_running(), "the session's end")


async def test_a_command_over_the_socket_runs_through_the_one_api(
    live: tuple[World, WebClient],
) -> None:
    _, c = live
    async with c.ws() as ws:
        await ws.send_json({"command": "scale", "payload": {"scale": 7}, "id": 3})
        answer = await receive_until(ws, lambda m: m["type"] == "answer")
        assert answer["status"] == "error"
        assert "scale" in answer["error"]
        await ws.send_str("not json")
        answer = await receive_until(ws, lambda m: m["type"] == "answer")
        assert answer["status"] == "error"


def test_a_slow_client_holds_a_bounded_backlog() -> None:
    client = _Client(ws=None, logged_in=True)  # type: ignore[arg-type]
    for i in range(10 * MAX_EVENTS):
        client.push_event({"type": "event", "data": {"n": i}})
        client.state = {"type": "state", "data": {"n": i}}
        client.outputs = {"type": "outputs", "data": {"n": i}}
    assert len(client.events) == MAX_EVENTS
    assert client.dropped == 9 * MAX_EVENTS
    sent = []
    while (message := client.next_message()) is not None:
        sent.append(message)
    # The latest state and outputs only, and the newest events.
    assert [m for m in sent if m["type"] == "state"] == [
        {"type": "state", "data": {"n": 10 * MAX_EVENTS - 1}}
    ]
    assert len(sent) == MAX_EVENTS + 2
    assert sent[-1] == {"type": "outputs", "data": {"n": 10 * MAX_EVENTS - 1}}
