"""InfluxDB sink: line protocol through ``/api/v2/write`` (CONTRACT section 7).

One point per reading: measurement ``meter`` (configurable), tags ``gateway``,
``meter``, ``obis``, ``unit`` (left out when the unit is dimensionless, as
line protocol has no empty tag values), field ``value`` written from the exact
decimal text, time = ``meter_ts`` or ``ts``.  InfluxDB 1.8+, 2.x, 3.x and
VictoriaMetrics all take this.  ``api: v1`` writes the same lines to InfluxDB
1.x's own ``/write?db=&rp=&precision=`` (1.7 and older have no v2 endpoint),
logging in with ``username`` and a password from ``password_file``.

The client's synchronous write API is used: its batching mode keeps an
in-memory retry buffer that drops data after its retries.  The journal is the
buffer: the cursor moves only after a 2xx answer.  A backlog is drained oldest
first in batches of up to ``batch_size`` points, and each batch leads with the
newest rows, so live load is not held behind an hour of backlog.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from meterlink.core import logs
from meterlink.core.backoff import Backoff
from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import parse_ts
from meterlink.core.secrets import read_secret
from meterlink.engine.journal import Journal, Message
from meterlink.engine.sinks import SinkCounters

if TYPE_CHECKING:
    from meterlink.core.config import InfluxConfig  # the sink gets its section as Settings of this model

BACKOFF_MAX = 60.0
_PRECISION = {"s": (WritePrecision.S, 1), "ms": (WritePrecision.MS, 1000), "us": (WritePrecision.US, 10**6),
              "ns": (WritePrecision.NS, 10**9)}


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _measurement(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def message_lines(batch: Message, measurement: str, per_second: int) -> list[str]:
    """The line-protocol points of one journaled data message (invalid readings have no value to write)."""
    doc = json.loads(batch.payload, parse_float=Decimal)
    gateway = _tag(doc["gateway"])
    meter = _tag(doc["meter"])
    m = _measurement(measurement)
    lines = []
    for r in doc["readings"]:
        value = r["value"]
        if value is None:
            continue
        when: datetime = parse_ts(r["meter_ts"] or r["ts"])
        stamp = int(Decimal(str(when.timestamp())) * per_second) if per_second > 1000 else \
            round(when.timestamp() * per_second)
        unit = f",unit={_tag(r['unit'])}" if r["unit"] else ""
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        lines.append(f"{m},gateway={gateway},meter={meter},obis={_tag(r['obis'])}{unit} value={text} {stamp}")
    return lines


class InfluxSink:
    name = "influxdb"

    def __init__(self, cfg: InfluxConfig, journal: Journal, *, base: Path | None = None) -> None:
        self.cfg = cfg
        self.journal = journal
        self.counters = SinkCounters()
        self._precision, self._per_second = _PRECISION[cfg.precision]
        self._client: InfluxDBClient | None = None
        self._v1: V1Writer | None = None
        if cfg.api == "v1":
            password = read_secret("sinks.influxdb.password_file", file=cfg.password_file, env=cfg.password_env,
                                   base=base)
            self._v1 = V1Writer(cfg, password)
        else:
            token = read_secret("sinks.influxdb.token_file", value=cfg.token, file=cfg.token_file,
                                env=cfg.token_env, base=base)
            self._client = InfluxDBClient(url=cfg.url, token=token or "", org=cfg.org or "-",
                                          timeout=int(cfg.timeout * 1000))
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._wake = journal.subscribe()

    def _write(self, lines: list[str]) -> None:
        if self._v1 is not None:
            self._v1.write("\n".join(lines))
            return
        self._write_api.write(bucket=self.cfg.bucket, org=self.cfg.org or "-", record="\n".join(lines),
                              write_precision=self._precision)

    def _next_rows(self, live_after: int) -> tuple[list[Message], list[Message]]:
        """Newest rows first (live load), then the oldest backlog, together at most ``batch_size`` points."""
        budget = self.cfg.batch_size
        rows = max(1, budget // 20)  # a data message holds tens of readings: fetch no more than a batch needs
        live = self.journal.messages(live_after, rows)
        take_live: list[Message] = []
        for b in live:
            if budget - b.n < 0 and take_live:
                break
            take_live.append(b)
            budget -= b.n
        cursor = self.journal.cursor(self.name)
        backlog: list[Message] = []
        if budget > 0 and cursor < live_after:
            for b in self.journal.messages(cursor, rows):
                if b.id > live_after or (budget - b.n < 0 and backlog):
                    break
                backlog.append(b)
                budget -= b.n
        return take_live, backlog

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        live_after = self.journal.counts()["last_id"]  # rows beyond this arrived since start: live
        backoff = Backoff(first=1.0, cap=BACKOFF_MAX)
        while True:
            live, backlog = await loop.run_in_executor(None, self._next_rows, live_after)
            if not live and not backlog:
                if self.journal.cursor(self.name) < live_after:
                    self.journal.set_cursor(self.name, live_after)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.cfg.flush_interval)
                continue
            lines = [line for b in backlog + live for line in message_lines(b, self.cfg.measurement, self._per_second)]
            try:
                if lines:
                    await loop.run_in_executor(None, self._write, lines)
            except Exception as exc:  # HTTP errors, refused connections, timeouts: the journal keeps the rows
                self.counters.failures += 1
                self.counters.connected = False
                self.counters.last_error = _short(exc)
                delay = backoff.next()
                logs.warning("influxdb write failed", url=self.cfg.url, error=self.counters.last_error,
                             points=len(lines), retry_in_s=f"{delay:.0f}")
                await asyncio.sleep(delay)
                continue
            if not self.counters.connected:
                logs.info("influxdb writes succeed", url=self.cfg.url)
            self.counters.connected = True
            backoff.reset()
            self.counters.delivered_messages += len(live) + len(backlog)
            self.counters.delivered_readings += len(lines)
            if live:
                live_after = live[-1].id
            if backlog:
                self.journal.set_cursor(self.name, backlog[-1].id)
            elif live and self.journal.cursor(self.name) >= live[0].id - 1:
                self.journal.set_cursor(self.name, live[-1].id)
            if not backlog and live and len(lines) < self.cfg.batch_size:
                # caught up: wait a little so points are written in batches, not one by one
                with contextlib.suppress(TimeoutError):
                    self._wake.clear()
                    await asyncio.wait_for(self._wake.wait(), timeout=min(self.cfg.flush_interval, 0.2))

    async def stop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception as exc:  # the client's own teardown: worth a line, never worth a crash on stop
                logs.warning("influxdb: closing the client failed", error=_short(exc))


class InfluxWriteError(MeterlinkError):
    """A write InfluxDB did not take: ``status`` is the HTTP status (0: no answer), ``body`` its reason."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}".strip() if status else reason)
        self.status = status
        self.reason = reason
        self.body = body


