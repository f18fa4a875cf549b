"""DL/T 645-1997 data identifiers (appendix A, "数据标识编码表") with OBIS codes, units and formats.

A 1997 identifier is 2 bytes DI1 DI0, written as 4 hex digits (``"9010"``).
The appendix's tables are organised by the first digit: 9 energy (表A.1
电能量), A/B demand (表A.2/A.3 最大需量), B6 variables (表A.4 变量), C
parameters (表A.5 参变量).  For energies the last digit is the tariff: 0 the
total, 1..E tariffs 1..14, F the block "total, tariff 1..k" (数据块).

Every row maps to the OBIS code of its DL/T 645-2007 counterpart in
``meterlink.drivers.dlt645.dis`` (forward active energy total 1.0.1.8.0.255, tariff t
E = t; phase A voltage 1.0.32.7.0.255; signed reactive power in the
manufacturer range C = 131/151/171/191, ...), so a subscriber sees the same
code whichever edition the meter speaks.  Sign convention as in ``dis``:
currents, powers and power factors carry the direction in the top bit
("最高位表示方向", the State Grid institute's reader ``d97_bcd_to_double``
does the same: "如果首位数为0x8X 则这个是负数"); energies and voltages are
unsigned.

Sources, cited per row in ``source``:

* ``A.1``: DL/T 645-1997 表A.1 电能量数据标识编码表, 9010 (当前)正向有功总电能
  XXXXXX.XX kWh, 4 bytes; 9020 反向有功, 9110 正向无功 (kvarh), 9120 反向无功;
  DI0 = 1..E tariffs, F the block; cross-checked with bobyuxinyang/dlt645_1997
  ``get_d97_ruler_info`` (case 9, E_D97_FORMAT_XXXXXX_XX, length 4);
* ``A.4``: 表A.4 变量数据标识编码表: B611..B613 A/B/C 相电压 XXX V 2 bytes,
  B621..B623 电流 XX.XX A 2 bytes, B630 瞬时有功功率 / B631..B633 XX.XXXX kW
  3 bytes, B640 瞬时无功功率 / B641..B643 XX.XX kvar 2 bytes, B650 总功率因数 /
  B651..B653 X.XXX 2 bytes (bobyuxinyang/dlt645_1997 ``get_d97_ruler_info``
  case B/6, lengths and E_D97_FORMAT_* as listed; the phase-A voltage reply of
  the Heyuan ASDU-LS manual p. 18, 44 E9 33 34 -> B611 = 0100 V);
* ``A.5``: 表A.5 参变量数据标识编码表: C010 日期及周次 YYMMDDWW 4 bytes, C011
  时间 hhmmss 3 bytes, C032 表号 (meter number, the address most meters
  answer to) NNNNNNNNNNNN 6 bytes (same implementation, case C/0).

The 1997 edition has no frequency, no combined (组合) energies and no daily
frozen data; blocks are defined here for the energies only (901F, 902F,
911F, 912F), the variables are read one identifier at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt645.codec import FORMATS, Value, decode_value, encode_value
from meterlink.drivers.dlt645.codec1997 import normalize_di
from meterlink.drivers.dlt645.dis import SIGNED_REACTIVE_POWER_C

MAX_TARIFFS: Final = 14
"""DI0 = 1..E: the 1997 edition numbers tariffs 1..14 (费率数 k <= 14)."""

TARIFFS: Final = 4
"""The common tariff count (尖峰平谷); only ``item_length``'s default, never assumed when decoding."""

CLOCK_DI: Final = "C011"
"""A point with this identifier reads the meter clock: date C010 + time C011, as the 2007 clock point does."""

SOURCE_A1: Final = "DL/T 645-1997 表A.1 电能量; bobyuxinyang/dlt645_1997 get_d97_ruler_info case 9"
SOURCE_A4: Final = "DL/T 645-1997 表A.4 变量; bobyuxinyang/dlt645_1997 get_d97_ruler_info case B/6"
SOURCE_A5: Final = "DL/T 645-1997 表A.5 参变量; bobyuxinyang/dlt645_1997 get_d97_ruler_info case C/0"


