"""DL/T 645-1997: cited byte vectors decoded whole, byte by byte and amid garbage; round trips; the table;
the configuration rules of ``standard: "1997"``.

The vectors live in ``vectors/1997`` (not in ``vectors/``, whose files are all
2007 frames for ``test_vectors.py``); each names its source: a captured frame
from a manual or public code (search index ids), or the standard's clause for
a constructed one.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterlink.core.config import ConfigProblems, parse_config, profile_points
from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.dlt645 import codec, codec1997, dis, dis1997
from meterlink.drivers.dlt645.codec import FORMATS, Frame, decode, encode_frame
from tests.drivers.dlt645.support import byte_by_byte, feed

VECTOR_DIR = Path(__file__).parent / "vectors" / "1997"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*1997*.toml"))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True, kw_only=True)
class Vector:
    name: str
    raw: bytes
    source: str
    expect: dict[str, Any]

    @property
    def frame(self) -> Frame:
        e = self.expect
        return Frame(address=e["address"], control_code=e["control_code"], data=bytes.fromhex(e["data"]))


def _load(path: Path) -> Vector:
    with path.open("rb") as f:
        doc = tomllib.load(f)
    return Vector(name=path.stem, raw=bytes.fromhex(doc["hex"]), source=doc["source"], expect=doc["expect"])


@pytest.fixture(params=VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def vector(request: pytest.FixtureRequest) -> Vector:
    return _load(request.param)


def test_vectors_exist_and_most_are_captures() -> None:
    captures = [p for p in VECTOR_FILES if p.name.startswith("capture_")]
    assert len(VECTOR_FILES) >= 20 and len(captures) >= 12


def test_vector_is_well_formed(vector: Vector) -> None:
    assert vector.source.strip()
    leading_fe = len(vector.raw) - len(vector.raw.lstrip(b"\xfe"))
    assert leading_fe == vector.expect["wakeup"]
    start = vector.raw.index(0x68)
    total = sum(vector.raw[start:-2])  # the checksum recomputed without the codec
    assert (vector.raw[-2], vector.raw[-1]) == (total % 256, 0x16)
    for claimed_total, claimed_cs in re.findall(r"CS = ([0-9A-F]+)H -> ([0-9A-F]{2})H", vector.source):
        assert (int(claimed_total, 16), int(claimed_cs, 16)) == (total, vector.raw[-2])
    # the data field without the 33H offset, recomputed without the codec
    assert bytes((b - 0x33) & 0xFF for b in vector.raw[start + 10 : -2]) == bytes.fromhex(vector.expect["data"])


def test_decode_whole(vector: Vector) -> None:
    assert decode(vector.raw) == (len(vector.raw), vector.frame)


def test_decode_byte_by_byte(vector: Vector) -> None:
    assert feed(byte_by_byte(vector.raw)) == ([vector.frame], [], b"")


def test_decode_amid_garbage(vector: Vector) -> None:
    rng = random.Random(vector.name)
    for _ in range(25):
        prefix, suffix = rng.randbytes(rng.randint(0, 40)), rng.randbytes(rng.randint(0, 40))
        data = prefix + vector.raw + suffix
        cuts = sorted(rng.sample(range(1, len(data)), k=5))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for pieces in ([data], chunks, byte_by_byte(data)):
            frames, _errors, _rest = feed(pieces)
            assert frames == [vector.frame], f"garbage {prefix.hex()} | {suffix.hex()}"


def test_reencode(vector: Vector) -> None:
    assert encode_frame(vector.frame, wakeup=vector.expect["wakeup"]) == vector.raw


def _text(value: object) -> str:
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _parse(fmt: str, text: str) -> Any:
    kind = FORMATS[fmt].kind
    return {"decimal": Decimal, "date": date.fromisoformat, "time": time.fromisoformat, "address": str}[kind](text)


def test_meaning(vector: Vector) -> None:
    """The frame means what ``expect`` says, and the 1997 builders produce the same frame."""
    frame, expect = vector.frame, vector.expect
    address = expect["address"]
    fn = frame.control_code & codec.FUNCTION_MASK
    if not frame.control_code & codec.DIRECTION_REPLY:
        builders = {
            codec1997.Function.READ_DATA: lambda: codec1997.read_request(address, expect["di"]),
            codec1997.Function.READ_FOLLOW_UP: lambda: codec1997.read_follow_up_request(address, expect["di"]),
            codec1997.Function.BROADCAST_TIME_SYNC:
                lambda: codec1997.time_sync_request(datetime.fromisoformat(expect["time"])),
        }
        assert builders[codec1997.Function(fn)]() == frame
        return
    follow_up = fn == codec1997.Function.READ_FOLLOW_UP
    if frame.is_abnormal:
        with pytest.raises(MeterRejected) as caught:
            codec1997.parse_read_reply(frame, address, expect["di"], follow_up=follow_up)
        assert caught.value.code == expect["error_code"]
        assert expect["error_text"] in str(caught.value)
        assert codec1997.error_reply(address, fn, expect["error_code"]) == frame
        return
    reply = codec1997.parse_read_reply(frame, address, expect["di"], follow_up=follow_up)
    assert (reply.di, reply.more) == (expect["di"], expect["more"])
    build = codec1997.read_follow_up_reply if follow_up else codec1997.read_reply
    assert build(address, reply.di, reply.payload, more=reply.more) == frame
    if "values" in expect:
        decoded = dis1997.decode_item(reply.di, reply.payload)
        assert [_text(value) for _, value in decoded] == expect["values"]
        values = [_parse(row.fmt, text) for (row, _), text in zip(decoded, expect["values"], strict=True)]
        assert dis1997.encode_item(reply.di, values) == reply.payload


def test_follow_up_frames_join_to_the_block() -> None:
    more, rest = (_load(VECTOR_DIR / f"{n}.toml") for n in ("read_reply_more_1997", "read_follow_up_reply_1997"))
    block = _load(VECTOR_DIR / "read_reply_block_forward_4_tariffs_1997.toml")
    first = codec1997.parse_read_reply(more.frame, "000000000005", "901F")
    last = codec1997.parse_read_reply(rest.frame, "000000000005", "901F", follow_up=True)
    assert first.more and not last.more
    assert dis1997.decode_item("901F", first.payload + last.payload) == dis1997.decode_item(
        "901F", codec1997.parse_read_reply(block.frame, "000000000005", "901F").payload)


# --- codec rules --------------------------------------------------------------------------------


def test_error_bits_are_the_1997_editions() -> None:
    # the same ERR byte means different things in the two editions (DL/T 645-2007 Bit0 other, Bit1 no data)
    assert codec1997.describe_error(0x01) == "illegal data"
    assert codec1997.describe_error(0x02) == "unknown data identifier"
    assert codec1997.describe_error(0x04) == "password error"
    assert codec1997.describe_error(0x50) == "annual time zone count exceeded, rate/tariff count exceeded"
    assert codec.describe_error(0x02) == "no requested data"


def test_di_is_sent_low_byte_first_with_offset() -> None:
    raw = encode_frame(codec1997.read_request("000000000003", "B611"), wakeup=0)
    assert raw[10:12] == bytes((0x11 + 0x33, 0xB6 + 0x33))  # DI0 first, each +33H: 44 E9
    with pytest.raises(FrameError, match="8 digits is a DL/T 645-2007 identifier"):
        codec1997.read_request("000000000003", "02010100")


def test_a_2007_reply_is_not_taken_for_a_1997_one() -> None:
    reply_2007 = codec.read_reply("000000000005", "00010000", b"\x00\x00\x00\x00")
    with pytest.raises(FrameError, match="does not answer DL/T 645-1997"):
        codec1997.parse_read_reply(reply_2007, "000000000005", "9010")
    other_di = codec1997.read_reply("000000000005", "9020", b"\x00" * 4)
    with pytest.raises(FrameError, match="expected 9010"):
        codec1997.parse_read_reply(other_di, "000000000005", "9010")


addresses = st.text(alphabet="0123456789", min_size=12, max_size=12)
single_items = [item for item in dis1997.DATA_ITEMS.values() if not item.is_block]


def _value_of(item: dis1997.DataItem) -> st.SearchStrategy[Any]:
    spec = FORMATS[item.fmt]
    if spec.kind == "decimal":
        digits = 2 * spec.length
        limit = 8 * 10 ** (digits - 1) if item.signed else 10**digits
        return st.integers(-(limit - 1) if item.signed else 0, limit - 1).map(lambda n: Decimal(n).scaleb(-spec.decimals))
    if spec.kind == "date":
        return st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
    if spec.kind == "time":
        return st.times().map(lambda t: t.replace(microsecond=0))
    return addresses


@st.composite
def item_and_value(draw: st.DrawFn) -> tuple[dis1997.DataItem, Any]:
    item = draw(st.sampled_from(single_items))
    return item, draw(_value_of(item))


@FAST
@given(address=addresses, case=item_and_value(), wakeup=st.integers(0, 4), more=st.booleans())
def test_read_round_trip(address: str, case: tuple[dis1997.DataItem, Any], wakeup: int, more: bool) -> None:
    item, value = case
    request = codec1997.read_request(address, item.di)
    assert decode(encode_frame(request, wakeup=wakeup))[1] == request
    payload = dis1997.encode_item(item.di, [value])
    reply = codec1997.read_reply(address, item.di, payload, more=more)
    raw = encode_frame(reply, wakeup=wakeup)
    assert feed(byte_by_byte(raw))[0] == [reply]
    parsed = codec1997.parse_read_reply(reply, address, item.di)
    assert parsed.more == more
    assert dis1997.decode_item(item.di, parsed.payload) == ((item, value),)


@FAST
@given(tariffs=st.lists(st.integers(0, 99_999_999).map(lambda n: Decimal(n).scaleb(-2)), min_size=0, max_size=14),
       head=st.sampled_from(["901", "902", "911", "912"]))
def test_energy_block_round_trip_with_the_meters_tariff_count(tariffs: list[Decimal], head: str) -> None:
    total = sum(tariffs, Decimal(0))
    if total >= Decimal("1000000"):
        return
    values = [total.quantize(Decimal("0.01")), *tariffs]
    payload = dis1997.encode_item(f"{head}F", values)
    decoded = dis1997.decode_item(f"{head}F", payload)
    assert [row.di for row, _ in decoded] == [f"{head}{t:X}" for t in range(len(values))]
    assert [v for _, v in decoded] == values


@FAST
@given(data=st.binary(max_size=120))
def test_any_bytes_raise_only_our_errors(data: bytes) -> None:
    buf = bytearray(data)
    while buf:
        try:
            consumed, frame = decode(buf)
        except FrameError as exc:
            del buf[: getattr(exc, "consumed", len(buf))]
            continue
        del buf[:consumed]
        if frame is None:
            break
        for follow_up in (False, True):
            for di in ("9010", "901F", "B611", "C010"):
                try:
                    reply = codec1997.parse_read_reply(frame, "AAAAAAAAAAAA", di, follow_up=follow_up)
                    dis1997.decode_item(reply.di, reply.payload)
                except (FrameError, MeterRejected):
                    pass


# --- the table -----------------------------------------------------------------------------------

COUNTERPARTS = {  # 1997 identifier -> its DL/T 645-2007 counterpart, whose OBIS code it must carry
    "9010": "00010000", "9011": "00010100", "9014": "00010400", "901E": "00010E00",
    "9020": "00020000", "9023": "00020300", "9110": "00030000", "9120": "00040000",
    "B611": "02010100", "B612": "02010200", "B613": "02010300",
    "B621": "02020100", "B622": "02020200", "B623": "02020300",
    "B630": "02030000", "B631": "02030100", "B632": "02030200", "B633": "02030300",
    "B640": "02040000", "B641": "02040100", "B642": "02040200", "B643": "02040300",
    "B650": "02060000", "B651": "02060100", "B652": "02060200", "B653": "02060300",
}


@pytest.mark.parametrize(("old", "new"), sorted(COUNTERPARTS.items()))
def test_same_obis_and_sign_as_the_2007_counterpart(old: str, new: str) -> None:
    a, b = dis1997.lookup(old), dis.lookup(new)
    assert a.obis == b.obis
    assert a.unit == b.unit
    # 9110/9120 are plain reactive registers (unsigned); their 2007 counterparts are combinations (signed)
    assert a.signed == b.signed or (old in ("9110", "9120") and not a.signed)


def test_every_row_cites_its_source_and_has_the_standards_length() -> None:
    lengths = {"XXXXXX.XX": 4, "XXX": 2, "XX.XX": 2, "XX.XXXX": 3, "X.XXX": 2, "YYMMDDWW": 4, "hhmmss": 3,
               "NNNNNNNNNNNN": 6}
    for item in dis1997.DATA_ITEMS.values():
        assert item.source.startswith("DL/T 645-1997 表A."), item
        assert FORMATS[item.fmt].length == lengths[item.fmt], item
    assert dis1997.item_length("901F") == 20 and dis1997.block_of("9012") == "901F"
    assert dis1997.block_of("B611") is None


# --- configuration ------------------------------------------------------------------------------


def _raw(meter: dict[str, Any], link: dict[str, Any] | None = None, **more_meters: dict[str, Any]) -> dict[str, Any]:
    return {"links": {"bus": {"type": "serial", "port": "/dev/null", **(link or {})}},
            "meters": {"m1": {"link": "bus", "protocol": "dlt645", "address": "000000000005", **meter},
                       **more_meters}}


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigProblems) as caught:
        parse_config(raw)
    return [str(p) for p in caught.value.problems]


POINT_1997 = {"obis": "1.0.1.8.0.255", "di": "9010"}
POINT_2007 = {"obis": "1.0.1.8.0.255", "di": "00010000"}


def test_a_1997_meter_reads_its_points_and_its_link_defaults_to_1200_8e1() -> None:
    cfg = parse_config(_raw({"standard": "1997", "points": [POINT_1997, {"obis": "0.0.1.0.0.255", "di": "c011"}]}))
    assert [(p.di, p.unit) for p in cfg.meters["m1"].points] == [("9010", "kWh"), ("C011", "s")]
    assert (cfg.links["bus"].baudrate, cfg.links["bus"].parity) == (1200, "E")
    unquoted = parse_config(_raw({"standard": 1997, "points": [POINT_1997]}))
    assert unquoted.links["bus"].baudrate == 1200
    assert parse_config(_raw({"points": [POINT_2007]})).links["bus"].baudrate == 2400
    assert parse_config(_raw({"standard": "1997", "points": [POINT_1997]}, {"baudrate": 2400})).links["bus"].baudrate \
        == 2400


def test_both_editions_on_one_link() -> None:
    second = {"link": "bus", "protocol": "dlt645", "address": "000000000001", "points": [POINT_2007]}
    assert _problems(_raw({"standard": "1997", "points": [POINT_1997]}, m2=second)) == [
        "links.bus.baudrate: the link carries DL/T 645-2007 and -1997 meters, whose default rates differ "
        "(2400, 1200): set the rate they share"]
    cfg = parse_config(_raw({"standard": "1997", "points": [POINT_1997]}, {"baudrate": 2400}, m2=second))
    assert set(cfg.meters) == {"m1", "m2"} and cfg.links["bus"].protocol == "dlt645"


@pytest.mark.parametrize(("meter", "expected"), [
    ({"standard": "2005", "points": [POINT_2007]},
     "meters.m1.standard: '2005' is not a DL/T 645 edition: write \"2007\" (the default) or \"1997\""),
    ({"standard": "1997", "points": [POINT_2007]},
     "meters.m1.points[0].di: '00010000' is a DL/T 645-2007 identifier (8 hex digits) but the meter has "
     "standard: \"1997\""),
    ({"points": [POINT_1997]},
     "meters.m1.points[0].di: '9010' is a DL/T 645-1997 identifier (4 hex digits) but the meter speaks "
     "DL/T 645-2007: set the meter's standard: \"1997\""),
    ({"standard": "1997", "points": [{"obis": "1.0.1.8.0.255", "di": "9999"}]},
     "meters.m1.points[0].di: 9999 is not in Meterlink's DL/T 645-1997 table"),
    ({"standard": "1997", "points": [{"obis": "1.0.1.8.0.255", "di": "901F"}]},
     "meters.m1.points[0].di: 901F is a block"),
    ({"standard": "1997", "points": [{"obis": "1.0.1.8.0.255", "di": "9010", "unit": "Wh"}]},
     "meters.m1.points[0].unit: 'Wh': 9010 (forward active energy, total) is in kWh"),
    ({"standard": "1997", "points": [POINT_1997], "daily_frozen_days": 3},
     "meters.m1.daily_frozen_days: DL/T 645-1997 meters keep no daily frozen data"),
    ({"profile": "dlt645-1997-generic"},
     "meters.m1.standard: dlt645-1997-generic is a DL/T 645-1997 profile: set standard: \"1997\" on the meter"),
])
def test_one_line_errors(meter: dict[str, Any], expected: str) -> None:
    problems = _problems(_raw(meter))
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert problems[0].startswith(expected), problems


def test_profile_resolves_with_the_2007_obis_codes() -> None:
    old = {p.obis: p for p in profile_points("dlt645-1997-generic")}
    new = {p.obis: p for p in profile_points("dlt645-generic-3phase")}
    assert set(old) <= set(new)
    for obis, point in old.items():
        assert point.unit == new[obis].unit or obis in ("1.0.3.8.0.255", "1.0.4.8.0.255"), obis
        assert (dis1997.lookup(point.di or "").obis or "0.0.1.0.0.255") == obis
