"""The simulated VB1 belt firmware against every rule of docs/protocols/vb1-belt.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.protocols import vb1
from devices.protocols.vb1 import Command, EventCode, NakCode, StatusFlag
from simulator.firmware.physics import PHYSICS_STEP
from simulator.firmware.vb1 import VB1Firmware
from simulator.recording import Recorder

EVENT_WATCHDOG = bytes.fromhex("a50300900117d6")


def frames_out(fw: VB1Firmware) -> list[vb1.Frame]:
    """Decode everything the belt sent since the last call."""
    return [vb1.decode(data) for _, data in fw.take_outgoing()]


def send(fw: VB1Firmware, frame: vb1.Frame, now: float) -> list[vb1.Frame]:
    """Send one host frame and return the belt's answers."""
    fw.receive(vb1.encode(frame), now)
    return frames_out(fw)


def ready_belt(**kwargs: Any) -> VB1Firmware:
    """A belt that has been greeted at t=0."""
    fw = VB1Firmware("belt-1", **kwargs)
    send(fw, vb1.hello(1), 0.0)
    return fw


def nak(seq: int, cmd: int, code: NakCode) -> vb1.Frame:
    return vb1.nak(seq, cmd, code)


def status(fw: VB1Firmware, now: float, seq: int = 50) -> vb1.Status:
    (answer,) = send(fw, vb1.get_status(seq), now)
    assert answer.cmd == Command.STATUS
    assert answer.seq == seq
    return vb1.Status.decode(answer.payload)


def run_fed(fw: VB1Firmware, start: float, end: float, step: float = 0.25) -> list[vb1.Frame]:
    """Keep the watchdog fed with PINGs from start to end; return every unsolicited frame."""
    events: list[vb1.Frame] = []
    t = start
    while t < end:
        t = min(end, t + step)
        fw.tick(t)
        fw.receive(vb1.encode(vb1.ping(200)), t)
        events += [f for f in frames_out(fw) if f.cmd != Command.ACK]
    return events


# -- vectors and framing ----------------------------------------------------------


def test_hello_vector_answers_info() -> None:
    fw = VB1Firmware("belt-1", serial="AB123456", firmware_version=(2, 7))
    assert not fw.ready
    fw.receive(bytes.fromhex("a502010181ec"), 0.0)
    (answer,) = frames_out(fw)
    assert answer.seq == 1
    assert answer.cmd == Command.INFO
    assert len(answer.payload) == 13
    info = vb1.Info.decode(answer.payload)
    assert info == vb1.Info(1, 2, 7, 4, True, "AB123456")
    assert fw.ready


def test_six_motor_belt_without_heater_reports_itself() -> None:
    fw = VB1Firmware("belt-1", motors=6, heater=False)
    (answer,) = send(fw, vb1.hello(9), 0.0)
    info = vb1.Info.decode(answer.payload)
    assert info.motors == 6
    assert not info.heater
    assert answer.payload[4] == 0


def test_set_levels_vector_is_acked_and_applied() -> None:
    fw = ready_belt()
    fw.receive(bytes.fromhex("a5060202004080ff87ed"), 0.1)
    assert frames_out(fw) == [vb1.ack(2, Command.SET_LEVELS)]
    assert fw.levels == (0, 64, 128, 255)


def test_ping_vector_is_acked() -> None:
    fw = ready_belt()
    fw.receive(bytes.fromhex("a50203069769"), 0.1)
    (answer,) = frames_out(fw)
    assert vb1.encode(answer) == vb1.encode(vb1.ack(3, Command.PING))


def test_frames_in_any_chunks() -> None:
    fw = VB1Firmware("belt-1")
    stream = b"\x00\x13" + bytes.fromhex("a502010181ec") + bytes.fromhex("a5060202004080ff87ed")
    for i, byte in enumerate(stream):
        fw.receive(bytes((byte,)), i * 0.001)
    answers = frames_out(fw)
    assert [a.cmd for a in answers] == [Command.INFO, Command.ACK]
    assert fw.levels == (0, 64, 128, 255)


