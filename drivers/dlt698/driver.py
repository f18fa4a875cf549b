"""DL/T 698.45 transport: read OADs from meters on an RS-485 bus or a serial device server.

One transaction at a time per link (the scheduler's rule).  The points due
together are read with one GET-Request-NormalList (读取若干个对象属性) per
APDU budget; a meter that answers a NormalList with ERROR-Response (meters
without the service say "服务不支持") is remembered, logged once, and read
with one GET-Request-Normal per OAD from then on.

APDU size: without an application connection (CONNECT, not sent: plain reads
of meters need none) nothing is negotiated, so Meterlink assumes
:data:`MAX_APDU` = 512 bytes of link user data each way, the smallest
"最大可接收 APDU 尺寸" seen in meters' CONNECT answers.  A list is cut so that
its request and its estimated reply fit; a reply the meter still splits into
link segments (分帧, clause 7.2.2) is confirmed segment by segment and joined.

Every reply is checked against its request before it is taken: the server
address, the PIID service number (bits 0..5, echoed in PIID-ACD), the service
and the OADs (or OAD and OMD) requested.  A late reply to an earlier request
fails the check and is skipped, never taken as this request's answer.

Values: a measured value is ``raw x 10^scaler`` exactly (``Decimal``), with
the scaler-unit of the object's attribute 3 (换算及单位), read once per meter
and OI and kept for the life of the driver.  It is deliberately not kept in
the journal: a meter replaced under the same address may scale differently.
A meter that refuses attribute 3 gets the standard's usual scaler-unit for
that object (``meterlink.drivers.dlt698.oads``), logged once.  A DAR becomes an
invalid point with the DAR in words.

Clock (40000200): value = drift in seconds, meter_ts = the meter's time in its
``timezone`` (``meterlink.core.meterclock``), as for DL/T 645.

Daily freeze (5004, the ``daily_frozen_days`` meter key): records read one by
one with Selector9 (上第 n 次) from yesterday's back, until a freeze time the
journal already holds (``Store.last_meter_ts``); then journaled oldest first
under the historical OBIS codes (F = 126, ``meterlink.core.reading.historical_obis``)
with ``meter_ts`` = the freeze time, each day exactly once, as DL/T 645's.

Monthly freeze (5006, the ``monthly_frozen_months`` meter key, settlement): read
like the daily freeze, each missed month once, oldest first, under the same
F = 126 codes (``monthly_frozen_*`` names); the collector point itself
(1.0.98.2.0.255, value 0, ``meter_ts`` = the freeze time) marks each month
journaled, since the energy codes are shared with the daily freeze.

Minute freeze (5002, a point with ``oad: "50020200"``, the 15-min curve): read
by freeze-time range (Selector2 on 20210200) from the newest record journaled
(or ``backfill`` ago), in windows that fit the APDU budget, like a DLMS load
profile: each record gives its columns under their own OBIS codes with
``meter_ts`` = the record's time, and the profile point itself (value 0).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from meterlink.core import logs, meterclock
from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import LinkCounters, PointResult, Store, with_tries
from meterlink.core.errors import FrameError, MeterRejected, MeterTimeout
from meterlink.core.reading import historical_obis
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698 import oads
from meterlink.drivers.dlt698.data import Data, DataType, Oad, ScalerUnit, Selector, Ti, scaled, unit_text
from meterlink.drivers.transport import Transport, endpoint_for

MAX_APDU: Final = 512
"""Link user data assumed each way when nothing is negotiated (see the module docstring)."""
CLOCK_OAD: Final = Oad(0x4000, 2, 0)
DAILY_FREEZE: Final = Oad(0x5004, 2, 0)
MONTHLY_FREEZE: Final = Oad(0x5006, 2, 0)
MINUTE_FREEZE: Final = Oad(0x5002, 2, 0)
FREEZE_TIME: Final = oads.FREEZE_TIME
FORWARD, REVERSE = Oad(0x0010, 2, 0), Oad(0x0020, 2, 0)
CURVE_COLUMNS: Final = (Oad(0x0010, 2, 1), Oad(0x0020, 2, 1))  # 15-min curve: forward and reverse active total
CURVE_WINDOW: Final = dt.timedelta(hours=4)  # 16 records of ~18 bytes: well inside MAX_APDU
DEFAULT_BACKFILL: Final = 86400.0
DAILY_RECORDS: Final = 62
MONTHLY_RECORDS: Final = 12
SERVICE_NOT_SUPPORTED: Final = 2  # ERROR-Response 异常类型

_REPLY_HEAD = 8  # 85 02 PIID count + FollowReport + TimeTag flags
_PER_RESULT = 5  # OAD + Get-Result choice


def _estimate(oad: Oad) -> int:
    """Bytes the Data of ``oad`` takes at most in a reply: an element or a scaler-unit is small; a whole
    attribute is taken as an array of 5 long64 (total + 4 tariffs)."""
    if oad.attribute & 0x1F == 3:
        return 3
    if oad == CLOCK_OAD:
        return 8
    return 9 if oad.index else 2 + 5 * 9


def _chunks(wanted: Sequence[Oad], budget: int) -> list[list[Oad]]:
    """``wanted`` cut into lists whose NormalList request and estimated reply fit ``budget`` bytes."""
    out: list[list[Oad]] = []
    size = _REPLY_HEAD
    for oad in wanted:
        cost = _PER_RESULT + _estimate(oad)
        if out and size + cost <= budget:
            out[-1].append(oad)
            size += cost
        else:
            out.append([oad])
            size = _REPLY_HEAD + cost
    return out


def answers(request: A.Apdu, reply: A.Apdu) -> bool:
    """Whether ``reply`` is the answer to ``request``: same PIID service number, and the same service and OADs.

    A SECURITY-Response is looked into; one carrying a DAR or ciphertext has
    nothing to compare and is taken (``unwrap`` reports it).
    """
    if isinstance(reply, A.SecurityResponse):
        if reply.apdu is None or reply.encrypted:
            return True
        try:
            reply = A.decode_apdu(reply.apdu)
        except FrameError:
            return True
    want = getattr(request, "piid", None)
    got = getattr(reply, "piid_acd", None)
    if want is None or got is None or (want & 0x3F) != (got & 0x3F):
        return False
    if isinstance(reply, A.ErrorResponse):
        return True
    if isinstance(request, A.GetRequestNormal):
        return isinstance(reply, A.GetResponseNormal) and reply.result.oad == request.oad
    if isinstance(request, A.GetRequestNormalList):
        return (isinstance(reply, A.GetResponseNormalList)
                and tuple(r.oad for r in reply.results) == tuple(request.oads))
    if isinstance(request, A.GetRequestRecord):
        return isinstance(reply, A.GetResponseRecord) and reply.result.oad == request.oad
    if isinstance(request, A.SetRequestNormal):
        return isinstance(reply, A.SetResponseNormal) and reply.oad == request.oad
    if isinstance(request, A.ActionRequestNormal):
        return isinstance(reply, A.ActionResponseNormal) and reply.omd == request.omd
    return False


def _default_scalers() -> dict[int, ScalerUnit]:
    out: dict[int, ScalerUnit] = {}
    for row in oads.OADS.values():
        if row.scaler_unit is not None:
            out.setdefault(int(row.oad[:4], 16), row.scaler_unit)
    return out


DEFAULT_SCALERS: Final = _default_scalers()


@dataclass(frozen=True, slots=True)
class ClockReading:
    meter_time: dt.datetime  # aware, in the meter's zone
    drift: float  # seconds, meter minus gateway


def number(data: Data) -> tuple[int, dt.datetime | None]:
    """The integer of a measured value, and its own time stamp where the value carries one (a demand:
    structure {value, time}).  ``FrameError`` for anything else, so no placeholder becomes a reading."""
    stamp = None
    if data.type == DataType.STRUCTURE and isinstance(data.value, tuple) and data.value:
        items: tuple[Data, ...] = data.value
        if len(items) > 1 and items[1].type == DataType.DATE_TIME_S and isinstance(items[1].value, dt.datetime):
            stamp = items[1].value
        data = items[0]
    if data.type in (DataType.ENUM, DataType.OI) or not isinstance(data.value, int) or isinstance(data.value, bool):
        shown = "no value (NULL)" if data.type == DataType.NULL else f"{data.type.name.lower()} {data.value!r}"
        raise FrameError(f"the meter sent {shown}, not a number")
    return data.value, stamp


class Dlt698Driver:
    # SET 40000200 to one meter; ACTION 4000 method 127 (广播校时) to the bus
    sync_method = "SET 40000200 / ACTION 4000.127"

    def __init__(self, link: Link, store: Store | None = None, *, transport: Transport[Any] | None = None) -> None:
        self.link = link
        self.store = store
        self.counters = LinkCounters()
        self.channel: Transport[F.Frame] = transport or Transport(endpoint_for(link))
        self.max_apdu = MAX_APDU
        self._piid = 0
        self._no_list: set[str] = set()  # meters that refuse GET-Request-NormalList
        self._scalers: dict[tuple[str, int], ScalerUnit | None] = {}  # (meter, OI) -> attribute 3; None: none
        self._curve_last: dict[tuple[str, str], dt.datetime] = {}

    async def open(self) -> None:
        await self.channel.open()

    async def close(self) -> None:
        await self.channel.close()

    def _next_piid(self) -> int:
        self._piid = self._piid % 63 + 1  # 1..63; a retry repeats the request, PIID included
        return self._piid

    # --- one transaction ---------------------------------------------------------

    async def request(self, address: F.ServerAddress, apdu: A.Apdu, *, expect_reply: bool = True) -> A.Apdu | None:
        """Send ``apdu`` to ``address``; the checked reply (``answers``), with the link's tries."""
        data = F.encode_frame(F.request(address, A.encode_apdu(apdu)))
        if not expect_reply:
            await self.open()
            self.counters.transactions += 1
            await self.channel.send(data)
            return None

        async def attempt() -> A.Apdu:
            await self.open()
            await self.channel.send(data)
            return await self._receive(address, apdu)

        return await with_tries(self.link, self.counters, attempt)

    async def _receive(self, address: F.ServerAddress, request: A.Apdu) -> A.Apdu:
        segments = F.Reassembler()

        def accept(frame: F.Frame) -> bool:
            if not frame.from_server or not address.matches(frame.server):
                return False
            if frame.segmented:
                return True  # checked once joined
            try:
                return answers(request, A.decode_apdu(frame.user_data))
            except FrameError:
                return True  # garbled APDU from this meter: reported, not waited out

        deadline = time.monotonic() + self.link.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MeterTimeout(f"no reply within {self.link.timeout:g} s")
            frame = await self.channel.receive(F.decode, accept, left)
            if not frame.segmented:
                return A.decode_apdu(frame.user_data)
            joined = segments.accept(frame)
            if joined is None:
                await self.channel.send(F.encode_frame(F.confirm(frame)))
                deadline = time.monotonic() + self.link.timeout  # each segment has its own turnaround
                continue
            reply = A.decode_apdu(joined)
            if answers(request, reply):
                return reply
            # a late segmented answer to an earlier request: keep waiting for ours

    async def get(self, meter: str, address: F.ServerAddress, request: A.Apdu) -> A.Apdu:
        """``request``'s reply, SECURITY unwrapped; ERROR-Response raises ``MeterRejected``."""
        reply = await self.request(address, request)
        assert reply is not None
        try:
            return A.unwrap(reply, meter)
        except MeterRejected:
            self.counters.rejections += 1
            raise

    async def get_many(self, meter: Meter, oad_list: Sequence[Oad]) -> dict[Oad, A.ResultNormal]:
        """The result of every OAD: NormalLists within the APDU budget, or single GETs for a meter without."""
        address = F.ServerAddress(address=str(meter.address))
        out: dict[Oad, A.ResultNormal] = {}
        budget = self.max_apdu
        queue = _chunks(list(dict.fromkeys(oad_list)), budget)
        while queue:
            chunk = queue.pop(0)
            if len(chunk) == 1 or meter.id in self._no_list:
                for oad in chunk:
                    reply = await self.get(meter.id, address, A.GetRequestNormal(self._next_piid(), oad))
                    if not isinstance(reply, A.GetResponseNormal):
                        raise FrameError(f"{oad}: the meter answered {type(reply).__name__} to a GET")
                    out[oad] = reply.result
                continue
            try:
                reply = await self.get(meter.id, address, A.GetRequestNormalList(self._next_piid(), tuple(chunk)))
            except MeterRejected as exc:
                self._no_list.add(meter.id)
                logs.info("GET-Request-NormalList refused, reading OADs one by one", meter=meter.id,
                          link=self.link.id, point=",".join(map(str, chunk)), error=str(exc))
                queue.insert(0, chunk)
                continue
            if not isinstance(reply, A.GetResponseNormalList):
                raise FrameError(f"the meter answered {type(reply).__name__} to a GET-Request-NormalList")
            out.update((r.oad, r) for r in reply.results)
        return out

    # --- reading a batch -----------------------------------------------------------

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        zone = meter.config.timezone
        by_oad: dict[Oad, list[Point]] = {}
        for p in points:
            by_oad.setdefault(oads.parse_oad(p.oad), []).append(p)
        plain = [o for o in by_oad if o not in (CLOCK_OAD, DAILY_FREEZE, MONTHLY_FREEZE, MINUTE_FREEZE)]
        results: list[PointResult] = []
        if plain:
            results.extend(await self._read_values(meter, plain, by_oad))
        if CLOCK_OAD in by_oad:
            clock = await self.read_clock(str(meter.address), zone)
            results.extend(PointResult(point=p, value=Decimal(str(round(clock.drift, 3))), meter_ts=clock.meter_time,
                                       unit="s") for p in by_oad[CLOCK_OAD])
        if DAILY_FREEZE in by_oad:
            results.extend(await self._read_daily(meter, by_oad[DAILY_FREEZE]))
        if MONTHLY_FREEZE in by_oad:
            results.extend(await self._read_monthly(meter, by_oad[MONTHLY_FREEZE]))
        for p in by_oad.get(MINUTE_FREEZE, []):
            results.extend(await self._read_curve(meter, p))
        return results

    async def scalers(self, meter: Meter, ois: Sequence[int]) -> None:
        """Read attribute 3 of each OI not read yet (kept per meter and OI)."""
        missing = [oi for oi in dict.fromkeys(ois) if (meter.id, oi) not in self._scalers]
        if missing:
            got = await self.get_many(meter, [Oad(oi, 3, 0) for oi in missing])
            self._take_scalers(meter, got)

    def _take_scalers(self, meter: Meter, got: dict[Oad, A.ResultNormal]) -> None:
        for oad, res in got.items():
            if oad.attribute != 3 or (meter.id, oad.oi) in self._scalers:
                continue
            if res.data is not None and res.data.type == DataType.SCALER_UNIT:
                self._scalers[(meter.id, oad.oi)] = res.data.value  # type: ignore[assignment]
                continue
            default = DEFAULT_SCALERS.get(oad.oi)
            why = A.describe_dar(res.dar) if res.dar is not None else f"a {res.data.type.name.lower()}"  # type: ignore[union-attr]
            self._scalers[(meter.id, oad.oi)] = default
            if default is not None:
                logs.warning("scaler-unit refused, using the standard's usual one", meter=meter.id,
                             link=self.link.id, point=f"{oad.oi:04X}0300", error=why,
                             scaler=default.scaler, unit=unit_text(default.unit))

    async def _read_values(self, meter: Meter, plain: list[Oad], by_oad: dict[Oad, list[Point]]) -> list[PointResult]:
        need_scaler = [Oad(o.oi, 3, 0) for o in plain if (meter.id, o.oi) not in self._scalers]
        got = await self.get_many(meter, [*need_scaler, *plain])  # one list for both on a first read
        self._take_scalers(meter, got)
        zone = meter.config.timezone
        out: list[PointResult] = []
        for oad in plain:
            res = got[oad]
            for p in by_oad[oad]:
                if res.dar is not None:
                    self.counters.rejections += 1
                    out.append(PointResult.invalid(p, f"{oad}: the meter answered {A.describe_dar(res.dar)}"))
                    continue
                assert res.data is not None
                su = self._scalers.get((meter.id, oad.oi))
                try:
                    raw, stamp = number(res.data)
                except FrameError as exc:
                    out.append(PointResult.invalid(p, f"{oad}: {exc}"))
                    continue
                if su is None:
                    out.append(PointResult.invalid(p, f"{oad}: the meter has no scaler-unit (attribute 3) for it"))
                    continue
                out.append(PointResult(point=p, value=scaled(raw, su.scaler), unit=unit_text(su.unit),
                                       meter_ts=meterclock.localize(stamp, zone) if stamp else None))
        return out

    # --- clock -------------------------------------------------------------------

    async def read_clock(self, address: str, zone: str | None = None) -> ClockReading:
        """40000200 (date_time_s) in the meter's ``zone``, and its drift from the gateway's clock."""
        reply = await self.get(address, F.ServerAddress(address=address),
                               A.GetRequestNormal(self._next_piid(), CLOCK_OAD))
        now = dt.datetime.now(dt.UTC)
        assert isinstance(reply, A.GetResponseNormal)
        data = reply.result.value(address)
        if data.type != DataType.DATE_TIME_S or not isinstance(data.value, dt.datetime):
            raise FrameError(f"clock 40000200 is not a date and time: {data.type.name.lower()} {data.value!r}")
        meter_time = meterclock.localize(data.value, zone)
        return ClockReading(meter_time, (meter_time - now).total_seconds())

    async def set_clock(self, address: str | None, when: dt.datetime, zone: str | None = None) -> None:
        """SET 40000200 to ``when`` as the meter's wall clock in ``zone``; ``address`` None: the broadcast
        ACTION 4000 method 127 (广播校时), which has no reply."""
        wall = meterclock.wall_clock(when, zone).replace(microsecond=0)
        if address is None:
            await self.request(F.ServerAddress.broadcast(), A.broadcast_clock_request(self._next_piid(), wall),
                               expect_reply=False)
            return
        reply = await self.get(address, F.ServerAddress(address=address), A.clock_sync_request(self._next_piid(), wall))
        if isinstance(reply, A.SetResponseNormal) and reply.dar:
            self.counters.rejections += 1
            raise MeterRejected(f"{address} refused the time: {A.describe_dar(reply.dar)}", code=reply.dar)

    # --- freezes ---------------------------------------------------------------------

    async def record(self, meter: Meter, oad: Oad, rsd: Selector, columns: tuple[Oad, ...]) -> A.ResultRecord:
        reply = await self.get(meter.id, F.ServerAddress(address=str(meter.address)),
                               A.GetRequestRecord(self._next_piid(), oad, rsd, columns))
        if not isinstance(reply, A.GetResponseRecord):
            raise FrameError(f"{oad}: the meter answered {type(reply).__name__} to a GET-Request-Record")
        if tuple(reply.result.columns) != columns and reply.result.dar is None:
            raise FrameError(f"{oad}: the meter answered columns {', '.join(map(str, reply.result.columns))} "
                             f"for {', '.join(map(str, columns))}")
        return reply.result

    async def _walk_freeze(self, meter: Meter, oad: Oad, count: int, last: dt.datetime | None,
                           ) -> list[tuple[dt.datetime, tuple[Data, ...]]] | MeterRejected:
        """Records 上第 1..``count`` 次 of freeze ``oad`` (Selector9, newest first) down to the first one whose
        freeze time ``last`` (what the journal holds) already covers; the meter's refusal of the first."""
        zone = meter.config.timezone
        await self.scalers(meter, (FORWARD.oi, REVERSE.oi))
        columns = (FREEZE_TIME, FORWARD, REVERSE)
        new: list[tuple[dt.datetime, tuple[Data, ...]]] = []
        for n in range(1, count + 1):  # 上第 n 次: the newest record first, back until one the journal holds
            try:
                rows = (await self.record(meter, oad, Selector(9, (n,)), columns)).records(meter.id)
            except MeterRejected as exc:
                if n == 1:
                    return exc
                break  # a record the meter does not hold yet ends the walk
            if not rows or not isinstance(rows[0][0].value, dt.datetime):
                break
            when = meterclock.localize(rows[0][0].value, zone)
            if last is not None and when <= last:
                break
            new.append((when, rows[0]))
        return new

    def _freeze_values(self, meter: Meter, template: Point, kind: str,
                       new: list[tuple[dt.datetime, tuple[Data, ...]]]) -> list[PointResult]:
        """The energy values of freeze records ``new`` (newest first), journaled oldest first."""
        out: list[PointResult] = []
        for when, row in reversed(new):  # oldest first
            for data, column, c in ((row[1], FORWARD, 1), (row[2], REVERSE, 2)):
                if data.type != DataType.ARRAY or not isinstance(data.value, tuple):
                    continue  # some meters freeze forward energy only: NULL
                su = self._scalers.get((meter.id, column.oi))
                for tariff, item in enumerate(data.value):
                    point = _frozen_point(template, c, tariff, kind)
                    try:
                        raw, _ = number(item)
                    except FrameError as exc:
                        out.append(dataclasses.replace(PointResult.invalid(point, f"{column} tariff {tariff}: {exc}"),
                                                       meter_ts=when))
                        continue
                    if su is None:
                        out.append(dataclasses.replace(PointResult.invalid(point, f"{column}: no scaler-unit"),
                                                       meter_ts=when))
                        continue
                    out.append(PointResult(point=point, value=scaled(raw, su.scaler), meter_ts=when,
                                           unit=unit_text(su.unit)))
        return out

    async def _read_daily(self, meter: Meter, wanted: list[Point]) -> list[PointResult]:
        days = max(1, min(meter.config.daily_frozen_days or 1, DAILY_RECORDS))
        last = self.store.last_meter_ts(meter.id, historical_obis("1.0.1.8.0.255")) if self.store else None
        new = await self._walk_freeze(meter, DAILY_FREEZE, days, last)
        if isinstance(new, MeterRejected):
            return [PointResult.invalid(p, str(new)) for p in wanted]
        return self._freeze_values(meter, wanted[0], "daily", new)

    async def _read_monthly(self, meter: Meter, wanted: list[Point]) -> list[PointResult]:
        """Monthly freezes (5006) not journaled yet, oldest first, each with its marker: the collector point
        itself (value 0, ``meter_ts`` = the freeze time), which is what says a month is journaled.

        The energy values go out under the same F = 126 codes as the daily freeze (a freeze at the 1st,
        00:00 is the register then, whichever freeze holds it), so their newest time stamp cannot tell
        which months are in: after a daily freeze of the 1st it would skip that month's settlement
        values.  The marker's own OBIS (1.0.98.2.0.255) can.
        """
        months = max(1, min(meter.config.monthly_frozen_months or 1, MONTHLY_RECORDS))
        marker = wanted[0]
        last = self.store.last_meter_ts(meter.id, marker.obis) if self.store else None
        new = await self._walk_freeze(meter, MONTHLY_FREEZE, months, last)
        if isinstance(new, MeterRejected):
            return [PointResult.invalid(p, str(new)) for p in wanted]
        out: list[PointResult] = []
        for when, row in reversed(new):  # oldest first, each month's values then its marker
            out.extend(self._freeze_values(meter, marker, "monthly", [(when, row)]))
            out.extend(PointResult(point=p, value=Decimal(0), meter_ts=when) for p in wanted)
        return out

    async def _read_curve(self, meter: Meter, p: Point) -> list[PointResult]:
        zone = meter.config.timezone
        # the records end at the meter's own clock, not the gateway's
        meter_now = (await self.read_clock(str(meter.address), zone)).meter_time.replace(tzinfo=None)
        key = (meter.id, p.obis)
        last = self._curve_last.get(key)
        if last is None and self.store is not None:
            journaled = self.store.last_meter_ts(meter.id, p.obis)
            if journaled is not None:
                last = meterclock.wall_clock(journaled, zone)
        start = (last + dt.timedelta(seconds=1)) if last is not None else \
            meter_now - dt.timedelta(seconds=meter.config.backfill or DEFAULT_BACKFILL)
        await self.scalers(meter, [c.oi for c in CURVE_COLUMNS])
        columns = (FREEZE_TIME, *CURVE_COLUMNS)
        named = {q.obis: q for q in meter.points}
        out: list[PointResult] = []
        newest = last
        window = start
        while window <= meter_now:
            end = min(window + CURVE_WINDOW, meter_now + dt.timedelta(seconds=1))
            rsd = Selector(2, (FREEZE_TIME, Data(DataType.DATE_TIME_S, window), Data(DataType.DATE_TIME_S, end),
                               Data(DataType.TI, Ti(1, 15))))
            try:
                rows = (await self.record(meter, MINUTE_FREEZE, rsd, columns)).records(meter.id)
            except MeterRejected as exc:
                return [*out, PointResult.invalid(p, str(exc))]
            for row in rows:
                if not isinstance(row[0].value, dt.datetime) or row[0].value < window:
                    continue
                ts = meterclock.localize(row[0].value, zone)
                newest = max(newest, row[0].value) if newest else row[0].value
                for column, data in zip(CURVE_COLUMNS, row[1:], strict=True):
                    out.append(self._curve_value(meter, p, column, data, ts, named))
                out.append(PointResult(point=p, value=Decimal(0), meter_ts=ts))
            window = end
        if newest is not None:
            self._curve_last[key] = newest
        return out

    def _curve_value(self, meter: Meter, p: Point, column: Oad, data: Data, ts: dt.datetime,
                     named: dict[str, Point]) -> PointResult:
        row = oads.lookup(column)
        obis = row.obis if row is not None and row.obis else p.obis
        own = named.get(obis)
        name = own.name if own is not None else "obis_" + obis.replace(".", "_")
        point = dataclasses.replace(p, obis=obis, name=f"{p.name}_{name}", unit=own.unit if own else "",
                                    oad=str(column))
        su = self._scalers.get((meter.id, column.oi))
        try:
            raw, _ = number(data)
        except FrameError as exc:
            return dataclasses.replace(PointResult.invalid(point, f"{column}: {exc}"), meter_ts=ts)
        if su is None:
            return dataclasses.replace(PointResult.invalid(point, f"{column}: no scaler-unit"), meter_ts=ts)
        return PointResult(point=point, value=scaled(raw, su.scaler), meter_ts=ts, unit=unit_text(su.unit))


def _frozen_point(template: Point, obis_c: int, tariff: int, freeze: str = "daily") -> Point:
    """A point for one value of a daily or monthly freeze: the energy register's historical OBIS (F = 126),
    so a subscriber never takes the freeze for the live register (as ``meterlink.drivers.dlt645.driver``)."""
    kind = "forward" if obis_c == 1 else "reverse"
    name = f"{freeze}_frozen_{kind}_active_energy" + (f"_t{tariff}" if tariff else "")
    return dataclasses.replace(template, obis=historical_obis(f"1.0.{obis_c}.8.{tariff}.255"), name=name,
                               unit="kWh")
