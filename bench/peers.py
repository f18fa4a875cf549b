"""Peer: the load of ../shared/BENCHMARKS.md read side by side by thingsboard-gateway, the bare poller and Meterlink.

30 simulated SDM630-like Modbus TCP meters (30 float32 points each, one meter
per port), polled every 1 s.  thingsboard-gateway 3.8.5 runs from its own venv
(``make bench-peers`` creates ``.bench-peers``) against a Mosquitto whose ACL
lets its user publish anywhere but read only its reply topics (a plain broker
echoes its RPC requests back to it), with a tiny responder that answers its
``getSessionLimits`` RPC like an unlimited tenant (it publishes no telemetry
before that answer).  CPU is counted over each gateway's whole process tree,
requests are counted by the simulators, and delivered data points by a
subscriber, in the same window for both.  The bare pymodbus + aiomqtt poller
(:mod:`bench.bare`) is the floor: Meterlink's CPU goal is a ratio to it measured
in the same session (<= 1.5 x), so only ratios are printed for CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.load import POINTS, gateway_config
from bench.util import REPO, count_in_window, cpu_seconds, peak_rss_mb, peer_meters
from testkit.services import Mosquitto

PEER_VENV = REPO / ".bench-peers"
METERS = 30
TOKEN = "bench-peer-token"


class AclMosquitto(Mosquitto):
    """Mosquitto with an ACL: the peer's user writes anywhere, reads only its replies; anonymous reads all."""

    def _config(self) -> str:
        acl = self.base_dir / "acl"
        acl.write_text("topic readwrite #\n\n"
                       f"user {TOKEN}\n"
                       "topic write #\n"
                       "topic read v1/devices/me/rpc/response/#\n"
                       "topic read v1/devices/me/attributes/response/#\n")
        return super()._config() + f"acl_file {acl}\n"


def _tb_config(tmp: Path, port: int, base: int) -> Path:
    cfg = tmp / "tb"
    cfg.mkdir()
    (cfg / "logs.json").write_text(json.dumps({"version": 1, "disable_existing_loggers": False,
                                               "handlers": {}, "loggers": {}, "root": {"level": "ERROR"}}))
    timeseries = [{"tag": f"p_{o.replace('.', '_')}", "type": "32float", "functionCode": 4, "objectsCount": 2,
                   "address": r} for o, r in POINTS]
    slaves = [{"host": "127.0.0.1", "port": base + i, "type": "tcp", "method": "socket", "unitId": 1,
               "deviceName": f"meter-{i:02d}", "deviceType": "default", "timeout": 1, "byteOrder": "BIG",
               "wordOrder": "BIG", "retries": 0, "pollPeriod": 1000, "connectAttemptTimeMs": 5000,
               "connectAttemptCount": 5, "waitAfterFailedAttemptsMs": 300000, "attributes": [],
               "timeseries": timeseries, "attributeUpdates": [], "rpc": []} for i in range(METERS)]
    (cfg / "modbus.json").write_text(json.dumps({"master": {"slaves": slaves}}))
    main = json.loads((PEER_VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" /
                       "site-packages" / "thingsboard_gateway" / "config" / "tb_gateway.json").read_text())
    main["thingsboard"].update(host="127.0.0.1", port=port, remoteConfiguration=False, remoteShell=False,
                               security={"type": "accessToken", "accessToken": TOKEN}, qos=1)
    main["thingsboard"]["statistics"]["enable"] = False
    main["connectors"] = [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}]
    (cfg / "tb_gateway.json").write_text(json.dumps(main))
    return cfg


async def _responder(port: int, stop: asyncio.Event) -> None:
    unlimited = json.dumps({"rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,",
                                           "telemetryDataPoints": "0:0,"},
                            "maxInflightMessages": 10000, "maxPayloadSize": 1 << 20})
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe("v1/devices/me/rpc/request/+", qos=1)
        async for m in c.messages:
            doc = json.loads(m.payload)  # type: ignore[arg-type]
            if doc.get("method") == "getSessionLimits":
                rid = str(m.topic).rsplit("/", 1)[1]
                await c.publish(f"v1/devices/me/rpc/response/{rid}", unlimited, qos=1)
            if stop.is_set():
                return


def _tb_points(_topic: str, payload: bytes) -> int:
    """Data points in one thingsboard-gateway telemetry message."""
    return sum(len(rec.get("values", rec)) for records in json.loads(payload).values() for rec in records)