def test_bad_crc_and_impossible_len_are_dropped_silently() -> None:
    fw = ready_belt()
    bad = bytearray(vb1.encode(vb1.set_levels(2, (9, 9, 9, 9))))
    bad[-1] ^= 0x01
    fw.receive(bytes(bad), 0.1)
    fw.receive(b"\xa5\x01\x02\x03\x04\x05", 0.1)
    fw.receive(b"\xa5\x23" + bytes(40), 0.1)
    assert fw.take_outgoing() == []
    assert fw.levels == (0, 0, 0, 0)
    # The belt resynchronises on the next good frame.
    assert send(fw, vb1.ping(4), 0.2) == [vb1.ack(4, Command.PING)]


def test_answers_echo_seq_and_retries_are_executed_again() -> None:
    fw = ready_belt()
    frame = vb1.set_levels(255, (1, 2, 3, 4))
    assert send(fw, frame, 0.1) == [vb1.ack(255, Command.SET_LEVELS)]
    assert send(fw, frame, 0.2) == [vb1.ack(255, Command.SET_LEVELS)]
    assert send(fw, vb1.hello(17), 0.3)[0].seq == 17
    # A repeated HELLO leaves the outputs alone.
    assert fw.levels == (1, 2, 3, 4)


# -- NAK codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        vb1.set_levels(5, (1, 2, 3, 4)),
        vb1.set_heat(5, True),
        vb1.stop(5),
        vb1.get_status(5),
        vb1.ping(5),
    ],
)
def test_not_ready_before_hello(frame: vb1.Frame) -> None:
    fw = VB1Firmware("belt-1")
    assert send(fw, frame, 0.0) == [nak(5, frame.cmd, NakCode.NOT_READY)]
    assert fw.levels == (0, 0, 0, 0)
    assert not fw.heat


def test_hello_with_payload_is_bad_length_and_not_ready() -> None:
    fw = VB1Firmware("belt-1")
    answers = send(fw, vb1.Frame(1, Command.HELLO, b"\x00"), 0.0)
    assert answers == [nak(1, Command.HELLO, NakCode.BAD_LENGTH)]
    assert not fw.ready


@pytest.mark.parametrize("payload", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_set_levels_needs_exactly_m_bytes(payload: bytes) -> None:
    fw = ready_belt()
    answers = send(fw, vb1.Frame(3, Command.SET_LEVELS, payload), 0.1)
    assert answers == [nak(3, Command.SET_LEVELS, NakCode.BAD_LENGTH)]
    assert fw.levels == (0, 0, 0, 0)


def test_six_motor_belt_refuses_four_levels() -> None:
    fw = ready_belt(motors=6)
    assert send(fw, vb1.set_levels(3, (1, 2, 3, 4)), 0.1) == [
        nak(3, Command.SET_LEVELS, NakCode.BAD_LENGTH)
    ]
    assert send(fw, vb1.set_levels(4, (1, 2, 3, 4, 5, 6)), 0.1) == [vb1.ack(4, Command.SET_LEVELS)]
    assert fw.levels == (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize("cmd", [Command.HELLO, Command.STOP, Command.GET_STATUS, Command.PING])
def test_commands_without_payload_refuse_one(cmd: Command) -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (5, 5, 5, 5)), 0.1)
    assert send(fw, vb1.Frame(3, cmd, b"\x00"), 0.2) == [nak(3, cmd, NakCode.BAD_LENGTH)]
    # Nothing was executed: the motors still run.
    assert fw.levels == (5, 5, 5, 5)


@pytest.mark.parametrize("payload", [b"", b"\x01\x00"])
def test_set_heat_bad_length(payload: bytes) -> None:
    fw = ready_belt()
    answers = send(fw, vb1.Frame(6, Command.SET_HEAT, payload), 0.1)
    assert answers == [nak(6, Command.SET_HEAT, NakCode.BAD_LENGTH)]


@pytest.mark.parametrize("value", [2, 0x80, 0xFF])
def test_set_heat_out_of_range(value: int) -> None:
    fw = ready_belt()
    answers = send(fw, vb1.Frame(7, Command.SET_HEAT, bytes((value,))), 0.1)
    assert answers == [nak(7, Command.SET_HEAT, NakCode.OUT_OF_RANGE)]
    assert vb1.encode(answers[0]) == vb1.encode(vb1.Frame(7, 0xFF, bytes((3, 3))))
    assert not fw.heat


