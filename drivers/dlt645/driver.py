"""DL/T 645-2007 transport: read data identifiers from meters on an RS-485 bus or a serial device server.

One transaction at a time per link (the scheduler's rule).  Points due
together are read with block identifiers (``...FF..``) where the meter
supports them; a block the meter answers with "no requested data" is
remembered and read member by member from then on.  Replies flagged with
follow-up frames are completed with 12H requests.  Daily frozen data (the
``daily_frozen_days`` meter key) is collected oldest first from the meter's
62-day memory, starting after the last freeze time the journal holds, so each
day's frozen reading is journaled exactly once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from drivers.channel import Channel
from drivers.dlt645 import codec, dis
from drivers.dlt645.codec import Frame
from gateway.config import Link, Meter, Point
from gateway.driver import LinkCounters, PointResult, Store
from gateway.errors import FrameError, MeterRejected, MeterTimeout

NO_REQUESTED_DATA = 0x02  # ERR bit 1
CLOCK_DI = "04000102"  # a point with this DI reads the meter clock (date 04000101 + time 04000102)
FROZEN_DI = "05060101"  # a point with this DI collects the daily frozen records
MAX_FOLLOW_UPS = 32


@dataclass(frozen=True, slots=True)
class ClockReading:
    meter_time: dt.datetime  # aware, gateway local zone
    drift: float  # seconds, meter minus gateway


def local_zone() -> dt.tzinfo:
    tz = dt.datetime.now().astimezone().tzinfo
    assert tz is not None
    return tz


class Dlt645Driver:
    def __init__(self, link: Link, store: Store | None = None) -> None:
        self.link = link
        self.store = store
        self.counters = LinkCounters()
        self.channel: Channel[Frame] = Channel(link)
        self._refused_blocks: dict[str, set[str]] = {}
        self._plans: dict[tuple[str, frozenset[int]], list[tuple[str, list[Point]]]] = {}

    async def open(self) -> None:
        await self.channel.open()

    async def close(self) -> None:
        await self.channel.close()

    # --- one transaction -----------------------------------------------------------

    async def request(self, frame: Frame, accept_address: str, function: int, *, expect_reply: bool = True) -> Frame:
        """Send ``frame``; return the reply from ``accept_address`` to ``function``, with the link's tries."""
        data = codec.encode_frame(frame)
        last: Exception | None = None
        for _ in range(self.link.tries):
            await self.open()
            self.counters.transactions += 1
            await self.channel.send(data)
            if not expect_reply:
                return frame
            try:
                return await self.channel.receive(
                    codec.decode,
                    lambda f: f.is_reply and f.function == function
                    and codec.address_matches(accept_address, f.address),
                    self.link.timeout)
            except MeterTimeout as exc:
                self.counters.timeouts += 1
                last = exc
            except FrameError as exc:
                self.counters.frame_errors += 1
                last = exc
        if isinstance(last, FrameError):
            raise FrameError(f"{last} (after {self.link.tries} tries)" if self.link.tries > 1 else str(last))
        raise MeterTimeout(f"no reply within {self.link.timeout:g} s x {self.link.tries} tries") from last

    async def read_di(self, address: str, di: str) -> bytes:
        """The payload of one data identifier, follow-up frames included."""
        reply_frame = await self.request(codec.read_request(address, di), address, codec.Function.READ_DATA)
        try:
            reply = codec.parse_read_reply(reply_frame, address, di)
        except MeterRejected:
            self.counters.rejections += 1
            raise
        payload = bytearray(reply.payload)
        seq = 0
        while reply.more:
            seq += 1
            if seq > MAX_FOLLOW_UPS:
                raise FrameError(f"{di}: more than {MAX_FOLLOW_UPS} follow-up frames")
            follow = await self.request(codec.read_follow_up_request(address, di, seq), address,
                                        codec.Function.READ_FOLLOW_UP)
            reply = codec.parse_read_reply(follow, address, di, expected_seq=seq)
            payload += reply.payload
        return bytes(payload)

    # --- reading a batch -----------------------------------------------------------

    def plan(self, meter: Meter, points: Sequence[Point]) -> list[tuple[str, list[Point]]]:
        """Transactions as (data identifier, points it answers), computed once per set of due points."""
        key = (meter.id, frozenset(id(p) for p in points))
        cached = self._plans.get(key)
        if cached is None:
            cached = self._plans[key] = self._make_plan(meter, points)
        return [(di, list(ps)) for di, ps in cached]

    def _make_plan(self, meter: Meter, points: Sequence[Point]) -> list[tuple[str, list[Point]]]:
        """Blocks where two or more members are due and the meter has not refused the block."""
        refused = self._refused_blocks.get(meter.id, set())
        by_di: dict[str, list[Point]] = {}
        for p in points:
            by_di.setdefault(p.di or "", []).append(p)
        plan: list[tuple[str, list[Point]]] = []
        taken: set[str] = set()
        for di in by_di:
            if di in taken or di in (CLOCK_DI, FROZEN_DI):
                continue
            block = _block_of(di)
            if block and block not in refused:
                members = [m for m in dis.expand_block(block) if m in by_di and m not in taken]
                if len(members) >= 2:
                    plan.append((block, [p for m in members for p in by_di[m]]))
                    taken.update(members)
                    continue
            plan.append((di, by_di[di]))
            taken.add(di)
        for special in (CLOCK_DI, FROZEN_DI):
            if special in by_di:
                plan.append((special, by_di[special]))
        return plan

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        address = str(meter.address)
        results: list[PointResult] = []
        queue = self.plan(meter, points)
        while queue:
            di, wanted = queue.pop(0)
            try:
                if di == CLOCK_DI:
                    clock = await self.read_clock(address)
                    results.extend(PointResult(point=p, value=Decimal(str(round(clock.drift, 3))),
                                               meter_ts=clock.meter_time) for p in wanted)
                elif di == FROZEN_DI:
                    results.extend(await self._read_frozen(meter, wanted))
                else:
                    payload = await self.read_di(address, di)
                    results.extend(self._decode(di, payload, wanted))
            except MeterRejected as exc:
                if (exc.code or 0) & NO_REQUESTED_DATA and len({p.di for p in wanted}) > 1:
                    # the meter does not know the block: remember, read its members one by one
                    self._refused_blocks.setdefault(meter.id, set()).add(di)
                    self._plans = {k: v for k, v in self._plans.items() if k[0] != meter.id}
                    queue[:0] = [(m, [p for p in wanted if p.di == m]) for m in dis.expand_block(di)
                                 if any(p.di == m for p in wanted)]
                    continue
                results.extend(PointResult.invalid(p, str(exc)) for p in wanted)
            # MeterTimeout / FrameError propagate: a silent or garbled meter costs one timeout x tries
        return results

    def _decode(self, di: str, payload: bytes, wanted: list[Point]) -> list[PointResult]:
        try:
            values = dis.decode_item(di, payload)
        except FrameError as exc:
            return [PointResult.invalid(p, str(exc)) for p in wanted]
        by_member = {item.di: value for item, value in values}
        out = []
        for p in wanted:
            value = by_member.get(p.di or "")
            if not isinstance(value, Decimal):
                out.append(PointResult.invalid(p, f"{p.di}: no numeric value in the reply"))
            else:
                out.append(PointResult(point=p, value=value))
        return out

    # --- clock -------------------------------------------------------------------

    async def read_clock(self, address: str) -> ClockReading:
        """Date (04000101) and time (04000102); a day change between the two is read again."""
        for _ in range(2):
            date_payload = await self.read_di(address, "04000101")
            time_payload = await self.read_di(address, CLOCK_DI)
            now = dt.datetime.now(local_zone())
            day = codec.decode_value("YYMMDDWW", date_payload)
            clock = codec.decode_value("hhmmss", time_payload)
            if not isinstance(day, dt.date) or not isinstance(clock, dt.time):
                raise FrameError("clock reply is not a date and a time")
            meter_time = dt.datetime.combine(day, clock, tzinfo=local_zone())
            drift = (meter_time - now).total_seconds()
            if abs(drift) < 43200 or clock.hour not in (0, 23):
                return ClockReading(meter_time, drift)
        return ClockReading(meter_time, drift)

    async def set_clock(self, address: str | None, when: dt.datetime) -> None:
        """08H time sync, broadcast (``address`` None) or to one meter; the standard has no reply to it."""
        frame = codec.time_sync_request(when.astimezone(local_zone()).replace(tzinfo=None))
        if address is not None:
            frame = Frame(address=address, control_code=frame.control_code, data=frame.data)
        await self.request(frame, address or codec.BROADCAST_ADDRESS, frame.function, expect_reply=False)

    # --- daily frozen data ---------------------------------------------------------

    async def _read_frozen(self, meter: Meter, wanted: list[Point]) -> list[PointResult]:
        address = str(meter.address)
        days = max(1, min(meter.config.daily_frozen_days or 1, dis.DAILY_FROZEN_RECORDS))
        last = self.store.last_meter_ts(meter.id, "1.0.1.8.0.255") if self.store is not None else None
        # walk back from yesterday's record until a freeze time the journal already holds (or the horizon)
        new: list[tuple[int, dt.datetime]] = []
        for n in range(1, days + 1):
            when = await self._freeze_time(address, n)
            if when is None or (last is not None and when <= last):
                break
            new.append((n, when))
        results: list[PointResult] = []
        for n, when in reversed(new):  # oldest first
            _, forward_di, reverse_di = dis.daily_frozen_dis(n)
            for block_di, obis_c in ((forward_di, 1), (reverse_di, 2)):
                try:
                    values = dis.decode_item(block_di, await self.read_di(address, block_di))
                except MeterRejected:
                    if obis_c == 1:
                        raise
                    continue  # some meters freeze forward energy only
                for tariff, (_item, value) in enumerate(values):
                    if isinstance(value, Decimal):
                        point = _frozen_point(wanted[0], obis_c, tariff)
                        results.append(PointResult(point=point, value=value, meter_ts=when))
        return results

    async def _freeze_time(self, address: str, n: int) -> dt.datetime | None:
        freeze_di = dis.daily_frozen_dis(n)[0]
        try:
            payload = await self.read_di(address, freeze_di)
        except MeterRejected:
            return None
        value = codec.decode_value("YYMMDDhhmm", payload)
        if not isinstance(value, dt.datetime):
            return None
        return value.replace(tzinfo=local_zone())


def _block_of(di: str) -> str | None:
    """The ``FF`` block that holds ``di`` (energy tariffs: DI1 -> FF; variables: phase DI1 -> FF)."""
    if not di or len(di) != 8:
        return None
    candidate = di[:4] + "FF" + di[6:]
    try:
        members = dis.expand_block(candidate)
    except KeyError:
        return None
    return candidate if di in members and candidate != di else None


def _frozen_point(template: Point, obis_c: int, tariff: int) -> Point:
    """A point for one value of a frozen block: the energy register's OBIS, the freeze time as meter_ts."""
    from dataclasses import replace

    kind = "forward" if obis_c == 1 else "reverse"
    name = f"daily_frozen_{kind}_active_energy" + (f"_t{tariff}" if tariff else "")
    return replace(template, obis=f"1.0.{obis_c}.8.{tariff}.255", name=name, unit="kWh")

