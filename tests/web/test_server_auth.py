"""Login on the LAN: the token, the session cookie, the rate limit, Stop without a login."""

from __future__ import annotations

import logging
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.api import EmptyRequest
from controller.config import load_config
from controller.errors import BadConfigError
from controller.web.auth import (
    LOGIN_FAILURES_PER_CLIENT,
    LOGIN_WINDOW_S,
    HostCheck,
    LoginLimiter,
    TokenFile,
    same_origin,
    token_path,
)
from controller.web.server import WebServer, WebStartError
from controller.web.settings import WebSettings
from tests.web.server_fixtures import WebClient, bare_daemon, client, serving


@pytest.fixture
async def lan(tmp_path: Path) -> AsyncIterator[tuple[WebServer, WebClient, str]]:
    """A server in LAN mode (login needed), on loopback; and its token."""
    token = TokenFile(token_path(tmp_path)).renew()
    async with (
        bare_daemon(tmp_path) as daemon,
        serving(daemon, tmp_path, lan=True) as server,
        client(server) as c,
    ):
        yield server, c, token


async def test_lan_mode_refuses_everything_but_stop_without_login(
    lan: tuple[WebServer, WebClient, str],
) -> None:
    _, c, _ = lan
    data = await c.get_session()
    assert data == {**data, "logged_in": False, "login_required": True, "lan": True}
    for name, body in (
        ("run", {"program": "collar-zone", "well_today": True}),
        ("status", {}),
        ("profiles", {}),
        ("set_caps", {"name": "belt", "max_intensity": 1.0}),
    ):
        status, answer = await c.command(name, body)
        assert status == 401, (name, answer)
        assert "log in" in answer["error"]
    status, answer = await c.command("emergency_stop")
    assert status == 200
    assert answer["data"] == {"state": "stopped"}
    status, answer = await c.command("stop")
    assert status == 409  # accepted, and the daemon says why there is nothing to stop
    assert answer["error"] == "no session is running"


async def test_login_sets_a_strict_httponly_cookie_and_opens_the_api(
    lan: tuple[WebServer, WebClient, str],
) -> None:
    _, c, token = lan
    async with c.session.post(
        c.base + "api/login", json={"token": token}, headers={"X-CSRF-Token": c.csrf}
    ) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("massaged_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert (await c.get_session())["logged_in"] is True
    status, answer = await c.command("status")
    assert status == 200, answer
    status, answer = await c.post("logout", {})
    assert status == 200
    assert (await c.get_session())["logged_in"] is False
    status, _ = await c.command("status")
    assert status == 401


async def test_a_renewed_token_ends_every_session(
    lan: tuple[WebServer, WebClient, str], tmp_path: Path
) -> None:
    _, c, token = lan
    assert (await c.login(token))[0] == 200
    assert (await c.command("status"))[0] == 200
    new = TokenFile(token_path(tmp_path)).renew()
    assert (await c.command("status"))[0] == 401
    assert (await c.login(token))[0] == 401
    assert (await c.login(new))[0] == 200
    assert (await c.command("status"))[0] == 200


async def test_wrong_tokens_are_rate_limited_with_retry_after(
    lan: tuple[WebServer, WebClient, str],
) -> None:
    server, c, token = lan
    assert server.context is not None
    now = [1000.0]
    server.context.limiter = LoginLimiter(clock=lambda: now[0])
    for _ in range(LOGIN_FAILURES_PER_CLIENT):
        status, answer = await c.login("wrong")
        assert status == 401, answer
    # Now even the right token waits: guessing cannot go faster than the limit.
    async with c.session.post(
        c.base + "api/login", json={"token": token}, headers={"X-CSRF-Token": c.csrf}
    ) as r:
        assert r.status == 429
        assert int(r.headers["Retry-After"]) == int(LOGIN_WINDOW_S)
        answer = await r.json()
    assert answer["data"]["retry_after"] == int(LOGIN_WINDOW_S)
    assert "too many failed logins" in answer["error"]
    now[0] += LOGIN_WINDOW_S + 1
    assert (await c.login(token))[0] == 200


async def test_bad_login_bodies_are_refused(lan: tuple[WebServer, WebClient, str]) -> None:
    _, c, _ = lan
    for body in ({}, {"token": 5}, {"token": ""}, {"token": "x" * 500}, [1]):
        status, answer = await c.post("login", body)
        assert status == 400, (body, answer)


async def test_the_lan_socket_takes_stop_but_pushes_nothing_without_login(
    lan: tuple[WebServer, WebClient, str],
) -> None:
    _, c, _ = lan
    async with c.ws() as ws:
        assert await ws.receive_json(timeout=5) == {"type": "hello", "logged_in": False}
        await ws.send_json({"command": "status", "id": 1})
        answer = await ws.receive_json(timeout=5)
        assert answer["status"] == "error"
        assert answer["id"] == 1
        await ws.send_json({"command": "emergency_stop", "id": 2})
        answer = await ws.receive_json(timeout=5)
        assert answer == {
            "type": "answer",
            "command": "emergency_stop",
            "status": "ok",
            "data": {"state": "stopped"},
            "id": 2,
        }


async def test_the_token_file_holds_only_a_hash_owner_only(tmp_path: Path) -> None:
    tokens = TokenFile(token_path(tmp_path))
    token = tokens.ensure()
    assert token is not None
    assert tokens.ensure() is None  # made once
    text = token_path(tmp_path).read_text()
    assert token not in text
    assert text.startswith("sha256:")
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600
    assert tokens.matches(token)
    assert not tokens.matches(token + "x")
    assert not tokens.matches("")


async def test_first_start_logs_the_token_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.web.server")
    async with bare_daemon(tmp_path) as daemon:
        async with serving(daemon, tmp_path):
            pass
        first = [r.getMessage() for r in caplog.records if "token" in r.getMessage()]
        caplog.clear()
        async with serving(daemon, tmp_path):
            pass
        again = [r.getMessage() for r in caplog.records if "token" in r.getMessage()]
    assert len(first) == 1
    assert again == []
    token = first[0].rsplit(" ", 1)[1]
    assert TokenFile(token_path(tmp_path)).matches(token)


def test_massaged_web_token_prints_a_new_token(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MASSAGED_DATA_DIR": str(tmp_path / "data"),
        "MASSAGED_CONFIG_DIR": str(tmp_path / "config"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "controller", "web", "token"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(token) >= 30
    assert "\n" not in token
    assert TokenFile(token_path(tmp_path / "data")).matches(token)
    assert stat.S_IMODE((tmp_path / "data" / "web-token").stat().st_mode) == 0o600


async def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with bare_daemon(tmp_path) as daemon:
            server = WebServer(daemon, WebSettings(port=port), state_dir=tmp_path)
            with pytest.raises(WebStartError, match=rf"cannot listen on 127.0.0.1:{port}: .*port"):
                await server.start()
            await server.close()


async def test_the_daemon_runs_on_without_the_page_when_its_port_is_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from controller.daemon import Daemon
    from controller.store import Store

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        store = Store.open(tmp_path / "data" / "massaged.db")
        daemon = Daemon(store, web=WebSettings(port=port))
        try:
            await daemon.start()
            assert daemon.web_url is None
            status = await daemon.handle("status", _empty())
            assert status["daemon"]["web"] is None
        finally:
            await daemon.close()
            store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("web page not served: cannot listen on") for w in warnings), warnings


async def test_the_daemon_serves_the_page_from_start_to_close(tmp_path: Path) -> None:
    import asyncio

    from controller.daemon import Daemon
    from controller.store import Store

    store = Store.open(tmp_path / "data" / "massaged.db")
    daemon = Daemon(store, web=WebSettings(port=0))
    try:
        await daemon.start()
        url = daemon.web_url
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        status = await daemon.handle("status", _empty())
        assert status["daemon"]["web"] == url
    finally:
        await daemon.close()
        store.close()
    assert daemon.web_url is None
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("web-")]
    assert left == []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))  # the port is free again


