"""A session run through the daemon: the same live view and keys, over the control socket.

When a daemon owns the devices, ``massaged run`` asks it to start the session
and then shows it by polling ``status``; keys and Ctrl-C become control
requests (stop, emergency_stop, pause, resume, gentler, scale). SIGTERM and
SIGHUP (the terminal closed) stop softly as Ctrl-C does: a session started
from a terminal ends with it, unless started with ``--detach``
(controller.stop_signals). ``massaged attach`` shows a running session again;
it is a viewer, so Ctrl-C, SIGTERM and SIGHUP there leave the session running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import Collection, Iterator
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
from controller.stop_signals import Received, describe, on_stop_signals
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

    def __init__(
        self,
        socket: Path,
        *,
        out: TextIO | None = None,
        live: bool = True,
        viewer: bool = False,
        handle_signals: bool = True,
    ) -> None:
        self.socket = socket
        self.viewer = viewer
        self.handle_signals = handle_signals
        """False: the owner handles the stop signals and passes them to on_signal."""
        """True (massaged attach): a stop signal leaves the session running, and this ends."""
        self.detached = asyncio.Event()
        self.received = Received()
        self._catching = False
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
        self.last: dict[str, Any] | None = None
        """How the followed session ended (the daemon's last_session), once it did."""

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

    @contextlib.contextmanager
    def catching_signals(self) -> Iterator[None]:
        """The stop signals handled here (unless the owner handles them, or already here)."""
        if not self.handle_signals or self._catching:
            yield
            return
        self._catching = True
        try:
            with on_stop_signals(self._interrupted) as self.received:
                yield
        finally:
            self._catching = False

    def on_signal(self, sig: signal.Signals) -> None:
        """A stop signal the owner caught (handle_signals=False): as if follow had."""
        self.received.signals.append(sig)
        self._interrupted(sig, len(self.received.signals))

    def _interrupted(self, sig: signal.Signals = signal.SIGINT, count: int = 0) -> None:
        if self.viewer:
            self.detached.set()
            return
        self._interrupts += 1
        if self._interrupts == 1:
            again = "Ctrl-C" if sig == signal.SIGINT else "again"
            self.message = f"{describe(sig)}: stopping softly ({again}: emergency stop)"
            self._send("stop", note=self.message)
        else:
            self._send("emergency_stop", note="EMERGENCY STOP")

    async def follow(self) -> dict[str, Any] | None:
        """Show the session until it ends; returns the daemon's last_session record.

        A viewer (attach) also ends on a stop signal, returning None with detached set.
        """
        if self.redraw:
            self.out.write(_HIDE_CURSOR)
        try:
            with (
                self.catching_signals(),
                KeyReader(self.on_key) if self.live else contextlib.nullcontext(),
            ):
                while True:
                    status = await self.request("status")
                    session = status.get("session")
                    if session is None:
                        return status.get("last_session")  # type: ignore[no-any-return]
                    self._show_safely(session)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            await self.detached.wait()
                    if self.detached.is_set():
                        return None
        finally:
            if self.redraw:
                with contextlib.suppress(BrokenPipeError):
                    self.out.write(_SHOW_CURSOR)
                    self.out.flush()
            for task in list(self._requests):
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await task

    def _show_safely(self, session: dict[str, Any]) -> None:
        """_show, and plain silence once the terminal is gone (SIGHUP: writes fail)."""
        try:
            self._show(session)
        except OSError as err:
            logger.info("the terminal is gone (%s): following the session silently", err)
            self.live = self.redraw = False
            self.out = open(os.devnull, "w")  # noqa: SIM115 - lives as long as this session

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
    detach: bool = False,
    remote: RemoteSession | None = None,
) -> dict[str, Any] | None:
    """Start a session on the daemon and follow it to its end; returns how it ended.

    confirmed names what the person confirmed before it (run request fields such as
    "well_today", controller.readiness); the daemon refuses a session without them.
    detach: return None once it started, leaving it to the daemon. remote: the
    RemoteSession to follow it with (its received signals say what stopped it).
    """
    if remote is None:
        remote = RemoteSession(socket, live=live)
    # From before the request on: a signal while it starts must stop it, not strand it
    # (unless detached: that session is the daemon's from the start).
    with remote.catching_signals() if not detach else contextlib.nullcontext():
        return await _start_and_follow(remote, program, devices, profile, scale, confirmed, detach)


async def _start_and_follow(
    remote: RemoteSession,
    program: str,
    devices: list[str] | None,
    profile: str | None,
    scale: float,
    confirmed: Collection[str],
    detach: bool,
) -> dict[str, Any] | None:
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
    if remote.received.signals and not remote.viewer:
        # The signal came while the daemon was starting it: its stop may have come too early.
        remote._send("stop", note="stopping softly")
    if detach:
        say(
            "detached: the session runs on in the daemon; massaged attach shows it, "
            "massaged stop stops it",
            out=remote.out,
        )
        return None
    return await remote.follow()


async def attach(socket: Path, *, live: bool = True) -> RemoteSession:
    """Follow the daemon's running session as a viewer; MassagedError when none runs."""
    remote = RemoteSession(socket, live=live, viewer=True)
    status = await remote.request("status")
    session = status.get("session") if isinstance(status, dict) else None
    if session is None:
        raise MassagedError(f"no session is running on the daemon at {socket}")
    say(
        f"attached to {session['program']}: {session['title']} "
        f"({session['state']}; Ctrl-C leaves it running, s stops it)",
        out=remote.out,
    )
    remote.last = await remote.follow()
    return remote
