"""``meterlink run`` with the http listener on, against ``meterlink simulate``, scraped like Prometheus would.

One meter answers, one is silent (``--fault silent@2``) and a third link
refuses connections: the read counters must move, the silent meter's failures
must be counted, /readyz must name the dead link and only it, and
``meterlink top`` must show all of it on a wide and on a narrow terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testkit.services import free_port
from testkit.simproc import REPO, meterlink, meterlink_cmd, wait_until, write_config
from tests.integration.test_scheduler import POINTS


def run_in_pty(args: list[str], seconds: float, rows: int, cols: int) -> tuple[int, str]:
    """Run an interactive command on a real terminal of ``rows`` x ``cols`` for a while, then Ctrl-C it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env={**env, "TERM": "xterm"})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + seconds
    interrupted = False
    try:
        while True:
            if not interrupted and time.monotonic() > deadline:
                proc.send_signal(signal.SIGINT)
                interrupted = True
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed: the process ended
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if interrupted and time.monotonic() > deadline + 10:
                break
        return proc.wait(10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "gateway")))] = s.value
    return out


def _reads(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], meter: str, result: str) -> float:
    return samples[("meterlink_meter_reads_total", (("link", "t"), ("meter", meter), ("result", result)))]


def test_run_with_metrics_scraped_over_http(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0",
                   "--fault", "silent@2")
    port = free_port()
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-metrics", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "300ms"},
                  "dead": {"type": "tcp", "host": "127.0.0.1", "port": 1, "timeout": "300ms"}},
        "meters": {"good": {"link": "t", "protocol": "modbus", "address": 1, "interval": "1s", "points": POINTS},
                   "silent": {"link": "t", "protocol": "modbus", "address": 2, "interval": "1s", "points": POINTS},
                   "gone": {"link": "dead", "protocol": "modbus", "address": 1, "interval": "1s", "points": POINTS}},
        "http": {"host": "127.0.0.1", "port": port},
    })
    base = f"http://127.0.0.1:{port}"
    gw = subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: _get(base + "/healthz")[0] == 200, timeout=15), "http listener did not come up"
        assert wait_until(lambda: _reads(_samples(_get(base + "/metrics")[1]), "silent", "failed") >= 1, timeout=10)
        first = _samples(_get(base + "/metrics")[1])
        assert wait_until(lambda: _reads(_samples(_get(base + "/metrics")[1]), "good", "ok")
                          >= _reads(first, "good", "ok") + 2, timeout=10), "read counter did not move"
        status, text = _get(base + "/metrics")
        assert status == 200
        second = _samples(text)
        assert _reads(second, "good", "failed") == 0
        assert _reads(second, "silent", "ok") == 0 and _reads(second, "silent", "failed") >= 1
        online = {m: second[("meterlink_meter_online", (("link", lk), ("meter", m)))]
                  for m, lk in (("good", "t"), ("silent", "t"), ("gone", "dead"))}
        assert online == {"good": 1, "silent": 0, "gone": 0}
        assert second[("meterlink_link_timeouts_total", (("link", "t"),))] >= 2  # 300 ms x 2 tries per failed read
        assert second[("meterlink_link_read_duration_seconds_count", (("link", "t"),))] >= 3
        busy = second[("meterlink_link_busy_seconds_total", (("link", "t"),))]
        assert busy == second[("meterlink_link_read_duration_seconds_sum", (("link", "t"),))] and busy >= 0.6
        last_ok = second[("meterlink_meter_last_success_timestamp_seconds", (("link", "t"), ("meter", "good")))]
        assert abs(last_ok - time.time()) < 5
        assert ("meterlink_meter_last_success_timestamp_seconds", (("link", "t"), ("meter", "silent"))) not in second
        # a read is counted when it completes, its row when the group commit after it is on disk: wait for that
        assert wait_until(lambda: _samples(_get(base + "/metrics")[1])[("meterlink_journal_rows", ())] >= 3, timeout=5)
        assert second[("meterlink_journal_dropped_rows_total", ())] == 0
        assert ("meterlink_build_info", (("python", sys.version.split()[0]), ("version", "0.1.0"))) in second
        assert ("meterlink_link_poll_lateness_seconds", (("link", "t"), ("quantile", "0.99"))) in second

        assert _get(base + "/healthz") == (200, "ok\n")
        status, body = _get(base + "/readyz")
        assert status == 503 and body == "link dead: no successful read yet\n", body
        doc = json.loads(_get(base + "/status")[1])
        assert doc["gateway"] == "gw-metrics" and doc["meters"]["silent"]["online"] is False

        wide = meterlink("top", "-c", str(cfg), "--once", env={"COLUMNS": "130"})
        assert wide.returncode == 0, wide.stderr
        for text_ in ("gateway gw-metrics", "good", "silent", "gone", "online", "offline", "no reply within"):
            assert text_ in wide.stdout, wide.stdout
        assert wide.stdout.index("silent") < wide.stdout.index("good"), "meters with problems come first"
        narrow = meterlink("top", "-c", str(cfg), "--once", env={"COLUMNS": "40"})
        assert narrow.returncode == 0, narrow.stderr
        assert all(len(line) <= 40 for line in narrow.stdout.splitlines()), narrow.stdout
        assert "silent" in narrow.stdout and "offline" in narrow.stdout
        rc_live, screen = run_in_pty([*meterlink_cmd(), "top", "-c", str(cfg), "--interval", "0.5"],
                                     seconds=2.5, rows=20, cols=72)
        assert rc_live == 0 and "gateway gw-metrics" in screen and "Traceback" not in screen, screen
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            rc = gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
            rc = gw.wait()
    err = gw.stderr.read() if gw.stderr else ""
    assert rc == 0 and "Traceback" not in err, err
    down = meterlink("top", "-c", str(cfg), "--once")
    assert down.returncode == 1 and "gateway not reachable at" in down.stderr, down.stderr


def test_top_needs_an_http_section(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 502}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
    })
    r = meterlink("top", "-c", str(cfg), "--once")
    assert r.returncode == 2 and "no http section" in r.stderr and "Traceback" not in r.stderr
