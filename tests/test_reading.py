"""The reading model and its JSON (CONTRACT section 5)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.reading import Quality, Reading, float32_decimal, reading_from_dict


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
