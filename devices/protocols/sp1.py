"""SP1 pillow BLE protocol v1 (docs/protocols/sp1-pillow.md), sans-IO.

Frames are ``55 AA LEN CMD PAYLOAD SUM``; LEN = 1 + payload length and
SUM = (LEN + CMD + payload) mod 256. A frame never spans two writes or two
notifications, so one message is decoded at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from devices.capabilities import KneadDirection
from devices.errors import FrameError

HEADER = b"\x55\xaa"
MAX_PAYLOAD = 16
SERVICE_UUID = "0000ffe0-0000-1000-8000-00805f9b34fb"
DATA_UUID = "0000ffe1-0000-1000-8000-00805f9b34fb"
BLE_NAME_PREFIX = "SP1-"

ANSWER_TIMEOUT = 0.300
"""Rule 1: resend a command that got no answer within 300 ms."""
MAX_RETRIES = 3
AUTO_OFF_SECONDS = 15 * 60
"""Rule 3: the firmware stops after 15 minutes of continuous running."""
HEAT_CUT_C = 50
HEAT_CLEAR_C = 45
MAX_SPEED = 3
"""The fastest kneading speed (0 is still): the pillow's unit maximum."""


class Command(IntEnum):
    """Command bytes, both directions."""

    QUERY_INFO = 0x01
    SET = 0x02
    STOP = 0x03
    QUERY_STATE = 0x04
    INFO = 0x81
    STATE = 0x82


class StateFlag(IntEnum):
    """Bits of the STATE flags byte."""

    AUTO_OFF = 0x01
    OVERHEAT = 0x02
    EMPTY = 0x04


DIRECTION_CODES: dict[KneadDirection, int] = {
    KneadDirection.CLOCKWISE: 0,
    KneadDirection.COUNTER_CLOCKWISE: 1,
    KneadDirection.AUTO_REVERSE: 2,
}
DIRECTIONS_BY_CODE = {code: d for d, code in DIRECTION_CODES.items()}


@dataclass(frozen=True, slots=True)
class Frame:
    """One SP1 frame: command byte and payload."""

    cmd: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.cmd <= 255:
            raise FrameError(f"SP1 CMD must be 0..255, not {self.cmd}")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"SP1 payload is at most {MAX_PAYLOAD} bytes, not {len(self.payload)}")


def checksum(length: int, cmd: int, payload: bytes) -> int:
    """SUM = (LEN + CMD + every payload byte) mod 256."""
    return (length + cmd + sum(payload)) & 0xFF


def encode(frame: Frame) -> bytes:
    """The bytes of one frame (one write or one notification)."""
    length = len(frame.payload) + 1
    return (
        HEADER
        + bytes((length, frame.cmd))
        + frame.payload
        + bytes((checksum(length, frame.cmd, frame.payload),))
    )


def decode(data: bytes) -> Frame:
    """Decode one write or notification; raise FrameError naming what is wrong."""
    if len(data) < 5:
        raise FrameError(f"SP1 frame too short: {len(data)} bytes")
    if data[:2] != HEADER:
        raise FrameError(f"SP1 frame starts with {data[:2].hex()}, not 55aa")
    length = data[2]
    if not 1 <= length <= MAX_PAYLOAD + 1:
        raise FrameError(f"SP1 LEN {length} outside 1..{MAX_PAYLOAD + 1}")
    if len(data) != length + 4:
        raise FrameError(f"SP1 frame of LEN {length} is {length + 4} bytes, got {len(data)}")
    cmd = data[3]
    payload = bytes(data[4 : 3 + length])
    expected = checksum(length, cmd, payload)
    if data[-1] != expected:
        raise FrameError(f"SP1 SUM 0x{data[-1]:02x} does not match 0x{expected:02x}")
    return Frame(cmd, payload)


@dataclass(frozen=True, slots=True)
class Info:
    """INFO payload."""

    model_id: int
    firmware_major: int
    firmware_minor: int
    nodes: int
    heater: bool

    @classmethod
    def decode(cls, payload: bytes) -> Info:
        """Parse a 5-byte INFO payload."""
        if len(payload) != 5:
            raise FrameError(f"SP1 INFO payload is 5 bytes, got {len(payload)}")
        return cls(payload[0], payload[1], payload[2], payload[3], bool(payload[4] & 0x01))

    def encode(self) -> bytes:
        """The 5-byte INFO payload."""
        return bytes(
            (
                self.model_id,
                self.firmware_major,
                self.firmware_minor,
                self.nodes,
                1 if self.heater else 0,
            )
        )


@dataclass(frozen=True, slots=True)
class State:
    """STATE payload: what the pillow is doing."""

    speed: int
    direction: int
    heat: bool
    temperature: int
    battery: int
    """0..100, or 0xFF on car or mains power."""
    flags: int
    run_time: int
    """Seconds since the last start."""

    @property
    def empty(self) -> bool:
        """Nobody rests on the pillow (pressure switch, flag bit2)."""
        return bool(self.flags & StateFlag.EMPTY)

    @property
    def auto_off(self) -> bool:
        """The 15-minute auto-off happened (flag bit0)."""
        return bool(self.flags & StateFlag.AUTO_OFF)

    @property
    def overheat(self) -> bool:
        """The heater is cut for heat (flag bit1)."""
        return bool(self.flags & StateFlag.OVERHEAT)

    @classmethod
    def decode(cls, payload: bytes) -> State:
        """Parse an 8-byte STATE payload."""
        if len(payload) != 8:
            raise FrameError(f"SP1 STATE payload is 8 bytes, got {len(payload)}")
        return cls(
            speed=payload[0],
            direction=payload[1],
            heat=bool(payload[2]),
            temperature=payload[3],
            battery=payload[4],
            flags=payload[5],
            run_time=int.from_bytes(payload[6:8], "little"),
        )

    def encode(self) -> bytes:
        """The 8-byte STATE payload."""
        return bytes(
            (
                self.speed,
                self.direction,
                1 if self.heat else 0,
                self.temperature & 0xFF,
                self.battery,
                self.flags,
            )
        ) + (self.run_time & 0xFFFF).to_bytes(2, "little")


def query_info() -> Frame:
    """QUERY_INFO: answered with INFO."""
    return Frame(Command.QUERY_INFO)


def set_state(speed: int, direction: KneadDirection, heat: bool) -> Frame:
    """SET speed 0..3, direction, heat: answered with STATE."""
    if not 0 <= speed <= MAX_SPEED:
        raise FrameError(f"SP1 speed must be 0..{MAX_SPEED}, not {speed}")
    return Frame(Command.SET, bytes((speed, DIRECTION_CODES[direction], 1 if heat else 0)))


def stop() -> Frame:
    """STOP: answered with STATE."""
    return Frame(Command.STOP)


def query_state() -> Frame:
    """QUERY_STATE: answered with STATE."""
    return Frame(Command.QUERY_STATE)
