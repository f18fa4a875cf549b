"""Configuration checks only DL/T 645 knows: which edition a meter speaks, and its points' identifiers.

Called by :mod:`meterlink.core.config` for every ``protocol: dlt645`` meter
(``check_meter``: each problem is ``(key suffix, message)``, one line of
``meterlink check``) and for each of its points (``check_point_1997``).  The
``standard`` key picks the edition: "2007" (default) or "1997".  The two
editions' identifiers cannot be mixed up silently: a 2007 identifier has 8 hex
digits, a 1997 one 4, and a point holding the other edition's shape is an
error naming the point, since the meter would answer it with an error (or,
worse, the same bytes could mean another register).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from meterlink.core.errors import MeterlinkError
from meterlink.drivers.dlt645 import codec1997, dis1997

if TYPE_CHECKING:
    from meterlink.core.config import SerialLinkConfig, TcpLinkConfig

STANDARDS: Final = ("2007", "1997")
DEFAULT_BAUDRATE: Final = {"2007": 2400, "1997": 1200}
"""The editions' default line rates, both 8E1: DL/T 645-2007 "缺省速率 2400bps", the 1997 edition's meters 1200."""


class PointProblem(MeterlinkError, ValueError):
    """A point that cannot be read as written; ``key`` is the point key to fix (di or unit)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def standard_of(m: object) -> str:
    """The edition a meter speaks: its ``standard`` key as text, "2007" when not set.

    ``m`` is a ``MeterConfig`` (or anything with a ``standard`` attribute);
    YAML ``standard: 1997`` without quotes arrives as an int and means the same.
    """
    value = getattr(m, "standard", None)
    return "2007" if value is None else str(value)


def check_meter(m: Any, link: SerialLinkConfig | TcpLinkConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    standard = standard_of(m)
    if isinstance(m.standard, bool) or standard not in STANDARDS:
        problems.append(("standard", f"{m.standard!r} is not a DL/T 645 edition: write \"2007\" (the default) "
                                     "or \"1997\" for the oldest meters (4-digit identifiers)"))
    elif standard == "1997" and m.daily_frozen_days:
        problems.append(("daily_frozen_days", "DL/T 645-1997 meters keep no daily frozen data; remove "
                                              "daily_frozen_days or read the energy registers instead"))
    return problems


def check_point(standard: str, di: object, unit: str | None) -> tuple[str, str] | None:
    """``(identifier, unit)`` of a 1997 meter's point; None for a 2007 point (``meterlink.core.config`` checks those).

    Raises ``PointProblem`` for an identifier of the other edition's shape or
    one the 1997 table does not hold, a block, a non-value, or a unit that is
    not the identifier's.
    """
    if standard != "1997":
        if codec1997.is_di(di):
            raise PointProblem("di", f"{str(di).upper()!r} is a DL/T 645-1997 identifier (4 hex digits) but the "
                                     "meter speaks DL/T 645-2007: set the meter's standard: \"1997\" or use the "
                                     "8-digit 2007 identifier")
        return None
    if not codec1997.is_di(di):
        if isinstance(di, str) and len(di) == 8:
            raise PointProblem("di", f"{di!r} is a DL/T 645-2007 identifier (8 hex digits) but the meter has "
                                     "standard: \"1997\": use its 4-digit 1997 identifier (e.g. '9010' for "
                                     "00010000)")
        raise PointProblem("di", f"{di!r} is not a DL/T 645-1997 data identifier (4 hex digits DI1DI0, e.g. "
                                 "'9010')")
    code = str(di).upper()
    try:
        item = dis1997.lookup(code)
    except KeyError:
        raise PointProblem("di", f"{code} is not in Meterlink's DL/T 645-1997 table "
                                 "(drivers/dlt645/dis1997.py)") from None
    if item.is_block:
        raise PointProblem("di", f"{code} is a block; list its members ({', '.join(item.members[:3])}, ...): "
                                 "the driver reads blocks by itself")
    if code == dis1997.CLOCK_DI:
        return code, "s"  # the clock point: value = drift in seconds, meter_ts = the meter's time (C010 + C011)
    if item.obis is None:
        raise PointProblem("di", f"{code} ({item.name}) is not a measured value")
    if unit is not None and unit != item.unit:
        raise PointProblem("unit", f"{unit!r}: {code} ({item.name}) is in {item.unit or 'no unit'}")
    return code, item.unit
