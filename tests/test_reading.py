"""The reading model and its JSON (CONTRACT section 5)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterlink.core.config import Meter
from meterlink.core.reading import Quality, Reading, float32_decimal, reading_from_dict, reading_json, readings_json
from meterlink.drivers.dlms.points import DlmsPoint
from meterlink.drivers.dlms.schema import DlmsMeterConfig


def _reading(value: Decimal | None, **kw: object) -> Reading:
    return Reading(gateway="gw-01", meter="m-0001", obis="1.0.1.8.0.255", name="active_energy_import",
                   value=value, unit="kWh", ts=datetime(2026, 11, 27, 2, 15, 0, 12000, tzinfo=UTC), **kw)


def test_json_is_the_contract_example() -> None:
    text = _reading(Decimal("1234.56")).to_json()
    assert text == ('{"gateway": "gw-01", "meter": "m-0001", "obis": "1.0.1.8.0.255", '
                    '"name": "active_energy_import", "value": 1234.56, "unit": "kWh", '
                    '"ts": "2026-11-27T02:15:00.012Z", "meter_ts": null, "quality": "good"}')
    assert json.loads(text)["value"] == 1234.56


def test_float32_register_never_shows_binary_noise() -> None:
    raw = struct.unpack(">f", struct.pack(">f", 1234.56))[0]
    assert raw != 1234.56  # the register really holds 1234.56005859375
    assert '"value": 1234.56,' in _reading(float32_decimal(raw)).to_json()


@pytest.mark.parametrize(("value", "text"), [("1E+3", "1000"), ("0.000010", "0.000010"), ("-0", "0"),
                                             ("12345678901234567890.123", "12345678901234567890.123")])
def test_exact_decimal_text(value: str, text: str) -> None:
    assert f'"value": {text},' in _reading(Decimal(value)).to_json()


def test_invalid_reading_carries_its_error() -> None:
    r = _reading(None, quality=Quality.INVALID, error="exception 0x02 (illegal data address)")
    doc = json.loads(r.to_json())
    assert doc["value"] is None and doc["quality"] == "invalid" and "illegal data address" in doc["error"]


def test_round_trip_through_json() -> None:
    r = _reading(Decimal("230.1"), meter_ts=datetime(2026, 11, 27, 2, 0, tzinfo=UTC))
    back = reading_from_dict(json.loads(r.to_json(), parse_float=Decimal))
    assert back == r


def test_reading_is_immutable() -> None:
    r = _reading(Decimal(1))
    with pytest.raises(AttributeError):
        r.value = Decimal(2)  # type: ignore[misc]


# --- issue 11: units from the meter, historical identity, meter clocks --------------------------------------


def _point(obis: str = "1.0.1.8.0.255", unit: str = "") -> DlmsPoint:
    return DlmsPoint(obis=obis, name="energy", unit=unit, interval=60.0, class_id=3)


def _meter() -> Meter:
    cfg = DlmsMeterConfig(link="l", protocol="dlms", address={"client": 16, "logical": 1})
    return Meter(id="m", link="l", protocol="dlms", address=cfg.address, points=(), config=cfg)


def _unit_of(point_unit: str, meter_unit: str | None, value: str) -> tuple[str, Decimal | None, Quality]:
    from meterlink.core.driver import PointResult
    from meterlink.engine.scheduler import to_readings

    ts = datetime(2026, 1, 5, tzinfo=UTC)
    (r,) = to_readings("gw", _meter(), ts, [PointResult(point=_point(unit=point_unit), value=Decimal(value),
                                                        unit=meter_unit)])
    return r.unit, r.value, r.quality


def test_a_point_without_unit_takes_the_meters() -> None:
    # DLMS Register 1.0.1.8.0.255, scaler-unit Wh, no unit in the configuration (it printed unit "")
    assert _unit_of("", "Wh", "1234567") == ("Wh", Decimal("1234567"), Quality.GOOD)


def test_a_configured_unit_is_kept_and_the_value_converted_to_it() -> None:
    assert _unit_of("kWh", "Wh", "1234567") == ("kWh", Decimal("1234.567"), Quality.GOOD)
    assert _unit_of("W", "kW", "1.5") == ("W", Decimal("1500"), Quality.GOOD)
    assert _unit_of("kWh", None, "12.5") == ("kWh", Decimal("12.5"), Quality.GOOD)


def test_a_unit_that_is_no_multiple_makes_the_reading_invalid() -> None:
    unit, value, quality = _unit_of("kWh", "V", "230")
    assert (unit, value, quality) == ("kWh", None, Quality.INVALID)


def test_historical_values_have_their_own_obis() -> None:
    from meterlink.core.reading import HISTORICAL_F, historical_obis, is_historical

    assert HISTORICAL_F == 126
    assert historical_obis("1.0.1.8.3.255") == "1.0.1.8.3.126"
    assert is_historical("1.0.1.8.0.126") and not is_historical("1.0.1.8.0.255")


def test_meter_clock_zone_is_applied_per_time_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's own zone (no ``timezone`` key) is applied with the offset of each time stamp (DST)."""
    import time

    from meterlink.core.meterclock import localize, wall_clock

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        winter, summer = datetime(2026, 3, 28, 0, 0), datetime(2026, 3, 30, 0, 0)  # DST began 2026-03-29
        assert localize(winter, None).utcoffset().total_seconds() == 3600  # type: ignore[union-attr]
        assert localize(summer, None).utcoffset().total_seconds() == 7200  # type: ignore[union-attr]
    finally:
        monkeypatch.undo()
        time.tzset()
    shanghai = localize(datetime(2026, 1, 5, 8, 0), "Asia/Shanghai")
    assert shanghai.astimezone(UTC) == datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
    assert wall_clock(datetime(2026, 1, 5, 0, 0, tzinfo=UTC), "Asia/Shanghai") == datetime(2026, 1, 5, 8, 0)


