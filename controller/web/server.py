"""The daemon's web server: an aiohttp application on a TCP port, from start() to close().

aiohttp is the one library here: an asyncio HTTP server, WebSocket and a test
client in one well-kept package, with no ASGI server to add on top. The
daemon starts it after its devices (controller.daemon_pages.start_web) and
closes it last; a port that is taken is an error the daemon reports in one
line and lives without.

start() binds and listens at once, so the address is known (and a taken port
reported) from the start; aiohttp and the page's routes are loaded when the
first connection arrives, in a thread so the event loop (device ticks, leases)
runs on meanwhile. That connection waits in the listen backlog for those
fractions of a second. A daemon whose page nobody opens (a service on a
headless box, every test that drives it through the control socket) never
pays for aiohttp at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import ipaddress
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from controller.web import STATIC_DIR
from controller.web.auth import HostCheck, TokenFile, new_csrf_token, token_path
from controller.web.settings import WebSettings
from devices.errors import MassagedError

if TYPE_CHECKING:
    from aiohttp import web

    from controller.web.live import LiveHub
    from controller.web.routes import WebContext

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S: Final = 2.0
"""Requests still running when the daemon stops get this long (a Stop's answer does)."""
KEEPALIVE_TIMEOUT_S: Final = 30.0
"""An idle keep-alive connection is closed after this long."""
START_TIMEOUT_S: Final = 10.0
BACKLOG: Final = 32
"""Connections waiting to be accepted (also while aiohttp loads for the first one)."""
LOADED_MODULES: Final = ("controller.web.live", "controller.web.routes", "aiohttp.web")
"""What serving needs beyond this module: imported on the first connection."""


class WebStartError(MassagedError):
    """The page cannot be served (the port is taken, the address is not this machine's)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("massaged")
    except metadata.PackageNotFoundError:
        return "unknown"


def _load() -> str:
    """Import aiohttp and the page's routes (in a thread: it takes a while); the version."""
    for name in LOADED_MODULES:
        importlib.import_module(name)
    return _version()


async def listen(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of host (as asyncio binds).

    The same rules as ``loop.create_server``: SO_REUSEADDR, IPv6 sockets IPv6 only, and
    an OSError naming the address that cannot be bound.
    """
    if _is_address(host):
        # An address, not a name (the default 127.0.0.1): nothing to look up, so no
        # resolver thread; and given as bytes, so that the resolver does not load the
        # "idna" codec (encodings.idna, stringprep, unicodedata) to encode it. The same
        # answer as for the text (AI_NUMERICHOST: never a lookup).
        infos = socket.getaddrinfo(
            host.encode("ascii"),
            port,
            family=socket.AF_UNSPEC,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine lacks (asyncio skips it too)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
            try:
                sock.bind(address)
            except OSError as err:
                text = (err.strerror or str(err)).lower()
                raise OSError(
                    err.errno, f"error while attempting to bind on address {address!r}: {text}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for {host!r}")
    return sockets


def _is_address(host: str) -> bool:
    """True for an IPv4 or IPv6 address written out ("127.0.0.1", "::1"), not a name."""
    if not host.isascii():
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class WebServer:
    """The page, its JSON API and live socket for one daemon."""

    def __init__(
        self,
        daemon: Any,
        settings: WebSettings,
        *,
        state_dir: Path,
        static_dir: Path = STATIC_DIR,
    ) -> None:
        self.daemon = daemon
        self.settings = settings
        self.token = TokenFile(token_path(state_dir))
        self.static_dir = static_dir
        self.hub: LiveHub | None = None
        """The live socket's clients and pump, from the first connection on."""
        self.context: WebContext | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: list[socket.socket] = []
        """Listening, and not yet handed to aiohttp (which then owns and closes them)."""
        self._loading: asyncio.Task[None] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The page's address (the bound port, also when 0 was asked)."""
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port if self.port is not None else self.settings.port}/"

    async def start(self) -> None:
        """Bind and listen; WebStartError naming the address when that fails."""
        new_token = await asyncio.to_thread(self.token.ensure)
        if new_token is not None:
            # Shown once, in the daemon's log; only its hash is kept (massaged web token renews).
            logger.warning(
                "web page login token (shown once; 'massaged web token' makes a new one): %s",
                new_token,
            )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                sockets = await listen(self.settings.host, self.settings.port)
        except (OSError, TimeoutError) as err:
            where = f"{self.settings.host}:{self.settings.port}"
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            hint = " (another program, or another massaged, uses it: set [web] port)"
            in_use = isinstance(err, OSError) and err.errno == errno.EADDRINUSE
            raise WebStartError(
                f"cannot listen on {where}: {reason}{hint if in_use else ''}"
            ) from err
        self._sockets = sockets
        self.port = int(sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._first_connection)
        login = "login needed but for Stop" if self.settings.login_required else "no login"
        logger.info("web page: %s (%s)", self.url, login)

    def _first_connection(self) -> None:
        """A connection waits: load the server (once); it accepts what waits meanwhile."""
        self._stop_watching()
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._serve(), name="web-load")

    def _stop_watching(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())

    async def _serve(self) -> None:
        try:
            # In a thread: importing aiohttp takes long enough to delay a running session.
            version = await asyncio.to_thread(_load)
            from aiohttp import web

            from controller.web.live import LiveHub

            self.hub = LiveHub(self.daemon)
            runner = web.AppRunner(
                self._app(self.hub, version), access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S
            )
            await runner.setup()
            self._runner = runner
            while self._sockets:
                site = web.SockSite(runner, self._sockets[0], backlog=BACKLOG)
                await site.start()
                self._sockets.pop(0)  # the site's now: runner.cleanup() closes it
            self.hub.start()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The daemon and every other front end work without the page: keep running.
            logger.exception("web page not served: the server failed to start")
            self._close_sockets()

    def _app(self, hub: LiveHub, version: str) -> web.Application:
        from controller.web.routes import WebContext, make_app

        self.context = WebContext(
            daemon=self.daemon,
            settings=self.settings,
            token=self.token,
            hosts=HostCheck(self.settings.host, self.settings.port),
            csrf=new_csrf_token(),
            version=version,
            static_dir=self.static_dir,
        )
        if self.port is not None:
            self.context.hosts.port = self.port
        return make_app(self.context, hub.handle)

    def _close_sockets(self) -> None:
        self._stop_watching()
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    async def close(self) -> None:
        """Close every socket and connection; nothing of the server is left running."""
        loading = self._loading
        if loading is not None and not loading.done():
            # A first connection is waiting for the server: let it be served, as one that
            # came a moment later would be, unless loading hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                    await asyncio.shield(loading)
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        if self.hub is not None:
            await self.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._close_sockets()
