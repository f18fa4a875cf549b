"""Many meters: simulated Modbus TCP meters through one gateway process with the journal and sinks on.

Two loads:
* ``peer``: the load of ../shared/BENCHMARKS.md: 30 SDM630-like meters, 30 float32 points each,
  every 1 s, journal + QoS 1 MQTT; compared with the bare pymodbus + aiomqtt poller (:mod:`bench.bare`)
  run right after it on the same load: the goal is <= 1.5 x its CPU per reading, a ratio measured in one
  session, as absolute figures move with the machine (thingsboard-gateway too: ``make bench-peers``).
* ``many``: 2,000 meters, 30 points each, every 10 s, journal + MQTT + InfluxDB (VictoriaMetrics).
  Goals (issue 6): under 25 % of one core, under 250 MB RSS, poll lateness p99 under 1 s.

The gateway runs in a child process; it measures its own CPU over a steady window after a warm-up
(time.process_time), its peak RSS (ru_maxrss) and the lateness of every poll in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import free_base, gateway_config, write_profile
from bench.util import REPO, SimProcess, percentile


# 30 float32 points of the SDM630 input registers 0x0000-0x004F plus the total at 0x0156: 2 block reads
def _child(config_path: str, warmup: float, window: float, out: str) -> None:
    """Runs in the child process: the gateway, then its own figures as JSON."""
    from meterlink.core import logs
    from meterlink.core.config import load_validated
    from meterlink.engine.gateway import Gateway

    logs.setup("text", "error")

    async def run() -> dict[str, Any]:
        gw = Gateway(load_validated(config_path))  # as `meterlink run`: validated by a child process
        counted = {"readings": 0, "batches": 0}

        def count(meter: str, seq: int, readings: list[Any]) -> None:
            counted["readings"] += len(readings)
            counted["batches"] += 1

        await gw.start()
        await asyncio.sleep(warmup)
        for s in gw.schedulers.values():
            s.state.lateness.clear()
        gw.batch_listeners.append(count)
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        lateness = [x for s in gw.schedulers.values() for x in s.state.lateness]
        transactions = sum(s.driver.counters.transactions for s in gw.schedulers.values())
        retries = sum(s.driver.counters.timeouts + s.driver.counters.frame_errors for s in gw.schedulers.values())
        planned = [len(s.driver.plan(ms.meter, ms.meter.points)) for s in gw.schedulers.values()  # type: ignore[attr-defined]
                   for ms in s.meters.values()]
        polls = sum(s.state.polls for s in gw.schedulers.values())
        backlog = {sink.name: gw.journal.backlog(sink.name) for sink in gw.sinks}
        errors = sum(s.state.errors for s in gw.schedulers.values())
        await gw.stop()
        return {"cpu_s": cpu, "wall_s": wall, "readings": counted["readings"], "batches": counted["batches"],
                "lateness": lateness, "transactions": transactions, "polls": polls, "backlog": backlog,
                "failed_tries": retries, "planned_per_cycle": sum(planned) / max(1, len(planned)),
                "errors": errors, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    Path(out).write_text(json.dumps(asyncio.run(run())))


def scenario(name: str, meters: int, interval: str, sinks: tuple[str, ...], warmup: float, window: float) -> dict[
        str, Any]:
    from testkit.services import Mosquitto, VictoriaMetrics, ensure_binaries

    ensure_binaries()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        profile = write_profile(tmpdir / "bench-sdm630-30.yaml", interval)
        broker = vm = None
        try:
            sink_cfg: dict[str, Any] = {}
            if "mqtt" in sinks:
                broker = Mosquitto(tmpdir / "mq")
                broker.start()
                sink_cfg["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
            if "influxdb" in sinks:
                vm = VictoriaMetrics(tmpdir / "vm")
                vm.start()
                sink_cfg["influxdb"] = {"url": vm.url, "bucket": "bench"}
            per_proc = 1000
            base = free_base(meters)
            sims = [SimProcess("modbus", "--profile", str(profile), "--unit", "1", "--tcp", str(base + i),
                               "--ports", str(min(per_proc, meters - i))) for i in range(0, meters, per_proc)]
            for s in sims:
                s.__enter__()
            try:
                cfg = gateway_config(tmpdir / "gateway.yaml", profile, base, meters, sink_cfg)
                out = tmpdir / "out.json"
                subprocess.run([sys.executable, "-m", "bench.many", "--child", str(cfg), str(warmup), str(window),
                                str(out)], cwd=REPO, check=True)
                result = json.loads(out.read_text())
            finally:
                for s in sims:
                    s.__exit__(None, None, None)
        finally:
            if broker:
                broker.close()
            if vm:
                vm.close()
    lat = result.pop("lateness")
    result.update(name=name, meters=meters, lateness_p50=percentile(lat, 0.5), lateness_p99=percentile(lat, 0.99),
                  cpu_share=result["cpu_s"] / result["wall_s"],
                  cpu_ms_per_1000=1000 * 1000 * result["cpu_s"] / max(1, result["readings"]),
                  tx_per_poll=result["transactions"] / max(1, result["polls"]))
    return result


def report(r: dict[str, Any]) -> None:
    print(f"  {r['name']}: {r['meters']} meters, {r['readings'] / r['wall_s']:,.0f} readings/s for {r['wall_s']:.0f} s; "
          f"CPU {r['cpu_share'] * 100:.1f} % of one core = {r['cpu_ms_per_1000']:.1f} CPU-ms per 1,000 readings; "
          f"peak RSS {r['rss_mb']:.0f} MB; {r['planned_per_cycle']:.0f} requests per meter per cycle planned, "
          f"{r['tx_per_poll']:.2f} sent ({r['failed_tries']} tries timed out or garbled); "
          f"lateness p50 {r['lateness_p50'] * 1000:.0f} ms, p99 {r['lateness_p99'] * 1000:.0f} ms; "
          f"errors {r['errors']}; sink backlog at the end {r['backlog']}")


def main(quick: bool = False) -> list[dict[str, Any]]:
    results = []
    print("gateway load, one process, journal on:")
    from bench import bare

    warmup, window = (3.0, 5.0) if quick else (15.0, 40.0)
    peer = scenario("peer load (30 meters x 30 points every 1 s, QoS 1 MQTT)", 30, "1s", ("mqtt",),
                    warmup=warmup, window=window)
    report(peer)
    ref = bare.measure(warmup, window, 30)
    peer["bare"] = ref
    ratio = peer["cpu_ms_per_1000"] / ref["cpu_ms_per_1000"] if ref["cpu_ms_per_1000"] > 0 else float("nan")
    print(f"    vs the bare pymodbus + aiomqtt poller on the same load right after it (no journal, QoS 0, "
          f"{ref['readings'] / ref['wall_s']:,.0f} readings/s, {ref['requests_per_cycle']:.0f} requests per cycle, "
          f"peak RSS {ref['rss_mb']:.0f} MB): {ratio:.2f} x its CPU per reading ({peer['cpu_ms_per_1000']:.1f} / "
          f"{ref['cpu_ms_per_1000']:.1f} CPU-ms per 1,000; goal <= 1.5 x); "
          f"RSS {peer['rss_mb']:.0f} vs 40 MB; {peer['planned_per_cycle']:.0f} requests per cycle vs 2")
    results.append(peer)
    many = scenario("many meters (30 points every 10 s, MQTT + InfluxDB)", 200 if quick else 2000, "10s",
                    ("mqtt", "influxdb"), warmup=12 if quick else 25, window=10 if quick else 60)
    report(many)
    print(f"    goals: CPU {many['cpu_share'] * 100:.1f} % vs 25 % of one core; RSS {many['rss_mb']:.0f} vs 250 MB; "
          f"p99 lateness {many['lateness_p99']:.3f} s vs 1 s")
    results.append(many)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=4, metavar=("CONFIG", "WARMUP", "WINDOW", "OUT"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], float(a.child[1]), float(a.child[2]), a.child[3])
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        main(quick=a.quick)