def test_set_heat_without_heater_is_unsupported() -> None:
    fw = ready_belt(heater=False)
    assert send(fw, vb1.set_heat(8, True), 0.1) == [nak(8, Command.SET_HEAT, NakCode.UNSUPPORTED)]
    assert send(fw, vb1.set_heat(9, False), 0.1) == [nak(9, Command.SET_HEAT, NakCode.UNSUPPORTED)]
    assert not fw.heat
    assert "heater" not in fw.outputs


@pytest.mark.parametrize("cmd", [0x00, 0x07, 0x7F, 0x80, 0x81, 0x85, 0x90, 0xFF])
def test_unknown_and_device_commands(cmd: int) -> None:
    fw = ready_belt()
    assert send(fw, vb1.Frame(10, cmd), 0.1) == [nak(10, cmd, NakCode.UNKNOWN_CMD)]
    # Unknown stays unknown before HELLO too.
    fresh = VB1Firmware("belt-2")
    assert send(fresh, vb1.Frame(10, cmd), 0.1) == [nak(10, cmd, NakCode.UNKNOWN_CMD)]


# -- commands ---------------------------------------------------------------------------


def test_stop_zeroes_motors_and_heater() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (10, 20, 30, 40)), 0.1)
    assert send(fw, vb1.set_heat(3, True), 0.1) == [vb1.ack(3, Command.SET_HEAT)]
    assert fw.heat
    assert send(fw, vb1.stop(4), 0.2) == [vb1.ack(4, Command.STOP)]
    assert fw.levels == (0, 0, 0, 0)
    assert not fw.heat
    assert fw.is_quiet


def test_status_reports_battery_temperature_flags_and_levels() -> None:
    fw = ready_belt(battery=80)
    send(fw, vb1.set_levels(2, (1, 2, 3, 4)), 0.1)
    send(fw, vb1.set_heat(3, True), 0.1)
    fw.set_temperature(-5.4, 0.1)
    st_ = status(fw, 0.1)
    assert st_.battery == 80
    assert st_.temperature == -5
    assert st_.flags == StatusFlag.HEATER_ON
    assert st_.levels == (1, 2, 3, 4)


def test_status_on_mains_reports_0xff() -> None:
    fw = ready_belt(battery=None)
    assert status(fw, 0.1).battery == 0xFF
    assert fw.battery is None
    with pytest.raises(ValueError, match="mains"):
        fw.set_battery(50, 0.1)


# -- rule 4: watchdog ------------------------------------------------------------------


def test_watchdog_trips_at_one_second_not_before() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (100, 100, 100, 100)), 0.0)
    # Nothing physical to catch before (the pad is far below the overheat stop).
    assert fw.next_deadline(0.0) == 1.0
    assert fw.next_deadline(0.98) == 1.0
    fw.tick(0.99)
    assert fw.take_outgoing() == []
    assert fw.levels == (100, 100, 100, 100)
    fw.tick(1.0)
    assert fw.take_outgoing() == [(None, EVENT_WATCHDOG)]
    assert fw.levels == (0, 0, 0, 0)
    assert fw.watchdog_tripped_count == 1
    # Once per silence.
    fw.tick(5.0)
    assert fw.take_outgoing() == []
    assert fw.watchdog_tripped_count == 1


def test_watchdog_flag_is_reported_once_then_cleared() -> None:
    fw = ready_belt()
    send(fw, vb1.set_heat(2, True), 0.0)
    fw.tick(1.2)
    assert not fw.heat
    fw.take_outgoing()
    flags = status(fw, 1.3).flags
    assert flags & StatusFlag.WATCHDOG_TRIPPED
    assert not flags & StatusFlag.HEATER_ON
    assert not status(fw, 1.4).flags & StatusFlag.WATCHDOG_TRIPPED


def test_every_valid_frame_feeds_the_watchdog_even_a_nak() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (50, 50, 50, 50)), 0.0)
    t = 0.0
    for i in range(12):
        t += 0.9
        # Refused frames (bad length, unknown command) still prove the host is alive.
        frame = vb1.Frame(3, Command.PING, b"\x01") if i % 2 else vb1.Frame(3, 0x42)
        assert send(fw, frame, t)[0].cmd == Command.NAK
        fw.tick(t + 0.5)
        assert fw.take_outgoing() == []
    assert fw.levels == (50, 50, 50, 50)


