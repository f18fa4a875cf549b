"""DL/T 645-2007 and -1997 transport: read data identifiers from meters on an RS-485 bus or a serial device server.

One transaction at a time per link (the scheduler's rule).  Points due
together are read with block identifiers (``...FF..``) where the meter
supports them; a block the meter refuses (ERR "no requested data" or, on
meters that say so instead, "other error") or answers with a length no meter
can send is remembered, logged once, and read member by member from then on,
so the total is never lost to a block.  Energy blocks hold as many tariffs as
the meter has (2, 4, 8, 12, ...), derived from the reply length.  Replies
flagged with follow-up frames are completed with 12H requests.

Daily frozen data (the ``daily_frozen_days`` meter key) is collected oldest
first from the meter's 62-day memory, starting after the last freeze time the
journal holds, so each day's frozen reading is journaled exactly once.  A
record that does not exist yet (answered with an error, or with a freeze time
of zeros or FF) ends the walk back.  Frozen values go out under their own OBIS
code, F = 126 (``meterlink.core.reading.HISTORICAL_F``), with ``meter_ts`` = the
freeze time, never under the live register's code.

Meter clocks carry no zone: clock readings, freeze times and the 08H time
sync are in the meter's ``timezone`` (default: the gateway's own zone),
applied per time stamp (``meterlink.core.meterclock``).

A meter with ``standard: "1997"`` is read with the 1997 edition's frames
(``codec1997``: 01H/02H, 2-byte identifiers, its own error bits) and table
(``dis1997``), on the same bus as 2007 meters; its clock point (C011) reads
date C010 and time C011, and the 08H time sync frame is the same in both
editions.  It has no daily frozen data (the configuration refuses it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterlink.core import logs, meterclock
from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import LinkCounters, PointResult, Store, with_tries
from meterlink.core.errors import FrameError, MeterRejected
from meterlink.core.reading import Quality, historical_obis
from meterlink.drivers.dlt645 import codec, codec1997, dis, dis1997
from meterlink.drivers.dlt645.checks import standard_of
from meterlink.drivers.dlt645.codec import Frame
from meterlink.drivers.transport import Transport, endpoint_for

OTHER_ERROR = 0x01  # ERR bit 0
NO_REQUESTED_DATA = 0x02  # ERR bit 1
BLOCK_REFUSED = OTHER_ERROR | NO_REQUESTED_DATA
"""ERR bits with which meters refuse a block identifier they do not support: most set bit 1 ("无请求数据"),
some (seen on single-phase meters that know no blocks at all) set bit 0 ("其他错误") instead."""
CLOCK_DI = "04000102"  # a point with this DI reads the meter clock (date 04000101 + time 04000102)
FROZEN_DI = "05060101"  # a point with this DI collects the daily frozen records
MAX_FOLLOW_UPS = 32


@dataclass(frozen=True, slots=True)
class ClockReading:
    meter_time: dt.datetime  # aware, in the meter's zone
    drift: float  # seconds, meter minus gateway


class Dlt645Driver:
    # DL/T 645 time sync is the 08H broadcast frame (also sent to one meter), which a meter takes only
    # within +/-5 min of its own clock ("广播校时...误差不大于5min")
    sync_method = "08H"
    sync_window = 300.0

    def __init__(self, link: Link, store: Store | None = None, *, transport: Transport[Any] | None = None) -> None:
        self.link = link
        self.store = store
        self.counters = LinkCounters()
        self.channel: Transport[Frame] = transport or Transport(endpoint_for(link))
        self._refused_blocks: dict[str, set[str]] = {}
        self._unlogged: dict[tuple[str, str], str] = {}  # refused blocks not logged yet -> the meter's answer
        self._plans: dict[tuple[str, frozenset[int]], list[tuple[str, list[Point]]]] = {}
        self._standards: dict[str, str] = {}  # meter address -> "1997" for 1997 meters seen (read, know_meter)

    async def open(self) -> None:
        await self.channel.open()

    async def close(self) -> None:
        await self.channel.close()

    def know_meter(self, meter: Meter) -> None:
        """Remember which DL/T 645 edition ``meter`` speaks, for calls that only name its address (the clock)."""
        self._standards[str(meter.address)] = standard_of(meter.config)

    # --- one transaction -----------------------------------------------------------

    async def request(self, frame: Frame, accept_address: str, function: int, *, expect_reply: bool = True) -> Frame:
        """Send ``frame``; return the reply from ``accept_address`` to ``function``, with the link's tries."""
        data = codec.encode_frame(frame)
        if not expect_reply:
            await self.open()
            self.counters.transactions += 1
            await self.channel.send(data)
            return frame

        def answers(f: Frame) -> bool:
            return (f.is_reply and f.function == function and codec.address_matches(accept_address, f.address)
                    # a late reply for another DI is skipped, not taken (issue 16); an abnormal reply has no DI
                    and (f.is_abnormal or function not in (codec.Function.READ_DATA, codec.Function.READ_FOLLOW_UP)
                         or f.data[:4] == frame.data[:4])
                    # DL/T 645-1997: the 2-byte identifier DI0 DI1 of 01H/02H replies likewise
                    and (f.is_abnormal or function not in (codec1997.Function.READ_DATA,
                                                           codec1997.Function.READ_FOLLOW_UP)
                         or f.data[:2] == frame.data[:2]))

        async def attempt() -> Frame:
            await self.open()
            await self.channel.send(data)
            return await self.channel.receive(codec.decode, answers, self.link.timeout)

        return await with_tries(self.link, self.counters, attempt)

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

    async def read_di_1997(self, address: str, di: str) -> bytes:
        """The payload of one DL/T 645-1997 identifier, follow-up frames (02H, no SEQ) included."""
        reply_frame = await self.request(codec1997.read_request(address, di), address, codec1997.Function.READ_DATA)
        try:
            reply = codec1997.parse_read_reply(reply_frame, address, di)
        except MeterRejected:
            self.counters.rejections += 1
            raise
        payload = bytearray(reply.payload)
        follow_ups = 0
        while reply.more:
            follow_ups += 1
            if follow_ups > MAX_FOLLOW_UPS:
                raise FrameError(f"{di}: more than {MAX_FOLLOW_UPS} follow-up frames")
            follow = await self.request(codec1997.read_follow_up_request(address, di), address,
                                        codec1997.Function.READ_FOLLOW_UP)
            reply = codec1997.parse_read_reply(follow, address, di, follow_up=True)
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
        old = standard_of(meter.config) == "1997"
        table, block_of = (dis1997, dis1997.block_of) if old else (dis, _block_of)
        specials = (dis1997.CLOCK_DI,) if old else (CLOCK_DI, FROZEN_DI)
        by_di: dict[str, list[Point]] = {}
        for p in points:
            by_di.setdefault(p.di or "", []).append(p)
        plan: list[tuple[str, list[Point]]] = []
        taken: set[str] = set()
        for di in by_di:
            if di in taken or di in specials:
                continue
            block = block_of(di)
            if block and block not in refused:
                members = [m for m in table.expand_block(block) if m in by_di and m not in taken]
                if len(members) >= 2:
                    plan.append((block, [p for m in members for p in by_di[m]]))
                    taken.update(members)
                    continue
            plan.append((di, by_di[di]))
            taken.add(di)
        for special in specials:
            if special in by_di:
                plan.append((special, by_di[special]))
        return plan

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        address = str(meter.address)
        zone = meter.config.timezone
        self.know_meter(meter)
        old = self._standards[address] == "1997"
        table = dis1997 if old else dis
        results: list[PointResult] = []
        queue = self.plan(meter, points)
        while queue:
            di, wanted = queue.pop(0)
            is_block = len({p.di for p in wanted}) > 1
            try:
                if di == (dis1997.CLOCK_DI if old else CLOCK_DI):
                    clock = await self.read_clock(address, zone)
                    results.extend(PointResult(point=p, value=Decimal(str(round(clock.drift, 3))),
                                               meter_ts=clock.meter_time, unit="s") for p in wanted)
                    continue
                if di == FROZEN_DI and not old:
                    results.extend(await self._read_frozen(meter, wanted))
                    continue
                payload = await (self.read_di_1997(address, di) if old else self.read_di(address, di))
                try:
                    values = table.decode_item(di, payload)
                except FrameError as exc:
                    if not is_block:
                        results.extend(PointResult.invalid(p, str(exc)) for p in wanted)
                        continue
                    queue[:0] = self._refuse_block(meter, di, wanted, str(exc))
                    continue
                results.extend(self._decode_1997(values, wanted) if old else self._decode(values, wanted))
            except MeterRejected as exc:
                if is_block and (exc.code or 0) & BLOCK_REFUSED:
                    queue[:0] = self._refuse_block(meter, di, wanted, str(exc))
                    continue
                results.extend(PointResult.invalid(p, str(exc)) for p in wanted)
            # MeterTimeout / FrameError of the link propagate: a silent or garbled meter costs one timeout x tries
        good = {r.point.di for r in results if r.quality is Quality.GOOD}
        for (meter_id, block), why in list(self._unlogged.items()):
            if meter_id == meter.id and good.intersection(table.expand_block(block)):
                del self._unlogged[(meter_id, block)]
                logs.info("block identifier refused, reading its members one by one", meter=meter.id,
                          link=self.link.id, point=block, error=why)
        return results

    def _refuse_block(self, meter: Meter, di: str, wanted: list[Point], why: str) -> list[tuple[str, list[Point]]]:
        """Remember that ``meter`` cannot answer block ``di`` and plan its members one by one.

        It is logged once, as soon as a member is read: a meter that refuses
        everything (its "other error" is no statement about blocks) is reported
        by its invalid points alone.
        """
        refused = self._refused_blocks.setdefault(meter.id, set())
        if di not in refused:
            refused.add(di)
            self._unlogged[(meter.id, di)] = why
        self._plans = {k: v for k, v in self._plans.items() if k[0] != meter.id}
        table = dis1997 if standard_of(meter.config) == "1997" else dis
        return [(m, [p for p in wanted if p.di == m]) for m in table.expand_block(di)
                if any(p.di == m for p in wanted)]

    @staticmethod
    def _decode(values: Sequence[tuple[dis.DataItem, codec.Value]], wanted: list[Point]) -> list[PointResult]:
        by_member = {item.di: value for item, value in values}
        tariffs = sum(1 for item, _ in values if item.di[4:6] != "00") if len(values) > 1 else None
        out = []
        for p in wanted:
            value = by_member.get(p.di or "")
            if value is None and tariffs is not None and (p.di or "").startswith("00"):
                out.append(PointResult.invalid(p, f"{p.di}: the meter has {tariffs} tariffs, "
                                                  f"not tariff {int((p.di or '00000000')[4:6], 16)}"))
            elif not isinstance(value, Decimal):
                out.append(PointResult.invalid(p, f"{p.di}: no numeric value in the reply"))
            else:
                out.append(PointResult(point=p, value=value))
        return out

    @staticmethod
    def _decode_1997(values: Sequence[tuple[dis1997.DataItem, codec.Value]],
                     wanted: list[Point]) -> list[PointResult]:
        """Values of a 1997 reply to the points that asked; a tariff the meter does not have is invalid."""
        by_member = {item.di: value for item, value in values}
        tariffs = len(values) - 1 if len(values) > 1 else None  # an energy block: total + the meter's tariffs
        out = []
        for p in wanted:
            value = by_member.get(p.di or "")
            if value is None and tariffs is not None:
                out.append(PointResult.invalid(p, f"{p.di}: the meter has {tariffs} tariffs, "
                                                  f"not tariff {int((p.di or '0000')[3], 16)}"))
            elif not isinstance(value, Decimal):
                out.append(PointResult.invalid(p, f"{p.di}: no numeric value in the reply"))
            else:
                out.append(PointResult(point=p, value=value))
        return out

    # --- clock -------------------------------------------------------------------

    async def read_clock(self, address: str, zone: str | None = None) -> ClockReading:
        """Date (04000101) and time (04000102) in the meter's ``zone``; a day change between the two is read again.

        A DL/T 645-1997 meter (one ``read`` or ``know_meter`` has seen) is asked for C010 and C011.
        """
        old = self._standards.get(address) == "1997"
        for _ in range(2):
            if old:
                date_payload = await self.read_di_1997(address, "C010")
                time_payload = await self.read_di_1997(address, dis1997.CLOCK_DI)
            else:
                date_payload = await self.read_di(address, "04000101")
                time_payload = await self.read_di(address, CLOCK_DI)
            now = dt.datetime.now(dt.UTC)
            day = codec.decode_value("YYMMDDWW", date_payload)
            clock = codec.decode_value("hhmmss", time_payload)
            if not isinstance(day, dt.date) or not isinstance(clock, dt.time):
                raise FrameError("clock reply is not a date and a time")
            meter_time = meterclock.localize(dt.datetime.combine(day, clock), zone)
            drift = (meter_time - now).total_seconds()
            if abs(drift) < 43200 or clock.hour not in (0, 23):
                return ClockReading(meter_time, drift)
        return ClockReading(meter_time, drift)

    async def set_clock(self, address: str | None, when: dt.datetime, zone: str | None = None) -> None:
        """08H time sync to ``when`` as the meter's wall clock in ``zone``, broadcast (``address`` None) or to
        one meter; the standard has no reply to it."""
        frame = codec.time_sync_request(meterclock.wall_clock(when, zone).replace(microsecond=0))
        if address is not None:
            frame = Frame(address=address, control_code=frame.control_code, data=frame.data)
        await self.request(frame, address or codec.BROADCAST_ADDRESS, frame.function, expect_reply=False)

    # --- daily frozen data ---------------------------------------------------------

    async def _read_frozen(self, meter: Meter, wanted: list[Point]) -> list[PointResult]:
        address = str(meter.address)
        zone = meter.config.timezone
        days = max(1, min(meter.config.daily_frozen_days or 1, dis.DAILY_FROZEN_RECORDS))
        last: dt.datetime | None = None
        if self.store is not None:
            # frozen totals before F = 126 went out under the live code: the newer of the two is where to go on
            stamps = [self.store.last_meter_ts(meter.id, obis)
                      for obis in (historical_obis("1.0.1.8.0.255"), "1.0.1.8.0.255")]
            last = max((t for t in stamps if t is not None), default=None)
        # walk back from yesterday's record until a freeze time the journal already holds (or the horizon)
        new: list[tuple[int, dt.datetime]] = []
        for n in range(1, days + 1):
            when = await self._freeze_time(meter, n, zone)
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
                except FrameError as exc:
                    # the meter's record itself is unreadable: say so under the frozen total, go on with the rest
                    logs.warning("frozen record unreadable", meter=meter.id, link=self.link.id, point=block_di,
                                 error=str(exc))
                    results.append(PointResult(point=_frozen_point(wanted[0], obis_c, 0), value=None,
                                               quality=Quality.INVALID,
                                               meter_ts=when, error=str(exc)))
                    continue
                for item, value in values:
                    if isinstance(value, Decimal):
                        point = _frozen_point(wanted[0], obis_c, int(item.di[4:6], 16))
                        results.append(PointResult(point=point, value=value, meter_ts=when, unit=item.unit))
        return results

    async def _freeze_time(self, meter: Meter, n: int, zone: str | None) -> dt.datetime | None:
        """The freeze time of the record ``n`` days back, or None when the meter has no such record yet.

        Meters differ in how they say so: an error reply, or a freeze time of
        all zeros or all FF (a record slot never written).  Either ends the walk.
        """
        freeze_di = dis.daily_frozen_dis(n)[0]
        try:
            payload = await self.read_di(str(meter.address), freeze_di)
        except MeterRejected:
            return None
        if payload and (set(payload) <= {0x00} or set(payload) <= {0xFF}):
            return None
        try:
            value = codec.decode_value("YYMMDDhhmm", payload)
        except FrameError as exc:
            logs.warning("frozen record has no valid freeze time, collection stops there", meter=meter.id,
                         link=self.link.id, point=freeze_di, error=str(exc))
            return None
        if not isinstance(value, dt.datetime):
            return None
        return meterclock.localize(value, zone)


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
    """A point for one value of a frozen block: the energy register's historical OBIS (F = 126), the freeze
    time as meter_ts, so a subscriber never takes the freeze for the live register."""
    from dataclasses import replace

    kind = "forward" if obis_c == 1 else "reverse"
    name = f"daily_frozen_{kind}_active_energy" + (f"_t{tariff}" if tariff else "")
    return replace(template, obis=historical_obis(f"1.0.{obis_c}.8.{tariff}.255"), name=name, unit="kWh")

