"""The Grafana dashboard (config/grafana/meterlink.json) queries what Meterlink really writes.

Why against a real VictoriaMetrics: a dashboard whose queries name a series
that nobody writes shows "No data" and nobody notices until the day it is
needed.  Here a gateway runs against a simulated SDM630 and writes through its
real InfluxDB sink into VictoriaMetrics (``meter_value{gateway, meter, obis,
unit}``); two scrapes of its /metrics are imported next to that data, as a
Prometheus-compatible scraper would store them.  Then every query of every
panel runs as Grafana would run it (range or instant) and must return data,
and every series name a query mentions (also in ``or`` branches that the SDM630
does not exercise) must exist.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from testkit.services import free_port
from testkit.simproc import REPO, meterlink_cmd, wait_until, write_config

DASHBOARD = REPO / "config" / "grafana" / "meterlink.json"
METER_DS, METRICS_DS = "${meters}", "${metrics}"
NAME_RE = re.compile(r"\b(meter_value|meterlink_[a-z0-9_]+)\b")


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _targets(dash: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"meters", "metrics", "gateway", "meter"} <= set(variables)
    assert variables["meters"]["type"] == variables["metrics"]["type"] == "datasource"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
    targets = _targets(dash)
    assert len(targets) >= 15
    for panel, t in targets:
        ds = t["datasource"]["uid"]
        names = set(NAME_RE.findall(t["expr"]))
        assert names, t["expr"]
        if ds == METER_DS:  # meter data: only what the InfluxDB sink writes
            assert names == {"meter_value"}, (panel["title"], names)
        else:
            assert ds == METRICS_DS and all(n.startswith("meterlink_") for n in names), panel["title"]
        for var in re.findall(r"\$(\w+)", t["expr"]):
            assert var in variables or var.startswith("__"), f"{panel['title']}: ${var} is not a dashboard variable"
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for topic in ("per meter", "per gateway", "energy", "voltage", "link utilization", "backlog", "mqtt"):
        assert topic in titles, topic


def _substitute(expr: str, gateway: str) -> str:
    return (expr.replace("$gateway", gateway).replace("$meter", ".*").replace("$__rate_interval", "1m")
            .replace("$__interval", "1m").replace("$__range", "1h"))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_dashboard_queries_return_data_from_what_meterlink_writes(simulate, victoria_metrics, mosquitto,
                                                                  tmp_path: Path) -> None:
    gw_id = f"gw-dash-{int(time.time() * 1000) % 10**8}"
    sim = simulate("modbus", "--profile", "eastron-sdm630", "--unit", "1", "--tcp", "0")
    fast = [{"obis": o, "interval": "1s"} for o in ("1.0.16.7.0.255", "1.0.36.7.0.255", "1.0.32.7.0.255",
                                                     "1.0.52.7.0.255", "1.0.72.7.0.255", "1.0.1.8.0.255")]
    http = free_port()
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": gw_id, "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"}},
        "meters": {"sdm": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630",
                           "points": fast}},
        "sinks": {"influxdb": {"url": victoria_metrics.url, "bucket": "meters"},
                  "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "prefix": f"dash-{gw_id}"}},
        "http": {"host": "127.0.0.1", "port": http},
    })
    gw = subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        energy = f'meter_value{{gateway="{gw_id}", obis="1.0.1.8.0.255"}}'
        assert victoria_metrics.export(energy, min_points=3, timeout=20), "no meter data reached VictoriaMetrics"
        for _ in range(2):  # two scrapes, as Prometheus would store them, so rate() and increase() have two points
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as resp:
                scrape = resp.read()
            req = urllib.request.Request(victoria_metrics.url + "/api/v1/import/prometheus", data=scrape,
                                         method="POST")
            urllib.request.urlopen(req, timeout=10).close()
            time.sleep(1.5)
        victoria_metrics.settle()
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
    assert gw.returncode == 0, gw.stderr.read() if gw.stderr else ""

    names = set(_get(victoria_metrics.url + "/api/v1/label/__name__/values")["data"])
    now = time.time()
    empty = []
    for panel, t in _targets(_dashboard()):
        for name in NAME_RE.findall(t["expr"]):
            assert name in names, f"{panel['title']}: {name} is not a series anyone writes"
        expr = _substitute(t["expr"], gw_id)
        if t.get("instant"):
            q = {"query": expr, "time": f"{now:.3f}"}
            path = "/api/v1/query"
        else:
            q = {"query": expr, "start": f"{now - 120:.3f}", "end": f"{now + 60:.3f}", "step": "15s"}
            path = "/api/v1/query_range"
        ok = wait_until(lambda q=q, path=path: bool(
            _get(f"{victoria_metrics.url}{path}?{urllib.parse.urlencode(q)}")["data"]["result"]), timeout=5)
        if not ok:
            empty.append(f"{panel['title']} [{t['refId']}]: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