_V1_PRECISION = {"s": "s", "ms": "ms", "us": "u", "ns": "n"}


class V1Writer:
    """``POST /write`` of InfluxDB 1.x: 204 means stored; anything else leaves the rows in the journal.

    The password goes in a Basic authorization header, never in the URL (URLs end up in logs).
    """

    def __init__(self, cfg: InfluxConfig, password: str | None) -> None:
        params = {"db": cfg.database or "", "precision": _V1_PRECISION[cfg.precision]}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        self.url = cfg.url.rstrip("/") + "/write?" + urllib.parse.urlencode(params)
        self.timeout = cfg.timeout
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.username is not None:
            pair = f"{cfg.username}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    def write(self, body: str) -> None:
        req = urllib.request.Request(self.url, data=body.encode(), headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                if not 200 <= resp.status < 300:
                    raise InfluxWriteError(resp.status, resp.reason or "", resp.read(200).decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode(errors="replace") if exc.fp is not None else ""
            raise InfluxWriteError(exc.code, str(exc.reason or ""), _v1_error(detail)) from None
        except urllib.error.URLError as exc:
            raise InfluxWriteError(0, str(exc.reason)) from None


def _v1_error(body: str) -> str:
    """InfluxDB 1.x answers errors as ``{"error": "..."}``; keep the text."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("error", body))
    return body


def _short(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        body = str(getattr(exc, "body", "") or "")[:200]
        return f"HTTP {status} {reason or ''} {body}".strip()
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
