"""A session run through the daemon: the same live view and keys, over the control socket.

When a daemon owns the devices, ``massaged run`` asks it to start the session
and then shows it by polling ``status``; keys and Ctrl-C become control
requests (stop, emergency_stop, pause, resume, gentler, scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any, TextIO

from controller import control
from controller.live import (
    _CLEAR,
    _HIDE_CURSOR,
    _SHOW_CURSOR,
    KeyReader,
    plain_line,
    redraws,
    render_snapshot,
)
from controller.output import say
from controller.session import (
    SCALE_STEP,
    DeviceSnapshot,
    DeviceState,
    SessionSnapshot,
    SessionState,
)
from devices.capabilities import DeviceKind
from devices.errors import MassagedError

logger = logging.getLogger(__name__)

POLL_S = 0.25
"""Seconds between two status requests while a session runs."""


def snapshot_from_data(data: dict[str, Any]) -> SessionSnapshot:
    """The daemon's JSON session status as a SessionSnapshot (for the live view)."""
    return SessionSnapshot(
        program_id=data["program"],
        title=data["title"],
        state=SessionState(data["state"]),
        step_index=data["step"],
        step_label=data["step_label"],
        step_count=data["step_count"],
        elapsed=data["elapsed"],
        remaining=data["remaining"],
        duration=data["duration"],
        scale=data["scale"],
        gentler_presses=data["gentler_presses"],
        gentler_factor=data["gentler_factor"],
        pause_reasons=tuple(data["pause_reasons"]),
        devices={
            name: DeviceSnapshot(
                name=name,
                kind=DeviceKind(d["kind"]),
                state=DeviceState(d["state"]),
                output=dict(d["output"]),
                link=d["link"],
            )
            for name, d in data["devices"].items()
        },
    )


class RemoteSession:
    """Shows a daemon's session and turns keys and Ctrl-C into control requests."""

    def __init__(self, socket: Path, *, out: TextIO | None = None, live: bool = True) -> None:
        self.socket = socket
        self.out = out if out is not None else sys.stdout
        self.live = live
        self.redraw = live and redraws(self.out)
        """False: plain lines, no cursor codes (a pipe, a file, TERM=dumb)."""
        self._last_line = ""
        self.message = ""
        self._scale = 1.0
        self._paused = False
        self._interrupts = 0
        self._requests: set[asyncio.Task[None]] = set()
        self._last_step: int | None = None

    async def request(self, command: str, payload: dict[str, Any] | None = None) -> Any:
        """One control request; the answer's data, or MassagedError with the daemon's reason."""
        answer = await control.call(self.socket, command, payload)
        if answer.get("status") != "ok":
            raise MassagedError(str(answer.get("error")))
        return answer.get("data")

    def _send(self, command: str, payload: dict[str, Any] | None = None, note: str = "") -> None:
        async def send() -> None:
            try:
                await self.request(command, payload)
                self.message = note or command
            except MassagedError as err:
                self.message = f"{command} failed: {err}"

        task = asyncio.get_running_loop().create_task(send())
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    def on_key(self, key: str) -> None:
        """A key pressed in the live view."""
        if key in ("p", "P", " "):
            self._send("resume" if self._paused else "pause")
        elif key in ("g", "G"):
            self._send("gentler", note="gentler for the rest of the session")
        elif key in ("s", "S"):
            self._send("stop", note="stopping softly")
        elif key in ("e", "E"):
            self._send("emergency_stop", note="EMERGENCY STOP")
        elif key in ("+", "="):
            self._send("scale", {"scale": min(1.0, self._scale + SCALE_STEP)})
        elif key in ("-", "_"):
            self._send("scale", {"scale": max(SCALE_STEP, self._scale - SCALE_STEP)})

    def _interrupted(self) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            self.message = "stopping softly (Ctrl-C again: emergency stop)"
            self._send("stop", note=self.message)
        else:
            self._send("emergency_stop", note="EMERGENCY STOP")

    async def follow(self) -> dict[str, Any] | None:
        """Show the session until it ends; returns the daemon's last_session record."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self._interrupted)
        if self.redraw:
            self.out.write(_HIDE_CURSOR)
        try:
            with KeyReader(self.on_key) if self.live else contextlib.nullcontext():
                while True:
                    status = await self.request("status")
                    session = status.get("session")
                    if session is None:
                        return status.get("last_session")  # type: ignore[no-any-return]
                    self._show(session)
                    await asyncio.sleep(POLL_S)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            if self.redraw:
                with contextlib.suppress(BrokenPipeError):
                    self.out.write(_SHOW_CURSOR)
                    self.out.flush()
            for task in list(self._requests):
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await task

    def _show(self, session: dict[str, Any]) -> None:
        snap = snapshot_from_data(session)
        self._scale = snap.scale
        self._paused = snap.state == SessionState.PAUSED
        if self.redraw:
            width = shutil.get_terminal_size((80, 24)).columns
            text = render_snapshot(snap, width=width, message=self.message)
            say(_CLEAR + text, out=self.out)
        elif self.live:
            # A terminal without cursor codes (TERM=dumb): a line whenever something changes.
            key = plain_line(snap, self.message, clock=False)
            if key != self._last_line:
                self._last_line = key
                say(plain_line(snap, self.message), out=self.out)
        elif snap.step_index is not None and snap.step_index != self._last_step:
            self._last_step = snap.step_index
            say(
                f"step {snap.step_index + 1}/{snap.step_count}  {snap.step_label}  "
                f"({snap.remaining:.0f} s left)",
                out=self.out,
            )


async def run_remote(
    socket: Path,
    program: str,
    *,
    devices: list[str] | None = None,
    profile: str | None = None,
    scale: float = 1.0,
    live: bool = True,
    confirmed: Collection[str] = (),
) -> dict[str, Any] | None:
    """Start a session on the daemon and follow it to its end; returns how it ended.

    confirmed names what the person confirmed before it (run request fields such as
    "well_today", controller.readiness); the daemon refuses a session without them.
    """
    remote = RemoteSession(socket, live=live)
    payload: dict[str, Any] = {"program": program, "scale": scale}
    payload.update(dict.fromkeys(confirmed, True))
    if devices:
        payload["devices"] = devices
    if profile:
        payload["profile"] = profile
    started = await remote.request("run", payload)
    say(
        f"{started['program']}: {started['title']} on {', '.join(started['devices'])}",
        out=remote.out,
    )
    return await remote.follow()
