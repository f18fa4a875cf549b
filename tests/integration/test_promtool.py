"""``promtool check metrics`` on a live ``/metrics`` of ``meterlink run`` reports nothing.

promtool is Prometheus' own linter (Debian's ``prometheus`` package; only the CLI is
used, no server runs).  It catches what a scrape would silently mangle or a query
would get wrong: a gauge with a ``quantile`` label, counters without ``_total``,
missing HELP, bad units in names.  The scrape happens after real polls of answering
and silent simulated meters, so every family the gateway exports has samples.
"""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path

from testkit.services import _ensure_own_binary, free_port
from testkit.simproc import REPO, meterlink_cmd, wait_until, write_config
from tests.integration.test_scheduler import POINTS


def _metrics(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_promtool_check_metrics_finds_nothing(simulate, tmp_path: Path) -> None:
    promtool = _ensure_own_binary("promtool")
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0",
                   "--fault", "silent@2")
    http_port = free_port()
    cfg = write_config(tmp_path / "gateway.yaml", {
        "gateway": {"id": "gw-promtool", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "200ms"}},
        "meters": {f"m{u}": {"link": "t", "protocol": "modbus", "address": u, "interval": "1s", "points": POINTS}
                   for u in (1, 2)},
        "http": {"host": "127.0.0.1", "port": http_port},
    })
    proc = subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{http_port}/metrics"
    try:
        # both meters polled a few times: the answering one's reads and the silent one's failures
        assert wait_until(lambda: 'meter="m1"' in _metrics(url) and 'meter="m2"' in _metrics(url), timeout=20)
        assert wait_until(lambda: "lateness" in _metrics(url), timeout=10)
        text = _metrics(url)
        assert text
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert check.stdout + check.stderr == "", check.stdout + check.stderr
    assert check.returncode == 0
    assert proc.returncode == 0, out
