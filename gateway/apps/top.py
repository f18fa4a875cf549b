"""``meterlink top -c FILE``: a live terminal view of a running gateway.

Why over HTTP: the gateway runs as a service (its own user, its own journal
lock), so ``top`` cannot open the journal or attach to the process.  It reads
the JSON ``/status`` of the ``http`` listener named in the same configuration
file, once per ``--interval``, and shows per link the utilization and errors,
per meter whether it is online, its last read, latency and success rate, per
sink the backlog.  Link utilization is measured between two refreshes (busy
seconds over wall seconds), so it shows what the bus does now, not since start.

Small terminals lose the least important columns first, then the rows of
healthy meters (meters with a problem are listed first and kept longest); the
view never wraps into an unreadable mess.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meterlink.core.config import Config
from meterlink.core.reading import parse_ts


def status_url(config: Config) -> str | None:
    """The gateway's /status URL from its ``http`` section; a wildcard bind is reached over loopback."""
    if config.http is None:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(config.http.host, config.http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}/status"


def fetch(url: str, timeout: float = 3.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return dict(json.loads(resp.read()))


def _age(ts: str | None, now: float) -> str:
    if not ts:
        return "never"
    try:
        secs = now - parse_ts(ts).timestamp()
    except ValueError:
        return ts
    if secs < 120:
        return f"{max(secs, 0):.0f}s ago"
    if secs < 7200:
        return f"{secs / 60:.0f}m ago"
    return f"{secs / 3600:.1f}h ago"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


class Rates:
    """Link utilization between two refreshes, from the links' busy seconds."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def utilization(self, lid: str, link: dict[str, Any], now: float) -> float:
        busy = link.get("busy_s")
        if busy is None:
            return float(link.get("utilization") or 0.0)
        prev = self._last.get(lid)
        self._last[lid] = (now, float(busy))
        if prev is None or now - prev[0] <= 0:
            return float(link.get("utilization") or 0.0)
        return max(0.0, min(1.0, (float(busy) - prev[1]) / (now - prev[0])))


def _meter_rank(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
    mid, m = item
    return ({False: 0, None: 1, True: 2}.get(m.get("online"), 1), mid)


def render(status: dict[str, Any], width: int, height: int | None, rates: Rates | None = None,
           now: float | None = None, source: str = "") -> RenderableType:
    """The whole view for a terminal of ``width`` x ``height`` (None: as tall as needed)."""
    now = time.time() if now is None else now
    rates = rates or Rates()
    wide, narrow = width >= 110, width < 70
    j = status.get("journal", {})
    head = Text.assemble(
        (f"gateway {status.get('gateway')}", "bold"), f"  meterlink {status.get('version')}",
        f"  up {float(status.get('uptime_s') or 0) / 3600:.1f}h",
        f"  journal {j.get('rows', 0):,} rows {_bytes(float(j.get('bytes', 0)))}",
        (f"  dropped {j.get('dropped', 0):,}", "red" if j.get("dropped") else ""),
    )
    head.truncate(width, overflow="ellipsis")

    links = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
    links.add_column("link", no_wrap=True, max_width=24)
    links.add_column("util", justify="right", no_wrap=True)
    links.add_column("errors", justify="right", no_wrap=True)
    if not narrow:
        links.add_column("reads", justify="right", no_wrap=True)
        links.add_column("timeouts", justify="right", no_wrap=True)
    if wide:
        links.add_column("last error", no_wrap=True, max_width=width - 70)
    for lid, ln in status.get("links", {}).items():
        util = rates.utilization(lid, ln, now)
        row = [lid, Text(f"{util:.0%}", style="red" if util > 0.9 else "yellow" if util > 0.7 else ""),
               Text(str(ln.get("errors", 0)), style="red" if ln.get("errors") else "")]
        if not narrow:
            row += [f"{ln.get('polls', 0):,}", str(ln.get("timeouts", 0))]
        if wide:
            row.append(_cut(ln.get("last_error"), max(width - 70, 10)))
        links.add_row(*row)

    sinks = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
    sinks.add_column("sink", no_wrap=True)
    sinks.add_column("state", no_wrap=True)
    sinks.add_column("backlog", justify="right", no_wrap=True)
    if not narrow:
        sinks.add_column("delivered", justify="right", no_wrap=True)
    if wide:
        sinks.add_column("last error", no_wrap=True, max_width=width - 60)
    for name, sk in status.get("sinks", {}).items():
        state = Text("connected", "green") if sk.get("connected") else Text("down", "red")
        row = [name, state, Text(f"{sk.get('backlog', 0):,}", style="yellow" if sk.get("backlog", 0) > 100 else "")]
        if not narrow:
            row.append(f"{sk.get('delivered_readings', 0):,}")
        if wide:
            row.append(_cut(sk.get("last_error"), max(width - 60, 10)))
        sinks.add_row(*row)

    meter_items = sorted(status.get("meters", {}).items(), key=_meter_rank)
    shown = len(meter_items)
    compact = False
    if height is not None:
        n_links, n_sinks = len(status.get("links", {})), len(status.get("sinks", {}))
        fixed = 1 + (2 + n_links) + (2 + n_sinks if n_sinks else 0) + 1 + 2  # head, links, sinks, foot, meter head
        if height - fixed < min(len(meter_items), 4):  # too short for tables: one line each for links and sinks
            compact = True
            fixed = 1 + 1 + (1 if n_sinks else 0) + 1 + 2
        room = max(height - fixed, 2)
        if room < len(meter_items):
            shown = room - 1  # one line says how many are left out
    meters = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
    meters.add_column("meter", no_wrap=True, max_width=24)
    meters.add_column("state", no_wrap=True)
    meters.add_column("last read" if not narrow else "last", justify="right", no_wrap=True)
    tiny = width < 50
    if not tiny:
        meters.add_column("latency", justify="right", no_wrap=True)
    if not narrow:
        meters.add_column("ok %", justify="right", no_wrap=True)
        meters.add_column("link", no_wrap=True, max_width=16)
        meters.add_column("late", justify="right", no_wrap=True)
    if wide:
        meters.add_column("error", no_wrap=True, max_width=width - 90)
    for mid, m in meter_items[:shown]:
        state = {True: Text("online", "green"), False: Text("offline", "red")}.get(m.get("online"),
                                                                                    Text("starting", "yellow"))
        lat = m.get("latency_s")
        ok, failed = int(m.get("polls_ok") or 0), int(m.get("polls_failed") or 0)
        rate = f"{ok / (ok + failed):.0%}" if ok + failed else "-"
        age = _age(m.get("last_ok"), now)
        row: list[RenderableType] = [mid, state, age.removesuffix(" ago") if narrow else age]
        if not tiny:
            row.append("-" if lat is None else f"{lat * 1000:.0f} ms")
        if not narrow:
            row += [Text(rate, style="red" if ok + failed and ok / (ok + failed) < 0.9 else ""), str(m.get("link", "")),
                    str(m.get("late_polls", 0))]
        if wide:
            row.append(_cut(m.get("error"), max(width - 90, 10)))
        meters.add_row(*row)
    parts: list[RenderableType] = [head, _links_line(status, rates, now, width) if compact else links, meters]
    if shown < len(meter_items):
        parts.append(Text(f"… {len(meter_items) - shown} more meters (all online)"
                          if all(m.get("online") for _, m in meter_items[shown:])
                          else f"… {len(meter_items) - shown} more meters", style="dim"))
    if status.get("sinks"):
        parts.append(_sinks_line(status, width) if compact else sinks)
    foot = Text(f"{source}  {datetime.fromtimestamp(now).strftime('%H:%M:%S')}  Ctrl-C to quit", style="dim")
    foot.truncate(width, overflow="ellipsis")
    parts.append(foot)
    return Group(*parts)


def _links_line(status: dict[str, Any], rates: Rates, now: float, width: int) -> Text:
    links = status.get("links", {})
    utils = [rates.utilization(lid, ln, now) for lid, ln in links.items()]
    errors = sum(int(ln.get("errors") or 0) for ln in links.values())
    t = Text(f"{len(links)} links, busiest {max(utils, default=0):.0%}, {errors:,} errors")
    t.truncate(width, overflow="ellipsis")
    return t


def _sinks_line(status: dict[str, Any], width: int) -> Text:
    t = Text("sinks ")
    for name, sk in status.get("sinks", {}).items():
        t.append(f"{name} ")
        t.append("ok" if sk.get("connected") else "down", "green" if sk.get("connected") else "red")
        t.append(f" {sk.get('backlog', 0):,}  ")
    t.truncate(width, overflow="ellipsis")
    return t


def _unreachable(url: str, error: str, width: int) -> RenderableType:
    t = Text.assemble(("gateway not reachable", "bold red"), f" at {url}: {error}\n",
                      ("is `meterlink run` running with this configuration's http section? retrying…", "dim"))
    t.truncate(width * 3, overflow="ellipsis")
    return t


def run_top(config: Config, args: argparse.Namespace) -> int:
    url = status_url(config)
    if url is None:
        print(f"meterlink top: {config.path}: no http section; top reads the gateway's /status there "
              "(add `http: {port: 9108}` and restart the gateway)", file=sys.stderr)
        return 2
    console = Console()
    rates = Rates()
    if args.once:
        try:
            status = fetch(url)
        except (OSError, ValueError) as exc:
            print(f"meterlink top: gateway not reachable at {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            return 1
        height = console.height if console.is_terminal else None
        console.print(render(status, console.width, height, rates, source=url))
        return 0
    try:
        with Live(console=console, screen=console.is_terminal, auto_refresh=False, transient=False) as live:
            while True:
                try:
                    view = render(fetch(url), console.width, console.height, rates, source=url)
                except (OSError, ValueError) as exc:
                    view = _unreachable(url, str(getattr(exc, "reason", exc)), console.width)
                live.update(view, refresh=True)
                time.sleep(max(args.interval, 0.2))
    except KeyboardInterrupt:
        return 0
