"""DG-LAB Coyote 2.0 BLE protocol (docs/protocols/coyote-v2.md), sans-IO.

A second model of the butterfly kind: the same two EMS channels as EB1 (A on
the left, B on the right), an older protocol. Three 3-byte little-endian
fields: both strengths on 0x1504, one waveform [X, Y, Z] per channel on
0x1505/0x1506. There is no soft limit on the unit (daemon rule 1): every cap
is the host's, and this codec refuses a strength past massaged's 200 (S 1400)
or a pulse width past Z 20 (daemon rule 3), whatever the caller asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devices.errors import FrameError, SafetyError
from devices.protocols import eb1

_BASE = "955a{:04x}-0fe2-f5aa-a094-84b8d4f3e8ad"
BATTERY_SERVICE_UUID = _BASE.format(0x180A)
BATTERY_UUID = _BASE.format(0x1500)
"""Battery percent, read and notify."""
SERVICE_UUID = _BASE.format(0x180B)
STRENGTH_UUID = _BASE.format(0x1504)
"""PWM_AB2: both strengths; read, write, notify (the notify is the unit's answer)."""

WAVEFORM_UUID_BY_CHANNEL: tuple[str, str] = (_BASE.format(0x1506), _BASE.format(0x1505))
"""THE channel mapping: waveform characteristic of channel A, then of channel B.

The vendor's table puts channel B's waveform on 0x1505 (PWM_A34) and channel A's on
0x1506 (PWM_B34), and most independent implementations agree; only hardware settles
it, so every other name derives from this one constant (docs/devices.md)."""
WAVEFORM_A_UUID = WAVEFORM_UUID_BY_CHANNEL[0]
WAVEFORM_B_UUID = WAVEFORM_UUID_BY_CHANNEL[1]

SERVICE_UUIDS = (SERVICE_UUID, BATTERY_SERVICE_UUID)
"""The unit's services (it does not advertise them: recognise it by name)."""
NAME_PREFIXES = ("D-LAB", "DG-LAB")
"""Local names the unit advertises (``D-LAB ESTIM01``; some firmware says DG-LAB)."""
BLE_NAME = "D-LAB ESTIM01"
MODEL = "Coyote V2"

FIELD_MAX = 2047
"""An 11-bit strength field; massaged never writes past MAX_WIRE_STRENGTH."""
WIRE_STEP = 7
"""Wire units per massaged strength unit (the vendor app's displayed strength x 7)."""
MAX_STRENGTH = eb1.MAX_STRENGTH
"""massaged's butterfly strength unit is EB1's (0..200): one number for both models."""
MAX_WIRE_STRENGTH = MAX_STRENGTH * WIRE_STEP
"""Daemon rule 1: S 1400 at most, although the field allows 2047."""
MAX_RAISE_PER_100MS = 5
"""Daemon rule 2: +5 strength (S +35) per 100 ms per channel at most."""
MAX_X, MAX_Y, MAX_Z_FIELD = 31, 1023, 31
MAX_Z = 20
"""Daemon rule 3: pulse width at most 20 x 5 us = 100 us."""
WAVEFORM_EXPIRY = 0.100
"""Seconds a written waveform lasts; then the channel outputs nothing (the strength stays)."""
PERIOD_MIN, PERIOD_MAX = 10, 1000
"""The vendor's "frequency" F = X + Y in ms."""
FREQ_MIN, FREQ_MAX = 10, 240
"""massaged's butterfly frequency, in EB1 (Coyote V3) wire units."""
INTENSITY_MAX = 100


class CoyoteLimitError(SafetyError):
    """A strength or pulse width past daemon rules 1 and 3: refused, nothing encoded."""

    def __init__(self, field: str, value: int, limit: int) -> None:
        super().__init__(f"Coyote V2 {field} {value} is past the limit {limit}")
        self.field = field
        self.value = value
        self.limit = limit


def _le3(value: int) -> bytes:
    return value.to_bytes(3, "little")


def _from_le3(data: bytes, what: str, used_bits: int) -> int:
    if len(data) != 3:
        raise FrameError(f"Coyote V2 {what} is 3 bytes, got {len(data)}")
    value = int.from_bytes(data, "little")
    if value >> used_bits:
        raise FrameError(f"Coyote V2 {what} {data.hex()} has reserved bits set")
    return value


# -- strengths (0x1504) -----------------------------------------------------------------


def encode_strengths(a: int, b: int) -> bytes:
    """Wire strengths S of channels A and B (0..1400 each) as 3 bytes; refuses past 1400."""
    for name, value in (("strength A", a), ("strength B", b)):
        if value < 0:
            raise FrameError(f"Coyote V2 {name} must not be negative, got {value}")
        if value > MAX_WIRE_STRENGTH:
            raise CoyoteLimitError(name, value, MAX_WIRE_STRENGTH)
    return _le3((a << 11) | b)


def decode_strengths(data: bytes) -> tuple[int, int]:
    """The wire strengths S of A and B (0..2047 each: what the unit says it holds)."""
    value = _from_le3(data, "strengths", 22)
    return (value >> 11) & FIELD_MAX, value & FIELD_MAX


def to_wire_strength(strength: int) -> int:
    """massaged strength 0..200 -> S = 7 x strength; CoyoteLimitError past 200."""
    if strength < 0:
        raise FrameError(f"strength must not be negative, got {strength}")
    if strength > MAX_STRENGTH:
        raise CoyoteLimitError("strength", strength, MAX_STRENGTH)
    return strength * WIRE_STEP


def from_wire_strength(wire: int) -> int:
    """S -> massaged strength, rounded UP: a held S between two steps counts as the higher."""
    return -(-wire // WIRE_STEP)


# -- waveform (0x1505 / 0x1506) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waveform:
    """100 ms of one channel: X pulses of 1 ms, Y ms pause, repeated; pulse width Z x 5 us."""

    x: int
    y: int
    z: int

    def __post_init__(self) -> None:
        for name, value, top in (
            ("X", self.x, MAX_X),
            ("Y", self.y, MAX_Y),
            ("Z", self.z, MAX_Z_FIELD),
        ):
            if not 0 <= value <= top:
                raise FrameError(f"Coyote V2 waveform {name} must be 0..{top}, not {value}")

    @property
    def is_silent(self) -> bool:
        """True when this waveform puts nothing out (no pulse, or a zero width)."""
        return self.x == 0 or self.z == 0


def encode_waveform(wave: Waveform) -> bytes:
    """One channel's waveform as 3 bytes; refuses Z above 20 (daemon rule 3)."""
    if wave.z > MAX_Z:
        raise CoyoteLimitError("pulse width Z", wave.z, MAX_Z)
    return _le3(wave.x | (wave.y << 5) | (wave.z << 15))


def decode_waveform(data: bytes) -> Waveform:
    """A waveform as written (Z as found, 0..31: the simulator records what it was sent)."""
    value = _from_le3(data, "waveform", 20)
    return Waveform(value & 0x1F, (value >> 5) & 0x3FF, (value >> 15) & 0x1F)


def period_waveform(period_ms: int, z: int) -> Waveform:
    """The vendor's rule for a period F = X + Y (10..1000 ms): X = floor(15 sqrt(F/1000))."""
    if not PERIOD_MIN <= period_ms <= PERIOD_MAX:
        raise FrameError(f"Coyote V2 period must be {PERIOD_MIN}..{PERIOD_MAX} ms, not {period_ms}")
    # floor(sqrt(floor(r))) == floor(sqrt(r)): integers only, no float edge at exact squares.
    x = math.isqrt(225 * period_ms // 1000)
    return Waveform(x, period_ms - x, z)


def frequency_to_period(frequency: int) -> int:
    """EB1 frequency units 10..240 -> period in ms 10..1000 (inverse of the V3 compression)."""
    if not FREQ_MIN <= frequency <= FREQ_MAX:
        raise FrameError(f"frequency must be {FREQ_MIN}..{FREQ_MAX}, not {frequency}")
    if frequency <= 100:
        return frequency
    if frequency <= 200:
        return (frequency - 100) * 5 + 100
    return (frequency - 200) * 10 + 600


def intensity_to_z(intensity: int) -> int:
    """Intensity 0..100 -> pulse width Z 0..20, rounded down (never past rule 3)."""
    if not 0 <= intensity <= INTENSITY_MAX:
        raise FrameError(f"intensity must be 0..{INTENSITY_MAX}, not {intensity}")
    return intensity * MAX_Z // INTENSITY_MAX


def channel_waveform(strength: int, frequency: int, intensity: int) -> Waveform | None:
    """The waveform for one massaged channel output; None when it puts nothing out."""
    period = frequency_to_period(frequency)
    z = intensity_to_z(intensity)
    if strength == 0 or z == 0:
        return None
    return period_waveform(period, z)
