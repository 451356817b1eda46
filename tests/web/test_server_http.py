"""The web server's HTTP rules: headers, Host and Origin checks, CSRF, bodies, errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.web.routes import MAX_BODY_BYTES, STATIC_DIR
from controller.web.server import WebServer
from tests.web.server_fixtures import WebClient, bare_daemon, client, serving


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[tuple[WebServer, WebClient]]:
    async with (
        bare_daemon(tmp_path) as daemon,
        serving(daemon, tmp_path) as server,
        client(server) as c,
    ):
        yield server, c


async def raw(
    c: WebClient, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    async with c.session.request(method, c.base + path, data=data, headers=headers) as r:
        return r.status, await r.text(), r.headers


async def test_the_page_is_served_with_its_security_headers(
    web: tuple[WebServer, WebClient],
) -> None:
    _, c = web
    status, text, headers = await raw(c, "GET", "")
    assert status == 200
    assert "<html" in text.lower()
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    assert "Access-Control-Allow-Origin" not in headers  # no CORS, ever
    status, _, headers = await raw(c, "GET", "api/session")
    assert headers["Cache-Control"] == "no-store"


def test_the_page_has_no_inline_script() -> None:
    # The CSP forbids inline scripts: one in index.html would simply not run.
    page = (STATIC_DIR / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", page, flags=re.IGNORECASE):
        assert "src=" in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", page, flags=re.IGNORECASE), "inline handler"


async def test_static_files_are_served_and_paths_cannot_escape(
    web: tuple[WebServer, WebClient],
) -> None:
    _, c = web
    status, _, headers = await raw(c, "GET", "static/app.css")
    assert status == 200
    assert headers["Content-Security-Policy"]
    for path in ("static/../routes.py", "static/%2e%2e/routes.py", "static/..%2Froutes.py"):
        status, text, _ = await raw(c, "GET", path)
        assert status in (403, 404), (path, status)
        assert "CONTEXT" not in text


async def test_the_session_on_loopback_needs_no_login(web: tuple[WebServer, WebClient]) -> None:
    _, c = web
    data = await c.get_session()
    assert data["logged_in"] is True
    assert data["login_required"] is False
    assert data["lang_default"] == "en"
    assert len(data["csrf"]) >= 32


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", ""])
async def test_a_foreign_host_name_is_refused_dns_rebinding(
    web: tuple[WebServer, WebClient], host: str
) -> None:
    server, c = web
    headers = {"Host": host.format(port=server.port)}
    for method, path in (("GET", ""), ("GET", "api/session"), ("POST", "api/command/status")):
        sent = {**headers, "X-CSRF-Token": c.csrf}
        status, text, _ = await raw(c, method, path, headers=sent)
        assert status == 403, (host, path, status)
        assert "csrf" not in text


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "127.0.0.1"])
async def test_the_own_host_names_are_accepted(web: tuple[WebServer, WebClient], host: str) -> None:
    server, c = web
    status, _, _ = await raw(
        c, "GET", "api/session", headers={"Host": host.format(port=server.port)}
    )
    assert status == 200


async def test_a_post_needs_the_csrf_header(web: tuple[WebServer, WebClient]) -> None:
    _, c = web
    async with c.session.post(c.base + "api/command/status", json={}) as r:
        assert r.status == 403
        assert "X-CSRF-Token" in (await r.json())["error"]
    status, answer = await c.post("command/status", {}, headers={"X-CSRF-Token": "nope"})
    assert status == 403
    assert answer["status"] == "error"
    status, answer = await c.command("status")
    assert status == 200
    assert answer["status"] == "ok"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1:{port}"])
async def test_a_cross_origin_post_is_refused(
    web: tuple[WebServer, WebClient], origin: str
) -> None:
    server, c = web
    status, answer = await c.post(
        "command/emergency_stop", {}, headers={"Origin": origin.format(port=server.port)}
    )
    assert status == 403
    assert "cross-origin" in answer["error"]


async def test_a_same_origin_post_is_accepted(web: tuple[WebServer, WebClient]) -> None:
    server, c = web
    origin = f"http://127.0.0.1:{server.port}"
    status, answer = await c.post("command/status", {}, headers={"Origin": origin})
    assert status == 200, answer


async def test_a_cross_origin_websocket_is_refused(web: tuple[WebServer, WebClient]) -> None:
    _, c = web
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with c.ws(origin="http://evil.example"):
            pass
    assert err.value.status == 403


async def test_bodies_are_bounded_json_objects(web: tuple[WebServer, WebClient]) -> None:
    _, c = web
    post_headers = {"X-CSRF-Token": c.csrf, "Content-Type": "application/json"}
    big = b'{"text": "' + b"x" * MAX_BODY_BYTES + b'"}'
    status, text, _ = await raw(c, "POST", "api/command/status", data=big, headers=post_headers)
    assert status == 413, text
    for body, word in ((b"{not json", "not valid JSON"), (b"\xff\xfe", "UTF-8"), (b"NaN", "JSON")):
        status, text, _ = await raw(
            c, "POST", "api/command/status", data=body, headers=post_headers
        )
        assert status == 400, (body, text)
        assert word in text
    status, text, _ = await raw(c, "POST", "api/command/status", data=b"[1]", headers=post_headers)
    assert status == 400
    assert "JSON object" in text
    plain = {"X-CSRF-Token": c.csrf, "Content-Type": "text/plain"}
    status, text, _ = await raw(c, "POST", "api/command/status", data=b"{}", headers=plain)
    assert status == 415, text
    status, text, _ = await raw(c, "POST", "api/command/status", headers=post_headers)
    assert status == 200, text  # an empty body is {}


async def test_errors_are_json_with_clear_messages(web: tuple[WebServer, WebClient]) -> None:
    _, c = web
    status, answer = await c.command("nope")
    assert status == 404
    assert "unknown command 'nope'" in answer["error"]
    status, answer = await c.command("scale", {"scale": 3})
    assert status == 400
    assert answer["error"].startswith("scale: scale:")
    status, answer = await c.command("status", {"bogus": 1})
    assert status == 400
    assert "bogus" in answer["error"]
    status, answer = await c.command("pause")
    assert status == 409
    assert answer["error"] == "no session is running"
    status, answer = await c.command("status", {"transaction": "t1"})
    assert status == 200
    assert answer["transaction"] == "t1"
    status, text, _ = await raw(c, "GET", "api/nothing")
    assert status == 404
    assert '"status": "error"' in text
    status, text, _ = await raw(c, "PUT", "api/command/status", headers={"X-CSRF-Token": c.csrf})
    assert status == 405
