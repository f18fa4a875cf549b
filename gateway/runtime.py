"""The running gateway: journal, one scheduler per link, sinks, and the state they share."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from drivers import create_driver
from gateway import __version__, logs
from gateway.config import Config, Meter
from gateway.errors import MeterlinkError
from gateway.journal import Journal, JournalError
from gateway.reading import Reading, format_ts
from gateway.scheduler import LinkScheduler, MeterState, to_readings

BatchListener = Callable[[str, int, list[Reading]], None]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.id = config.gateway.id
        self.journal = Journal(config.data_dir, self.id, max_bytes=config.journal.max_bytes,
                               max_age=config.journal.max_age)
        self.schedulers: dict[str, LinkScheduler] = {}
        for lid, link in config.links.items():
            meters = [m for m in config.meters.values() if m.link == lid]
            if meters:
                self.schedulers[lid] = LinkScheduler(link, meters, create_driver(link), gateway=self.id,
                                                     on_batch=self._on_batch, on_status=self._on_status)
        self.latest: dict[str, dict[str, Reading]] = {}
        self.batch_listeners: list[BatchListener] = []
        self.status_listeners: list[Callable[[MeterState], None]] = []
        self.started = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    def meter_state(self, meter_id: str) -> MeterState | None:
        m = self.config.meters.get(meter_id)
        return None if m is None else self.schedulers[m.link].meters[meter_id]

    async def _on_batch(self, meter: Meter, ts: datetime, readings: list[Reading]) -> None:
        delay = 1.0
        while True:
            try:
                seq = await self.journal.append(meter.id, ts, readings)
                break
            except JournalError as exc:  # disk full or similar: hold the batch, keep trying
                logs.error("journal write failed", meter=meter.id, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        latest = self.latest.setdefault(meter.id, {})
        for r in readings:
            latest[r.obis] = r
        for listener in self.batch_listeners:
            listener(meter.id, seq, readings)

    def _on_status(self, ms: MeterState) -> None:
        for listener in self.status_listeners:
            listener(ms)

    async def start(self) -> None:
        self.journal.open()
        self.journal.start()
        for lid, sched in self.schedulers.items():
            self._tasks.append(asyncio.create_task(self._run_link(sched), name=f"meterlink[{lid}].poll"))
        logs.info("gateway started", gateway=self.id, links=len(self.schedulers), meters=len(self.config.meters),
                  journal=str(self.journal.path), version=__version__)
        self.ready.set()

    async def _run_link(self, sched: LinkScheduler) -> None:
        try:
            await sched.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the other links down
            logs.error("link scheduler crashed", link=sched.link.id, error=repr(exc))
            raise

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for sched in self.schedulers.values():
            with contextlib.suppress(Exception):
                await sched.close()
        await self.journal.stop()
        self.journal.close()
        logs.info("gateway stopped", gateway=self.id)

    async def read_now(self, meter_id: str, obis: Sequence[str] | None = None) -> list[Reading]:
        """A call-up read: read now, between the scheduled polls, and journal the readings."""
        meter = self.config.meters[meter_id]
        points = [p for p in meter.points if obis is None or p.obis in obis]
        if not points:
            raise MeterlinkError(f"meter {meter_id} has none of the points {', '.join(obis or [])}")
        sched = self.schedulers[meter.link]
        ts = datetime.now().astimezone()
        results = await sched.read(meter, points)
        readings = to_readings(self.id, meter, ts, results)
        await self._on_batch(meter, ts, readings)
        return readings

    def status(self) -> dict[str, object]:
        links = {}
        for lid, s in self.schedulers.items():
            links[lid] = {"utilization": round(s.state.utilization(), 4), "polls": s.state.polls,
                          "errors": s.state.errors, "transactions": s.driver.counters.transactions,
                          "timeouts": s.driver.counters.timeouts, "last_error": s.state.last_error}
        meters = {}
        for s in self.schedulers.values():
            for mid, ms in s.meters.items():
                meters[mid] = {**ms.status(), "link": s.link.id, "polls_ok": ms.polls_ok,
                               "polls_failed": ms.polls_failed, "late_polls": ms.late_polls,
                               "missed_polls": ms.missed_polls,
                               "latency_s": None if ms.last_latency is None else round(ms.last_latency, 4)}
        return {"gateway": self.id, "version": __version__, "ts": format_ts(datetime.now().astimezone()),
                "uptime_s": round(time.time() - self.started, 1), "links": links, "meters": meters,
                "journal": self.journal.counts()}
