"""``meterlink top``'s view on terminals from roomy to tiny (the live run is in tests/integration/test_metrics_run.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from meterlink.apps.top import Rates, render

NOW = 2_000_000_000.0


def _status(meters: int) -> dict[str, Any]:
    ms = {}
    for i in range(meters):
        online = i % 7 != 3
        ms[f"meter-{i:03d}"] = {"online": online, "last_ok": "2033-05-18T03:33:10.000Z" if online else None,
                                "error": None if online else "no reply within 1 s x 2 tries, a long explanation",
                                "link": f"rs485-{i % 3}", "polls_ok": 90 if online else 0, "polls_failed": 10,
                                "late_polls": 1, "missed_polls": 0, "latency_s": 0.0421, "interval_s": 10.0}
    links = {f"rs485-{k}": {"utilization": 0.5, "polls": 1000, "errors": 3, "transactions": 2000, "timeouts": 5,
                            "last_error": "no reply within 1 s x 2 tries", "busy_s": 100.0} for k in range(3)}
    return {"gateway": "gw-01", "version": "0.1.0", "uptime_s": 7200.0, "links": links, "meters": ms,
            "sinks": {"mqtt": {"connected": True, "backlog": 12, "delivered_readings": 5000, "failures": 0,
                               "last_error": None},
                      "influxdb": {"connected": False, "backlog": 40000, "delivered_readings": 0, "failures": 9,
                                   "last_error": "connection refused"}},
            "journal": {"rows": 50000, "readings": 600000, "last_id": 50000, "dropped": 0, "bytes": 52_428_800}}


def _lines(width: int, height: int | None, meters: int = 40) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(render(_status(meters), width, height, Rates(), now=NOW, source="http://127.0.0.1:9108/status"))
    return out.getvalue().rstrip("\n").splitlines()


@pytest.mark.parametrize("width", [30, 40, 60, 80, 120, 200])
def test_top_never_wider_than_the_terminal(width: int) -> None:
    lines = _lines(width, None)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    assert sum("meter-" in line for line in lines) == 40


@pytest.mark.parametrize(("width", "height"), [(40, 12), (80, 24), (120, 30)])
def test_top_short_terminal_keeps_problem_meters(width: int, height: int) -> None:
    lines = _lines(width, height)
    assert len(lines) <= height + 2, "\n".join(lines)  # the foot may wrap on the tiniest
    shown = [line for line in lines if "meter-" in line]
    assert shown and all("offline" in line for line in shown[:3]), "\n".join(lines)
    assert any("more meters" in line for line in lines)


def test_top_wide_terminal_shows_everything() -> None:
    text = "\n".join(_lines(160, None))
    for part in ("gateway gw-01", "journal 50,000 rows 50.0 MiB", "rs485-0", "ok %", "90%", "42 ms", "influxdb",
                 "40,000", "connection refused", "a long explanation"):
        assert part in text, part


def test_top_utilization_is_measured_between_refreshes() -> None:
    rates = Rates()
    link = {"utilization": 0.5, "busy_s": 100.0}
    assert rates.utilization("l", link, NOW) == 0.5  # first frame: the lifetime figure
    assert rates.utilization("l", {**link, "busy_s": 100.9}, NOW + 1) == pytest.approx(0.9)
