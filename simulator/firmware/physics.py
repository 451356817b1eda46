"""Physical models every simulated firmware shares: heat, cooling and the battery gauge."""

from __future__ import annotations

import math

AMBIENT_C = 25.0
PHYSICS_STEP = 0.05
"""Real seconds between physics ticks while a threshold may be crossed soon: a crossing is
caught at most this late (next_deadline never lies further ahead then)."""
SETTLED_STEP = 1.0
"""Real seconds between physics ticks at the most: of a settled device (Firmware.settled:
nothing on, so nothing drains, and near ambient temperature), and of one whose model
shows no threshold can be crossed before (Firmware._quiet_for). An idle simulator then
wakes once a second per device, not twenty times."""
SETTLED_C = 0.5
"""How close to ambient (°C) a quiet device's temperature counts as settled."""
MAX_SUBSTEP = 1.0
"""Simulated seconds per integration step, so thresholds are caught in time."""
MAX_SUBSTEPS = 100_000


def settle(temperature: float, power: float, cooling_rate: float, dt: float) -> float:
    """Temperature after dt under dT/dt = power - k (T - ambient), solved exactly."""
    # The exact solution is stable for any step length, unlike an Euler step.
    target = AMBIENT_C + power / cooling_rate
    return target + (temperature - target) * math.exp(-cooling_rate * dt)


def time_to_cross(
    temperature: float, power: float, cooling_rate: float, threshold: float, *, rising: bool
) -> float:
    """Simulated seconds before the temperature under settle() can reach threshold, going
    up (rising) or down: a lower bound, inf when it never can, 0 when it is there.

    dT/dt = power - k (T - ambient) only shrinks as T nears its target, so the distance
    at today's rate is never more than the time it takes.
    """
    rate = power - cooling_rate * (temperature - AMBIENT_C)
    gap = threshold - temperature
    if not rising:
        rate, gap = -rate, -gap
    if gap <= 0:
        return 0.0
    return gap / rate if rate > 0 else math.inf


def time_to_level(charge: float, drain: float, level: float) -> float:
    """Simulated seconds before a charge draining at drain (per second) is down to level."""
    if charge <= level:
        return 0.0
    return (charge - level) / drain if drain > 0 else math.inf


def reported_percent(charge: float) -> int:
    """A battery charge as a gauge reports it: whole percent, rounded up, 0..100."""
    return min(100, max(0, math.ceil(charge - 1e-9)))


def substeps(start: float, t: float, speed: float) -> list[float]:
    """The real times at which to integrate from start to t, each at most MAX_SUBSTEP of physics."""
    span = t - start
    if span <= 0:
        return []
    steps = min(MAX_SUBSTEPS, max(1, math.ceil(span * speed / MAX_SUBSTEP)))
    return [t if i == steps else start + span * i / steps for i in range(1, steps + 1)]
