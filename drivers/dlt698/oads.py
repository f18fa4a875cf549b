"""The default OAD table: common DL/T 698.45 objects with OBIS codes, units and their DL/T 645-2007 twins.

A profile names a point by its OAD alone (``oad: "00100201"``); this table
gives its name, OBIS code, unit and the scaler-unit a meter normally reports
(the meter's own attribute 3 always wins when read).  The OBIS codes are the
ones ``meterlink.drivers.dlt645.dis`` gives the same quantity, so a mixed bus of 645 and
698 meters publishes one quantity under one OBIS from either generation:

* energy (电能量, class 1, attribute 2 "总及费率电能量数组"): element 1 = total
  (OBIS E = 0), element t + 1 = tariff t (OBIS E = t);
* instantaneous values (class 3/4, attribute 2 = the phase array, element
  1..3 = phase A..C; 2004/2005/2006/200A arrays start with the total).

The 698 OAD ↔ 645 DI correspondence follows the gateway mapping table of
icprog/dlt698.45 ``bin_arm/07DI_698OAD.cfg`` (0010 ↔ 0001FF00, 2000 ↔
0201FF00, 5004 ↔ 0506xxxx ...), element by element.  Units differ between the
generations for power: 645 sends kW/kvar/kVA, 698 sends W/var/VA (scaler -1);
the point's unit decides, the driver converts exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt698.data import Oad, ScalerUnit

TARIFFS_IN_TABLE: Final = 4  # rows for tariffs 1..4; other tariffs parse fine, they just have no default row


@dataclass(frozen=True, kw_only=True)
class OadInfo:
    """One row: the OAD (8 hex digits), what it is, its OBIS code and 645 DI (None where none exists)."""

    oad: str
    name: str
    obis: str | None
    unit: str
    scaler_unit: ScalerUnit | None
    di645: str | None = None


def _obis(c: int, d: int, e: int = 0) -> str:
    return f"1.0.{c}.{d}.{e}.255"


def _build() -> dict[str, OadInfo]:
    rows: list[OadInfo] = []
    # 电能量 (class 1): OI, name, OBIS C, unit, 698 unit code, 645 DI2
    energies = (
        (0x0000, "combined active energy", 15, "kWh", 33, 0x00),  # 组合有功
        (0x0010, "forward active energy", 1, "kWh", 33, 0x01),  # 正向有功
        (0x0020, "reverse active energy", 2, "kWh", 33, 0x02),  # 反向有功
        (0x0030, "combined reactive energy 1", 3, "kvarh", 35, 0x03),  # 组合无功1
        (0x0040, "combined reactive energy 2", 4, "kvarh", 35, 0x04),  # 组合无功2
        (0x0050, "quadrant I reactive energy", 5, "kvarh", 35, 0x05),  # 第一象限无功
        (0x0060, "quadrant II reactive energy", 6, "kvarh", 35, 0x06),
        (0x0070, "quadrant III reactive energy", 7, "kvarh", 35, 0x07),
        (0x0080, "quadrant IV reactive energy", 8, "kvarh", 35, 0x08),
    )
    for oi, name, c, unit, code, di2 in energies:
        su = ScalerUnit(-2, code)
        rows.append(OadInfo(oad=f"{oi:04X}0200", name=f"{name}, total and tariffs", obis=None, unit=unit,
                            scaler_unit=su, di645=f"00{di2:02X}FF00"))
        for tariff in range(TARIFFS_IN_TABLE + 1):
            label = "total" if tariff == 0 else f"tariff {tariff}"
            rows.append(OadInfo(oad=f"{oi:04X}02{tariff + 1:02X}", name=f"{name}, {label}", obis=_obis(c, 8, tariff),
                                unit=unit, scaler_unit=su, di645=f"00{di2:02X}{tariff:02X}00"))
    # 最大需量 (class 2): structure {需量值, 发生时间}; scaler -4 kW
    for oi, name, c, di2 in ((0x1010, "forward active maximum demand", 1, 0x01),
                             (0x1020, "reverse active maximum demand", 2, 0x02)):
        for tariff in range(TARIFFS_IN_TABLE + 1):
            label = "total" if tariff == 0 else f"tariff {tariff}"
            rows.append(OadInfo(oad=f"{oi:04X}02{tariff + 1:02X}", name=f"{name} and its time, {label}",
                                obis=_obis(c, 6, tariff), unit="kW", scaler_unit=ScalerUnit(-4, 28),
                                di645=f"01{di2:02X}{tariff:02X}00"))
    # 变量 (class 3: per phase; class 4: total + phases)
    phases = ("phase A", "phase B", "phase C")
    for oi, name, unit, su, c_phases, di2 in (
        (0x2000, "voltage", "V", ScalerUnit(-1, 38), (32, 52, 72), 0x01),
        (0x2001, "current", "A", ScalerUnit(-3, 36), (31, 51, 71), 0x02),
    ):
        for n, (label, c) in enumerate(zip(phases, c_phases, strict=True), start=1):
            rows.append(OadInfo(oad=f"{oi:04X}02{n:02X}", name=f"{name}, {label}", obis=_obis(c, 7), unit=unit,
                                scaler_unit=su, di645=f"02{di2:02X}{n:02X}00"))
    for oi, name, unit, su, cs, di2 in (
        (0x2004, "active power", "W", ScalerUnit(-1, 27), (16, 36, 56, 76), 0x03),
        (0x2005, "reactive power", "var", ScalerUnit(-1, 31), (131, 151, 171, 191), 0x04),  # signed, see dis.py
        (0x2006, "apparent power", "VA", ScalerUnit(-1, 29), (9, 29, 49, 69), 0x05),
        (0x200A, "power factor", "", ScalerUnit(-3, 255), (13, 33, 53, 73), 0x06),
    ):
        for n, (label, c) in enumerate(zip(("total", *phases), cs, strict=True), start=1):
            rows.append(OadInfo(oad=f"{oi:04X}02{n:02X}", name=f"{name}, {label}", obis=_obis(c, 7), unit=unit,
                                scaler_unit=su, di645=f"02{di2:02X}{n - 1:02X}00"))
    rows.append(OadInfo(oad="200F0200", name="grid frequency", obis=_obis(14, 7), unit="Hz",
                        scaler_unit=ScalerUnit(-2, 47), di645="02800002"))
    # 参变量: no OBIS, as in dis.py (04000101/04000102 date and time, 04000401 address)
    rows.append(OadInfo(oad="40000200", name="date and time", obis=None, unit="", scaler_unit=None,
                        di645="04000101+04000102"))
    rows.append(OadInfo(oad="40010200", name="communication address", obis=None, unit="", scaler_unit=None,
                        di645="04000401"))
    table: dict[str, OadInfo] = {}
    for row in rows:
        if row.oad in table:
            raise ValueError(f"OAD {row.oad} defined twice")
        table[row.oad] = row
    return table


OADS: Final[Mapping[str, OadInfo]] = MappingProxyType(_build())
"""The default rows keyed by 8 upper-case hex digits."""

FREEZES: Final = {0x5002: "minute freeze (15-min curve)", 0x5004: "daily freeze", 0x5006: "monthly freeze"}
FREEZE_TIME: Final = Oad(0x2021, 2, 0)  # 数据冻结时间, the first column of every freeze record


def parse_oad(text: object) -> Oad:
    """A profile's ``oad: "00100201"``: OI (4 hex) + attribute (2 hex) + element index (2 hex, 00 = whole).

    Raises ``FrameError`` with the fix in the message; the config layer prefixes the key path.
    """
    example = "e.g. '00100201' = forward active energy (OI 0010), attribute 02, element 01 (total)"
    if not isinstance(text, str):
        raise FrameError(f"oad {text!r}: need a string of 8 hex digits, {example}")
    clean = text.strip()
    if len(clean) != 8 or any(c not in "0123456789abcdefABCDEF" for c in clean):
        raise FrameError(f"oad {text!r}: need 8 hex digits OI(4) attribute(2) index(2), {example}")
    value = int(clean, 16)
    oad = Oad(value >> 16, (value >> 8) & 0xFF, value & 0xFF)
    if oad.attribute & 0x1F == 0:
        raise FrameError(f"oad {text!r}: attribute 00 reads no attribute (attributes are 01..31), {example}")
    return oad


def lookup(oad: Oad | str) -> OadInfo | None:
    """The default row of ``oad``, or None when the table has none."""
    key = str(oad if isinstance(oad, Oad) else parse_oad(oad))
    return OADS.get(key)