@dataclass(frozen=True, kw_only=True)
class DataItem:
    """One row of the 1997 appendix: an identifier, what its value means, and where that is written.

    Same fields as ``dis.DataItem`` (so the driver treats both alike) plus
    ``source``; ``members`` lists a block's identifiers in reply order.
    """

    di: str
    name: str
    obis: str | None
    unit: str
    fmt: str
    source: str
    signed: bool = False
    members: tuple[str, ...] = ()
    tariff_block: bool = False

    def __post_init__(self) -> None:
        normalize_di(self.di)
        if self.fmt not in FORMATS:
            raise ValueError(f"{self.di}: unknown format {self.fmt!r}")

    @property
    def is_block(self) -> bool:
        return bool(self.members)


def _obis(c: int, d: int, e: int = 0) -> str:
    return f"1.0.{c}.{d}.{e}.255"


def _build() -> dict[str, DataItem]:
    items: list[DataItem] = []
    energies = (
        # first 3 digits, name, unit, OBIS C (as the 2007 counterpart in dis.py)
        ("901", "forward active energy", "kWh", 1),  # 正向有功 = 2007 0001xx00
        ("902", "reverse active energy", "kWh", 2),  # 反向有功 = 2007 0002xx00
        ("911", "forward reactive energy", "kvarh", 3),  # 正向无功 (Q+, C=3 as 2007 组合无功1)
        ("912", "reverse reactive energy", "kvarh", 4),  # 反向无功 (Q-, C=4 as 2007 组合无功2)
    )
    for head, name, unit, c in energies:
        members = []
        for tariff in range(MAX_TARIFFS + 1):
            di = f"{head}{tariff:X}"
            label = "total" if tariff == 0 else f"tariff {tariff}"
            items.append(DataItem(di=di, name=f"{name}, {label}", obis=_obis(c, 8, tariff), unit=unit,
                                  fmt="XXXXXX.XX", source=SOURCE_A1))
            members.append(di)
        items.append(DataItem(di=f"{head}F", name=f"{name}, block (total, tariffs 1-k)", obis=None, unit=unit,
                              fmt="XXXXXX.XX", source=SOURCE_A1, members=tuple(members), tariff_block=True))

    phases = ((1, "phase A"), (2, "phase B"), (3, "phase C"))
    variables = (
        # 3 digits, name, unit, format, signed, OBIS C of the total (None: none), OBIS C of L1..L3
        ("B61", "voltage", "V", "XXX", False, None, (32, 52, 72)),
        ("B62", "current", "A", "XX.XX", True, None, (31, 51, 71)),
        ("B63", "active power", "kW", "XX.XXXX", True, 16, (36, 56, 76)),
        ("B64", "reactive power", "kvar", "XX.XX", True, SIGNED_REACTIVE_POWER_C[0], SIGNED_REACTIVE_POWER_C[1:]),
        ("B65", "power factor", "", "X.XXX", True, 13, (33, 53, 73)),
    )
    for head, name, unit, fmt, signed, total_c, phase_c in variables:
        if total_c is not None:
            items.append(DataItem(di=f"{head}0", name=f"{name}, total", obis=_obis(total_c, 7), unit=unit,
                                  fmt=fmt, signed=signed, source=SOURCE_A4))
        for (digit, label), c in zip(phases, phase_c, strict=True):
            items.append(DataItem(di=f"{head}{digit}", name=f"{name}, {label}", obis=_obis(c, 7), unit=unit,
                                  fmt=fmt, signed=signed, source=SOURCE_A4))

    items.append(DataItem(di="C010", name="date and weekday", obis=None, unit="", fmt="YYMMDDWW", source=SOURCE_A5))
    items.append(DataItem(di="C011", name="time", obis=None, unit="", fmt="hhmmss", source=SOURCE_A5))
    items.append(DataItem(di="C032", name="meter number (communication address)", obis=None, unit="",
                          fmt="NNNNNNNNNNNN", source=SOURCE_A5))

    table: dict[str, DataItem] = {}
    for item in items:
        if item.di in table:
            raise ValueError(f"data identifier {item.di} defined twice")
        table[item.di] = item
    return table


