"""Session time: the scaled clock, the safety layer's view of it, every duration the runner uses.

- ``ScaledClock.now()`` is the *plan position*: (monotonic − start − time
  paused) × speed. Cues, steps, the start/resume ramp, the fades and the
  empty-pillow delay run on it, as do the simulated firmware's physics
  (``Fleet(speed=N)``, ``Recorder(speed=N)``), so ``--speed N`` compresses a
  whole session in simulation.
- ``ScaledClock.wall()`` is the same without taking pauses out. The safety
  layer's session limit (30 minutes adult, 15 child) runs on it: pauses
  count, as controller.safety documents.
- Protocol timers stay in real time whatever the speed: the drivers'
  watchdogs, answer time-outs and retries, the butterfly's 100 ms B0 cadence,
  the lease, the loop's 20 Hz pass, the reconnect backoff, and the EMS ramp
  (at most 5 per 100 ms): the safety layer's ramp and heater bookkeeping
  count real microseconds (see :class:`SafetyClock`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.safety import SessionClock
from devices.errors import ConfigError


class ScaledClock:
    """Session time: real seconds × speed, with (now) or without (wall) pauses taken out."""

    def __init__(
        self, speed: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ConfigError(f"clock speed must be a positive number, not {speed}")
        self.speed = speed
        self._monotonic = monotonic
        self._start: float | None = None
        self._paused_total = 0.0
        self._paused_at: float | None = None

    def start(self) -> None:
        """Time 0 is now."""
        self._start = self._monotonic()
        self._paused_total = 0.0
        self._paused_at = None

    @property
    def started_at(self) -> float | None:
        """The monotonic time of the start (None before it)."""
        return self._start

    @property
    def paused(self) -> bool:
        """True while the plan position stands still."""
        return self._paused_at is not None

    def real(self) -> float:
        """Real seconds since the start (0 before it)."""
        if self._start is None:
            return 0.0
        return max(0.0, self._monotonic() - self._start)

    def wall(self) -> float:
        """Session seconds since the start, pauses included (the safety limit's clock)."""
        return self.real() * self.speed

    def now(self) -> float:
        """The plan position: session seconds since the start, pauses left out."""
        if self._start is None:
            return 0.0
        # One reading, and a pause ends the count where it began: never a step back.
        end = self._monotonic() if self._paused_at is None else self._paused_at
        return max(0.0, end - self._start - self._paused_total) * self.speed

    def pause(self) -> None:
        """Stop the plan position (no-op while paused)."""
        if self._paused_at is None:
            self._paused_at = self._monotonic()

    def resume(self) -> None:
        """Let the plan position run again from where it stood."""
        if self._paused_at is not None:
            self._paused_total += self._monotonic() - self._paused_at
            self._paused_at = None

    def real_seconds(self, session_seconds: float) -> float:
        """How many real seconds this many session seconds take."""
        return session_seconds / self.speed


class SafetyClock(SessionClock):
    """The safety layer's clock: the limit in session time, ramp microseconds in real time."""

    def __init__(self, limit_s: float, clock: ScaledClock) -> None:
        super().__init__(limit_s, now=clock.wall)
        self._scaled = clock
        self._real_start = clock.real()

    def elapsed_us(self) -> int:
        """Real microseconds since the start: the EMS ramp is a protocol rule, never scaled."""
        return round((self._scaled.real() - self._real_start) * 1_000_000)


@dataclass(frozen=True, slots=True)
class Timing:
    """Every duration the runner uses; (real) ones are wall-clock, (session) ones scale."""

    tick_s: float = 0.05
    """(real) Longest wait between two passes of the loop: about 20 Hz."""
    min_pass_s: float = 0.002
    """(real) Shortest wait between passes, however dense the cues."""
    cue_lead_s: float = 0.0015
    """(real) Wake this long before a cue and wait out the rest precisely (0: don't).

    asyncio's timers wake up to a millisecond late (epoll rounds its time-out up to
    whole milliseconds), which is most of the lateness of a cue on a quiet machine.
    """
    lease_s: float = 0.5
    """(real) How long each pass keeps a healthy device fed."""
    ems_tick_s: float = 0.1
    """(real) The butterfly's SafeDevice.apply runs at least this often (EMS ramp)."""
    heat_refresh_s: float = 1.0
    """(real) A heated device is re-applied this often, so the heater limit is enforced."""
    ramp_s: float = 2.0
    """(session) A fresh ramp from zero after the start, a resume or a reconnect."""
    fade_s: float = 1.5
    """(session) The soft fade-out at a stop and at the end (the method ends softly)."""
    empty_pause_s: float = 5.0
    """(session) How long the pillow may stay empty before the session pauses."""
    reconnect_first_s: float = 0.5
    """(real) The first reconnect delay; it doubles after every failed attempt."""
    reconnect_max_s: float = 8.0
    """(real) The longest reconnect delay."""
    fault_grace_s: float = 10.0
    """(real) How long every device may be lost at once before the session ends as a fault."""
    connect_timeout_s: float = 10.0
    """(real) Time-out of one connect or reconnect."""
    apply_timeout_s: float = 5.0
    """(real) Time-out of one apply: past it the link counts as lost."""
    stop_timeout_s: float = 3.0
    """(real) Time-out of one stop."""
    history_timeout_s: float = 5.0
    """(real) Time-out of one history write."""
