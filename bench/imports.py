"""What each dependency costs in memory and start-up time, and which of them ``meterlink run`` loads.

Why: the peer load's goal is <= 40 MB peak RSS, and most of a small gateway's
RSS is code and data of the modules it imported, not readings.  Each module
is imported in a fresh interpreter of the project's venv, alone:

* RSS: ``VmRSS`` after ``import X`` minus ``VmRSS`` of an interpreter that
  imported nothing (both read from ``/proc/self/status``), so shared
  dependencies (``typing``, ``email``, ``ssl``) are charged to each module
  that pulls them in: the figures do not add up;
* tracemalloc: Python-level allocations made by the import (another fresh
  interpreter: tracemalloc's own bookkeeping would inflate the RSS figure);
* import time, and the modules it added to ``sys.modules``.

The same costs in the order ``meterlink run`` pays them (:data:`CHAIN`): each step
in a fresh interpreter that already ran the steps before it, so that column
adds up and says what dropping one step would save.  Then ``meterlink run``
itself starts under ``python -X importtime`` on a one-meter MQTT-only
configuration (http off): its RSS after start-up, and every top-level
package it imported with its import time: which of the costly ones a
gateway that does not use them still pays for.  pydantic and PyYAML are
paid by the child process that validates the file
(``meterlink.core.config.child``), which has exited before the first poll.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# (module imported, what it is for); the gateway's own modules last, each including what it imports
MODULES = (
    ("rich.live", "rich: demo/top/watch tables"),
    ("prometheus_client", "prometheus-client: /metrics"),
    ("influxdb_client", "influxdb-client: InfluxDB sink (with reactivex, urllib3, dateutil)"),
    ("reactivex", "reactivex (an influxdb-client dependency)"),
    ("urllib3", "urllib3 (an influxdb-client dependency)"),
    ("dateutil.parser", "python-dateutil (an influxdb-client dependency)"),
    ("dlms_cosem.protocol.xdlms", "dlms-cosem: DLMS/COSEM APDUs"),
    ("cryptography.hazmat.primitives.ciphers", "cryptography: DLMS security"),
    ("pydantic", "pydantic: configuration models"),
    ("yaml", "PyYAML: configuration files"),
    ("pymodbus.client", "pymodbus: Modbus TCP client"),
    ("aiomqtt", "aiomqtt (with paho-mqtt): MQTT sink"),
    ("paho.mqtt.client", "paho-mqtt alone"),
    ("serial", "pyserial"),
    ("sqlite3", "sqlite3 (stdlib): the journal"),
    ("asyncio", "asyncio (stdlib)"),
    ("meterlink.core.config.resolve", "meterlink: validating a configuration (pydantic, yaml; `run`: in a child)"),
    ("meterlink.core.config.resolved", "meterlink: a resolved configuration, what `meterlink run` holds"),
    ("meterlink.engine.gateway", "meterlink: the running gateway (journal, scheduler)"),
    ("meterlink.drivers.modbus.driver", "meterlink: Modbus driver (pymodbus)"),
    ("meterlink.engine.sinks.mqtt", "meterlink: MQTT sink (aiomqtt)"),
    ("meterlink.engine.metrics", "meterlink: /metrics and /status (prometheus-client)"),
    ("meterlink.apps.run", "meterlink: what `meterlink run` imports before the config is read"),
)

# The costly packages the table is about, by the top-level name -X importtime shows
WATCHED = ("rich", "prometheus_client", "influxdb_client", "reactivex", "urllib3", "dateutil", "dlms_cosem",
           "cryptography", "pydantic", "pydantic_core", "yaml", "pymodbus", "aiomqtt", "paho", "serial", "sqlite3")

_PROBE = """
import sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
for stmt in {pre!r}:
    exec(stmt)
base = rss()
before = set(sys.modules)
tm = {tm!r}
if tm:
    import tracemalloc
    tracemalloc.start()
t0 = time.perf_counter()
if {module!r}:
    exec({module!r}) if " " in {module!r} else __import__({module!r})
dt = time.perf_counter() - t0
cur = peak = 0
if tm:
    cur, peak = tracemalloc.get_traced_memory()
