"""The recording: what each simulated device physically did, as JSON Lines.

One line per change: ``{"t": 12.345, "device": "belt-1", "kind": "belt",
"channel": "motor3", "value": 128}``. ``t`` is seconds of simulated time from
the start of the recording (with ``--speed N`` it runs N times faster than
the wall clock). Channel names are listed in docs/simulator.md.

``t`` never goes back from one line to the next. Several writers share one
recorder (every device's endpoint), and a firmware stamps a change with the
time it happened, which can be a little before the moment it is written: a
serial frame is stamped when it arrived and handled on the endpoint's next
turn, a watchdog or auto-off fires at its due time when its tick runs late.
Another device may have written a later line in between, so the recorder
stamps each line under its lock with no earlier time than the line before.
The delay this adds is that of the event loop (milliseconds of wall time).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder for every line: json.dumps with separators builds a new one per call."""


class Recorder:
    """Writes one JSON line per physical output change; thread-safe, line-buffered."""

    def __init__(self, path: Path | None = None, *, t0: float = 0.0, speed: float = 1.0) -> None:
        self.path = path
        self.t0 = t0
        self.speed = speed
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8", buffering=1) if path else None
        self.rows: list[dict[str, object]] = []
        """Every row, also kept in memory (tests and the live display read it)."""
        self.keep_in_memory = True
        self._last_t = 0.0

    def record(self, now: float, device: str, kind: str, channel: str, value: int | str) -> None:
        """Note that a device's channel took a new value at monotonic time now."""
        with self._lock:
            # Under the lock, so that the order of the lines is the order of the times.
            t = max(self._last_t, round((now - self.t0) * self.speed, 4))
            self._last_t = t
            row: dict[str, object] = {
                "t": t,
                "device": device,
                "kind": kind,
                "channel": channel,
                "value": value,
            }
            if self.keep_in_memory:
                self.rows.append(row)
            if self._file is not None:
                self._file.write(_ENCODER.encode(row) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_recording(path: Path) -> list[dict[str, object]]:
    """Load a recording file (skipping a torn last line after a crash)."""
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s: skipped a torn line", path)
    return rows
