"""``meterlink watch --mqtt HOST[:PORT]``: what a demand-side monitoring centre runs.

It subscribes to every gateway under a prefix (CONTRACT section 6: retained
gateway and meter status, one data message per meter per poll) and shows live
load per meter: total active power, phase voltages, energy imported today and
when the meter was last read.  Meters and gateways that went quiet are flagged:

``offline``  the gateway says so (retained meter status ``online: false``, or
             the gateway's will ``{"online": false}`` after it vanished);
``stale``    no data newer than ``--stale`` or 3 of the meter's own poll
             periods, whichever is longer: a gateway that hangs or lost its
             uplink says nothing, so silence itself has to be noticed;
``waiting``  known from its retained status but no data seen yet: data
             messages are not retained, so a meter polled every 15 min may
             say nothing for 15 min after ``watch`` starts ("waiting (polls
             every 15m)" when its status gives ``interval_s``).

Values are taken by acquisition time (``ts``), not arrival order: after an
outage a gateway drains its backlog oldest first, and an hour-old reading must
not overwrite the live one.  Only live values are shown: a value from the
meter's history (OBIS value group F other than 255, e.g. a daily freeze
``1.0.1.8.0.126``, or a load-profile record carrying a ``meter_ts`` older
than its poll) is never taken for the register now.

"kWh today" is energy imported since local midnight: the import register now
minus the register at midnight.  The register at midnight comes from the
meter's own history when the gateway delivers it (a daily freeze or a
load-profile record stamped 00:00 local time), else from the first reading of
the day when it was taken within 20 minutes of midnight.  When neither was
seen (``watch`` started later in the day) the figure counts from the first
reading seen today and is marked ``*``.

``--csv FILE`` appends every reading seen, as it arrives, to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import signal
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meterlink.core.backoff import Backoff
from meterlink.core.durations import format_duration, parse_duration
from meterlink.core.reading import parse_ts

TOTAL_POWER = "1.0.16.7.0.255"  # sum Li active power (+P - -P), IEC 62056-61
PHASE_POWER = ("1.0.36.7.0.255", "1.0.56.7.0.255", "1.0.76.7.0.255")
VOLTAGES = ("1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255")
ENERGY_IMPORT = "1.0.1.8.0.255"
TO_KILO = {"W": Decimal("0.001"), "kW": Decimal(1), "MW": Decimal(1000),
           "Wh": Decimal("0.001"), "kWh": Decimal(1), "MWh": Decimal(1000)}
TO_VOLT = {"V": Decimal(1), "kV": Decimal(1000)}
HISTORY_SLACK = 10.0  # s: a meter_ts older than its poll by more than this marks a value from the meter's history
PARTIAL_DAY_AFTER = 20 * 60  # s after midnight: a first reading later than this means we missed the day's start
CSV_FIELDS = ("received", "gateway", "meter", "seq", "obis", "name", "value", "unit", "ts", "meter_ts", "quality")


@dataclass
class MeterView:
    gateway: str
    meter: str
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)  # obis -> newest reading
    reading_ts: dict[str, float] = field(default_factory=dict)  # obis -> its acquisition time
    ts: float | None = None  # newest data message's acquisition time
    seq: int | None = None
    gaps: int = 0
    periods: list[float] = field(default_factory=list)
    online: bool | None = None
    error: str | None = None
    day: date | None = None
    energy_start: tuple[float, Decimal] | None = None  # (ts, kWh) of the day's first import reading seen
    at_midnight: dict[date, Decimal] = field(default_factory=dict)  # import register at local midnight, from history
    interval: float | None = None  # the poll interval the gateway announces in the meter's status

    def period(self) -> float | None:
        """The meter's poll period as observed (median of the last few gaps between data messages)."""
        if not self.periods:
            return None
        s = sorted(self.periods)
        return s[len(s) // 2]

    def power_kw(self) -> Decimal | None:
        r = self.readings.get(TOTAL_POWER)
        if r is not None:
            return _scaled(r, TO_KILO)
        phases = [v for v in (_scaled(self.readings[o], TO_KILO) for o in PHASE_POWER if o in self.readings)
                  if v is not None]
        return sum(phases, Decimal(0)) if phases else None

    def voltages(self) -> list[Decimal | None]:
        return [_scaled(self.readings[o], TO_VOLT) if o in self.readings else None for o in VOLTAGES]

    def energy_today(self) -> tuple[Decimal | None, bool]:
        """(kWh imported since local midnight, partial); partial: counted from a first reading later in the day."""
        r = self.readings.get(ENERGY_IMPORT)
        now_kwh = _scaled(r, TO_KILO) if r is not None else None
        if now_kwh is None or self.energy_start is None:
            return None, False
        start_ts, start_kwh = self.energy_start
        day = datetime.fromtimestamp(self.reading_ts[ENERGY_IMPORT]).date()
        if day in self.at_midnight:
            return now_kwh - self.at_midnight[day], False
        midnight = datetime.fromtimestamp(start_ts).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        return now_kwh - start_kwh, start_ts - midnight > PARTIAL_DAY_AFTER


@dataclass(frozen=True, slots=True)
class Seen:
    """The readings of one data message, as they arrived."""

    gateway: str
    meter: str
    seq: object
    readings: list[dict[str, Any]]


@dataclass
class GatewayView:
    gateway: str
    online: bool | None = None
    version: str | None = None
    last_data: float | None = None  # newest acquisition time of any of its meters' data


def _scaled(reading: dict[str, Any], table: dict[str, Decimal]) -> Decimal | None:
    value, unit = reading.get("value"), reading.get("unit")
    if value is None or unit not in table:
        return None
    try:
        return Decimal(str(value)) * table[unit]
    except InvalidOperation:
        return None


class Monitor:
    """What ``watch`` knows: fed MQTT messages, asked for each meter's and gateway's state (no I/O)."""

    def __init__(self, prefix: str, stale: float = 60.0) -> None:
        self.prefix = prefix.rstrip("/")
        self.stale = stale
        self.gateways: dict[str, GatewayView] = {}
        self.meters: dict[tuple[str, str], MeterView] = {}
        self.messages = 0
        self.bad_messages = 0

    def topics(self) -> list[str]:
        p = self.prefix
        return [f"{p}/+/status", f"{p}/+/+/status", f"{p}/+/+/data"]

    def handle(self, topic: str, payload: bytes) -> Seen | None:
        """Take one message; returns the data it carried (for the CSV), None for anything else."""
        if not topic.startswith(self.prefix + "/"):
            return None
        parts = topic[len(self.prefix) + 1:].split("/")
        try:
            doc = json.loads(payload, parse_float=Decimal) if payload else {}
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self.bad_messages += 1
            return None
        if not isinstance(doc, dict):
            self.bad_messages += 1
            return None
        self.messages += 1
        if len(parts) == 2 and parts[1] == "status":
            gv = self._gateway(parts[0])
            gv.online = doc.get("online") if isinstance(doc.get("online"), bool) else None
            gv.version = str(doc["version"]) if doc.get("version") is not None else gv.version
            return None
        if len(parts) != 3 or parts[1] == "cmd":
            return None
        gw, meter, kind = parts
        mv = self._meter(gw, meter)
        if kind == "status":
            mv.online = doc.get("online") if isinstance(doc.get("online"), bool) else None
            mv.error = str(doc["error"]) if doc.get("error") else None
            interval = doc.get("interval_s")
            if isinstance(interval, int | float | Decimal) and not isinstance(interval, bool) and interval > 0:
                mv.interval = float(interval)
            return None
        if kind == "data":
            return self._data(mv, doc)
        return None

    def _gateway(self, gw: str) -> GatewayView:
        return self.gateways.setdefault(gw, GatewayView(gw))

    def _meter(self, gw: str, meter: str) -> MeterView:
        self._gateway(gw)
        return self.meters.setdefault((gw, meter), MeterView(gw, meter))

    def _data(self, mv: MeterView, doc: dict[str, Any]) -> Seen | None:
        try:
            ts = parse_ts(str(doc["ts"])).timestamp()
            readings = [r for r in doc["readings"] if isinstance(r, dict) and isinstance(r.get("obis"), str)]
        except (KeyError, TypeError, ValueError):
            self.bad_messages += 1
            return None
        seq = doc.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            if mv.seq is not None and seq > mv.seq + 1:
                mv.gaps += seq - mv.seq - 1
            mv.seq = seq if mv.seq is None else max(mv.seq, seq)
        if mv.ts is not None and ts > mv.ts:
            mv.periods = [*mv.periods[-7:], ts - mv.ts]
        if mv.ts is None or ts >= mv.ts:
            mv.ts = ts
        for r in readings:
            obis = r["obis"]
            rts = _reading_ts(r, ts)
            history = _meter_ts(r)
            if not _is_live(obis, rts, history):
                if history is not None and obis.rsplit(".", 1)[0] == ENERGY_IMPORT.rsplit(".", 1)[0]:
                    self._midnight(mv, history, r)
                continue
            if rts >= mv.reading_ts.get(obis, float("-inf")):
                mv.readings[obis] = r
                mv.reading_ts[obis] = rts
            if obis == ENERGY_IMPORT:
                self._energy(mv, rts, r)
        gv = self._gateway(mv.gateway)
        gv.last_data = ts if gv.last_data is None else max(gv.last_data, ts)
        return Seen(mv.gateway, mv.meter, seq, readings)

    @staticmethod
    def _midnight(mv: MeterView, meter_ts: float, r: dict[str, Any]) -> None:
        """A historical import register stamped local midnight is where today's (or that day's) energy starts."""
        kwh = _scaled(r, TO_KILO)
        if kwh is None or r.get("quality", "good") != "good":
            return
        when = datetime.fromtimestamp(meter_ts)
        if when.hour == 0 and when.minute == 0 and when.second == 0:
            mv.at_midnight[when.date()] = kwh
            for old in sorted(mv.at_midnight)[:-3]:  # a few days are plenty: only today's is shown
                del mv.at_midnight[old]

    @staticmethod
    def _energy(mv: MeterView, ts: float, r: dict[str, Any]) -> None:
        kwh = _scaled(r, TO_KILO)
        if kwh is None:
            return
        day = datetime.fromtimestamp(ts).date()
        if mv.day is None or day > mv.day:
            mv.day, mv.energy_start = day, (ts, kwh)
        elif day == mv.day and mv.energy_start is not None and ts < mv.energy_start[0]:
            mv.energy_start = (ts, kwh)  # an older reading of today arrived late (backlog): it starts the day

    # --- judgement ----------------------------------------------------------------

    def stale_after(self, mv: MeterView) -> float:
        period = mv.period() or mv.interval
        return max(self.stale, 3 * period) if period else self.stale

    def meter_state(self, mv: MeterView, now: float) -> str:
        """online | stale | offline | waiting (known, but no data seen yet)."""
        if self.gateways.get(mv.gateway, GatewayView(mv.gateway)).online is False or mv.online is False:
            return "offline"
        if mv.ts is None:
            return "waiting"
        return "stale" if now - mv.ts > self.stale_after(mv) else "online"

    def gateway_state(self, gv: GatewayView, now: float) -> str:
        """offline (its will or status), stale (none of its meters' data is fresh by their own periods), online."""
        if gv.online is False:
            return "offline"
        if gv.last_data is None:
            return "waiting"
        patience = max((self.stale_after(mv) for (g, _), mv in self.meters.items() if g == gv.gateway and mv.ts),
                       default=self.stale)
        return "stale" if now - gv.last_data > patience else "online"


# --------------------------------------------------------------------------- rendering

_STYLE = {"online": "green", "stale": "yellow", "offline": "red", "waiting": "dim"}


def _meter_ts(r: dict[str, Any]) -> float | None:
    try:
        return parse_ts(str(r["meter_ts"])).timestamp() if r.get("meter_ts") else None
    except ValueError:
        return None


def _reading_ts(r: dict[str, Any], message_ts: float) -> float:
    """When the gateway acquired the reading (its own ``ts``; the message's when it has none)."""
    try:
        return parse_ts(str(r["ts"])).timestamp() if r.get("ts") else message_ts
    except ValueError:
        return message_ts


def _is_live(obis: str, ts: float, meter_ts: float | None) -> bool:
    """The register's value now: F = 255 and no meter time stamp from before the poll (a load-profile record)."""
    return obis.rsplit(".", 1)[-1] == "255" and (meter_ts is None or meter_ts >= ts - HISTORY_SLACK)


def state_text(mv: MeterView, state: str, short: bool = False) -> str:
    """The state as shown; a meter not heard from yet says how long the wait may be."""
    if state != "waiting" or short:
        return state
    interval = mv.interval or mv.period()
    return f"waiting (polls every {format_duration(interval)})" if interval else "waiting"


def _num(v: Decimal | None, places: int) -> str:
    return "" if v is None else f"{v:,.{places}f}"


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    s = now - ts
    if s < 120:
        return f"{max(s, 0):.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def render(mon: Monitor, width: int, height: int | None, now: float | None = None,
           broker: str = "", connected: bool = True) -> RenderableType:
    """Gateways, then meters (problems first); columns and rows give way on small terminals.

    Column sets by width: under 50 only meter, state and power; under 72 also energy today and age;
    from 72 one voltage, from 110 all three and the seq gaps and errors.  Rows: meters that are
    offline or stale come first, so they stay on a short terminal; the gateways table shrinks to
    one line when it would leave too little room for meters.
    """
    now = time.time() if now is None else now
    tiny, narrow, wide = width < 50, width < 72, width >= 110
    states = {key: mon.meter_state(mv, now) for key, mv in mon.meters.items()}
    rank = {"offline": 0, "stale": 1, "waiting": 2, "online": 3}
    items = sorted(mon.meters.items(), key=lambda kv: (rank[states[kv[0]]], kv[0]))

    compact = height is not None and height - (2 + len(mon.gateways)) - 3 < min(len(items), 5)
    if compact:
        counts = {st: sum(mon.gateway_state(gv, now) == st for gv in mon.gateways.values()) for st in rank}
        gws: RenderableType = Text(f"{len(mon.gateways)} gateways: " + ", ".join(
            f"{n} {st}" for st, n in counts.items() if n))
        gws.truncate(width, overflow="ellipsis")
    else:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
        table.add_column("gateway", no_wrap=True, max_width=20)
        table.add_column("state", no_wrap=True)
        table.add_column("load kW", justify="right", no_wrap=True)
        if not tiny:
            table.add_column("meters", justify="right", no_wrap=True)
            table.add_column("problems", justify="right", no_wrap=True)
            table.add_column("last data", justify="right", no_wrap=True)
        for gid, gv in sorted(mon.gateways.items()):
            mine = [(key, mv) for key, mv in mon.meters.items() if key[0] == gid]
            loads = [p for p in (mv.power_kw() for key, mv in mine if states[key] == "online") if p is not None]
            bad = sum(states[key] in ("stale", "offline") for key, _ in mine)
            st = mon.gateway_state(gv, now)
            row: list[RenderableType] = [gid, Text(st, _STYLE[st]), _num(sum(loads, Decimal(0)) if loads else None, 1)]
            if not tiny:
                row += [str(len(mine)), Text(str(bad), "red") if bad else "0", _age(gv.last_data, now)]
            table.add_row(*row)
        gws = table

    shown = len(items)
    if height is not None:
        used = (1 if compact else 2 + len(mon.gateways)) + 2 + 1  # gateways, meter header, foot
        room = max(height - used, 2)
        if room < len(items):
            shown = room - 1
    meters = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
    if tiny:
        meters.add_column("meter", no_wrap=True, max_width=max(width - 22, 8))
    else:
        meters.add_column("gateway", no_wrap=True, max_width=16)
        meters.add_column("meter", no_wrap=True, max_width=20)
    meters.add_column("state", no_wrap=True)
    meters.add_column("P kW", justify="right", no_wrap=True)
    volts = 3 if wide else 0 if narrow else 1
    for i in range(volts):
        meters.add_column(f"U{i + 1} V", justify="right", no_wrap=True)
    if not tiny:
        meters.add_column("kWh today", justify="right", no_wrap=True)
        meters.add_column("updated", justify="right", no_wrap=True)
    if wide:
        meters.add_column("seq gaps", justify="right", no_wrap=True)
        meters.add_column("error", no_wrap=True, max_width=max(width - 120, 10))
    for key, mv in items[:shown]:
        st = states[key]
        energy, partial = mv.energy_today()
        row = [f"{mv.gateway}/{mv.meter}"] if tiny else [mv.gateway, mv.meter]
        row += [Text(state_text(mv, st, short=narrow), _STYLE[st]), _num(mv.power_kw(), 2)]
        row += [_num(v, 1) for v in mv.voltages()[:volts]]
        if not tiny:
            age = _age(mv.ts, now)
            row += [_num(energy, 2) + ("*" if partial else ""), age.removesuffix(" ago") if narrow else age]
        if wide:
            row += [Text(str(mv.gaps), "yellow") if mv.gaps else "0", mv.error or ""]
        meters.add_row(*row)
    parts: list[RenderableType] = [gws, meters]
    if shown < len(items):
        parts.append(Text(f"… {len(items) - shown} more meters", style="dim"))
    conn = "" if connected else "  [not connected: retrying]"
    foot = Text(f"{broker} {mon.prefix}/#  {mon.messages:,} messages{conn}  "
                f"{datetime.fromtimestamp(now).strftime('%H:%M:%S')}  kWh today: since midnight; "
                "* = since the first reading seen today",
                style="red" if not connected else "dim")
    foot.truncate(width, overflow="ellipsis")
    parts.append(foot)
    return Group(*parts)