def _tree_cpu(pid: int) -> float:
    pids = [pid]
    with contextlib.suppress(FileNotFoundError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    total = 0.0
    for p in pids:
        with contextlib.suppress(FileNotFoundError):
            total += cpu_seconds(p)
    return total


PEER_PACKAGES = ("thingsboard-gateway==3.8.5", "pymodbus==3.9.2")  # it pins pymodbus 3.9.2 and would install it


def ensure_peer_env() -> Path:
    """``.bench-peers``: thingsboard-gateway from PyPI in a venv of its own (never in the project's venv)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import thingsboard_gateway"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def thingsboard(warmup: float, window: float) -> dict[str, Any]:
    python = ensure_peer_env()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with peer_meters(tmp, METERS, broker_class=AclMosquitto) as (broker, _profile, base):
            cfg = _tb_config(tmp, broker.port, base)
            work = tmp / "work"
            (work / "logs").mkdir(parents=True)
            proc = subprocess.Popen([str(python), "-c", "from thingsboard_gateway.tb_gateway import main; main()"],
                                    cwd=work, env={**os.environ, "TB_GW_CONFIG_DIR": str(cfg)},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            async def run() -> dict[str, Any]:
                stop = asyncio.Event()
                responder = asyncio.create_task(_responder(broker.port, stop))
                counting = asyncio.create_task(count_in_window(broker.port, "v1/gateway/telemetry", window, warmup,
                                                               _tb_points))
                await asyncio.sleep(warmup)
                cpu0, t0 = _tree_cpu(proc.pid), time.monotonic()
                points = await counting
                cpu, wall = _tree_cpu(proc.pid) - cpu0, time.monotonic() - t0
                stop.set()
                responder.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await responder
                return {"cpu_s": cpu, "wall_s": wall, "readings": points, "rss_mb": peak_rss_mb(proc.pid)}

            try:
                result = asyncio.run(run())
            finally:
                _stop(proc)
    result["cpu_ms_per_1000"] = 1e6 * result["cpu_s"] / max(1, result["readings"])
    result["requests_per_cycle"] = len(POINTS)  # one request per tag, as configured (no wide-range tags)
    return result


def installed_meterlink() -> Path:
    """The ``meterlink`` users run: the installed wheel's (``make installed``), else this venv's."""
    exe = REPO / ".venv-installed" / "bin" / "meterlink"
    return exe if exe.exists() else Path(sys.executable).with_name("meterlink")


def _readings(topic: str, payload: bytes) -> int:
    """Readings in one data message (CONTRACT section 6); other topics (status, discovery) hold none."""
    return len(json.loads(payload)["readings"]) if topic.endswith("/data") else 0


def meterlink_run(warmup: float, window: float) -> dict[str, Any]:
    """``meterlink run`` of the installed package on the peer load, measured from outside like the others.

    CPU and peak RSS come from ``/proc`` of the gateway's own process, readings
    from a subscriber; the requests per cycle are the gateway's plan for this
    configuration (the same planner, asked in this process).
    """
    from meterlink.core.config import load_config
    from meterlink.core.registry import create_driver

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with peer_meters(tmp, METERS) as (broker, profile, base):
            cfg = gateway_config(tmp / "gateway.yaml", profile, base, METERS,
                                 {"mqtt": {"host": "127.0.0.1", "port": broker.port}}, gateway="peer")
            config = load_config(cfg)
            plans = [len(create_driver(config.links[m.link], None).plan(m, m.points)) for m in config.meters.values()]
            log = (tmp / "meterlink.log").open("w")
            proc = subprocess.Popen([str(installed_meterlink()), "run", "-c", str(cfg)],
                                    stdout=log, stderr=subprocess.STDOUT)

            async def run() -> dict[str, Any]:
                counting = asyncio.create_task(count_in_window(broker.port, "#", window, warmup, _readings))
                await asyncio.sleep(2.0)
                started = peak_rss_mb(proc.pid)  # start-up and the first polls
                await asyncio.sleep(warmup - 2.0)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                readings = await counting
                cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
                return {"cpu_s": cpu, "wall_s": wall, "readings": readings, "rss_mb": peak_rss_mb(proc.pid),
                        "rss_start_mb": started}

            try:
                result = asyncio.run(run())
            finally:
                _stop(proc)
                log.close()
            if proc.returncode not in (0, -15):
                raise RuntimeError(f"meterlink run exited {proc.returncode}: "
                                   f"{(tmp / 'meterlink.log').read_text()[-2000:]}")
            # the child process that validated the configuration says its own peak (core/config/child.py)
            child = re.search(r"configuration validated .*peak_rss_mb=([\d.]+)", (tmp / "meterlink.log").read_text())
    result["cpu_ms_per_1000"] = 1e6 * result["cpu_s"] / max(1, result["readings"])
    result["tx_per_poll"] = sum(plans) / max(1, len(plans))
    result["rss_child_mb"] = float(child.group(1)) if child else float("nan")
    return result


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _ratio(a: float, b: float) -> str:
    """A ratio of CPU per reading, with both figures it was made of (an absolute figure is never shown alone)."""
    return f"{a / b:.2f} x ({a:.1f} / {b:.1f} CPU-ms per 1,000 readings)" if b > 0 else "n/a"


def main(quick: bool = False, runs: int = 2, with_thingsboard: bool = True) -> dict[str, Any]:
    """``runs`` interleaved rounds of thingsboard-gateway, the bare poller and Meterlink; medians of each.

    Only ratios of figures measured in the same session are printed for CPU: the
    absolute figure moves with the machine and its load.
    """
    from bench import bare

    window = 15.0 if quick else 40.0
    warmup = 5.0 if quick else 15.0
    rounds: dict[str, list[dict[str, Any]]] = {"thingsboard": [], "bare": [], "meterlink": []}
    for i in range(runs):
        load = os.getloadavg()
        print(f"round {i + 1}/{runs}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if with_thingsboard:
            rounds["thingsboard"].append(thingsboard(max(20.0, 2 * warmup), window))  # it connects slowly
        rounds["bare"].append(bare.measure(warmup, window, METERS))
        rounds["meterlink"].append(meterlink_run(warmup, window))
    med = {name: {key: _median([r[key] for r in rs]) for key in ("cpu_ms_per_1000", "rss_mb")} | {
        "rate": _median([r["readings"] / r["wall_s"] for r in rs])} for name, rs in rounds.items() if rs}
    ml, bp = med["meterlink"], med["bare"]
    ml_tx = _median([r["tx_per_poll"] for r in rounds["meterlink"]])
    bp_tx = _median([r["requests_per_cycle"] for r in rounds["bare"]])
    print(f"peer load: {METERS} SDM630-like Modbus TCP meters x {len(POINTS)} float32 points every 1 s, "
          f"{warmup:.0f} s warm-up, {window:.0f} s window, median of {runs} interleaved round(s)")
    print(f"  meterlink run ({installed_meterlink().parent.parent.name}; journal, QoS 1): {ml['rate']:,.0f} readings/s, "
          f"{ml_tx:.2f} requests per meter per cycle (its plan), "
          f"peak RSS {ml['rss_mb']:.0f} MB (goal <= 40)")
    print(f"  bare poller (QoS 0)       : {bp['rate']:,.0f} readings/s, {bp_tx:.2f} requests per meter per cycle, "
          f"peak RSS {bp['rss_mb']:.0f} MB")
    # the goal compares figures of one run: each round's meterlink with the bare poller that ran right beside it,
    # then the median of those ratios (the ratio of the two medians mixes rounds, whose figures drift)
    per_round = [m["cpu_ms_per_1000"] / b["cpu_ms_per_1000"] for m, b in zip(rounds["meterlink"], rounds["bare"],
                                                                              strict=True) if b["cpu_ms_per_1000"]]
    print(f"  CPU per reading, meterlink / bare poller: {_median(per_round):.2f} x, the median of each round's ratio "
          f"(goal <= 1.5 x); ratio of the medians {_ratio(ml['cpu_ms_per_1000'], bp['cpu_ms_per_1000'])}")
    print(f"    each round, meterlink / bare poller: {', '.join(f'{r:.2f} x' for r in per_round)}; "
          f"meterlink at start-up (2 s, first polls): peak RSS "
          f"{_median([r['rss_start_mb'] for r in rounds['meterlink']]):.0f} MB; its configuration-validating "
          f"child process (exits before the first poll): peak RSS "
          f"{_median([r['rss_child_mb'] for r in rounds['meterlink']]):.0f} MB")
    if "thingsboard" in med:
        tb = med["thingsboard"]
        print(f"  thingsboard-gateway 3.8.5 : {tb['rate']:,.0f} readings/s delivered, {len(POINTS)} requests per "
              f"meter per cycle, peak RSS {tb['rss_mb']:.0f} MB (main process)")
        if tb["rate"] > 0:
            print(f"  CPU per reading, meterlink / thingsboard-gateway: "
                  f"{_ratio(ml['cpu_ms_per_1000'], tb['cpu_ms_per_1000'])}; "
                  f"bare poller / thingsboard-gateway: {_ratio(bp['cpu_ms_per_1000'], tb['cpu_ms_per_1000'])}")
        else:
            print("  thingsboard-gateway delivered nothing in the window: see its logs in the work folder")
    return {"rounds": rounds, "medians": med}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long windows")
    ap.add_argument("--runs", type=int, default=2, help="interleaved rounds (the medians are printed)")
    ap.add_argument("--no-thingsboard", action="store_true", help="only the bare poller and Meterlink")
    a = ap.parse_args()
    main(quick=a.quick, runs=a.runs, with_thingsboard=not a.no_thingsboard)
