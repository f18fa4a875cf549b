"""DLMS meters whose date-times carry no deviation ("not specified", 0x8000): read in the meter's ``timezone``.

Such a meter keeps its wall time in the zone it was set up in.  A meter in
Asia/Shanghai read by a gateway on UTC (``TZ=UTC`` for the ``meterlink read``
subprocess, so the gateway's own zone is never the right answer by chance)
must have its profile records, its clock and its pushed notifications land on
their true UTC instants, each with the offset of its own time stamp across a
Europe/Berlin daylight-saving change.  Simulated meters (``meterlink simulate
dlms --zone``) send wall time with deviation 0x8000 and clock_status bit 7
"daylight saving active" in summer time (Blue Book 4.1.6.1).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from meterlink.drivers.dlms import axdr
from meterlink.drivers.dlms.apdu import AttributeRef
from meterlink.drivers.dlms.driver import _records
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import CLOCK, LOAD_PROFILE, STATUS, SimClock, parse_instant
from testkit.simproc import meterlink, write_config

START = "2026-01-05T10:07:30Z"  # 18:07:30 on the wall in Shanghai
ON_UTC = {"TZ": "UTC"}


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _read(tmp_path: Path, link: dict[str, object], meter: dict[str, object]) -> list[dict[str, object]]:
    cfg = write_config(tmp_path / "g.yaml", {"gateway": {"id": "gw-z", "data_dir": str(tmp_path / "data")},
                                             "links": {"l": link}, "meters": {"m": meter}})
    r = meterlink("read", "-c", str(cfg), "--format", "json", env=ON_UTC)
    assert r.returncode == 0, r.stderr
    return [json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines()]


def test_profile_rows_and_clock_of_a_shanghai_meter_on_a_utc_gateway(simulate, tmp_path: Path) -> None:
    sim = simulate("dlms", "--tcp", "0", "--zone", "Asia/Shanghai", "--freeze", "--clock-start", START)
    readings = _read(tmp_path, {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"},
                     {"link": "l", "protocol": "dlms", "address": {"client": 16}, "timezone": "Asia/Shanghai",
                      "points": [{"obis": LOAD_PROFILE, "name": "load_profile", "class_id": 7},
                                 {"obis": CLOCK, "name": "clock", "class_id": 8, "unit": "s"}]})
    clock = next(x for x in readings if x["obis"] == CLOCK)
    assert clock["meter_ts"] == "2026-01-05T10:07:30.000Z" and clock["quality"] == "good"
    # a one-off read fetches the newest records (two periods back): 09:45 and 10:00 UTC, 17:45 and 18:00 local
    marks = [x["meter_ts"] for x in readings if x["obis"] == LOAD_PROFILE]
    assert marks == ["2026-01-05T09:45:00.000Z", "2026-01-05T10:00:00.000Z"], marks
    meter = make_meter(frozen=True, clock=SimClock(start=parse_instant(START), frozen=True), zone="Asia/Shanghai")
    energy = {x["meter_ts"]: x for x in readings if x["obis"] == "1.0.1.8.0.126"}
    for t in (parse_instant("2026-01-05T09:45:00Z"), parse_instant("2026-01-05T10:00:00Z")):
        got = energy[_stamp(t)]
        assert got["value"] == meter.expected_record(LOAD_PROFILE, t)["1.0.1.8.0.255"] and got["quality"] == "good"


def test_push_of_a_shanghai_meter_on_a_utc_gateway(simulate, tmp_path: Path) -> None:
    """The notification's date-time and its clock value carry no deviation; the voltage point names no unit, so
    the reading takes the meter's (the scaler-unit's V), as a polled register's does."""
    sim = simulate("dlms", "--pty", "--push", "--push-interval", "200ms", "--zone", "Asia/Shanghai", "--freeze",
                   "--clock-start", START)
    readings = _read(tmp_path, {"type": "serial", "port": sim.where, "baudrate": 115200, "parity": "N",
                                "timeout": "2s"},
                     {"link": "l", "protocol": "dlms", "transport": "push", "address": {"client": 16},
                      "timezone": "Asia/Shanghai", "points": [{"obis": "1.0.32.7.0.255", "name": "voltage_l1"}]})
    assert readings
    meter = make_meter(frozen=True, clock=SimClock(start=parse_instant(START), frozen=True))
    voltage = next(p for p in meter.points if p.obis == "1.0.32.7.0.255")
    for x in readings:
        assert x["meter_ts"] == "2026-01-05T10:07:30.000Z", x
        assert x["value"] == meter.served(voltage) and x["unit"] == "V" and x["quality"] == "good", x