def test_bad_crc_does_not_feed_the_watchdog() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (50, 50, 50, 50)), 0.0)
    bad = bytearray(vb1.encode(vb1.ping(3)))
    bad[-2] ^= 0x10
    fw.receive(bytes(bad), 0.5)
    fw.tick(1.0)
    assert fw.take_outgoing() == [(None, EVENT_WATCHDOG)]


def test_watchdog_quiet_when_nothing_is_on() -> None:
    fw = ready_belt()
    fw.tick(10.0)
    assert fw.take_outgoing() == []
    assert fw.watchdog_tripped_count == 0
    assert not status(fw, 10.0).flags & StatusFlag.WATCHDOG_TRIPPED


def test_late_tick_records_the_stop_at_the_expiry() -> None:
    recorder = Recorder()
    fw = VB1Firmware("belt-1", recorder=recorder)
    send(fw, vb1.hello(1), 0.0)
    send(fw, vb1.set_levels(2, (10, 0, 0, 0)), 0.5)
    fw.tick(4.0)
    rows = [r for r in recorder.rows if r["channel"] == "motor1"]
    assert [(r["t"], r["value"]) for r in rows] == [(0.0, 0), (0.5, 10), (1.5, 0)]


def test_frame_at_the_expiry_instant_still_counts() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (10, 0, 0, 0)), 0.0)
    assert send(fw, vb1.ping(3), 1.0) == [vb1.ack(3, Command.PING)]
    assert fw.levels == (10, 0, 0, 0)


def test_fed_watchdog_keeps_running() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (10, 10, 10, 10)), 0.0)
    assert run_fed(fw, 0.0, 30.0) == []
    assert fw.levels == (10, 10, 10, 10)


# -- rule 5: overheat ------------------------------------------------------------------


def test_overheat_stops_everything_and_refuses_until_below_42() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (10, 20, 30, 40)), 0.0)
    send(fw, vb1.set_heat(3, True), 0.0)
    fw.overheat(0.1)
    assert frames_out(fw) == [vb1.event(EventCode.OVERHEAT_STOP)]
    assert fw.levels == (0, 0, 0, 0)
    assert not fw.heat
    assert fw.overheated
    assert status(fw, 0.1).flags & StatusFlag.OVERHEAT
    assert send(fw, vb1.set_levels(4, (0, 1, 0, 0)), 0.2) == [
        nak(4, Command.SET_LEVELS, NakCode.OVERHEAT)
    ]
    assert send(fw, vb1.set_heat(5, True), 0.2) == [nak(5, Command.SET_HEAT, NakCode.OVERHEAT)]
    # Zero levels, heat off, STOP and PING are still fine.
    assert send(fw, vb1.set_levels(6, (0, 0, 0, 0)), 0.2) == [vb1.ack(6, Command.SET_LEVELS)]
    assert send(fw, vb1.set_heat(7, False), 0.2) == [vb1.ack(7, Command.SET_HEAT)]
    assert send(fw, vb1.stop(8), 0.2) == [vb1.ack(8, Command.STOP)]
    # Hysteresis: 45 °C is below 48 but not below 42.
    fw.set_temperature(45.0, 0.3)
    assert fw.overheated
    assert send(fw, vb1.set_levels(9, (1, 1, 1, 1)), 0.3)[0].cmd == Command.NAK
    fw.set_temperature(42.0, 0.4)
    assert fw.overheated
    fw.set_temperature(41.9, 0.5)
    assert not fw.overheated
    assert send(fw, vb1.set_levels(10, (1, 1, 1, 1)), 0.5) == [vb1.ack(10, Command.SET_LEVELS)]
    assert not status(fw, 0.5).flags & StatusFlag.OVERHEAT
    assert fw.take_outgoing() == []


def test_overheat_cools_by_itself() -> None:
    fw = ready_belt()
    fw.overheat(0.0)
    frames_out(fw)
    fw.tick(5.0)
    assert fw.overheated
    fw.tick(60.0)
    assert fw.temperature < 42.0
    assert not fw.overheated
    assert frames_out(fw) == []


