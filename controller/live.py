"""The live terminal view of a running session, its keys, and the plain line-per-step output.

Keys (only when stdin is a terminal; it is put in cbreak mode and restored):
``p`` pause/resume, ``g`` gentler, ``s`` stop (soft fade), ``e`` emergency
stop, ``+``/``-`` intensity. Ctrl-C stops softly; a second Ctrl-C is an
emergency stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from controller.output import format_time, say
from controller.session.states import SCALE_STEP
from devices.outputs import channel_maximum

if TYPE_CHECKING:
    # Annotations only: a live view of a daemon's session (run, attach, demo) has no
    # runner in its process, and the runner's modules are a fifth of such a process's start.
    from controller.session import RunnerEvent, SessionRunner, SessionSnapshot

logger = logging.getLogger(__name__)

REFRESH_S = 0.25
"""Seconds between two redraws of the live view."""
KEYS_HELP = "keys: p pause/resume  g gentler  s stop  e EMERGENCY STOP  +/- intensity  Ctrl-C stop"
_CLEAR = "\x1b[H\x1b[J"
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"

Say = Callable[[str], None]


def redraws(out: TextIO) -> bool:
    """True when out is a terminal that takes cursor codes: not a pipe, a file or TERM=dumb.

    Otherwise the live view writes plain lines (LiveDisplay, controller.remote).
    """
    if os.environ.get("TERM", "dumb") in ("", "dumb"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False


def bar(value: int, maximum: int, width: int) -> str:
    """A text bar of width characters, filled in proportion to value / maximum."""
    filled = 0 if maximum <= 0 else round(width * min(max(value, 0), maximum) / maximum)
    return "█" * filled + "·" * (width - filled)


def render_snapshot(snap: SessionSnapshot, *, width: int = 80, message: str = "") -> str:
    """The live view of one snapshot, as lines of text."""
    lines = [f"{snap.program_id}: {snap.title}"]
    step = (
        f"step {snap.step_index + 1}/{snap.step_count}  {snap.step_label}"
        if snap.step_index is not None
        else "between steps"
    )
    lines.append(step)
    state = snap.state.value
    if snap.pause_reasons:
        state += f" ({', '.join(snap.pause_reasons)})"
    lines.append(
        f"{format_time(snap.elapsed)} / {format_time(snap.duration)}   "
        f"left {format_time(snap.remaining)}   {state}   "
        f"intensity {snap.scale:.0%}   gentler ×{snap.gentler_factor:.2f}"
    )
    bar_width = max(10, min(40, width - 30))
    for device in snap.devices.values():
        lines.append("")
        lines.append(
            f"{device.name} ({device.kind.value})  {device.state.value}  link {device.link}"
        )
        for channel, value in device.output.items():
            maximum = channel_maximum(channel)
            if isinstance(value, str) or maximum is None:
                lines.append(f"  {channel:<12} {value}")
            else:
                lines.append(f"  {channel:<12} {bar(value, maximum, bar_width)} {value:>3}")
    lines.append("")
    if message:
        lines.append(message)
    lines.append(KEYS_HELP)
    return "\n".join(lines)


def handle_key(runner: SessionRunner, key: str) -> str | None:
    """Act on one key; returns what was done, or None for a key that means nothing."""
    if key in ("p", "P", " "):
        was_paused = runner.paused
        runner.toggle_pause()
        return "resuming" if was_paused else "pausing"
    if key in ("g", "G"):
        factor = runner.gentler()
        return f"gentler: ×{factor:.2f} for the rest of the session"
    if key in ("s", "S"):
        runner.stop()
        return "stopping softly"
    if key in ("e", "E"):
        runner.request_emergency_stop()
        return "EMERGENCY STOP"
    if key in ("+", "="):
        return f"intensity {runner.set_scale(runner.scale + SCALE_STEP):.0%}"
    if key in ("-", "_"):
        return f"intensity {runner.set_scale(runner.scale - SCALE_STEP):.0%}"
    return None


class KeyReader:
    """Reads single keys from a terminal stdin (cbreak mode, restored on exit) on the loop."""

    def __init__(self, on_key: Callable[[str], None], *, stdin: TextIO | None = None) -> None:
        self._on_key = on_key
        self._stdin = stdin if stdin is not None else sys.stdin
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def active(self) -> bool:
        """True while keys are read."""
        return self._fd is not None

    def __enter__(self) -> KeyReader:
        try:
            fd = self._stdin.fileno()
            interactive = self._stdin.isatty()
        except (AttributeError, OSError, ValueError):
            return self
        if not interactive:
            return self
        import termios
        import tty

        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(fd)
        if self._saved is not None:
            import termios

            # A terminal that hung up (SIGHUP) has no settings left to restore.
            with contextlib.suppress(termios.error):
                termios.tcsetattr(fd, termios.TCSADRAIN, self._saved)

    def _readable(self) -> None:
        import os

        if self._fd is None:
            return
        try:
            data = os.read(self._fd, 64)
        except OSError:
            data = b""
        if not data:
            # The terminal hung up: it stays readable with nothing to read; stop watching it.
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            return
        for key in data.decode(errors="ignore"):
            try:
                self._on_key(key)
            except Exception:  # a key must never take the session down
                logger.exception("key %r failed", key)


class LiveDisplay:
    """Redraws the session a few times a second until it ends."""

    def __init__(
        self, runner: SessionRunner, *, out: TextIO | None = None, refresh_s: float = REFRESH_S
    ) -> None:
        self.runner = runner
        self.out = out if out is not None else sys.stdout
        self.refresh_s = refresh_s
        self.message = ""
        self.redraw = redraws(self.out)
        """False: no cursor codes, a plain line whenever the step, state or message changes."""
        self._last_line = ""

    def on_key(self, key: str) -> None:
        """Act on a key and show what was done."""
        message = handle_key(self.runner, key)
        if message is not None:
            self.message = message
            self.draw()

    def note(self, text: str) -> None:
        """Show a message line under the devices."""
        self.message = text

    def draw(self) -> None:
        """Draw the current snapshot over the previous one (a plain line without cursor codes)."""
        snap = self.runner.snapshot()
        if not self.redraw:
            # Keyed without the clock: a line per change, not one per refresh.
            key = plain_line(snap, self.message, clock=False)
            if key != self._last_line:
                self._last_line = key
                say(plain_line(snap, self.message), out=self.out)
            return
        width = shutil.get_terminal_size((80, 24)).columns
        text = render_snapshot(snap, width=width, message=self.message)
        say(_CLEAR + text, out=self.out)

    async def run(self) -> None:
        """Redraw until the runner is done; the cursor is shown again at the end."""
        if self.redraw:
            self.out.write(_HIDE_CURSOR)
        try:
            while not self.runner.done.is_set():
                self.draw()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.refresh_s):
                        await self.runner.done.wait()
            self.draw()
        finally:
            if self.redraw:
                with contextlib.suppress(BrokenPipeError):
                    self.out.write(_SHOW_CURSOR)
                    self.out.flush()


def plain_line(snap: SessionSnapshot, message: str = "", *, clock: bool = True) -> str:
    """One line of the live view for a terminal without cursor codes: time, step, state."""
    step = (
        f"step {snap.step_index + 1}/{snap.step_count}  {snap.step_label}"
        if snap.step_index is not None
        else "between steps"
    )
    state = snap.state.value
    if snap.pause_reasons:
        state += f" ({', '.join(snap.pause_reasons)})"
    line = f"{format_time(snap.elapsed)}  {step}  {state}" if clock else f"{step}  {state}"
    return f"{line}  {message}" if message else line


_EVENT_TEXT: dict[str, str] = {
    "pause": "paused ({reason})",
    "resume": "resumed, ramping up from zero",
    "gentler": "gentler: ×{factor:.2f} for the rest of the session",
    "scale": "intensity {scale:.0%}",
    "stop": "stopping softly",
    "emergency_stop": "EMERGENCY STOP: every output at zero",
    "stop_button": "stopped by its own button: it stays off",
    "auto_off": "auto-off: switched on again",
    "pillow_empty": "nobody rests on the pillow",
    "pillow_occupied": "the pillow is in use again",
    "ems_wheel": "wheel turned to A {a}, B {b}: never more than that",
    "device_fault": "fault: {reason}; never more than the lower value from now on",
    "link_lost": "link lost ({reason}): reconnecting",
    "reconnected": "reconnected, ramping up from zero",
    "overheated": "overheated",
    "low_battery": "battery low",
    "watchdog_tripped": "its watchdog stopped it",
    "dropped": "left out: {reason}",
    "safety": "safety: {detail}",
}


class LinePrinter:
    """One line per step change and per notable event (for --no-display or a pipe)."""

    def __init__(self, say: Say | None = None) -> None:
        self.say: Say = say if say is not None else _print

    def __call__(self, event: RunnerEvent) -> None:
        """A runner listener."""
        clock = format_time(event.t)
        if event.kind == "step":
            d = event.detail
            self.say(f"{clock}  step {d['index'] + 1}/{d['count']}  {d['label']}")
            return
        template = _EVENT_TEXT.get(event.kind)
        if template is None:
            return
        try:
            text = template.format(**event.detail)
        except (KeyError, ValueError, IndexError):
            text = event.kind
        who = f"{event.device}: " if event.device else ""
        self.say(f"{clock}  {who}{text}")


def _print(text: str) -> None:
    # A closed pipe (| head) must neither stop the session nor log a traceback per line.
    say(text)
