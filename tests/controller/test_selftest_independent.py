"""Acceptance: ``massaged selftest belt=PATH`` drives an independently written VB1 device.

The device below is written from vb1-belt.md alone (its own CRC and framing,
no import from massaged), served on a pseudo-terminal by a plain thread.
"""

from __future__ import annotations

import os
import select
import threading
import tty

import pytest

from controller.cli import main


def _crc(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _frame(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    body = bytes((len(payload) + 2, seq, cmd)) + payload
    return b"\xa5" + body + _crc(body).to_bytes(2, "big")


class IndependentBelt(threading.Thread):
    """A 4-motor VB1 belt without heater, on a pseudo-terminal."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.levels = [0, 0, 0, 0]
        self.driven: set[int] = set()
        self.commands: list[int] = []
        self.running = True

    def run(self) -> None:
        buf = b""
        while self.running:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 256)
            except OSError:
                return
            while True:
                start = buf.find(b"\xa5")
                if start < 0 or len(buf) < start + 2:
                    break
                buf = buf[start:]
                total = buf[1] + 4
                if len(buf) < total:
                    break
                frame, buf = buf[:total], buf[total:]
                if int.from_bytes(frame[-2:], "big") != _crc(frame[1:-2]):
                    continue
                self._answer(frame[2], frame[3], frame[4:-2])

    def _answer(self, seq: int, cmd: int, payload: bytes) -> None:
        self.commands.append(cmd)
        if cmd == 0x01:  # HELLO -> INFO
            reply = _frame(seq, 0x81, bytes((1, 1, 0, 4, 0)) + b"INDEP001")
        elif cmd == 0x02 and len(payload) == 4:
            self.levels = list(payload)
            self.driven |= {i + 1 for i, lv in enumerate(payload) if lv}
            reply = _frame(seq, 0x80, bytes((cmd,)))
        elif cmd == 0x04:
            self.levels = [0, 0, 0, 0]
            reply = _frame(seq, 0x80, bytes((cmd,)))
        elif cmd == 0x05:
            reply = _frame(seq, 0x85, bytes((80, 30, 0, *self.levels)))
        elif cmd == 0x06:
            reply = _frame(seq, 0x80, bytes((cmd,)))
        else:
            reply = _frame(seq, 0xFF, bytes((cmd, 2)))
        os.write(self.master, reply)

    def close(self) -> None:
        self.running = False
        self.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


def test_selftest_drives_every_motor_and_leaves_belt_stopped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    belt = IndependentBelt()
    belt.start()
    try:
        code = main(["selftest", f"belt={belt.path}"])
    finally:
        belt.close()
    out = capsys.readouterr().out
    assert code == 0, out
    assert belt.driven == {1, 2, 3, 4}
    assert belt.levels == [0, 0, 0, 0]
    assert 0x04 in belt.commands  # an explicit STOP
    assert "INDEP001" in out
    assert "stopped: every output at zero" in out
