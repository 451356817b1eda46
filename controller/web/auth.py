"""Who may use the page: the login token, sessions, CSRF, Host/Origin checks, a login rate limit.

Sans-IO apart from the token file: the server (controller.web.routes) asks
these objects and turns their answers into HTTP. The token is 192 random
bits shown once; only its SHA-256 is kept on disk (0600), so reading the
file does not let anyone log in. A new token (``massaged web token``) ends
every session made with the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devices.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_FILENAME = "web-token"
"""Beside the database (the data folder): the login token's hash."""
TOKEN_BYTES = 24
SESSION_COOKIE = "massaged_session"
SESSION_LIFETIME_S = 30 * 24 * 3600.0
"""A phone stays logged in for 30 days (or until the token is renewed)."""
MAX_SESSIONS = 32
"""Logged-in browsers kept at most; the oldest is forgotten first."""
LOGIN_FAILURES_PER_CLIENT = 5
LOGIN_FAILURES_TOTAL = 20
LOGIN_WINDOW_S = 60.0
"""At most 5 failed logins per address (20 in all) per minute; then 429 until one ages out."""
_HASH_PREFIX = "sha256:"


def token_path(state_dir: Path) -> Path:
    """The token file in a data folder."""
    return state_dir / TOKEN_FILENAME


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The login token's hash on disk; the plain token exists only when made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cached: tuple[tuple[int, int], str | None] | None = None

    def ensure(self) -> str | None:
        """Make a token if there is none; the new token (to show once), else None."""
        if self.path.exists():
            return None
        return self.renew()

    def renew(self) -> str:
        """A new token: its hash replaces the old one (every old session ends)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{TOKEN_FILENAME}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{_HASH_PREFIX}{_digest(token)}\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._cached = None
        return token

    def current(self) -> str | None:
        """The stored hash (re-read when the file changed), or None without a token."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        key = (info.st_mtime_ns, info.st_size)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as err:
            logger.warning("web token file %s unreadable: %s", self.path, err)
            return None
        stored = text.removeprefix(_HASH_PREFIX) if text.startswith(_HASH_PREFIX) else None
        if stored is None:
            logger.warning("web token file %s is not a token hash: renew it", self.path)
        self._cached = (key, stored)
        return stored

    def matches(self, token: str) -> bool:
        """True when token is the current one (compared in constant time)."""
        stored = self.current()
        if stored is None or not token:
            return False
        return hmac.compare_digest(_digest(token), stored)


@dataclass
class _Session:
    expires: float
    generation: str
    """The token hash it was made under: a renewed token ends it."""


class Sessions:
    """Logged-in browsers, by a random cookie value (kept hashed)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_id: dict[str, _Session] = {}

    def create(self, generation: str) -> str:
        """A new session's cookie value."""
        now = self._clock()
        self._forget_expired(now)
        while len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id, key=lambda k: self._by_id[k].expires)
            del self._by_id[oldest]
        value = secrets.token_urlsafe(32)
        self._by_id[_digest(value)] = _Session(now + SESSION_LIFETIME_S, generation)
        return value

    def valid(self, value: str | None, generation: str | None) -> bool:
        """True for a live session made under the current token."""
        if not value or generation is None:
            return False
        found = self._by_id.get(_digest(value))
        if found is None:
            return False
        if found.expires <= self._clock() or not hmac.compare_digest(found.generation, generation):
            self._by_id.pop(_digest(value), None)
            return False
        return True

    def end(self, value: str | None) -> None:
        """Log out one session."""
        if value:
            self._by_id.pop(_digest(value), None)

    def __len__(self) -> int:
        return len(self._by_id)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, s in self._by_id.items() if s.expires <= now]:
            del self._by_id[key]


class LoginLimiter:
    """Failed logins per client and in all, over a sliding minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._per_client: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def retry_after(self, client: str) -> float | None:
        """Seconds to wait before this client may try again, or None when it may now."""
        now = self._clock()
        self._age(now)
        waits = []
        mine = self._per_client.get(client)
        if mine is not None and len(mine) >= LOGIN_FAILURES_PER_CLIENT:
            waits.append(mine[0] + LOGIN_WINDOW_S - now)
        if len(self._all) >= LOGIN_FAILURES_TOTAL:
            waits.append(self._all[0] + LOGIN_WINDOW_S - now)
        return max(waits) if waits else None

    def failed(self, client: str) -> None:
        """Count one failed attempt."""
        now = self._clock()
        self._per_client.setdefault(client, deque()).append(now)
        self._all.append(now)

    def _age(self, now: float) -> None:
        limit = now - LOGIN_WINDOW_S
        while self._all and self._all[0] <= limit:
            self._all.popleft()
        for client in list(self._per_client):
            times = self._per_client[client]
            while times and times[0] <= limit:
                times.popleft()
            if not times:
                del self._per_client[client]


# -- Host and Origin (DNS rebinding, cross-site requests) ----------------------------------


def _split_host(value: str) -> tuple[str, int | None] | None:
    """ "host:port" or "[v6]:port" -> (host, port); None when malformed."""
    try:
        parts = urlsplit(f"//{value}")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def local_names() -> frozenset[str]:
    """This machine's own names (a phone may type "raspberrypi.local")."""
    name = socket.gethostname().lower()
    names = {"localhost", name, f"{name}.local"}
    if "." in name:
        names.add(name.split(".", 1)[0])
    return frozenset(names)


class HostCheck:
    """Which Host headers are this server: its address, an IP literal, or this machine's names.

    A DNS-rebinding page reaches the server under the attacker's own domain name,
    which is none of these, so its requests are refused before any route runs.
    """

    def __init__(self, bound_host: str, port: int, names: frozenset[str] | None = None) -> None:
        self.bound_host = bound_host.lower().strip("[]")
        self.port = port
        self.names = local_names() if names is None else names

    def allowed(self, host_header: str | None) -> bool:
        """True for a Host header naming this server."""
        if not host_header:
            return False
        split = _split_host(host_header)
        if split is None:
            return False
        host, port = split
        if port is not None and port != self.port:
            return False
        return host == self.bound_host or _is_ip(host) or host in self.names


def same_origin(origin: str | None, host_header: str | None, scheme: str = "http") -> bool:
    """True when a request's Origin is the page's own (a missing Origin: not a browser's)."""
    if origin is None:
        return True  # curl, scripts, the bench: not a cross-site browser request
    if not host_header or origin == "null":
        return False
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme != scheme or not parts.hostname:
        return False
    split = _split_host(host_header)
    if split is None:
        return False
    default = 443 if scheme == "https" else 80
    return parts.hostname.lower() == split[0] and (origin_port or default) == (split[1] or default)


def check_csrf(sent: str | None, expected: str) -> bool:
    """True when the X-CSRF-Token header carries this server's token."""
    return bool(sent) and hmac.compare_digest(str(sent), expected)


def new_csrf_token() -> str:
    """One per server run: the page reads it from /api/session (same origin only)."""
    return secrets.token_urlsafe(32)


class TokenError(ConfigError):
    """The token file cannot be written."""
