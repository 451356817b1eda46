"""Checks on a simulator recording shared by the process-level tests."""

from __future__ import annotations

from typing import Any

# Generous margins over each protocol's own time: the machines are shared and noisy.
LIMITS = {"belt": 1.5 + 0.3, "pillow": 1.0 + 0.3, "butterfly": 0.1 + 0.3}


def check_stopped_in_time(rows: list[dict[str, Any]], killed_at: float) -> None:
    """Every device was on, and stopped within its protocol's time after killed_at."""
    state: dict[tuple[str, str], Any] = {}
    was_on: set[str] = set()
    quiet_since: dict[str, float] = {}
    for row in rows:
        state[(row["device"], row["channel"])] = row["value"]
        device = row["device"]
        values = [v for (d, c), v in state.items() if d == device and isinstance(v, int)]
        # For the butterfly, the effective outputs are what the body feels.
        if row["kind"] == "butterfly":
            values = [v for (d, c), v in state.items() if d == device and c.startswith("output")]
        if any(values):
            was_on.add(device)
            quiet_since.pop(device, None)
        else:
            quiet_since.setdefault(device, row["t"])
    kinds = {row["device"]: row["kind"] for row in rows}
    assert was_on == set(kinds), f"not every device was driven: {was_on}"
    for device, kind in kinds.items():
        assert device in quiet_since, f"{device} never stopped"
        took = quiet_since[device] - killed_at
        assert took <= LIMITS[kind], f"{device} stopped {took:.3f} s after the kill"
        if kind == "belt":
            # The belt's watchdog, not anything else, stopped it: at least ~1 s of silence
            # after the last frame (sent at most 200 ms before the kill).
            assert took >= 0.7, f"{device} stopped only {took:.3f} s after the kill"
