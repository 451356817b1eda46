"""The recording keeps the time each change happened, whatever order its writers stamp
their changes in, and reads back in time order."""

from __future__ import annotations

import json
from pathlib import Path

from controller.recording_file import load_recording
from devices.protocols import vb1
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder, read_recording


def _times(rows: list[dict[str, object]]) -> list[float]:
    return [float(r["t"]) for r in rows]  # type: ignore[arg-type]


def test_a_change_stamped_before_the_last_line_keeps_its_time_and_reads_in_order(
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
    written = [json.loads(line)["device"] for line in path.read_text().splitlines()]
    assert written == ["butterfly-1", "belt-1", "belt-1"]  # the order they came
    # In memory as in the file: a position stays a mark of what came after it.
    assert [r["device"] for r in recorder.rows] == written
    assert _times(recorder.rows) == [5.0, 4.993, 6.0]
    for rows in (read_recording(path), load_recording(path)):
        assert _times(rows) == [4.993, 5.0, 6.0]
        assert [r["device"] for r in rows] == ["belt-1", "butterfly-1", "belt-1"]


def test_times_in_order_are_written_exactly(tmp_path: Path) -> None:
    recorder = Recorder(t0=1.0, speed=2.0)
    for now in (1.0, 1.25, 1.25, 3.0):
        recorder.record(now, "belt-1", "belt", "motor1", 1)
    assert _times(recorder.rows) == [0.0, 0.5, 0.5, 4.0]


def test_rows_of_one_instant_keep_the_order_they_were_written(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(path)
    recorder.record(2.0, "a", "belt", "motor1", 1)
    recorder.record(1.0, "b", "belt", "motor1", 2)
    recorder.record(1.0, "c", "belt", "motor1", 3)
    recorder.record(0.5, "d", "belt", "motor1", 4)
    recorder.close()
    assert [r["device"] for r in read_recording(path)] == ["d", "b", "c", "a"]


def test_a_late_watchdog_on_one_device_is_recorded_when_it_fired(tmp_path: Path) -> None:
    # A belt shares the recorder with another device; the belt's watchdog fires at its
    # due time (1.5) when its tick comes late (at 4.0), after the other wrote at 3.0.
    # The recording must say the belt stopped at 1.5: a stall of the host does not make
    # the device run on, and a safety check reads exactly that instant.
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(path)
    belt = VB1Firmware("belt-1", recorder=recorder)
    belt.receive(vb1.encode(vb1.hello(1)), 0.0)
    belt.receive(vb1.encode(vb1.set_levels(2, (10, 0, 0, 0))), 0.5)
    recorder.record(3.0, "butterfly-1", "butterfly", "output_a", 5)
    belt.tick(4.0)
    recorder.close()
    rows = read_recording(path)
    times = _times(rows)
    assert times == sorted(times)
    for found in (rows, recorder.rows):
        stop = [r for r in found if r["channel"] == "motor1" and r["value"] == 0][-1]
        assert stop["t"] == 1.5
