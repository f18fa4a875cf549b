"""The running gateway: journal, one scheduler per link, sinks, and the state they share.

Faults that clear by themselves never end the gateway: a full disk at start is
waited out (:meth:`Gateway.start`), a journal that fails while running holds
readings in its bounded memory queue (:mod:`meterlink.engine.journal`), and a link task
that fails for any reason is restarted with backoff and counted
(:meth:`Gateway._run_link`), never left dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from meterlink import __version__
from meterlink.core import logs
from meterlink.core.backoff import Backoff
from meterlink.core.config import Config, Meter
from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import Reading, format_ts
from meterlink.core.registry import create_driver
from meterlink.engine.commands import CommandError, Request
from meterlink.engine.journal import Journal, JournalError, JournalFull, queue_bound
from meterlink.engine.scheduler import LinkScheduler, MeterState, to_readings
from meterlink.engine.sinks import Sink

BOUNDS_EVERY = 5.0  # seconds between journal bound checks
READ_NOW_COMMIT_WAIT = 2.0  # seconds a call-up read waits for its commit before it answers anyway
OPEN_RETRY = 2.0  # seconds between tries to open a journal on a full disk
LINK_RESTART_MAX = 60.0  # seconds between restarts of a link task that keeps failing, at most
LINK_STABLE = 300.0  # seconds a restarted link task must run before its backoff starts again from 1 s
BatchListener = Callable[[str, int, list[Reading]], None]
WaitReport = Callable[[str], None]


@dataclass(slots=True)
class LinkTaskState:
    """How often a link's poll task failed and was restarted (``meterlink_link_restarts_total``)."""

    restarts: int = 0
    last_error: str | None = None


