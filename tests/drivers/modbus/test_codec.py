"""Modbus codec against byte vectors, split input, garbage, and pymodbus' own CRC."""

from __future__ import annotations

import contextlib
import math
import struct
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from meterlink.core.errors import FrameError
from meterlink.drivers.modbus import codec
from meterlink.drivers.modbus.codec import (
    ExceptionResponse,
    ImpossibleValue,
    ReadRequest,
    ReadResponse,
    crc16,
    decode_rtu_request,
    decode_rtu_response,
    decode_tcp_request,
    decode_tcp_response,
    decode_value,
    encode_rtu,
    encode_tcp,
    encode_value,
)

VECTORS = tomllib.loads((Path(__file__).parent / "vectors.toml").read_text())

DECODERS = {
    "rtu_request": (decode_rtu_request, encode_rtu),
    "rtu_response": (decode_rtu_response, encode_rtu),
    "rtu_exception": (decode_rtu_response, encode_rtu),
    "tcp_request": (decode_tcp_request, encode_tcp),
    "tcp_response": (decode_tcp_response, encode_tcp),
    "tcp_exception": (decode_tcp_response, encode_tcp),
}
CASES = [(kind, v) for kind in DECODERS for v in VECTORS[kind]]


def _matches(msg: Any, expect: dict[str, Any]) -> None:
    for key, value in expect.items():
        got = getattr(msg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


@pytest.mark.parametrize(("kind", "vector"), CASES, ids=[f"{k}:{v['hex']}" for k, v in CASES])
def test_vector_whole_bytewise_and_reencoded(kind: str, vector: dict[str, Any]) -> None:
    decode, encode = DECODERS[kind]
    data = bytes.fromhex(vector["hex"])
    used, msg = decode(data)
    assert used == len(data)
    _matches(msg, vector["expect"])
    assert encode(msg) == data
    # byte by byte: "need more" until the last byte
    for i in range(1, len(data)):
        assert decode(data[:i])[1] is None
    # followed by trailing bytes: only the frame is consumed
    used, msg2 = decode(data + b"\x01\x02\x03")
    assert used == len(data) and msg2 == msg


@pytest.mark.parametrize("vector", VECTORS["rtu_request"], ids=lambda v: v["hex"])
def test_rtu_request_found_amid_garbage(vector: dict[str, Any]) -> None:
    """A server hunts past noise, as pymodbus' FramerRTU does for USB adapters that break t3.5 timing."""
    data = bytes.fromhex(vector["hex"])
    used, msg = decode_rtu_request(b"\xff\x00\x13" + data)
    assert msg is not None and used == 3 + len(data)
    _matches(msg, vector["expect"])


@pytest.mark.parametrize("hexdata", [v["hex"] for k in DECODERS if k.startswith("rtu") for v in VECTORS[k]])
def test_crc_agrees_with_pymodbus(hexdata: str) -> None:
    data = bytes.fromhex(hexdata)
    assert crc16(data[:-2]).to_bytes(2, "little") == data[-2:]
    assert FramerRTU.compute_CRC(data[:-2]) == int.from_bytes(data[-2:], "big")


def test_bad_crc_in_reply_is_a_frame_error() -> None:
    data = bytearray.fromhex(VECTORS["rtu_response"][1]["hex"])
    data[-1] ^= 0xFF
    with pytest.raises(FrameError, match="CRC"):
        decode_rtu_response(bytes(data))


def test_reply_announcing_more_than_it_carries() -> None:
    with pytest.raises(FrameError):
        decode_tcp_response(bytes.fromhex("00 01 00 00 00 05 01 03 04 44 9A"))


def test_other_function_code_gets_illegal_function() -> None:
    frame = codec.with_crc(bytes.fromhex("01 10 00 00 00 01"))[:8]
    frame = codec.with_crc(bytes.fromhex("01 06 00 01 00 03"))
    used, msg = decode_rtu_request(frame)
    assert used == 8 and isinstance(msg, ExceptionResponse) and msg.exception_code == 1


# --- values ------------------------------------------------------------------

@pytest.mark.parametrize(("words", "type_", "order", "scale", "expected"), [
    ([0x4366, 0x199A], "float32", "big", "1", "230.1"),          # SDM630 voltage
    ([0x449A, 0x51EC], "float32", "big", "1", "1234.56"),        # energy, never 1234.5600000000002
    ([0x51EC, 0x449A], "float32", "little", "1", "1234.56"),
    ([0x0000, 0x1E61], "int32", "big", "0.01", "77.77"),         # scaled integers stay exact
    ([0xFFFF, 0xFF38], "int32", "big", "0.1", "-20.0"),
    ([0x08FE], "uint16", "big", "0.1", "230.2"),                 # DTSU666-style 0.1 V
    ([0x8000], "int16", "big", "1", "-32768"),
    ([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], "uint64", "big", "1", "18446744073709551615"),
    ([0x0000, 0x0000, 0x0001, 0x0000], "int64", "little", "1", "4294967296"),
    ([0x4093, 0x4A45, 0x6D5C, 0xFAAD], "float64", "big", "1", "1234.5678"),
])
def test_decode_value_exact(words: list[int], type_: str, order: str, scale: str, expected: str) -> None:
    value = decode_value(words, type_, order, Decimal(scale))
    assert value == Decimal(expected)
    assert str(value) == expected or format(value, "f") == expected


def test_nan_and_infinity_are_impossible_values() -> None:
    with pytest.raises(ImpossibleValue):
        decode_value([0x7FC0, 0x0000], "float32")
    with pytest.raises(ImpossibleValue):
        decode_value([0x7F80, 0x0000], "float32")


def test_wrong_word_count_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_value([1], "float32")


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_round_trip_shortest(x: float, order: str) -> None:
    words = encode_value(Decimal(repr(x)), "float32", order)
    d = decode_value(words, "float32", order)
    assert struct.unpack(">f", struct.pack(">f", float(d)))[0] == x or (x == 0 and float(d) == 0)
    assert len(d.normalize().as_tuple().digits) <= 9


@given(st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
       st.sampled_from(["big", "little"]), st.integers(), st.sampled_from(["1", "0.1", "0.01", "1000"]))
def test_integer_round_trip(type_: str, order: str, raw: int, scale: str) -> None:
    bits = 16 * codec.WORDS[type_]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if type_.startswith("int") else (0, (1 << bits) - 1)
    raw = max(lo, min(hi, raw))
    value = Decimal(raw) * Decimal(scale)
    assert decode_value(encode_value(value, type_, order, Decimal(scale)), type_, order, Decimal(scale)) == value


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_frame_error(data: bytes) -> None:
    for decode in (decode_rtu_request, decode_rtu_response, decode_tcp_request, decode_tcp_response):
        try:
            used, _ = decode(data)
        except FrameError:
            continue
        assert 0 <= used <= len(data)


@settings(max_examples=300)
@given(st.integers(1, 247), st.sampled_from([3, 4]), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125),
       st.integers(0, 200), st.integers(0, 255))
