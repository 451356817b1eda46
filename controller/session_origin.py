"""Where a daemon's session starts on a simulator recording's time axis.

A recording counts simulated seconds from the simulator's start; the session
counts program seconds from its own start, in another process. Both run on
the machine's monotonic clock (CLOCK_MONOTONIC is shared by every process),
so the simulator's banner gives the recording's origin in monotonic time, and
the daemon's status gives the program position at a moment we can stamp.
Together they put the recording on the program's time axis (programs.plot.TimeAxis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices.errors import MassagedError
from programs.plot import TimeAxis

logger = logging.getLogger(__name__)

_BANNER_T0: Final = re.compile(r"recording t=0 at monotonic (\d+(?:\.\d+)?)")
POLL_S: Final = 0.25
STATUS_TIMEOUT_S: Final = 2.0


def recording_t0(banner: str) -> float | None:
    """The monotonic time of a recording's t=0, from ``massaged simulate``'s banner."""
    match = _BANNER_T0.search(banner)
    return float(match.group(1)) if match else None


@dataclass
class SessionOrigin:
    """The monotonic time a session's program clock read 0, as best seen so far."""

    speed: float
    """The session's speed: program seconds per wall second."""
    start: float | None = None

    def seen(self, received_at: float, elapsed: float) -> None:
        """A status said the program was at elapsed; it arrived at monotonic received_at."""
        # The answer left the daemon before it arrived, and a pause only adds to the
        # position's lag: the earliest estimate is the closest one.
        candidate = received_at - elapsed / self.speed
        if self.start is None or candidate < self.start:
            self.start = candidate

    def axis(self, t0: float | None, recording_speed: float) -> TimeAxis | None:
        """The recording's time axis, or None when either origin is unknown."""
        if self.start is None or t0 is None:
            return None
        return TimeAxis(
            origin=(self.start - t0) * recording_speed, ratio=self.speed / recording_speed
        )


@contextlib.asynccontextmanager
async def watch_origin(socket: Path, speed: float) -> AsyncIterator[SessionOrigin]:
    """Poll the daemon's status while the block runs and note where the session started."""
    from controller import control

    origin = SessionOrigin(speed)

    async def poll() -> None:
        while True:
            with contextlib.suppress(MassagedError, OSError, TimeoutError):
                answer = await control.call(socket, "status", timeout=STATUS_TIMEOUT_S)
                received_at = time.monotonic()
                session = (answer.get("data") or {}).get("session")
                if session is not None and session.get("state") == "running":
                    origin.seen(received_at, float(session["elapsed"]))
            await asyncio.sleep(POLL_S)

    task = asyncio.create_task(poll())
    try:
        yield origin
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
