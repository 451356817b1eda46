"""The one safety layer between the session runner and the drivers; nothing bypasses it.

Every output a program asks for goes through :class:`SafeDevice.apply`, which
turns the request into what may be sent:

1. **scale**: the user's overall intensity (0..1) times the "gentler" factor
   (each press multiplies it by :data:`GENTLER_STEP`; it never goes back up in
   a session), by the rules of :func:`scale_output`;
2. **cap**: a ceiling per device kind, the smaller of the profile's cap and
   the device's registry entry, as a fraction of the kind's unit maximum
   (``devices.kinds.KINDS``: belt level, pillow speed, butterfly strength). A cap is a ceiling,
   never a multiplier: a program asking for more gets the cap, never more.
   A cap lowered while a session runs takes effect at once
   (:meth:`SafeDevice.tighten`); a raised one waits for the next session;
3. **ranges**: every value clamped to what the device accepts.

Steps 1 to 3 are the pure function :func:`clamp`. A device that keeps its own copy
of the limits (the EB1's soft limits and ramp) gets it from :func:`write_device_limits`
at every session start and on every lowering. On top of the clamp, with state:

4. **EMS ramp** (EB1 daemon rule 2): a strength rises by at most
   ``ems_max_raise_per_100ms`` (5, a profile may lower it) per 100 ms elapsed,
   and falls at any speed. The raise credit accrues in integer microseconds
   (see :func:`ramp_step`), so a strength never rises by more than
   ``ceil(max_raise × elapsed / 100 ms)`` between any two sends, whatever the
   call rate. The runner must call :meth:`SafeDevice.apply` or
   :meth:`SafeDevice.tick` at least every 100 ms while :attr:`SafeDevice.held_back`
   is true, or the strength stays where the ramp left it;
5. **EMS wheel** (EB1 rule 4): a strength set on the unit's own wheel becomes
   that channel's ceiling for the rest of the session;
6. **heater on-time**: at most 20 minutes for an adult and 10 for a child in
   one session (the method gives no figure; half the session limit keeps the
   skin from long heat while leaving warm-up time). Past it the heat is
   switched off and refused; on-time is counted from the calls, so it can
   overrun by at most the gap between two calls;
7. **empty pillow** (SP1 rule 6): no kneading while nobody rests on the pillow
   (the driver refuses too);
8. **vibration bursts** (the method: vibration up to 15 s): no belt motor runs
   longer than :data:`BURST_MAX_S` without a rest at zero of at least
   :data:`BURST_REST_S`, whatever the program asks (see :func:`burst_step`; it
   keeps a margin of :data:`BURST_GUARD_S` on both for the link's latency);
   the runner calls apply or tick at :meth:`SafeDevice.next_burst_change`;
9. **a child's rules**: a child audience (the profile's or the program's) gets
   :data:`CHILD_CAPS` on top of the profile's caps, so no EMS at all;
10. **time limit**: after the audience's session limit (30 minutes adult, 15
   child: the method), after an emergency stop, or after the user pressed a
   device's own stop button (VB1 rule 6), every request is refused: the
   device is stopped, a zero output is returned, and a :class:`Violation` is
   recorded rather than raised, so a runner that forgot to end the session
   still leaves every device off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The limits live with the profile's words (no models): `profiles show` reads them too.
from controller.profile_terms import HEATER_LIMITS_S, SESSION_LIMITS_S
from controller.profiles import (
    EMS_MAX_RAISE_PER_100MS,
    Audience,
    KindCaps,
    Profile,
    describe_validation_error,
)
from devices.capabilities import Capabilities, DeviceKind
from devices.drivers.base import Device
from devices.errors import ConfigError, LinkError, SafetyError
from devices.events import (
    DeviceEvent,
    DeviceFault,
    EmsWheelChanged,
    PillowOccupancy,
    ServiceGap,
    StopButtonPressed,
)
from devices.kinds import kind_spec
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, Output, PillowOutput
from devices.protocols import eb1
from programs.bursts import MAX_BURST_S, MIN_REST_S

logger = logging.getLogger(__name__)


CHILD_CAPS = KindCaps(belt=0.6, pillow=2 / 3, butterfly=0.0)
"""A child's ceilings, whatever the program: massaged's product decision, not the method's.

