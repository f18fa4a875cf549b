"""Issue 11 over a real pty: tariff counts other than 4, blocks refused with "other error", frozen records
that are not there yet, historical OBIS codes, and meter clocks in their own zone (DL/T 645)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.reading import Quality, Reading
from meterlink.engine.timesync import sync_time
from meterlink.simulators.dlt645 import OTHER_ERROR, Dlt645Meter
from meterlink.simulators.model import MeterModel
from tests.integration.test_dlt645 import _in_process

ADDRESS = "123456789012"


def _energy_points(tariffs: int) -> list[dict[str, str]]:
    points = [{"obis": "1.0.1.8.0.255", "di": "00010000"}]
    points += [{"obis": f"1.0.1.8.{t}.255", "di": f"0001{t:02X}00"} for t in range(1, tariffs + 1)]
    return points


def _run(meter: Dlt645Meter, raw_meter: dict[str, Any], tmp_path: Path, reads: int = 1,
         **handler: Any) -> tuple[list[list[Reading]], list[int]]:
    """Start a gateway on a pty served by ``meter``, then ``reads`` on-demand reads; readings and request counts."""
    return _gateway(meter, raw_meter, tmp_path, reads, **handler)[:2]  # type: ignore[return-value]


def _journaled(meter: Dlt645Meter, raw_meter: dict[str, Any], tmp_path: Path) -> list[Reading]:
    """Every reading the gateway journaled for the meter (the start-up read included)."""
    return _gateway(meter, raw_meter, tmp_path, 0)[2]


def _gateway(meter: Dlt645Meter, raw_meter: dict[str, Any], tmp_path: Path, reads: int,
             **handler: Any) -> tuple[list[list[Reading]], list[int], list[Reading]]:
    from meterlink.core.reading import reading_from_dict

    async def scenario() -> tuple[list[list[Reading]], list[int], list[Reading]]:
        gw, h, pty = await _in_process({ADDRESS: meter}, {"m": raw_meter}, tmp_path, **handler)
        try:
            deadline = time.monotonic() + 10
            while (gw.meter_state("m") is None or gw.meter_state("m").online is None) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # the start-up read of every point
            out, counts = [], []
            for _ in range(reads):
                before = h.requests
                out.append(await gw.read_now("m"))
                counts.append(h.requests - before)
            await gw.journal.stop()
            gw.journal.start()
            journaled = [reading_from_dict(r) for b in gw.journal.iter_messages("m")
                         for r in b.as_dict()["readings"]]  # type: ignore[union-attr]
            return out, counts, journaled
        finally:
            await gw.stop()
            pty.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("tariffs", [2, 4, 8, 12])
def test_energy_block_of_any_tariff_count_keeps_total_and_every_tariff(tmp_path: Path, tariffs: int) -> None:
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3, frozen=True), tariffs=tariffs)
    expected = meter.forward()
    asked = max(tariffs, 4)  # a 2-tariff meter is asked for tariffs 3 and 4 too (a 4-tariff profile)
    raw = {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h",
           "points": _energy_points(asked)}
    (readings,), (count,) = _run(meter, raw, tmp_path)
    got = {r.obis: r for r in readings}
    assert count == 1, "one block read, total and tariffs together"
    assert got["1.0.1.8.0.255"].quality is Quality.GOOD and got["1.0.1.8.0.255"].value == expected[0]
    for t in range(1, tariffs + 1):
        assert got[f"1.0.1.8.{t}.255"].value == expected[t], t
    assert sum(got[f"1.0.1.8.{t}.255"].value for t in range(1, tariffs + 1)) == expected[0]  # type: ignore[misc]
    for t in range(tariffs + 1, asked + 1):
        r = got[f"1.0.1.8.{t}.255"]
        assert r.quality is Quality.INVALID and f"the meter has {tariffs} tariffs" in (r.error or ""), r


@pytest.mark.parametrize("refusal", ["no requested data", "other error"])
def test_block_refused_with_either_error_bit_falls_back_once(tmp_path: Path, refusal: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    err = OTHER_ERROR if refusal == "other error" else 0x02
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3, frozen=True), blocks=False, block_error=err)
    raw = {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h",
           "points": _energy_points(4)}
    logger = logging.getLogger("meterlink")  # it does not propagate: listen to it directly
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        reads, counts = _run(meter, raw, tmp_path, reads=2)
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    expected = meter.forward()
    for readings in reads:
        assert [r.quality for r in readings] == [Quality.GOOD] * 5, readings
        assert {r.obis: r.value for r in readings} == {f"1.0.1.8.{t}.255": expected[t] for t in range(5)}
    assert counts == [5, 5], "the refused block is remembered: members only, no block request again"
    logged = {id(r): r for r in caplog.records if "block identifier refused" in r.getMessage()}  # root sees it too
    assert len(logged) == 1, "logged once"


@pytest.mark.parametrize("missing", ["error", "zeros", "ff"])
def test_frozen_records_not_there_yet_end_the_walk(tmp_path: Path, missing: str) -> None:
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3, frozen=True), history=3, missing=missing, tariffs=8)
    raw = {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h", "daily_frozen_days": 10,
           "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}
    readings = _journaled(meter, raw, tmp_path)
    frozen = [r for r in readings if r.meter_ts is not None]
    totals = [r for r in frozen if r.obis == "1.0.1.8.0.126"]
    assert len(totals) == 3, "the three records the meter holds, then the walk ends"
    assert all(r.quality is Quality.GOOD for r in frozen)
    # 8 tariffs per frozen block: total + t1..t8, forward and reverse, each under its historical code
    assert {r.obis for r in frozen} == {f"1.0.{c}.8.{t}.126" for c in (1, 2) for t in range(9)}
    live = [r for r in readings if r.obis == "1.0.1.8.0.255"]
    assert len(live) == 1 and live[0].meter_ts is None, "the live register keeps F = 255, without a meter_ts"
    for n in (1, 2, 3):  # the values are the meter's, record by record
        when, fwd, _ = meter.frozen(n)
        (total,) = [r for r in totals if r.meter_ts is not None and r.meter_ts.replace(tzinfo=None)
                    == when.astimezone().astimezone(r.meter_ts.tzinfo).replace(tzinfo=None)]
        assert total.value == fwd[0]
    stamps = sorted(r.meter_ts for r in totals)  # type: ignore[type-var]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)] == [86400, 86400]


def _other_zone() -> str:
    """A zone whose offset differs from this machine's now, so a meter in it is hours off from the gateway."""
    here = dt.datetime.now().astimezone().utcoffset()
    for name in ("Asia/Shanghai", "America/New_York"):
        if dt.datetime.now(zoneinfo.ZoneInfo(name)).utcoffset() != here:
            return name
    raise AssertionError("unreachable")


