"""The three sans-IO codecs against the vendors' normative vectors, plus properties."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devices.capabilities import KneadDirection
from devices.errors import FrameError
from devices.protocols import eb1, sp1, vb1


def crc16_ccitt_false_reference(data: bytes) -> int:
    """CRC-16/CCITT-FALSE by its bitwise definition, to check the fast one against."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


# -- VB1 ---------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert vb1.crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false_reference(b"123456789") == 0x29B1


@given(st.binary(max_size=64))
def test_fast_crc_is_the_reference_crc(data: bytes) -> None:
    assert vb1.crc16_ccitt_false(data) == crc16_ccitt_false_reference(data)


def test_vb1_vectors(vectors: dict[str, list[dict[str, Any]]]) -> None:
    for v in vectors["vb1"]:
        frame = vb1.Frame(v["seq"], v["cmd"], bytes.fromhex(v["payload"]))
        assert vb1.encode(frame).hex() == v["bytes"], v["what"]
        assert vb1.decode(bytes.fromhex(v["bytes"])) == frame, v["what"]
        assert vb1.FrameParser().feed(bytes.fromhex(v["bytes"])) == [frame], v["what"]


def test_vb1_builders_match_vectors() -> None:
    assert vb1.encode(vb1.hello(1)).hex() == "a502010181ec"
    assert vb1.encode(vb1.set_levels(2, (0, 64, 128, 255))).hex() == "a5060202004080ff87ed"
    assert vb1.encode(vb1.ping(3)).hex() == "a50203069769"
    assert vb1.encode(vb1.ack(1, vb1.Command.HELLO)).hex() == "a5030180012395"
    assert vb1.encode(vb1.event(vb1.EventCode.WATCHDOG_STOP)).hex() == "a50300900117d6"
    nak = vb1.nak(7, vb1.Command.SET_LEVELS, vb1.NakCode.OUT_OF_RANGE)
    assert vb1.encode(nak).hex() == "a50407ff02035045"


def test_vb1_parser_resynchronises_after_garbage() -> None:
    good = vb1.encode(vb1.ping(3))
    parser = vb1.FrameParser()
    # Garbage with stray SOF bytes and an impossible LEN, then a good frame.
    assert parser.feed(b"\x00\xa5\xff\x13\xa5\x05\x01" + good) == [vb1.ping(3)]
    assert parser.dropped_bytes > 0


def test_vb1_parser_drops_bad_crc_and_finds_next() -> None:
    bad = bytearray(vb1.encode(vb1.hello(1)))
    bad[-1] ^= 0xFF
    good = vb1.encode(vb1.get_status(2))
    assert vb1.FrameParser().feed(bytes(bad) + good) == [vb1.get_status(2)]


def test_vb1_parser_byte_by_byte() -> None:
    parser = vb1.FrameParser()
    data = vb1.encode(vb1.set_levels(9, (1, 2, 3, 4, 5, 6)))
    out: list[vb1.Frame] = []
    for b in data:
        out += parser.feed(bytes((b,)))
    assert out == [vb1.set_levels(9, (1, 2, 3, 4, 5, 6))]


def test_vb1_sequence_wraps_to_one() -> None:
    seq = vb1.SequenceCounter()
    values = [seq.next() for _ in range(256)]
    assert values[0] == 1
    assert values[254] == 255
    assert values[255] == 1
    assert 0 not in values


def test_vb1_decode_errors_name_the_problem() -> None:
    with pytest.raises(FrameError, match="CRC"):
        vb1.decode(bytes.fromhex("a502010181ed"))
    with pytest.raises(FrameError, match="LEN"):
        vb1.decode(bytes.fromhex("a5230101000000"))
    with pytest.raises(FrameError, match="levels"):
        vb1.set_levels(1, (0, 256))


def test_vb1_info_and_status_round_trip() -> None:
    info = vb1.Info(1, 2, 3, 6, True, "AB123456")
    assert vb1.Info.decode(info.encode()) == info
    status = vb1.Status(0xFF, -5, 0x0A, (0, 1, 2, 3))
    assert vb1.Status.decode(status.encode()) == status
    assert vb1.Status.decode(status.encode()).on_mains


frames = st.builds(
    vb1.Frame,
    seq=st.integers(0, 255),
    cmd=st.integers(0, 255),
    payload=st.binary(max_size=vb1.MAX_PAYLOAD),
)


@given(frames)
def test_vb1_round_trip(frame: vb1.Frame) -> None:
    assert vb1.decode(vb1.encode(frame)) == frame


