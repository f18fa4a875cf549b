"""DL/T 645-2007 data identifiers (appendix A, "数据编码表") with OBIS codes, units and formats.

A data identifier (数据标识) is written as the standard writes it, 8 hex
digits DI3 DI2 DI1 DI0 (``"00010000"``); ``codec.encode_di`` sends DI0 first.
The appendix's tables are organised by DI3: 00 energy (电能量), 02 variables
(变量), 04 parameters (参变量), 05 frozen data (冻结量).

Energies: DI2 is the quantity, DI1 the tariff (00 total, 01.. tariff n, FF the
block "total, tariff 1..k"), DI0 the settlement period (00 = current).  The
standard's notes make the *combined* energies signed ("组合有功、无功电能最高位是
符号位，0正1负", range 0.00..799999.99) while forward and reverse energies are
unsigned (0.00..999999.99); the ``signed`` flag carries that per identifier.

OBIS mapping notes (IEC 62056-61 codes ``A.B.C.D.E.F``):

* combined active energy (组合有功) is mapped to C=15 (|import| + |export|),
  which is what the meter computes under its default active combination mode
  word (04000601, forward + reverse); a meter set to "forward - reverse"
  would need C=16.
* combined reactive energy 1/2 (组合无功1/2) are mapped to C=3 (Q1+Q2) and C=4
  (Q3+Q4), their usual default reactive combination mode words (04000602,
  04000603); the meter can be configured otherwise.
* instantaneous reactive power (瞬时无功功率, 0204xxxx) is signed ("最高位表示
  方向"): the OBIS codes C = 3/23/43/63 are reactive power *import* only
  (Q+ = QI+QII, IEC 62056-6-1 value group C) and C = 4/24/44/64 export only
  (Q- = QIII+QIV); the standard has no code for a signed Q = Q+ - Q- (the
  active counterpart, C = 16, exists; no reactive one).  Meterlink publishes
  a signed reactive power in the manufacturer-specific range of value group C
  (128..199) as 128 + the import code: :data:`SIGNED_REACTIVE_POWER_C` =
  131 total, 151/171/191 L1/L2/L3, so no subscriber reads an export as an
  import.
* tariff t (DI1 = t, 1..63) maps to OBIS E = t, the IEC 62056-6-1 tariff
  ("rate") number 1..63; E = 0 is the total.
* blocks have no OBIS code of their own: their members do.

Energy blocks (``00xxFF00``, and the daily frozen blocks ``0506xxnn``) hold
"total, tariff 1..k" for the meter's k tariffs (表A.1: "数据块 ... 总, 费率1..
费率k"); k is the meter's configured tariff count (2, 4, 8, 12, ... up to 63),
so the reply length is 4 x (k + 1) bytes and ``decode_item`` derives k from it
instead of assuming the common 4-tariff (尖峰平谷) split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt645.codec import FORMATS, Value, decode_value, encode_value, normalize_di

TARIFFS: Final = 4
"""The common tariff count (尖峰平谷); only ``item_length``'s default, never assumed when decoding."""

MAX_TARIFFS: Final = 63
"""Single-tariff identifiers exist for DI1 = 01..3FH (IEC 62056-6-1 tariff numbers E = 1..63 alike)."""

SIGNED_REACTIVE_POWER_C: Final = (131, 151, 171, 191)
"""OBIS value group C of a signed reactive power, total / L1 / L2 / L3: 128 + the import-only code.

IEC 62056-6-1 C = 3/23/43/63 is reactive power+ (QI+QII) only and 4/24/44/64
reactive power- (QIII+QIV) only; there is no standard code for the signed
difference, so it lives in the manufacturer-specific range 128..199."""

DAILY_FROZEN_RECORDS: Final = 62
"""日冻结: the meter keeps the last 62 daily freezes ("上1次".."上62次"), DI0 = 01H..3EH."""


