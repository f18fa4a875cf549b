"""DLMS unit codes and scalers (Blue Book 4.3.2, "Scaler_unit") as Meterlink units, exactly.

A Register's value is ``attribute 2 x 10^scaler`` in the unit of attribute 3.
The driver reports the meter's unit, converted to the point's unit when the
profile asks for a multiple of it (a meter counting Wh for a point in kWh),
always with :meth:`Decimal.scaleb`, so 123456 Wh with scaler 1 becomes
exactly 1234.56 kWh.
"""

from __future__ import annotations

from decimal import Decimal

from meterlink.core.reading import convert_unit

# Blue Book ed. 12, 4.3.2, Table 4 "Enumerated values for physical units" (the ones electricity meters use,
# and the rest by their symbol)
DLMS_UNITS: dict[int, str] = {
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C", 10: "currency", 11: "m",
    12: "m/s", 13: "m³", 14: "m³", 15: "m³/h", 16: "m³/h", 17: "m³/d", 18: "m³/d", 19: "l", 20: "kg", 21: "N",
    22: "Nm", 23: "Pa", 24: "bar", 25: "J", 26: "J/h", 27: "W", 28: "VA", 29: "var", 30: "Wh", 31: "VAh",
    32: "varh", 33: "A", 34: "C", 35: "V", 36: "V/m", 37: "F", 38: "Ω", 39: "Ωm²/m", 40: "Wb", 41: "T", 42: "A/m",
    43: "H", 44: "Hz", 45: "1/(Wh)", 46: "1/(varh)", 47: "1/(VAh)", 48: "V²h", 49: "A²h", 50: "kg/s", 51: "S",
    52: "K", 53: "1/(V²h)", 54: "1/(A²h)", 55: "1/m³", 56: "%", 57: "Ah", 60: "Wh/m³", 61: "J/m³", 62: "Mol %",
    63: "g/m³", 64: "Pa s", 65: "J/kg", 66: "g/cm²", 67: "atm", 70: "dBm", 71: "dBµV", 72: "dB",
    254: "",  # "other unit"
    255: "",  # "no unit, unitless, count"
    0: "",    # not in the table; some meters send it for "no unit"
}
CODES: dict[str, int] = {"W": 27, "VA": 28, "var": 29, "Wh": 30, "VAh": 31, "varh": 32, "A": 33, "V": 35, "Hz": 44,
                         "°": 8, "s": 7, "%": 56, "": 255}

# unit -> (base unit, power of ten): the multiples a point may ask for
def unit_text(code: int) -> str:
    """The symbol of a DLMS unit code; an unknown code is shown as such rather than guessed."""
    return DLMS_UNITS.get(code, f"unit {code}")


def scale(raw: Decimal, scaler: int) -> Decimal:
    """``raw x 10^scaler``, exact: 2301 with scaler -1 is 230.1, 123456 with scaler 1 is 1.23456E+6."""
    return raw.scaleb(scaler)


def convert(value: Decimal, meter_unit: str, point_unit: str) -> tuple[Decimal, str]:
    """``value`` in ``meter_unit`` as the point's unit; an empty point unit takes the meter's.

    Raises :class:`meterlink.core.reading.UnitMismatch` when the two are not multiples of one base unit.
    """
    if point_unit == "" and meter_unit != "":
        return value, meter_unit
    return plain(convert_unit(value, meter_unit, point_unit)), point_unit


def plain(d: Decimal) -> Decimal:
    """Without an exponent: 1.23456E+3 -> 1234.56 (the same value, the digits a person expects)."""
    if d.as_tuple().exponent > 0:  # type: ignore[operator]
        return d.quantize(Decimal(1))
    return d
