"""What a Modbus meter and point are in the configuration, and what they resolve to.

A point is a register (0-based protocol address), read with function 03
(holding) or 04 (input), decoded as one of eight types in either word order
and multiplied by an exact ``scale``.  A meter adds the planner's limits: the
largest block it answers (``max_registers``) and the widest gap worth bridging
(``max_gap``; none: the planner's wire-cost model decides).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from meterlink.core.config import DefaultsBase, PointBase, Scale, protocol_models
from meterlink.core.errors import ConfigError
from meterlink.drivers.modbus.points import REGISTER_WORDS, ModbusPoint

RegisterType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]


class ModbusPointConfig(PointBase):
    register: int | None = Field(default=None, ge=0, le=65535)
    function: Literal["input", "holding"] | None = None
    type: RegisterType | None = None
    word_order: Literal["big", "little"] | None = None
    scale: Scale | None = None


class ModbusDefaults(DefaultsBase):
    function: Literal["input", "holding"] | None = None
    type: RegisterType | None = None
    word_order: Literal["big", "little"] | None = None
    scale: Scale | None = None


class ForbiddenRange(BaseModel):
    """Registers a meter refuses to read (exception 02): block reads must not bridge over them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    function: Literal["input", "holding"]
    first: int = Field(ge=0, le=65535)
    last: int = Field(ge=0, le=65535)


_LIMITS: dict[str, Any] = {
    # the largest block the meter answers, and the widest gap of unused registers a block may bridge
    "max_registers": (int | None, Field(default=None, ge=1, le=125)),
    "max_gap": (int | None, Field(default=None, ge=0, le=124)),
}
ModbusMeterConfig, ModbusProfileConfig = protocol_models(
    "modbus", point=ModbusPointConfig, defaults=ModbusDefaults, meter_fields=_LIMITS,
    profile_fields={**_LIMITS, "forbidden": (list[ForbiddenRange], Field(default_factory=list))})


def make_point(_meter: Any, common: dict[str, Any], d: dict[str, Any]) -> ModbusPoint:
    if "register" not in d:
        raise ConfigError("register", "required for a modbus point")
    typ = d.get("type", "uint16")
    word_order = d.get("word_order", "big")
    if REGISTER_WORDS[typ] == 1 and word_order != "big":
        raise ConfigError("word_order", f"{typ} is one register: it has no word order")
    reg = int(d["register"])
    if reg + REGISTER_WORDS[typ] > 65536:
        raise ConfigError("register", f"{reg:#06x} + {REGISTER_WORDS[typ]} registers runs past 0xFFFF")
    scale = d.get("scale", Decimal(1))
    if scale == 0:
        raise ConfigError("scale", "0 would turn every value into 0")
    return ModbusPoint(**common, register=reg, function=d.get("function", "holding"), type=typ,
                       word_order=word_order, scale=scale, signed=typ.startswith("int"))


def address(m: Any, link: Any) -> int:
    a = m.address
    if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a <= 247:
        raise ValueError(f"{a!r} is not a unit id (1-247)")
    if a == 0 and link is not None and link.type == "tcp" and link.framing == "socket":
        raise ValueError("0 is the broadcast address, no meter answers it")
    return a


def meter_options(m: Any, profile: Any) -> dict[str, Any]:
    """The planner's limits: the meter's own, else its profile's."""
    return {
        "max_registers": m.max_registers or (profile.max_registers if profile else None) or 125,
        "max_gap": m.max_gap if m.max_gap is not None else (profile.max_gap if profile else None),
        "forbidden": tuple((f.function, f.first, f.last) for f in profile.forbidden) if profile else (),
    }