print(rss(), dt, cur, peak, len(set(sys.modules) - before), base)
"""

# `meterlink run` on a Modbus TCP + MQTT configuration, step by step in its own order: each step's RSS is
# measured over all the steps before it, so this column adds up (to the RSS after start-up, before polling)
CHAIN = (
    ("import asyncio, sqlite3, json, decimal", "stdlib the gateway runs on (asyncio pulls in ssl, socket)"),
    ("import meterlink.apps.cli; meterlink.apps.cli.build_parser(simulate=False)",
     "the CLI's parser, as `meterlink run` builds it (no simulator, no protocol package)"),
    ("from meterlink.core.config import load_validated; load_validated(CONFIG)",
     "the configuration, validated by a child process (pydantic, yaml there), received resolved"),
    ("import pymodbus.client", "pymodbus"),
    ("import meterlink.drivers.modbus.driver", "meterlink's Modbus driver and codec"),
    ("import paho.mqtt.client", "paho-mqtt"),
    ("import aiomqtt", "aiomqtt"),
    ("import meterlink.engine.sinks.mqtt", "meterlink's MQTT sink"),
    ("import meterlink.engine.gateway", "journal, scheduler, runtime"),
    ("import meterlink.apps.run", "the service module"),
)


def probe(module: str, tracemalloc: bool = False, pre: tuple[str, ...] = ()) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module, tm=tracemalloc, pre=pre)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return {"rss_kb": float(out[0]), "seconds": float(out[1]), "traced": float(out[2]), "traced_peak": float(out[3]),
            "modules": float(out[4]), "base_kb": float(out[5])}


def chain(config: Path, runs: int = 1) -> list[dict[str, Any]]:
    """RSS each step of :data:`CHAIN` adds to an interpreter that already ran the steps before it."""
    rows = []
    steps = [(stmt.replace("CONFIG", repr(str(config))), what) for stmt, what in CHAIN]
    for i, (stmt, what) in enumerate(steps):
        pre = tuple(s for s, _ in steps[:i])
        tries = [probe(stmt, pre=pre) for _ in range(runs)]
        best = min(tries, key=lambda t: t["rss_kb"] - t["base_kb"])
        rows.append({"step": stmt.replace(repr(str(config)), "...") if "load_config" in stmt else stmt, "what": what,
                     "rss_mb": (best["rss_kb"] - best["base_kb"]) / 1024, "total_mb": best["rss_kb"] / 1024,
                     "ms": 1000 * best["seconds"], "modules": int(best["modules"])})
    return rows


def _one_meter_config(tmp: Path) -> Path:
    """One Modbus TCP meter (nothing listens on port 9) and an MQTT sink, http off."""
    cfg = {"gateway": {"id": "imports", "data_dir": str(tmp / "data")},
           "links": {"t0": {"type": "tcp", "host": "127.0.0.1", "port": 9, "timeout": "1s"}},
           "meters": {"m0": {"link": "t0", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"}},
           "sinks": {"mqtt": {"host": "127.0.0.1", "port": 9}}}
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(cfg))
    return path


def costs(runs: int = 1) -> list[dict[str, Any]]:
    """Per module: RSS over the bare interpreter (the least of ``runs`` tries), tracemalloc, import time."""
    base = min(probe("")["rss_kb"] for _ in range(runs))
    rows = []
    for module, what in MODULES:
        tries = [probe(module) for _ in range(runs)]
        traced = probe(module, tracemalloc=True)
        rows.append({"module": module, "what": what, "rss_mb": (min(t["rss_kb"] for t in tries) - base) / 1024,
                     "traced_mb": traced["traced"] / 2**20, "ms": 1000 * min(t["seconds"] for t in tries),
                     "modules": int(tries[0]["modules"])})
    return [{"module": "(bare interpreter)", "what": "python with site, nothing imported", "rss_mb": base / 1024,
             "traced_mb": 0.0, "ms": 0.0, "modules": 0}, *rows]


def _rss_mb(pid: int, key: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def run_startup(seconds: float = 4.0) -> dict[str, Any]:
    """``meterlink run`` on one Modbus TCP meter and an MQTT sink (neither answers): its imports and RSS."""
    with tempfile.TemporaryDirectory() as tmp_s:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "meterlink.apps.cli", "run", "-c",
                                 str(_one_meter_config(Path(tmp_s)))], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(seconds)
        rss, hwm = _rss_mb(proc.pid), _rss_mb(proc.pid, "VmHWM:")
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    packages: dict[str, float] = {}
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            top = m.group(4).split(".")[0]
            packages[top] = packages.get(top, 0.0) + int(m.group(1)) / 1000  # self time, summed per package
    return {"rss_mb": rss, "hwm_mb": hwm, "packages": packages,
            "total_ms": sum(packages.values()), "problems": [x for x in err.splitlines()
                                                              if x and not x.startswith("import time:")][:5]}


def main(runs: int = 1) -> dict[str, Any]:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    rows = costs(runs)
    with tempfile.TemporaryDirectory() as tmp_s:
        steps = chain(_one_meter_config(Path(tmp_s)), runs)
    start = run_startup()
    load = os.getloadavg()
    print(f"import costs, each module alone in a fresh interpreter ({sys.executable}); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  {'module':42s} {'RSS MB':>7s} {'traced MB':>9s} {'import ms':>9s} {'modules':>7s}  what")
    for r in rows:
        print(f"  {r['module']:42s} {r['rss_mb']:7.1f} {r['traced_mb']:9.1f} {r['ms']:9.0f} {r['modules']:7d}  "
              f"{r['what']}")
    print("  (RSS over the bare interpreter; shared dependencies are charged to each module: rows do not add up)")
    print(f"`meterlink run`'s start-up step by step, each over the steps before it (bare interpreter "
          f"{rows[0]['rss_mb']:.1f} MB):")
    print(f"  {'step':62s} {'+RSS MB':>7s} {'RSS MB':>6s} {'ms':>6s} {'modules':>7s}  what")
    for r in steps:
        print(f"  {r['step']:62s} {r['rss_mb']:7.1f} {r['total_mb']:6.1f} {r['ms']:6.0f} {r['modules']:7d}  {r['what']}")
    pk = start["packages"]
    print(f"`meterlink run` (one Modbus TCP meter, MQTT sink, http off) after start-up: RSS {start['rss_mb']:.1f} MB, "
          f"peak {start['hwm_mb']:.1f} MB; import self time {start['total_ms']:.0f} ms (under -X importtime)")
    loaded = [f"{p} {pk[p]:.0f} ms" for p in WATCHED if p in pk]
    print(f"  watched packages it imports: {', '.join(loaded) or 'none'}")
    print(f"  not imported: {', '.join(p for p in WATCHED if p not in pk) or 'none'}")
    heavy = sorted(((t, p) for p, t in pk.items()), reverse=True)[:12]
    print(f"  top packages by import self time: {', '.join(f'{p} {t:.0f} ms' for t, p in heavy)}")
    return {"modules": rows, "chain": steps, "run": start}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=1, help="tries per module (the least RSS and time are kept)")
    main(ap.parse_args().runs)
