"""The figures of a running gateway as Prometheus metrics (``/metrics``).

Why a custom collector: every figure already lives in the running gateway (the
schedulers' :class:`~meterlink.engine.scheduler.LinkState` and
:class:`~meterlink.engine.scheduler.MeterState`, the drivers' counters, the sinks'
counters, the journal).  :class:`GatewayCollector` reads them when Prometheus
scrapes, so there is no second set of counters to keep in step with the first
and nothing to update on the polling path.

Metric names follow the Prometheus conventions: ``meterlink_`` prefix, base
units (seconds, bytes), ``_total`` for counters, ``_timestamp_seconds`` for
times.  Every series carries the ``gateway`` label so one dashboard can show
many gateways next to the meter data they deliver (labelled ``gateway`` too).
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from meterlink import __version__

if TYPE_CHECKING:
    from meterlink.engine.gateway import Gateway

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
                          "last 256 polls); growing lateness means the link is overbooked.", "summary")
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
        rows = CounterMetricFamily("meterlink_sink_delivered_messages", "Data messages the sink delivered.", labels=lab)
        readings = CounterMetricFamily("meterlink_sink_delivered_readings", "Readings the sink delivered.", labels=lab)
        failures = CounterMetricFamily("meterlink_sink_failures", "Failed connections or writes.", labels=lab)
        connected = GaugeMetricFamily("meterlink_sink_connected",
                                      "1 while the sink is connected (MQTT) or its last write succeeded (InfluxDB).",
                                      labels=lab)
        for sink in self.gw.sinks:
            c = sink.counters
            key = [gid, sink.name]
            backlog.add_metric(key, self.gw.journal.backlog(sink.name))
            rows.add_metric(key, c.delivered_messages)
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


