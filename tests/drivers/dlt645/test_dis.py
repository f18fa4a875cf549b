"""The data identifier table: OBIS codes, units, formats and blocks."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt645.codec import FORMATS
from meterlink.drivers.dlt645.dis import (
    DAILY_FROZEN_RECORDS,
    DATA_ITEMS,
    block_members,
    daily_frozen_dis,
    decode_item,
    encode_item,
    expand_block,
    item_length,
    lookup,
)

UNITS = {"kWh", "kvarh", "V", "A", "kW", "kvar", "Hz", ""}


@pytest.mark.parametrize(
    ("di", "obis", "unit", "fmt", "signed"),
    [
        ("00000000", "1.0.15.8.0.255", "kWh", "XXXXXX.XX", True),  # 组合有功总电能
        ("00000400", "1.0.15.8.4.255", "kWh", "XXXXXX.XX", True),
        ("00010000", "1.0.1.8.0.255", "kWh", "XXXXXX.XX", False),  # 正向有功总电能
        ("00010100", "1.0.1.8.1.255", "kWh", "XXXXXX.XX", False),
        ("00010400", "1.0.1.8.4.255", "kWh", "XXXXXX.XX", False),
        ("00020000", "1.0.2.8.0.255", "kWh", "XXXXXX.XX", False),  # 反向有功总电能
        ("00020300", "1.0.2.8.3.255", "kWh", "XXXXXX.XX", False),
        ("00030000", "1.0.3.8.0.255", "kvarh", "XXXXXX.XX", True),  # 组合无功1
        ("00040000", "1.0.4.8.0.255", "kvarh", "XXXXXX.XX", True),  # 组合无功2
        ("02010100", "1.0.32.7.0.255", "V", "XXX.X", False),
        ("02010200", "1.0.52.7.0.255", "V", "XXX.X", False),
        ("02010300", "1.0.72.7.0.255", "V", "XXX.X", False),
        ("02020100", "1.0.31.7.0.255", "A", "XXX.XXX", True),
        ("02020200", "1.0.51.7.0.255", "A", "XXX.XXX", True),
        ("02020300", "1.0.71.7.0.255", "A", "XXX.XXX", True),
        ("02030000", "1.0.16.7.0.255", "kW", "XX.XXXX", True),
        ("02030100", "1.0.36.7.0.255", "kW", "XX.XXXX", True),
        ("02030200", "1.0.56.7.0.255", "kW", "XX.XXXX", True),
        ("02030300", "1.0.76.7.0.255", "kW", "XX.XXXX", True),
        # signed reactive power: not the import-only C = 3/23/43/63 but 128 + those (manufacturer range)
        ("02040000", "1.0.131.7.0.255", "kvar", "XX.XXXX", True),
        ("02040100", "1.0.151.7.0.255", "kvar", "XX.XXXX", True),
        ("02040200", "1.0.171.7.0.255", "kvar", "XX.XXXX", True),
        ("02040300", "1.0.191.7.0.255", "kvar", "XX.XXXX", True),
        ("00010500", "1.0.1.8.5.255", "kWh", "XXXXXX.XX", False),  # tariffs beyond 4: DI1 = t, OBIS E = t
        ("00010C00", "1.0.1.8.12.255", "kWh", "XXXXXX.XX", False),
        ("00023F00", "1.0.2.8.63.255", "kWh", "XXXXXX.XX", False),
        ("02060000", "1.0.13.7.0.255", "", "X.XXX", True),
        ("02060100", "1.0.33.7.0.255", "", "X.XXX", True),
        ("02060200", "1.0.53.7.0.255", "", "X.XXX", True),
        ("02060300", "1.0.73.7.0.255", "", "X.XXX", True),
        ("02800002", "1.0.14.7.0.255", "Hz", "XX.XX", False),
        ("04000101", None, "", "YYMMDDWW", False),
        ("04000102", None, "", "hhmmss", False),
        ("04000401", None, "", "NNNNNNNNNNNN", False),
        ("05060001", None, "", "YYMMDDhhmm", False),
        ("0506003E", None, "", "YYMMDDhhmm", False),
    ],
)
def test_rows(di: str, obis: str | None, unit: str, fmt: str, signed: bool) -> None:
    row = lookup(di)
    assert (row.di, row.obis, row.unit, row.fmt, row.signed) == (di, obis, unit, fmt, signed)


@pytest.mark.parametrize(
    ("block", "members", "length"),
    [
        ("0000FF00", ["00000000", "00000100", "00000200", "00000300", "00000400"], 20),
        ("0001FF00", ["00010000", "00010100", "00010200", "00010300", "00010400"], 20),
        ("0002FF00", ["00020000", "00020100", "00020200", "00020300", "00020400"], 20),
        ("0201FF00", ["02010100", "02010200", "02010300"], 6),
        ("0202FF00", ["02020100", "02020200", "02020300"], 9),
        ("0203FF00", ["02030000", "02030100", "02030200", "02030300"], 12),
        ("0204FF00", ["02040000", "02040100", "02040200", "02040300"], 12),
        ("0206FF00", ["02060000", "02060100", "02060200", "02060300"], 8),
        ("05060101", ["00010000", "00010100", "00010200", "00010300", "00010400"], 20),
        ("05060201", ["00020000", "00020100", "00020200", "00020300", "00020400"], 20),
    ],
)
def test_blocks(block: str, members: list[str], length: int) -> None:
    assert [row.di for row in block_members(block, length)] == members
    assert expand_block(block)[: len(members)] == tuple(members)
    assert lookup(block).obis is None
    assert item_length(block) == length


def test_single_value_expands_to_itself() -> None:
    assert expand_block("00010000") == ("00010000",)
    assert expand_block("0201ff00") == expand_block("0201FF00")


def test_table_is_consistent() -> None:
    for key, row in DATA_ITEMS.items():
        assert key == row.di == row.di.upper()
        assert row.unit in UNITS
        assert row.fmt in FORMATS
        assert row.obis is None or re.fullmatch(r"1\.0\.\d+\.\d+\.\d+\.255", row.obis), row
        for member in row.members:
            assert not lookup(member).is_block
            assert lookup(member).fmt == row.fmt


def test_obis_codes_are_unique() -> None:
    codes = [row.obis for row in DATA_ITEMS.values() if row.obis]
    assert len(codes) == len(set(codes))


def test_daily_frozen() -> None:
    assert daily_frozen_dis(1) == ("05060001", "05060101", "05060201")
    assert daily_frozen_dis(62) == ("0506003E", "0506013E", "0506023E")  # DI0 is N in hex: 上62次
    for n in (0, DAILY_FROZEN_RECORDS + 1):
        with pytest.raises(ValueError):
            daily_frozen_dis(n)
    for n in range(1, DAILY_FROZEN_RECORDS + 1):
        for di in daily_frozen_dis(n):
            assert lookup(di).di == di
    with pytest.raises(KeyError):
        lookup("0506003F")


def test_unknown_di() -> None:
    with pytest.raises(KeyError, match="not in the DL/T 645 table"):
        lookup("FFFFFFFF")


def test_block_round_trip() -> None:
    values = [Decimal("12.3456"), Decimal("-1.0000"), Decimal("0.0000"), Decimal("79.9999")]
    payload = encode_item("0203FF00", values)
    assert [value for _, value in decode_item("0203FF00", payload)] == values
    assert [row.obis for row, _ in decode_item("0203FF00", payload)] == [
        "1.0.16.7.0.255", "1.0.36.7.0.255", "1.0.56.7.0.255", "1.0.76.7.0.255",
    ]


def test_daily_frozen_block_decodes_to_forward_energies() -> None:
    values = [Decimal("100.00"), Decimal("10.00"), Decimal("20.00"), Decimal("30.00"), Decimal("40.00")]
    decoded = decode_item("05060103", encode_item("05060103", values))
    assert [(row.obis, value) for row, value in decoded] == [
        (f"1.0.1.8.{t}.255", v) for t, v in enumerate(values)
    ]
    freeze = decode_item("05060003", encode_item("05060003", [datetime(2024, 5, 14, 0, 0)]))
    assert freeze[0][1] == datetime(2024, 5, 14, 0, 0)


@pytest.mark.parametrize("tariffs", [0, 1, 2, 4, 8, 12, 63])
@pytest.mark.parametrize("block", ["0000FF00", "0001FF00", "0002FF00", "05060101", "0506023E"])
def test_energy_block_holds_the_meters_own_tariff_count(block: str, tariffs: int) -> None:
    """表A.1: a block is "total, tariff 1..k" for the meter's k; k comes from the length (4 x (k + 1))."""
    values = [Decimal(f"{1000 + t}.{t:02d}") for t in range(tariffs + 1)]
    payload = encode_item(block, values)
    assert len(payload) == 4 * (tariffs + 1) == item_length(block, tariffs)
    decoded = decode_item(block, payload)
    assert [value for _, value in decoded] == values
    assert [row.obis.split(".")[4] for row, _ in decoded] == [str(t) for t in range(tariffs + 1)]
    assert decoded[0][0].di[4:6] == "00", "the total comes first and is never lost"


@pytest.mark.parametrize("length", [0, 3, 13, 4 * 65])
def test_energy_block_of_impossible_length_is_a_frame_error(length: int) -> None:
    with pytest.raises(FrameError, match=r"not total \+ 0\.\.63 tariffs"):
        decode_item("0001FF00", bytes(length))


def test_other_blocks_keep_their_fixed_length() -> None:
    with pytest.raises(FrameError, match="12 bytes, the table has 6"):
        decode_item("0201FF00", bytes(12))


def test_encode_item_counts_values() -> None:
    with pytest.raises(ValueError):
        encode_item("0201FF00", [Decimal("220.0")])
