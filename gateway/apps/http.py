"""The optional ``http`` listener: /metrics, /healthz, /readyz and /status (docs/configuration.md ``http``).

Why a hand-written HTTP server: four GET endpoints on the gateway's own event
loop, so an answer from /healthz proves the loop runs.  prometheus-client's
server runs in a thread and would answer even with the loop hung.  The journal's
figures are kept as rows come and go (no ``count(*)`` per scrape); scrapes and
/status still run in a worker thread, so they never hold up a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import generate_latest

from meterlink.core import logs
from meterlink.core.errors import MeterlinkError
from meterlink.engine.health import Liveness, Readiness
from meterlink.engine.journal import JournalError
from meterlink.engine.metrics import make_registry

if TYPE_CHECKING:
    from meterlink.core.config import HttpConfig
    from meterlink.engine.gateway import Gateway

REQUEST_TIMEOUT = 10.0  # seconds to receive a request's head
MAX_HEAD = 8192  # bytes of request line + headers
# The classic text format every Prometheus (and VictoriaMetrics, Telegraf) parses; our names are all legacy-safe,
# so prometheus-client's output is the same in it (newer clients announce version=1.0.0, which old servers reject).
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


# --------------------------------------------------------------------------- metrics


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
