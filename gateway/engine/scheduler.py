"""The link scheduler: when each meter's points are read, one transaction at a time per link.

Intervals are aligned to wall-clock boundaries in gateway local time (a 15 min
group is read at :00, :15, :30, :45; a 1 d group at midnight), after one full
read of every meter at start.  All of one meter's points due at one moment go
to the driver as one batch.  A meter that does not answer costs the bus one
``timeout x tries``, is reported offline and retried with capped exponential
backoff while the other meters on the link keep their schedule; a link whose
channel itself fails (port gone, connection refused) is tried again within
:data:`LINK_BACKOFF_CAP`, as cables and device servers come back by
themselves.  A due poll takes the link before any waiting call-up read
(:class:`LinkLock`), so commands cannot push polls late.  A poll that
starts more than :data:`LATE_AFTER` seconds after its moment is counted late;
moments that passed while a poll could not start are counted as missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from meterlink.core import logs
from meterlink.core.backoff import Backoff
from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import Driver, PointResult
from meterlink.core.errors import LinkError, MeterlinkError
from meterlink.core.reading import Quality, Reading, UnitMismatch, convert_unit

T = TypeVar("T")

LATE_AFTER = 1.0  # seconds: a poll starting later than this after its moment is late
BACKOFF_CAP = 300.0  # seconds between tries of a meter that stays silent on a working link, at most
LINK_BACKOFF_CAP = 30.0  # seconds between tries to reopen a link whose channel failed, at most
LATE_LOG_EVERY = 600.0  # seconds between "late poll" log lines of one meter
POLL, COMMAND = 0, 1  # LinkLock priorities: a scheduled poll, a call-up read or other command


class LinkLock:
    """One transaction at a time on a link; among those waiting, polls go first, then commands, each in order.

    Why not ``asyncio.Lock``: it is first come, first served, so a flood of
    call-up reads queued on a slow bus made every scheduled poll wait behind
    all of them (500 reads at 9600 baud: polls two minutes late).
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    async def acquire(self, priority: int = COMMAND) -> None:
        if not self._held and not self.waiting:
            self._held = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed the link just as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the link passes straight to the waiter: it stays held
                return
        self._held = False

    def hold(self, priority: int = COMMAND) -> _Held:
        """``async with lock.hold(priority):`` one transaction's turn on the link."""
        return _Held(self, priority)


class _Held:
    """The context of :meth:`LinkLock.hold`: a plain class, not a generator, as it wraps every poll."""

    __slots__ = ("lock", "priority")

    def __init__(self, lock: LinkLock, priority: int) -> None:
        self.lock = lock
        self.priority = priority

    async def __aenter__(self) -> None:
        await self.lock.acquire(self.priority)

    async def __aexit__(self, *_exc: object) -> None:
        self.lock.release()


def local_offset() -> float:
    """The local time's offset from UTC now, in seconds (DST included): what aligns polls to local moments."""
    return float(time.localtime().tm_gmtoff)


def next_moment(interval: float, after: float, offset: float = 0.0) -> float:
    """The first moment strictly after ``after`` that is a whole multiple of ``interval`` in local time."""
    k = math.floor((after + offset) / interval) + 1
    return k * interval - offset


@dataclass
class Group:
    interval: float
    points: tuple[Point, ...]
    next_due: float = 0.0


@dataclass
class MeterState:
    meter: Meter
    groups: list[Group]
    online: bool | None = None
    last_ok: datetime | None = None
    last_error: str | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(first=1.0, cap=BACKOFF_CAP))
    retry_at: float = 0.0
    polls_ok: int = 0
    polls_failed: int = 0
    points_invalid: int = 0
    late_polls: int = 0
    missed_polls: int = 0
    max_lateness: float = 0.0
    late_logged: float = 0.0
    last_latency: float | None = None

    def next_due(self) -> float:
        return max(min(g.next_due for g in self.groups), self.retry_at)

    def status(self) -> dict[str, object]:
        from meterlink.core.reading import format_ts

        # interval_s: how often the meter is polled, so a subscriber waiting for its next data message knows how long
        return {"online": self.online, "last_ok": format_ts(self.last_ok) if self.last_ok else None,
                "error": self.last_error, "interval_s": min((g.interval for g in self.groups), default=None)}


