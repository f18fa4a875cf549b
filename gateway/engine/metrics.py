"""Metrics and health on the optional ``http`` listener (CONTRACT section 3): /metrics, /healthz, /readyz, /status.

Why a custom collector: every figure already lives in the running gateway (the
schedulers' :class:`~meterlink.engine.scheduler.LinkState` and
:class:`~meterlink.engine.scheduler.MeterState`, the drivers' counters, the sinks'
counters, the journal).  :class:`GatewayCollector` reads them when Prometheus
scrapes, so there is no second set of counters to keep in step with the first
and nothing to update on the polling path.

Why a hand-written HTTP server: four GET endpoints on the gateway's own event
loop, so an answer from /healthz proves the loop runs.  prometheus-client's
server runs in a thread and would answer even with the loop hung.  The journal's
figures are kept as rows come and go (no ``count(*)`` per scrape); scrapes and
/status still run in a worker thread, so they never hold up a poll.

Health has two questions, two endpoints:

``/healthz`` (liveness, and what feeds the systemd watchdog)
    the event loop answers, every link's poll loop is running, and no link has
    been stuck in one read while its next poll is long overdue
    (:class:`Liveness`).  A failure here is cured by a restart.
``/readyz`` (readiness)
    the journal takes a write, and every link produced a successful read within
    3 intervals of one of its meters (:class:`Readiness`).  A failure here is a
    meter, a cable or a disk to look at; a restart does not fix it.  A journal
    that fails a write says so at once ("journal: disk full: ..."), from the
    writer's own last attempt, not only from the periodic probe.

Metric names follow the Prometheus conventions: ``meterlink_`` prefix, base
units (seconds, bytes), ``_total`` for counters, ``_timestamp_seconds`` for
times.  Every series carries the ``gateway`` label so one dashboard can show
many gateways next to the meter data they deliver (labelled ``gateway`` too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from meterlink import __version__
from meterlink.core import logs
from meterlink.core.errors import MeterlinkError
from meterlink.engine.journal import JournalError

if TYPE_CHECKING:
    from meterlink.core.config import HttpConfig, Link
    from meterlink.engine.gateway import Gateway
    from meterlink.engine.scheduler import LinkScheduler

READY_INTERVALS = 3  # /readyz: a link must have read a meter successfully within this many of its intervals
HUNG_MIN = 120.0  # seconds: a link idle this long with a poll this overdue is hung (at least; see hung_after)
JOURNAL_PROBE_EVERY = 5.0  # seconds: /readyz writes to the journal at most this often
REQUEST_TIMEOUT = 10.0  # seconds to receive a request's head
MAX_HEAD = 8192  # bytes of request line + headers
# The classic text format every Prometheus (and VictoriaMetrics, Telegraf) parses; our names are all legacy-safe,
# so prometheus-client's output is the same in it (newer clients announce version=1.0.0, which old servers reject).
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


# --------------------------------------------------------------------------- metrics


class GatewayCollector(Collector):
    """Reads a running :class:`Gateway`'s state at scrape time and returns it as metric families."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Metric]:
        gid = self.gw.id
        yield from self._build_info(gid)
        yield from self._links(gid)
        yield from self._meters(gid)
        yield from self._journal(gid)
        yield from self._sinks(gid)

    def _build_info(self, gid: str) -> Iterator[Metric]:
        info = GaugeMetricFamily("meterlink_build_info", "Meterlink version running this gateway (always 1).",
                                 labels=["gateway", "version", "python"])
        info.add_metric([gid, __version__, platform.python_version()], 1)
        yield info
        started = GaugeMetricFamily("meterlink_start_time_seconds", "When this gateway process started (Unix time).",
                                    labels=["gateway"])
        started.add_metric([gid], self.gw.started)
        yield started

    def _links(self, gid: str) -> Iterator[Metric]:
        lab = ["gateway", "link"]
        duration = SummaryMetricFamily("meterlink_link_read_duration_seconds",
                                       "Time the link was held by meter reads (one per poll or call-up read).",
                                       labels=lab)
        busy = CounterMetricFamily("meterlink_link_busy_seconds",
                                   "Time the link spent in reads; rate() of it is the link's utilization.", labels=lab)
        families = {
            "transactions": CounterMetricFamily("meterlink_link_transactions", "Request/reply exchanges on the link.",
                                                labels=lab),
            "timeouts": CounterMetricFamily("meterlink_link_timeouts", "Requests that got no reply in time.",
                                            labels=lab),
            "frame_errors": CounterMetricFamily("meterlink_link_frame_errors",
                                                "Replies that were not valid frames (checksum, length).", labels=lab),
            "rejections": CounterMetricFamily("meterlink_link_rejections", "Protocol error replies from meters.",
                                              labels=lab),
        }
        errors = CounterMetricFamily("meterlink_link_errors", "Meter reads on the link that failed as a whole.",
                                     labels=lab)
        # a summary (quantiles, _sum, _count over the recent polls): a gauge may not carry "quantile" (promtool)
        lateness = Metric("meterlink_link_poll_lateness_seconds",
                          "How late the link's recent polls started after their moment (quantiles of the "
                          "last 2,048 polls); growing lateness means the link is overbooked.", "summary")
        is_open = GaugeMetricFamily("meterlink_link_open", "1 while the link's channel (port, socket) is open.",
                                    labels=lab)
        restarts = CounterMetricFamily("meterlink_link_restarts",
                                       "Times the link's poll task failed (a bug, an unexpected error) and was "
                                       "restarted.", labels=lab)
        for lid, sched in self.gw.schedulers.items():
            st = sched.state
            duration.add_metric([gid, lid], count_value=st.polls, sum_value=st.busy)
            busy.add_metric([gid, lid], st.busy)
            for attr, fam in families.items():
                fam.add_metric([gid, lid], getattr(sched.driver.counters, attr, 0))
            errors.add_metric([gid, lid], st.errors)
            is_open.add_metric([gid, lid], 1 if st.open else 0)
            task = self.gw.link_tasks.get(lid)
            restarts.add_metric([gid, lid], task.restarts if task is not None else 0)
            recent = _snapshot(getattr(st, "lateness", ()))
            if recent:
                name, where = lateness.name, {"gateway": gid, "link": lid}
                for q in (0.5, 0.9, 0.99):
                    lateness.add_sample(name, {**where, "quantile": str(q)},
                                        recent[min(int(q * len(recent)), len(recent) - 1)])
                lateness.add_sample(f"{name}_sum", where, sum(recent))
                lateness.add_sample(f"{name}_count", where, len(recent))
        yield from (duration, busy, *families.values(), errors, is_open, restarts, lateness)

    def _meters(self, gid: str) -> Iterator[Metric]:
        lab = ["gateway", "link", "meter"]
        reads = CounterMetricFamily("meterlink_meter_reads", "Scheduled meter reads by result (ok, failed).",
                                    labels=[*lab, "result"])
        invalid = CounterMetricFamily("meterlink_meter_points_invalid",
                                      "Points a meter answered with an error or an impossible value.", labels=lab)
        late = CounterMetricFamily("meterlink_meter_late_polls",
                                   "Polls that started more than 1 s after their moment.", labels=lab)
        missed = CounterMetricFamily("meterlink_meter_missed_polls",
                                     "Poll moments that passed before a poll could start.", labels=lab)
        online = GaugeMetricFamily("meterlink_meter_online",
                                   "1 if the meter's last read succeeded, 0 if it failed (absent before the first).",
                                   labels=lab)
        last_ok = GaugeMetricFamily("meterlink_meter_last_success_timestamp_seconds",
                                    "When the meter was last read successfully (Unix time).", labels=lab)
        latency = GaugeMetricFamily("meterlink_meter_read_latency_seconds",
                                    "How long the meter's last read held the link.", labels=lab)
        for lid, sched in self.gw.schedulers.items():
            for mid, ms in sched.meters.items():
                key = [gid, lid, mid]
                reads.add_metric([*key, "ok"], ms.polls_ok)
                reads.add_metric([*key, "failed"], ms.polls_failed)
                invalid.add_metric(key, ms.points_invalid)
                late.add_metric(key, ms.late_polls)
                missed.add_metric(key, ms.missed_polls)
                if ms.online is not None:
                    online.add_metric(key, 1 if ms.online else 0)
                if ms.last_ok is not None:
                    last_ok.add_metric(key, ms.last_ok.timestamp())
                if ms.last_latency is not None:
                    latency.add_metric(key, ms.last_latency)
        yield from (reads, invalid, late, missed, online, last_ok, latency)

    def _journal(self, gid: str) -> Iterator[Metric]:
        counts = self.gw.journal.counts()
        lab = ["gateway"]
        for name, doc, value in (
            ("meterlink_journal_rows", "Data messages (one meter's readings of one poll) in the journal.",
             counts["rows"]),
            ("meterlink_journal_readings", "Readings in the journal.", counts["readings"]),
            ("meterlink_journal_bytes", "Size of the journal files (database and write-ahead log).", counts["bytes"]),
            ("meterlink_journal_limit_bytes", "journal.max_bytes: the bound the journal is kept within.",
             self.gw.journal.max_bytes),
        ):
            g = GaugeMetricFamily(name, doc, labels=lab)
            g.add_metric([gid], value)
            yield g
        dropped = CounterMetricFamily("meterlink_journal_dropped_rows",
                                      "Undelivered rows dropped to keep the journal within its bounds.", labels=lab)
        dropped.add_metric([gid], counts["dropped"])
        yield dropped
        journal = self.gw.journal
        for name, doc, value in (
            ("meterlink_journal_queue_batches", "Data messages acquired and waiting in memory for the journal.",
             counts["queued"]),
            ("meterlink_journal_queue_bytes", "Bytes of the data messages waiting in memory for the journal.",
             counts["queued_bytes"]),
            ("meterlink_journal_queue_limit_bytes", "journal.queue_bytes: the bound of the memory queue.",
             journal.queue_bytes),
            ("meterlink_journal_writable", "1 while the journal takes writes, 0 while they fail (disk full ...).",
             0 if journal.problem else 1),
            ("meterlink_journal_replaced", "1 when this start found the journal damaged or lost and started a new "
             "one (new epoch; see the log and /status journal.replaced).", 1 if journal.replaced else 0),
        ):
            g = GaugeMetricFamily(name, doc, labels=lab)
            g.add_metric([gid], value)
            yield g
        qdropped = CounterMetricFamily("meterlink_journal_queue_dropped_batches",
                                       "Data messages dropped unwritten from a full memory queue while the journal "
                                       "could not be written.", labels=lab)
        qdropped.add_metric([gid], counts["queue_dropped"])
        yield qdropped
        failures = CounterMetricFamily("meterlink_journal_write_failures", "Group commits that failed.", labels=lab)
        failures.add_metric([gid], journal.write_failures)
        yield failures

    def _sinks(self, gid: str) -> Iterator[Metric]:
        lab = ["gateway", "sink"]
        backlog = GaugeMetricFamily("meterlink_sink_backlog_rows", "Journal rows the sink has not delivered yet.",
                                    labels=lab)
        rows = CounterMetricFamily("meterlink_sink_delivered_rows", "Data messages the sink delivered.", labels=lab)
        readings = CounterMetricFamily("meterlink_sink_delivered_readings", "Readings the sink delivered.", labels=lab)
        failures = CounterMetricFamily("meterlink_sink_failures", "Failed connections or writes.", labels=lab)
        connected = GaugeMetricFamily("meterlink_sink_connected",
                                      "1 while the sink is connected (MQTT) or its last write succeeded (InfluxDB).",
                                      labels=lab)
        for sink in self.gw.sinks:
            c = sink.counters
            key = [gid, sink.name]
            backlog.add_metric(key, self.gw.journal.backlog(sink.name))
            rows.add_metric(key, c.delivered_batches)
            readings.add_metric(key, c.delivered_readings)
            failures.add_metric(key, c.failures)
            connected.add_metric(key, 1 if c.connected else 0)
        yield from (backlog, rows, readings, failures, connected)


