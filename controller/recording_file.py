"""Reading a simulator recording given on the command line, refusing what is not one.

simulator.recording.read_recording trusts its file (it skips a line torn by a
crash); a user may name any file, so this checks each line first and names the
first one that is not a recording's.
"""

from __future__ import annotations

import json
from pathlib import Path

from devices.errors import ConfigError

FIELDS = ("t", "device", "kind", "channel", "value")
"""The keys of every line of a recording (docs/simulator.md)."""


def load_recording(path: Path) -> list[dict[str, object]]:
    """Every row of the recording at path; ConfigError naming the first line that is not one."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a recording")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a simulator recording (not text)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    lines = text.splitlines()
    rows: list[dict[str, object]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem = _problem(line)
        if problem is None:
            rows.append(json.loads(line))
        elif number == len(lines) and rows and not text.endswith("\n"):
            break  # the last line torn by a crash: the rows before it stand
        else:
            raise ConfigError(f"{path}: not a simulator recording (line {number}: {problem})")
    if not rows:
        raise ConfigError(f"{path}: an empty recording: nothing to plot")
    # In time order: a change stamped late (a stop at its due time, after a stall) can
    # be written after another device's later line (simulator/recording.py).
    rows.sort(key=lambda row: float(row["t"]))  # type: ignore[arg-type]
    return rows


def _problem(line: str) -> str | None:
    """What makes a line not a recording's, or None."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return "not JSON"
    if not isinstance(row, dict):
        return "not a JSON object"
    missing = [key for key in FIELDS if key not in row]
    if missing:
        return f"no {', '.join(missing)}"
    t = row["t"]
    if not isinstance(t, int | float) or isinstance(t, bool):
        return "t is not a number"
    return None
