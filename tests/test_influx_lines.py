"""Line protocol of the InfluxDB sink (CONTRACT section 7)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterlink.core.reading import Quality, Reading
from meterlink.engine.journal import Message, data_message
from meterlink.engine.sinks.influx import message_lines

TS = datetime(2026, 11, 27, 2, 15, 0, 12000, tzinfo=UTC)


def _batch(readings: list[Reading]) -> Message:
    payload = data_message("gw 01", "m,1", 1, TS, readings)
    return Message(1, "m,1", 1, TS.timestamp(), len(readings), payload)


def _r(obis: str, value: str | None, unit: str, **kw: object) -> Reading:
    return Reading(gateway="gw 01", meter="m,1", obis=obis, name="x", value=None if value is None else Decimal(value),
                   unit=unit, ts=TS, **kw)


def test_tags_fields_time_and_escaping() -> None:
    lines = message_lines(_batch([_r("1.0.1.8.0.255", "1234.56", "kWh")]), "meter", 1000)
    assert lines == ["meter,gateway=gw\\ 01,meter=m\\,1,obis=1.0.1.8.0.255,unit=kWh value=1234.56 1795745700012"]


def test_meter_ts_wins_and_dimensionless_has_no_unit_tag() -> None:
    mts = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
    lines = message_lines(_batch([_r("1.0.13.7.0.255", "0.95", "", meter_ts=mts)]), "energy", 1)
    assert lines == [f"energy,gateway=gw\\ 01,meter=m\\,1,obis=1.0.13.7.0.255 value=0.95 {int(mts.timestamp())}"]


def test_invalid_readings_are_not_written_and_integers_stay_floats() -> None:
    lines = message_lines(_batch([_r("1.0.1.8.0.255", None, "kWh", quality=Quality.INVALID, error="x"),
                                _r("1.0.14.7.0.255", "50", "Hz")]), "meter", 1000)
    assert len(lines) == 1 and " value=50 " in lines[0]  # no 'i' suffix: line protocol takes 50 as a float
