"""EB1 butterfly BLE protocol (DG-LAB Coyote V3; docs/protocols/eb1-butterfly.md), sans-IO."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from devices.errors import FrameError

_BASE = "0000{:04x}-0000-1000-8000-00805f9b34fb"
SERVICE_UUID = _BASE.format(0x180C)
WRITE_UUID = _BASE.format(0x150A)
NOTIFY_UUID = _BASE.format(0x150B)
BATTERY_SERVICE_UUID = _BASE.format(0x180A)
BATTERY_UUID = _BASE.format(0x1500)
BLE_NAME_PREFIX = "EB1-"

B0_INTERVAL = 0.100
"""Daemon rule 3: a B0 every 100 ms while a session runs."""
WAVEFORM_EXPIRY = 0.100
"""Output stops when no B0 arrived for 100 ms."""
MAX_STRENGTH = 200
"""The highest channel strength: the butterfly's unit maximum."""
MAX_RAISE_PER_B0 = 5
"""Daemon rule 2: raise a strength by at most 5 per 100 ms."""
FREQ_MIN, FREQ_MAX = 10, 240
INTENSITY_MAX = 100

Wave = tuple[int, int, int, int]
"""Four values, each 25 ms of output."""

SILENT_FREQUENCY: Wave = (0, 0, 0, 0)
SILENT_INTENSITY: Wave = (0, 0, 0, 101)
"""Out-of-range waveform values: the documented way to keep a channel silent."""


class StrengthMode(IntEnum):
    """How B0 reads a strength value (two bits per channel)."""

    NO_CHANGE = 0b00
    INCREASE = 0b01
    DECREASE = 0b10
    SET = 0b11


@dataclass(frozen=True, slots=True)
class B0:
    """Strength and 100 ms of waveform for both channels."""

    seq: int = 0
    mode_a: StrengthMode = StrengthMode.NO_CHANGE
    mode_b: StrengthMode = StrengthMode.NO_CHANGE
    value_a: int = 0
    value_b: int = 0
    freq_a: Wave = SILENT_FREQUENCY
    intensity_a: Wave = SILENT_INTENSITY
    freq_b: Wave = SILENT_FREQUENCY
    intensity_b: Wave = SILENT_INTENSITY

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 15:
            raise FrameError(f"EB1 B0 sequence must be 0..15, not {self.seq}")
        for name in ("freq_a", "intensity_a", "freq_b", "intensity_b"):
            wave = getattr(self, name)
            # min and max rather than a test per value: every B0 written and read passes here.
            if len(wave) != 4 or min(wave) < 0 or max(wave) > 255:
                raise FrameError(f"EB1 B0 {name} must be four bytes, got {wave}")
        for name in ("value_a", "value_b"):
            if not 0 <= getattr(self, name) <= 255:
                raise FrameError(f"EB1 B0 {name} must be one byte")

    @property
    def changes_strength(self) -> bool:
        """True when this B0 asks for any strength change."""
        return self.mode_a != StrengthMode.NO_CHANGE or self.mode_b != StrengthMode.NO_CHANGE


def wave_valid(freq: Wave, intensity: Wave) -> bool:
    """True when all eight waveform values of a channel are in range (else it is dropped)."""
    # Four values each (never empty): their extremes decide, with no test per value.
    return (
        min(freq) >= FREQ_MIN
        and max(freq) <= FREQ_MAX
        and min(intensity) >= 0
        and max(intensity) <= INTENSITY_MAX
    )


@dataclass(frozen=True, slots=True)
class B1:
    """Strength report: sequence 0 when the change came from the unit's wheel."""

    seq: int
    strength_a: int
    strength_b: int


