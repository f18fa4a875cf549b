"""Metrics, health and the http listener, on a real Gateway object and real sockets.

The end-to-end run (``meterlink run`` subprocess against a simulator, scraped
over HTTP) is in ``tests/integration/test_metrics_run.py``; here are the
judgements (liveness, readiness) at the edges that a live run reaches only
after minutes, and the HTTP details.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meterlink.apps.http import HttpServer
from meterlink.core.config import HttpConfig, parse_config
from meterlink.engine.gateway import Gateway
from meterlink.engine.health import HUNG_MIN, Liveness, Readiness, hung_after
from meterlink.engine.metrics import make_registry
from testkit.services import free_port
from tests.integration.test_scheduler import POINTS


def _gateway(tmp_path: Path, links: int = 1, interval: str = "10s") -> Gateway:
    raw: dict[str, Any] = {
        "gateway": {"id": "gw-x", "data_dir": str(tmp_path / "data")},
        # port 1 on loopback refuses at once: a link whose meters never answer
        "links": {f"l{i}": {"type": "tcp", "host": "127.0.0.1", "port": 1, "timeout": "200ms"} for i in range(links)},
        "meters": {f"m{i}": {"link": f"l{i}", "protocol": "modbus", "address": 1, "interval": interval,
                             "points": POINTS} for i in range(links)},
    }
    return Gateway(parse_config(raw))


def test_liveness_hung_link_needs_both_no_progress_and_an_overdue_poll(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    live = Liveness(gw)
    sched = gw.schedulers["l0"]
    ms = sched.meters["m0"]
    limit = hung_after(sched.link)
    assert limit == HUNG_MIN
    now = 1_000_000.0
    for g in ms.groups:
        g.next_due = now + 10 * limit  # a long wait for the next moment
    assert live.check(now=now, mono=0.0) == []
    assert live.check(now=now + 4 * limit, mono=4 * limit) == []  # no read for long, but none was due: fine
    problems = live.check(now=now + 12 * limit, mono=12 * limit)  # due for 2 limits, nothing moved for 12
    assert len(problems) == 1 and problems[0].startswith("link l0: no read finished for")
    sched.state.polls += 1  # a read finished: progress
    assert live.check(now=now + 12.5 * limit, mono=12.5 * limit) == []
    assert live.check(now=now + 13 * limit, mono=13 * limit) == []  # overdue, but a read finished lately
    assert live.check(now=now + 14 * limit, mono=14 * limit) != []


def test_liveness_dead_poll_loop(tmp_path: Path) -> None:
    async def run() -> list[str]:
        gw = _gateway(tmp_path)

        async def crashed() -> None:
            raise RuntimeError("a bug")

        task = asyncio.create_task(crashed(), name="meterlink[l0].poll")
        await asyncio.sleep(0)
        gw._tasks.append(task)  # how Gateway.start keeps its tasks; see the report on a public accessor
        problems = Liveness(gw).check()
        task.exception()
        return problems

    assert asyncio.run(run()) == ["link l0: poll loop ended"]


def test_readiness_per_link_within_three_intervals(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, links=2, interval="10s")
    r = Readiness(gw)
    now = 2_000_000_000.0
    assert r.links(now) == ["link l0: no successful read yet", "link l1: no successful read yet"]
    gw.schedulers["l0"].meters["m0"].last_ok = datetime.fromtimestamp(now - 29, UTC)
    gw.schedulers["l1"].meters["m1"].last_ok = datetime.fromtimestamp(now - 31, UTC)
    assert r.links(now) == ["link l1: no successful read within 3 intervals (last 31 s ago)"]


def test_metric_names_follow_prometheus_conventions(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    gw.journal.open()
    try:
        text = generate_latest(make_registry(gw)).decode()
    finally:
        gw.journal.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {n: f for n, f in families.items() if n.startswith("meterlink_")}
    assert {"meterlink_build_info", "meterlink_meter_reads", "meterlink_link_read_duration_seconds",
            "meterlink_link_busy_seconds", "meterlink_meter_last_success_timestamp_seconds",
            "meterlink_meter_late_polls", "meterlink_journal_rows", "meterlink_journal_bytes",
            "meterlink_journal_dropped_rows"} <= set(ours)
    assert "process_resident_memory_bytes" in families
    for name, fam in ours.items():
        assert re.fullmatch(r"meterlink_[a-z][a-z0-9_]*", name), name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), name
        assert not name.endswith(("_ms", "_kb", "_percent")), f"{name}: use base units"
        for s in fam.samples:
            assert s.labels.get("gateway") == "gw-x", s
    reads = {(s.labels["meter"], s.labels["result"]): s.value for s in families["meterlink_meter_reads"].samples}
    assert reads == {("m0", "ok"): 0, ("m0", "failed"): 0}
    assert "meterlink_meter_online" not in families or not families["meterlink_meter_online"].samples


def _http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_http_endpoints_on_a_running_gateway(tmp_path: Path) -> None:
    """A gateway whose only link refuses: alive (/healthz 200) but not ready (/readyz 503), over a real socket."""
    port = free_port()

    async def run() -> dict[str, tuple[int, dict[str, str], bytes]]:
        gw = _gateway(tmp_path)
        await gw.start()
        server = HttpServer(gw, HttpConfig(host="127.0.0.1", port=port))
        await server.start()
        try:
            await asyncio.sleep(0.5)  # the first poll fails
            out = {}
            for name, req in {
                "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "healthz": b"GET /healthz HTTP/1.1\r\n\r\n",
                "readyz": b"GET /readyz?verbose=1 HTTP/1.0\r\n\r\n",
                "status": b"GET /status HTTP/1.1\r\n\r\n",
                "head": b"HEAD /healthz HTTP/1.1\r\n\r\n",
                "missing": b"GET /nope HTTP/1.1\r\n\r\n",
                "post": b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                "garbage": b"\x16\x03\x01 hello\r\n\r\n",
            }.items():
                out[name] = await asyncio.to_thread(_http, port, req)
            return out
        finally:
            await server.close()
            await gw.stop()

    got = asyncio.run(run())
    status, headers, body = got["metrics"]
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'meterlink_meter_reads_total{gateway="gw-x",link="l0",meter="m0",result="failed"} 1.0' in body.decode()
    assert got["healthz"][0] == 200 and got["healthz"][2] == b"ok\n"
    assert got["readyz"][0] == 503 and b"link l0: no successful read yet" in got["readyz"][2]
    doc = json.loads(got["status"][2])
    assert doc["meters"]["m0"]["online"] is False and doc["links"]["l0"]["meters"] == ["m0"]
    assert got["head"][0] == 200 and got["head"][2] == b"" and got["head"][1]["Content-Length"] == "3"
    assert got["missing"][0] == 404
    assert got["post"][0] == 405 and got["post"][1]["Allow"] == "GET, HEAD"
    assert got["garbage"][0] == 400


def test_http_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    from meterlink.core.errors import MeterlinkError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def run() -> None:
            gw = _gateway(tmp_path)
            await HttpServer(gw, HttpConfig(host="127.0.0.1", port=port)).start()

        with pytest.raises(MeterlinkError, match=rf"^http: cannot listen on 127.0.0.1:{port}: "):
            asyncio.run(run())
