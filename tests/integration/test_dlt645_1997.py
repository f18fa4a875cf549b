"""DL/T 645-1997 over a real pty: ``meterlink read`` against ``meterlink simulate dlt645 --standard 1997``,
a 2007 and a 1997 meter on one bus, follow-up frames and refused blocks, and the 08H time sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.core.registry import create_driver
from meterlink.engine.timesync import sync_time
from meterlink.simulators.dlt645 import Dlt645Handler, Dlt645Meter
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import PtyServer
from testkit.simproc import meterlink, write_config

OLD, NEW = "000000000005", "000000000001"
PROFILES = {"1997": "dlt645-1997-generic", "2007": "dlt645-generic-3phase"}
CLOCK = "0.0.1.0.0.255"


def served(address: str, index: int, standard: str) -> dict[str, Decimal]:
    """What ``meterlink simulate dlt645 --freeze`` serves for the i-th address, edition by edition."""
    meter = Dlt645Meter(address, MeterModel(seed=1 + index, frozen=True), standard=standard)
    out = {}
    for p in profile_points(PROFILES[standard]):
        if p.obis != CLOCK:
            value = meter.value_of_1997(p.di or "") if standard == "1997" else meter.value_of(p.di or "")
            assert isinstance(value, Decimal)
            out[p.obis] = value
    return out


def _config(tmp_path: Path, port: str, meters: dict[str, str], **link: Any) -> Path:
    raw = {
        "gateway": {"id": "gw-645-1997", "data_dir": str(tmp_path / "data")},
        "links": {"rs485-9": {"type": "serial", "port": port, "timeout": "500ms", **link}},
        "meters": {f"m-{a}": {"link": "rs485-9", "protocol": "dlt645", "address": a, "profile": PROFILES[std],
                              **({"standard": "1997"} if std == "1997" else {})}
                   for a, std in meters.items()},
    }
    return write_config(tmp_path / "g.yaml", raw)


def _read(cfg: Path) -> list[dict[str, Any]]:
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines()]


def _assert_exact(readings: list[dict[str, Any]], address: str, index: int, standard: str) -> None:
    mine = {x["obis"]: x for x in readings if x["meter"] == f"m-{address}"}
    expected = served(address, index, standard)
    assert set(expected) | {CLOCK} == set(mine)
    for obis, value in expected.items():
        assert mine[obis]["quality"] == "good", mine[obis]
        assert mine[obis]["value"] == value, f"{address} {obis}: {mine[obis]['value']} != {value}"
    tariffs = sum(mine[f"1.0.1.8.{t}.255"]["value"] for t in (1, 2, 3, 4))
    assert tariffs == mine["1.0.1.8.0.255"]["value"], "tariffs 1-4 sum exactly to the total"
    clock = mine[CLOCK]
    assert clock["quality"] == "good" and clock["unit"] == "s" and clock["meter_ts"] is not None
    assert abs(clock["value"]) < 60


def test_1997_meter_every_value_exact(simulate, tmp_path: Path) -> None:
    sim = simulate("dlt645", "--address", OLD, "--standard", "1997", "--pty", "--freeze")
    cfg = _config(tmp_path, sim.where, {OLD: "1997"})  # no baudrate: the 1997 default, 1200 8E1
    assert parse_config(_yaml(cfg)).links["rs485-9"].baudrate == 1200
    _assert_exact(_read(cfg), OLD, 0, "1997")


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def test_2007_and_1997_meters_on_one_bus(simulate, tmp_path: Path) -> None:
    sim = simulate("dlt645", "--address", NEW, "--address", OLD, "--standard", f"1997@{OLD}", "--pty", "--freeze")
    cfg = _config(tmp_path, sim.where, {NEW: "2007", OLD: "1997"}, baudrate=2400, parity="E")
    readings = _read(cfg)
    _assert_exact(readings, NEW, 0, "2007")
    _assert_exact(readings, OLD, 1, "1997")


@pytest.mark.parametrize("quirk", [["--max-payload", "16"], ["--no-blocks"]], ids=["follow-up-frames", "no-blocks"])
def test_1997_follow_up_frames_and_refused_blocks(simulate, tmp_path: Path, quirk: list[str]) -> None:
    sim = simulate("dlt645", "--address", OLD, "--standard", "1997", "--pty", "--freeze", *quirk)
    _assert_exact(_read(_config(tmp_path, sim.where, {OLD: "1997"})), OLD, 0, "1997")


def test_1997_time_sync_by_broadcast(tmp_path: Path) -> None:
    meter = Dlt645Meter(OLD, MeterModel(seed=2), clock_offset=90.0, standard="1997")
    safe = dt.datetime.now().replace(minute=30)
    raw = {
        "gateway": {"id": "gw-645-1997", "data_dir": str(tmp_path / "data")},
        "links": {"rs485-9": {"type": "serial", "port": "", "baudrate": 1200, "timeout": "500ms"}},
        "meters": {"m": {"link": "rs485-9", "protocol": "dlt645", "standard": "1997", "address": OLD,
                         "interval": "1h", "time_sync": {"enabled": True, "tolerance": "30s", "broadcast": True},
                         "points": [{"obis": "1.0.1.8.0.255", "di": "9010"}]}},
    }

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        # a fresh driver that has read nothing yet, as ``meterlink sync-time`` uses: sync_time tells it the edition
        pty = PtyServer(lambda: Dlt645Handler({OLD: meter}))
        pty.start()
        raw["links"]["rs485-9"]["port"] = pty.path
        cfg = parse_config(raw)
        driver = create_driver(cfg.links["rs485-9"])
        await driver.open()
        try:
            first = await sync_time(driver, cfg.meters["m"], requester="test", now=safe)
            second = await sync_time(driver, cfg.meters["m"], requester="test", now=safe)
            return first, second
        finally:
            await driver.close()
            pty.close()

    first, second = asyncio.run(scenario())
    assert 88 <= first["drift_before_s"] <= 92, first
    assert first["synced"] is True and abs(first["drift_after_s"]) <= 2 and first["method"] == "broadcast 08H"
    assert second["synced"] is False and second["reason"] == "clock within tolerance"


def test_simulate_refuses_an_unknown_edition_plainly(simulate) -> None:
    with pytest.raises(RuntimeError, match="--standard '1998': the edition is 2007 or 1997"):
        simulate("dlt645", "--standard", "1998", "--pty")
    with pytest.raises(RuntimeError, match="is not one of the --address meters"):
        simulate("dlt645", "--address", OLD, "--standard", "1997@000000000009", "--pty")
