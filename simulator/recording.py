"""The recording: what each simulated device physically did, as JSON Lines.

One line per change: ``{"t": 12.345, "device": "belt-1", "kind": "belt",
"channel": "motor3", "value": 128}``. ``t`` is seconds of simulated time from
the start of the recording (with ``--speed N`` it runs N times faster than
the wall clock). Channel names are listed in docs/simulator.md.

``t`` is the time the change happened, as the firmware stamps it. Several
writers share one recorder (every device's endpoint), and a stamp can be
earlier than the moment it is written: a serial frame is stamped when it
arrived and handled on the endpoint's next turn, and a watchdog stop or a
waveform's end is stamped at its due time when its tick runs late. After a
stall of the host (a frozen daemon, a loaded machine), "late" can be seconds,
and the time a device stopped is exactly what a safety check asks. So no stamp
is moved: lines are written in the order they come, and ``t`` can go back from
one line to the next (a late stamp after another device's later line; one
device's own lines keep their order in time). :func:`read_recording` gives the
rows in time order (rows of the same instant in the order they were written);
``Recorder.rows`` keeps the order they came in, as the file does, so that a
position in it stays a mark of "what was recorded after this".
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
        """Every row, also kept in memory, in the order recorded (as the file's lines)."""
        self.keep_in_memory = True

    def record(self, now: float, device: str, kind: str, channel: str, value: int | str) -> None:
        """Note that a device's channel took a new value at monotonic time now."""
        t = round((now - self.t0) * self.speed, 4)
        with self._lock:
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


def _time(row: dict[str, object]) -> float:
    return row["t"]  # type: ignore[return-value]


def in_time_order(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The rows sorted by t; rows of the same instant stay in the order they were written."""
    rows.sort(key=_time)
    return rows


def read_recording(path: Path) -> list[dict[str, object]]:
    """Load a recording file in time order (skipping a torn last line after a crash)."""
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s: skipped a torn line", path)
    return in_time_order(rows)
