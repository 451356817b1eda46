"""Checks on what simulated devices physically did: caps, the EMS ramp, stopping in time.

Written against the recording format (docs/simulator.md), independently of
the safety layer's own code, so a bug there cannot hide itself here. Used by
the fault matrix (on a whole recording) and by ``bench/soak.py`` (fed row by
row, so a long run keeps no rows in memory).

Besides the standing rules (caps, the EMS ramp) the audit is told of two
moments and judges what follows them:

- a service gap (the host stalled past its 0.5 s lease: a blocked loop, a
  stopped process): every device that was on must be back at zero within
  GAP_FRESH_S (a fresh start), never go on at its held level, and an EB1 comes
  back through the ramp from zero (5 per 100 ms) counted from that zero;
- a lowered cap: once CAP_GRACE_S has passed, no output above the new cap,
  neither a new one nor one held from before.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
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
LEASE_S = 0.5
"""The host's lease (Timing.lease_s): a stall longer than this is a service gap."""
GAP_FRESH_S = 1.0 + STOP_MARGIN_S
"""Real seconds after a service gap by which a device that was on is at zero again: the
host notices the gap at its next pass and stops every device before it starts afresh."""
CAP_GRACE_S = 0.5
"""Real seconds after a lowered cap by which no output is above it (the host clamps at
its next pass; the EB1's own soft limit follows its strength down)."""


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


@dataclass
class _Gap:
    """One device after a service gap, until it has come back through zero."""

    end: float
    """Session time the gap ended (the host ran again)."""
    deadline: float
    """Session time by which a device on at the gap must have been at zero."""
    zero_at: float | None
    """Session time of its latest zero since the gap; None while it is on at a held level."""


