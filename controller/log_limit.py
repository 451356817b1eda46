"""A repeated warning is logged a few times, then counted: a flood of errors cannot flood the log.

Under attack (issue 11: 20,000 connections to the control socket) one failing
call site wrote 181,000 "Too many open files" lines, 84 MB in 40 s, and the
MQTT bridge forwarded 45,000 of them to the broker. :class:`RepeatLimit`, a
filter on a handler, lets the first ``burst`` records from one place in the
code through in each ``interval``, notes once that it holds the rest back, and
when that place logs again after the interval, says how many it held back.
It only counts WARNING and worse: debug and info lines (the wire's hex at
``-vv``) are never held back.

One filter per handler, each with its own counts, and it never changes a record
(other handlers see the same record object): its notes are records of their own,
handed to its handler only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

# typing is not imported at run time: every command that gets past parsing loads this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

BURST: Final = 10
"""Records from one call site let through in each interval."""
INTERVAL_S: Final = 60.0
"""Seconds of one counting window."""
MAX_SITES: Final = 512
"""Call sites counted at once; the oldest windows are forgotten beyond this."""

_Site = tuple[str, int, str, int]


class _Window:
    __slots__ = ("began", "held", "passed")

    def __init__(self, began: float) -> None:
        self.began = began
        self.passed = 0
        self.held = 0


class RepeatLimit(logging.Filter):
    """Holds back the records of one call site past ``burst`` per ``interval``, and says so."""

    def __init__(
        self,
        handler: logging.Handler,
        *,
        burst: int = BURST,
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._windows: dict[_Site, _Window] = {}
        # Records come from any thread (asyncio.to_thread, the MQTT client's).
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """True to let the record through."""
        if record.levelno < logging.WARNING or getattr(record, "log_limit_note", False):
            return True
        site = (record.name, record.levelno, record.pathname, record.lineno)
        now = self.clock()
        note: str | None = None
        with self._lock:
            window = self._windows.get(site)
            if window is None or now - window.began >= self.interval:
                if window is not None and window.held:
                    note = (
                        f"{window.held} more like the next one held back "
                        f"in the last {now - window.began:.0f} s"
                    )
                # Last in order, so that the oldest windows are the first forgotten.
                self._windows.pop(site, None)
                window = self._windows[site] = _Window(now)
                self._forget_old(now)
            if window.passed < self.burst:
                window.passed += 1
                passed = True
            else:
                window.held += 1
                passed = False
                if window.held == 1:
                    note = (
                        f"repeated {self.burst} times: the next ones like {_text(record)!r} "
                        f"are held back for {self.interval - (now - window.began):.0f} s"
                    )
        if note is not None:
            self._note(record, note)
        return passed

    def _forget_old(self, now: float) -> None:
        if len(self._windows) <= MAX_SITES:
            return
        for site in [s for s, w in self._windows.items() if now - w.began >= self.interval]:
            del self._windows[site]
        while len(self._windows) > MAX_SITES:
            del self._windows[next(iter(self._windows))]

    def _note(self, like: logging.LogRecord, text: str) -> None:
        """A note of this filter's own, to its handler only, beside the record it is about."""
        note = logging.LogRecord(
            like.name, like.levelno, like.pathname, like.lineno, "%s", (text,), None
        )
        note.log_limit_note = True
        self.handler.handle(note)


def _text(record: logging.LogRecord, limit: int = 120) -> str:
    """The start of a record's message, for a note about it."""
    try:
        text = record.getMessage()
    except Exception:  # a bad format string: the template says enough
        text = str(record.msg)
    return text if len(text) <= limit else text[:limit] + "..."


def limit_repeats(
    handler: logging.Handler, *, burst: int = BURST, interval: float = INTERVAL_S
) -> RepeatLimit:
    """Put a RepeatLimit on a handler; returns it."""
    limit = RepeatLimit(handler, burst=burst, interval=interval)
    handler.addFilter(limit)
    return limit
