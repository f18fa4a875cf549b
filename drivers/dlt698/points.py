"""What a configured DL/T 698.45 point may be: its OAD, default OBIS code and unit (used by the config checks).

Kept apart from the codec (``oads`` stays free of the gateway's unit rules).
A point names an OAD; its OBIS code and unit default from the OAD table.
Four OADs are not registers: 40000200 is the clock (value = drift in s),
50040200 the daily freeze, 50060200 the monthly freeze and 50020200 the
15-min curve (read as records).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from meterlink.core.config.resolved import Point
from meterlink.core.errors import FrameError, MeterlinkError
from meterlink.core.reading import UnitMismatch, convert_unit
from meterlink.drivers.dlt698.oads import lookup, parse_oad

CLOCK_OBIS: Final = "0.0.1.0.0.255"  # as the DL/T 645 clock point
SPECIAL: Final = {
    "40000200": (CLOCK_OBIS, "s"),  # the clock: drift in seconds, meter_ts = the meter's time
    "50040200": ("1.0.98.1.0.255", "kWh"),  # 日冻结, as DL/T 645's daily_frozen point
    "50020200": ("1.0.99.1.0.255", ""),  # 分钟冻结 (15-min curve), OBIS of load profile 1
    # 月冻结 (settlement), OBIS of billing period data scheme 2; journaled per month as a record marker (value 0)
    "50060200": ("1.0.98.2.0.255", ""),
}


class PointProblem(MeterlinkError, ValueError):
    """A point that cannot be read as written; ``key`` is the point key to fix (oad or unit)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _oad(text: object) -> str:
    if text is None:
        raise PointProblem("oad", "required for a dlt698 point: 8 hex digits OI, attribute, element "
                                  "(e.g. '00100201' = forward active energy total)")
    try:
        return str(parse_oad(text))
    except FrameError as exc:
        raise PointProblem("oad", str(exc)) from None


def default_obis(text: object) -> object:
    """The OBIS code of OAD ``text`` from the table; an unknown OAD gets a message saying to give ``obis``."""
    oad = _oad(text)
    if oad in SPECIAL:
        return SPECIAL[oad][0]
    row = lookup(oad)
    if row is None:
        raise PointProblem("oad", f"{oad} has no OBIS code in Meterlink's OAD table (drivers/dlt698/oads.py); "
                                  "give obis: too")
    if row.obis is None:
        raise PointProblem("oad", f"{oad} ({row.name}) is no single value: name one element, e.g. {oad[:6]}01")
    return row.obis


def check_point(text: object, unit: str | None) -> tuple[str, str]:
    """The normalized OAD and the point's unit: the configured one (a multiple of the table's), or the table's."""
    oad = _oad(text)
    if oad in SPECIAL:
        fixed = SPECIAL[oad][1]
        if unit is not None and unit != fixed:
            raise PointProblem("unit", f"{unit!r}: {oad} is in {fixed or 'no unit'}")
        return oad, fixed
    row = lookup(oad)
    if row is not None and row.obis is None:
        raise PointProblem("oad", f"{oad} ({row.name}) is no single value: name one element, e.g. {oad[:6]}01")
    if unit is None:
        return oad, row.unit if row is not None else ""
    if row is not None:
        try:
            convert_unit(Decimal(1), row.unit, unit)
        except UnitMismatch:
            raise PointProblem("unit", f"{unit!r}: {oad} ({row.name}) is in {row.unit or 'no unit'}") from None
    return oad, unit


@dataclass(frozen=True, slots=True, kw_only=True)
class Dlt698Point(Point):
    """A resolved dlt698 point, what the driver reads (apart from ``schema``: the running gateway imports no pydantic)."""

    oad: str