def test_mutated_replies_never_raise_anything_but_frame_error(uid: int, fc: int, regs: list[int], pos: int,
                                                             flip: int) -> None:
    frame = bytearray(encode_rtu(ReadResponse(device_id=uid, function_code=fc, registers=tuple(regs))))
    frame[pos % len(frame)] ^= flip
    with contextlib.suppress(FrameError):
        decode_rtu_response(bytes(frame))


def test_request_encodings() -> None:
    req = ReadRequest(device_id=1, function_code=4, address=0x0156, count=2)
    assert encode_rtu(req).hex(" ") == "01 04 01 56 00 02 90 27"
    assert encode_tcp(ReadRequest(device_id=1, function_code=4, address=0x0156, count=2, transaction_id=9)) == \
        bytes.fromhex("0009 0000 0006 01 04 0156 0002")
    assert math.isfinite(float(decode_value([0x4366, 0x199A], "float32")))


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=8), st.sampled_from(list(codec.WORDS)),
       st.sampled_from(["big", "little"]), st.integers(0, 3))
def test_block_decode_equals_point_decode(words: list[int], type_: str, order: str, offset: int) -> None:
    n = codec.WORDS[type_]
    assume(offset + n <= len(words))
    point = words[offset:offset + n]
    try:
        expected: Decimal | type = decode_value(point, type_, order)
    except ImpossibleValue:
        expected = ImpossibleValue
    try:
        got: Decimal | type = codec.decode_at(codec.registers_to_bytes(words), offset, type_, order)
    except ImpossibleValue:
        got = ImpossibleValue
    assert got == expected


def test_decode_block_one_bad_register_spoils_only_its_point() -> None:
    """SDM630 input registers 0x0000-0x0005, phase 1-3 line to neutral volts, float32 high word first (Eastron
    SDM630-Modbus V2 user manual, table 1.2.1; config/profiles/eastron-sdm630.yaml), with L2 sending NaN, then a
    DTSU666-style uint16 at 0.1 V and the little-endian float32 of test_decode_value_exact."""
    words = [0x4366, 0x199A, 0x7FC0, 0x0000, 0x4367, 0x0000, 0x08FE, 0x51EC, 0x449A]
    layout = [(0, "float32", "big", Decimal(1)), (2, "float32", "big", Decimal(1)), (4, "float32", "big", Decimal(1)),
              (6, "uint16", "big", Decimal("0.1")), (7, "float32", "little", Decimal(1))]
    got = codec.decode_block(codec.registers_to_bytes(words), layout)
    assert got[0] == Decimal("230.1") and got[2] == Decimal("231") and got[3] == Decimal("230.2")
    assert got[4] == Decimal("1234.56")
    assert isinstance(got[1], ImpossibleValue) and "nan" in str(got[1])


@given(st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=8), st.sampled_from(list(codec.WORDS)),
       st.sampled_from(["big", "little"]), st.integers(0, 3), st.sampled_from(["1", "0.1"]))
def test_decode_block_equals_decode_at(words: list[int], type_: str, order: str, offset: int, scale: str) -> None:
    assume(offset + codec.WORDS[type_] <= len(words))
    raw = codec.registers_to_bytes(words)
    try:
        expected: Decimal | type = codec.decode_at(raw, offset, type_, order, Decimal(scale))
    except ImpossibleValue:
        expected = ImpossibleValue
    (got,) = codec.decode_block(raw, [(offset, type_, order, Decimal(scale))])
    assert (ImpossibleValue if isinstance(got, ImpossibleValue) else got) == expected
