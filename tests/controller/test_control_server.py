"""The control socket's server under hostile clients: bad lines, silence, too many connections.

Issue 11: a line of 30,000 "[" raised RecursionError and dropped the connection
without an answer; thousands of idle connections took every descriptor and
kept an emergency stop out. Every bad line is now answered, a silent or
half-sent request is closed after the idle time, and at the cap the longest
idle connection makes room for a new one (never one being answered). The
flood itself, on a real daemon with its descriptors exhausted, is
tests/reliability/test_control_flood.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import api, control, jsonline
from controller.control import ControlServer
from controller.errors import JsonError

WAIT = 10.0


class GateAPI:
    """Answers at once, except "run", which waits for the gate to open."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.gate = asyncio.Event()

    async def handle(self, command: str, request: api.Request) -> Any:
        self.commands.append(command)
        if command == "run":
            await self.gate.wait()
        return {"command": command}


@pytest.fixture
def short() -> Iterator[Path]:
    """A folder with a short path: Unix socket paths are limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="msd-c-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving(folder: Path, **options: Any) -> AsyncIterator[tuple[ControlServer, GateAPI]]:
    gate = GateAPI()
    server = ControlServer(gate, folder / "run" / "control.sock", **options)
    await server.start()
    try:
        yield server, gate
    finally:
        gate.gate.set()
        await server.close()


class Client:
    """One raw connection to the control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: ControlServer) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(server.path), limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> dict[str, Any] | None:
        """The next answer line; None when the server closed the connection."""
        async with asyncio.timeout(WAIT):
            line = await self.reader.readline()
        if not line:
            return None
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str) -> dict[str, Any] | None:
        await self.send(json.dumps({"command": command, "payload": {}}).encode() + b"\n")
        return await self.answer()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    """Wait until condition() holds (the server's state has no event to wait on)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.01)


async def settle(server: ControlServer, count: int) -> None:
    """Wait until the server serves count connections."""
    await until(lambda: server.connections == count)


# -- bad lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "says", "still_serves"),
    [
        (b"[" * 30_000 + b"\n", "nested too deeply", True),
        (b"[" * 30_000 + b"]" * 30_000 + b"\n", "nested too deeply", True),
        (b'{"command": "status", "payload": ' + b"[" * 17 + b"]" * 17 + b"}\n", "nested", True),
        (b'{"command": "st\xffatus"}\n', "not UTF-8", True),
        (b'{"command": "status", "payload": {"x": NaN}}\n', "NaN is not a valid JSON", True),
        (b"{not json\n", "not valid JSON", True),
        (b"[]\n", 'a request is {"command"', True),
        (b"x" * (control.MAX_LINE + 10) + b"\n", f"longer than {control.MAX_LINE} bytes", False),
    ],
    ids=["30000-brackets", "deep-but-closed", "17-deep", "not-utf8", "nan", "not-json",
         "not-a-request", "too-long"],
)  # fmt: skip
async def test_every_bad_line_is_answered_and_the_connection_serves_on(
    short: Path, line: bytes, says: str, still_serves: bool
) -> None:
    async with serving(short) as (server, gate):
        client = await Client.open(server)
        try:
            await client.send(line)
            answer = await client.answer()
            assert answer is not None, "closed without an answer"
            assert answer["status"] == "error", answer
            assert says in answer["error"], answer
            if still_serves:
                assert await client.ask("status") == {
                    "status": "ok",
                    "data": {"command": "status"},
                }
            else:  # a line that long is not read on: the connection is closed
                assert await client.answer() is None
        finally:
            await client.close()
    assert gate.commands == (["status"] if still_serves else [])


def test_the_shared_decoder_refuses_what_json_would_choke_on() -> None:
    assert jsonline.decode(b'{"a": [[1], {"b": "[[[["}]}') == {"a": [[1], {"b": "[[[["}]}
    # Brackets inside strings are not nesting; escaped quotes do not end a string.
    deep_text = json.dumps({"s": "[" * 100 + '\\"' + "{" * 100})
    assert jsonline.decode(deep_text.encode())["s"].startswith("[[")
    for bad, says in [
        (b"[" * 30_000, "nested too deeply"),
        (b"[" * (jsonline.MAX_DEPTH + 1) + b"]" * (jsonline.MAX_DEPTH + 1), "nested too deeply"),
        (b"\xc3\x28", "not UTF-8"),
        (b"Infinity", "not a valid JSON number"),
        (b" " * (jsonline.MAX_BYTES + 1), "too large"),
    ]:
        with pytest.raises(JsonError, match=says):
            jsonline.decode(bad)
    nested = b"[" * jsonline.MAX_DEPTH + b"]" * jsonline.MAX_DEPTH
    assert jsonline.nesting(nested.decode()) == jsonline.MAX_DEPTH
    jsonline.decode(nested)  # exactly at the limit: accepted


# -- silence -----------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b'{"command": "sta'], ids=["nothing", "half-a-line"])
async def test_a_silent_or_half_sent_request_is_closed_after_the_idle_time(
    short: Path, sent: bytes
) -> None:
    async with serving(short, idle_timeout=0.3) as (server, gate):
        client = await Client.open(server)
        try:
            await client.send(sent)
            await settle(server, 1)
            answer = await client.answer()
            assert answer is not None
            assert answer["error"] == "closed: no request for 0.3 s"
            assert await client.answer() is None
            await settle(server, 0)
        finally:
            await client.close()
    assert gate.commands == []


# -- too many connections ---------------------------------------------------------------


async def test_at_the_cap_the_longest_idle_connection_makes_room(short: Path) -> None:
    async with serving(short, max_connections=3) as (server, gate):
        idle = []
        for _ in range(3):
            idle.append(await Client.open(server))
            await settle(server, len(idle))
        fresh = await Client.open(server)
        try:
            assert await fresh.ask("emergency_stop") == {
                "status": "ok",
                "data": {"command": "emergency_stop"},
            }
            # The first to arrive, idle the longest, was told why and closed.
            told = await idle[0].answer()
            assert told is not None
            assert told["busy"] is True
            assert "idle" in told["error"]
            assert await idle[0].answer() is None
            assert server.connections == 3
            # The others were left alone and still serve.
            for client in idle[1:]:
                assert (await client.ask("status") or {}).get("status") == "ok"
        finally:
            for client in [*idle, fresh]:
                await client.close()
    assert gate.commands == ["emergency_stop", "status", "status"]


async def test_a_connection_being_answered_is_never_closed_for_room(short: Path) -> None:
    async with serving(short, max_connections=2) as (server, gate):
        running = [await Client.open(server), await Client.open(server)]
        try:
            for client in running:
                await client.send(b'{"command": "run", "payload": {"program": "collar-zone"}}\n')
            await until(lambda: gate.commands.count("run") == 2)
            refused = await Client.open(server)
            try:
                answer = await refused.answer()
                assert answer is not None
                assert answer["busy"] is True
                assert answer["error"] == "all 2 control connections are busy"
                assert await refused.answer() is None
            finally:
                await refused.close()
            gate.gate.set()
            for client in running:
                assert (await client.answer() or {}).get("status") == "ok"
        finally:
            for client in running:
                await client.close()
