"""VB1 belt wire protocol v1 (docs/protocols/vb1-belt.md), sans-IO.

Frames are ``A5 LEN SEQ CMD PAYLOAD CRC16``; the CRC is CRC-16/CCITT-FALSE
over LEN, SEQ, CMD and PAYLOAD, big end first.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from enum import IntEnum

from devices.errors import FrameError

SOF = 0xA5
MIN_LEN = 2
MAX_LEN = 34
MAX_PAYLOAD = MAX_LEN - 2
EVENT_SEQ = 0
BAUDRATE = 115200
USB_PRODUCT_PREFIX = "VB1"
BLE_NAME_PREFIX = "VB1-"
MAX_LEVEL = 255
"""The highest motor level (a byte): the belt's unit maximum."""
NUS_SERVICE = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"
"""Host writes here (write without response)."""
NUS_TX = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"
"""Device notifies here."""

ANSWER_TIMEOUT = 0.100
"""Rule 2: retry a command that got no answer within 100 ms."""
MAX_RETRIES = 3
WATCHDOG_TIMEOUT = 1.000
"""Rule 4: the device stops after 1000 ms without a valid frame."""
FEED_INTERVAL = 0.250
"""Rule 4: a host that keeps anything on sends a frame at least this often."""
OVERHEAT_STOP_C = 48
OVERHEAT_CLEAR_C = 42


class Command(IntEnum):
    """Command bytes, both directions."""

    HELLO = 0x01
    SET_LEVELS = 0x02
    SET_HEAT = 0x03
    STOP = 0x04
    GET_STATUS = 0x05
    PING = 0x06
    ACK = 0x80
    INFO = 0x81
    STATUS = 0x85
    EVENT = 0x90
    NAK = 0xFF


HOST_COMMANDS = frozenset(
    {
        Command.HELLO,
        Command.SET_LEVELS,
        Command.SET_HEAT,
        Command.STOP,
        Command.GET_STATUS,
        Command.PING,
    }
)


class NakCode(IntEnum):
    """NAK error codes."""

    BAD_LENGTH = 1
    UNKNOWN_CMD = 2
    OUT_OF_RANGE = 3
    UNSUPPORTED = 4
    OVERHEAT = 5
    NOT_READY = 6


class EventCode(IntEnum):
    """EVENT codes (sent with SEQ 0)."""

    WATCHDOG_STOP = 1
    OVERHEAT_STOP = 2
    LOW_BATTERY = 3
    STOP_BUTTON = 4


class StatusFlag(IntEnum):
    """Bits of the STATUS flags byte."""

    WATCHDOG_TRIPPED = 0x01
    OVERHEAT = 0x02
    LOW_BATTERY = 0x04
    HEATER_ON = 0x08


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    # binascii's CRC-CCITT (XMODEM form) with the 0xFFFF start is exactly this CRC, in C.
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True)
class Frame:
    """One VB1 frame: sequence number, command byte and payload."""

    seq: int
    cmd: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 255:
            raise FrameError(f"VB1 SEQ must be 0..255, not {self.seq}")
        if not 0 <= self.cmd <= 255:
            raise FrameError(f"VB1 CMD must be 0..255, not {self.cmd}")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"VB1 payload is at most {MAX_PAYLOAD} bytes, not {len(self.payload)}")


def encode(frame: Frame) -> bytes:
    """The bytes of a frame on the wire."""
    body = bytes((len(frame.payload) + 2, frame.seq, frame.cmd)) + frame.payload
    return bytes((SOF,)) + body + crc16_ccitt_false(body).to_bytes(2, "big")


def decode(data: bytes) -> Frame:
    """Decode exactly one whole frame; raise FrameError naming what is wrong."""
    if len(data) < 6:
        raise FrameError(f"VB1 frame too short: {len(data)} bytes")
    if data[0] != SOF:
        raise FrameError(f"VB1 frame starts with 0x{data[0]:02x}, not 0xa5")
    length = data[1]
    if not MIN_LEN <= length <= MAX_LEN:
        raise FrameError(f"VB1 LEN {length} outside {MIN_LEN}..{MAX_LEN}")
    if len(data) != length + 4:
        raise FrameError(f"VB1 frame of LEN {length} is {length + 4} bytes, got {len(data)}")
    body = data[1 : 2 + length]
    crc = int.from_bytes(data[2 + length :], "big")
    if crc != crc16_ccitt_false(body):
        raise FrameError(f"VB1 CRC 0x{crc:04x} does not match 0x{crc16_ccitt_false(body):04x}")
    return Frame(seq=data[2], cmd=data[3], payload=bytes(data[4 : 2 + length]))