@dataclass(frozen=True, slots=True)
class BF:
    """Soft limits and balances (written by the host)."""

    limit_a: int
    limit_b: int
    freq_balance_a: int = 128
    freq_balance_b: int = 128
    intensity_balance_a: int = 128
    intensity_balance_b: int = 128

    def values(self) -> tuple[int, int, int, int, int, int]:
        """The six values in wire order."""
        return (
            self.limit_a,
            self.limit_b,
            self.freq_balance_a,
            self.freq_balance_b,
            self.intensity_balance_a,
            self.intensity_balance_b,
        )


@dataclass(frozen=True, slots=True)
class BE(BF):
    """The six BF values now in force (the device's answer)."""


Message = B0 | B1 | BF | BE

_MODES = tuple(StrengthMode)
"""The modes by their two-bit value (an index, not an enum lookup, for every B0 read)."""
assert all(mode.value == i for i, mode in enumerate(_MODES))


def encode(message: Message) -> bytes:
    """The bytes of one message (one write or one notification)."""
    if isinstance(message, B0):
        return (
            bytes(
                (
                    0xB0,
                    (message.seq << 4) | (message.mode_a << 2) | message.mode_b,
                    message.value_a,
                    message.value_b,
                )
            )
            + bytes(message.freq_a)
            + bytes(message.intensity_a)
            + bytes(message.freq_b)
            + bytes(message.intensity_b)
        )
    if isinstance(message, B1):
        return bytes((0xB1, message.seq, message.strength_a, message.strength_b))
    head = 0xBE if isinstance(message, BE) else 0xBF
    values = message.values()
    if any(not 0 <= v <= 255 for v in values):
        raise FrameError(f"EB1 {head:02X} values must be bytes: {values}")
    return bytes((head, *values))


def _wave(data: bytes, start: int) -> Wave:
    return (data[start], data[start + 1], data[start + 2], data[start + 3])


def decode(data: bytes) -> Message:
    """Decode one write or notification; raise FrameError naming what is wrong."""
    if not data:
        raise FrameError("EB1 message is empty")
    head = data[0]
    if head == 0xB0:
        if len(data) != 20:
            raise FrameError(f"EB1 B0 is 20 bytes, got {len(data)}")
        return B0(
            seq=data[1] >> 4,
            mode_a=_MODES[(data[1] >> 2) & 0b11],
            mode_b=_MODES[data[1] & 0b11],
            value_a=data[2],
            value_b=data[3],
            freq_a=_wave(data, 4),
            intensity_a=_wave(data, 8),
            freq_b=_wave(data, 12),
            intensity_b=_wave(data, 16),
        )
    if head == 0xB1:
        if len(data) != 4:
            raise FrameError(f"EB1 B1 is 4 bytes, got {len(data)}")
        return B1(data[1], data[2], data[3])
    if head in (0xBF, 0xBE):
        if len(data) != 7:
            raise FrameError(f"EB1 {head:02X} is 7 bytes, got {len(data)}")
        cls = BE if head == 0xBE else BF
        return cls(data[1], data[2], data[3], data[4], data[5], data[6])
    raise FrameError(f"EB1 message head 0x{head:02x} is not B0, B1, BE or BF")


def map_frequency(value: int) -> int:
    """The vendor's mapping of a 10..1000 program frequency to the 10..240 wire value."""
    value = max(10, min(1000, value))
    if value <= 100:
        return value
    if value <= 600:
        return (value - 100) // 5 + 100
    return (value - 600) // 10 + 200


def apply_strength(current: int, mode: StrengthMode, value: int, limit: int) -> int:
    """The device's rule for one channel's new strength (used by the firmware and the driver)."""
    if mode == StrengthMode.NO_CHANGE:
        return current
    if value > MAX_STRENGTH:
        # Out of range counts as 0: "set to" goes to 0, increase/decrease change nothing.
        if mode == StrengthMode.SET:
            return 0
        return current
    if mode == StrengthMode.SET:
        new = value
    elif mode == StrengthMode.INCREASE:
        new = current + value
    else:
        new = current - value
    return max(0, min(new, MAX_STRENGTH, limit))