def _snapshot(values: Iterable[float]) -> list[float]:
    """A sorted copy of a deque the event loop appends to while a scrape (another thread) reads it."""
    for _ in range(5):
        try:
            return sorted(values)
        except RuntimeError:  # "deque mutated during iteration": take it again
            continue
    return []


def make_registry(gw: Gateway) -> CollectorRegistry:
    """The gateway's collector plus the usual process_* and python_* metrics, in a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gw))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# --------------------------------------------------------------------------- health


def hung_after(link: Link) -> float:
    """How long a link may go without finishing a read, with a poll overdue, before it counts as hung.

    Far longer than any legitimate read: a silent meter costs ``timeout x tries``
    and the driver gives up on it at once; a healthy batch is a few transactions.
    """
    return max(HUNG_MIN, 20 * link.timeout * link.tries)


class Liveness:
    """Whether the gateway is still making progress; the one judgement behind /healthz and the watchdog.

    It is called periodically (the watchdog task, /healthz probes) and
    remembers when each link's read count last moved.  A link is hung when that
    count has not moved for :func:`hung_after` *and* its next poll is overdue by
    as much: a link idle until its next 15-minute moment is not hung.  A link
    whose poll loop ended (a bug raised out of it) is dead.
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._progress: dict[str, tuple[int, float]] = {}

    def check(self, *, now: float | None = None, mono: float | None = None) -> list[str]:
        """Problems found, one line each; empty when alive."""
        now = time.time() if now is None else now
        mono = time.monotonic() if mono is None else mono
        problems = []
        for lid in self.gw.schedulers:
            if self.gw.link_alive(lid) is False:  # None: not started (yet), not judged
                problems.append(f"link {lid}: poll loop ended")
        for lid, sched in self.gw.schedulers.items():
            problem = self._link_hung(lid, sched, now, mono)
            if problem:
                problems.append(problem)
        return problems

    def _link_hung(self, lid: str, sched: LinkScheduler, now: float, mono: float) -> str | None:
        since = sched.state.busy_since
        # one read may legitimately take minutes (a DLMS load-profile backfill at 2400 baud): 15 min at least
        if since is not None and mono - since > max(900.0, hung_after(sched.link)):
            return f"link {lid}: one read has been running for {mono - since:.0f} s"
        polls = sched.state.polls
        seen = self._progress.get(lid)
        if seen is None or seen[0] != polls:
            self._progress[lid] = (polls, mono)
            return None
        if not sched.meters:
            return None
        stalled = mono - seen[1]
        overdue = now - min(ms.next_due() for ms in sched.meters.values())
        limit = hung_after(sched.link)
        if stalled > limit and overdue > limit:
            return f"link {lid}: no read finished for {stalled:.0f} s while a poll is {overdue:.0f} s overdue"
        return None