The method asks for shorter sessions for children, not for a figure. The belt's 0.6
is the ceiling a children's program may ask for (programs.model.CHILD_MAX_INTENSITY),
the pillow's speed 2 of 3 is what such a step renders to, and EMS is not used on a
child at all (0: the butterfly is left out of a child's session)."""

BURST_MAX_S = MAX_BURST_S
"""The method: vibration up to 15 s; then a rest at zero (programs.bursts, the one figure)."""
BURST_REST_S = MIN_REST_S
"""The shortest rest at zero between two bursts, 3 s (massaged's choice, explained in
programs.bursts); a shorter zero does not end a burst."""
BURST_GUARD_S = 0.25
"""The safety layer's margin (session seconds): it stops a burst this much sooner and
makes the rest it imposes this much longer, so that what the motor physically does,
after the link's latency, still keeps both figures."""
BURST_CUT_S = BURST_MAX_S - BURST_GUARD_S
"""When the safety layer stops a burst."""
BURST_IMPOSED_REST_S = BURST_REST_S + BURST_GUARD_S
"""How long the rest it then imposes lasts."""

GENTLER_STEP = 0.7
"""Each "gentler" press multiplies every intensity by this."""


RAMP_WINDOW_US = 100_000
"""The EMS ramp's window: max_raise per 100 ms, in microseconds."""

EMS_FREQUENCY_RANGE = (eb1.FREQ_MIN, eb1.FREQ_MAX)
EMS_INTENSITY_RANGE = (0, eb1.INTENSITY_MAX)

_DEVICE_CAP_KEYS = frozenset(k.value for k in DeviceKind) | {"ems_max_raise_per_100ms"}

_Heated = TypeVar("_Heated", BeltOutput, PillowOutput)


class SafetyLimits(BaseModel):
    """Every limit of one session on one device set: caps, scale, EMS ramp, time limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audience: Audience = Audience.ADULT
    caps: KindCaps = KindCaps()
    scale: float = Field(default=1.0, ge=0.0, le=1.0)
    """The user's overall intensity; it can lower, never raise."""
    ems_max_raise_per_100ms: int = Field(default=EMS_MAX_RAISE_PER_100MS, ge=1, le=5)
    session_limit_s: float = Field(default=0.0, ge=0.0)
    """0 means the audience's limit; never more than it."""
    heater_limit_s: float = Field(default=0.0, ge=0.0)
    """0 means the audience's limit; never more than it."""

    @model_validator(mode="before")
    @classmethod
    def _audience_limits(cls, data: Any) -> Any:
        # The audience decides the defaults and the ceilings of both time limits.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        audience = Audience(data.get("audience", Audience.ADULT))
        tables = (("session_limit_s", SESSION_LIMITS_S), ("heater_limit_s", HEATER_LIMITS_S))
        for key, table in tables:
            ceiling = table[audience]
            value = data.get(key) or ceiling
            if isinstance(value, int | float) and value > ceiling:
                raise ValueError(f"{key} {value} exceeds the {audience.value} limit {ceiling}")
            data[key] = value
        if audience == Audience.CHILD:
            # A child's ceilings, whatever the profile says: the lower of the two wins.
            caps = data.get("caps", KindCaps())
            if isinstance(caps, dict):
                caps = KindCaps.model_validate(caps)
            if isinstance(caps, KindCaps):
                data["caps"] = KindCaps(
                    **{k.value: min(caps.for_kind(k), CHILD_CAPS.for_kind(k)) for k in DeviceKind}
                )
        return data

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        *,
        device_caps: Mapping[str, float] | None = None,
        scale: float = 1.0,
    ) -> SafetyLimits:
        """Limits for a profile, lowered by a device registry entry's caps (the minimum wins).

        device_caps maps a kind name ("belt", "pillow", "butterfly") to a fraction
        and may hold "ems_max_raise_per_100ms"; ConfigError names a bad key or value.
        """
        caps = profile.caps.model_dump()
        raise_limit = profile.ems_max_raise_per_100ms
        for key, value in (device_caps or {}).items():
            if key not in _DEVICE_CAP_KEYS:
                known = ", ".join(sorted(_DEVICE_CAP_KEYS))
                raise ConfigError(f"unknown device cap {key!r}; known: {known}")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"device cap {key!r} must be a number, not {value!r}")
            if key == "ems_max_raise_per_100ms":
                raise_limit = min(raise_limit, int(value))
            else:
                caps[key] = min(caps[key], float(value))
        try:
            return cls.model_validate(
                {
                    "audience": profile.audience,
                    "caps": caps,
                    "scale": scale,
                    "ems_max_raise_per_100ms": raise_limit,
                }
            )
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, "safety limits")) from err

    def stricter(self, other: SafetyLimits) -> SafetyLimits:
        """The stricter of two limits, field by field (a child audience wins)."""
        audience = (
            Audience.CHILD if Audience.CHILD in (self.audience, other.audience) else self.audience
        )
        caps = {k.value: min(self.cap(k), other.cap(k)) for k in DeviceKind}
        return SafetyLimits(
            audience=audience,
            caps=KindCaps(**caps),
            scale=min(self.scale, other.scale),
            ems_max_raise_per_100ms=min(
                self.ems_max_raise_per_100ms, other.ems_max_raise_per_100ms
            ),
            session_limit_s=min(
                self.session_limit_s, other.session_limit_s, SESSION_LIMITS_S[audience]
            ),
            heater_limit_s=min(
                self.heater_limit_s, other.heater_limit_s, HEATER_LIMITS_S[audience]
            ),
        )

    def cap(self, kind: DeviceKind) -> float:
        """The cap of one kind, as a fraction of the device maximum."""
        return self.caps.for_kind(kind)

    def max_units(self, kind: DeviceKind, maximum: int | None = None) -> int:
        """The cap in device units (floor); also the EB1 soft limit to write with BF."""
        return cap_units(self.cap(kind), kind_spec(kind).maximum if maximum is None else maximum)


