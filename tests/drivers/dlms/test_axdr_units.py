"""A-XDR values, COSEM date-time, scaler-unit arithmetic and addresses: pure functions, exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterlink.core.errors import FrameError
from meterlink.core.reading import UnitMismatch
from meterlink.drivers.dlms import axdr, units
from meterlink.drivers.dlms.address import DlmsAddress, parse_address, physical_from_serial
from meterlink.drivers.dlms.axdr import Data, Tag

_INT_TAGS = [(Tag.INTEGER, -128, 127), (Tag.UNSIGNED, 0, 255), (Tag.LONG, -32768, 32767),
             (Tag.LONG_UNSIGNED, 0, 65535), (Tag.DOUBLE_LONG, -2**31, 2**31 - 1),
             (Tag.DOUBLE_LONG_UNSIGNED, 0, 2**32 - 1), (Tag.LONG64, -2**63, 2**63 - 1),
             (Tag.LONG64_UNSIGNED, 0, 2**64 - 1), (Tag.ENUM, 0, 255)]


def _ints() -> st.SearchStrategy[Data]:
    return st.one_of(*[st.integers(lo, hi).map(lambda v, t=t: axdr.integer(t, v)) for t, lo, hi in _INT_TAGS])


_data = st.recursive(
    st.one_of(_ints(), st.binary(max_size=300).map(axdr.octets), st.text("ABC123 ", max_size=20).map(axdr.visible),
              st.booleans().map(lambda b: Data(Tag.BOOLEAN, b)), st.just(axdr.null())),
    lambda children: st.one_of(st.lists(children, max_size=5).map(axdr.array),
                               st.lists(children, max_size=5).map(lambda xs: axdr.structure(*xs))),
    max_leaves=20)


@given(_data)
def test_data_round_trip(d: Data) -> None:
    raw = axdr.encode(d)
    assert axdr.decode_all(raw) == d
    for cut in range(len(raw)):  # a value cut short is a frame error, never a wrong value
        with pytest.raises(FrameError):
            axdr.decode_all(raw[:cut])


def test_lengths_above_127_use_the_long_form() -> None:
    """A-XDR / BER length: 0x81 nn from 128 bytes, 0x82 nnnn from 256 (dlms-cosem writes one byte here)."""
    assert axdr.encode(axdr.octets(bytes(200)))[:3] == b"\x09\x81\xc8"
    assert axdr.encode(axdr.octets(bytes(300)))[:4] == b"\x09\x82\x01\x2c"
    assert axdr.encode(axdr.array([axdr.null()] * 130))[:3] == b"\x01\x81\x82"


def test_floats_are_the_meters_decimals() -> None:
    assert axdr.decode_all(b"\x17" + bytes.fromhex("4366199A")).number() == Decimal("230.1")  # float32 230.1
    assert axdr.decode_all(axdr.encode(axdr.float64(0.1))).number() == Decimal("0.1")
    assert axdr.decode_all(b"\x17\x7f\xc0\x00\x00").value is None  # NaN is no value


def test_unknown_tag_and_cut_compact_array() -> None:
    with pytest.raises(FrameError, match="unknown A-XDR data tag 7"):
        axdr.decode_all(b"\x07\x00")
    with pytest.raises(FrameError):  # a compact-array (decoded since issue 11) whose contents are missing
        axdr.decode_all(b"\x13\x12")


@pytest.mark.parametrize(("raw", "utc"), [
    ("07 EA 01 05 01 0A 07 1E 00 00 00 00", "2026-01-05T10:07:30+00:00"),
    ("07 EA 01 05 01 0B 07 1E 00 FF C4 00", "2026-01-05T10:07:30+00:00"),   # CET: deviation -60 (Blue Book 4.1.6.1)
    ("07 EA 07 05 07 0C 07 1E 32 FF 88 80", "2026-07-05T10:07:30.500000+00:00"),  # CEST, DST status bit
])
def test_date_time_deviation_is_minutes_from_local_time_to_utc(raw: str, utc: str) -> None:
    dt = axdr.CosemDateTime.from_bytes(bytes.fromhex(raw))
    assert dt.to_datetime().astimezone(UTC) == datetime.fromisoformat(utc)
    again = axdr.CosemDateTime.from_datetime(datetime.fromisoformat(utc), deviation=dt.deviation, status=dt.status)
    assert again.to_bytes()[:4] == bytes.fromhex(raw)[:4] and again.to_bytes()[5:] == bytes.fromhex(raw)[5:]


def test_unspecified_deviation_and_impossible_dates() -> None:
    dt = axdr.CosemDateTime.from_bytes(bytes.fromhex("07EA0105FF0A071E00800000"))
    tz = timezone(timedelta(hours=2))
    assert dt.deviation is None and dt.to_datetime(tz) == datetime(2026, 1, 5, 10, 7, 30, tzinfo=tz)
    with pytest.raises(FrameError, match="not a point in time"):
        axdr.CosemDateTime.from_bytes(bytes.fromhex("FFFF0105FF0A071E00800000"))
    with pytest.raises(FrameError, match="not a valid date"):
        axdr.CosemDateTime.from_bytes(bytes.fromhex("07EA021EFF0A071E00000000")).to_datetime()


@pytest.mark.parametrize(("raw", "scaler", "meter_unit", "point_unit", "value", "unit"), [
    (123456, 1, "Wh", "kWh", "1234.56", "kWh"),     # the CONTRACT's 1234.56 kWh, never 1234.5600000000002
    (2301, -1, "V", "V", "230.1", "V"),
    (2301, -1, "V", "", "230.1", "V"),               # a point without unit takes the meter's
    (950, -3, "", "", "0.950", ""),
    (15, 3, "W", "kW", "15", "kW"),
    (7, 6, "Wh", "MWh", "7", "MWh"),
    (-5, 0, "var", "kvar", "-0.005", "kvar"),
])
def test_scaler_and_unit_conversion_is_exact(raw: int, scaler: int, meter_unit: str, point_unit: str, value: str,
                                             unit: str) -> None:
    got, got_unit = units.convert(units.scale(Decimal(raw), scaler), meter_unit, point_unit)
    assert (str(got), got_unit) == (value, unit)


def test_unit_mismatch() -> None:
    with pytest.raises(UnitMismatch, match="reports V, the point is in A"):
        units.convert(Decimal(1), "V", "A")
    assert units.unit_text(30) == "Wh" and units.unit_text(255) == "" and units.unit_text(200) == "unit 200"


def test_physical_address_from_serial_number() -> None:
    """Green Book 8.4.2.3 / Gurux default formula SN % 10000 + 1000."""
    assert physical_from_serial("87654321") == 5321
    assert physical_from_serial("LGZ1030000123456") == 4456
    assert parse_address({"client": 1, "physical": "auto"}, "12345678") == DlmsAddress(client=1, logical=1,
                                                                                      physical=6678)


@pytest.mark.parametrize(("raw", "message"), [
    ({"client": 200}, "client 200 is not a number 0-127"),
    ({"logical": -1}, "logical -1"),
    ({"physical": "auto"}, "needs the meter's serial"),
    ({"size": 3}, "not an HDLC address size"),
    ({"clinet": 1}, "unknown key 'clinet'"),
    (17, "is not a DLMS address"),
])
def test_bad_addresses(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_address(raw)
