"""The recording's time never goes back, whatever order its writers stamp their changes in."""

from __future__ import annotations

import json
from pathlib import Path

from devices.protocols import vb1
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder, read_recording


def _times(rows: list[dict[str, object]]) -> list[float]:
    return [float(r["t"]) for r in rows]  # type: ignore[arg-type]


def test_a_change_stamped_before_the_last_line_is_written_at_the_last_time(
    tmp_path: Path,
) -> None:
    # The demo's case: the serial belt's frame is stamped when it arrived, but handled
    # after the butterfly (another writer) recorded a later change.
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(path, t0=100.0, speed=10.0)
    recorder.record(100.5, "butterfly-1", "butterfly", "output_a", 12)
    recorder.record(100.4993, "belt-1", "belt", "motor5", 0)  # arrived 0.7 ms earlier
    recorder.record(100.6, "belt-1", "belt", "motor5", 40)
    recorder.close()
    rows = read_recording(path)
    assert _times(rows) == [5.0, 5.0, 6.0]
    assert _times(recorder.rows) == [5.0, 5.0, 6.0]
    assert [r["device"] for r in rows] == ["butterfly-1", "belt-1", "belt-1"]


def test_times_in_order_are_written_exactly(tmp_path: Path) -> None:
    recorder = Recorder(t0=1.0, speed=2.0)
    for now in (1.0, 1.25, 1.25, 3.0):
        recorder.record(now, "belt-1", "belt", "motor1", 1)
    assert _times(recorder.rows) == [0.0, 0.5, 0.5, 4.0]


def test_a_late_watchdog_on_one_device_does_not_rewind_the_file(tmp_path: Path) -> None:
    # A belt shares the recorder with another device; the belt's watchdog fires at its
    # due time (1.5) when its tick comes late (at 4.0), after the other wrote at 3.0.
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(path)
    belt = VB1Firmware("belt-1", recorder=recorder)
    belt.receive(vb1.encode(vb1.hello(1)), 0.0)
    belt.receive(vb1.encode(vb1.set_levels(2, (10, 0, 0, 0))), 0.5)
    recorder.record(3.0, "butterfly-1", "butterfly", "output_a", 5)
    belt.tick(4.0)
    recorder.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    times = [line["t"] for line in lines]
    assert times == sorted(times)
    stop = [ln for ln in lines if ln["channel"] == "motor1" and ln["value"] == 0][-1]
    assert stop["t"] == 3.0  # not 1.5, which is before the butterfly's line
