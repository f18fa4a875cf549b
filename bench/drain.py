"""Backlog drain: readings/s delivered from a journal backlog to a real Mosquitto and a real VictoriaMetrics.

A journal is filled with N readings (SDM630-like data messages of 30 readings
each), then each sink alone drains it until its cursor reaches the end.  The
MQTT figure counts PUBACKed QoS 1 messages; the InfluxDB figure counts points
answered with 2xx.  Goal (issue 6): >= 50,000 readings/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.util import broker_and_database
from meterlink.core.config import InfluxConfig, MqttConfig
from meterlink.core.reading import Reading
from meterlink.engine.journal import Journal
from meterlink.engine.sinks.influx import InfluxSink
from meterlink.engine.sinks.mqtt import MqttSink

GOAL = 50_000.0
PER_MESSAGE = 30


def fill(journal: Journal, readings: int) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=2)
    batches = []
    for i in range(readings // PER_MESSAGE):
        meter = f"m-{i % 100:04d}"
        ts = t0 + timedelta(milliseconds=10 * i)
        batches.append((meter, ts, [
            Reading(gateway="bench", meter=meter, obis=f"1.0.{c}.7.0.255", name=f"p{c}",
                    value=Decimal(f"{230 + (i % 97) / 10:.1f}"), unit="V", ts=ts) for c in range(1, PER_MESSAGE + 1)]))
        if len(batches) == 500:
            journal.append_many(batches)
            batches = []
    if batches:
        journal.append_many(batches)


async def drain(sink: MqttSink | InfluxSink, journal: Journal) -> float:
    journal.start()
    t0 = time.perf_counter()
    task = asyncio.create_task(sink.run())
    try:
        while journal.backlog(sink.name) > 0:
            await asyncio.sleep(0.02)
            if task.done():
                task.result()
        return time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await journal.stop()


def main(quick: bool = False, readings: int | None = None) -> dict[str, float]:
    n = readings or (10_000 if quick else 100_000)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, broker_and_database(Path(tmp)) as (broker, vm):
        for name in ("mqtt", "influxdb"):
            journal = Journal(Path(tmp) / f"j-{name}", "bench").open()
            fill(journal, n)
            sink: MqttSink | InfluxSink
            if name == "mqtt":
                sink = MqttSink(MqttConfig(host="127.0.0.1", port=broker.port), journal, "bench")
            else:
                sink = InfluxSink(InfluxConfig(url=vm.url, bucket="b"), journal)
            journal.sink_names = [name]
            elapsed = asyncio.run(drain(sink, journal))
            rate = n / elapsed
            results[name] = rate
            print(f"backlog drain {name:9s}: {n:,} readings in {elapsed:6.2f} s = {rate:9,.0f} readings/s "
                  f"({rate / GOAL:.2f} x the 50,000/s goal)")
            asyncio.run(sink.stop())
            journal.close()
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readings", type=int, default=100_000)
    a = ap.parse_args()
    main(readings=a.readings)