# -- pure rules ---------------------------------------------------------------


def cap_units(fraction: float, maximum: int) -> int:
    """floor(fraction × maximum), within 0..maximum: a cap is never rounded up."""
    return max(0, min(maximum, math.floor(fraction * maximum)))


def _clip01(value: float) -> float:
    # NaN would slip through min/max and poison every comparison: treat it as 0.
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


@overload
def scale_output(output: BeltOutput, factor: float) -> BeltOutput: ...
@overload
def scale_output(output: PillowOutput, factor: float) -> PillowOutput: ...
@overload
def scale_output(output: ButterflyOutput, factor: float) -> ButterflyOutput: ...
@overload
def scale_output(output: Output, factor: float) -> Output: ...
def scale_output(output: Output, factor: float) -> Output:
    """Scale an output's intensities by factor (clipped to 0..1: scaling never amplifies).

    - belt: every level × factor, rounded down; the heater is untouched;
    - pillow: floor(speed × factor), except that a running pillow keeps speed 1
      while factor ≥ PILLOW_KEEP_FACTOR (3 speeds are too coarse to round to 0);
    - butterfly: each channel's strength × factor, rounded down; frequency and
      waveform intensity are untouched (they shape the pulses, not the dose).

    (Each output's ``scaled`` holds its rule, devices.outputs.)
    """
    f = _clip01(factor)
    if f == 1.0 and output.non_negative:
        # Nothing to scale (every output is immutable): the common case, on every pass.
        return output
    return output.scaled(f)