def test_meter_clock_in_its_own_zone_shows_no_drift(tmp_path: Path) -> None:
    zone = _other_zone()
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3), timezone=zone, clock_offset=20.0)
    raw = {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h", "timezone": zone,
           "points": [{"obis": "0.0.1.0.0.255", "di": "04000102"}]}
    (readings,), _ = _run(meter, raw, tmp_path)
    (clock,) = readings
    assert clock.unit == "s" and 18 <= clock.value <= 22, clock  # type: ignore[operator]
    assert clock.meter_ts is not None
    assert abs((clock.meter_ts - dt.datetime.now(dt.UTC)).total_seconds() - 20) < 5


def test_daily_freezes_across_a_dst_change_land_on_midnight(tmp_path: Path) -> None:
    """Europe/Berlin changed to summer time on 2026-03-29: 45 freezes back from 2026-04-20 cross it."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    start = dt.datetime(2026, 4, 20, 10, 0, tzinfo=berlin).timestamp()
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3, frozen=True, start=start), timezone="Europe/Berlin")
    raw = {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h", "daily_frozen_days": 45,
           "timezone": "Europe/Berlin", "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}
    readings = _journaled(meter, raw, tmp_path)
    stamps = [r.meter_ts for r in readings if r.obis == "1.0.1.8.0.126"]
    assert len(stamps) == 45
    for ts in stamps:
        assert ts is not None
        local = ts.astimezone(berlin)
        assert (local.hour, local.minute) == (0, 0), f"{ts.isoformat()} is not a Berlin midnight"


def test_time_sync_sets_the_meter_clock_in_its_zone(tmp_path: Path) -> None:
    zone = _other_zone()
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3), timezone=zone, clock_offset=90.0)
    raw_meters = {"m": {"link": "rs485-2", "protocol": "dlt645", "address": ADDRESS, "interval": "1h",
                        "timezone": zone, "time_sync": {"enabled": True, "tolerance": "30s"},
                        "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}}
    safe = dt.datetime.now(zoneinfo.ZoneInfo(zone)).replace(minute=30)

    async def scenario() -> dict[str, Any]:
        gw, _, pty = await _in_process({ADDRESS: meter}, raw_meters, tmp_path)
        try:
            sched = gw.schedulers["rs485-2"]
            m = gw.config.meters["m"]
            return await sched.with_driver(lambda d: sync_time(d, m, requester="test", now=safe))
        finally:
            await gw.stop()
            pty.close()

    result = asyncio.run(scenario())
    assert 85 <= result["drift_before_s"] <= 95, result
    assert result["synced"] is True and abs(result["drift_after_s"]) <= 2, result
    assert abs((meter.now() - dt.datetime.now(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None)).total_seconds()) < 3


def test_served_values_are_decimal() -> None:
    meter = Dlt645Meter(ADDRESS, MeterModel(seed=3, frozen=True), tariffs=12)
    values = meter.forward()
    assert len(values) == 13 and all(isinstance(v, Decimal) for v in values) and sum(values[1:]) == values[0]
