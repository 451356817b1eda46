"""The simulated SP1 pillow firmware against every rule of docs/protocols/sp1-pillow.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.capabilities import KneadDirection
from devices.protocols import sp1
from devices.protocols.sp1 import Command, StateFlag
from simulator.firmware.sp1 import SP1Firmware
from simulator.recording import Recorder

SET_2_AUTO_HEAT = bytes.fromhex("55aa04020202010b")
STOP = bytes.fromhex("55aa010304")
QUERY_INFO = bytes.fromhex("55aa010102")


def states(fw: SP1Firmware) -> list[sp1.State]:
    """Decode every STATE the pillow notified since the last call."""
    out: list[sp1.State] = []
    for target, data in fw.take_outgoing():
        assert target == sp1.DATA_UUID
        frame = sp1.decode(data)
        assert frame.cmd == Command.STATE
        out.append(sp1.State.decode(frame.payload))
    return out


def write(fw: SP1Firmware, data: bytes, now: float) -> list[sp1.State]:
    """One write from the host; the STATEs it caused."""
    fw.receive(data, now, source=sp1.DATA_UUID)
    return states(fw)


def set_(speed: int, direction: int = 0, heat: int = 0) -> bytes:
    return sp1.encode(sp1.Frame(Command.SET, bytes((speed, direction, heat))))


def query() -> bytes:
    return sp1.encode(sp1.query_state())


def pillow(**kwargs: Any) -> SP1Firmware:
    return SP1Firmware("pillow-1", **kwargs)


# -- vectors and framing ----------------------------------------------------------


def test_identity() -> None:
    fw = pillow(serial="A7")
    assert fw.ble_name == "SP1-A7"
    assert fw.service_uuids == (sp1.SERVICE_UUID,)


def test_query_info_vector() -> None:
    fw = pillow(nodes=4, heater=True)
    fw.receive(QUERY_INFO, 0.0, source=sp1.DATA_UUID)
    ((target, data),) = fw.take_outgoing()
    assert target == sp1.DATA_UUID
    frame = sp1.decode(data)
    assert frame.cmd == Command.INFO
    info = sp1.Info.decode(frame.payload)
    assert (info.firmware_major, info.firmware_minor, info.nodes, info.heater) == (1, 0, 4, True)
    fw2 = pillow(heater=False, nodes=6)
    fw2.receive(QUERY_INFO, 0.0)
    info2 = sp1.Info.decode(sp1.decode(fw2.take_outgoing()[0][1]).payload)
    assert (info2.nodes, info2.heater) == (6, False)


def test_set_vector_and_state_vector() -> None:
    fw = pillow()
    (answer,) = write(fw, SET_2_AUTO_HEAT, 0.0)
    assert (answer.speed, answer.direction, answer.heat) == (2, 2, True)
    assert answer.run_time == 0
    fw.tick(74.9)
    states(fw)
    fw.set_temperature(38.0, 75.0)
    states(fw)
    fw.receive(query(), 75.0)
    ((_, data),) = fw.take_outgoing()
    assert data == bytes.fromhex("55aa098202020126ff004b0000")


def test_stop_vector() -> None:
    fw = pillow()
    write(fw, set_(3, 1, 1), 0.0)
    (answer,) = write(fw, STOP, 0.5)
    assert (answer.speed, answer.heat, answer.run_time) == (0, False, 0)
    # STOP keeps the direction setting.
    assert answer.direction == 1
    assert not fw.running
    assert fw.is_quiet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x55",
        b"\x55\xaa\x01\x04",  # too short
        b"\x55\xaa\x01\x04\x06",  # bad SUM
        b"\x54\xaa\x01\x04\x05",  # bad header
        b"\x55\xaa\x02\x04\x06",  # LEN does not match the write
        b"\x55\xaa\x00\x04\x04",  # LEN 0
        b"\x55\xaa\x01\x04\x05\x55\xaa\x01\x04\x05",  # two frames in one write
        sp1.encode(sp1.Frame(Command.QUERY_STATE, b"\x00")),  # payload where none is
        sp1.encode(sp1.Frame(Command.SET, b"\x01\x00")),  # SET needs three bytes
        sp1.encode(sp1.Frame(Command.STOP, b"\x00")),
        sp1.encode(sp1.Frame(Command.QUERY_INFO, b"\x00")),
        sp1.encode(sp1.Frame(0x05)),  # unknown
        sp1.encode(sp1.Frame(Command.STATE, bytes(8))),  # device-only
        sp1.encode(sp1.Frame(Command.INFO, bytes(5))),
    ],
)
def test_bad_writes_are_ignored_silently(data: bytes) -> None:
    fw = pillow()
    write(fw, set_(1), 0.0)
    assert write(fw, data, 0.1) == []
    assert fw.knead_speed == 1


def test_writes_to_another_characteristic_are_ignored() -> None:
    fw = pillow()
    fw.receive(set_(1), 0.0, source="0000ffe2-0000-1000-8000-00805f9b34fb")
    assert fw.take_outgoing() == []
    assert fw.knead_speed == 0


@pytest.mark.parametrize("payload", [(4, 0, 0), (1, 3, 0), (1, 0, 2), (255, 255, 255)])
def test_invalid_set_answers_unchanged_state(payload: tuple[int, int, int]) -> None:
    fw = pillow()
    write(fw, set_(2, 1, 0), 0.0)
    (answer,) = write(fw, set_(*payload), 0.1)
    assert (answer.speed, answer.direction, answer.heat) == (2, 1, False)
    assert (fw.knead_speed, fw.direction, fw.heat) == (2, KneadDirection.COUNTER_CLOCKWISE, False)


def test_commands_are_idempotent() -> None:
    fw = pillow()
    assert len(write(fw, SET_2_AUTO_HEAT, 0.0)) == 1
    (again,) = write(fw, SET_2_AUTO_HEAT, 0.1)
    assert (again.speed, again.direction, again.heat) == (2, 2, True)


# -- rule 2: periodic STATE and changes ---------------------------------------------


def test_state_once_a_second_while_running_only() -> None:
    fw = pillow()
    fw.tick(5.0)
    assert fw.take_outgoing() == []
    write(fw, set_(1), 5.0)
    # Nothing physical to catch before (no heat, no heater cut to come).
    assert fw.next_deadline(5.0) == 6.0
    assert fw.next_deadline(5.99) == 6.0
    fw.tick(5.99)
    assert states(fw) == []
    fw.tick(6.0)
    (s,) = states(fw)
    assert (s.speed, s.run_time) == (1, 1)
    fw.tick(9.5)
    assert [s.run_time for s in states(fw)] == [2, 3, 4]
    write(fw, STOP, 9.6)
    fw.tick(20.0)
    assert states(fw) == []


def test_heat_alone_is_running() -> None:
    fw = pillow()
    write(fw, set_(0, 0, 1), 0.0)
    assert fw.running
    fw.tick(2.0)
    assert [s.heat for s in states(fw)] == [True, True]


def test_change_is_notified_once() -> None:
    fw = pillow()
    write(fw, set_(1), 0.0)
    fw.set_occupied(False, 0.2)
    (s,) = states(fw)
    assert s.empty
    fw.set_occupied(False, 0.3)
    assert states(fw) == []
    fw.set_occupied(True, 0.4)
    assert not states(fw)[0].empty


def test_empty_pillow_flag_while_stopped() -> None:
    fw = pillow()
    assert not fw.state(0.0).empty
    fw.set_occupied(False, 1.0)
    (s,) = states(fw)
    assert s.flags == StateFlag.EMPTY
    assert s.speed == 0
    (q,) = write(fw, query(), 1.5)
    assert q.empty
    # The pressure switch reports; it does not refuse (the daemon decides).
    (answer,) = write(fw, set_(1), 2.0)
    assert answer.speed == 1
    assert answer.empty


# -- rule 3: auto-off --------------------------------------------------------------------


@pytest.mark.parametrize("speed", [1.0, 10.0, 60.0])
def test_auto_off_after_15_simulated_minutes(speed: float) -> None:
    recorder = Recorder(speed=speed)
    fw = pillow(speed=speed, recorder=recorder)
    write(fw, set_(2, 0, 1), 0.0)
    # Changing the setting keeps the same run.
    write(fw, set_(3, 1, 0), 1.0)
    off_at = 900.0 / speed
    fw.tick(off_at - 0.01)
    assert fw.next_deadline(off_at - 0.01) == off_at
    fw.tick(off_at - 0.001)
    assert fw.running
    states(fw)
    fw.tick(off_at)
    last = states(fw)[-1]
    assert last.auto_off
    assert (last.speed, last.heat) == (0, False)
    assert not fw.running
    assert fw.auto_off_count == 1
    speeds = [r for r in recorder.rows if r["channel"] == "speed"]
    assert speeds[-1] == {
        "t": 900.0,
        "device": "pillow-1",
        "kind": "pillow",
        "channel": "speed",
        "value": 0,
    }
    fw.tick(off_at + 10.0)
    assert states(fw) == []
    # The flag stays until a new SET, which starts a new run and clears it.
    assert write(fw, query(), off_at + 11.0)[0].auto_off
    (again,) = write(fw, set_(1), off_at + 12.0)
    assert not again.auto_off
    assert fw.running
    fw.tick(off_at + 12.0 + 899.0 / speed)
    assert fw.running


def test_auto_off_when_tick_is_late() -> None:
    fw = pillow()
    write(fw, set_(1), 0.0)
    fw.tick(2000.0)
    sent = states(fw)
    # 899 periodic STATEs, then the auto-off STATE at 900 s; nothing after.
    assert len(sent) == 900
    assert sent[-1].auto_off
    assert sent[-2].run_time == 899
    assert not fw.running


def test_stop_resets_the_auto_off_clock() -> None:
    fw = pillow(speed=60.0)
    write(fw, set_(1), 0.0)
    write(fw, STOP, 10.0)
    write(fw, set_(1), 10.5)
    fw.tick(20.0)
    assert fw.running
    assert fw.state(20.0).run_time == 570


# -- rule 4: heat --------------------------------------------------------------------------


def test_overheat_cuts_heater_and_hysteresis() -> None:
    fw = pillow()
    write(fw, set_(2, 0, 1), 0.0)
    fw.overheat(0.5)
    (cut,) = states(fw)
    assert cut.overheat
    assert not cut.heat
    assert cut.speed == 2
    assert fw.outputs["heater"] == 0
    # Asking for heat while overheated runs the nodes but leaves the heater off.
    (answer,) = write(fw, set_(3, 0, 1), 0.6)
    assert (answer.speed, answer.heat) == (3, False)
    fw.set_temperature(46.0, 0.7)
    assert fw.overheated
    assert states(fw) == []
    fw.set_temperature(44.9, 0.8)
    (cleared,) = states(fw)
    assert not cleared.overheat
    # The heater does not come back by itself.
    assert not cleared.heat
    (answer,) = write(fw, set_(3, 0, 1), 0.9)
    assert answer.heat


def test_overheat_with_heat_only_stops_the_run() -> None:
    fw = pillow()
    write(fw, set_(0, 0, 1), 0.0)
    fw.overheat(0.5)
    (cut,) = states(fw)
    assert cut.overheat
    assert not fw.running
    assert cut.run_time == 0
    fw.tick(5.0)
    assert states(fw) == []


def test_natural_heating_and_cut_at_50() -> None:
    fw = pillow(speed=10.0)
    fw.heater_rate = 0.5
    write(fw, set_(1, 0, 1), 0.0)
    t = 0.0
    cut_at = None
    while t < 20.0 and cut_at is None:
        t += 0.05
        fw.tick(t)
        if any(s.overheat for s in states(fw)):
            cut_at = t
    assert cut_at is not None
    # k = 0.1/17, settle 25 + 0.5/k = 110 °C: 50 °C after ln(85/60)/k ≈ 59.2 s.
    assert cut_at * 10.0 == pytest.approx(59.2, abs=1.0)
    assert 50.0 <= fw.temperature < 50.5


def test_heater_settles_warm() -> None:
    fw = pillow()
    write(fw, set_(0, 0, 1), 0.0)
    fw.tick(240.0)
    states(fw)
    assert 36.0 < fw.temperature < 39.0
    fw.tick(899.0)
    assert 41.0 < fw.temperature < 43.0
    assert not fw.overheated


def test_pillow_without_heater_never_heats() -> None:
    fw = pillow(heater=False)
    (answer,) = write(fw, set_(1, 0, 1), 0.0)
    assert not answer.heat
    assert "heater" not in fw.outputs


# -- rule 5: link drop -------------------------------------------------------------------


def test_link_down_stops_at_once_and_stays_silent() -> None:
    recorder = Recorder()
    fw = pillow(recorder=recorder)
    write(fw, set_(3, 2, 1), 0.0)
    fw.tick(2.3)
    assert len(states(fw)) == 2
    fw.link_down(2.3)
    # Nobody listens any more: the stop is not notified.
    assert fw.take_outgoing() == []
    assert not fw.running
    assert fw.is_quiet
    assert fw.outputs["speed"] == 0
    assert [r["t"] for r in recorder.rows if r["channel"] == "speed"] == [0.0, 0.0, 2.3]
    fw.tick(10.0)
    fw.set_occupied(False, 11.0)
    assert fw.take_outgoing() == []
    fw.link_up(12.0)
    (q,) = write(fw, query(), 12.5)
    assert q.speed == 0
    assert q.empty


# -- run time, direction, battery, recording -------------------------------------------


def test_run_time_counts_simulated_seconds() -> None:
    fw = pillow(speed=4.0)
    write(fw, set_(1), 10.0)
    assert fw.state(12.5).run_time == 10
    assert fw.state(9.0).run_time == 0


def test_auto_reverse_flips_every_60_seconds() -> None:
    fw = pillow()
    write(fw, set_(1, 2, 0), 100.0)
    assert fw.rotation_at(100.0) == KneadDirection.CLOCKWISE
    assert fw.rotation_at(159.9) == KneadDirection.CLOCKWISE
    assert fw.rotation_at(160.0) == KneadDirection.COUNTER_CLOCKWISE
    assert fw.rotation_at(220.0) == KneadDirection.CLOCKWISE
    write(fw, set_(1, 1, 0), 230.0)
    assert fw.rotation_at(300.0) == KneadDirection.COUNTER_CLOCKWISE


def test_recording_channels() -> None:
    recorder = Recorder()
    fw = pillow(recorder=recorder)
    write(fw, SET_2_AUTO_HEAT, 1.0)
    write(fw, STOP, 2.0)
    values = [(r["t"], r["channel"], r["value"]) for r in recorder.rows]
    assert values == [
        (0.0, "speed", 0),
        (0.0, "direction", "clockwise"),
        (0.0, "heater", 0),
        (1.0, "speed", 2),
        (1.0, "direction", "auto_reverse"),
        (1.0, "heater", 1),
        (2.0, "speed", 0),
        (2.0, "heater", 0),
    ]


def test_mains_and_battery() -> None:
    assert pillow().state(0.0).battery == 0xFF
    with pytest.raises(ValueError, match="mains"):
        pillow().set_battery(10, 0.0)
    fw = pillow(battery=90, speed=100.0)
    fw.tick(10.0)
    assert fw.battery == 90
    write(fw, set_(3, 0, 1), 10.0)
    fw.tick(12.0)
    battery = fw.battery
    assert battery is not None
    assert 83 <= battery <= 85
    fw.set_battery(5, 12.0)
    states(fw)
    assert write(fw, query(), 12.0)[0].battery == 5


@settings(max_examples=200, deadline=None)
@given(
    writes=st.lists(
        st.one_of(
            st.binary(max_size=24),
            st.builds(
                lambda cmd, payload: sp1.encode(sp1.Frame(cmd, payload)),
                st.sampled_from([1, 2, 3, 4, 5, 0x81, 0x82]),
                st.binary(max_size=4),
            ),
        ),
        max_size=20,
    ),
)
def test_arbitrary_writes_never_raise(writes: list[bytes]) -> None:
    fw = pillow(battery=50)
    t = 0.0
    for data in writes:
        t += 0.4
        fw.receive(data, t)
        fw.tick(t + 0.2)
        for target, out in fw.take_outgoing():
            assert target == sp1.DATA_UUID
            assert sp1.decode(out).cmd in (Command.INFO, Command.STATE)
        assert 0 <= fw.knead_speed <= sp1.MAX_SPEED
