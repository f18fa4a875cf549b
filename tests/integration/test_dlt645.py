"""DL/T 645-2007 over a real pty: a three-meter bus, blocks and fallback, follow-up frames, frozen-data
backfill, time sync and scan, against the simulated meters."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.engine.gateway import Gateway
from meterlink.engine.timesync import TimeSyncRefused, guard, sync_time
from meterlink.simulators.dlt645 import Dlt645Handler, Dlt645Meter
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import PtyServer
from testkit.simproc import meterlink, write_config

ADDRESSES = ["123456789012", "000000000002", "000000000003"]
PROFILE = "dlt645-generic-3phase"


def served(address: str, index: int, seed: int = 1) -> dict[str, Decimal]:
    """What ``meterlink simulate dlt645 --freeze`` serves for the i-th address (a deterministic model)."""
    meter = Dlt645Meter(address, MeterModel(seed=seed + index, frozen=True))
    out = {}
    for p in profile_points(PROFILE):
        if p.di != "04000102":
            value = meter.value_of(p.di or "")
            assert isinstance(value, Decimal)
            out[p.obis] = value
    return out


def _bus_config(tmp_path: Path, port: str, addresses: list[str] = ADDRESSES, **meter: Any) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-645", "data_dir": str(tmp_path / "data")},
        "links": {"rs485-2": {"type": "serial", "port": port, "baudrate": 2400, "parity": "N", "timeout": "500ms"}},
        "meters": {f"m-{a}": {"link": "rs485-2", "protocol": "dlt645", "address": a, "profile": PROFILE, **meter}
                   for a in addresses},
    }


def test_three_meters_on_one_bus_exact_values(simulate, tmp_path: Path) -> None:
    args = [x for a in ADDRESSES for x in ("--address", a)]
    sim = simulate("dlt645", *args, "--pty", "--freeze")
    cfg = write_config(tmp_path / "g.yaml", _bus_config(tmp_path, sim.where))
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    readings = [json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines()]
    for i, address in enumerate(ADDRESSES):
        mine = {x["obis"]: x for x in readings if x["meter"] == f"m-{address}"}
        expected = served(address, i)
        for obis, value in expected.items():
            assert mine[obis]["quality"] == "good", mine[obis]
            assert mine[obis]["value"] == value, f"{address} {obis}: {mine[obis]['value']} != {value}"
        tariffs = sum(mine[f"1.0.1.8.{t}.255"]["value"] for t in (1, 2, 3, 4))
        assert tariffs == mine["1.0.1.8.0.255"]["value"], "tariffs 1-4 sum exactly to the total"
        clock = mine["0.0.1.0.0.255"]
        assert clock["unit"] == "s" and clock["meter_ts"] is not None and abs(clock["value"]) < 60


async def _in_process(meters: dict[str, Dlt645Meter], raw_meters: dict[str, Any], tmp_path: Path,
                      **handler: Any) -> tuple[Gateway, Dlt645Handler, PtyServer]:
    holder: dict[str, Dlt645Handler] = {}

    def factory() -> Dlt645Handler:
        holder["h"] = Dlt645Handler(meters, **handler)
        return holder["h"]

    pty = PtyServer(factory)
    pty.start()
    raw = _bus_config(tmp_path, pty.path, addresses=[])
    raw["meters"] = raw_meters
    gw = Gateway(parse_config(raw))
    await gw.start()
    return gw, holder["h"], pty


def test_block_refused_is_remembered_and_follow_up_frames_are_joined(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    meters = {address: Dlt645Meter(address, MeterModel(seed=2, frozen=True), blocks=False)}
    expected = served(address, 1)

    async def scenario() -> tuple[list[int], list[Any]]:
        gw, handler, pty = await _in_process(
            meters, {"m": {"link": "rs485-2", "protocol": "dlt645", "address": address, "profile": PROFILE,
                           "interval": "1h"}}, tmp_path, max_payload=20)
        try:
            ms = gw.meter_state("m")
            while ms is None or ms.online is None:  # the start-up read of every point
                await asyncio.sleep(0.05)
            counts = [handler.requests]
            before = handler.requests
            readings = await gw.read_now("m")
            counts.append(handler.requests - before)
            return counts, readings
        finally:
            await gw.stop()
            pty.close()

    counts, readings = asyncio.run(scenario())
    singles = len(profile_points(PROFILE)) + 1  # the clock takes two identifiers
    assert counts[1] == singles, f"second read must not try refused blocks again: {counts}"
    assert counts[0] > counts[1], "the first read tried the blocks"
    for r in readings:
        if r.obis in expected:
            assert r.value == expected[r.obis], r

    # a meter that knows blocks: far fewer transactions, values the same
    meters2 = {address: Dlt645Meter(address, MeterModel(seed=2, frozen=True), blocks=True)}

    async def with_blocks() -> int:
        gw, handler, pty = await _in_process(
            meters2, {"m": {"link": "rs485-2", "protocol": "dlt645", "address": address, "profile": PROFILE,
                            "interval": "1h"}}, tmp_path / "b", max_payload=20)
        try:
            await asyncio.sleep(0.5)
            before = handler.requests
            await gw.read_now("m")
            return handler.requests - before
        finally:
            await gw.stop()
            pty.close()

    assert asyncio.run(with_blocks()) < singles // 2


def test_daily_frozen_backfill_after_three_day_gap(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    meter = Dlt645Meter(address, MeterModel(seed=2, frozen=True))
    meters = {address: meter}
    raw_meters = {"m": {"link": "rs485-2", "protocol": "dlt645", "address": address, "daily_frozen_days": 5,
                        "interval": "1h", "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}}

    async def scenario() -> list[dt.datetime]:
        gw, _, pty = await _in_process(meters, raw_meters, tmp_path)
        try:
            await asyncio.sleep(0.5)
            await gw.read_now("m")  # first collection: the 5 days the meter is configured to keep
            await gw.read_now("m")  # nothing new: nothing journaled twice
            meter.clock_offset += 3 * 86400  # three days without the gateway
            await gw.read_now("m")
            await gw.read_now("m")
            await gw.journal.stop()
            gw.journal.start()
            stamps = []
            for b in gw.journal.iter_messages("m"):
                for r in b.as_dict()["readings"]:  # type: ignore[union-attr]
                    if r["obis"] == "1.0.1.8.0.126" and r["meter_ts"]:  # frozen: F = 126, not the live 255
                        stamps.append(dt.datetime.fromisoformat(r["meter_ts"].replace("Z", "+00:00")))
            return stamps
        finally:
            await gw.stop()
            pty.close()

    stamps = asyncio.run(scenario())
    assert len(stamps) == len(set(stamps)) == 8, stamps  # 5 days, then the 3 missed ones, each once
    assert stamps == sorted(stamps), "oldest first"
    days = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(d == 86400 for d in days), "one freeze per day, no day missing"


def test_time_sync_guard() -> None:
    assert guard(dt.datetime(2026, 11, 27, 23, 57)) and "midnight" in (guard(dt.datetime(2026, 11, 27, 23, 57)) or "")
    assert guard(dt.datetime(2026, 11, 27, 0, 3))
    assert guard(dt.datetime(2026, 11, 27, 14, 58)) and "full hour" in (guard(dt.datetime(2026, 11, 27, 14, 58)) or "")
    assert guard(dt.datetime(2026, 11, 27, 14, 5)) is None
    assert guard(dt.datetime(2026, 11, 27, 14, 54)) is None


def test_time_sync_reports_drift_before_and_after(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    meter = Dlt645Meter(address, MeterModel(seed=2), clock_offset=90.0)
    raw_meters = {"m": {"link": "rs485-2", "protocol": "dlt645", "address": address, "interval": "1h",
                        "time_sync": {"enabled": True, "tolerance": "30s", "broadcast": True},
                        "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]},
                  "off": {"link": "rs485-2", "protocol": "dlt645", "address": "000000000009", "interval": "1h",
                          "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}}
    safe = dt.datetime.now().replace(minute=30)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        gw, _, pty = await _in_process({address: meter}, raw_meters, tmp_path)
        try:
            await asyncio.sleep(0.3)
            sched = gw.schedulers["rs485-2"]
            m = gw.config.meters["m"]
            first = await sched.with_driver(lambda d: sync_time(d, m, requester="test", now=safe))
            second = await sched.with_driver(lambda d: sync_time(d, m, requester="test", now=safe))
            try:
                await sched.with_driver(lambda d: sync_time(d, gw.config.meters["off"], requester="test", now=safe))
                refused = ""
            except TimeSyncRefused as exc:
                refused = str(exc)
            return first, second, refused
        finally:
            await gw.stop()
            pty.close()

    first, second, refused = asyncio.run(scenario())
    assert 88 <= first["drift_before_s"] <= 92 and first["synced"] is True and abs(first["drift_after_s"]) <= 2
    assert first["method"] == "broadcast 08H"
    assert second["synced"] is False and second["reason"] == "clock within tolerance"
    assert "time sync is off for meter off" in refused


def test_sync_time_cli_runs_or_refuses_plainly(simulate, tmp_path: Path) -> None:
    sim = simulate("dlt645", "--address", ADDRESSES[0], "--pty", "--clock-drift", "45s")
    raw = _bus_config(tmp_path, sim.where, addresses=[ADDRESSES[0]], time_sync={"enabled": True})
    cfg = write_config(tmp_path / "g.yaml", raw)
    r = meterlink("sync-time", "-c", str(cfg), "--meter", f"m-{ADDRESSES[0]}")
    if guard(dt.datetime.now()):
        assert r.returncode == 1 and "refused at" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["synced"] is True and 40 <= result["drift_before_s"] <= 50


def test_scan_single_meter_and_multidrop_range(simulate, tmp_path: Path) -> None:
    one = simulate("dlt645", "--address", "123456789012", "--pty")
    cfg = write_config(tmp_path / "one.yaml", _bus_config(tmp_path, one.where, addresses=[]) | {"meters": {}})
    # a config with a link and no meters is valid input for scan
    r = meterlink("scan", "-c", str(cfg), "--link", "rs485-2", "--protocol", "dlt645")
    assert r.returncode == 0, r.stderr
    assert 'address: "123456789012"' in r.stdout and "protocol: dlt645" in r.stdout
    bus = simulate("dlt645", "--address", "000000000002", "--address", "000000000005", "--pty")
    cfg = write_config(tmp_path / "bus.yaml", _bus_config(tmp_path, bus.where, addresses=[]) | {"meters": {}})
    r = meterlink("scan", "-c", str(cfg), "--link", "rs485-2", "--protocol", "dlt645", "--range",
                  "000000000001-000000000006")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("protocol: dlt645") == 2
    assert '"000000000002"' in r.stdout and '"000000000005"' in r.stdout


@pytest.mark.parametrize(("fault", "message"), [
    ("silent", "no reply within 0.5 s x 2 tries"),
    ("crc", "checksum"),
    ("exception", "no valid value"),
])
def test_faulty_meter_on_the_bus(simulate, tmp_path: Path, fault: str, message: str) -> None:
    sim = simulate("dlt645", "--address", ADDRESSES[0], "--address", ADDRESSES[1], "--pty", "--freeze",
                   "--fault", f"{fault}@{ADDRESSES[1]}")
    cfg = write_config(tmp_path / "g.yaml", _bus_config(tmp_path, sim.where, addresses=ADDRESSES[:2]))
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"m-{ADDRESSES[1]}: ") and message in lines[0], r.stderr
    good = [json.loads(x, parse_float=Decimal) for x in r.stdout.splitlines()]
    assert any(x["meter"] == f"m-{ADDRESSES[0]}" and x["quality"] == "good" for x in good)
