"""The DLMS/COSEM driver: polled meters over HDLC (serial or TCP) or the TCP wrapper, and push listeners.

One driver per link.  A read of a meter reuses the meter's association when it
is still fresh, else opens a new one (SNRM/UA, AARQ/AARE, HLS); everything is
asyncio on non-blocking descriptors, so a slow meter holds only its own link.

What a read does, for the points due:

* Register (3), Extended Register (4), Demand Register (5): attribute 2
  scaled by the scaler-unit (attribute 3, or 4 for class 5), which is read
  once per meter and cached.  The unit is the meter's, converted exactly to
  the point's when the point names a multiple of it (Wh -> kWh).
* Data (1) and other classes: the attribute as a number.
* Clock (8): ``value`` is the drift in seconds (meter minus gateway time),
  ``meter_ts`` the meter's time.
* Profile Generic (7): the buffer by range, from just after the newest
  record journaled for this profile (``Store.last_meter_ts(meter, profile
  obis)``) to the meter's clock, so an outage of the gateway or the meter is
  backfilled from the meter's buffer.  Each record gives one reading of the
  profile's own OBIS (value: the record's status word, 0 without one) and one
  reading per captured value under the value's historical OBIS code (F = 126:
  ``1.0.1.8.0.255`` captured every 15 min goes out as ``1.0.1.8.0.126``, so
  no subscriber of the live register takes a record for the current value),
  all with the record's time stamp as ``meter_ts``.  Time stamps without a
  deviation are read in the meter's ``timezone``.  Where a backfill starts
  rests on the profile's own OBIS, which keeps its code.

All plain attributes of one read go in GET-with-list requests where the meter
negotiated it, cut to its PDU size.  A meter that drops the association
half way is re-associated and the read continues with what is left.

Push meters (``transport: push``) never answer requests: see
:mod:`meterlink.drivers.dlms.push`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import LinkCounters, PointResult, Store
from meterlink.core.errors import ConfigError, FrameError, LinkError, MeterlinkError, MeterRejected, MeterTimeout
from meterlink.core.meterclock import zone_info
from meterlink.core.reading import Quality, UnitMismatch, historical_obis
from meterlink.core.secrets import read_secret
from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr, units
from meterlink.drivers.dlms.address import DlmsAddress, parse_address
from meterlink.drivers.dlms.apdu import AttributeRef, AttributeRequest, DataAccessResult, RangeSelector
from meterlink.drivers.dlms.hdlc import HdlcAddress
from meterlink.drivers.dlms.link import ApduChannel, HdlcChannel, SessionLost, WrapperChannel
from meterlink.drivers.dlms.push import PushListener
from meterlink.drivers.dlms.session import DEFAULT_CLIENT_TITLE, HLS_GMAC, LLS, NONE, ObjectError, Security, Session
from meterlink.drivers.transport import Transport, endpoint_for

REGISTER, EXTENDED_REGISTER, DEMAND_REGISTER, CLOCK, PROFILE = 3, 4, 5, 8, 7
SCALED = {REGISTER: 3, EXTENDED_REGISTER: 3, DEMAND_REGISTER: 4}  # class -> attribute of its scaler_unit
# class -> the attributes its scaler_unit applies to (Blue Book 4.3.4: a demand register's current_average_value
# (2) and last_average_value (3) both)
SCALED_VALUES = {REGISTER: (2,), EXTENDED_REGISTER: (2,), DEMAND_REGISTER: (2, 3)}
SESSION_IDLE = 60.0       # seconds an association is reused for (meters drop idle ones after 1-2 min)
DEFAULT_BACKFILL = 86400.0
MAX_REASSOCIATIONS = 5


@dataclass
class DlmsMeterState:
    """What the driver learned about one meter and keeps across reads."""

    address: DlmsAddress
    security: Security
    scalers: dict[tuple[int, str, int], tuple[int, str]] = field(default_factory=dict)  # (class, obis, attr) -> scaler
    captures: dict[str, tuple[AttributeRef, ...]] = field(default_factory=dict)        # profile obis -> columns
    periods: dict[str, int] = field(default_factory=dict)                              # profile obis -> seconds
    profile_last: dict[str, datetime] = field(default_factory=dict)                    # newest record handed out


class DlmsDriver:
    """DLMS/COSEM on one link (CONTRACT section 3, ``protocol: dlms``)."""

    def __init__(self, link: Link, store: Store | None = None, *, transport: Transport[Any] | None = None) -> None:
        self.link = link
        self.store = store
        self.counters = LinkCounters()
        self._bytes: Transport[Any] | None = transport
        self._tcp = not link.serial
        self._session: Session | None = None
        self._session_meter: str | None = None
        self._session_used = 0.0
        self._meters: dict[str, DlmsMeterState] = {}
        self._ic: dict[str, int] = {}
        self._push: PushListener | None = None

    # --- channel -----------------------------------------------------------------------

    def _byte_link(self) -> Transport[Any]:
        if self._bytes is None:
            self._bytes = Transport(endpoint_for(self.link))
        return self._bytes

    async def open(self) -> None:
        if self.link.serial:
            await self._byte_link().open()
        # a TCP link is opened per association (a meter may close it between reads)

    async def close(self) -> None:
        await self._drop_session(release=True)
        if self._push is not None:
            await self._push.stop()
            self._push = None
        if self._bytes is not None:
            await self._bytes.close()

    # --- meters --------------------------------------------------------------------------

    def _state(self, meter: Meter) -> DlmsMeterState:
        st = self._meters.get(meter.id)
        if st is None:
            st = DlmsMeterState(address=_address(meter), security=_security(meter))
            self._meters[meter.id] = st
        return st

    def _next_ic(self, meter: Meter) -> int:
        """The next client invocation counter, persisted before use, never below the wall clock in seconds.

        The journal keeps the counter across restarts; the wall-clock floor
        keeps it growing where there is no journal (``meterlink read``) and a
        counter is never reused, which a meter would refuse.
        """
        key = f"dlms.{meter.id}.invocation_counter"
        stored = self.store.get_state(key) if self.store is not None else None
        current = max(int(stored) if stored and stored.isdigit() else 0, int(time.time()), self._ic.get(meter.id, 0))
        if current >= 0xFFFFFFFF:
            raise MeterRejected(f"{meter.id}: the client invocation counter is exhausted; new keys are needed")
        if self.store is not None:
            self.store.set_state(key, str(current + 1))
        self._ic[meter.id] = current + 1
        return current

    def _channel(self, meter: Meter, st: DlmsMeterState) -> ApduChannel:
        transport = _transport(meter, self.link)
        link = self._byte_link()
        if transport == "wrapper":
            return WrapperChannel(link, client=st.address.client, logical=st.address.logical, timeout=self.link.timeout)
        server = HdlcAddress(st.address.logical, st.address.physical, st.address.size)
        return HdlcChannel(link, client=st.address.client, server=server, timeout=self.link.timeout,
                           tries=self.link.tries)

    async def _drop_session(self, *, release: bool) -> None:
        session, self._session, self._session_meter = self._session, None, None
        if session is None:
            return
        if release:
            await session.release()
        elif self._tcp and self._bytes is not None:
            await self._bytes.close()

    async def _session_for(self, meter: Meter, st: DlmsMeterState) -> tuple[Session, bool]:
        """The meter's open association, reused while fresh, else a new one; ``(session, reused)``.

        A stale association is dropped without RLRQ: the meter has most likely
        timed it out already, and a new SNRM (or TCP connection) resets it
        anyway.  A previous meter's association on the same link is released.
        """
        fresh = time.monotonic() - self._session_used < SESSION_IDLE
        if self._session is not None and self._session_meter == meter.id and self._session.open:
            if fresh:
                return self._session, True
            await self._drop_session(release=False)
        await self._drop_session(release=True)
        channel = self._channel(meter, st)
        session = Session(channel, st.security, lambda: self._next_ic(meter), on_request=self._count)
        try:
            await session.associate()
        except MeterlinkError as exc:
            self._failed(exc)
            if self._tcp and self._bytes is not None:
                await self._bytes.close()
            if isinstance(exc, MeterRejected) and st.security.ciphered:
                raise MeterRejected(f"{exc} (check enc_key, auth_key and client_system_title)", exc.code) from None
            raise
        self._session, self._session_meter = session, meter.id
        self._session_used = time.monotonic()
        return session, False

    def _count(self) -> None:
        self.counters.transactions += 1

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, MeterTimeout):
            self.counters.timeouts += 1
        elif isinstance(exc, FrameError):
            self.counters.frame_errors += 1
        elif isinstance(exc, MeterRejected):
            self.counters.rejections += 1

    # --- reading -------------------------------------------------------------------------------

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        if _transport(meter, self.link) == "push":
            return await self._read_push(meter, points)
        st = self._state(meter)
        plan = _Plan(meter, points, st)
        reassociations = 0
        while True:
            progress = plan.progress()
            session, reused = await self._session_for(meter, st)
            try:
                await plan.run(session, self)
            except SessionLost as exc:
                # a reused association the meter timed out, or one it dropped half way: associate again and go on
                await self._drop_session(release=False)
                reassociations += 1
                if (not reused and plan.progress() == progress) or reassociations > MAX_REASSOCIATIONS:
                    raise LinkError(f"the meter dropped the association during the read: {exc}") from None
                continue
            except (MeterTimeout, FrameError) as exc:
                await self._drop_session(release=False)
                if reused and reassociations == 0:  # a silently expired association: one fresh try
                    reassociations += 1
                    continue
                self._failed(exc)
                raise
            except MeterlinkError as exc:
                self._failed(exc)
                await self._drop_session(release=False)
                raise
            self._session_used = time.monotonic()
            return plan.results()

    async def _read_push(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        if self._push is None:
            self._push = PushListener(self._byte_link(), meter, self.link.timeout)
        await self._byte_link().open()
        return await self._push.collect(meter, points)

    # --- profiles -----------------------------------------------------------------------------

    def profile_start(self, meter: Meter, point: Point, meter_now: datetime, period: int) -> datetime:
        """Where a profile read starts: just after the newest record journaled or handed out."""
        st = self._state(meter)
        last = st.profile_last.get(point.obis)
        if self.store is not None:
            journaled = self.store.last_meter_ts(meter.id, point.obis)
            if journaled is not None and (last is None or journaled > last):
                last = journaled
        if last is not None:
            return last
        if self.store is None:  # a one-off read: the newest records only
            return meter_now - timedelta(seconds=2 * max(period, 1))
        return meter_now - timedelta(seconds=meter.config.backfill or DEFAULT_BACKFILL)


class _Plan:
    """One read of one meter: which attributes to GET, and what they become."""

    def __init__(self, meter: Meter, points: Sequence[Point], st: DlmsMeterState) -> None:
        self.meter = meter
        self.st = st
        self.points = list(points)
        self.plain = [p for p in points if (p.class_id or REGISTER) != PROFILE]
        self.profiles = [p for p in points if (p.class_id or REGISTER) == PROFILE]
        self.items: list[AttributeRequest] = []
        self.got: list[bytes | DataAccessResult | int] = []
        self.times: list[float] = []
        self.profile_out: dict[str, list[PointResult]] = {}
        self._build()

    def progress(self) -> int:
        return len(self.got) + len(self.profile_out)

    def _add(self, ref: AttributeRef) -> None:
        req = AttributeRequest(ref)
        if req not in self.items:
            self.items.append(req)

    def _build(self) -> None:
        for p in self.plain:
            cls = p.class_id or REGISTER
            self._add(AttributeRef(cls, p.obis, p.attribute))
            if cls in SCALED and p.attribute in SCALED_VALUES[cls] and (cls, p.obis, SCALED[cls]) not in \
                    self.st.scalers:
                self._add(AttributeRef(cls, p.obis, SCALED[cls]))
            if cls == EXTENDED_REGISTER and p.attribute == 2:
                self._add(AttributeRef(cls, p.obis, 5))  # capture_time: the value's meter_ts
        for p in self.profiles:
            self._add(AttributeRef(CLOCK, ap.CLOCK_OBIS, 2))  # the range ends at the meter's clock
            if p.obis not in self.st.captures:
                self._add(AttributeRef(PROFILE, p.obis, 3))   # capture_objects
                self._add(AttributeRef(PROFILE, p.obis, 4))   # capture_period

    async def run(self, session: Session, driver: DlmsDriver) -> None:
        remaining = self.items[len(self.got):]
        if remaining:
            t0 = time.time()
            await session.get_many(remaining, self.got)
            self.times.append((t0 + time.time()) / 2)
        for p in self.profiles:
            if p.obis in self.profile_out:
                continue
            await self._read_profile(session, driver, p)

    def _result(self, ref: AttributeRef) -> bytes | DataAccessResult | int:
        return self.got[self.items.index(AttributeRequest(ref))]

    def _value(self, ref: AttributeRef) -> axdr.Data:
        r = self._result(ref)
        if not isinstance(r, bytes):
            raise ObjectError(r)
        return axdr.decode_all(r)

    def _scaler(self, cls: int, obis: str) -> tuple[int, str]:
        key = (cls, obis, SCALED[cls])
        if key not in self.st.scalers:
            su = self._value(AttributeRef(*key))
            self.st.scalers[key] = _scaler_unit(su)
        return self.st.scalers[key]

    def results(self) -> list[PointResult]:
        out: list[PointResult] = []
        gateway_time = datetime.fromtimestamp(self.times[0], UTC) if self.times else datetime.now(UTC)
        for p in self.points:
            if p in self.profiles:
                out.extend(self.profile_out.get(p.obis, []))
                continue
            try:
                out.append(self._point(p, gateway_time))
            except ObjectError as exc:
                out.append(PointResult.invalid(p, f"the meter answered {exc}"))
            except (FrameError, ValueError) as exc:
                out.append(PointResult.invalid(p, str(exc)))
        return out

    def _point(self, p: Point, gateway_time: datetime) -> PointResult:
        cls = p.class_id or REGISTER
        d = self._value(AttributeRef(cls, p.obis, p.attribute))
        if cls == CLOCK and p.attribute == 2:
            meter_time = axdr.as_datetime(d, zone_info(self.meter.config.timezone))
            drift = Decimal(str(round((meter_time - gateway_time).total_seconds(), 3)))
            return _clock_quality(PointResult(point=p, value=units.plain(drift), meter_ts=meter_time, unit="s"),
                                  axdr.clock_status(d))
        value = _number(d)
        meter_ts = None
        if cls in SCALED and p.attribute in SCALED_VALUES[cls]:
            scaler, unit = self._scaler(cls, p.obis)
            value = units.scale(value, scaler)
            try:
                value, unit = units.convert(value, unit, p.unit)
            except UnitMismatch as exc:
                raise ValueError(str(exc)) from None
            if cls == EXTENDED_REGISTER and p.attribute == 2:
                with contextlib.suppress(ObjectError, FrameError, ValueError):
                    meter_ts = axdr.as_datetime(self._value(AttributeRef(cls, p.obis, 5)),
                                                zone_info(self.meter.config.timezone))
            return PointResult(point=p, value=units.plain(value), meter_ts=meter_ts, unit=unit)
        return PointResult(point=p, value=units.plain(value), meter_ts=meter_ts)

    # --- profile generic ---

    async def _read_profile(self, session: Session, driver: DlmsDriver, p: Point) -> None:
        st = self.st
        try:
            if p.obis not in st.captures:
                st.captures[p.obis] = _capture_objects(self._value(AttributeRef(PROFILE, p.obis, 3)))
                period = self._value(AttributeRef(PROFILE, p.obis, 4))
                st.periods[p.obis] = int(period.value) if isinstance(period.value, int) else 0
            meter_now = axdr.as_datetime(self._value(AttributeRef(CLOCK, ap.CLOCK_OBIS, 2)),
                                         zone_info(self.meter.config.timezone))
        except ObjectError as exc:
            self.profile_out[p.obis] = [PointResult.invalid(p, f"the meter answered {exc}")]
            return
        except (FrameError, ValueError) as exc:
            self.profile_out[p.obis] = [PointResult.invalid(p, str(exc))]
            return
        columns = st.captures[p.obis]
        start = driver.profile_start(self.meter, p, meter_now, st.periods.get(p.obis, 0))
        if start >= meter_now:
            self.profile_out[p.obis] = []
            return
        # scalers of the captured registers, read once per meter like the registers' own
        need = [AttributeRequest(AttributeRef(c.class_id, c.obis, SCALED[c.class_id])) for c in columns
                if c.class_id in SCALED and c.attribute in SCALED_VALUES[c.class_id]
                and (c.class_id, c.obis, SCALED[c.class_id]) not in st.scalers]
        if need:
            got = await session.get_many(need)
            for req, raw in zip(need, got, strict=True):
                if isinstance(raw, bytes):
                    with contextlib.suppress(FrameError, ValueError):
                        st.scalers[(req.ref.class_id, req.ref.obis, req.ref.attribute)] = \
                            _scaler_unit(axdr.decode_all(raw))
        selector = RangeSelector.between(start + timedelta(seconds=1), meter_now, deviation=_deviation(meter_now))
        try:
            raw = await session.get(AttributeRequest(AttributeRef(PROFILE, p.obis, 2), selector))
        except ObjectError as exc:
            self.profile_out[p.obis] = [PointResult.invalid(p, f"the meter answered {exc} reading the buffer")]
            return
        try:
            records = _records(axdr.decode_all(raw), columns, st.periods.get(p.obis, 0),
                               zone_info(self.meter.config.timezone))
        except (FrameError, ValueError) as exc:
            self.profile_out[p.obis] = [PointResult.invalid(p, f"buffer: {exc}")]
            return
        out: list[PointResult] = []
        newest = start
        named = {q.obis: q for q in self.meter.points}
        for ts, values in records:
            if ts <= start or ts > meter_now:
                continue
            newest = max(newest, ts)
            status = Decimal(0)
            clock_status = 0
            record: list[PointResult] = []
            for col, d in values:
                if col.class_id == CLOCK:
                    clock_status = axdr.clock_status(d)
                    continue
                if col.obis.startswith("0.0.96.10."):  # status word of the record
                    with contextlib.suppress(ValueError):
                        status = _number(d)
                    continue
                record.append(self._column(p, col, d, ts, named.get(col.obis)))
            record.append(PointResult(point=p, value=status, meter_ts=ts))
            out.extend(_clock_quality(r, clock_status) for r in record)
        if newest > start:
            st.profile_last[p.obis] = newest
        self.profile_out[p.obis] = out

    def _column(self, p: Point, col: AttributeRef, d: axdr.Data, ts: datetime, named: Point | None) -> PointResult:
        """One captured value of a record, under its historical OBIS code (:func:`_record_obis`)."""
        name = named.name if named is not None and named.name != p.name else "obis_" + col.obis.replace(".", "_")
        unit = named.unit if named is not None else ""
        point = dataclasses.replace(p, obis=_record_obis(col.obis), name=f"{p.name}_{name}", unit=unit,
                                    class_id=col.class_id, attribute=col.attribute)
        try:
            value = _number(d)
            key = (col.class_id, col.obis, SCALED.get(col.class_id, 0))
            if col.class_id in SCALED and col.attribute in SCALED_VALUES[col.class_id]:
                if key not in self.st.scalers:
                    return PointResult.invalid(point, "no scaler-unit for this captured register")
                scaler, meter_unit = self.st.scalers[key]
                value, unit = units.convert(units.scale(value, scaler), meter_unit, unit)
                point = dataclasses.replace(point, unit=unit)
        except ValueError as exc:
            return dataclasses.replace(PointResult.invalid(point, str(exc)), meter_ts=ts)
        return PointResult(point=point, value=units.plain(value), meter_ts=ts)


# --- helpers -------------------------------------------------------------------------------------


def _number(d: axdr.Data) -> Decimal:
    """A numeric value; a string of digits (a serial number) counts as one."""
    if d.tag in (axdr.Tag.VISIBLE_STRING, axdr.Tag.UTF8_STRING, axdr.Tag.OCTET_STRING):
        text = d.value.decode("latin-1") if isinstance(d.value, bytes) else str(d.value)
        if text.strip().isdigit():
            return Decimal(text.strip())
        raise ValueError(f"the meter returns text {text!r}, not a number")
    if d.tag in (axdr.Tag.FLOAT32, axdr.Tag.FLOAT64) and d.value is None:
        raise ValueError("the meter returns NaN or infinity")
    return d.number()


def _record_obis(obis: str) -> str:
    """The OBIS code a profile record's captured value goes out under: its historical code (F = 126).

    A load profile capturing ``1.0.1.8.0.255`` every 15 min holds what that
    register read at each capture time, not its value now; under the live
    code a subscriber keyed on ``1.0.1.8.0.255`` (a Home Assistant entity)
    would take a backfilled record for the current reading.  The rule is
    the one for DL/T 645 daily freezes (``meterlink.core.reading.HISTORICAL_F``),
    with ``meter_ts`` the record's time; a column that is already no live
    value (F other than 255, e.g. a billing period's ``1.0.1.8.0.101``) keeps
    its own code.
    """
    return historical_obis(obis) if obis.endswith(".255") else obis


def _clock_quality(r: PointResult, status: int) -> PointResult:
    """A reading whose time stamp the meter itself flags (Blue Book 4.1.6.1 clock_status) is not good.

    Bit 0 "invalid value": the meter does not know its time, so the value
    belongs to no known instant: quality invalid, no value.  Bit 1 "doubtful
    value": the time may be off (after a power failure, before a sync):
    quality estimated, the value kept.
    """
    if r.quality is not Quality.GOOD:
        return r
    if status & axdr.CLOCK_INVALID:
        return dataclasses.replace(r, value=None, quality=Quality.INVALID,
                                   error=f"the meter flags its clock invalid (clock status {status:#04x})")
    if status & axdr.CLOCK_DOUBTFUL:
        return dataclasses.replace(r, quality=Quality.ESTIMATED,
                                   error=f"the meter flags its clock doubtful (clock status {status:#04x})")
    return r


def _scaler_unit(d: axdr.Data) -> tuple[int, str]:
    """scaler_unit ::= structure {scaler: integer, unit: enum} (Blue Book 4.3.2)."""
    try:
        scaler, unit = d.items
        return int(scaler.value), units.unit_text(int(unit.value))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad scaler_unit {d!r}: {exc}") from None


def _capture_objects(d: axdr.Data) -> tuple[AttributeRef, ...]:
    """capture_objects ::= array of structure {class_id, logical_name, attribute_index, data_index}."""
    out = []
    try:
        for item in d.items:
            cls, ln, attr, _index = item.items
            out.append(AttributeRef(int(cls.value), ap.obis_text(ln.value), int(attr.value)))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad capture_objects: {exc}") from None
    if not any(c.class_id == CLOCK for c in out):
        raise ValueError("the profile captures no clock: its records have no time stamp")
    return tuple(out)


def _records(buffer: axdr.Data, columns: Sequence[AttributeRef], period: int, zone: tzinfo | None = None
             ) -> list[tuple[datetime, list[tuple[AttributeRef, axdr.Data]]]]:
    """Buffer entries with their time stamps; a null clock is the previous one plus the capture period.

    A time stamp whose deviation is "not specified" is the meter's wall time in
    ``zone`` (the meter's ``timezone``; None: the gateway's), each record with
    the offset of its own time stamp, so records on either side of a
    daylight-saving change land on their true instants.  Time stamps come out
    in UTC, where a record with a null clock is truly one period after the
    previous one (in wall time, 01:45 + 15 min across the spring change is an
    hour that does not exist).
    """
    out = []
    prev: datetime | None = None
    for entry in buffer.items:
        values = entry.items
        if len(values) != len(columns):
            raise ValueError(f"a buffer entry has {len(values)} values for {len(columns)} capture objects")
        ts: datetime | None = None
        for col, d in zip(columns, values, strict=True):
            if col.class_id == CLOCK:
                if d.tag is axdr.Tag.NULL:
                    ts = prev + timedelta(seconds=period) if prev is not None and period else None
                else:
                    ts = axdr.as_datetime(d, zone).astimezone(UTC)  # UTC: "+ period" is real time, not wall
        if ts is None:
            raise ValueError("a buffer entry without a time stamp")
        prev = ts
        out.append((ts, list(zip(columns, values, strict=True))))
    return out


def _deviation(dt: datetime) -> int | None:
    off = dt.utcoffset()
    return None if off is None else -int(off.total_seconds() // 60)


def _transport(meter: Meter, link: Link) -> str:
    if meter.config.transport:
        return meter.config.transport
    return "hdlc" if link.serial else "wrapper"


def _address(meter: Meter) -> DlmsAddress:
    try:
        return parse_address(meter.config.address, meter.config.serial)
    except ValueError as exc:
        raise ConfigError(f"meters.{meter.id}.address", str(exc)) from None


def _hex_secret(meter: Meter, kind: str) -> bytes | None:
    c = meter.config
    secret = read_secret(f"meters.{meter.id}.{kind}_file", file=getattr(c, f"{kind}_file"),
                         env=getattr(c, f"{kind}_env"))
    if secret is None:
        return None
    try:
        key = bytes.fromhex(secret)
    except ValueError:
        raise ConfigError(f"meters.{meter.id}.{kind}_file", "the key is not 32 hex digits") from None
    if len(key) != 16:
        raise ConfigError(f"meters.{meter.id}.{kind}_file", f"the key has {len(key)} bytes, security suite 0 needs 16")
    return key


def _security(meter: Meter) -> Security:
    """The meter's security settings, secrets read now from their files or variables (never from the config)."""
    c = meter.config
    mechanism = c.auth or NONE
    title = DEFAULT_CLIENT_TITLE
    if c.client_system_title:
        try:
            title = bytes.fromhex(c.client_system_title)
        except ValueError:
            title = b""
        if len(title) != 8:
            raise ConfigError(f"meters.{meter.id}.client_system_title", "must be 8 bytes as 16 hex digits")
    if mechanism == LLS:
        password = read_secret(f"meters.{meter.id}.password_file", file=c.password_file, env=c.password_env)
        if password is None:
            raise ConfigError(f"meters.{meter.id}.password_file", "auth lls needs password_file or password_env")
        return Security(mechanism=LLS, password=password.encode("latin-1"), client_title=title)
    if mechanism == HLS_GMAC or (c.transport == "push" and (c.enc_key_file or c.enc_key_env)):
        ek, ak = _hex_secret(meter, "enc_key"), _hex_secret(meter, "auth_key")
        if ek is None or (ak is None and mechanism == HLS_GMAC):
            raise ConfigError(f"meters.{meter.id}.enc_key_file", "hls-gmac needs enc_key and auth_key (file or env)")
        return Security(mechanism=mechanism, encryption_key=ek, authentication_key=ak, client_title=title)
    return Security(mechanism=NONE, client_title=title)