def test_daily_records_across_a_berlin_dst_change(simulate, tmp_path: Path) -> None:
    """Daily records at local midnight on either side of 2026-03-29 (CET -> CEST at 01:00 UTC): the one before
    is 23:00 UTC, the one after 22:00 UTC; the offset "now" (CEST) would put the first an hour early."""
    sim = simulate("dlms", "--tcp", "0", "--zone", "Europe/Berlin", "--freeze", "--clock-start",
                   "2026-03-30T10:00:00Z")
    readings = _read(tmp_path, {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"},
                     {"link": "l", "protocol": "dlms", "address": {"client": 16}, "timezone": "Europe/Berlin",
                      "points": [{"obis": "1.0.98.1.0.255", "name": "daily", "class_id": 7}]})
    marks = [x["meter_ts"] for x in readings if x["obis"] == "1.0.98.1.0.255"]
    assert marks == ["2026-03-28T23:00:00.000Z", "2026-03-29T22:00:00.000Z"], marks
    assert {x["obis"] for x in readings} == {"1.0.98.1.0.255", "1.0.1.8.0.126", "1.0.1.8.1.126", "1.0.1.8.2.126",
                                             "1.0.2.8.0.126"}


# --- the load profile's 15 min records through both changes of a year (sans-io, explicit zones) ---------------


COLUMNS = (AttributeRef(8, CLOCK, 2), AttributeRef(1, STATUS, 2), AttributeRef(3, "1.0.1.8.0.255", 2),
           AttributeRef(3, "1.0.2.8.0.255", 2))


@pytest.mark.parametrize("first", ["2026-03-29T00:00:00Z", "2026-10-25T00:00:00Z"], ids=["spring", "autumn"])
def test_load_profile_records_across_berlin_dst_changes(first: str) -> None:
    """Twelve records 00:00-02:45 UTC around each change.  In spring the wall jumps 01:45 -> 03:00; in autumn
    02:00-02:45 comes twice and only clock_status bit 7 tells the summer-time pass from the winter-time one."""
    t0 = parse_instant(first)
    times = [t0 + 900 * k for k in range(12)]
    meter = make_meter(frozen=True, clock=SimClock(start=times[-1], frozen=True), zone="Europe/Berlin")
    buffer = axdr.array([meter.record(LOAD_PROFILE, t) for t in times])
    walls = {axdr.CosemDateTime.from_bytes(r.items[0].value).hour for r in buffer.items}
    assert walls == ({1, 3, 4} if "03-29" in first else {2, 3})  # wall time as the meter sends it
    records = _records(axdr.decode_all(axdr.encode(buffer)), COLUMNS, 900, ZoneInfo("Europe/Berlin"))
    assert [ts.timestamp() for ts, _ in records] == times
    assert [ts.astimezone(UTC) for ts, _ in records] == [datetime.fromtimestamp(t, UTC) for t in times]
    assert all(b - a == timedelta(minutes=15) for (a, _), (b, _) in itertools.pairwise(records))
    # a record with a null clock (Blue Book 4.3.6: the previous one plus the capture period) across the change
    nulled = axdr.array([r if k % 2 == 0 else axdr.structure(axdr.null(), *r.items[1:])
                         for k, r in enumerate(buffer.items)])
    assert [ts.timestamp() for ts, _ in _records(nulled, COLUMNS, 900, ZoneInfo("Europe/Berlin"))] == times
