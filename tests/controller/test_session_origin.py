"""The demo puts its recording on the program's time axis: origin from the banner and status."""

from __future__ import annotations

import pytest

from controller.session_origin import SessionOrigin, recording_t0


def test_the_simulator_banner_gives_the_recordings_t0() -> None:
    banner = "# radio /tmp/x/radio.sock; recording t=0 at monotonic 1234.567890; Ctrl-C to stop\n"
    assert recording_t0(banner) == 1234.56789
    assert recording_t0("# radio /tmp/x/radio.sock; Ctrl-C to stop\n") is None


def test_the_earliest_status_estimate_wins_and_maps_onto_the_recording() -> None:
    # The session (×10) started at monotonic 1015; the simulator (×10) at 1000.
    origin = SessionOrigin(speed=10.0)
    origin.seen(received_at=1017.003, elapsed=20.0)  # an answer that took 3 ms
    origin.seen(received_at=1018.0005, elapsed=30.0)  # 0.5 ms: closer
    origin.seen(received_at=1030.0, elapsed=40.0)  # after a pause: far later, ignored
    axis = origin.axis(t0=1000.0, recording_speed=10.0)
    assert axis is not None
    assert axis.origin == pytest.approx(150.005)
    assert axis.ratio == 1.0
    # A change the recording has at t=160 happened 10 program seconds into the session.
    assert axis.program_t(160.005) == pytest.approx(10.0)


def test_no_axis_without_both_origins() -> None:
    assert SessionOrigin(speed=10.0).axis(t0=1000.0, recording_speed=10.0) is None
    origin = SessionOrigin(speed=10.0)
    origin.seen(received_at=5.0, elapsed=0.0)
    assert origin.axis(t0=None, recording_speed=10.0) is None
