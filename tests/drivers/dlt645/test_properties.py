"""Property tests: round trips of frames and values, and no exception but ours from any bytes."""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.dlt645 import dis
from meterlink.drivers.dlt645.codec import (
    FORMATS,
    MAX_DATA_LEN,
    Frame,
    ValueFormat,
    decode,
    decode_value,
    encode_frame,
    encode_value,
    parse_read_address_reply,
    parse_read_reply,
)
from tests.drivers.dlt645.support import byte_by_byte, feed

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

digits = st.text(alphabet="0123456789", min_size=2, max_size=2)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """Nameplate addresses: 12 digits, with 0..6 AA wildcard bytes at the high end."""
    wildcards = draw(st.integers(0, 6))
    return "AA" * wildcards + "".join(draw(digits) for _ in range(6 - wildcards))


frames = st.builds(
    Frame,
    address=addresses(),
    control_code=st.integers(0, 0xFF),
    data=st.binary(max_size=MAX_DATA_LEN),
)


@FAST
@given(frame=frames, wakeup=st.integers(0, 6))
def test_frame_round_trip(frame: Frame, wakeup: int) -> None:
    raw = encode_frame(frame, wakeup=wakeup)
    assert decode(raw) == (len(raw), frame)
    assert encode_frame(frame, wakeup=wakeup) == raw


@settings(max_examples=300, deadline=None)
@given(frame=frames, prefix=st.binary(max_size=30), suffix=st.binary(max_size=30))
def test_frame_found_amid_garbage_byte_by_byte(frame: Frame, prefix: bytes, suffix: bytes) -> None:
    raw = encode_frame(frame)
    found, _errors, _rest = feed(byte_by_byte(prefix + raw + suffix))
    assert frame in found


def _decimal_values(spec: ValueFormat, signed: bool) -> st.SearchStrategy[Decimal]:
    digits_ = 2 * spec.length
    limit = 8 * 10 ** (digits_ - 1) if signed else 10**digits_
    low = -(limit - 1) if signed else 0
    return st.integers(low, limit - 1).map(lambda n: Decimal(n).scaleb(-spec.decimals))


def _values(spec: ValueFormat, signed: bool) -> st.SearchStrategy[object]:
    if spec.kind == "decimal":
        return _decimal_values(spec, signed)
    if spec.kind == "datetime":
        stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))
        if spec.length == 5:
            return stamps.map(lambda d: d.replace(second=0, microsecond=0))
        return stamps.map(lambda d: d.replace(microsecond=0))
    if spec.kind == "date":
        return st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2099, 12, 31).date())
    if spec.kind == "time":
        return st.times().map(lambda t: t.replace(microsecond=0))
    return st.text(alphabet="0123456789", min_size=12, max_size=12)


FORMAT_CASES = [(name, signed) for name, spec in FORMATS.items() for signed in {spec.signed, True}
                if spec.kind == "decimal" or not signed]


@st.composite
def format_and_value(draw: st.DrawFn) -> tuple[str, bool, object]:
    name, signed = draw(st.sampled_from(FORMAT_CASES))
    return name, signed, draw(_values(FORMATS[name], signed))


@settings(max_examples=1000, deadline=None)
@given(case=format_and_value())
def test_value_round_trip(case: tuple[str, bool, object]) -> None:
    name, signed, value = case
    raw = encode_value(name, value, signed=signed)  # type: ignore[arg-type]
    assert len(raw) == FORMATS[name].length
    decoded = decode_value(name, raw, signed=signed)
    assert decoded == value
    assert encode_value(name, decoded, signed=signed) == raw


@st.composite
def bcd_payloads(draw: st.DrawFn) -> tuple[str, bool, bytes]:
    """Any BCD bytes of a number format: decode then encode gives the same bytes."""
    name, signed = draw(st.sampled_from([c for c in FORMAT_CASES if FORMATS[c[0]].kind == "decimal"]))
    spec = FORMATS[name]
    high_first = bytearray(bytes.fromhex("".join(draw(digits) for _ in range(spec.length))))
    if signed:
        high_first[0] = (high_first[0] % 0x80) | (0x80 if draw(st.booleans()) else 0)
        if high_first[0] & 0x7F > 0x79:  # 0x7A..0x7F are not BCD
            high_first[0] &= 0xF0
    return name, signed, bytes(reversed(high_first))


@FAST
@given(case=bcd_payloads())
def test_bcd_bytes_round_trip(case: tuple[str, bool, bytes]) -> None:
    name, signed, raw = case
    assert encode_value(name, decode_value(name, raw, signed=signed), signed=signed) == raw


def _interpret(frame: Frame) -> None:
    """Every way the gateway reads a frame; each may only raise FrameError or MeterRejected."""
    own_di = frame.data[:4][::-1].hex()  # not 8 digits for short data: FrameError
    seq = frame.data[-1] if frame.data else 0
    readers: list[tuple[str, str, int | None]] = [
        (frame.address, "00010000", None),
        ("AAAAAAAAAAAA", own_di, None),
        (frame.address, own_di, seq),
    ]
    for address, di, expected_seq in readers:
        try:
            reply = parse_read_reply(frame, address, di, expected_seq=expected_seq)
        except (FrameError, MeterRejected):
            continue
        for name, spec in FORMATS.items():
            with contextlib.suppress(FrameError):
                decode_value(name, reply.payload[: spec.length])
        with contextlib.suppress(FrameError, KeyError):
            dis.decode_item(reply.di, reply.payload)
    with contextlib.suppress(FrameError, MeterRejected):
        parse_read_address_reply(frame)


def _exercise(data: bytes) -> None:
    """Everything a gateway does with bytes from a meter; only our errors may escape."""
    buf = bytearray(data)
    while buf:
        try:
            consumed, frame = decode(buf)
        except FrameError as exc:
            consumed = getattr(exc, "consumed", len(buf))
            assert consumed > 0
            del buf[:consumed]
            continue
        del buf[:consumed]
        if frame is None:
            break
        _interpret(frame)


@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_our_errors(data: bytes) -> None:
    _exercise(data)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode_frame(draw(frames), wakeup=draw(st.integers(0, 4))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        index = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[index] = draw(st.sampled_from([0x68, 0x16, 0xFE, 0x33, 0xAA, 0xFF, 0x00]))
        elif kind == "insert":
            raw.insert(index, draw(st.integers(0, 0xFF)))
        elif kind == "delete" and raw:
            del raw[index]
        elif kind == "truncate":
            del raw[index:]
    return bytes(raw)


@FAST
@given(data=mutated_frames())
def test_mutated_frames_raise_only_our_errors(data: bytes) -> None:
    _exercise(data)


@FAST
@given(data=st.binary(max_size=200))
def test_any_payload_decodes_or_raises_frame_error(data: bytes) -> None:
    for name, spec in FORMATS.items():
        for signed in (False, True):
            with contextlib.suppress(FrameError):
                decode_value(name, data[: spec.length], signed=signed)
