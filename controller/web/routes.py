"""The page's HTTP routes: the JSON API over controller.api.dispatch, login, and the files.

Every command goes through the one API (controller.api), so the page can do
nothing the control socket or MQTT could not, and is validated the same way.
Around it, this module adds only what HTTP needs: the Host check (DNS
rebinding), Origin + CSRF on every POST, JSON bodies of bounded size, login
where the settings ask for it (Stop and Emergency stop never need one), and
the security headers of every answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from controller import api
from controller.errors import RequestError
from controller.web import STATIC_DIR as STATIC_DIR  # also this module's name for it
from controller.web.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME_S,
    HostCheck,
    LoginLimiter,
    Sessions,
    TokenFile,
    check_csrf,
    same_origin,
)
from controller.web.settings import WebSettings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 96 * 1024
"""A request body at most (a program file of 64 KiB characters fits, JSON-escaped)."""
BODY_TIMEOUT_S: Final = 10.0
"""Longest time to receive a request's body."""
OPEN_COMMANDS: Final = frozenset({"stop", "emergency_stop"})
"""Work without a login, always: stopping must never wait for a password."""
CSRF_HEADER: Final = "X-CSRF-Token"
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

DaemonLike = Any
"""The daemon: controller.api.DaemonAPI plus add_listener, page_outputs (duck-typed)."""


@dataclass
class WebContext:
    """What every route needs: the daemon, the settings and the login state."""

    daemon: DaemonLike
    settings: WebSettings
    token: TokenFile
    hosts: HostCheck
    csrf: str
    version: str
    static_dir: Path = STATIC_DIR
    sessions: Sessions = field(default_factory=Sessions)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    def logged_in(self, request: web.BaseRequest) -> bool:
        """True when no login is needed, or the request carries a live session cookie."""
        if not self.settings.login_required:
            return True
        return self.sessions.valid(request.cookies.get(SESSION_COOKIE), self.token.current())


CONTEXT: Final = web.AppKey("massaged_web", WebContext)


def json_error(status: int, message: str, **data: Any) -> web.Response:
    """An HTTP error as the API's error answer (never HTML)."""
    body = api.error(message)
    body["data"] = data
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


# -- middlewares ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host on every request; Origin and CSRF on every POST; errors as JSON."""
    ctx = request.app[CONTEXT]
    if not ctx.hosts.allowed(request.headers.get("Host")):
        # DNS rebinding: a foreign name pointing at us is refused before any route.
        return json_error(403, "this server does not answer to that host name")
    if request.method not in ("GET", "HEAD", "POST"):
        return json_error(405, f"method {request.method} not allowed")
    cross_site = not same_origin(request.headers.get("Origin"), request.headers.get("Host"))
    if cross_site and (request.method == "POST" or request.path == "/api/ws"):
        # The socket too: a foreign page could otherwise open it with our cookie (CSWSH).
        return json_error(403, "cross-origin request refused")
    if request.method == "POST":
        if not check_csrf(request.headers.get(CSRF_HEADER), ctx.csrf):
            return json_error(403, f"missing or wrong {CSRF_HEADER} header (GET /api/session)")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return json_error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        kind = request.content_type
        if request.content_length not in (None, 0) and kind != "application/json":
            return json_error(415, f"the body must be application/json, not {kind or 'nothing'}")
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status >= 400 and request.path.startswith("/api/"):
            return json_error(err.status, err.reason)
        raise


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        # The API is always fresh; the files are checked each time (small, and a
        # new massaged must never run an old page).
        fresh = "no-store" if request.path.startswith("/api/") else "no-cache"
        response.headers["Cache-Control"] = fresh


# -- bodies ----------------------------------------------------------------------------------


