"""Every vector in ``vectors/*.toml`` decoded whole, byte by byte and amid garbage, then re-encoded.

A vector is ``hex`` (the bytes on the wire), ``source`` (clause of DL/T 645-2007
or a documented capture) and ``expect``: ``wakeup`` (leading FE count),
``address``, ``control_code``, ``data`` (data field without the 33H offset) and,
depending on the frame, ``di``, ``seq``, ``more``, ``values``, ``error_code``,
``error_text``, ``read_address`` or ``time``.
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

from meterlink.core.errors import MeterRejected
from meterlink.drivers.dlt645 import dis
from meterlink.drivers.dlt645.codec import (
    FORMATS,
    Frame,
    Function,
    Value,
    decode,
    encode_frame,
    error_reply,
    parse_read_address_reply,
    parse_read_reply,
    read_address_reply,
    read_address_request,
    read_follow_up_reply,
    read_follow_up_request,
    read_reply,
    read_request,
    time_sync_request,
)
from tests.drivers.dlt645.support import byte_by_byte, feed

VECTOR_DIR = Path(__file__).parent / "vectors"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.toml"))
EXPECT_KEYS = {
    "wakeup", "address", "control_code", "data", "di", "seq", "more", "values",
    "error_code", "error_text", "read_address", "time",
}


@dataclass(frozen=True, kw_only=True)
class Vector:
    name: str
    raw: bytes
    source: str
    expect: dict[str, Any]

    @property
    def frame(self) -> Frame:
        return Frame(
            address=self.expect["address"],
            control_code=self.expect["control_code"],
            data=bytes.fromhex(self.expect["data"]),
        )


def _load(path: Path) -> Vector:
    with path.open("rb") as f:
        doc = tomllib.load(f)
    return Vector(name=path.stem, raw=bytes.fromhex(doc["hex"]), source=doc["source"], expect=doc["expect"])


@pytest.fixture(params=VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def vector(request: pytest.FixtureRequest) -> Vector:
    return _load(request.param)


def test_vectors_exist() -> None:
    assert len(VECTOR_FILES) >= 10


def test_vector_is_well_formed(vector: Vector) -> None:
    assert vector.source.strip(), "every vector names its source"
    assert set(vector.expect) <= EXPECT_KEYS, f"unknown expect keys {set(vector.expect) - EXPECT_KEYS}"
    leading_fe = len(vector.raw) - len(vector.raw.lstrip(b"\xfe"))
    assert leading_fe == vector.expect["wakeup"]
    # the checksum byte, recomputed independently of the codec: sum from the first 68H through the data
    start = vector.raw.index(0x68)
    total = sum(vector.raw[start:-2])
    assert vector.raw[-2] == total % 256
    assert vector.raw[-1] == 0x16
    for claimed_total, claimed_cs in re.findall(r"= ([0-9A-F]+)H -> ([0-9A-F]{2})H", vector.source):
        assert (int(claimed_total, 16), int(claimed_cs, 16)) == (total, vector.raw[-2])


def test_decode_whole(vector: Vector) -> None:
    assert decode(vector.raw) == (len(vector.raw), vector.frame)


def test_decode_byte_by_byte(vector: Vector) -> None:
    frames, errors, rest = feed(byte_by_byte(vector.raw))
    assert (frames, errors, rest) == ([vector.frame], [], b"")


def test_decode_amid_garbage(vector: Vector) -> None:
    rng = random.Random(vector.name)  # deterministic per vector
    for _ in range(25):
        prefix = rng.randbytes(rng.randint(0, 40))
        suffix = rng.randbytes(rng.randint(0, 40))
        data = prefix + vector.raw + suffix
        cuts = sorted(rng.sample(range(1, len(data)), k=min(5, len(data) - 1)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for pieces in ([data], chunks, byte_by_byte(data)):
            frames, _errors, _rest = feed(pieces)
            assert frames == [vector.frame], f"garbage {prefix.hex()} | {suffix.hex()}"


def test_reencode(vector: Vector) -> None:
    assert encode_frame(vector.frame, wakeup=vector.expect["wakeup"]) == vector.raw


def _text(value: Value) -> str:
    return value if isinstance(value, str) else str(value) if isinstance(value, Decimal) else value.isoformat()


def _parse(fmt: str, text: str) -> Value:
    kind = FORMATS[fmt].kind
    parsers = {
        "decimal": Decimal, "datetime": datetime.fromisoformat, "date": date.fromisoformat,
        "time": time.fromisoformat, "address": str,
    }
    return parsers[kind](text)


def test_meaning(vector: Vector) -> None:
    """The frame means what ``expect`` says, and the builders produce the same frame."""
    frame, expect = vector.frame, vector.expect
    address = expect["address"]
    if not frame.is_reply:
        builders = {
            Function.READ_DATA: lambda: read_request(address, expect["di"]),
            Function.READ_FOLLOW_UP: lambda: read_follow_up_request(address, expect["di"], expect["seq"]),
            Function.READ_ADDRESS: read_address_request,
            Function.BROADCAST_TIME_SYNC: lambda: time_sync_request(datetime.fromisoformat(expect["time"])),
        }
        assert frame.function in builders, f"no builder for request {frame.control_code:02X}H"
        assert builders[Function(frame.function)]() == frame
    elif frame.is_abnormal:
        with pytest.raises(MeterRejected) as caught:
            parse_read_reply(frame, address, expect["di"])
        assert caught.value.code == expect["error_code"]
        assert expect["error_text"] in str(caught.value)
        assert error_reply(address, frame.function, expect["error_code"]) == frame
    elif frame.function == Function.READ_ADDRESS:
        assert parse_read_address_reply(frame) == expect["read_address"]
        assert read_address_reply(expect["read_address"]) == frame
    elif frame.function in (Function.READ_DATA, Function.READ_FOLLOW_UP):
        seq = expect.get("seq")
        reply = parse_read_reply(frame, address, expect["di"], expected_seq=seq)
        assert (reply.di, reply.more, reply.seq) == (expect["di"], expect["more"], seq)
        if seq is None:
            assert read_reply(address, reply.di, reply.payload, more=reply.more) == frame
        else:
            assert read_follow_up_reply(address, reply.di, reply.payload, seq, more=reply.more) == frame
        if "values" in expect:
            decoded = dis.decode_item(reply.di, reply.payload)
            assert [_text(value) for _, value in decoded] == expect["values"]
            values = [_parse(row.fmt, text) for (row, _), text in zip(decoded, expect["values"], strict=True)]
            assert dis.encode_item(reply.di, values) == reply.payload
    else:
        pytest.fail(f"no interpretation for reply {frame.control_code:02X}H")