class FrameParser:
    """Incremental parser: feed any chunks of bytes, get whole valid frames.

    Rule 2: a frame with a bad CRC or an impossible LEN is dropped silently and
    the parser resynchronises on the next 0xA5.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.dropped_bytes = 0
        """Bytes discarded while resynchronising (garbage, bad frames)."""

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every whole frame now complete."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        while True:
            start = buf.find(SOF)
            if start < 0:
                self.dropped_bytes += len(buf)
                buf.clear()
                break
            if start:
                self.dropped_bytes += start
                del buf[:start]
            if len(buf) < 2:
                break
            length = buf[1]
            if not MIN_LEN <= length <= MAX_LEN:
                self._drop_one(buf)
                continue
            total = length + 4
            if len(buf) < total:
                break
            body = bytes(buf[1 : 2 + length])
            if int.from_bytes(buf[2 + length : total], "big") != crc16_ccitt_false(body):
                self._drop_one(buf)
                continue
            frames.append(Frame(seq=body[1], cmd=body[2], payload=body[3:]))
            del buf[:total]
        return frames

    def _drop_one(self, buf: bytearray) -> None:
        # Only the SOF goes: the real frame may start inside what looked like this one.
        self.dropped_bytes += 1
        del buf[:1]

    def reset(self) -> None:
        """Forget any partial frame (after the link is reopened)."""
        self._buffer.clear()


class SequenceCounter:
    """The host's SEQ: 1..255, then back to 1 (0 is reserved for events)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        """The SEQ for the next host frame."""
        self._last = self._last % 255 + 1
        return self._last


@dataclass(frozen=True, slots=True)
class Info:
    """INFO payload: what the belt says about itself."""

    protocol: int
    firmware_major: int
    firmware_minor: int
    motors: int
    heater: bool
    serial: str

    @classmethod
    def decode(cls, payload: bytes) -> Info:
        """Parse a 13-byte INFO payload."""
        if len(payload) != 13:
            raise FrameError(f"VB1 INFO payload is 13 bytes, got {len(payload)}")
        return cls(
            protocol=payload[0],
            firmware_major=payload[1],
            firmware_minor=payload[2],
            motors=payload[3],
            heater=bool(payload[4] & 0x01),
            serial=payload[5:13].decode("ascii", errors="replace"),
        )

    def encode(self) -> bytes:
        """The 13-byte INFO payload."""
        serial = self.serial.encode("ascii", errors="replace")[:8].ljust(8, b"0")
        return (
            bytes(
                (
                    self.protocol,
                    self.firmware_major,
                    self.firmware_minor,
                    self.motors,
                    1 if self.heater else 0,
                )
            )
            + serial
        )


@dataclass(frozen=True, slots=True)
class Status:
    """STATUS payload: battery, temperature, flags and the current levels."""

    battery: int
    """0..100, or 0xFF on mains."""
    temperature: int
    flags: int
    levels: tuple[int, ...]

    @property
    def on_mains(self) -> bool:
        """True when the belt runs from mains power."""
        return self.battery == 0xFF

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        """Parse a STATUS payload of 3 + M bytes."""
        if len(payload) < 3:
            raise FrameError(f"VB1 STATUS payload is at least 3 bytes, got {len(payload)}")
        temp = payload[1] - 256 if payload[1] >= 128 else payload[1]
        return cls(
            battery=payload[0], temperature=temp, flags=payload[2], levels=tuple(payload[3:])
        )

    def encode(self) -> bytes:
        """The STATUS payload."""
        return bytes((self.battery, self.temperature & 0xFF, self.flags)) + bytes(self.levels)


# Host frame builders: the payloads the protocol defines, nothing else.


def hello(seq: int) -> Frame:
    """HELLO: the device answers INFO and becomes ready."""
    return Frame(seq, Command.HELLO)


def set_levels(seq: int, levels: tuple[int, ...] | list[int]) -> Frame:
    """SET_LEVELS with exactly M levels 0..MAX_LEVEL."""
    if any(not 0 <= lv <= MAX_LEVEL for lv in levels):
        raise FrameError(f"VB1 levels must be 0..{MAX_LEVEL}: {list(levels)}")
    return Frame(seq, Command.SET_LEVELS, bytes(levels))


def set_heat(seq: int, on: bool) -> Frame:
    """SET_HEAT 1 or 0."""
    return Frame(seq, Command.SET_HEAT, b"\x01" if on else b"\x00")


def stop(seq: int) -> Frame:
    """STOP: all motors 0, heater off."""
    return Frame(seq, Command.STOP)


def get_status(seq: int) -> Frame:
    """GET_STATUS: the device answers STATUS."""
    return Frame(seq, Command.GET_STATUS)


def ping(seq: int) -> Frame:
    """PING: feeds the watchdog; answered with ACK."""
    return Frame(seq, Command.PING)


# Device frame builders.


def ack(seq: int, cmd: int) -> Frame:
    """ACK of a command."""
    return Frame(seq, Command.ACK, bytes((cmd,)))


def nak(seq: int, cmd: int, code: NakCode) -> Frame:
    """NAK of a command with an error code."""
    return Frame(seq, Command.NAK, bytes((cmd, code)))


def event(code: EventCode) -> Frame:
    """An unsolicited EVENT (SEQ 0)."""
    return Frame(EVENT_SEQ, Command.EVENT, bytes((code,)))