@example(garbage=b"\xa5\x0b", frame=vb1.Frame(seq=0, cmd=0, payload=b""), chunks=[])
@given(st.binary(max_size=200), frames, st.lists(st.integers(1, 8), max_size=40))
def test_vb1_any_garbage_then_frame_is_found(
    garbage: bytes, frame: vb1.Frame, chunks: list[int]
) -> None:
    # Garbage never crashes the parser; a good frame that follows is found, possibly
    # after frames the garbage happened to contain (resynchronisation is by SOF). A false
    # SOF in the garbage is a candidate frame until its CRC can be checked, so the parser
    # may hold what follows until as many bytes as its LEN claims have come: enough copies
    # of the frame follow to complete the longest candidate (hypothesis found b"\xa5\x0b"
    # before two empty frames: 15 bytes claimed, 14 there, nothing out yet).
    parser = vb1.FrameParser()
    encoded = vb1.encode(frame)
    copies = 1 + -(-(vb1.MAX_LEN + 4) // len(encoded))
    data = garbage + encoded * copies
    found: list[vb1.Frame] = []
    pos = 0
    for size in chunks:
        found += parser.feed(data[pos : pos + size])
        pos += size
    found += parser.feed(data[pos:])
    assert found[-1] == frame


# -- SP1 ---------------------------------------------------------------------


def test_sp1_vectors(vectors: dict[str, list[dict[str, Any]]]) -> None:
    for v in vectors["sp1"]:
        frame = sp1.Frame(v["cmd"], bytes.fromhex(v["payload"]))
        assert sp1.encode(frame).hex() == v["bytes"], v["what"]
        assert sp1.decode(bytes.fromhex(v["bytes"])) == frame, v["what"]


def test_sp1_builders_match_vectors() -> None:
    assert sp1.encode(sp1.query_info()).hex() == "55aa010102"
    assert sp1.encode(sp1.set_state(2, KneadDirection.AUTO_REVERSE, True)).hex() == (
        "55aa04020202010b"
    )
    assert sp1.encode(sp1.stop()).hex() == "55aa010304"
    state = sp1.State(2, 2, True, 38, 0xFF, 0, 75)
    assert sp1.encode(sp1.Frame(sp1.Command.STATE, state.encode())).hex() == (
        "55aa098202020126ff004b0000"
    )
    assert sp1.State.decode(state.encode()) == state


def test_sp1_decode_errors() -> None:
    with pytest.raises(FrameError, match="SUM"):
        sp1.decode(bytes.fromhex("55aa010103"))
    with pytest.raises(FrameError, match="55aa"):
        sp1.decode(bytes.fromhex("55ab010102"))
    with pytest.raises(FrameError, match="speed"):
        sp1.set_state(4, KneadDirection.CLOCKWISE, False)


@given(st.integers(0, 255), st.binary(max_size=sp1.MAX_PAYLOAD))
def test_sp1_round_trip(cmd: int, payload: bytes) -> None:
    frame = sp1.Frame(cmd, payload)
    assert sp1.decode(sp1.encode(frame)) == frame


@given(st.binary(max_size=40))
def test_sp1_garbage_raises_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        sp1.decode(data)


# -- EB1 ---------------------------------------------------------------------


def test_eb1_vectors(vectors: dict[str, list[dict[str, Any]]]) -> None:
    for v in vectors["eb1"]:
        message = eb1.decode(bytes.fromhex(v["bytes"]))
        assert eb1.encode(message).hex() == v["bytes"], v["what"]


def test_eb1_builders_match_vectors() -> None:
    b0 = eb1.B0(freq_a=(10, 10, 10, 10), intensity_a=(0, 10, 20, 30))
    assert eb1.encode(b0).hex() == "b00000000a0a0a0a000a141e0000000000000065"
    stop = eb1.B0(seq=1, mode_a=eb1.StrengthMode.SET, mode_b=eb1.StrengthMode.SET)
    assert eb1.encode(stop).hex() == "b01f000000000000000000650000000000000065"
    assert eb1.encode(eb1.B1(1, 25, 0)).hex() == "b1011900"
    assert eb1.encode(eb1.BF(150, 30)).hex() == "bf961e80808080"
    assert eb1.encode(eb1.BE(150, 30)).hex() == "be961e80808080"


def test_eb1_strength_rules() -> None:
    set_mode, inc, dec = eb1.StrengthMode.SET, eb1.StrengthMode.INCREASE, eb1.StrengthMode.DECREASE
    assert eb1.apply_strength(10, set_mode, 250, 200) == 0  # out of range "set to" -> 0
    assert eb1.apply_strength(10, inc, 250, 200) == 10  # out of range increase -> no change
    assert eb1.apply_strength(190, inc, 20, 200) == 200
    assert eb1.apply_strength(10, dec, 20, 200) == 0
    assert eb1.apply_strength(0, set_mode, 180, 150) == 150  # soft limit


def test_eb1_frequency_mapping() -> None:
    assert eb1.map_frequency(10) == 10
    assert eb1.map_frequency(100) == 100
    assert eb1.map_frequency(600) == 200
    assert eb1.map_frequency(1000) == 240


def test_eb1_silent_wave_is_invalid() -> None:
    assert not eb1.wave_valid(eb1.SILENT_FREQUENCY, eb1.SILENT_INTENSITY)
    assert eb1.wave_valid((10, 10, 10, 10), (0, 10, 20, 30))


@given(st.binary(max_size=24))
def test_eb1_garbage_raises_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        eb1.encode(eb1.decode(data))