@dataclass
class LinkState:
    link: Link
    started: float = field(default_factory=time.monotonic)
    busy: float = 0.0
    polls: int = 0
    errors: int = 0
    open: bool = False
    last_error: str | None = None
    busy_since: float | None = None  # monotonic start of the transaction in progress (a hang check reads it)
    # how late polls started (seconds after their moment), the most recent ones, for p50/p99 figures
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def utilization(self) -> float:
        wall = time.monotonic() - self.started
        return self.busy / wall if wall > 0 else 0.0


BatchSink = Callable[[Meter, datetime, list[Reading]], None]  # hands the batch to the journal's queue, never waits
StatusSink = Callable[[MeterState], None]


def to_readings(gateway: str, meter: Meter, ts: datetime, results: Sequence[PointResult]) -> list[Reading]:
    """The driver's results as readings, each with its unit as CONTRACT section 5 defines it.

    The unit is the point's configured one, the value converted to it where the
    meter reports another multiple (Wh to kWh); where the point names none, the
    unit the meter reports or the standard defines (``PointResult.unit``).  A
    meter unit that is no multiple of the configured one makes the reading
    invalid: a wrong value reported as good is the worst failure.
    """
    out = []
    meter_id = meter.id
    for r in results:
        value, unit, quality, error = r.value, r.point.unit, r.quality, r.error
        if r.unit is not None:  # the meter said its unit (DLMS, DL/T); Modbus points carry the configured one
            if not unit:
                unit = r.unit
            elif value is not None and r.unit != unit:
                try:
                    value = convert_unit(value, r.unit, unit)
                except UnitMismatch as exc:
                    value, quality, error = None, Quality.INVALID, str(exc)
        # positional, in the field order (gateway, meter, obis, name, value, unit, ts, meter_ts, quality, error):
        # keywords cost a third more, for every reading
        out.append(Reading(gateway, meter_id, r.point.obis, r.point.name, value, unit, ts, r.meter_ts, quality, error))
    return out


