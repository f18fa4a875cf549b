"""``sinks.influxdb.api: v1``: simulated meters -> gateway -> a real InfluxDB 1.6 (``/write``, no v2 API).

InfluxDB 1.6 answers only the 1.x HTTP API, so these tests fail if the sink falls back
to ``/api/v2/write``.  Points are read back with InfluxQL and compared with the journal,
which holds exactly what the simulator served.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.config import parse_config
from meterlink.core.reading import parse_ts
from meterlink.engine.gateway import Gateway
from testkit.simproc import await_until
from tests.integration.test_read_cli import served
from tests.integration.test_scheduler import POINTS
from tests.integration.test_sinks import _journal_rows, _raw, run

UNITS = {p["obis"]: p["unit"] for p in POINTS}


def _v1(influx: Any, **extra: Any) -> dict[str, Any]:
    return {"url": influx.url, "api": "v1", "database": influx.database, **extra}


def _expected(rows: list[dict[str, Any]], upto: int | None = None) -> dict[tuple[str, str, int], Decimal]:
    """(meter, obis, ms) -> value of every journaled reading (of the first ``upto`` data messages)."""
    out = {}
    for doc in rows[:upto]:
        for r in doc["readings"]:
            if r["value"] is not None:
                out[(r["meter"], r["obis"], round(parse_ts(r["ts"]).timestamp() * 1000))] = r["value"]
    return out


def _stored(influx: Any, gw_id: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(p["meter"], p["obis"], p["time"]): p for p in influx.points(where=f"\"gateway\" = '{gw_id}'")}


def test_v1_schema_measurement_tags_field(simulate, fresh_influxdb1, tmp_path: Path) -> None:
    influx = fresh_influxdb1
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0", "--freeze")
    gw_id = "gw-v1"
    raw = _raw(gw_id, sim.port, tmp_path / "data", influx=_v1(influx))

    async def scenario() -> int:
        gw = Gateway(parse_config(raw))
        await gw.start()
        assert await await_until(lambda: gw.journal.counts()["last_id"] >= 4, 15)
        assert await await_until(lambda: gw.journal.cursor("influxdb") >= 4, 15), gw.status()["sinks"]
        delivered = gw.journal.cursor("influxdb")
        await gw.stop()
        return delivered

    delivered = run(scenario())
    expected = _expected(_journal_rows(tmp_path / "data", gw_id), delivered)
    stored = _stored(influx, gw_id)
    assert expected and set(expected) <= set(stored), f"{len(set(expected) - set(stored))} readings missing"
    for key, value in expected.items():
        meter, obis, _ = key
        point = stored[key]
        assert point["gateway"] == gw_id and point["unit"] == UNITS[obis]
        assert Decimal(repr(point["value"])) == value == served("eastron-sdm120", int(meter[1:]))[obis], key
    # the schema itself, as CONTRACT section 7 names it
    tags = influx.query('SHOW TAG KEYS FROM "meter"', db=influx.database)["series"][0]["values"]
    assert sorted(t[0] for t in tags) == ["gateway", "meter", "obis", "unit"]
    fields = influx.query('SHOW FIELD KEYS FROM "meter"', db=influx.database)["series"][0]["values"]
    assert fields == [["value", "float"]]


@pytest.mark.slow
def test_v1_outage_every_reading_arrives_after_restart(simulate, fresh_influxdb1, tmp_path: Path) -> None:
    influx = fresh_influxdb1
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    gw_id = "gw-v1-outage"
    raw = _raw(gw_id, sim.port, tmp_path / "data", influx=_v1(influx))

    async def scenario() -> tuple[int, int]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        assert await await_until(lambda: gw.journal.cursor("influxdb") >= 2, 15)
        await asyncio.to_thread(influx.stop)
        down_at = gw.journal.counts()["last_id"]
        assert await await_until(lambda: gw.journal.counts()["last_id"] >= down_at + 8, 20)
        assert gw.journal.backlog("influxdb") > 0, "readings must pile up in the journal while influxd is down"
        status = gw.status()["sinks"]["influxdb"]  # type: ignore[index]
        assert status["connected"] is False and status["last_error"]
        up_at = gw.journal.counts()["last_id"]
        await asyncio.to_thread(influx.start, influx.port)
        assert await await_until(lambda: gw.journal.backlog("influxdb") == 0, 40)
        delivered = gw.journal.cursor("influxdb")
        await gw.stop()
        return delivered, up_at

    delivered, up_at = run(scenario())
    assert delivered >= up_at, "the backlog of the outage was delivered"
    expected = _expected(_journal_rows(tmp_path / "data", gw_id), delivered)
    stored = _stored(influx, gw_id)
    missing = set(expected) - set(stored)
    assert not missing, f"{len(missing)} of {len(expected)} readings missing from InfluxDB"
    assert len(expected) >= up_at * len(POINTS)
    for key, value in expected.items():
        assert Decimal(repr(stored[key]["value"])) == value, key


def test_v1_username_and_password_file(simulate, influxdb1_factory, tmp_path: Path) -> None:
    influx = influxdb1_factory(auth=True)
    user, password = influx.admin
    (tmp_path / "influx.pw").write_text(password + "\n")
    (tmp_path / "wrong.pw").write_text("not-the-password\n")
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0", "--freeze")

    def scenario(gw_id: str, pw_file: str) -> dict[str, Any]:
        raw = _raw(gw_id, sim.port, tmp_path / gw_id, meters=(1,),
                   influx=_v1(influx, username=user, password_file=str(tmp_path / pw_file)))

        async def go() -> dict[str, Any]:
            gw = Gateway(parse_config(raw))
            await gw.start()
            ok = await await_until(lambda: gw.journal.cursor("influxdb") >= 2
                              or gw.status()["sinks"]["influxdb"]["failures"] >= 2, 15)  # type: ignore[index]
            assert ok, gw.status()["sinks"]
            status = dict(gw.status()["sinks"]["influxdb"])  # type: ignore[index]
            status["cursor"] = gw.journal.cursor("influxdb")
            await gw.stop()
            return status

        return run(go())

    good = scenario("gw-v1-auth", "influx.pw")
    assert good["cursor"] >= 2 and good["connected"] is True
    assert _stored(influx, "gw-v1-auth"), "the authenticated writes are stored"

    bad = scenario("gw-v1-badpw", "wrong.pw")
    assert bad["cursor"] == 0 and bad["connected"] is False, "a refused write must not move the cursor"
    assert "401" in bad["last_error"] and "authorization failed" in bad["last_error"]
    assert "not-the-password" not in bad["last_error"] and password not in bad["last_error"]
    assert not _stored(influx, "gw-v1-badpw")