@dataclass
class _LoweredCap:
    """A cap lowered mid-session: the old one holds until the grace has passed."""

    old: int
    new: int
    effective: float
    """Session time from which the new cap holds (held outputs included)."""
    checked: bool = False


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
        self._state: dict[str, dict[str, Any]] = {}
        self._gaps: dict[str, _Gap] = {}
        self._lowered: dict[str, _LoweredCap] = {}
        self._latest = 0.0
        self.gaps = 0
        """How many service gaps the audit was told of."""

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

    # -- moments to judge what follows ----------------------------------------------------

    def gap(self, end: float, devices: Iterable[str] | None = None) -> None:
        """The host's service stopped for longer than its lease and resumed at session time end.

        Call it before feeding any row that arrived after the host ran again: rows
        stamped earlier may still come (a firmware catching up on its own timers).
        """
        self.gaps += 1
        for lowered in self._lowered.values():
            if not lowered.checked:
                # A stalled host could not act on a lowered cap: its grace counts from now.
                lowered.effective = max(lowered.effective, end + CAP_GRACE_S * self.speed)
        for device in self.kinds if devices is None else devices:
            on = is_on(self.kinds[device], self._state.get(device, {}))
            self._gaps[device] = _Gap(
                end=end,
                deadline=end + GAP_FRESH_S * self.speed,
                zero_at=None if on else end,
            )

    def lower_cap(self, device: str, cap: int, at: float) -> None:
        """A cap of this device lowered to cap (device units) at session time at."""
        old = self.caps.get(device, cap)
        if cap >= old:
            return
        self.caps[device] = cap
        self._lowered[device] = _LoweredCap(old, cap, at + CAP_GRACE_S * self.speed)

    def set_cap(self, device: str, cap: int) -> None:
        """A device's cap between its sessions (a raised cap counts from the next one)."""
        self.caps[device] = cap
        self._lowered.pop(device, None)

    def check_due(self, now: float) -> None:
        """Judge the deadlines that have passed by session time now (nothing may be held)."""
        now = max(now, self._latest)
        for device, gap in list(self._gaps.items()):
            if gap.zero_at is None and now > gap.deadline:
                del self._gaps[device]
                self._problem(
                    f"t={now:.3f} {device} still on {GAP_FRESH_S:g} s (real) after a service "
                    f"gap that ended at t={gap.end:.3f}: it went on at its held level, "
                    f"never back through zero: {self._on_channels(device)}"
                )
        for device, lowered in self._lowered.items():
            if lowered.checked or now < lowered.effective:
                continue
            lowered.checked = True
            kind = self.kinds.get(device, "")
            for channel, value in self._state.get(device, {}).items():
                capped = isinstance(value, int) and _capped_channel(kind, channel)
                if capped and value > lowered.new:
                    self._problem(
                        f"t={now:.3f} {device} {channel} held at {value}, "
                        f"{CAP_GRACE_S:g} s (real) after its cap was lowered to {lowered.new}"
                    )

    def _on_channels(self, device: str) -> dict[str, Any]:
        return {c: v for c, v in self._state.get(device, {}).items() if isinstance(v, int) and v}

    # -- checking -------------------------------------------------------------------

    def feed(self, row: Mapping[str, Any], *, user: bool = False) -> None:
        """Check one recording row; user: the user set it on the device itself (no ramp)."""
        self.rows += 1
        device = str(row["device"])
        channel = str(row["channel"])
        value = row["value"]
        kind = self.kinds.get(device, str(row.get("kind", "")))
        t = float(row["t"])
        self._state.setdefault(device, {})[channel] = value
        self.check_due(t)
        self._latest = max(self._latest, t)
        gap = self._gaps.get(device)
        if gap is not None:
            self._after_gap(gap, device, kind, t, user=user)
        if not isinstance(value, int) or not _capped_channel(kind, channel):
            return
        cap = self.caps.get(device)
        if cap is None:
            self._problem(f"t={t:.3f} {device}: no cap known for this device")
            return
        lowered = self._lowered.get(device)
        if lowered is not None and t < lowered.effective:
            cap = max(cap, lowered.old)
        if value > cap:
            self._problem(f"t={t:.3f} {device} {channel}={value} is past its cap {cap}")
        if kind == "butterfly" and channel.startswith("strength_"):
            self._ramp(device, channel, t / self.speed, value, user=user)

    def _after_gap(self, gap: _Gap, device: str, kind: str, t: float, *, user: bool) -> None:
        """A row of a device after a service gap: back only through zero, the EMS by its ramp."""
        state = self._state[device]
        if user or device in self._user:
            # The user's own setting on the device (the EMS wheel) is their word.
            del self._gaps[device]
            return
        if not is_on(kind, state):
            if gap.zero_at is None:
                gap.zero_at = max(t, gap.end)
            return
        if gap.zero_at is None:
            # On since before the gap: a frame that was on its way as the host stopped may
            # still land (in-process, the firmware reads it once the loop runs again), but
            # the host must bring the device to zero by the deadline (check_due).
            return
        if kind != "butterfly":
            # Started afresh from zero: the session's own rules take over.
            del self._gaps[device]
            return
        since = (t - gap.zero_at) / self.speed
        if since > RAMP_WINDOW_S:
            del self._gaps[device]
            return
        if device in self._no_ramp:
            return
        for name in ("a", "b"):
            strength = state.get(f"strength_{name}", 0)
            if state.get(f"output_{name}") and isinstance(strength, int):
                allowed = allowed_rise(since)
                if strength > allowed and t > gap.deadline:
                    del self._gaps[device]
                    self._problem(
                        f"t={t:.3f} {device} channel {name} at strength {strength} "
                        f"{since:.3f} s (real) after its zero following a service gap; "
                        f"a fresh ramp from zero allows {allowed}"
                    )
                    return
                if strength > allowed:
                    # Not a fresh ramp: held from before the gap. Zero must still come.
                    gap.zero_at = None
                    return

    def feed_all(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        user: Collection[int] = (),
        marks: Mapping[int, Sequence[Callable[[OutputAudit], None]]] | None = None,
        now: float | None = None,
    ) -> list[str]:
        """Check every row; the problems found so far.

        user: indices of rows the user set; marks: calls made on the audit before the
        row of that index (a gap, a lowered cap); now: the session time the rows end
        at, by which held outputs are judged too.
        """
        marks = marks or {}
        count = 0
        for i, row in enumerate(rows):
            for mark in marks.get(i, ()):
                mark(self)
            self.feed(row, user=i in user)
            count = i + 1
        for i in sorted(k for k in marks if k >= count):
            for mark in marks[i]:
                mark(self)
        if now is not None:
            self.check_due(now)
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