class LinkScheduler:
    """Polls the meters of one link; one instance per link, all links run concurrently."""

    def __init__(self, link: Link, meters: Sequence[Meter], driver: Driver, *, gateway: str,
                 on_message: BatchSink, on_status: StatusSink | None = None) -> None:
        self.link = link
        self.driver = driver
        self.gateway = gateway
        self.on_message = on_message
        self.on_status = on_status
        self.state = LinkState(link)
        self.meters: dict[str, MeterState] = {}
        for m in meters:
            by_interval: dict[float, list[Point]] = {}
            for p in m.points:
                by_interval.setdefault(p.interval, []).append(p)
            groups = [Group(iv, tuple(ps)) for iv, ps in sorted(by_interval.items())]
            self.meters[m.id] = MeterState(m, groups)
        self._lock = LinkLock()  # one transaction at a time on this link, polls first

    # --- the poll loop -----------------------------------------------------------

    async def run(self) -> None:
        if not self.meters:
            return
        now = time.time()
        for ms in self.meters.values():
            for g in ms.groups:
                g.next_due = now  # one full read at start, aligned moments after that
        line = None  # the line the last poll left the port on (a mixed bus switches between meters' lines)
        while True:
            # of the meters due now, those on the port's current line first: the port switches as rarely
            # as possible; otherwise the one due first
            now = time.time()
            ms = min(self.meters.values(), key=lambda m: (max(m.next_due(), now), m.meter.line != line))
            line = ms.meter.line
            due = ms.next_due()
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._poll(ms, due)

    async def _poll(self, ms: MeterState, due: float) -> None:
        start = time.time()
        offset = local_offset()
        points: list[Point] = []
        for g in ms.groups:
            if g.next_due <= start + 0.001:
                points.extend(g.points)
                nxt = next_moment(g.interval, start, offset)
                if ms.online is not False and g.next_due > 0:
                    # moments that passed entirely before this poll could start
                    missed = max(0, math.floor((start - g.next_due) / g.interval))
                    if missed:
                        ms.missed_polls += missed
                g.next_due = nxt
        lateness = max(0.0, start - due)
        if ms.retry_at < due:
            self.state.lateness.append(lateness)
            if lateness > LATE_AFTER:
                ms.late_polls += 1
                ms.max_lateness = max(ms.max_lateness, lateness)
                if start - ms.late_logged > LATE_LOG_EVERY:  # a crowded bus is late every cycle: say it now and then
                    ms.late_logged = start
                    logs.warning("late poll", meter=ms.meter.id, link=self.link.id, late_s=f"{lateness:.3f}",
                                 late_polls=ms.late_polls, utilization=f"{self.state.utilization():.2f}")
        if not points:
            return
        ts = datetime.fromtimestamp(start, UTC)
        try:
            results = await self.read(ms.meter, points, priority=POLL)
        except MeterlinkError as exc:
            self._failed(ms, exc, start)
            return
        readings = to_readings(self.gateway, ms.meter, ts, results)
        invalid = [r for r in readings if r.quality is Quality.INVALID]
        ms.points_invalid += len(invalid)
        self._ok(ms, ts, invalid)
        if not readings:
            return  # e.g. a load profile with no new record: nothing to journal, no empty data message
        # the link goes on with the next poll while the journal commits this batch (nothing sees the
        # readings before the commit); a slow or full disk never holds the link back: the journal's
        # bounded queue takes the batch, in acquisition order
        self.on_message(ms.meter, ts, readings)

    async def read(self, meter: Meter, points: Sequence[Point], *, priority: int = COMMAND) -> list[PointResult]:
        """One batch through the driver, holding the link; used by the poll loop and on-demand reads."""
        async def timed(driver: Driver) -> list[PointResult]:
            t0 = time.monotonic()  # once the link is ours: waiting for it is not the meter's latency
            try:
                return await driver.read(meter, points)
            finally:
                self.state.polls += 1
                ms = self.meters.get(meter.id)
                if ms is not None:
                    ms.last_latency = time.monotonic() - t0

        return await self.with_driver(timed, priority=priority)

    async def with_driver(self, action: Callable[[Driver], Awaitable[T]], *, priority: int = COMMAND) -> T:
        """Run ``action`` on the open driver, holding the link (polls, time sync): one transaction at a time."""
        async with self._lock.hold(priority):
            t0 = time.monotonic()
            self.state.busy_since = t0
            try:
                if not self.state.open:
                    await self.driver.open()
                    self.state.open = True
                return await action(self.driver)
            except LinkError:
                self.state.open = False
                with contextlib.suppress(Exception):
                    await self.driver.close()
                raise
            finally:
                self.state.busy_since = None
                self.state.busy += time.monotonic() - t0

    def _ok(self, ms: MeterState, ts: datetime, invalid: list[Reading]) -> None:
        was = ms.online
        ms.online = True
        ms.backoff.reset()
        ms.retry_at = 0.0
        ms.polls_ok += 1
        ms.last_ok = ts
        error = None
        if invalid:
            error = f"{len(invalid)} point(s) invalid, e.g. {invalid[0].obis}: {invalid[0].error}"
            logs.warning("invalid points", meter=ms.meter.id, link=self.link.id, point=invalid[0].obis,
                         count=len(invalid), error=invalid[0].error)
        changed = was is not True or error != ms.last_error
        ms.last_error = error
        if was is not True:
            logs.info("meter online", meter=ms.meter.id, link=self.link.id)
        if changed and self.on_status:
            self.on_status(ms)

    def _failed(self, ms: MeterState, exc: MeterlinkError, now: float) -> None:
        was = ms.online
        ms.online = False
        ms.polls_failed += 1
        self.state.errors += 1
        self.state.last_error = str(exc)
        smallest = min(g.interval for g in ms.groups)
        # a meter silent on a working link backs off far; a failed channel is reopened within LINK_BACKOFF_CAP
        ms.backoff.first = smallest
        backoff = ms.backoff.next(cap=LINK_BACKOFF_CAP if isinstance(exc, LinkError) else max(BACKOFF_CAP, smallest))
        ms.retry_at = now + backoff
        message = str(exc)
        changed = was is not False or message != ms.last_error
        ms.last_error = message
        logs.warning("read failed", meter=ms.meter.id, link=self.link.id, error=message,
                     error_type=type(exc).__name__, retry_in_s=f"{backoff:g}")
        if changed and self.on_status:
            self.on_status(ms)

    async def close(self) -> None:
        async with self._lock.hold(POLL):
            await self.driver.close()
            self.state.open = False

