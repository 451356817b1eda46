"""Acceptance: a VB1 host written only from docs/protocols/vb1-belt.md talks to the simulated belt.

The host below shares no code with massaged: its own CRC, its own framing, plain
blocking os calls on the pty path. It runs in a worker thread while the
PtyEndpoint serves ``VB1Firmware`` on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import select
import termios
import time
import tty
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.endpoints.pty import PtyEndpoint
from simulator.firmware.vb1 import VB1Firmware

# -- the independent host, from the protocol document alone ------------------------------------

SOF = 0xA5
HELLO, SET_LEVELS, PING = 0x01, 0x02, 0x06
ACK, INFO, EVENT = 0x80, 0x81, 0x90
EVENT_WATCHDOG = 1
ANSWER_WAIT = 0.100
"""Rule 2: retry after 100 ms without an answer, at most 3 times."""
RETRIES = 3


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, table-less."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def build(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    """SOF LEN SEQ CMD PAYLOAD CRC16 (big end)."""
    body = bytes([len(payload) + 2, seq, cmd]) + payload
    return bytes([SOF]) + body + crc16(body).to_bytes(2, "big")


@dataclass
class Received:
    """One frame from the belt and when it was read."""

    seq: int
    cmd: int
    payload: bytes
    at: float


class VB1Host:
    """A blocking host on a serial device path."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        # 115200 8N1 raw, no flow control; drop anything left from before we opened.
        tty.setraw(self.fd)
        attrs = termios.tcgetattr(self.fd)
        attrs[4] = attrs[5] = termios.B115200
        attrs[2] &= ~(termios.CRTSCTS | termios.PARENB | termios.CSTOPB)
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        termios.tcflush(self.fd, termios.TCIFLUSH)
        self.buffer = bytearray()
        self.frames: list[Received] = []
        self.seq = 0
        self.last_sent_at = 0.0
        self.retries = 0

    def close(self) -> None:
        """Close the port."""
        os.close(self.fd)

    def send(self, seq: int, cmd: int, payload: bytes = b"") -> None:
        """Write one frame and note when it left."""
        data = build(seq, cmd, payload)
        # Noted before the write: the belt cannot have seen the frame any earlier.
        self.last_sent_at = time.monotonic()
        written = 0
        while written < len(data):
            written += os.write(self.fd, data[written:])

    def next_seq(self) -> int:
        """1..255, then 1 again."""
        self.seq = self.seq % 255 + 1
        return self.seq

    def read_frame(self, deadline: float) -> Received | None:
        """The next valid frame, or None at the deadline (monotonic seconds)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 256)
                if not chunk:
                    raise ConnectionError("the port hung up")
                self.buffer += chunk

    def _parse(self) -> Received | None:
        buf = self.buffer
        while True:
            start = buf.find(SOF)
            if start < 0:
                buf.clear()
                return None
            del buf[:start]
            if len(buf) < 2:
                return None
            length = buf[1]
            if not 2 <= length <= 34:
                del buf[:1]
                continue
            if len(buf) < length + 4:
                return None
            body = bytes(buf[1 : 2 + length])
            if int.from_bytes(buf[2 + length : length + 4], "big") != crc16(body):
                del buf[:1]
                continue
            del buf[: length + 4]
            frame = Received(body[1], body[2], body[3:], time.monotonic())
            self.frames.append(frame)
            return frame

    def command(self, cmd: int, payload: bytes = b"") -> Received:
        """Send a command and return the answer with the same SEQ, retrying per rule 2."""
        seq = self.next_seq()
        for attempt in range(1 + RETRIES):
            self.retries += attempt > 0
            self.send(seq, cmd, payload)
            deadline = self.last_sent_at + ANSWER_WAIT
            while (frame := self.read_frame(deadline)) is not None:
                if frame.seq == seq:
                    return frame
        raise ConnectionError(f"no answer to command 0x{cmd:02x}")

    def wait_event(self, timeout: float) -> Received | None:
        """The next EVENT frame (SEQ 0), or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        while (frame := self.read_frame(deadline)) is not None:
            if frame.cmd == EVENT and frame.seq == 0:
                return frame
        return None


# -- the acceptance test ------------------------------------------------------------------------


def test_independent_codec_matches_the_documented_vectors() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert build(1, HELLO).hex(" ") == "a5 02 01 01 81 ec"
    levels = bytes([0, 64, 128, 255])
    assert build(2, SET_LEVELS, levels).hex(" ") == "a5 06 02 02 00 40 80 ff 87 ed"
    assert build(3, PING).hex(" ") == "a5 02 03 06 97 69"
    assert build(1, ACK, b"\x01").hex(" ") == "a5 03 01 80 01 23 95"
    assert build(0, EVENT, b"\x01").hex(" ") == "a5 03 00 90 01 17 d6"


@dataclass
class Session:
    """What the host saw."""

    info: Received
    ack: Received
    event: Received | None
    silence: float
    retries: int


def run_session(path: str) -> Session:
    """HELLO, SET_LEVELS, then silence until the watchdog speaks."""
    host = VB1Host(path)
    try:
        info = host.command(HELLO)
        ack = host.command(SET_LEVELS, bytes([0, 64, 128, 255]))
        last_sent = host.last_sent_at
        event = host.wait_event(timeout=3.0)
        silence = (event.at if event else time.monotonic()) - last_sent
        return Session(info, ack, event, silence, host.retries)
    finally:
        host.close()


@pytest.fixture
async def belt(tmp_path: Path) -> AsyncIterator[tuple[VB1Firmware, PtyEndpoint]]:
    """A 4-motor VB1 belt without heater, served on a pty behind a symlink."""
    loop = asyncio.get_running_loop()
    firmware = VB1Firmware("belt-1", motors=4, heater=False, now=loop.time())
    endpoint = PtyEndpoint(firmware, link_path=tmp_path / "ttyVB1")
    await endpoint.start()
    try:
        yield firmware, endpoint
    finally:
        await endpoint.stop()


async def test_independent_host_talks_to_the_simulated_belt(
    belt: tuple[VB1Firmware, PtyEndpoint],
) -> None:
    firmware, endpoint = belt
    async with asyncio.timeout(15):
        session = await asyncio.to_thread(run_session, endpoint.path)

    # HELLO gets INFO: protocol 1, 4 motors, no heater, the serial number.
    assert session.info.cmd == INFO
    assert session.info.seq == 1
    info = session.info.payload
    assert len(info) == 13
    assert info[0] == 1
    assert info[3] == 4
    assert info[4] & 0x01 == 0
    assert info[5:13] == b"SIM00001"

    # SET_LEVELS gets ACK of SET_LEVELS.
    assert session.ack.cmd == ACK
    assert session.ack.seq == 2
    assert session.ack.payload == bytes([SET_LEVELS])

    # Silence trips the watchdog: EVENT 1 between 1.0 and 1.5 s after the last frame.
    assert session.event is not None, f"no EVENT within 3 s (retries: {session.retries})"
    assert session.event.payload == bytes([EVENT_WATCHDOG])
    assert 1.0 <= session.silence <= 1.5, session.silence
    assert firmware.levels == (0, 0, 0, 0)
    assert firmware.watchdog_tripped_count == 1
