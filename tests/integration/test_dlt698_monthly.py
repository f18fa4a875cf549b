"""DL/T 698.45 monthly freeze 5006 (settlement, issue 13): the in-process gateway against a simulated meter on a
real pty collects each month once, oldest first, exact values under F = 126, beside the daily freeze."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.config import parse_config
from meterlink.core.config.problems import ConfigProblems
from meterlink.drivers.dlt698.data import scaled
from meterlink.engine.gateway import Gateway
from meterlink.simulators.dlt698 import Dlt698Bus, Dlt698Handler
from meterlink.simulators.dlt698_cli import make_meters
from meterlink.simulators.serve import PtyServer
from testkit.simproc import meter_tried

ADDRESS = "123456789012"
MARKER = "1.0.98.2.0.255"


class _Clocked:
    """True time for the simulated meter that the test moves on."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now() + self.offset


def _month_starts(newest: dt.datetime, count: int) -> list[dt.datetime]:
    """The 1st, 00:00 of ``newest``'s month and the ``count - 1`` months before, oldest first."""
    y, m = newest.year, newest.month
    out = []
    for _ in range(count):
        out.append(dt.datetime(y, m, 1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out[::-1]


def _config(tmp_path: Path, port: str, **meter: Any) -> dict[str, Any]:
    return {"gateway": {"id": "gw-698", "data_dir": str(tmp_path / "data")},
            "links": {"bus": {"type": "serial", "port": port, "baudrate": 9600, "parity": "N", "timeout": "500ms"}},
            "meters": {"m": {"link": "bus", "protocol": "dlt698", "address": ADDRESS, "interval": "1h",
                             "points": [{"oad": "00100201"}], **meter}}}


def _wall(meter_ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(meter_ts.replace("Z", "+00:00")).astimezone().replace(tzinfo=None)


def test_monthly_freezes_are_collected_once_each_oldest_first(tmp_path: Path) -> None:
    clock = _Clocked()
    (meter,) = make_meters([ADDRESS])
    handler = Dlt698Handler(Dlt698Bus([meter]), clock=clock)
    gap = dt.timedelta(days=62)  # two or three month ends without the gateway

    async def scenario() -> tuple[list[dict[str, Any]], dt.datetime, dt.datetime]:
        pty = PtyServer(lambda: handler)
        pty.start()
        gw = Gateway(parse_config(_config(tmp_path, pty.path, monthly_frozen_months=12, daily_frozen_days=3)))
        first = meter.clock(clock())
        await gw.start()
        try:
            await meter_tried(gw, "m")
            await gw.read_now("m")  # nothing new: nothing journaled twice
            clock.offset += gap
            second = meter.clock(clock())
            await gw.read_now("m")
            await gw.read_now("m")
            await gw.journal.stop()
            gw.journal.start()
            readings = [r for b in gw.journal.iter_messages("m") for r in b.as_dict()["readings"]]  # type: ignore[union-attr]
            return readings, first, second
        finally:
            await gw.stop()
            pty.close()

    readings, first, second = asyncio.run(scenario())
    before = _month_starts(first, 12)
    after = [m for m in _month_starts(second, 12) if m > before[-1]]
    assert 2 <= len(after) <= 3, after
    markers = [_wall(r["meter_ts"]) for r in readings if r["obis"] == MARKER]
    assert markers == before + after, "each month once, oldest first, the missed ones after the gap"

    monthly = [r for r in readings if r["name"].startswith("monthly_frozen_")]
    per_month = Counter(_wall(r["meter_ts"]) for r in monthly)
    assert per_month == {m: 10 for m in before + after}, per_month  # forward and reverse, total + 4 tariffs
    for r in monthly:
        when = _wall(r["meter_ts"])
        assert r["quality"] == "good" and r["unit"] == "kWh", r
        kind, _, rest = r["name"].removeprefix("monthly_frozen_").partition("_active_energy")
        tariff = int(rest.removeprefix("_t")) if rest else 0
        c = {"forward": 1, "reverse": 2}[kind]
        assert r["obis"] == f"1.0.{c}.8.{tariff}.126", r  # the frozen code, never the live 255
        want = scaled(meter.forward(when)[tariff], -2) if c == 1 else Decimal(0)
        assert Decimal(str(r["value"])) == want, f"{r['name']} of {when}: {r['value']} != {want}"
    totals = {_wall(r["meter_ts"]): Decimal(str(r["value"])) for r in monthly
              if r["name"] == "monthly_frozen_forward_active_energy"}
    tariffs: Counter[dt.datetime] = Counter()
    for r in monthly:
        if r["name"].startswith("monthly_frozen_forward_active_energy_t"):
            tariffs[_wall(r["meter_ts"])] += Decimal(str(r["value"]))  # type: ignore[assignment]
    assert all(tariffs[m] == totals[m] for m in totals), "the tariffs sum to the total, month by month"

    daily = Counter(_wall(r["meter_ts"]) for r in readings if r["name"] == "daily_frozen_forward_active_energy")
    assert daily and set(daily.values()) == {1}, "the daily freeze beside it is still journaled once per day"


@pytest.mark.parametrize(("months", "message"), [(13, "less than or equal to 12"), (-1, "greater than or equal to 0")])
def test_monthly_frozen_months_out_of_range_is_refused(tmp_path: Path, months: int, message: str) -> None:
    """A meter holds 12 monthly freezes: more is refused with the key to fix, not silently cut."""
    with pytest.raises(ConfigProblems) as caught:
        parse_config(_config(tmp_path, "/dev/null", monthly_frozen_months=months))
    assert str(caught.value).startswith("meters.m.monthly_frozen_months: must be " + message), caught.value


def test_months_enabled_on_a_journal_that_holds_daily_freezes(tmp_path: Path) -> None:
    """Monthly settlement switched on where the daily freeze already ran: every month is still collected, though
    the journal's newest F = 126 value (the daily freeze of today, 00:00) is newer than every month's freeze."""
    (meter,) = make_meters([ADDRESS])
    handler = Dlt698Handler(Dlt698Bus([meter]))

    async def run(**keys: Any) -> list[dict[str, Any]]:
        pty = PtyServer(lambda: handler)
        pty.start()
        gw = Gateway(parse_config(_config(tmp_path, pty.path, **keys)))
        await gw.start()
        try:
            await meter_tried(gw, "m")
            await gw.journal.stop()
            gw.journal.start()
            return [r for b in gw.journal.iter_messages("m") for r in b.as_dict()["readings"]]  # type: ignore[union-attr]
        finally:
            await gw.stop()
            pty.close()

    asyncio.run(run(daily_frozen_days=3))
    now = meter.clock(dt.datetime.now())
    readings = asyncio.run(run(daily_frozen_days=3, monthly_frozen_months=4))
    markers = [_wall(r["meter_ts"]) for r in readings if r["obis"] == MARKER]
    assert markers == _month_starts(now, 4), markers
    totals = {_wall(r["meter_ts"]): Decimal(str(r["value"])) for r in readings
              if r["name"] == "monthly_frozen_forward_active_energy"}
    assert totals == {m: scaled(meter.forward(m)[0], -2) for m in markers}