def _empty() -> EmptyRequest:
    return EmptyRequest()


def test_a_non_loopback_host_needs_the_lan_opt_in(tmp_path: Path) -> None:
    env = {"MASSAGED_CONFIG_DIR": str(tmp_path), "MASSAGED_WEB_HOST": "0.0.0.0"}
    with pytest.raises(BadConfigError) as err:
        load_config(environ=env)
    message = str(err.value)
    assert message.count("\n") == 0
    assert "MASSAGED_WEB_HOST" in message
    assert "set lan = true" in message
    config = load_config(environ={**env, "MASSAGED_WEB_LAN": "true"})
    assert config.web.login_required
    with pytest.raises(BadConfigError, match="MASSAGED_WEB_PORT"):
        load_config(environ={"MASSAGED_CONFIG_DIR": str(tmp_path), "MASSAGED_WEB_PORT": "http"})
    (tmp_path / "config.toml").write_text("[web]\nport = 70000\n")
    with pytest.raises(BadConfigError, match=r"line 2: \[web\] port"):
        load_config(environ={"MASSAGED_CONFIG_DIR": str(tmp_path)})


def test_host_and_origin_rules() -> None:
    hosts = HostCheck("127.0.0.1", 8765, names=frozenset({"localhost", "pi", "pi.local"}))
    assert hosts.allowed("127.0.0.1:8765")
    assert hosts.allowed("192.168.1.20:8765")  # an address typed on a phone
    assert hosts.allowed("[::1]:8765")
    assert hosts.allowed("pi.local:8765")
    assert not hosts.allowed("pi.local:8766")
    assert not hosts.allowed("attacker.example:8765")
    assert not hosts.allowed("127.0.0.1.attacker.example:8765")
    assert not hosts.allowed(None)
    assert not hosts.allowed("[bad")
    assert same_origin(None, "127.0.0.1:8765")
    assert same_origin("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert same_origin("http://pi.local", "pi.local:80")
    assert not same_origin("http://127.0.0.1:8766", "127.0.0.1:8765")
    assert not same_origin("http://evil.example", "127.0.0.1:8765")
    assert not same_origin("null", "127.0.0.1:8765")
