"""Unit tests of the DL/T 645-2007 codec: addresses, identifiers, frame hunting, replies, values."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.dlt645.codec import (
    BAUD_RATE_CODES,
    BROADCAST_ADDRESS,
    WILDCARD_ADDRESS,
    BadFrame,
    Frame,
    Function,
    address_from_wire,
    address_matches,
    address_to_wire,
    decode,
    decode_di,
    decode_value,
    describe_error,
    encode_di,
    encode_frame,
    encode_value,
    error_reply,
    parse_read_address_reply,
    parse_read_reply,
    read_address_reply,
    read_follow_up_reply,
    read_reply,
    read_request,
    time_sync_request,
)
from tests.drivers.dlt645.support import byte_by_byte, feed

METER = "123456789012"
REQUEST = bytes.fromhex("FEFEFEFE 681290785634126811043333343368 16")
REPLY = bytes.fromhex("68129078563412689108333334338967453354 16")

# --- addresses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nameplate", "wire"),
    [
        ("123456789012", "12 90 78 56 34 12"),  # low byte first, never the nameplate's order
        ("000000000001", "01 00 00 00 00 00"),
        (BROADCAST_ADDRESS, "99 99 99 99 99 99"),
        (WILDCARD_ADDRESS, "AA AA AA AA AA AA"),
        ("AAAA56789012", "12 90 78 56 AA AA"),
        ("aaaa56789012", "12 90 78 56 AA AA"),
    ],
)
def test_address_to_wire(nameplate: str, wire: str) -> None:
    assert address_to_wire(nameplate) == bytes.fromhex(wire)
    assert address_from_wire(bytes.fromhex(wire)) == nameplate.upper()


@pytest.mark.parametrize(
    "bad",
    ["12345678901", "1234567890123", "12345678901A", "1234AA789012", "12AA", "12345678901x", "٠١٢٣٤٥٦٧٨٩٠١"],
)
def test_address_rejected(bad: str) -> None:
    with pytest.raises(FrameError):
        address_to_wire(bad)


def test_address_from_wire_rejects_non_bcd() -> None:
    with pytest.raises(FrameError):
        address_from_wire(bytes.fromhex("1A 90 78 56 34 12"))
    with pytest.raises(FrameError):
        address_from_wire(bytes.fromhex("AA 90 78 56 34 12"))  # wildcard in the low byte


def test_address_matches_wildcards() -> None:
    assert address_matches("AAAAAAAA9012", METER)
    assert address_matches(WILDCARD_ADDRESS, METER)
    assert address_matches(METER, METER)
    assert not address_matches("AAAAAAAA9013", METER)
    assert not address_matches("123456789013", METER)


# --- data identifiers --------------------------------------------------------------


def test_di_sent_di0_first() -> None:
    assert encode_di("00010000") == bytes.fromhex("00 00 01 00")
    assert encode_di("0201ff00") == bytes.fromhex("00 FF 01 02")
    assert decode_di(bytes.fromhex("00 FF 01 02")) == "0201FF00"


@pytest.mark.parametrize("bad", ["0001000", "000100000", "0001000G", ""])
def test_di_rejected(bad: str) -> None:
    with pytest.raises(FrameError):
        encode_di(bad)


# --- frames: hunting, wake-up bytes, errors --------------------------------------------


def test_request_bytes() -> None:
    frame = read_request(METER, "00010000")
    assert frame == Frame(address=METER, control_code=0x11, data=bytes.fromhex("00000100"))
    assert encode_frame(frame) == REQUEST
    assert encode_frame(frame, wakeup=0) == REQUEST[4:]
    assert encode_frame(frame, wakeup=2) == REQUEST[2:]


def test_replies_get_no_wakeup_by_default() -> None:
    assert encode_frame(read_reply(METER, "00010000", bytes.fromhex("56341200"))) == REPLY


@pytest.mark.parametrize(
    ("buf", "consumed"),
    [
        (b"", 0),
        (b"\xfe\xfe\xfe", 3),  # wake-up bytes alone: consumed, nothing can start there
        (b"\x01\x02\x16", 3),
        (REPLY[:1], 0),
        (b"\xfe\xfe" + REPLY[:7], 2),  # header not complete yet: keep from the 68
        (b"\xfe\xfe" + REPLY[:9], 2),
        (REPLY[:-1], 0),
        (b"\x68\x00\x00\x00\x00\x00\x00\x00", 8),  # a 68 not followed by 68 seven bytes later
    ],
)
def test_need_more(buf: bytes, consumed: int) -> None:
    assert decode(buf) == (consumed, None)


def test_two_frames_back_to_back() -> None:
    frames, errors, rest = feed([REQUEST + REPLY + b"\xfe"])
    assert [f.control_code for f in frames] == [0x11, 0x91]
    assert (errors, rest) == ([], b"")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode(bytearray(REPLY))[1] == decode(memoryview(REPLY))[1] is not None


def _with(raw: bytes, index: int, value: int) -> bytes:
    changed = bytearray(raw)
    changed[index] = value
    return bytes(changed)


@pytest.mark.parametrize(
    ("raw", "consumed", "message"),
    [
        (_with(REPLY, -2, 0x55), 1, "checksum"),
        (_with(REPLY, -1, 0x17), 1, "not 16"),
        (b"\xfe\xfe" + _with(REPLY, -2, 0x00), 3, "checksum"),
        (bytes.fromhex("68 12 90 78 56 34 12 68 91 C9") + bytes(203), 1, "L=201"),
    ],
)
def test_bad_frame(raw: bytes, consumed: int, message: str) -> None:
    with pytest.raises(BadFrame, match=message) as caught:
        decode(raw)
    assert caught.value.consumed == consumed
    assert isinstance(caught.value, FrameError)


def test_bad_address_is_a_whole_bad_frame() -> None:
    body = bytearray(bytes.fromhex("68 1A 90 78 56 34 12 68 11 00"))
    raw = bytes(body) + bytes((sum(body) & 0xFF, 0x16))
    with pytest.raises(BadFrame, match="not BCD") as caught:
        decode(raw)
    assert caught.value.consumed == len(raw)  # checksum-valid: drop it whole


def test_bad_checksum_then_good_frame() -> None:
    frames, errors, rest = feed(byte_by_byte(_with(REPLY, -2, 0x00) + REPLY))
    assert frames == [decode(REPLY)[1]]
    assert len(errors) == 1
    assert rest == b""


def test_false_start_in_garbage_does_not_stall() -> None:
    # "68 .. .. .. .. .. .. 68" in line noise claims 0x90 = 144 data bytes, more than will ever come
    garbage = bytes.fromhex("68 00 11 22 33 44 55 68 00 90")
    assert decode(garbage + REPLY) == (len(garbage) + len(REPLY), decode(REPLY)[1])
    frames, errors, rest = feed(byte_by_byte(garbage + REPLY))
    assert (frames, errors, rest) == ([decode(REPLY)[1]], [], b"")


def test_frame_validation() -> None:
    with pytest.raises(FrameError):
        Frame(address=METER, control_code=0x100)
    with pytest.raises(FrameError):
        Frame(address=METER, control_code=0x11, data=bytes(201))
    with pytest.raises(FrameError):
        Frame(address="1234", control_code=0x11)
    assert Frame(address=METER, control_code=0x11, data=bytearray(b"\x01")).data == b"\x01"
    with pytest.raises(FrameError):
        encode_frame(read_request(METER, "00010000"), wakeup=-1)


def test_control_code_bits() -> None:
    frame = Frame(address=METER, control_code=0xB1)
    assert (frame.is_reply, frame.is_abnormal, frame.has_follow_up, frame.function) == (True, False, True, 0x11)
    frame = Frame(address=METER, control_code=0xD2)
    assert (frame.is_reply, frame.is_abnormal, frame.has_follow_up, frame.function) == (True, True, False, 0x12)


# --- requests ------------------------------------------------------------------------


def test_read_request_with_block_count_and_time() -> None:
    frame = read_request(METER, "06000001", blocks=3, since=datetime(2024, 5, 17, 10, 30))
    # DI0..DI3 N mmhhDDMMYY (L=0AH)
    assert frame.data == bytes.fromhex("01 00 00 06 03 30 10 17 05 24")
    with pytest.raises(FrameError):
        read_request(METER, "06000001", since=datetime(2024, 5, 17))
    with pytest.raises(FrameError):
        read_request(METER, "06000001", blocks=0)


def test_time_sync_drops_microseconds() -> None:
    frame = time_sync_request(datetime(2024, 5, 17, 10, 30, 5, 999_999))
    assert frame.address == BROADCAST_ADDRESS
    assert frame.control_code == Function.BROADCAST_TIME_SYNC
    assert frame.data == bytes.fromhex("05 30 10 17 05 24")  # ssmmhhDDMMYY


def test_time_sync_refuses_time_zone() -> None:
    with pytest.raises(FrameError, match="time zone"):
        time_sync_request(datetime(2024, 5, 17, 10, 30, tzinfo=UTC))


def test_baud_rate_codes() -> None:
    # 通信速率特征字: one bit per rate, Bit1 = 600 .. Bit6 = 19200
    assert [BAUD_RATE_CODES[b] for b in (600, 1200, 2400, 4800, 9600, 19200)] == [2, 4, 8, 16, 32, 64]


# --- reply parsing -------------------------------------------------------------------


def test_parse_read_reply() -> None:
    reply = parse_read_reply(decode(REPLY)[1], METER, "00010000")  # type: ignore[arg-type]
    assert (reply.di, reply.payload, reply.more, reply.seq) == ("00010000", bytes.fromhex("56341200"), False, None)


def test_reply_to_wildcard_request_comes_from_real_address() -> None:
    reply = parse_read_reply(read_reply(METER, "00010000", b""), "AAAAAAAA9012", "00010000")
    assert reply.payload == b""


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (read_reply("123456789013", "00010000", b"\x00" * 4), "from meter 123456789013"),
        (read_reply(METER, "00020000", b"\x00" * 4), "00020000, expected 00010000"),
        (read_request(METER, "00010000"), "request"),
        (read_address_reply(METER), "does not answer READ_DATA"),
        (read_follow_up_reply(METER, "00010000", b"", 1), "does not answer READ_DATA"),
        (Frame(address=METER, control_code=0x91, data=b"\x00\x00\x01"), "at least 4"),
        (Frame(address=METER, control_code=0xD1, data=b""), "L=0"),
    ],
)
def test_parse_read_reply_mismatch(frame: Frame, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        parse_read_reply(frame, METER, "00010000")


def test_parse_follow_up_reply_checks_seq() -> None:
    frame = read_follow_up_reply(METER, "06000001", b"\x01\x02", 2, more=True)
    reply = parse_read_reply(frame, METER, "06000001", expected_seq=2)
    assert (reply.payload, reply.more, reply.seq) == (b"\x01\x02", True, 2)
    with pytest.raises(FrameError, match="SEQ=2, expected 3"):
        parse_read_reply(frame, METER, "06000001", expected_seq=3)
    with pytest.raises(FrameError):
        parse_read_reply(read_reply(METER, "06000001", b""), METER, "06000001", expected_seq=1)


@pytest.mark.parametrize(
    ("err", "text"),
    [
        # 错误信息字 ERR, bit by bit
        (0x01, "other error"),
        (0x02, "no requested data"),
        (0x04, "password error / unauthorized"),
        (0x08, "baud rate cannot be changed"),
        (0x10, "annual time zone count exceeded"),
        (0x20, "daily time slot count exceeded"),
        (0x40, "rate/tariff count exceeded"),
        (0x80, "reserved bit 7"),
        (0x06, "no requested data, password error / unauthorized"),
        (0x00, "no error bit set"),
    ],
)
def test_error_word(err: int, text: str) -> None:
    assert describe_error(err) == text
    with pytest.raises(MeterRejected) as caught:
        parse_read_reply(error_reply(METER, Function.READ_DATA, err), METER, "00010000")
    assert caught.value.code == err
    assert text in str(caught.value)


def test_abnormal_reply_from_other_meter_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        parse_read_reply(error_reply("123456789013", Function.READ_DATA, 2), METER, "00010000")


def test_parse_read_address_reply() -> None:
    assert parse_read_address_reply(read_address_reply(METER)) == METER
    with pytest.raises(FrameError, match="carries address"):
        parse_read_address_reply(
            Frame(address=METER, control_code=0x93, data=address_to_wire("123456789013"))
        )
    with pytest.raises(FrameError):
        parse_read_address_reply(Frame(address=METER, control_code=0x93, data=b"\x12"))
    with pytest.raises(FrameError):
        parse_read_address_reply(read_reply(METER, "00010000", b""))
    with pytest.raises(MeterRejected):
        parse_read_address_reply(error_reply(METER, Function.READ_ADDRESS, 1))
    with pytest.raises(FrameError):
        read_address_reply(WILDCARD_ADDRESS)


# --- values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "wire", "value"),
    [
        ("XXXXXX.XX", "56 34 12 00", Decimal("1234.56")),
        ("XXXXXX.XX", "99 99 99 99", Decimal("999999.99")),  # forward energy: unsigned, top digit 9
        ("XXXXXX.XX", "00 00 00 00", Decimal("0.00")),
        ("XXX.X", "01 22", Decimal("220.1")),
        ("XXX.XXX", "34 12 00", Decimal("1.234")),
        ("XXX.XXX", "34 12 80", Decimal("-1.234")),
        ("XXX.XXX", "99 99 79", Decimal("799.999")),
        ("XX.XXXX", "56 34 12", Decimal("12.3456")),
        ("XX.XXXX", "56 34 92", Decimal("-12.3456")),
        ("X.XXX", "00 10", Decimal("1.000")),
        ("X.XXX", "00 85", Decimal("-0.500")),
        ("XX.XX", "00 50", Decimal("50.00")),
        ("YYMMDDhhmm", "30 10 17 05 24", datetime(2024, 5, 17, 10, 30)),
        ("YYMMDDhhmmss", "15 30 10 17 05 24", datetime(2024, 5, 17, 10, 30, 15)),
        ("YYMMDDWW", "05 17 05 24", date(2024, 5, 17)),
        ("YYMMDDWW", "00 19 05 24", date(2024, 5, 19)),  # Sunday is 0
        ("hhmmss", "59 59 23", time(23, 59, 59)),
        ("NNNNNNNNNNNN", "12 90 78 56 34 12", "123456789012"),
    ],
)
def test_value_vectors(fmt: str, wire: str, value: Decimal | datetime | date | time | str) -> None:
    decoded = decode_value(fmt, bytes.fromhex(wire))
    assert decoded == value
    assert type(decoded) is type(value)
    if isinstance(value, Decimal):
        assert decoded.as_tuple().exponent == value.as_tuple().exponent  # type: ignore[union-attr]
    assert encode_value(fmt, value) == bytes.fromhex(wire)


def test_signed_override() -> None:
    # combined energy shares XXXXXX.XX with forward energy but has a sign bit
    assert decode_value("XXXXXX.XX", bytes.fromhex("34 12 00 80"), signed=True) == Decimal("-12.34")
    assert decode_value("XXXXXX.XX", bytes.fromhex("34 12 00 80")) == Decimal("800012.34")
    assert encode_value("XXXXXX.XX", Decimal("-12.34"), signed=True) == bytes.fromhex("34 12 00 80")
    negative_zero = decode_value("XXX.XXX", bytes.fromhex("00 00 80"))
    assert negative_zero == 0
    assert encode_value("XXX.XXX", negative_zero) == bytes.fromhex("00 00 80")
    assert encode_value("XXXXXX.XX", Decimal("-0")) == bytes(4)


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        ("XXXXXX.XX", "5A 34 12 00"),  # nibble A
        ("XXXXXX.XX", "56 34 12 F0"),
        ("XXX.XXX", "34 12 8A"),  # sign bit fine, but A is not BCD
        ("XXX.X", "01"),  # too short
        ("XXX.X", "01 22 33"),  # too long
        ("YYMMDDhhmm", "30 10 32 05 24"),  # 32nd day
        ("YYMMDDhhmm", "30 24 17 05 24"),  # 24 o'clock
        ("YYMMDDWW", "07 17 05 24"),  # weekday 7
        ("YYMMDDWW", "05 17 13 24"),  # month 13
        ("hhmmss", "60 00 00"),
        ("NNNNNNNNNNNN", "AA AA AA AA AA AA"),
    ],
)
def test_bad_values(fmt: str, wire: str) -> None:
    with pytest.raises(FrameError):
        decode_value(fmt, bytes.fromhex(wire))


def test_weekday_not_checked_against_date() -> None:
    # 2024-05-17 is a Friday (5); meters keep the weekday as a separate register
    assert decode_value("YYMMDDWW", bytes.fromhex("03 17 05 24")) == date(2024, 5, 17)


@pytest.mark.parametrize(
    ("fmt", "value", "error"),
    [
        ("XXX.X", Decimal("220.15"), FrameError),  # exact or nothing
        ("XXX.X", Decimal("1000.0"), FrameError),
        ("XXX.X", Decimal("-1.0"), FrameError),  # voltage is unsigned
        ("XXX.XXX", Decimal("800.000"), FrameError),  # the sign bit leaves 0..799.999
        ("XXX.X", Decimal("NaN"), FrameError),
        ("XXX.X", 220.1, TypeError),
        ("XXX.X", True, TypeError),
        ("YYMMDDhhmm", datetime(2024, 5, 17, 10, 30, 1), FrameError),
        ("YYMMDDhhmm", datetime(1999, 5, 17, 10, 30), FrameError),
        ("YYMMDDhhmm", datetime(2024, 5, 17, 10, 30, tzinfo=UTC), FrameError),
        ("YYMMDDhhmm", date(2024, 5, 17), TypeError),
        ("YYMMDDWW", datetime(2024, 5, 17), TypeError),
        ("hhmmss", time(1, 2, 3, 4), FrameError),
        ("NNNNNNNNNNNN", "12345678901A", FrameError),
        ("NNNNNNNNNNNN", 123456789012, TypeError),
    ],
)
def test_bad_encode(fmt: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_value(fmt, value)  # type: ignore[arg-type]


def test_encode_value_accepts_int_and_trailing_zeros() -> None:
    assert encode_value("XXX.X", 220) == bytes.fromhex("00 22")
    assert encode_value("XXX.X", Decimal("220.10")) == bytes.fromhex("01 22")


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown"):
        decode_value("XX.X", b"\x00\x00")
