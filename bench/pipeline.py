"""Pipeline: readings/s from decoded values through the journal to a real Mosquitto and a real VictoriaMetrics.

Producers stand in for links: each turns decoded values into readings and hands
a 30-reading batch to the journal as fast as the journal takes it, while both
sinks deliver live.  Sustained means the sinks keep up: the figure is what
reached both sinks in the window, and the backlog left at its end is printed.
Goal (issue 6): >= 20,000 readings/s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bench.util import broker_and_database
from meterlink.core.config import InfluxConfig, MqttConfig
from meterlink.core.reading import Reading
from meterlink.engine.journal import Journal
from meterlink.engine.sinks.influx import InfluxSink
from meterlink.engine.sinks.mqtt import MqttSink
from testkit.services import Mosquitto, VictoriaMetrics

GOAL = 20_000.0
PER_BATCH = 30
PRODUCERS = 200  # meters polled concurrently
TARGET_RATE = 40_000.0  # readings/s the producers offer, in total


async def _produce(journal: Journal, meter: str, stop: asyncio.Event, offered: list[int], rate: float) -> None:
    period = PRODUCERS * PER_BATCH / rate
    nxt = time.monotonic()
    i = 0
    while not stop.is_set():
        ts = datetime.now(UTC)
        readings = [Reading(gateway="bench", meter=meter, obis=f"1.0.{c}.7.0.255", name=f"p{c}",
                            value=Decimal(f"{230 + (i % 97) / 10:.1f}"), unit="V", ts=ts)
                    for c in range(1, PER_BATCH + 1)]
        await journal.append(meter, ts, readings)
        offered[0] += PER_BATCH
        i += 1
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _run(tmp: Path, broker: Mosquitto, vm: VictoriaMetrics, seconds: float, rate: float) -> dict[str, float]:
    journal = Journal(tmp / "j", "bench").open()
    mqtt = MqttSink(MqttConfig(host="127.0.0.1", port=broker.port), journal, "bench")
    influx = InfluxSink(InfluxConfig(url=vm.url, bucket="bench"), journal)
    journal.sink_names = ["mqtt", "influxdb"]
    journal.start()
    sinks = [asyncio.create_task(mqtt.run()), asyncio.create_task(influx.run())]
    stop = asyncio.Event()
    offered = [0]
    await asyncio.sleep(1.0)  # sinks connected
    d0 = (mqtt.counters.delivered_readings, influx.counters.delivered_readings)
    t0 = time.monotonic()
    producers = [asyncio.create_task(_produce(journal, f"m{i:04d}", stop, offered, rate)) for i in range(PRODUCERS)]
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    delivered = (mqtt.counters.delivered_readings - d0[0], influx.counters.delivered_readings - d0[1])
    backlog = {"mqtt": journal.backlog("mqtt"), "influxdb": journal.backlog("influxdb")}
    stop.set()
    await asyncio.gather(*producers)
    for t in sinks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t
    await journal.stop()
    await influx.stop()
    journal.close()
    return {"journaled": offered[0] / elapsed, "mqtt": delivered[0] / elapsed, "influxdb": delivered[1] / elapsed,
            "backlog_mqtt": backlog["mqtt"], "backlog_influxdb": backlog["influxdb"], "seconds": elapsed}


def main(quick: bool = False, rate: float = TARGET_RATE) -> dict[str, float]:
    seconds = 5.0 if quick else 60.0
    with tempfile.TemporaryDirectory() as tmp, broker_and_database(Path(tmp)) as (broker, vm):
        r = asyncio.run(_run(Path(tmp), broker, vm, seconds, rate))
    both = min(r["mqtt"], r["influxdb"])
    print(f"pipeline, {PRODUCERS} producers offering {rate:,.0f} readings/s for {r['seconds']:.0f} s:")
    print(f"  journaled {r['journaled']:,.0f} readings/s; delivered to MQTT {r['mqtt']:,.0f}/s, to VictoriaMetrics "
          f"{r['influxdb']:,.0f}/s -> {both / GOAL:.2f} x the 20,000/s goal; backlog at the end: "
          f"{r['backlog_mqtt']} MQTT, {r['backlog_influxdb']} InfluxDB batches")
    return r


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=TARGET_RATE, help="readings/s the producers offer")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    main(quick=a.quick, rate=a.rate)