class Gateway:
    def __init__(self, config: Config, *, keep_latest: bool = False) -> None:
        self.config = config
        self.keep_latest = keep_latest  # the latest reading per point, for live views (the demo table)
        self.id = config.gateway.id
        queue_bytes = config.journal.queue_bytes or queue_bound(sum(len(m.points) for m in config.meters.values()))
        self.journal = Journal(config.data_dir, self.id, max_bytes=config.journal.max_bytes,
                               max_age=config.journal.max_age, queue_bytes=queue_bytes)
        self.schedulers: dict[str, LinkScheduler] = {}
        for lid, link in config.links.items():
            meters = [m for m in config.meters.values() if m.link == lid]
            if meters:
                self.schedulers[lid] = LinkScheduler(link, meters, create_driver(link, self.journal), gateway=self.id,
                                                     on_message=self._on_message, on_status=self._on_status)
        self.latest: dict[str, dict[str, Reading]] = {}
        self.batch_listeners: list[BatchListener] = []
        self.status_listeners: list[Callable[[MeterState], None]] = []
        self.started = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.sinks: list[Sink] = []
        self.link_tasks: dict[str, LinkTaskState] = {lid: LinkTaskState() for lid in self.schedulers}

    @property
    def journal_error(self) -> str | None:
        """Why the journal cannot be written now (e.g. "disk full: ..."); None while writes succeed."""
        return self.journal.problem

    def link_alive(self, link_id: str) -> bool | None:
        """Whether the link's poll task is running (None: no such link task)."""
        for t in self._tasks:
            if t.get_name() == f"meterlink[{link_id}].poll":
                return not t.done()
        return None

    def _make_sinks(self) -> None:
        """Sinks read secrets when they start, so a missing token file is reported before polling begins."""
        base = self.config.path.parent if self.config.path else None
        if self.config.sinks.mqtt is not None:
            from meterlink.engine.sinks.mqtt import MqttSink

            mqtt = MqttSink(self.config.sinks.mqtt, self.journal, self.id, base=base,
                            handlers={"read": self._cmd_read, "status": self._cmd_status,
                                      "sync_time": self._cmd_sync_time},
                            meter_statuses=self._meter_statuses, meters=list(self.config.meters.values()))
            self.status_listeners.append(lambda ms: mqtt.meter_status_changed(ms.meter.id, ms.status()))
            self.sinks.append(mqtt)
        if self.config.sinks.influxdb is not None:
            from meterlink.engine.sinks.influx import InfluxSink

            self.sinks.append(InfluxSink(self.config.sinks.influxdb, self.journal, base=base))
        self.journal.sink_names = [s.name for s in self.sinks]

    def _meter_statuses(self) -> dict[str, dict[str, object]]:
        return {mid: ms.status() for s in self.schedulers.values() for mid, ms in s.meters.items()
                if ms.online is not None}

    async def _cmd_read(self, req: Request) -> str:
        meter = req.args["meter"]
        if meter not in self.config.meters:
            raise CommandError(f"unknown meter {meter[:64]!r} (meters: {', '.join(sorted(self.config.meters))})",
                               req.id)
        readings = await self.read_now(meter, req.args.get("points"))
        body = ", ".join(r.to_json() for r in readings)
        return f'{{"meter": {json.dumps(meter)}, "readings": [{body}]}}'

    async def _cmd_sync_time(self, req: Request) -> str:
        meter = req.args["meter"]
        if meter not in self.config.meters:
            raise CommandError(f"unknown meter {meter[:64]!r} (meters: {', '.join(sorted(self.config.meters))})",
                               req.id)
        requester = str(req.args.get("requester") or "mqtt")[:64]
        return json.dumps(await self.sync_time(meter, requester=f"mqtt:{requester}"))

    async def sync_time(self, meter_id: str, *, requester: str) -> dict[str, object]:
        from meterlink.engine.timesync import sync_time

        meter = self.config.meters[meter_id]
        return await self.schedulers[meter.link].with_driver(
            lambda driver: sync_time(driver, meter, requester=requester))

    async def _cmd_status(self, req: Request) -> str:
        return json.dumps(self.status())

    def meter_state(self, meter_id: str) -> MeterState | None:
        m = self.config.meters.get(meter_id)
        return None if m is None else self.schedulers[m.link].meters[meter_id]

    def _on_message(self, meter: Meter, ts: datetime, readings: list[Reading]) -> asyncio.Future[int]:
        """Hand a poll's readings to the journal's queue (never waits); listeners hear of them once committed."""
        fut = self.journal.submit(meter.id, ts, readings)
        fut.add_done_callback(lambda f: self._committed(meter, readings, f))
        return fut

    def _committed(self, meter: Meter, readings: list[Reading], fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # dropped from a full queue, or not written at stop: counted and logged by the journal
        seq = fut.result()
        if self.keep_latest:
            latest = self.latest.setdefault(meter.id, {})
            for r in readings:
                latest[r.obis] = r
        for listener in self.batch_listeners:
            listener(meter.id, seq, readings)

    def _on_status(self, ms: MeterState) -> None:
        for listener in self.status_listeners:
            listener(ms)

    async def start(self, *, waiting: WaitReport | None = None, stop: asyncio.Event | None = None) -> bool:
        """Open the journal, start sinks and links; False if ``stop`` was set while waiting for the journal.

        A full disk at start is waited out (``waiting`` hears why, e.g. to tell
        systemd), as it clears by itself once space is freed: exiting would only
        have the service manager give up after a few restarts.
        """
        _raise_file_limit()
        logged: str | None = None
        while True:
            try:
                self.journal.open()
                break
            except JournalFull as exc:
                if logged is None:
                    logs.error("journal: disk full at start, waiting for space", error=str(exc),
                               retry_every_s=f"{OPEN_RETRY:g}")
                logged = str(exc)
                if waiting is not None:
                    waiting(f"journal: {exc}")
                if stop is None:
                    await asyncio.sleep(OPEN_RETRY)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), OPEN_RETRY)
                    if stop.is_set():
                        return False
        if logged is not None:
            logs.info("journal: space is back, starting", journal=str(self.journal.path))
        try:
            self._make_sinks()
        except MeterlinkError:
            self.journal.close()
            raise
        self.journal.start()
        for sink in self.sinks:
            self._tasks.append(asyncio.create_task(sink.run(), name=f"meterlink.sink.{sink.name}"))
        self._tasks.append(asyncio.create_task(self._bounds_loop(), name="meterlink.journal.bounds"))
        for lid, sched in self.schedulers.items():
            self._tasks.append(asyncio.create_task(self._run_link(sched), name=f"meterlink[{lid}].poll"))
        logs.info("gateway started", gateway=self.id, links=len(self.schedulers), meters=len(self.config.meters),
                  journal=str(self.journal.path), epoch=self.journal.epoch, version=__version__)
        self.ready.set()
        return True

    async def _run_link(self, sched: LinkScheduler) -> None:
        """Run a link's poll loop for good: whatever ends it (a bug, an unexpected error) restarts it with backoff.

        A dead link task reads nothing and says nothing, so it is never left
        dead: each restart is logged and counted (``meterlink_link_restarts_total``).
        """
        state = self.link_tasks.setdefault(sched.link.id, LinkTaskState())
        backoff = Backoff(first=1.0, cap=LINK_RESTART_MAX)
        while True:
            started = time.monotonic()
            try:
                await sched.run()
                if not sched.meters:
                    return  # nothing to poll on this link
                raise RuntimeError("poll loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not take this link, or the others, down for good
                if time.monotonic() - started > LINK_STABLE:
                    backoff.reset()
                delay = backoff.next()
                state.restarts += 1
                state.last_error = repr(exc)[:300]
                logs.error("link task failed, restarting it", link=sched.link.id, error=state.last_error,
                           restarts=state.restarts, retry_in_s=f"{delay:g}")
                with contextlib.suppress(Exception):  # a fresh channel for the new task
                    await sched.close()
                await asyncio.sleep(delay)

    async def _bounds_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(BOUNDS_EVERY)
            try:
                dropped = await loop.run_in_executor(None, self.journal.enforce_bounds)
                dropped += self.journal.take_dropped()
            except (JournalError, sqlite3.Error) as exc:  # e.g. a full disk: the loop goes on, next time may do
                logs.error("journal bound check failed", error=str(exc))
                continue
            if dropped:
                logs.warning("journal full: dropped undelivered readings", dropped_batches=dropped,
                             dropped_total=self.journal.counts()["dropped"])

    async def stop(self) -> None:
        for sink in self.sinks:
            await sink.stop()
        for t in self._tasks:  # stop polling first; the journal then commits what was acquired
            if t.get_name().endswith("].poll"):
                t.cancel()
        await self.journal.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # a task that failed while stopping: say so, and stop the rest
                logs.warning("task failed while stopping", task=t.get_name(), error=repr(exc)[:300])
        self._tasks.clear()
        for sched in self.schedulers.values():
            try:
                await sched.close()
            except Exception as exc:
                logs.warning("closing a link failed while stopping", link=sched.link.id, error=repr(exc)[:300])
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
        results = await sched.read(meter, points)  # COMMAND priority: a due poll goes first
        readings = to_readings(self.id, meter, ts, results)
        fut = self._on_message(meter, ts, readings)
        # answer once the readings are on disk, as before; a failing journal must not hold the answer for long
        with contextlib.suppress(TimeoutError, JournalError):
            await asyncio.wait_for(asyncio.shield(fut), READ_NOW_COMMIT_WAIT)
        return readings

    def status(self) -> dict[str, object]:
        links = {}
        for lid, s in self.schedulers.items():
            task = self.link_tasks.get(lid) or LinkTaskState()
            links[lid] = {"utilization": round(s.state.utilization(), 4), "polls": s.state.polls,
                          "errors": s.state.errors, "transactions": s.driver.counters.transactions,
                          "timeouts": s.driver.counters.timeouts, "last_error": s.state.last_error,
                          "restarts": task.restarts}
        meters = {}
        for s in self.schedulers.values():
            for mid, ms in s.meters.items():
                meters[mid] = {**ms.status(), "link": s.link.id, "polls_ok": ms.polls_ok,
                               "polls_failed": ms.polls_failed, "late_polls": ms.late_polls,
                               "missed_polls": ms.missed_polls,
                               "latency_s": None if ms.last_latency is None else round(ms.last_latency, 4)}
        sinks = {}
        for sink in self.sinks:
            c = sink.counters
            sinks[sink.name] = {"connected": c.connected, "backlog": self.journal.backlog(sink.name),
                                "delivered_readings": c.delivered_readings, "failures": c.failures,
                                "last_error": c.last_error}
        return {"gateway": self.id, "version": __version__, "ts": format_ts(datetime.now().astimezone()),
                "uptime_s": round(time.time() - self.started, 1), "links": links, "meters": meters,
                "sinks": sinks, "journal": self.journal_status()}

    def journal_status(self) -> dict[str, object]:
        """The journal's figures (no table scan) plus its health: ``problem`` is e.g. "disk full: ..." or None."""
        doc: dict[str, object] = {**self.journal.counts(), "epoch": self.journal.epoch,
                                  "problem": self.journal.problem, "queue_limit_bytes": self.journal.queue_bytes}
        if self.journal.replaced:
            doc["replaced"] = self.journal.replaced
        return doc


def _raise_file_limit() -> None:
    """A TCP meter is a socket: a gateway with thousands of them needs more than the usual 1,024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