def test_heater_warms_and_settles_below_overheat() -> None:
    fw = ready_belt()
    send(fw, vb1.set_heat(2, True), 0.0)
    send(fw, vb1.set_levels(3, (255, 255, 255, 255)), 0.0)
    assert run_fed(fw, 0.0, 10.0) == []
    assert 28.0 < fw.temperature < 31.0
    assert run_fed(fw, 10.0, 400.0, step=0.9) == []
    assert 44.0 < fw.temperature < 48.0
    assert status(fw, 400.0).temperature in (45, 46)


def test_physics_runs_at_speed_while_the_watchdog_stays_real() -> None:
    fw = ready_belt(speed=100.0)
    fw.heater_rate = 2.0
    send(fw, vb1.set_heat(2, True), 0.0)
    events = run_fed(fw, 0.0, 2.0, step=0.05)
    assert events == [vb1.event(EventCode.OVERHEAT_STOP)]
    assert not fw.heat
    assert fw.watchdog_tripped_count == 0


def test_natural_overheat_with_a_strong_heater() -> None:
    recorder = Recorder()
    fw = VB1Firmware("belt-1", recorder=recorder)
    fw.heater_rate = 2.0
    send(fw, vb1.hello(1), 0.0)
    send(fw, vb1.set_heat(2, True), 0.0)
    events = run_fed(fw, 0.0, 40.0)
    assert events == [vb1.event(EventCode.OVERHEAT_STOP)]
    heater = [r for r in recorder.rows if r["channel"] == "heater"]
    assert [r["value"] for r in heater] == [0, 1, 0]
    # k = 0.5/19, settle 25 + 2/k = 101 °C: 48 °C after ln(76/53)/k ≈ 13.7 s.
    assert heater[-1]["t"] == pytest.approx(13.7, abs=1.0)


def test_overheat_event_once_per_episode() -> None:
    fw = ready_belt()
    fw.overheat(0.0)
    fw.set_temperature(55.0, 0.1)
    assert frames_out(fw) == [vb1.event(EventCode.OVERHEAT_STOP)]
    fw.set_temperature(30.0, 0.2)
    fw.overheat(0.3)
    assert frames_out(fw) == [vb1.event(EventCode.OVERHEAT_STOP)]


# -- rule 6: stop button ---------------------------------------------------------------


def test_stop_button_zeroes_everything_and_sends_event_4() -> None:
    fw = ready_belt()
    send(fw, vb1.set_levels(2, (9, 9, 9, 9)), 0.0)
    send(fw, vb1.set_heat(3, True), 0.0)
    fw.press_stop_button(0.3)
    out = fw.take_outgoing()
    assert out == [(None, vb1.encode(vb1.event(EventCode.STOP_BUTTON)))]
    assert fw.is_quiet
    assert not fw.heat
    # Nothing is on any more, so the watchdog has nothing to stop.
    fw.tick(3.0)
    assert fw.take_outgoing() == []


# -- battery ---------------------------------------------------------------------------


def test_low_battery_event_once() -> None:
    fw = ready_belt(battery=12, speed=100.0)
    send(fw, vb1.set_levels(2, (255, 255, 255, 255)), 0.0)
    events = run_fed(fw, 0.0, 3.0, step=0.1)
    assert events == [vb1.event(EventCode.LOW_BATTERY)]
    battery = fw.battery
    assert battery is not None
    assert battery < 10
    assert status(fw, 3.0).flags & StatusFlag.LOW_BATTERY
    assert run_fed(fw, 3.0, 4.0) == []


def test_set_battery_below_10_sends_event_and_rearms_after_recharge() -> None:
    fw = ready_belt(battery=50)
    fw.set_battery(9, 0.1)
    fw.set_battery(5, 0.2)
    assert frames_out(fw) == [vb1.event(EventCode.LOW_BATTERY)]
    assert fw.low_battery
    fw.set_battery(10, 0.3)
    assert not fw.low_battery
    assert not status(fw, 0.3).flags & StatusFlag.LOW_BATTERY
    fw.set_battery(8, 0.4)
    assert frames_out(fw) == [vb1.event(EventCode.LOW_BATTERY)]


