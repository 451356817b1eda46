"""The daemon's web server: an aiohttp application on a TCP port, from start() to close().

aiohttp is the one library here: an asyncio HTTP server, WebSocket and a test
client in one well-kept package, with no ASGI server to add on top. The
daemon starts it after its devices (controller.daemon_pages.start_web) and
closes it last; a port that is taken is an error the daemon reports in one
line and lives without.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path
from typing import Final

from aiohttp import web

from controller.web.auth import HostCheck, TokenFile, new_csrf_token, token_path
from controller.web.live import LiveHub
from controller.web.routes import STATIC_DIR, DaemonLike, WebContext, make_app
from controller.web.settings import WebSettings
from devices.errors import MassagedError

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S: Final = 2.0
"""Requests still running when the daemon stops get this long (a Stop's answer does)."""
KEEPALIVE_TIMEOUT_S: Final = 30.0
"""An idle keep-alive connection is closed after this long."""
START_TIMEOUT_S: Final = 10.0


class WebStartError(MassagedError):
    """The page cannot be served (the port is taken, the address is not this machine's)."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("massaged")
    except metadata.PackageNotFoundError:
        return "unknown"


class WebServer:
    """The page, its JSON API and live socket for one daemon."""

    def __init__(
        self,
        daemon: DaemonLike,
        settings: WebSettings,
        *,
        state_dir: Path,
        static_dir: Path = STATIC_DIR,
    ) -> None:
        self.daemon = daemon
        self.settings = settings
        self.token = TokenFile(token_path(state_dir))
        self.static_dir = static_dir
        self.hub = LiveHub(daemon)
        self.context: WebContext | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The page's address (the bound port, also when 0 was asked)."""
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port if self.port is not None else self.settings.port}/"

    async def start(self) -> None:
        """Bind and serve; WebStartError naming the address when that fails."""
        new_token = await asyncio.to_thread(self.token.ensure)
        if new_token is not None:
            # Shown once, in the daemon's log; only its hash is kept (massaged web token renews).
            logger.warning(
                "web page login token (shown once; 'massaged web token' makes a new one): %s",
                new_token,
            )
        runner = web.AppRunner(self._app(), access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.settings.host,
            self.settings.port,
            backlog=32,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await site.start()
        except (OSError, TimeoutError) as err:
            await runner.cleanup()
            where = f"{self.settings.host}:{self.settings.port}"
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            hint = " (another program, or another massaged, uses it: set [web] port)"
            in_use = isinstance(err, OSError) and err.errno == errno.EADDRINUSE
            raise WebStartError(
                f"cannot listen on {where}: {reason}{hint if in_use else ''}"
            ) from err
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self.settings.port
        if self.context is not None:
            self.context.hosts.port = self.port
        self.hub.start()
        login = "login needed but for Stop" if self.settings.login_required else "no login"
        logger.info("web page: %s (%s)", self.url, login)

    def _app(self) -> web.Application:
        self.context = WebContext(
            daemon=self.daemon,
            settings=self.settings,
            token=self.token,
            hosts=HostCheck(self.settings.host, self.settings.port),
            csrf=new_csrf_token(),
            version=_version(),
            static_dir=self.static_dir,
        )
        return make_app(self.context, self.hub.handle)

    async def close(self) -> None:
        """Close every socket and connection; nothing of the server is left running."""
        await self.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
