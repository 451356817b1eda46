"""The Coyote V2 codec: the vendor's vectors (docs/protocols/coyote-v2.md) and properties."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import FrameError, MassagedError, SafetyError
from devices.protocols import coyote_v2 as cv2

_FIELDS = re.compile(r"([A-Z])=(\d+)")


def _fields(what: str) -> dict[str, int]:
    return {name: int(value) for name, value in _FIELDS.findall(what)}


def test_every_vector(vectors: dict[str, list[dict[str, Any]]]) -> None:
    cases = vectors["coyote_v2"]
    assert len(cases) == 8
    for case in cases:
        data = bytes.fromhex(case["bytes"])
        fields = _fields(case["what"])
        if case["what"].startswith("waveform"):
            wave = cv2.Waveform(fields["X"], fields["Y"], fields["Z"])
            assert cv2.encode_waveform(wave) == data, case["what"]
            assert cv2.decode_waveform(data) == wave, case["what"]
        else:
            assert case["what"].startswith("strengths")
            assert cv2.encode_strengths(fields["A"], fields["B"]) == data, case["what"]
            assert cv2.decode_strengths(data) == (fields["A"], fields["B"]), case["what"]


def test_uuids_and_the_one_channel_mapping() -> None:
    assert cv2.STRENGTH_UUID == "955a1504-0fe2-f5aa-a094-84b8d4f3e8ad"
    assert cv2.BATTERY_UUID == "955a1500-0fe2-f5aa-a094-84b8d4f3e8ad"
    assert cv2.BATTERY_SERVICE_UUID == "955a180a-0fe2-f5aa-a094-84b8d4f3e8ad"
    assert cv2.SERVICE_UUID == "955a180b-0fe2-f5aa-a094-84b8d4f3e8ad"
    # The vendor's table: 0x1505 carries channel B, 0x1506 channel A.
    assert cv2.WAVEFORM_A_UUID == "955a1506-0fe2-f5aa-a094-84b8d4f3e8ad"
    assert cv2.WAVEFORM_B_UUID == "955a1505-0fe2-f5aa-a094-84b8d4f3e8ad"
    assert (cv2.WAVEFORM_A_UUID, cv2.WAVEFORM_B_UUID) == cv2.WAVEFORM_UUID_BY_CHANNEL
    assert all(cv2.BLE_NAME.startswith(p) or p == "DG-LAB" for p in cv2.NAME_PREFIXES)


def test_strength_past_1400_is_refused_with_a_typed_error() -> None:
    assert cv2.encode_strengths(1400, 1400) == cv2.encode_strengths(200 * 7, 200 * 7)
    for a, b in ((1401, 0), (0, 1401), (2047, 2047)):
        with pytest.raises(cv2.CoyoteLimitError) as err:
            cv2.encode_strengths(a, b)
        assert isinstance(err.value, SafetyError)
        assert isinstance(err.value, MassagedError)
        assert err.value.limit == 1400
    with pytest.raises(cv2.CoyoteLimitError):
        cv2.to_wire_strength(201)
    with pytest.raises(FrameError):
        cv2.encode_strengths(-1, 0)


def test_z_past_20_is_refused() -> None:
    assert cv2.encode_waveform(cv2.Waveform(1, 9, 20)) == bytes.fromhex("21010a")
    with pytest.raises(cv2.CoyoteLimitError, match="Z 21"):
        cv2.encode_waveform(cv2.Waveform(1, 9, 21))
    # Decoding shows what was written, so a simulator can record a bad host.
    assert cv2.decode_waveform(bytes.fromhex("21010f")).z == 30


@pytest.mark.parametrize("data", ["", "0000", "00000000", "000040", "000080", "000010", "0000f0"])
def test_bad_frames(data: str) -> None:
    raw = bytes.fromhex(data)
    decode = cv2.decode_strengths if len(raw) == 3 and raw[2] & 0xC0 else cv2.decode_waveform
    with pytest.raises(FrameError):
        decode(raw)


def test_waveform_fields_are_checked() -> None:
    for x, y, z in ((32, 0, 0), (0, 1024, 0), (0, 0, 32), (-1, 0, 0)):
        with pytest.raises(FrameError):
            cv2.Waveform(x, y, z)


def test_vendor_frequency_rule() -> None:
    assert cv2.period_waveform(10, 0) == cv2.Waveform(1, 9, 0)
    assert cv2.period_waveform(1000, 0) == cv2.Waveform(15, 985, 0)
    assert cv2.period_waveform(100, 5) == cv2.Waveform(4, 96, 5)
    with pytest.raises(FrameError):
        cv2.period_waveform(9, 0)
    with pytest.raises(FrameError):
        cv2.period_waveform(1001, 0)


def test_frequency_is_the_inverse_of_the_v3_compression() -> None:
    from devices.protocols import eb1

    for frequency in range(cv2.FREQ_MIN, cv2.FREQ_MAX + 1):
        period = cv2.frequency_to_period(frequency)
        assert cv2.PERIOD_MIN <= period <= cv2.PERIOD_MAX
        assert eb1.map_frequency(period) == frequency
    assert cv2.frequency_to_period(240) == 1000


def test_channel_mapping() -> None:
    assert cv2.channel_waveform(10, 10, 100) == cv2.Waveform(1, 9, 20)
    assert cv2.channel_waveform(10, 50, 50) == cv2.Waveform(3, 47, 10)
    assert cv2.channel_waveform(0, 50, 100) is None
    assert cv2.channel_waveform(10, 50, 0) is None
    assert cv2.channel_waveform(10, 50, 4) is None  # rounds down to Z 0: nothing to feel
    assert cv2.intensity_to_z(100) == 20
    for bad in ((10, 9, 50), (10, 241, 50), (10, 50, 101)):
        with pytest.raises(FrameError):
            cv2.channel_waveform(*bad)


@given(st.integers(0, 1400), st.integers(0, 1400))
def test_strengths_round_trip(a: int, b: int) -> None:
    data = cv2.encode_strengths(a, b)
    assert len(data) == 3
    assert data[2] & 0xC0 == 0
    assert cv2.decode_strengths(data) == (a, b)


@given(st.integers(0, 200))
def test_massaged_strength_round_trip(strength: int) -> None:
    assert cv2.from_wire_strength(cv2.to_wire_strength(strength)) == strength


@given(st.integers(0, 0xFFFFFF))
def test_any_three_bytes_decode_or_fail_cleanly(value: int) -> None:
    data = value.to_bytes(3, "little")
    for decode in (cv2.decode_strengths, cv2.decode_waveform):
        try:
            decoded = decode(data)
        except FrameError:
            continue
        if isinstance(decoded, cv2.Waveform):
            if decoded.z <= cv2.MAX_Z:
                assert cv2.encode_waveform(decoded) == data
        else:
            a, b = decoded
            assert max(a, b) <= 2047
            if a <= 1400 and b <= 1400:
                assert cv2.encode_strengths(a, b) == data
            else:
                with pytest.raises(cv2.CoyoteLimitError):
                    cv2.encode_strengths(a, b)


@given(st.integers(0, 31), st.integers(0, 1023), st.integers(0, 20))
def test_waveform_round_trip(x: int, y: int, z: int) -> None:
    wave = cv2.Waveform(x, y, z)
    data = cv2.encode_waveform(wave)
    assert data[2] & 0xF0 == 0
    assert cv2.decode_waveform(data) == wave


@given(st.integers(0, 200), st.integers(10, 240), st.integers(0, 100))
def test_channel_waveform_over_the_whole_field(strength: int, freq: int, intensity: int) -> None:
    wave = cv2.channel_waveform(strength, freq, intensity)
    if wave is None:
        assert strength == 0 or intensity * 20 < 100
        return
    assert wave.z <= cv2.MAX_Z
    assert wave.x == math.floor(15 * math.sqrt((wave.x + wave.y) / 1000))
    assert wave.x + wave.y == cv2.frequency_to_period(freq)
    cv2.encode_waveform(wave)  # never refused