def test_battery_idle_does_not_drain() -> None:
    fw = ready_belt(battery=70)
    fw.tick(3600.0)
    assert fw.battery == 70


# -- recording and BLE -----------------------------------------------------------------


def test_recording_channels() -> None:
    recorder = Recorder()
    fw = VB1Firmware("belt-7", motors=6, recorder=recorder, now=10.0)
    send(fw, vb1.hello(1), 10.0)
    send(fw, vb1.set_levels(2, (0, 0, 7, 0, 0, 0)), 10.5)
    send(fw, vb1.set_heat(3, True), 10.5)
    channels = {r["channel"] for r in recorder.rows}
    assert channels == {f"motor{i}" for i in range(1, 7)} | {"heater"}
    assert recorder.rows[-2:] == [
        {"t": 10.5, "device": "belt-7", "kind": "belt", "channel": "motor3", "value": 7},
        {"t": 10.5, "device": "belt-7", "kind": "belt", "channel": "heater", "value": 1},
    ]
    assert fw.outputs["motor3"] == 7


def test_ble_model_speaks_over_nus() -> None:
    fw = VB1Firmware("belt-1", ble=True, serial="00000042")
    assert fw.ble_name == "VB1-00000042"
    assert fw.service_uuids == (vb1.NUS_SERVICE,)
    fw.receive(vb1.encode(vb1.hello(1)), 0.0, source=vb1.NUS_TX)
    assert fw.take_outgoing() == []
    data = vb1.encode(vb1.hello(1))
    fw.receive(data[:3], 0.0, source=vb1.NUS_RX)
    fw.receive(data[3:], 0.0, source=vb1.NUS_RX)
    ((target, answer),) = fw.take_outgoing()
    assert target == vb1.NUS_TX
    assert vb1.decode(answer).cmd == Command.INFO


def test_link_up_drops_a_half_frame() -> None:
    fw = ready_belt()
    data = vb1.encode(vb1.ping(3))
    fw.receive(data[:4], 0.1)
    fw.link_down(0.2)
    fw.link_up(0.3)
    fw.receive(data[4:], 0.4)
    assert fw.take_outgoing() == []
    assert send(fw, vb1.ping(4), 0.5) == [vb1.ack(4, Command.PING)]


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="4 or 6"):
        VB1Firmware("belt-1", motors=5)
    with pytest.raises(ValueError, match="battery"):
        VB1Firmware("belt-1", battery=101)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                lambda seq, cmd, payload: vb1.encode(vb1.Frame(seq, cmd, payload)),
                st.integers(0, 255),
                st.sampled_from([*range(0, 8), 0x80, 0x90, 0xFF]),
                st.binary(max_size=8),
            ),
        ),
        max_size=20,
    ),
    motors=st.sampled_from([4, 6]),
    heater=st.booleans(),
)
def test_arbitrary_bytes_never_raise(chunks: list[bytes], motors: int, heater: bool) -> None:
    fw = VB1Firmware("belt-1", motors=motors, heater=heater)
    t = 0.0
    for chunk in chunks:
        t += 0.3
        fw.receive(chunk, t)
        fw.tick(t + 0.1)
        for target, data in fw.take_outgoing():
            assert target is None
            assert vb1.decode(data).cmd in {
                Command.ACK,
                Command.NAK,
                Command.INFO,
                Command.STATUS,
                Command.EVENT,
            }
        assert all(0 <= level <= 255 for level in fw.levels)


def test_physics_ticks_every_step_only_where_a_threshold_is_near() -> None:
    # Far from every threshold no physics tick is due before the watchdog; near the
    # overheat stop one is due every PHYSICS_STEP, so the stop is caught that soon.
    fw = ready_belt()
    fw.heater_rate = 2.0
    send(fw, vb1.set_heat(2, True), 0.0)
    assert fw.next_deadline(0.0) == 1.0  # 23 °C below the stop: seconds away
    fw.set_temperature(47.95, 0.5)
    assert fw.next_deadline(0.5) == pytest.approx(0.5 + PHYSICS_STEP)
    fw.tick(0.5 + PHYSICS_STEP)
    assert frames_out(fw) == [vb1.event(EventCode.OVERHEAT_STOP)]
