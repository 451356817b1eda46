"""Exponential backoff between retries: the one rule every reconnect loop follows.

The MQTT client, the device supervisor and the session's reconnect all wait
``min_s``, then twice that, and so on up to ``max_s``; with jitter, each wait is
drawn from the upper part of that (``1 - jitter`` .. 1 of it), so that many
clients that lost the same broker or radio do not all come back at once. A
success resets it to ``min_s``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from devices.errors import ConfigError

__all__ = ["Backoff"]


class Backoff(Iterator[float]):
    """Delays before retries: min_s doubling up to max_s, with optional jitter; reset() restarts."""

    def __init__(
        self,
        min_s: float,
        max_s: float,
        *,
        jitter: float = 0.0,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        for name, value in (("min_s", min_s), ("max_s", max_s), ("factor", factor)):
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"backoff {name} must be a positive number, not {value}")
        if max_s < min_s:
            raise ConfigError(f"backoff max_s ({max_s:g} s) is shorter than min_s ({min_s:g} s)")
        if factor < 1:
            raise ConfigError(f"backoff factor must be at least 1, not {factor:g}")
        if not 0.0 <= jitter <= 1.0:
            raise ConfigError(f"backoff jitter must be 0..1, not {jitter}")
        self.min_s = min_s
        self.max_s = max_s
        self.jitter = jitter
        self.factor = factor
        self._rng = rng
        self.attempts = 0
        """Delays handed out since the start or the last reset()."""

    def base(self, attempt: int) -> float:
        """The delay before retry number attempt (0-based), without jitter."""
        # min() on the exponent first: a long outage never overflows a float.
        return min(self.max_s, self.min_s * self.factor ** min(attempt, 64))

    def __next__(self) -> float:
        """The next delay (seconds); it grows until reset()."""
        base = self.base(self.attempts)
        self.attempts += 1
        return base * (1.0 - self.jitter + self.jitter * self._rng())

    def reset(self) -> None:
        """A success: the next delay is min_s again."""
        self.attempts = 0
