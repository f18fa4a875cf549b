"""Issue 11 item 1: a point that names no unit gets the unit the meter reports (DLMS scaler-unit), over a pty."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from meterlink.core.config import profile_points
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import SimClock, parse_instant
from tests.integration.test_dlms_read import START, _config, _json_lines, _read


def test_register_without_configured_unit_reports_the_meters(simulate, tmp_path: Path) -> None:
    sim = simulate("dlms", "--pty", "--hdlc", "--auth", "none", "--freeze", "--clock-start", START)
    served = make_meter(profile="dlms-generic-3phase", seed=1, frozen=True,
                        clock=SimClock(start=parse_instant(START), frozen=True))
    in_kwh = {p.obis: served.served(p) for p in profile_points("dlms-generic-3phase") if p.obis == "1.0.1.8.0.255"}
    link = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "500ms"}
    meter = {"link": "l", "protocol": "dlms", "address": {"client": 16, "logical": 1, "physical": 17},
             "points": [{"obis": "1.0.1.8.0.255", "class_id": 3},  # no unit: the meter's scaler-unit says Wh
                        {"obis": "1.0.32.7.0.255", "class_id": 3},
                        {"obis": "1.0.2.8.0.255", "class_id": 3, "unit": "kWh"}]}
    r = _read(_config(tmp_path, {"l": link}, {"m": meter}))
    assert r.returncode == 0, r.stderr
    got = {x["obis"]: x for x in _json_lines(r.stdout)}
    energy = got["1.0.1.8.0.255"]
    assert energy["unit"] == "Wh" and energy["quality"] == "good", energy
    assert energy["value"] == in_kwh["1.0.1.8.0.255"].scaleb(3)  # the same register, in the meter's Wh
    assert got["1.0.32.7.0.255"]["unit"] == "V"
    assert got["1.0.2.8.0.255"]["unit"] == "kWh"  # a configured unit is kept, the value converted to it
    assert isinstance(got["1.0.2.8.0.255"]["value"], Decimal)