@dataclass(frozen=True, kw_only=True)
class DataItem:
    """One row of appendix A: a data identifier and what its value means.

    ``members`` is empty for a single value.  For a block (数据块) it lists, in
    reply order, the identifiers of the values the block holds; for a frozen
    block (e.g. 05060101) those are the live quantities whose values were
    frozen (00010000..00010400), not identifiers readable under the block.
    """

    di: str
    name: str
    obis: str | None
    unit: str
    fmt: str
    signed: bool = False
    members: tuple[str, ...] = ()
    tariff_block: bool = False  # members = total, tariff 1..63; the reply holds total + the meter's k tariffs

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

    def block(di: str, name: str, members: Sequence[str], *, fmt: str, unit: str, signed: bool,
              tariffs: bool = False) -> None:
        items.append(DataItem(di=di, name=name, obis=None, unit=unit, fmt=fmt, signed=signed,
                              members=tuple(members), tariff_block=tariffs))

    # 表A.1 电能量: DI3=00, DI2 = quantity, DI1 = tariff (00 total, FF block), DI0 = 00 current
    energies = (
        # DI2, name, OBIS C, signed
        (0x00, "combined active energy", 15, True),  # 组合有功
        (0x01, "forward active energy", 1, False),  # 正向有功
        (0x02, "reverse active energy", 2, False),  # 反向有功
    )
    for di2, name, c, signed in energies:
        members = []
        for tariff in range(MAX_TARIFFS + 1):
            di = f"00{di2:02X}{tariff:02X}00"
            label = "total" if tariff == 0 else f"tariff {tariff}"
            items.append(
                DataItem(
                    di=di, name=f"{name}, {label}", obis=_obis(c, 8, tariff),
                    unit="kWh", fmt="XXXXXX.XX", signed=signed,
                )
            )
            members.append(di)
        block(f"00{di2:02X}FF00", f"{name}, block (total, tariffs 1-k)", members,
              fmt="XXXXXX.XX", unit="kWh", signed=signed, tariffs=True)
    items.append(DataItem(di="00030000", name="combined reactive energy 1, total", obis=_obis(3, 8),
                          unit="kvarh", fmt="XXXXXX.XX", signed=True))  # 组合无功1
    items.append(DataItem(di="00040000", name="combined reactive energy 2, total", obis=_obis(4, 8),
                          unit="kvarh", fmt="XXXXXX.XX", signed=True))  # 组合无功2

    # 表A.3 变量: DI3=02, DI2 = quantity, DI1 = phase (00 total, 01..03 A/B/C, FF block)
    phases = ((1, "phase A"), (2, "phase B"), (3, "phase C"))
    variables = (
        # DI2, name, unit, fmt, OBIS C of total (None: no total), OBIS C of L1..L3
        (0x01, "voltage", "V", "XXX.X", None, (32, 52, 72)),  # 电压
        (0x02, "current", "A", "XXX.XXX", None, (31, 51, 71)),  # 电流
        (0x03, "active power", "kW", "XX.XXXX", 16, (36, 56, 76)),  # 瞬时有功功率
        (0x04, "reactive power", "kvar", "XX.XXXX", SIGNED_REACTIVE_POWER_C[0],
         SIGNED_REACTIVE_POWER_C[1:]),  # 瞬时无功功率, signed: not the import-only C = 3/23/43/63
        (0x06, "power factor", "", "X.XXX", 13, (33, 53, 73)),  # 功率因数
    )
    for di2, name, unit, fmt, total_c, phase_c in variables:
        signed = FORMATS[fmt].signed  # "最高位表示方向，0正，1负"
        members = []
        if total_c is not None:
            di = f"02{di2:02X}0000"
            items.append(DataItem(di=di, name=f"{name}, total", obis=_obis(total_c, 7),
                                  unit=unit, fmt=fmt, signed=signed))
            members.append(di)
        for (di1, label), c in zip(phases, phase_c, strict=True):
            di = f"02{di2:02X}{di1:02X}00"
            items.append(DataItem(di=di, name=f"{name}, {label}", obis=_obis(c, 7),
                                  unit=unit, fmt=fmt, signed=signed))
            members.append(di)
        block(f"02{di2:02X}FF00", f"{name}, block", members, fmt=fmt, unit=unit, signed=signed)
    items.append(DataItem(di="02800002", name="grid frequency", obis=_obis(14, 7), unit="Hz", fmt="XX.XX"))

    # 表A.5 参变量
    items.append(DataItem(di="04000101", name="date and weekday", obis=None, unit="", fmt="YYMMDDWW"))
    items.append(DataItem(di="04000102", name="time", obis=None, unit="", fmt="hhmmss"))
    items.append(DataItem(di="04000401", name="communication address", obis=None, unit="",
                          fmt="NNNNNNNNNNNN"))

    # 表A.6 冻结量, 日冻结: DI2=06, DI1 = 00 freeze time / 01 forward / 02 reverse, DI0 = N (上N次)
    forward = _members_of(items, "0001FF00")
    reverse = _members_of(items, "0002FF00")
    for n in range(1, DAILY_FROZEN_RECORDS + 1):
        ago = f"daily frozen, {n} day{'s' if n > 1 else ''} ago"
        items.append(DataItem(di=f"050600{n:02X}", name=f"freeze time, {ago}", obis=None, unit="",
                              fmt="YYMMDDhhmm"))
        block(f"050601{n:02X}", f"forward active energy block, {ago}", forward,
              fmt="XXXXXX.XX", unit="kWh", signed=False, tariffs=True)
        block(f"050602{n:02X}", f"reverse active energy block, {ago}", reverse,
              fmt="XXXXXX.XX", unit="kWh", signed=False, tariffs=True)

    table: dict[str, DataItem] = {}
    for item in items:
        if item.di in table:
            raise ValueError(f"data identifier {item.di} defined twice")
        table[item.di] = item
    return table


