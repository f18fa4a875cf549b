"""A toy meter protocol: a "meter" is a JSON file of channel values, a point names a channel.

Everything a real protocol gives Meterlink is here, and nothing of Meterlink
was edited to add it: its meter and point schema, address check, driver and
one entry-point line in its own pyproject.toml.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field

from meterlink.core.config import Point, PointBase, protocol_models
from meterlink.core.driver import LinkCounters, PointResult
from meterlink.core.errors import ConfigError, MeterTimeout
from meterlink.core.registry import Protocol


class ToyPointConfig(PointBase):
    channel: int | None = Field(default=None, ge=0, le=99)


ToyMeterConfig, ToyProfileConfig = protocol_models("toy", point=ToyPointConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToyPoint(Point):
    channel: int


def make_point(_meter: Any, common: dict[str, Any], d: dict[str, Any]) -> ToyPoint:
    if d.get("channel") is None:
        raise ConfigError("channel", "required for a toy point (0-99)")
    return ToyPoint(**common, channel=d["channel"])


def address(m: Any, _link: Any) -> str:
    if not isinstance(m.address, str) or not m.address.endswith(".json"):
        raise ValueError(f"{m.address!r} is not a toy meter (the path of its .json file)")
    return m.address


class ToyDriver:
    """Reads the meter's file whenever a poll is due; a missing file is a meter that does not answer."""

    def __init__(self, link: Any, store: Any = None, *, transport: Any = None) -> None:
        self.link = link
        self.counters = LinkCounters()

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, meter: Any, points: Sequence[ToyPoint]) -> list[PointResult]:
        self.counters.transactions += 1
        try:
            channels = json.loads(Path(meter.address).read_text())["channels"]
        except OSError as exc:
            raise MeterTimeout(f"toy meter {meter.address}: {exc.strerror}") from None
        out = []
        for p in points:
            raw = channels.get(str(p.channel))
            out.append(PointResult.invalid(p, f"channel {p.channel} is empty") if raw is None
                       else PointResult(point=p, value=Decimal(str(raw))))
        return out


PROTOCOL = Protocol(name="toy", title="Toy (JSON file) meters", meter_model=ToyMeterConfig,
                    profile_model=ToyProfileConfig, make_point=make_point, address=address,
                    example_address="meter.json", driver="toyproto:ToyDriver")
