"""The one reading model: every value any driver reads ends up as a :class:`Reading`.

Values are :class:`decimal.Decimal` from the decoder to the JSON text, so a
register holding 1234.56 kWh is printed ``1234.56`` and never picks up
binary-float noise on the way (CONTRACT section 5).
"""

from __future__ import annotations

import enum
import functools
import json
import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal


class Quality(enum.StrEnum):
    GOOD = "good"
    INVALID = "invalid"  # the meter answered with an error or an impossible value
    ESTIMATED = "estimated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One value of one point of one meter, as acquired by one gateway."""

    gateway: str
    meter: str
    obis: str
    name: str
    value: Decimal | None
    unit: str
    ts: datetime
    meter_ts: datetime | None = None
    quality: Quality = Quality.GOOD
    error: str | None = None  # why the quality is not good (an extension of CONTRACT section 5)

    def to_json(self) -> str:
        return reading_json(self)


def format_ts(ts: datetime) -> str:
    """UTC, ISO 8601 with milliseconds and ``Z``, as CONTRACT section 5 writes time stamps."""
    ts = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def decimal_text(value: Decimal) -> str:
    """A JSON number carrying exactly ``value``: no exponent, no trailing-zero noise beyond the meter's."""
    text = format(value, "f")
    if text[0] == "-" and value == 0:
        text = text[1:]
    elif not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    return text


@functools.lru_cache(maxsize=65536)
def _json_head(gateway: str, meter: str, obis: str, name: str) -> str:
    return (f'{{"gateway": {json.dumps(gateway)}, "meter": {json.dumps(meter)}, '
            f'"obis": "{obis}", "name": {json.dumps(name)}, "value": ')


@functools.lru_cache(maxsize=1024)
def _json_unit(unit: str) -> str:
    return f', "unit": {json.dumps(unit)}, "ts": "'


@functools.lru_cache(maxsize=4096)
def _ts_text(ts: datetime) -> str:
    return format_ts(ts)


def reading_json(r: Reading) -> str:
    """The JSON of CONTRACT section 5, assembled by hand so ``value`` stays an exact decimal.

    The parts that repeat from poll to poll (names, units, the poll's time
    stamp) are cached: this runs for every reading on the hot path.
    """
    value = "null" if r.value is None else decimal_text(r.value)
    meter_ts = "null" if r.meter_ts is None else f'"{_ts_text(r.meter_ts)}"'
    text = (f'{_json_head(r.gateway, r.meter, r.obis, r.name)}{value}{_json_unit(r.unit)}{_ts_text(r.ts)}", '
            f'"meter_ts": {meter_ts}, "quality": "{r.quality.value}"')
    if r.error is not None:
        text += f', "error": {json.dumps(r.error)}'
    return text + "}"


def reading_from_dict(d: dict[str, object]) -> Reading:
    """Inverse of :func:`reading_json`; the JSON must be parsed with ``parse_float=Decimal``."""
    value = d["value"]
    if value is not None and not isinstance(value, Decimal):
        value = Decimal(str(value))
    meter_ts = d.get("meter_ts")
    return Reading(
        gateway=str(d["gateway"]),
        meter=str(d["meter"]),
        obis=str(d["obis"]),
        name=str(d.get("name", "")),
        value=value,
        unit=str(d.get("unit", "")),
        ts=parse_ts(str(d["ts"])),
        meter_ts=parse_ts(str(meter_ts)) if meter_ts else None,
        quality=Quality(str(d.get("quality", "good"))),
        error=None if d.get("error") is None else str(d["error"]),
    )


def float32_decimal(x: float) -> Decimal:
    """The shortest decimal that reads back as the same float32.

    A float32 register holding 230.1 is really 230.100006103515625; the meter
    meant 230.1, and 230.1 is the shortest decimal that round-trips through
    float32, exactly as ``repr`` does for float64.
    """
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a finite number")
    target = struct.pack(">f", x)
    # Distinct decimals of up to 6 significant digits are distinct float32s (FLT_DIG = 6), so when
    # 6 digits round-trip, %g's trimmed text is the shortest: one try for almost every meter value.
    for digits in range(6, 10):
        text = f"{x:.{digits}g}"
        try:
            if struct.pack(">f", float(text)) == target:
                return _plain(Decimal(text))
        except OverflowError:  # rounding up past the largest float32
            continue
    return _plain(Decimal(repr(x)))  # unreachable: 9 significant digits always round-trip


def float64_decimal(x: float) -> Decimal:
    """The shortest decimal that reads back as the same float64 (Python's ``repr``)."""
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a finite number")
    return _plain(Decimal(repr(x)))


def _plain(d: Decimal) -> Decimal:
    """Drop an exponent form such as ``1E+3`` that ``%g`` produces, keeping the value exact."""
    if d == d.to_integral_value() and d.as_tuple().exponent > 0:  # type: ignore[operator]
        return Decimal(int(d))
    return d
