"""Ctrl-C, SIGTERM and SIGHUP: one soft stop for a session started from a terminal.

The rule (docs/getting-started.md, "When the terminal goes away"): a session
started from a terminal stops softly when that terminal goes away - SIGHUP
when it closes, SIGTERM from a service manager or ``kill``, SIGINT from
Ctrl-C - unless it was started detached (``massaged run --detach``). A second
signal is an emergency stop. The command then exits 128 + the first signal's
number (130, 143, 129), as a shell shows for a program a signal ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a session softly (the first) or at once (the second)."""

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Received:
    """The stop signals received so far, in order."""

    def __init__(self) -> None:
        self.signals: list[signal.Signals] = []

    @property
    def first(self) -> signal.Signals | None:
        """The first signal received, or None."""
        return self.signals[0] if self.signals else None

    def exit_code(self) -> int | None:
        """128 + the first signal's number, or None when none came."""
        return None if self.first is None else 128 + int(self.first)


def describe(sig: signal.Signals) -> str:
    """Ctrl-C, SIGTERM or SIGHUP: how a person knows the signal."""
    return SIGNAL_NAMES.get(sig, sig.name)


def _terminal_gone() -> None:
    """After a hang-up, stdout and stderr on the terminal fail (EIO): send them nowhere.

    The session still stops softly and its history is written; only its words are lost,
    as nobody is left to read them. Pipes and files are left alone.
    """
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            # Not isatty: on a hung-up terminal it fails and says False. A character
            # device is the terminal (or already /dev/null).
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[signal.Signals, int], None]) -> Iterator[Received]:
    """Call handler(signal, how many so far) on each stop signal, in the running loop.

    On leaving, the signals get their default handling back (Ctrl-C: KeyboardInterrupt).
    """
    loop = asyncio.get_running_loop()
    received = Received()
    installed: list[signal.Signals] = []

    def make(sig: signal.Signals) -> Callable[[], None]:
        def on_signal() -> None:
            received.signals.append(sig)
            if sig == signal.SIGHUP:
                _terminal_gone()
            handler(sig, len(received.signals))

        return on_signal

    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, make(sig))
        except (NotImplementedError, RuntimeError, ValueError):  # not here: Windows, a thread
            logger.debug("no handler for %s on this platform or thread", sig.name)
        else:
            installed.append(sig)
    try:
        yield received
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