class BadBody(Exception):
    """A request body that cannot be taken; carries the HTTP answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


async def read_json(request: web.Request) -> object:
    """The body as JSON (empty: {}); BadBody with 400/413/408 otherwise."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadBody(json_error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")) from None
    except TimeoutError:
        raise BadBody(json_error(408, f"the body did not arrive in {BODY_TIMEOUT_S:g} s")) from None
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise BadBody(json_error(400, "the body is not UTF-8 text")) from None
    except ValueError as err:
        raise BadBody(json_error(400, f"the body is not valid JSON: {err}")) from None


# -- routes ----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    """The page itself."""
    page = request.app[CONTEXT].static_dir / "index.html"
    if not page.is_file():
        return web.Response(status=503, text="the web page is not installed\n")
    return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8"})


async def session_info(request: web.Request) -> web.Response:
    """Whether this browser is logged in, whether it must be, and the CSRF token."""
    ctx = request.app[CONTEXT]
    data = {
        "logged_in": ctx.logged_in(request),
        "login_required": ctx.settings.login_required,
        "csrf": ctx.csrf,
        "lang_default": "en",
        "version": ctx.version,
        "lan": ctx.settings.lan,
    }
    return web.json_response(api.ok(data))


async def login(request: web.Request) -> web.Response:
    """Exchange the token for a session cookie; failures are rate-limited."""
    ctx = request.app[CONTEXT]
    client = request.remote or "?"
    wait = ctx.limiter.retry_after(client)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        response = json_error(
            429, f"too many failed logins: try again in {seconds} s", retry_after=seconds
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    try:
        payload = await read_json(request)
    except BadBody as bad:
        return bad.response
    token = payload.get("token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not 1 <= len(token) <= 200:
        return json_error(400, 'login: give {"token": "<the token from massaged web token>"}')
    generation = ctx.token.current()
    if generation is None or not ctx.token.matches(token):
        ctx.limiter.failed(client)
        logger.warning("web: failed login from %s", client)
        return json_error(401, "wrong token (massaged web token shows a new one)")
    value = ctx.sessions.create(generation)
    response = web.json_response(api.ok({"logged_in": True}))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_LIFETIME_S),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    logger.info("web: logged in from %s", client)
    return response


async def logout(request: web.Request) -> web.Response:
    """End this browser's session."""
    ctx = request.app[CONTEXT]
    ctx.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = web.json_response(api.ok({"logged_in": not ctx.settings.login_required}))
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def status_of(name: str, payload: object, answer: dict[str, Any]) -> int:
    """200 for ok; 400 when the request itself was invalid; 409 when the daemon refused."""
    if answer.get("status") == "ok":
        return 200
    try:
        api.parse_request(name, payload)
    except RequestError:
        return 400
    return 409


async def command(request: web.Request) -> web.Response:
    """POST /api/command/<command>: the body is the command's request, as on MQTT."""
    ctx = request.app[CONTEXT]
    name = request.match_info["command"]
    if name not in api.REQUEST_MODELS:
        return json_error(404, f"unknown command {name!r}; commands: {', '.join(api.COMMANDS)}")
    if name not in OPEN_COMMANDS and not ctx.logged_in(request):
        return json_error(401, "log in first (only stop and emergency_stop work without)")
    try:
        payload = await read_json(request)
    except BadBody as bad:
        return bad.response
    answer = await api.dispatch(ctx.daemon, name, payload)
    return web.json_response(
        answer, status=status_of(name, payload, answer), headers={"Cache-Control": "no-store"}
    )


def add_routes(app: web.Application, ws_handler: Handler) -> None:
    """Every route of the page."""
    ctx = app[CONTEXT]
    app.router.add_get("/", index)
    app.router.add_get("/api/session", session_info)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_post("/api/command/{command}", command)
    app.router.add_get("/api/ws", ws_handler)
    if ctx.static_dir.is_dir():
        app.router.add_static("/static/", ctx.static_dir, follow_symlinks=False)


def make_app(ctx: WebContext, ws_handler: Handler) -> web.Application:
    """The aiohttp application of the page."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = ctx
    app.on_response_prepare.append(_security_headers)
    add_routes(app, ws_handler)
    return app