# --------------------------------------------------------------------------- CSV


class CsvLog:
    """Every reading seen, one row each, appended as it arrives (the header only into a new file)."""

    def __init__(self, path: Path) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._file: TextIO = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, CSV_FIELDS, extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._file.flush()

    def write(self, seen: Seen) -> None:
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for r in seen.readings:
            value = r.get("value")
            self._writer.writerow({**r, "received": received, "gateway": seen.gateway, "meter": seen.meter,
                                   "seq": seen.seq,
                                   "value": "" if value is None else format(value, "f") if isinstance(value, Decimal)
                                   else value, "meter_ts": r.get("meter_ts") or ""})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- the command


def parse_broker(spec: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT``; raises ValueError with a plain message."""
    host, port = spec, 1883
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            port = int(rest.lstrip(":"))
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    if not host or not 1 <= port <= 65535:
        raise ValueError(f"{spec!r} is not HOST[:PORT]")
    return host, port


async def _subscribe(mon: Monitor, host: str, port: int, args: argparse.Namespace, password: str | None,
                     state: dict[str, Any], log: CsvLog | None) -> None:
    tls: ssl.SSLContext | None = None
    if args.tls or args.ca_file:
        tls = ssl.create_default_context(cafile=args.ca_file)
    backoff = Backoff(first=1.0, cap=30.0)
    while True:
        try:
            async with aiomqtt.Client(host, port, username=args.username, password=password, tls_context=tls,
                                      identifier=f"meterlink-watch-{uuid.uuid4().hex[:12]}", clean_session=True,
                                      keepalive=30) as client:
                for topic in mon.topics():
                    await client.subscribe(topic, qos=1)
                state["connected"], state["error"] = True, None
                backoff.reset()
                if not state["interactive"]:  # piped: say when watching starts, for scripts waiting on it
                    print(f"meterlink watch: subscribed to {host}:{port} {mon.prefix}/#", file=sys.stderr, flush=True)
                async for m in client.messages:
                    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                    seen = mon.handle(str(m.topic), payload)
                    if log is not None and seen is not None:
                        log.write(seen)
        except aiomqtt.MqttError as exc:
            state["connected"], state["error"] = False, str(exc)
            await asyncio.sleep(backoff.next())


async def _watch(args: argparse.Namespace, host: str, port: int, stale: float, password: str | None) -> int:
    mon = Monitor(args.prefix, stale)
    console = Console()
    log = CsvLog(Path(args.csv)) if args.csv else None
    state: dict[str, Any] = {"connected": False, "error": None, "interactive": console.is_terminal}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sub = asyncio.create_task(_subscribe(mon, host, port, args, password, state, log), name="meterlink.watch.mqtt")
    deadline = time.monotonic() + args.seconds if args.seconds else None
    broker = f"mqtt://{host}:{port}"

    def view() -> RenderableType:
        return render(mon, console.width, console.height if console.is_terminal else None, broker=broker,
                      connected=state["connected"])

    try:
        if console.is_terminal:
            with Live(view(), console=console, auto_refresh=False, screen=False) as live:
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
                    live.update(view(), refresh=True)
        else:  # piped: no animation, one final snapshot
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=timeout)
            console.print(view())
    finally:
        sub.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sub
        if log is not None:
            log.close()
    if not state["connected"] and mon.messages == 0:
        print(f"meterlink watch: no connection to {host}:{port}: {state['error'] or 'no answer'}", file=sys.stderr)
        return 1
    return 0


def run_watch(args: argparse.Namespace) -> int:
    try:
        host, port = parse_broker(args.mqtt)
        stale = parse_duration(args.stale)
        if not args.prefix or any(c in args.prefix for c in "#+"):
            raise ValueError(f"--prefix {args.prefix!r} may not be empty or hold '#' or '+'")
    except ValueError as exc:
        print(f"meterlink watch: {exc}", file=sys.stderr)
        return 2
    password = None
    if args.password_file:
        try:
            password = Path(args.password_file).read_text(encoding="utf-8").strip().splitlines()[0]
        except (OSError, IndexError) as exc:
            print(f"meterlink watch: cannot read --password-file {args.password_file}: {exc}", file=sys.stderr)
            return 2
    if args.csv:
        try:
            Path(args.csv).open("a").close()
        except OSError as exc:
            print(f"meterlink watch: cannot write --csv {args.csv}: {exc.strerror}", file=sys.stderr)
            return 2
    return asyncio.run(_watch(args, host, port, stale, password))