def _within(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _clamp_channel(ch: EmsChannelOutput, ceiling: int) -> EmsChannelOutput:
    return EmsChannelOutput(
        strength=_within(ch.strength, 0, ceiling),
        frequency=_within(ch.frequency, *EMS_FREQUENCY_RANGE),
        intensity=_within(ch.intensity, *EMS_INTENSITY_RANGE),
    )


@overload
def clamp(
    output: BeltOutput,
    limits: SafetyLimits,
    *,
    gentler: float = ...,
    capabilities: Capabilities | None = ...,
) -> BeltOutput: ...
@overload
def clamp(
    output: PillowOutput,
    limits: SafetyLimits,
    *,
    gentler: float = ...,
    capabilities: Capabilities | None = ...,
) -> PillowOutput: ...
@overload
def clamp(
    output: ButterflyOutput,
    limits: SafetyLimits,
    *,
    gentler: float = ...,
    capabilities: Capabilities | None = ...,
) -> ButterflyOutput: ...
@overload
def clamp(
    output: Output,
    limits: SafetyLimits,
    *,
    gentler: float = ...,
    capabilities: Capabilities | None = ...,
) -> Output: ...
def clamp(
    output: Output,
    limits: SafetyLimits,
    *,
    gentler: float = 1.0,
    capabilities: Capabilities | None = None,
) -> Output:
    """Scale × gentler, then cap, then device ranges: the stateless part of apply.

    capabilities (when known) narrows the ranges further: per-motor maximum,
    the pillow's top speed, each EMS channel's maximum, and no heat without a heater.
    """
    return ClampRule.of(limits, capabilities).apply(output, gentler)


@dataclass(frozen=True, slots=True)
class ClampRule:
    """clamp() for one set of limits and capabilities, its ceilings worked out once.

    The safety layer clamps every output change of every device; the ceilings only
    change with the limits or the capabilities, so a SafeDevice keeps its rule.
    """

    scale: float
    """The user's overall intensity (limits.scale)."""
    belt_cap: int
    """A belt motor's ceiling where the capabilities name no motor."""
    belt_ceilings: tuple[int, ...]
    """Each known motor's ceiling: the cap, or the motor's own maximum if lower."""
    pillow_top: int
    """The pillow's highest allowed speed."""
    ems_ceilings: tuple[int, int]
    """Each EMS channel's highest allowed strength."""
    heater: bool
    """False when the capabilities say no heater is fitted (unknown: allowed)."""

    @classmethod
    def of(cls, limits: SafetyLimits, capabilities: Capabilities | None) -> ClampRule:
        """The rule for these limits and (if known) these capabilities.

        A cap is a fraction of the kind's protocol maximum (DEVICE_MAXIMA), and what the
        device itself can do is a second ceiling beside it, never the base the cap is
        taken of: a unit that reports a lower maximum (an EB1's soft limit, say) must not
        turn the cap into a multiplier.
        """
        belt_cap = limits.max_units(DeviceKind.BELT)
        motors = capabilities.motors if capabilities is not None else ()
        pillow_top = limits.max_units(DeviceKind.PILLOW)
        if capabilities is not None and capabilities.kneading is not None:
            pillow_top = min(pillow_top, capabilities.kneading.max_speed)
        ems = [limits.max_units(DeviceKind.BUTTERFLY)] * 2
        channels = capabilities.ems_channels if capabilities is not None else ()
        for i, ch in enumerate(channels[:2]):
            ems[i] = min(ems[i], ch.max_strength)
        return cls(
            scale=limits.scale,
            belt_cap=belt_cap,
            belt_ceilings=tuple(min(belt_cap, motor.max_level) for motor in motors),
            pillow_top=pillow_top,
            ems_ceilings=(ems[0], ems[1]),
            heater=capabilities is None or capabilities.heater,
        )

    @overload
    def apply(self, output: BeltOutput, gentler: float = ...) -> BeltOutput: ...
    @overload
    def apply(self, output: PillowOutput, gentler: float = ...) -> PillowOutput: ...
    @overload
    def apply(self, output: ButterflyOutput, gentler: float = ...) -> ButterflyOutput: ...
    @overload
    def apply(self, output: Output, gentler: float = ...) -> Output: ...
    def apply(self, output: Output, gentler: float = 1.0) -> Output:
        """Scale × gentler, then cap, then device ranges."""
        scaled = scale_output(output, self.scale * _clip01(gentler))
        if isinstance(scaled, BeltOutput):
            ceilings = self.belt_ceilings
            levels = scaled.levels
            if len(levels) == len(ceilings) and min(levels, default=0) >= 0:
                # The usual case, in C: one level per known motor, none below zero.
                levels = tuple(map(min, levels, ceilings))
            else:
                known = len(ceilings)
                cap = self.belt_cap
                levels = tuple(
                    _within(level, 0, ceilings[i] if i < known else cap)
                    for i, level in enumerate(levels)
                )
            return BeltOutput(levels=levels, heat=scaled.heat and self.heater)
        if isinstance(scaled, PillowOutput):
            return PillowOutput(
                speed=_within(scaled.speed, 0, self.pillow_top),
                direction=scaled.direction,
                heat=scaled.heat and self.heater,
            )
        if isinstance(scaled, ButterflyOutput):
            return ButterflyOutput(
                a=_clamp_channel(scaled.a, self.ems_ceilings[0]),
                b=_clamp_channel(scaled.b, self.ems_ceilings[1]),
            )
        raise SafetyError(f"unknown output type {type(output).__name__}")


@dataclass(frozen=True, slots=True)
class RampState:
    """One EMS channel's ramp: the strength sent, unspent raise credit, and when."""

    strength: int = 0
    bank: int = 0
    """Raise credit carried over, in units of 1/RAMP_WINDOW_US of a strength step."""
    t_us: int = 0


def ramp_step(
    state: RampState, requested: int, now_us: int, max_raise: int
) -> tuple[int, RampState]:
    """The strength to send now under the ramp, and the new state.

    Credit accrues at max_raise per RAMP_WINDOW_US. While a raise is held back,
    the fractional credit carries over (so frequent calls still climb at the
    full rate); once the request is met, or on any lowering, credit resets to 0
    (so a long hold never banks a jump). Hence for any two sends,
    rise ≤ ceil(max_raise × elapsed / 100 ms).
    """
    if requested <= state.strength:
        return requested, RampState(requested, 0, now_us)
    bank = state.bank + max_raise * max(0, now_us - state.t_us)
    allowed = state.strength + bank // RAMP_WINDOW_US
    if requested <= allowed:
        return requested, RampState(requested, 0, now_us)
    spent = (allowed - state.strength) * RAMP_WINDOW_US
    return allowed, RampState(allowed, bank - spent, now_us)


@dataclass(frozen=True, slots=True)
class BurstState:
    """One vibrating output's bursts: when the current one began, when it went to zero."""

    on_since: float | None = None
    """Start of the current burst (None: rested); a zero shorter than the rest continues it."""
    zero_since: float | None = None
    """When the output last went to zero (None while it runs)."""
    rest_until: float | None = None
    """The end of a rest the rule imposed (None: none)."""

    def next_change(self, max_s: float) -> float | None:
        """When the rule next changes what may be sent: a burst's end or a rest's end."""
        if self.rest_until is not None:
            return self.rest_until
        if self.on_since is not None and self.zero_since is None:
            return self.on_since + max_s
        return None


def burst_step(
    state: BurstState,
    level: int,
    now: float,
    *,
    max_s: float = BURST_CUT_S,
    rest_s: float = BURST_REST_S,
    imposed_rest_s: float = BURST_IMPOSED_REST_S,
) -> tuple[int, BurstState]:
    """The level that may be sent now under the burst rule, and the new state.

    A burst is a run of non-zero levels without a rest at zero of at least rest_s. Once
    a burst has lasted max_s the output is held at zero for imposed_rest_s, whatever is
    asked. The caller must call again at state.next_change(max_s) for the rule to hold
    on time.
    """
    if state.rest_until is not None:
        if now < state.rest_until:
            return 0, state
        # The imposed rest is over: the output is rested.
        state = BurstState(zero_since=state.zero_since)
    # (An unchanged state is returned as it is: called per motor on every belt send.)
    if level <= 0:
        zero_since = state.zero_since if state.zero_since is not None else now
        on_since = None if now - zero_since >= rest_s else state.on_since
        if on_since == state.on_since and zero_since == state.zero_since:
            return 0, state  # (rest_until is None here)
        return 0, BurstState(on_since=on_since, zero_since=zero_since)
    on_since = state.on_since
    if on_since is not None and state.zero_since is not None and now - state.zero_since >= rest_s:
        on_since = None  # rested long enough while at zero: a new burst
    if on_since is None:
        on_since = now
    if now >= on_since + max_s:  # the very sum next_change() gives: no rounding gap
        return 0, BurstState(zero_since=now, rest_until=now + imposed_rest_s)
    if on_since == state.on_since and state.zero_since is None:
        return level, state  # (rest_until is None here)
    return level, BurstState(on_since=on_since)


def off_output(like: Output) -> Output:
    """Everything off, for the same kind (and motor count) as like: the one all-off rule.

    (For a device known by its capabilities rather than an output:
    devices.kinds.off_output.)
    """
    return like.off_like()


# -- time ---------------------------------------------------------------------


class SessionClock:
    """Seconds since the session started, against its time limit (wall time, pauses count)."""

    def __init__(self, limit_s: float, *, now: Callable[[], float] = time.monotonic) -> None:
        if limit_s <= 0:
            raise ConfigError(f"session limit must be positive, not {limit_s}")
        self.limit_s = limit_s
        self._now = now
        self._start = now()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return max(0.0, self._now() - self._start)

    def elapsed_us(self) -> int:
        """Whole microseconds since the start (the ramp counts in these)."""
        return round(self.elapsed() * 1_000_000)

    def remaining(self) -> float:
        """Seconds left before the limit (0 once expired)."""
        return self.remaining_at(self.elapsed())

    def remaining_at(self, elapsed: float) -> float:
        """What remains once elapsed (an elapsed() reading) has passed: 0 when expired."""
        return max(0.0, self.limit_s - elapsed)

    @property
    def expired(self) -> bool:
        """True from the limit on."""
        return self.elapsed() >= self.limit_s


# -- violations ---------------------------------------------------------------


class Rule(StrEnum):
    """Which safety rule refused or lowered something."""

    SESSION_TIME = "session_time"
    HEATER_TIME = "heater_time"
    EMPTY_PILLOW = "empty_pillow"
    EMERGENCY_STOP = "emergency_stop"
    STOP_BUTTON = "stop_button"
    VIBRATION_BURST = "vibration_burst"


@dataclass(frozen=True, slots=True)
class Violation:
    """A request the safety layer refused or cut down, for the session's history."""

    t: float
    device: str
    rule: Rule
    detail: str


ViolationListener = Callable[[Violation], None]


# -- the session and its devices ----------------------------------------------


class SessionSafety:
    """Shared state of one session: limits, clock, "gentler" factor, violations, halt latch."""

    def __init__(
        self,
        limits: SafetyLimits,
        *,
        clock: SessionClock | None = None,
        on_violation: ViolationListener | None = None,
    ) -> None:
        self.limits = limits
        if clock is None:
            clock = SessionClock(limits.session_limit_s)
        elif clock.limit_s > limits.session_limit_s:
            raise ConfigError(
                f"session clock limit {clock.limit_s} s exceeds the {limits.audience.value} "
                f"limit {limits.session_limit_s} s"
            )
        self.clock = clock
        self.gentler_presses = 0
        self._factor = 1.0
        self._factor_for = 0
        """gentler_factor, and the presses it is for."""
        self.violations: list[Violation] = []
        self.halted = False
        self._on_violation = on_violation
        self._devices: list[SafeDevice] = []

    @property
    def gentler_factor(self) -> float:
        """GENTLER_STEP ** presses: only ever goes down in a session."""
        # Read on every clamp of every device: worked out once per number of presses.
        presses = self.gentler_presses
        if presses != self._factor_for:
            self._factor = float(GENTLER_STEP**presses)
            self._factor_for = presses
        return self._factor

    def gentler(self) -> float:
        """Record one "gentler" press; the new factor applies from the next apply or tick."""
        self.gentler_presses += 1
        logger.info("gentler pressed (%d): factor %.3f", self.gentler_presses, self.gentler_factor)
        return self.gentler_factor

    async def press_gentler(self) -> float:
        """One "gentler" press, applied to every device at once."""
        factor = self.gentler()
        await asyncio.gather(*(d.tick() for d in self._devices))
        return factor

    def wrap(self, device: Device, *, limits: SafetyLimits | None = None) -> SafeDevice:
        """A SafeDevice for device in this session (with its own limits, the stricter win)."""
        safe = SafeDevice(device, self, limits=limits)
        self._devices.append(safe)
        return safe

    @property
    def devices(self) -> tuple[SafeDevice, ...]:
        """Every wrapped device."""
        return tuple(self._devices)

    async def emergency_stop(self) -> None:
        """Stop every device at once and refuse everything for the rest of the session."""
        self.halted = True
        await asyncio.gather(*(d.emergency_stop() for d in self._devices))

    def record(self, device: str, rule: Rule, detail: str) -> Violation:
        """Note a refused or cut-down request."""
        violation = Violation(round(self.clock.elapsed(), 3), device, rule, detail)
        logger.warning("%s: safety: %s: %s", device, rule.value, detail)
        self.violations.append(violation)
        if self._on_violation is not None:
            try:
                self._on_violation(violation)
            except Exception:  # recording must never stop the safety layer itself
                logger.exception("violation listener failed")
        return violation


@dataclass(slots=True)
class _ClampMemo:
    """The last clamp() of one device and everything it depended on.

    Not frozen: made on every output change, and a frozen dataclass pays for
    object.__setattr__ on each field; only SafeDevice.clamp makes and reads it.
    """

    output: Output
    limits: SafetyLimits
    gentler: float
    capabilities: Capabilities | None
    rule: ClampRule
    clamped: Output


class SafeDevice:
    """A Device behind the safety layer: the only way a session touches outputs."""

    def __init__(
        self, device: Device, session: SessionSafety, *, limits: SafetyLimits | None = None
    ) -> None:
        self.device = device
        self.session = session
        # A device's own limits can only tighten the session's, never loosen them.
        self.limits = session.limits if limits is None else session.limits.stricter(limits)
        self._lock = asyncio.Lock()
        self._requested: Output | None = None
        self._sent: Output | None = None
        self._ramps = (RampState(), RampState())
        self._ramp_started = False
        self._wheel: list[int | None] = [None, None]
        self._pillow_empty = False
        self._stop_button = False
        self._halted = False
        self._heat_on = False
        self._heat_used_us = 0
        self._last_us = 0
        self._recorded: set[Rule] = set()
        self._clamp_memo: _ClampMemo | None = None
        self._bursts: tuple[BurstState, ...] = ()
        """One per belt motor: the vibration burst rule's state (set through _set_bursts)."""
        self._burst_change: float | None = None
        """next_burst_change(), worked out when the bursts change: the runner asks every pass."""
        self.held_back = False
        """True when the ramp held the last request back: keep ticking every 100 ms."""
        self._remove_listener = device.add_listener(self._on_event)

    @property
    def name(self) -> str:
        """The device's name."""
        return self.device.name

    @property
    def kind(self) -> DeviceKind:
        """The device's kind."""
        return self.device.kind

    @property
    def sent(self) -> Output | None:
        """What the safety layer last sent (None before the first apply)."""
        return self._sent

    @property
    def heater_on_time(self) -> float:
        """Seconds the heater has been on in this session (as of the last call)."""
        return self._heat_used_us / 1_000_000

    def close(self) -> None:
        """Stop listening to the device's events."""
        self._remove_listener()

    def tighten(self, limits: SafetyLimits) -> SafetyLimits:
        """Lower this device's limits now (a cap lowered mid-session); they never rise.

        The next apply or tick clamps under the result: the caller re-applies at once.
        """
        self.limits = self.limits.stricter(limits)
        return self.limits

    def next_burst_change(self) -> float | None:
        """Session seconds (this session's clock) at which the burst rule next changes
        what this device may send; apply or tick must run then. None: nothing pending."""
        return self._burst_change

    def _set_bursts(self, bursts: tuple[BurstState, ...]) -> None:
        self._bursts = bursts
        changes = [c for b in bursts if (c := b.next_change(BURST_CUT_S)) is not None]
        self._burst_change = min(changes, default=None)

    def clamp(self, output: Output) -> Output:
        """The stateless part of apply with this session's factor and this device's ranges."""
        gentler = self.session.gentler_factor
        capabilities = self._capabilities()
        # The runner clamps a request to decide whether it changed, then apply() clamps
        # the same request again: remember the last answer. The key is everything clamp()
        # reads (outputs, limits and capabilities are immutable, so identity will do), so a
        # gentler press, new limits or new capabilities are never served a stale result.
        memo = self._clamp_memo
        if memo is not None and memo.limits is self.limits and memo.capabilities is capabilities:
            if memo.output is output and memo.gentler == gentler:
                return memo.clamped
            rule = memo.rule  # the ceilings still hold: only the output or gentler changed
        else:
            rule = ClampRule.of(self.limits, capabilities)
        clamped = rule.apply(output, gentler)
        self._clamp_memo = _ClampMemo(output, self.limits, gentler, capabilities, rule, clamped)
        return clamped

    async def apply(self, output: Output) -> Output:
        """Send the safe version of output; returns what was sent."""
        if output.kind != self.kind:
            raise SafetyError(f"{self.name}: a {output.kind} output cannot go to a {self.kind}")
        async with self._lock:
            self._requested = output
            now_us = self.session.clock.elapsed_us()
            self._account_heat(now_us)
            # One reading of the session clock for the time limit and the burst rule.
            wall = self.session.clock.elapsed()
            refusal = self._refusal(wall)
            if refusal is not None:
                return await self._refuse(output, refusal)
            decided, ramps = self._decide(output, now_us, wall)
            await self.device.apply(decided)
            if self.session.halted or self._halted:
                # An emergency stop raced this send: make sure the stop is the last word.
                await self.device.stop()
                self._reset_to_zero()
                return off_output(output)
            # Committed only once the device took it: after a failed send the old
            # ramp state is the conservative one.
            self._ramps = ramps
            self._ramp_started = True
            self._sent = decided
            self._heat_on = decided.heat
            return decided

    async def tick(self) -> Output | None:
        """Re-apply the last request: continues a ramp, enforces the time and heater limits."""
        if self._requested is None:
            return None
        return await self.apply(self._requested)

    async def stop(self) -> None:
        """Every output to zero (a pause or the end of the session on this device)."""
        async with self._lock:
            self._account_heat(self.session.clock.elapsed_us())
            await self.device.stop()
            self._reset_to_zero()

    async def emergency_stop(self) -> None:
        """device.stop() at once, without waiting for a send in progress; refuses from now on."""
        self._halted = True
        try:
            await self.device.stop()
        finally:
            self._reset_to_zero()

    # -- internals ------------------------------------------------------------

    def _capabilities(self) -> Capabilities | None:
        try:
            return self.device.capabilities
        except LinkError:
            return None

    def _reset_to_zero(self) -> None:
        now_us = self.session.clock.elapsed_us()
        now = self.session.clock.elapsed()
        # Every motor is at zero from now: a rest begins (a burst only ends once it is long).
        self._set_bursts(tuple(burst_step(b, 0, now)[1] for b in self._bursts))
        self._ramps = (RampState(0, 0, now_us), RampState(0, 0, now_us))
        self._ramp_started = True
        self._heat_on = False
        self.held_back = False
        if self._requested is not None:
            self._sent = off_output(self._requested)

    def _account_heat(self, now_us: int) -> None:
        if self._heat_on:
            self._heat_used_us += max(0, now_us - self._last_us)
        self._last_us = now_us

    def _refusal(self, wall: float) -> tuple[Rule, str] | None:
        """Why every request is refused now, if it is (wall: the session clock's elapsed())."""
        if self.session.halted or self._halted:
            return Rule.EMERGENCY_STOP, "refused: the session was emergency-stopped"
        if self._stop_button:
            return Rule.STOP_BUTTON, "refused: the user pressed the device's own stop button"
        if wall >= self.session.clock.limit_s:  # SessionClock.expired, at this reading
            limit = _duration(self.session.clock.limit_s)
            return Rule.SESSION_TIME, f"refused: past the session limit of {limit}"
        return None

    async def _refuse(self, output: Output, refusal: tuple[Rule, str]) -> Output:
        rule, detail = refusal
        if rule not in self._recorded:
            self._recorded.add(rule)
            self.session.record(self.name, rule, detail)
        off = off_output(output)
        if not self.device.output.is_zero:
            await self.device.stop()
        self._reset_to_zero()
        self._sent = off
        return off

    def _decide(
        self, output: Output, now_us: int, wall: float
    ) -> tuple[Output, tuple[RampState, RampState]]:
        out = self.clamp(output)
        ramps = self._ramps
        self.held_back = False
        if isinstance(out, PillowOutput):
            if self._pillow_empty and out.speed > 0:
                if Rule.EMPTY_PILLOW not in self._recorded:
                    self._recorded.add(Rule.EMPTY_PILLOW)
                    self.session.record(self.name, Rule.EMPTY_PILLOW, "no kneading: pillow empty")
                out = replace(out, speed=0)
            out = self._limit_heat(out)
        elif isinstance(out, BeltOutput):
            out = self._limit_bursts(self._limit_heat(out), wall)
        elif isinstance(out, ButterflyOutput):
            out, ramps = self._ramp(out, now_us)
        return out, ramps

    def _limit_bursts(self, out: BeltOutput, now: float) -> BeltOutput:
        bursts = list(self._bursts)
        bursts += [BurstState()] * (len(out.levels) - len(bursts))
        levels = []
        for i, level in enumerate(out.levels):
            allowed, bursts[i] = burst_step(bursts[i], level, now)
            if allowed < level and Rule.VIBRATION_BURST not in self._recorded:
                # Once per device and session: the program asks for longer vibration.
                self._recorded.add(Rule.VIBRATION_BURST)
                self.session.record(
                    self.name,
                    Rule.VIBRATION_BURST,
                    f"motor {i + 1}: vibration rests {BURST_IMPOSED_REST_S:g} s after "
                    f"{BURST_CUT_S:g} s (the method: at most {BURST_MAX_S:g} s at a time)",
                )
            levels.append(allowed)
        # Committed at once: a failed send leaves the rule stricter, never looser.
        self._set_bursts(tuple(bursts))
        return out if tuple(levels) == out.levels else replace(out, levels=tuple(levels))

    def _limit_heat(self, out: _Heated) -> _Heated:
        if not out.heat or self._heat_used_us < round(self.limits.heater_limit_s * 1_000_000):
            return out
        if Rule.HEATER_TIME not in self._recorded:
            self._recorded.add(Rule.HEATER_TIME)
            limit = _duration(self.limits.heater_limit_s)
            self.session.record(self.name, Rule.HEATER_TIME, f"heat off: on for {limit} already")
        return out.without_heat()

    def _ramp(
        self, out: ButterflyOutput, now_us: int
    ) -> tuple[ButterflyOutput, tuple[RampState, RampState]]:
        max_raise = self.limits.ems_max_raise_per_100ms
        caps = self._capabilities()
        for channel in caps.ems_channels if caps is not None else ():
            max_raise = min(max_raise, channel.max_raise_per_100ms)
        old = self._ramps
        if not self._ramp_started:
            # The driver leaves both strengths at 0 on connect (EB1 rule 1): start there, now.
            old = (RampState(0, 0, now_us), RampState(0, 0, now_us))
        channels = []
        states = []
        for i, (ch, state) in enumerate(zip((out.a, out.b), old, strict=True)):
            wanted = ch.strength
            wheel = self._wheel[i]
            if wheel is not None:
                wanted = min(wanted, wheel)
            strength, new_state = ramp_step(state, wanted, now_us, max_raise)
            if strength < wanted:
                self.held_back = True
            channels.append(ch if strength == ch.strength else replace(ch, strength=strength))
            states.append(new_state)
        if channels[0] is out.a and channels[1] is out.b:
            return out, (states[0], states[1])  # nothing held back: the output as it came
        return ButterflyOutput(a=channels[0], b=channels[1]), (states[0], states[1])

    def _on_event(self, event: DeviceEvent) -> None:
        if isinstance(event, PillowOccupancy):
            self._pillow_empty = event.empty
            if not event.empty:
                # A new empty spell should be recorded again.
                self._recorded.discard(Rule.EMPTY_PILLOW)
        elif isinstance(event, StopButtonPressed):
            self._stop_button = True
        elif isinstance(event, ServiceGap):
            # The driver forgot what it held and zeroes the device: the ramp starts
            # again from zero, as after a reconnect (promise 2).
            self._reset_to_zero()
        elif isinstance(event, EmsWheelChanged):
            # The user's word: the device is at these strengths now, and they are the
            # ceilings for the rest of the session.
            now_us = self.session.clock.elapsed_us()
            self._wheel = [event.strength_a, event.strength_b]
            self._ramps = (
                RampState(event.strength_a, 0, now_us),
                RampState(event.strength_b, 0, now_us),
            )
            self._ramp_started = True
        elif isinstance(event, DeviceFault):
            # A Coyote V2 held a strength it was not sent: as with the wheel, the lower
            # value is the channel's ceiling for the rest of the session (the driver
            # already holds it there), and the ramp goes on from no higher than it.
            now_us = self.session.clock.elapsed_us()
            ramps = list(self._ramps)
            for i, ceiling in enumerate((event.ceiling_a, event.ceiling_b)):
                if ceiling is None:
                    continue
                held = self._wheel[i]
                self._wheel[i] = ceiling if held is None else min(held, ceiling)
                if ramps[i].strength > ceiling:
                    ramps[i] = RampState(ceiling, 0, now_us)
            self._ramps = (ramps[0], ramps[1])


# -- the device's own copy of the limits ---------------------------------------------

SOFT_LIMIT_SETTLE_S = 1.0
"""How long a lowered EB1 soft limit waits for the host's own lowering to land first.

Written while the unit is above it, the BF would lower the strength itself and report
it as the wheel's (B1 sequence 0): the host's sequenced B0 goes first, then the BF. One
B1 time-out with its resends fits; past it the BF is written anyway (the limit wins)."""


@runtime_checkable
class KeepsLimits(Protocol):
    """A driver that keeps its own copy of the EMS caps and ramp (EB1, Coyote V2)."""

    soft_limits: tuple[int, int]
    max_raise: int

    @property
    def is_connected(self) -> bool: ...

    @property
    def strengths(self) -> tuple[int, int]: ...

    def set_max_raise(self, max_raise_per_100ms: int) -> None: ...

    async def set_soft_limits(self, limits: tuple[int, int]) -> None: ...


async def write_device_limits(
    device: Device, limits: SafetyLimits, *, lower_only: bool = False
) -> None:
    """Give a device its own copy of these limits where it keeps one (:class:`KeepsLimits`:
    the EB1's soft limits and ramp, EB1 daemon rules 1 and 2, the Coyote V2's host-held
    caps); other kinds keep none.

    At a session start they come from that session's limits, whatever the unit was
    given before; lower_only (a change while a session runs) never loosens them. A
    device that is not connected takes them at its next connect.
    """
    if not isinstance(device, KeepsLimits):
        return
    soft = limits.max_units(device.kind)
    wanted = (soft, soft)
    max_raise = limits.ems_max_raise_per_100ms
    if lower_only:
        wanted = (min(soft, device.soft_limits[0]), min(soft, device.soft_limits[1]))
        max_raise = min(max_raise, device.max_raise)
    device.set_max_raise(max_raise)
    if wanted == device.soft_limits:
        return
    if not device.is_connected:
        # connect() writes them first thing (rule 1).
        device.soft_limits = wanted
        return
    if lower_only:
        await _settle_below(device, wanted)
    await device.set_soft_limits(wanted)


async def _settle_below(device: KeepsLimits, limits: tuple[int, int]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SOFT_LIMIT_SETTLE_S):
            # Polled: the driver learns its strengths from B1s and offers no event for it.
            while any(s > c for s, c in zip(device.strengths, limits, strict=True)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} s"
