"""The bare poller: the cheapest thing that could do the peer load, the floor Meterlink is measured against.

Why a reference run in the same session: absolute CPU figures move with the
machine and with whatever else it runs (``../shared/BENCHMARKS.md`` measured
this poller at 28 CPU-ms per 1,000 readings on one machine and at 9 on
another), so Meterlink's goal is a ratio to this poller measured side by side,
never a figure alone.

What it does, and what it leaves out on purpose: pymodbus 3.16
``AsyncModbusTcpClient`` + aiomqtt, one task per meter, every 1 s on the
second, the points read in the fewest block reads (at most 125 registers
each), floats decoded with ``struct``, one JSON message per meter per poll at
QoS 0.  No journal, no validation, no units, no retries, no reconnect, no
status: what a 70-line script does.

Run as ``python -m bench.bare --poll ...`` it is the poller (its imports stay
the poller's own so its RSS is the poller's); :func:`measure` is the harness
that starts simulators, a private Mosquitto and the poller, and measures the
poller's process from ``/proc`` (utime + stime over the window, ``VmHWM``)
and the readings a subscriber receives in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import struct
import sys
import time
from typing import Any

MAX_BLOCK = 125  # registers in one read (Modbus Application Protocol V1.1b3 6.4: 1 to 125)
TOPIC = "bare"


def blocks(points: list[tuple[str, int]]) -> list[tuple[int, int, list[tuple[str, int]]]]:
    """The fewest block reads covering every float32 point: (start, count, [(name, byte offset)])."""
    out: list[tuple[int, int, list[tuple[str, int]]]] = []
    for name, reg in sorted(points, key=lambda p: p[1]):
        if out and reg + 2 - out[-1][0] <= MAX_BLOCK:
            start, _, members = out[-1]
            members.append((name, 2 * (reg - start)))
            out[-1] = (start, reg + 2 - start, members)
        else:
            out.append((reg, 2, [(name, 0)]))
    return out


async def _meter(index: int, host: str, port: int, plan: list[tuple[int, int, list[tuple[str, int]]]],
                 mqtt: Any, counts: dict[str, int]) -> None:
    from pymodbus.client import AsyncModbusTcpClient  # here, not at the top: the harness never needs it

    modbus = AsyncModbusTcpClient(host, port=port, timeout=1, retries=0)
    await modbus.connect()
    topic = f"{TOPIC}/meter-{index:02d}"
    due = math.ceil(time.time())
    while True:
        await asyncio.sleep(max(0.0, due - time.time()))
        due += 1
        if due < time.time():  # fell behind: the next whole second, as a cron-like poller would
            due = math.ceil(time.time())
        values: dict[str, float] = {}
        for start, count, members in plan:
            counts["requests"] += 1
            try:
                rr = await modbus.read_input_registers(start, count=count, device_id=1)
            except Exception:  # a bare poller skips what fails
                counts["failed"] += 1
                continue
            if rr.isError():
                counts["failed"] += 1
                continue
            raw = struct.pack(f">{count}H", *rr.registers)
            for name, offset in members:
                values[name] = struct.unpack_from(">f", raw, offset)[0]
        counts["polls"] += 1
        await mqtt.publish(topic, json.dumps({"meter": index, "ts": time.time(), "values": values}), qos=0)


async def poll(host: str, base_port: int, meters: int, points: list[tuple[str, int]], mqtt_port: int) -> None:
    import logging

    import aiomqtt

    quiet = logging.getLogger("bare.mqtt")  # aiomqtt warns whenever > 10 publishes wait: 30 meters poll at once
    quiet.setLevel(logging.ERROR)
    plan = blocks(points)
    counts = {"polls": 0, "requests": 0, "failed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with aiomqtt.Client("127.0.0.1", mqtt_port, logger=quiet) as mqtt:
        tasks = [asyncio.create_task(_meter(i, host, base_port + i, plan, mqtt, counts)) for i in range(meters)]
        print("polling", flush=True)
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({**counts, "blocks": len(plan)}), flush=True)


# --- the harness (imports the test services lazily: the poller's process never loads them) ----------


def _values(_topic: str, payload: bytes) -> int:
    return len(json.loads(payload)["values"])


def measure(warmup: float, window: float, meters: int = 30) -> dict[str, Any]:
    """The bare poller on ``meters`` SDM630-like meters every 1 s: CPU over ``window`` after ``warmup``."""
    import subprocess
    import tempfile
    from pathlib import Path

    from bench.load import POINTS
    from bench.util import REPO, count_in_window, cpu_seconds, peak_rss_mb, peer_meters

    points = [(f"p_{o.replace('.', '_')}", r) for o, r in POINTS]
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with peer_meters(tmp, meters) as (broker, _profile, base):
            (tmp / "points.json").write_text(json.dumps(points))
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.bare", "--poll", "--base-port", str(base), "--meters", str(meters),
                 "--points", str(tmp / "points.json"), "--mqtt-port", str(broker.port)],
                cwd=REPO, stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "polling":
                    raise RuntimeError("the bare poller did not start")
                time.sleep(warmup)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                readings = asyncio.run(count_in_window(broker.port, f"{TOPIC}/+", window, 0.0, _values))
                cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
                rss = peak_rss_mb(proc.pid)
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    stats = json.loads(out.strip().splitlines()[-1])
    return {"cpu_s": cpu, "wall_s": wall, "readings": readings, "rss_mb": rss,
            "cpu_ms_per_1000": 1e6 * cpu / max(1, readings),
            "requests_per_cycle": stats["requests"] / max(1, stats["polls"]),
            "planned_per_cycle": stats["blocks"], "failed_requests": stats["failed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--poll", action="store_true", help="be the poller (what the harness starts)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--base-port", type=int)
    ap.add_argument("--meters", type=int, default=30)
    ap.add_argument("--points", help="JSON file: [[name, register], ...] of float32 input registers")
    ap.add_argument("--mqtt-port", type=int)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--window", type=float, default=40.0)
    a = ap.parse_args()
    if a.poll:
        with open(a.points) as f:
            points = [(str(n), int(r)) for n, r in json.load(f)]
        asyncio.run(poll(a.host, a.base_port, a.meters, points, a.mqtt_port))
        return
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    r = measure(a.warmup, a.window, a.meters)
    print(f"bare poller: {r['readings'] / r['wall_s']:,.0f} readings/s, {r['requests_per_cycle']:.2f} requests per "
          f"meter per cycle, peak RSS {r['rss_mb']:.0f} MB (CPU: compare it side by side, `make bench-peers`)")


if __name__ == "__main__":
    main()
