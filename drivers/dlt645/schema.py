"""What a DL/T 645 meter and point are in the configuration, and what they resolve to.

A point names a data identifier (``di``): 8 hex digits DI3..DI0 as printed in
DL/T 645-2007, or 4 for a DL/T 645-1997 meter (``standard: "1997"``).  Its unit
is the standard's for the identifier (appendix A); a configured unit must be
that one.  A meter may collect the daily frozen data of its last days.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from meterlink.core.config import Point, PointBase, protocol_models
from meterlink.core.errors import ConfigError
from meterlink.drivers.dlt645.checks import DEFAULT_BAUDRATE, PointProblem, check_meter, check_point, standard_of
from meterlink.drivers.dlt645.dis import lookup
from meterlink.drivers.dlt645.points import Dlt645Point

CLOCK_DI = "04000102"
DAILY_FROZEN_DI = "05060101"


class Dlt645PointConfig(PointBase):
    di: str | None = None  # data identifier DI3..DI0 as printed in the standard (1997: DI1 DI0)


Dlt645MeterConfig, Dlt645ProfileConfig = protocol_models(
    "dlt645", point=Dlt645PointConfig,
    meter_fields={
        # the edition: "2007" (default) or "1997" (4-digit identifiers)
        "standard": (int | str | None, None),
        # collect the daily frozen data of the last N days after midnight (0: off)
        "daily_frozen_days": (int, Field(default=0, ge=0, le=62)),
    },
    profile_fields={"standard": (int | str | None, None)})


def make_point(meter: Any, common: dict[str, Any], d: dict[str, Any]) -> Dlt645Point:
    try:
        checked = check_point(standard_of(meter), d.get("di"), d.get("unit"))
    except PointProblem as exc:
        raise ConfigError(exc.key, str(exc)) from None
    if checked is not None:  # a DL/T 645-1997 point (drivers/dlt645/dis1997.py)
        return Dlt645Point(**(common | {"unit": checked[1]}), di=checked[0])
    di = d.get("di")
    if not di or not re.fullmatch(r"[0-9A-Fa-f]{8}", str(di)):
        raise ConfigError("di", f"{di!r} is not a data identifier (8 hex digits DI3..DI0, e.g. '00010000')")
    di = str(di).upper()
    try:
        item = lookup(di)
    except KeyError:
        raise ConfigError("di", f"{di} is not in Meterlink's DL/T 645-2007 table (drivers/dlt645/dis.py)") from None
    if item.is_block:
        raise ConfigError("di", f"{di} is a block; list its members ({', '.join(item.members[:3])}, ...): "
                                "the driver reads blocks by itself")
    if di == CLOCK_DI:
        unit = "s"  # the clock point: value = drift in seconds, meter_ts = the meter's time
    elif item.obis is None:
        raise ConfigError("di", f"{di} ({item.name}) is not a measured value")
    elif "unit" in d and d["unit"] != item.unit:
        raise ConfigError("unit", f"{d['unit']!r}: {di} ({item.name}) is in {item.unit or 'no unit'}")
    else:
        unit = item.unit
    return Dlt645Point(**(common | {"unit": unit}), di=di, signed=item.signed)


def address(m: Any, _link: Any) -> str:
    s = str(m.address)
    if not re.fullmatch(r"\d{12}", s):
        raise ValueError(f"{m.address!r} is not a DL/T 645 address (12 digits as on the nameplate, quoted)")
    return s


def line_defaults(meters: list[Any]) -> tuple[int, str] | None:
    """DL/T 645-2007 meters default to 2400 8E1, the 1997 edition's to 1200 8E1."""
    editions = {standard_of(m) for m in meters if m.protocol == "dlt645"} & set(DEFAULT_BAUDRATE)
    if len(editions) == 1:
        return DEFAULT_BAUDRATE[next(iter(editions))], "E"
    if len(editions) > 1:
        raise ValueError("the link carries DL/T 645-2007 and -1997 meters, whose default rates differ (2400, 1200): "
                         "set the rate they share")
    return None


def extra_points(m: Any) -> list[Point]:
    if not m.daily_frozen_days:
        return []
    return [Dlt645Point(obis="1.0.98.1.0.255", name="daily_frozen", unit="kWh", interval=3600.0, di=DAILY_FROZEN_DI)]


def profile_meter_keys(profile: Any) -> dict[str, Any]:
    return {"standard": profile.standard} if profile.standard is not None else {}


def checks(m: Any, link: Any) -> list[tuple[str, str]]:
    return check_meter(m, link)


def check_profile(m: Any, profile: Any) -> list[tuple[str, str]]:
    """A profile's identifiers are of one edition: the meter must speak it."""
    theirs, mine = str(profile.standard or "2007"), standard_of(m)
    if theirs != mine:
        return [("standard", f"{m.profile} is a DL/T 645-{theirs} profile: set standard: \"{theirs}\" on the meter")]
    return []
