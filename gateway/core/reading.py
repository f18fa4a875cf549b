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
import re
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from meterlink.core.errors import MeterlinkError

OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")  # as written: A.B.C.D.E.F


class Quality(enum.StrEnum):
    GOOD = "good"
    INVALID = "invalid"  # the meter answered with an error or an impossible value
    ESTIMATED = "estimated"


class Reading(NamedTuple):
    """One value of one point of one meter, as acquired by one gateway.

    Immutable and hashable.  A named tuple rather than a frozen dataclass: a
    frozen dataclass sets each of its ten fields through
    ``object.__setattr__``, which cost 2.5 times as much per reading on the
    900 readings a second of a busy gateway (issue 14).  Make one with keyword
    arguments; its fields are read by name, never by position.
    """

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
    ts = ts.astimezone(UTC) if ts.tzinfo is not None else ts
    return f"{ts.replace(tzinfo=None).isoformat(timespec='milliseconds')}Z"  # C, a third cheaper than strftime


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def decimal_text(value: Decimal) -> str:
    """A JSON number carrying exactly ``value``: no exponent, no trailing-zero noise beyond the meter's."""
    text = str(value)  # plain notation already unless the exponent calls for E (3x cheaper than format)
    if "E" in text or not text[-1].isdigit():  # an exponent, or NaN / Infinity
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        text = format(value, "f")
    if text[0] == "-" and value == 0:
        text = text[1:]
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


_QUALITY_TEXT = {q: q.value for q in Quality}  # an enum's .value is a descriptor call: this runs per reading
_GOOD = '", "meter_ts": null, "quality": "good"}'  # the end of a good reading without a meter time stamp


def reading_json(r: Reading) -> str:
    """The JSON of CONTRACT section 5, assembled by hand so ``value`` stays an exact decimal.

    The parts that repeat from poll to poll (names, units, the poll's time
    stamp) are cached: this runs for every reading on the hot path.
    """
    value = "null" if r.value is None else decimal_text(r.value)
    if r.meter_ts is None and r.error is None and r.quality is Quality.GOOD:  # most readings: one f-string
        return f'{_json_head(r.gateway, r.meter, r.obis, r.name)}{value}{_json_unit(r.unit)}{_ts_text(r.ts)}{_GOOD}'
    meter_ts = "null" if r.meter_ts is None else f'"{_ts_text(r.meter_ts)}"'
    text = (f'{_json_head(r.gateway, r.meter, r.obis, r.name)}{value}{_json_unit(r.unit)}{_ts_text(r.ts)}", '
            f'"meter_ts": {meter_ts}, "quality": "{_QUALITY_TEXT[r.quality]}"')
    if r.error is not None:
        text += f', "error": {json.dumps(r.error)}'
    return text + "}"


def readings_json(readings: Sequence[Reading]) -> str:
    """The readings of one poll as the comma-separated body of a data message (CONTRACT section 6)."""
    return ", ".join([reading_json(r) for r in readings])


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


# --- units (CONTRACT section 5: "the value converted to it where the meter reports another multiple") ---

_MULTIPLES: dict[str, tuple[str, int]] = {
    "Wh": ("Wh", 0), "kWh": ("Wh", 3), "MWh": ("Wh", 6),
    "varh": ("varh", 0), "kvarh": ("varh", 3), "Mvarh": ("varh", 6),
    "VAh": ("VAh", 0), "kVAh": ("VAh", 3), "MVAh": ("VAh", 6),
    "W": ("W", 0), "kW": ("W", 3), "MW": ("W", 6),
    "var": ("var", 0), "kvar": ("var", 3), "Mvar": ("var", 6),
    "VA": ("VA", 0), "kVA": ("VA", 3), "MVA": ("VA", 6),
    "V": ("V", 0), "kV": ("V", 3), "A": ("A", 0), "mA": ("A", -3), "Hz": ("Hz", 0), "s": ("s", 0),
    "°": ("°", 0), "%": ("%", 0), "": ("", 0),
}


class UnitMismatch(MeterlinkError, ValueError):
    """The meter reports a unit that is no multiple of the point's (the point names the wrong object)."""


