"""Helpers for tests of the web server: a daemon, its server on a free port, an HTTP client.

No fixtures here (the browser tests' conftest.py is the front end's): async
context managers any test module can enter, each in its own tmp folder and on a
port the system picks (xdist-safe).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from controller.daemon import Daemon
from controller.store import Store
from controller.web.server import WebServer
from controller.web.settings import WebSettings


@dataclass
class WebClient:
    """An HTTP client of one server, with its CSRF token (from GET /api/session)."""

    session: aiohttp.ClientSession
    base: str
    csrf: str = ""

    async def get_session(self) -> dict[str, Any]:
        async with self.session.get(self.base + "api/session") as response:
            assert response.status == 200, await response.text()
            data: dict[str, Any] = (await response.json())["data"]
        self.csrf = data["csrf"]
        return data

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST JSON to /api/<path> with the CSRF header; (status, answer)."""
        sent = {"X-CSRF-Token": self.csrf, **(headers or {})}
        async with self.session.post(self.base + "api/" + path, json=body, headers=sent) as r:
            return r.status, await r.json(content_type=None)

    async def command(self, name: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """POST /api/command/<name>."""
        return await self.post(f"command/{name}", {} if body is None else body)

    async def login(self, token: str) -> tuple[int, dict[str, Any]]:
        return await self.post("login", {"token": token})

    def ws(self, **kwargs: Any) -> Any:
        """The live socket (an async context manager)."""
        return self.session.ws_connect(self.base + "api/ws", **kwargs)


@contextlib.asynccontextmanager
async def bare_daemon(folder: Path) -> AsyncIterator[Daemon]:
    """A started daemon on a fresh store in folder, with no devices."""
    store = Store.open(folder / "data" / "massaged.db")
    daemon = Daemon(store)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.close()
        store.close()


@contextlib.asynccontextmanager
async def serving(daemon: Any, folder: Path, **settings: Any) -> AsyncIterator[WebServer]:
    """A WebServer for daemon on a free port of 127.0.0.1 (settings: [web] keys)."""
    server = WebServer(daemon, WebSettings(port=0, **settings), state_dir=folder)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def client(server: WebServer) -> AsyncIterator[WebClient]:
    """A client of server, its CSRF token already read."""
    timeout = aiohttp.ClientTimeout(total=30)
    # unsafe: the cookie jar must keep the cookies of an IP address (127.0.0.1).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as session:
        web = WebClient(session, server.url)
        await web.get_session()
        yield web