DATA_ITEMS: Final[Mapping[str, DataItem]] = MappingProxyType(_build())
"""Every supported DL/T 645-1997 identifier, keyed by ``"DI1DI0"`` (upper case)."""


def lookup(di: str) -> DataItem:
    """The table row of ``di``; ``KeyError`` if Meterlink does not know the identifier."""
    key = normalize_di(di)
    try:
        return DATA_ITEMS[key]
    except KeyError:
        raise KeyError(f"data identifier {key} is not in the DL/T 645-1997 table") from None


def expand_block(di: str) -> tuple[str, ...]:
    """A block's member identifiers in reply order (``901F`` -> 9010..901E); ``(di,)`` otherwise."""
    item = lookup(di)
    return item.members if item.is_block else (item.di,)


def block_of(di: str) -> str | None:
    """The energy block that holds ``di`` (``9012`` -> ``901F``), or None."""
    if len(di) != 4 or di[3] == "F":
        return None
    candidate = di[:3] + "F"
    item = DATA_ITEMS.get(candidate)
    return candidate if item is not None and di in item.members else None


def item_length(di: str, tariffs: int = TARIFFS) -> int:
    """Bytes of the reply payload for ``di`` (an energy block of a meter with ``tariffs``: 4 x (tariffs + 1))."""
    item = lookup(di)
    members = item.members[: tariffs + 1] if item.tariff_block else expand_block(di)
    return sum(FORMATS[lookup(member).fmt].length for member in members)


def block_members(di: str, payload_length: int) -> tuple[DataItem, ...]:
    """The rows a reply of ``payload_length`` bytes to ``di`` holds, in reply order.

    An energy block holds "total, tariff 1..k" for the meter's own k tariffs,
    so k is derived from the length (4 x (k + 1) bytes, k = 0..14); a length
    no meter can send raises ``FrameError``.
    """
    item = lookup(di)
    members = [lookup(member) for member in expand_block(di)]
    if item.tariff_block:
        size = FORMATS[item.fmt].length
        count, rest = divmod(payload_length, size)
        if rest or not 1 <= count <= len(members):
            raise FrameError(f"{item.di}: payload of {payload_length} bytes is not total + 0..{MAX_TARIFFS} "
                             f"tariffs of {size} bytes each")
        return tuple(members[:count])
    expected = sum(FORMATS[m.fmt].length for m in members)
    if payload_length != expected:
        raise FrameError(f"{item.di}: payload of {payload_length} bytes, the table has {expected}")
    return tuple(members)


def decode_item(di: str, payload: bytes) -> tuple[tuple[DataItem, Value], ...]:
    """A read reply's payload as ``(member row, value)`` pairs, one pair for a single value."""
    values: list[tuple[DataItem, Value]] = []
    offset = 0
    for member in block_members(di, len(payload)):
        size = FORMATS[member.fmt].length
        values.append((member, decode_value(member.fmt, payload[offset : offset + size], signed=member.signed)))
        offset += size
    return tuple(values)


def encode_item(di: str, values: Sequence[Value]) -> bytes:
    """The payload a meter sends for ``di`` holding ``values`` (block members in order); for simulators."""
    item = lookup(di)
    members = [lookup(member) for member in expand_block(di)]
    if item.tariff_block and 1 <= len(values) <= len(members):
        members = members[: len(values)]
    if len(values) != len(members):
        raise ValueError(f"{normalize_di(di)}: {len(members)} values, got {len(values)}")
    return b"".join(encode_value(member.fmt, value, signed=member.signed)
                    for member, value in zip(members, values, strict=True))
