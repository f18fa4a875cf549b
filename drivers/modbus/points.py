"""What a Modbus point resolves to, and a meter's planner limits (no pydantic: see ``core/config/resolved.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from meterlink.core.config.resolved import Meter, Point

REGISTER_WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
                  "int64": 4, "uint64": 4, "float64": 4}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModbusPoint(Point):
    register: int
    function: str = "holding"
    type: str = "uint16"
    word_order: str = "big"
    scale: Decimal = Decimal(1)

    @property
    def words(self) -> int:
        return REGISTER_WORDS[self.type]


def options(meter: Meter) -> tuple[int, int | None, tuple[tuple[str, int, int], ...]]:
    """(max_registers, max_gap, forbidden) of a resolved meter."""
    o = meter.options
    return o.get("max_registers", 125), o.get("max_gap"), o.get("forbidden", ())