class Readiness:
    """Whether the gateway does its job: the journal takes writes and every link produces readings."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._journal_checked = -JOURNAL_PROBE_EVERY
        self._journal_problem: str | None = None

    def links(self, now: float | None = None) -> list[str]:
        """One line per link none of whose meters was read successfully within 3 of its intervals."""
        now = time.time() if now is None else now
        problems = []
        for lid, sched in self.gw.schedulers.items():
            fresh = False
            newest: datetime | None = None
            for ms in sched.meters.values():
                if ms.last_ok is None:
                    continue
                newest = ms.last_ok if newest is None else max(newest, ms.last_ok)
                interval = min(g.interval for g in ms.groups)
                if now - ms.last_ok.timestamp() <= READY_INTERVALS * interval:
                    fresh = True
                    break
            if not fresh:
                if newest is None:
                    problems.append(f"link {lid}: no successful read yet")
                else:
                    problems.append(f"link {lid}: no successful read within {READY_INTERVALS} intervals "
                                    f"(last {now - newest.timestamp():.0f} s ago)")
        return problems

    def probe_journal(self) -> str | None:
        """Write one small row to the journal (blocking: call it in a thread); the problem, or None."""
        try:
            self.gw.journal.set_state("meterlink.readyz", datetime.now(UTC).isoformat())
        except JournalError as exc:
            return f"journal: {exc}"
        except (sqlite3.Error, OSError) as exc:
            return f"journal: not writable: {self.gw.journal.path}: {exc}"
        return None

    async def check(self) -> list[str]:
        problems = []
        if self.gw.journal.problem:  # the writer's own last attempt failed: say so at once, no probe needed
            return [f"journal: {self.gw.journal.problem}", *self.links()]
        if time.monotonic() - self._journal_checked >= JOURNAL_PROBE_EVERY:
            try:
                self._journal_problem = await asyncio.wait_for(asyncio.to_thread(self.probe_journal), 5.0)
            except TimeoutError:
                self._journal_problem = f"journal {self.gw.journal.path}: a write took more than 5 s"
            self._journal_checked = time.monotonic()
        if self._journal_problem:
            problems.append(self._journal_problem)
        return problems + self.links()


# --------------------------------------------------------------------------- HTTP


class HttpServer:
    """GET /metrics, /healthz, /readyz, /status on the gateway's event loop; one request per connection."""

    def __init__(self, gw: Gateway, cfg: HttpConfig, liveness: Liveness | None = None) -> None:
        self.gw = gw
        self.cfg = cfg
        self.liveness = liveness or Liveness(gw)
        self.readiness = Readiness(gw)
        self.registry = make_registry(gw)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.cfg.host, self.cfg.port,
                                                      reuse_address=True, limit=MAX_HEAD)
        except OSError as exc:
            raise MeterlinkError(f"http: cannot listen on {self.cfg.host}:{self.cfg.port}: "
                                 f"{exc.strerror or exc}") from exc
        logs.info("http listening", host=self.cfg.host, port=self.port, endpoints="/metrics /healthz /readyz /status")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _respond(writer, 400, "bad request\n")
            return
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, "only GET and HEAD\n", extra={"Allow": "GET, HEAD"})
            return
        path = urlsplit(target).path
        try:
            status, ctype, body = await self.route(path)
        except Exception as exc:  # a bug in one endpoint answers 500; it must not reach the event loop
            logs.error("http request failed", path=path[:100], error=repr(exc))
            status, ctype, body = 500, "text/plain; charset=utf-8", f"internal error: {type(exc).__name__}\n"
        await _respond(writer, status, body, ctype=ctype, head_only=method == "HEAD")

    async def route(self, path: str) -> tuple[int, str, bytes | str]:
        """(status, content type, body) for a GET of ``path``."""
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            try:
                return 200, CONTENT_TYPE_METRICS, await asyncio.to_thread(generate_latest, self.registry)
            except (JournalError, sqlite3.Error) as exc:
                return 503, text, f"metrics unavailable: {exc}\n"
        if path == "/healthz":
            problems = self.liveness.check()
            return (503, text, "".join(p + "\n" for p in problems)) if problems else (200, text, "ok\n")
        if path == "/readyz":
            problems = await self.readiness.check()
            return (503, text, "".join(p + "\n" for p in problems)) if problems else (200, text, "ready\n")
        if path == "/status":
            try:
                doc = await asyncio.to_thread(status_doc, self.gw)
            except (JournalError, sqlite3.Error) as exc:
                return 503, text, f"status unavailable: {exc}\n"
            return 200, "application/json", json.dumps(doc) + "\n"
        if path == "/":
            return 200, text, "meterlink: /metrics /healthz /readyz /status\n"
        return 404, text, "not found: try /metrics /healthz /readyz /status\n"


def status_doc(gw: Gateway) -> dict[str, Any]:
    """:meth:`Gateway.status` plus what ``meterlink top`` needs for live rates: link busy seconds, poll intervals."""
    doc = gw.status()
    links, meters = doc["links"], doc["meters"]
    assert isinstance(links, dict) and isinstance(meters, dict)
    for lid, sched in gw.schedulers.items():
        links[lid]["busy_s"] = round(sched.state.busy, 4)
        links[lid]["meters"] = list(sched.meters)
        for mid, ms in sched.meters.items():
            meters[mid]["interval_s"] = min(g.interval for g in ms.groups)
    return doc


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes | str, *,
                   ctype: str = "text/plain; charset=utf-8", head_only: bool = False,
                   extra: dict[str, str] | None = None) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": ctype, "Content-Length": str(len(data)), "Connection": "close",
               "Cache-Control": "no-store", **(extra or {})}
    lines: Iterable[str] = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}", *(f"{k}: {v}" for k, v in headers.items()))
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else data))
    await writer.drain()