def test_float32_decimal_memo_gives_the_same_answer_and_stays_bounded() -> None:
    """Issue 14: recent float32s are memoised; the answer is the computed one, zero keeps its sign, the memo is bounded."""
    import struct

    from meterlink.core import reading

    values = [struct.unpack(">f", struct.pack(">f", v))[0] for v in (230.1, 49.98, 0.001, 1e-7, 3.4e38, -12.5)]
    first = [float32_decimal(v) for v in values]
    assert first == [float32_decimal(v) for v in values]  # from the memo
    assert [str(reading._float32_decimal(v)) for v in values] == [str(d) for d in first]
    assert first[0] == Decimal("230.1") and first[1] == Decimal("49.98") and first[5] == Decimal("-12.5")
    assert str(float32_decimal(-0.0)) == "-0" and str(float32_decimal(0.0)) == "0"
    for i in range(reading._F32_SEEN_MAX + 10):
        float32_decimal(float(i) + 0.5)
    assert len(reading._F32_SEEN) <= reading._F32_SEEN_MAX


def test_decimal_text_is_format_f_without_negative_zero() -> None:
    """Issue 14: the fast ``str`` path writes exactly what ``format(value, "f")`` writes, and refuses non-finite values."""
    import random

    from meterlink.core.reading import decimal_text

    rng = random.Random(14)
    cases = [Decimal(t) for t in ("230.1", "-0", "-0.0", "0E-3", "-0E+2", "1E+3", "1E-7", "0.000001", "-12.500", "12E2")]
    cases += [Decimal(rng.randint(-10**9, 10**9)).scaleb(rng.randint(-12, 6)) for _ in range(20000)]
    for d in cases:
        want = format(d, "f")
        want = want[1:] if want[0] == "-" and d == 0 else want
        assert decimal_text(d) == want, d
    for bad in ("NaN", "Infinity", "-Infinity", "sNaN"):
        with pytest.raises(ValueError):
            decimal_text(Decimal(bad))


def test_readings_json_is_the_join_of_each_readings_json() -> None:
    """The batch path (one time-stamp lookup per poll) must write exactly what reading_json writes, whatever the mix."""
    ts = datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=UTC)
    rs = [Reading("gw-01", "m-1", "1.0.32.7.0.255", "voltage_l1", Decimal("230.1"), "V", ts),
          Reading("gw-01", "m-1", "1.0.1.8.0.255", "energy", None, "kWh", ts, None, Quality.INVALID, 'a "bad" reply'),
          Reading("gw-01", "m-1", "1.0.1.8.0.255", "energy", Decimal("-0"), "kWh", ts, ts),
          Reading("gw-01", "m-1", "1.0.1.8.0.255", "energy", Decimal("1E+3"), "kWh", ts.replace(second=1)),
          Reading("gw-01", "m-1", "1.0.14.7.0.255", "frequency", Decimal("50.00"), "Hz", ts)]
    assert readings_json(rs) == ", ".join(reading_json(r) for r in rs)
    parsed = json.loads(f"[{readings_json(rs)}]", parse_float=Decimal)
    assert [p["value"] for p in parsed] == [Decimal("230.1"), None, 0, 1000, Decimal("50.00")]
    assert parsed[0]["ts"] == "2026-12-02T06:00:00.123Z" and parsed[3]["ts"] == "2026-12-02T06:00:01.123Z"
    assert readings_json([]) == ""
