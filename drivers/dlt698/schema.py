"""What a DL/T 698.45 meter and point are in the configuration, and what they resolve to.

A point names an OAD (``oad: "00100201"``: OI, attribute, element index); its
OBIS code and unit default from the OAD table (``oads``), so a profile needs
only the OAD.  A meter may collect the daily freezes of its last days and the monthly
(settlement) freezes of its last months.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from meterlink.core.config import Duration, Point, PointBase, protocol_models
from meterlink.core.errors import ConfigError
from meterlink.drivers.dlt698.points import Dlt698Point, PointProblem, check_point, default_obis

DAILY_FREEZE_OAD = "50040200"
MONTHLY_FREEZE_OAD = "50060200"


class Dlt698PointConfig(PointBase):
    oad: str | None = None  # OI (4 hex) + attribute (2 hex) + element index (2 hex, 00 = all)

    @model_validator(mode="before")
    @classmethod
    def _obis_from_oad(cls, data: Any) -> Any:
        """Without an obis key the OBIS code comes from the OAD table."""
        if isinstance(data, dict) and "obis" not in data and data.get("oad") is not None:
            try:
                return {**data, "obis": default_obis(data["oad"])}
            except PointProblem as exc:
                raise ValueError(str(exc)) from None
        return data


Dlt698MeterConfig, Dlt698ProfileConfig = protocol_models(
    "dlt698", point=Dlt698PointConfig,
    meter_fields={"daily_frozen_days": (int, Field(default=0, ge=0, le=62)),
                  # how far back the first read of the 15-min curve (5002) reaches (default 1d)
                  "backfill": (Duration | None, None),
                  "monthly_frozen_months": (int, Field(
                      default=0, ge=0, le=12,
                      description="dlt698: collect the monthly freezes (5006, settlement) of the last N months (0: "
                                  "off, at most 12), journaled once each under OBIS F = 126 with `meter_ts` = the "
                                  "freeze time."))})


def make_point(_meter: Any, common: dict[str, Any], d: dict[str, Any]) -> Dlt698Point:
    try:
        oad, unit = check_point(d.get("oad"), d.get("unit"))
    except PointProblem as exc:
        raise ConfigError(exc.key, str(exc)) from None
    return Dlt698Point(**(common | {"unit": unit}), oad=oad)


def address(m: Any, _link: Any) -> str:
    s = str(m.address)
    if not re.fullmatch(r"\d{12}", s):
        raise ValueError(f"{m.address!r} is not a DL/T 698.45 server address (12 digits as on the nameplate, quoted)")
    return s


def extra_points(m: Any) -> list[Point]:
    out: list[Point] = []
    if m.daily_frozen_days:
        out.append(Dlt698Point(obis="1.0.98.1.0.255", name="daily_frozen", unit="kWh", interval=3600.0,
                               oad=DAILY_FREEZE_OAD))
    if m.monthly_frozen_months:
        # hourly like the daily freeze: a new month is collected within the hour after the meter freezes it
        out.append(Dlt698Point(obis="1.0.98.2.0.255", name="monthly_frozen", unit="", interval=3600.0,
                               oad=MONTHLY_FREEZE_OAD))
    return out
