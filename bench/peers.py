"""Peer: the load of ../shared/BENCHMARKS.md read side by side by thingsboard-gateway and by Meterlink.

30 simulated SDM630-like Modbus TCP meters (30 float32 points each, one meter
per port), polled every 1 s.  thingsboard-gateway 3.8.5 runs from its own venv
(``make bench-peers`` creates ``.bench-peers``) against a Mosquitto whose ACL
lets its user publish anywhere but read only its reply topics (a plain broker
echoes its RPC requests back to it), with a tiny responder that answers its
``getSessionLimits`` RPC like an unlimited tenant (it publishes no telemetry
before that answer).  CPU is counted over each gateway's whole process tree,
requests are counted by the simulators, and delivered data points by a
subscriber, in the same window for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.many import POINTS, _free_base, _profile, scenario
from bench.util import REPO, SimProcess, cpu_seconds, peak_rss_mb
from tests.services import Mosquitto, ensure_binaries

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


async def _count_points(port: int, seconds: float, warmup: float) -> int:
    counted = [0]
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe("v1/gateway/telemetry", qos=1)
        t_start = time.monotonic() + warmup
        deadline = t_start + seconds

        async def gather() -> None:
            async for m in c.messages:
                if time.monotonic() < t_start:
                    continue
                for records in json.loads(m.payload).values():  # type: ignore[arg-type]
                    for rec in records:
                        counted[0] += len(rec.get("values", rec))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gather(), deadline - time.monotonic())
    return counted[0]


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


def thingsboard(warmup: float, window: float) -> dict[str, Any]:
    python = ensure_peer_env()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        broker = AclMosquitto(tmp / "mq")
        broker.start()
        profile = _profile(tmp / "p.yaml", "1s")
        base = _free_base(METERS)
        try:
            with SimProcess("modbus", "--profile", str(profile), "--unit", "1", "--tcp", str(base),
                            "--ports", str(METERS)):
                cfg = _tb_config(tmp, broker.port, base)
                work = tmp / "work"
                (work / "logs").mkdir(parents=True)
                proc = subprocess.Popen([str(python), "-c", "from thingsboard_gateway.tb_gateway import main; main()"],
                                        cwd=work, env={**os.environ, "TB_GW_CONFIG_DIR": str(cfg)},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

                async def run() -> dict[str, Any]:
                    stop = asyncio.Event()
                    responder = asyncio.create_task(_responder(broker.port, stop))
                    counting = asyncio.create_task(_count_points(broker.port, window, warmup))
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
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        finally:
            broker.close()
    result["cpu_ms_per_1000"] = 1e6 * result["cpu_s"] / max(1, result["readings"])
    result["requests_per_cycle"] = len(POINTS)  # one request per tag, as configured (no wide-range tags)
    return result


def main(quick: bool = False) -> dict[str, Any]:
    ensure_binaries()
    warmup, window = (20.0, 15.0) if quick else (30.0, 60.0)
    tb = thingsboard(warmup, window)
    ml = scenario("meterlink", METERS, "1s", ("mqtt",), warmup=10, window=window)
    print(f"peer load: {METERS} SDM630-like Modbus TCP meters x {len(POINTS)} float32 points every 1 s, "
          f"{window:.0f} s window")
    print(f"  thingsboard-gateway 3.8.5: {tb['readings'] / tb['wall_s']:,.0f} readings/s delivered, "
          f"{tb['cpu_ms_per_1000']:.0f} CPU-ms per 1,000 readings, {tb['requests_per_cycle']} requests per meter "
          f"per cycle, peak RSS {tb['rss_mb']:.0f} MB (main process)")
    print(f"  meterlink                : {ml['readings'] / ml['wall_s']:,.0f} readings/s delivered, "
          f"{ml['cpu_ms_per_1000']:.1f} CPU-ms per 1,000 readings, {ml['tx_per_poll']:.0f} requests per meter per "
          f"cycle, peak RSS {ml['rss_mb']:.0f} MB")
    if tb["readings"]:
        print(f"  ratios: {tb['cpu_ms_per_1000'] / ml['cpu_ms_per_1000']:.1f} x less CPU per reading, "
              f"{tb['requests_per_cycle'] / ml['tx_per_poll']:.0f} x fewer Modbus requests")
    else:
        print("  thingsboard-gateway delivered nothing in the window: see its logs in the work folder")
    return {"thingsboard": tb, "meterlink": ml}


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
