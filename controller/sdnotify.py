"""systemd's notify protocol (Type=notify, WatchdogSec=), without a dependency.

A datagram to $NOTIFY_SOCKET; a no-op when not started by systemd.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send a state line such as READY=1, STOPPING=1, WATCHDOG=1 or STATUS=...; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as err:
        logger.warning("systemd notify failed: %s", err)
        return False
    return True


PINGS_PER_WATCHDOG_PERIOD = 5
"""Pings per WatchdogSec: a ping once a second for WatchdogSec=5, so one late ping or a
busy moment never looks like a hang, while a loop blocked for the whole period does."""


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (a fifth of WatchdogSec), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        return None
    return seconds / PINGS_PER_WATCHDOG_PERIOD if seconds > 0 else None
