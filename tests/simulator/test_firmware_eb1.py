"""The simulated EB1 butterfly firmware against docs/protocols/eb1-butterfly.md and the vendor."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.protocols import eb1
from devices.protocols.eb1 import StrengthMode
from simulator.firmware.eb1 import EB1Firmware
from simulator.recording import Recorder

# Vectors (docs/protocols/eb1-butterfly.md, also the vendor's README_V3 examples).
B0_A_WAVE = bytes.fromhex("b00000000a0a0a0a000a141e0000000000000065")
B0_SEQ1_A_PLUS_10 = bytes.fromhex("b0140a00283c5064645a5a5a0000000000000065")
B0_SEQ1_ZERO_SILENT = bytes.fromhex("b01f000000000000000000650000000000000065")
B1_SEQ1_A25 = bytes.fromhex("b1011900")
BF_150_30 = bytes.fromhex("bf961e80808080")
BE_150_30 = bytes.fromhex("be961e80808080")

WAVE_FREQ: eb1.Wave = (20, 20, 20, 20)
WAVE_FULL: eb1.Wave = (100, 100, 100, 100)


def notified(fw: EB1Firmware) -> list[bytes]:
    """Everything notified on 0x150B since the last call."""
    out = fw.take_outgoing()
    assert all(target == eb1.NOTIFY_UUID for target, _ in out)
    return [data for _, data in out]


def b0(**kwargs: Any) -> bytes:
    """A B0 with both channels silent unless told otherwise."""
    return eb1.encode(eb1.B0(**kwargs))


def both_waves(intensity_a: eb1.Wave = WAVE_FULL, intensity_b: eb1.Wave = WAVE_FULL) -> bytes:
    return b0(freq_a=WAVE_FREQ, intensity_a=intensity_a, freq_b=WAVE_FREQ, intensity_b=intensity_b)


def set_strengths(fw: EB1Firmware, a: int, b: int, now: float) -> None:
    fw.receive(
        b0(seq=1, mode_a=StrengthMode.SET, mode_b=StrengthMode.SET, value_a=a, value_b=b), now
    )
    notified(fw)


# -- identity, BF/BE ------------------------------------------------------------------


def test_identity() -> None:
    fw = EB1Firmware("butterfly-1")
    assert fw.ble_name == "EB1-47L121000"
    assert fw.service_uuids == (eb1.SERVICE_UUID, eb1.BATTERY_SERVICE_UUID)
    assert fw.strengths == (0, 0)
    assert fw.is_quiet


def test_bf_vector_answers_be_vector() -> None:
    fw = EB1Firmware("butterfly-1")
    fw.receive(BF_150_30, 0.0, source=eb1.WRITE_UUID)
    assert notified(fw) == [BE_150_30]
    assert fw.soft_limits == (150, 30)
    assert fw.balances == (128, 128, 128, 128)


def test_bf_out_of_range_limit_is_left_unchanged() -> None:
    fw = EB1Firmware("butterfly-1", soft_limits=(120, 80))
    fw.receive(bytes((0xBF, 201, 255, 1, 2, 3, 4)), 0.0)
    assert notified(fw) == [bytes((0xBE, 120, 80, 1, 2, 3, 4))]
    fw.receive(bytes((0xBF, 0, 200, 0, 255, 0, 255)), 0.1)
    assert notified(fw) == [bytes((0xBE, 0, 200, 0, 255, 0, 255))]


def test_lowering_a_limit_clamps_the_strength_and_reports_it_with_seq_0() -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 60, 50, 0.0)
    fw.receive(BF_150_30, 0.05)
    assert notified(fw) == [BE_150_30, bytes((0xB1, 0, 60, 30))]
    fw.receive(bytes((0xBF, 40, 30, 128, 128, 128, 128)), 0.06)
    assert notified(fw) == [bytes((0xBE, 40, 30, 128, 128, 128, 128)), bytes((0xB1, 0, 40, 30))]
    assert fw.strengths == (40, 30)
    # Raising a limit again changes no strength: BE only.
    fw.receive(BF_150_30, 0.07)
    assert notified(fw) == [BE_150_30]


# -- B0 strengths and B1 ---------------------------------------------------------------


def test_vendor_sequence_example_gives_the_b1_vector() -> None:
    fw = EB1Firmware("butterfly-1")
    fw.turn_wheel(10, None, 0.0)
    notified(fw)
    # Vendor example No.2: +5 with sequence 0 changes the strength but sends no B1.
    fw.receive(bytes.fromhex("b00405000a0a0a0a000a141e0000000000000065"), 0.1)
    assert notified(fw) == []
    assert fw.strengths == (15, 0)
    fw.receive(B0_SEQ1_A_PLUS_10, 0.2)
    assert notified(fw) == [B1_SEQ1_A25]
    assert fw.strengths == (25, 0)


def test_sequenced_zero_with_silent_channels() -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 30, 40, 0.0)
    fw.receive(both_waves(), 0.1)
    assert fw.effective_outputs == (30, 40)
    fw.receive(B0_SEQ1_ZERO_SILENT, 0.15)
    assert notified(fw) == [bytes((0xB1, 1, 0, 0))]
    assert fw.strengths == (0, 0)
    assert fw.effective_outputs == (0, 0)
    assert fw.is_quiet


def test_sequenced_request_without_effect_still_gets_b1() -> None:
    fw = EB1Firmware("butterfly-1")
    # Daemon rule 1: a sequenced "set both to 0" on a unit already at 0.
    fw.receive(B0_SEQ1_ZERO_SILENT, 0.0)
    assert notified(fw) == [bytes((0xB1, 1, 0, 0))]
    # A sequenced B0 that asks for no change at all gets nothing.
    fw.receive(b0(seq=5, value_a=9, value_b=9), 0.05)
    assert notified(fw) == []
    assert fw.strengths == (0, 0)


@pytest.mark.parametrize("seq", range(1, 16))
def test_b1_echoes_every_sequence_number(seq: int) -> None:
    fw = EB1Firmware("butterfly-1")
    fw.receive(b0(seq=seq, mode_b=StrengthMode.INCREASE, value_b=3), 0.0)
    assert notified(fw) == [bytes((0xB1, seq, 0, 3))]


def test_strength_modes_and_clamping() -> None:
    fw = EB1Firmware("butterfly-1", soft_limits=(200, 50))
    cases: list[tuple[StrengthMode, int, StrengthMode, int, tuple[int, int]]] = [
        (StrengthMode.SET, 10, StrengthMode.SET, 10, (10, 10)),
        (StrengthMode.INCREASE, 5, StrengthMode.DECREASE, 8, (15, 2)),
        (StrengthMode.NO_CHANGE, 99, StrengthMode.NO_CHANGE, 99, (15, 2)),
        (StrengthMode.SET, 5, StrengthMode.INCREASE, 8, (5, 10)),
        (StrengthMode.INCREASE, 195, StrengthMode.INCREASE, 195, (200, 50)),
        (StrengthMode.DECREASE, 201, StrengthMode.INCREASE, 201, (200, 50)),
        (StrengthMode.DECREASE, 250, StrengthMode.DECREASE, 60, (200, 0)),
        (StrengthMode.SET, 201, StrengthMode.SET, 255, (0, 0)),
        (StrengthMode.SET, 200, StrengthMode.SET, 200, (200, 50)),
    ]
    for i, (mode_a, value_a, mode_b, value_b, expected) in enumerate(cases):
        msg = b0(mode_a=mode_a, value_a=value_a, mode_b=mode_b, value_b=value_b)
        fw.receive(msg, i * 0.1)
        assert fw.strengths == expected, (mode_a, value_a, mode_b, value_b)
    # Sequence 0 throughout: no B1 for any of these host changes.
    assert notified(fw) == []


def test_ramp_by_5_per_100ms() -> None:
    recorder = Recorder()
    fw = EB1Firmware("butterfly-1", recorder=recorder, soft_limits=(32, 200))
    seen: list[int] = []
    for i in range(10):
        t = i * 0.1
        fw.receive(
            b0(
                seq=i % 15 + 1,
                mode_a=StrengthMode.INCREASE,
                value_a=5,
                freq_a=WAVE_FREQ,
                intensity_a=WAVE_FULL,
            ),
            t,
        )
        (b1,) = notified(fw)
        seen.append(b1[2])
    assert seen == [5, 10, 15, 20, 25, 30, 32, 32, 32, 32]
    outputs = [r["value"] for r in recorder.rows if r["channel"] == "output_a"]
    assert outputs == [0, 5, 10, 15, 20, 25, 30, 32]


# -- waveform ---------------------------------------------------------------------------


def test_waveform_vector_outputs_on_a_only() -> None:
    fw = EB1Firmware("butterfly-1")
    fw.turn_wheel(40, 40, 0.0)
    notified(fw)
    fw.receive(B0_A_WAVE, 0.0)
    # Mean intensity 15 % of strength 40.
    assert fw.effective_outputs == (6, 0)
    assert fw.outputs["output_a"] == 6
    assert fw.outputs["output_b"] == 0


@pytest.mark.parametrize(
    ("freq", "intensity"),
    [
        ((9, 20, 20, 20), WAVE_FULL),
        ((20, 20, 20, 241), WAVE_FULL),
        (WAVE_FREQ, (100, 100, 101, 100)),
        ((0, 0, 0, 0), (0, 0, 0, 101)),
    ],
)
def test_out_of_range_waveform_silences_only_that_channel(
    freq: eb1.Wave, intensity: eb1.Wave
) -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 100, 100, 0.0)
    fw.receive(both_waves(), 0.0)
    assert fw.effective_outputs == (100, 100)
    fw.receive(
        b0(freq_a=freq, intensity_a=intensity, freq_b=WAVE_FREQ, intensity_b=WAVE_FULL), 0.05
    )
    assert fw.effective_outputs == (0, 100)
    # The strength is kept.
    assert fw.strengths == (100, 100)


def test_edge_waveform_values_are_valid() -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 200, 200, 0.0)
    fw.receive(
        b0(freq_a=(10, 240, 10, 240), intensity_a=(0, 100, 0, 100), freq_b=(10, 10, 10, 10)),
        0.0,
    )
    assert fw.effective_outputs == (100, 0)


def test_output_expires_at_exactly_100ms() -> None:
    recorder = Recorder()
    fw = EB1Firmware("butterfly-1", recorder=recorder)
    set_strengths(fw, 50, 20, 0.0)
    fw.receive(both_waves(intensity_b=(50, 50, 50, 50)), 1.0)
    assert fw.effective_outputs == (50, 10)
    # Nothing physical to catch before (the battery's next percent is minutes away).
    assert fw.next_deadline(1.0) == 1.1
    assert fw.next_deadline(1.06) == 1.1
    fw.tick(1.0999)
    assert fw.effective_outputs == (50, 10)
    fw.tick(1.1)
    assert fw.effective_outputs == (0, 0)
    assert fw.strengths == (50, 20)
    assert fw.waveform_expiry is None
    rows = [(r["t"], r["channel"], r["value"]) for r in recorder.rows if r["t"] == 1.1]
    assert rows == [(1.1, "output_a", 0), (1.1, "output_b", 0)]
    assert fw.take_outgoing() == []


def test_late_tick_records_the_expiry_instant() -> None:
    recorder = Recorder()
    fw = EB1Firmware("butterfly-1", recorder=recorder)
    set_strengths(fw, 50, 0, 0.0)
    fw.receive(both_waves(), 0.3)
    fw.tick(7.0)
    last = recorder.rows[-1]
    assert (last["t"], last["channel"], last["value"]) == (0.4, "output_a", 0)


def test_b0_every_100ms_keeps_output_without_gaps() -> None:
    recorder = Recorder()
    fw = EB1Firmware("butterfly-1", recorder=recorder)
    set_strengths(fw, 80, 0, 0.0)
    for i in range(50):
        t = i * 0.1
        fw.receive(both_waves(), t)
        fw.tick(t + 0.05)
    assert [r["value"] for r in recorder.rows if r["channel"] == "output_a"] == [0, 80]
    # The daemon's stop: strengths to 0 and silent channels, then nothing more.
    fw.receive(B0_SEQ1_ZERO_SILENT, 5.0)
    assert fw.is_quiet


def test_silence_ends_output_when_the_host_dies() -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 80, 80, 0.0)
    fw.receive(both_waves(), 0.0)
    fw.link_down(0.02)
    fw.tick(fw.next_deadline(0.06))
    assert fw.is_quiet
    assert fw.strengths == (80, 80)


# -- wheel, battery, robustness -----------------------------------------------------------


def test_wheel_sends_b1_with_seq_0_and_respects_limits() -> None:
    fw = EB1Firmware("butterfly-1", soft_limits=(150, 30))
    fw.turn_wheel(25, None, 0.0)
    assert notified(fw) == [bytes((0xB1, 0, 25, 0))]
    fw.turn_wheel(None, 99, 0.1)
    assert notified(fw) == [bytes((0xB1, 0, 25, 30))]
    fw.turn_wheel(400, -5, 0.2)
    assert notified(fw) == [bytes((0xB1, 0, 150, 0))]
    # No change, no B1.
    fw.turn_wheel(150, 0, 0.3)
    assert notified(fw) == []


def test_wheel_change_shows_in_output() -> None:
    fw = EB1Firmware("butterfly-1")
    set_strengths(fw, 20, 0, 0.0)
    fw.receive(both_waves(intensity_a=(50, 50, 50, 50)), 0.0)
    fw.turn_wheel(21, None, 0.05)
    assert fw.outputs["strength_a"] == 21
    # round(21 * 50 / 100) = round(10.5): banker's rounding.
    assert fw.outputs["output_a"] == round(10.5)


def test_battery_read_and_drain() -> None:
    fw = EB1Firmware("butterfly-1", battery=50, speed=100.0)
    assert fw.read_attribute(eb1.BATTERY_UUID, 0.0) == bytes((50,))
    with pytest.raises(KeyError):
        fw.read_attribute(eb1.NOTIFY_UUID, 0.0)
    # Idle: no drain.
    assert fw.read_attribute(eb1.BATTERY_UUID, 100.0) == bytes((50,))
    set_strengths(fw, 200, 200, 100.0)
    t = 100.0
    for _ in range(40):
        fw.receive(both_waves(), t)
        t += 0.1
        fw.tick(t)
    # Full output for 4 s at speed 100: 400 s of a three-hour battery, about 3.7 %.
    assert fw.read_attribute(eb1.BATTERY_UUID, t) == bytes((47,))
    battery_notes = [data for target, data in fw.take_outgoing() if target == eb1.BATTERY_UUID]
    assert battery_notes == [bytes((49,)), bytes((48,)), bytes((47,))]
    fw.set_battery(3, t)
    assert fw.battery == 3


def test_ignores_device_messages_other_characteristics_and_garbage() -> None:
    fw = EB1Firmware("butterfly-1")
    for data in (B1_SEQ1_A25, BE_150_30, b"", b"\xb0\x11", b"\xa0" * 20, BF_150_30[:-1]):
        fw.receive(data, 0.0)
    fw.receive(B0_SEQ1_A_PLUS_10, 0.0, source=eb1.NOTIFY_UUID)
    assert fw.take_outgoing() == []
    assert fw.strengths == (0, 0)
    assert fw.soft_limits == (200, 200)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="soft limits"):
        EB1Firmware("butterfly-1", soft_limits=(201, 0))
    with pytest.raises(ValueError, match="battery"):
        EB1Firmware("butterfly-1", battery=-1)


@settings(max_examples=300, deadline=None)
@given(
    writes=st.lists(
        st.one_of(
            st.binary(max_size=24),
            st.binary(min_size=19, max_size=19).map(lambda b: b"\xb0" + b),
            st.binary(min_size=6, max_size=6).map(lambda b: b"\xbf" + b),
        ),
        max_size=20,
    ),
    limits=st.tuples(st.integers(0, 200), st.integers(0, 200)),
)
def test_arbitrary_writes_never_raise(writes: list[bytes], limits: tuple[int, int]) -> None:
    fw = EB1Firmware("butterfly-1", soft_limits=limits)
    t = 0.0
    for data in writes:
        t += 0.04
        fw.receive(data, t)
        fw.tick(t + 0.01)
        for target, _ in fw.take_outgoing():
            assert target in (eb1.NOTIFY_UUID, eb1.BATTERY_UUID)
        # The strength never exceeds the soft limit in force.
        assert all(s <= lim for s, lim in zip(fw.strengths, fw.soft_limits, strict=True))
        assert all(0 <= o <= s for o, s in zip(fw.effective_outputs, fw.strengths, strict=True))