def _members_of(items: Sequence[DataItem], di: str) -> tuple[str, ...]:
    """The members of block ``di`` among ``items`` (used while the table is built)."""
    for item in items:
        if item.di == di:
            return item.members
    raise KeyError(di)


DATA_ITEMS: Final[Mapping[str, DataItem]] = MappingProxyType(_build())
"""Every supported data identifier, keyed by ``"DI3DI2DI1DI0"`` (upper case)."""


def lookup(di: str) -> DataItem:
    """The table row of ``di``; ``KeyError`` if Meterlink does not know the identifier."""
    key = normalize_di(di)
    try:
        return DATA_ITEMS[key]
    except KeyError:
        raise KeyError(f"data identifier {key} is not in the DL/T 645 table") from None


def expand_block(di: str) -> tuple[str, ...]:
    """A block's member identifiers in reply order (``0201FF00`` -> A, B, C voltage); ``(di,)`` otherwise."""
    item = lookup(di)
    return item.members if item.is_block else (item.di,)


def daily_frozen_dis(n: int) -> tuple[str, str, str]:
    """Freeze time, forward and reverse energy block DIs of the daily freeze ``n`` days ago (上n次)."""
    if not 1 <= n <= DAILY_FROZEN_RECORDS:
        raise ValueError(f"daily frozen record {n}: the meter keeps 1..{DAILY_FROZEN_RECORDS}")
    return f"050600{n:02X}", f"050601{n:02X}", f"050602{n:02X}"


def item_length(di: str, tariffs: int = TARIFFS) -> int:
    """Bytes of the reply payload for ``di`` (a block: the sum of its members; an energy block of a
    meter with ``tariffs`` tariffs: 4 x (tariffs + 1))."""
    item = lookup(di)
    members = item.members[: tariffs + 1] if item.tariff_block else expand_block(di)
    return sum(FORMATS[lookup(member).fmt].length for member in members)


def block_members(di: str, payload_length: int) -> tuple[DataItem, ...]:
    """The rows a reply of ``payload_length`` bytes to ``di`` holds, in reply order.

    An energy block holds "total, tariff 1..k" for the meter's own k tariffs
    (表A.1), so k is derived from the length: 4 x (k + 1) bytes, k = 0..63.
    Raises ``FrameError`` for a length no meter can send.
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
    """A read reply's payload as ``(member row, value)`` pairs, one pair for a single value.

    An energy block yields the total and as many tariffs as the meter has
    (derived from the length, see ``block_members``).  Raises ``FrameError`` if
    the payload length fits no meter or a value is not BCD.
    """
    values: list[tuple[DataItem, Value]] = []
    offset = 0
    for member in block_members(di, len(payload)):
        size = FORMATS[member.fmt].length
        value = decode_value(member.fmt, payload[offset : offset + size], signed=member.signed)
        values.append((member, value))
        offset += size
    return tuple(values)


def encode_item(di: str, values: Sequence[Value]) -> bytes:
    """The payload a meter sends for ``di`` holding ``values`` (block members in order); for simulators.

    For an energy block ``values`` is the total and the meter's k tariffs (any k from 0 to 63).
    """
    item = lookup(di)
    members = [lookup(member) for member in expand_block(di)]
    if item.tariff_block and 1 <= len(values) <= len(members):
        members = members[: len(values)]
    if len(values) != len(members):
        raise ValueError(f"{normalize_di(di)}: {len(members)} values, got {len(values)}")
    return b"".join(
        encode_value(member.fmt, value, signed=member.signed)
        for member, value in zip(members, values, strict=True)
    )
