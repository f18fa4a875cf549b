"""What a dlt645 point resolves to: what the driver reads (no pydantic: see ``core/config/resolved.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from meterlink.core.config.resolved import Point


@dataclass(frozen=True, slots=True, kw_only=True)
class Dlt645Point(Point):
    """A resolved dlt645 point, what the driver reads (apart from ``schema``: the running gateway imports no pydantic)."""

    di: str