def convert_unit(value: Decimal, have: str, want: str) -> Decimal:
    """``value`` in unit ``have`` expressed in unit ``want``, exactly (1234567 Wh -> 1234.567 kWh).

    Raises :class:`UnitMismatch` when the two are not multiples of one base unit.
    """
    if have == want:
        return value
    a, b = _MULTIPLES.get(have), _MULTIPLES.get(want)
    if a is None or b is None or a[0] != b[0]:
        raise UnitMismatch(f"the meter reports {have or 'no unit'}, the point is in {want or 'no unit'}")
    return _plain(value.scaleb(a[1] - b[1]))


# --- historical values: their own OBIS identity ----------------------------------------------------

HISTORICAL_F = 126
"""OBIS value group F of a value the meter froze in the past (a DL/T 645 daily freeze, 日冻结).

IEC 62056-6-1 (DLMS UA Blue Book, OBIS value group F, "billing periods"):
F = 255 is the current value; F = 0..99 is the value of the billing period
whose counter VZ holds F; F = 101..125 is the (F-100)th last billing period,
a relative code that shifts every day and reaches back only 25 periods; F = 126
is "an unspecified number of most recent billing periods".  A freeze read from
a meter's history has no VZ counter, and a relative code would file one and
the same freeze under F = 101 today and F = 102 tomorrow, so Meterlink gives
every historical value the fixed F = 126: ``1.0.1.8.0.126`` is the frozen
forward active energy total, ``1.0.1.8.3.126`` tariff 3, and ``meter_ts``
says which freeze it is (the freeze time).  A subscriber keyed on
``1.0.1.8.0.255`` therefore never takes yesterday's freeze for the live register.
"""


def historical_obis(obis: str) -> str:
    """The OBIS code of a historical (frozen) value of the register ``obis``: F = :data:`HISTORICAL_F`."""
    a, b, c, d, e, _f = obis.split(".")
    return f"{a}.{b}.{c}.{d}.{e}.{HISTORICAL_F}"


def is_historical(obis: str) -> bool:
    """Whether ``obis`` names a value from the meter's history (F = 0..126) rather than a live one (F = 255)."""
    f = obis.rsplit(".", 1)[-1]
    return f.isdigit() and int(f) <= HISTORICAL_F


_F32 = struct.Struct(">f")


def float32_decimal(x: float) -> Decimal:
    """The shortest decimal that reads back as the same float32.

    A float32 register holding 230.1 is really 230.100006103515625; the meter
    meant 230.1, and 230.1 is the shortest decimal that round-trips through
    float32, exactly as ``repr`` does for float64.  This runs for every float
    a meter sends, so the common case is one format, one parse and one pack.
    """
    known = _F32_SEEN.get(x)
    if known is not None:
        return known
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a finite number")
    value = _float32_decimal(x)
    if x != 0:  # 0.0 and -0.0 are one key; "-0" is kept as the meter sent it
        if len(_F32_SEEN) >= _F32_SEEN_MAX:
            _F32_SEEN.clear()
        _F32_SEEN[x] = value
    return value


# Meters repeat their values: a voltage of 230.1 V, 50.00 Hz or an energy register comes back poll
# after poll, so the shortest decimal of each recent float32 is kept (a Decimal is immutable).
# Bounded: cleared when full, about 0.5 MB at most.
_F32_SEEN: dict[float, Decimal] = {}
_F32_SEEN_MAX = 4096


def _float32_decimal(x: float) -> Decimal:
    target = _F32.pack(x)
    # Distinct decimals of up to 6 significant digits are distinct float32s (FLT_DIG = 6), so when
    # 6 digits round-trip, %g's trimmed text is the shortest: one try for almost every meter value,
    # taken first without the loop's machinery (this runs for every new value a meter sends).
    text = f"{x:.6g}"
    if "e" not in text:  # below 1e6: the 6-digit try cannot overflow, and needs no exponent undone
        if _F32.pack(float(text)) == target:
            return Decimal(text)
        first = 7
    else:
        first = 6
    for digits in range(first, 10):
        text = f"{x:.{digits}g}"
        try:
            if _F32.pack(float(text)) == target:
                return _plain(Decimal(text)) if "e" in text else Decimal(text)
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
