"""Checks on what simulated devices physically did: caps, the EMS ramp, stopping in time.

Written against the recording format (docs/simulator.md), independently of
the safety layer's own code, so a bug there cannot hide itself here. Used by
the fault matrix (on a whole recording) and by ``bench/soak.py`` (fed row by
row, so a long run keeps no rows in memory).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEVICE_MAXIMA = {"belt": 255, "pillow": 3, "butterfly": 200}
"""The protocol maximum of each kind's intensity (VB1 level, SP1 speed, EB1 strength)."""
EMS_RAISE_PER_100MS = 5
"""EB1 daemon rule 2."""
RAMP_SLACK_S = 0.25
"""Timing slack of the ramp check: the recording stamps a B0's arrival, not its sending,
and on a shared, noisy machine two B0s sent 90 ms apart can arrive together."""
RAMP_WINDOW_S = 4.0
"""Pairs further apart than this cannot break the ramp below the strength maximum."""
PROTOCOL_STOP_S = {"belt": 1.0, "pillow": 1.0, "butterfly": 0.1}
"""How long each device may go on after its host is gone (VB1 watchdog, SP1 link rule,
EB1 waveform expiry)."""
STOP_MARGIN_S = 0.5
"""Margin over PROTOCOL_STOP_S for a shared, noisy machine."""


def cap_units(fraction: float, maximum: int) -> int:
    """floor(fraction × maximum): a cap is never rounded up."""
    return max(0, min(maximum, math.floor(fraction * maximum + 1e-9)))


def device_cap(kind: str, *fractions: float) -> int:
    """The cap in device units of the smallest of several fractions (profile, registry)."""
    return cap_units(min((1.0, *fractions)), DEVICE_MAXIMA[kind])


def _capped_channel(kind: str, channel: str) -> bool:
    if kind == "belt":
        return channel.startswith("motor")
    if kind == "pillow":
        return channel == "speed"
    return channel.startswith(("strength_", "output_"))


@dataclass
class _Channel:
    history: deque[tuple[float, int]] = field(default_factory=deque)


class OutputAudit:
    """Checks every recorded output against its device's cap and the EMS ramp.

    caps maps a device id to its cap in device units; kinds maps it to its
    kind. Rows carry session time (recording t = real seconds × speed); the
    ramp is a real-time rule, so t is divided by speed for it.
    """

    def __init__(
        self, caps: Mapping[str, int], kinds: Mapping[str, str], *, speed: float = 1.0
    ) -> None:
        self.caps = dict(caps)
        self.kinds = dict(kinds)
        self.speed = speed
        self.problems: list[str] = []
        self.rows = 0
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._user: set[str] = set()
        self._no_ramp: set[str] = set()

    # -- exemptions -----------------------------------------------------------------

    def user_setting(self, device: str, on: bool) -> None:
        """While on, a device's changes are the user's own (the EB1 wheel): no ramp applies."""
        if on:
            self._user.add(device)
        else:
            self._user.discard(device)
            self._forget(device)

    def ramp_unchecked(self, device: str, on: bool) -> None:
        """While on, the ramp is not checked (radio corruption: EB1 frames have no checksum)."""
        if on:
            self._no_ramp.add(device)
        else:
            self._no_ramp.discard(device)
            self._forget(device)

    def _forget(self, device: str) -> None:
        # A fresh baseline: never compare across a change that was not the daemon's.
        for (name, _), channel in self._channels.items():
            if name == device:
                channel.history.clear()

    # -- checking -------------------------------------------------------------------

    def feed(self, row: Mapping[str, Any], *, user: bool = False) -> None:
        """Check one recording row; user: the user set it on the device itself (no ramp)."""
        self.rows += 1
        device = str(row["device"])
        channel = str(row["channel"])
        value = row["value"]
        kind = self.kinds.get(device, str(row.get("kind", "")))
        if not isinstance(value, int) or not _capped_channel(kind, channel):
            return
        t = float(row["t"])
        cap = self.caps.get(device)
        if cap is None:
            self._problem(f"t={t:.3f} {device}: no cap known for this device")
            return
        if value > cap:
            self._problem(f"t={t:.3f} {device} {channel}={value} is past its cap {cap}")
        if kind == "butterfly" and channel.startswith("strength_"):
            self._ramp(device, channel, t / self.speed, value, user=user)

    def feed_all(
        self, rows: Iterable[Mapping[str, Any]], *, user: Collection[int] = ()
    ) -> list[str]:
        """Check every row (user: indices of rows the user set); the problems found so far."""
        for i, row in enumerate(rows):
            self.feed(row, user=i in user)
        return self.problems

    def _ramp(self, device: str, channel: str, t: float, value: int, *, user: bool) -> None:
        state = self._channels.setdefault((device, channel), _Channel())
        history = state.history
        if user or device in self._user or device in self._no_ramp:
            history.clear()
            history.append((t, value))
            return
        while history and t - history[0][0] > RAMP_WINDOW_S:
            history.popleft()
        for earlier_t, earlier in history:
            allowed = allowed_rise(t - earlier_t)
            if value - earlier > allowed:
                self._problem(
                    f"t={t:.3f} s (real) {device} {channel} rose {value - earlier} "
                    f"({earlier} -> {value}) in {t - earlier_t:.3f} s; at most {allowed}"
                )
                break
        history.append((t, value))

    def _problem(self, text: str) -> None:
        self.problems.append(text)


def allowed_rise(seconds: float) -> int:
    """The largest EMS rise the ramp allows over this many real seconds, with the slack."""
    windows = math.ceil(max(0.0, seconds + RAMP_SLACK_S) / 0.1 - 1e-9)
    return EMS_RAISE_PER_100MS * max(1, windows)


def is_on(kind: str, channels: Mapping[str, Any]) -> bool:
    """True when a device with these current channel values moves, heats or stimulates."""
    if kind == "butterfly":
        # A held strength without waveform data stimulates nothing (EB1).
        return any(v for c, v in channels.items() if c.startswith("output_"))
    return any(v for v in channels.values() if isinstance(v, int))


def quiet_from(rows: Iterable[Mapping[str, Any]], device: str, after: float) -> float | None:
    """Session time from which the device was off for good, if it was off at the end.

    Only rows of this device count. None when it was still on at the end of
    the rows. When it was already off at ``after`` and stayed so, ``after``.
    """
    state: dict[str, Any] = {}
    kind = ""
    quiet_since: float | None = None
    for row in rows:
        if row["device"] != device:
            continue
        kind = str(row["kind"])
        state[str(row["channel"])] = row["value"]
        t = float(row["t"])
        if is_on(kind, state):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = t
    if kind and is_on(kind, state):
        return None
    return after if quiet_since is None else max(after, quiet_since)


def values_after(
    rows: Iterable[Mapping[str, Any]], device: str, channel: str, after: float
) -> list[int]:
    """The values a channel took from session time after on, in order."""
    return [
        int(row["value"])
        for row in rows
        if row["device"] == device
        and row["channel"] == channel
        and float(row["t"]) >= after
        and isinstance(row["value"], int)
    ]


def on_since(rows: Iterable[Mapping[str, Any]], device: str, after: float) -> bool:
    """True when the device was on at some moment from session time after on."""
    state: dict[str, Any] = {}
    kind = ""
    for row in rows:
        if row["device"] != device:
            continue
        kind = str(row["kind"])
        state[str(row["channel"])] = row["value"]
        if float(row["t"]) >= after and is_on(kind, state):
            return True
    # No change since: on if it was on before.
    return bool(kind) and is_on(kind, state)
