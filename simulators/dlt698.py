"""Simulated DL/T 698.45 meters, sans-io: request bytes in, reply bytes out. Built on ``meterlink.drivers.dlt698``.

Each meter has energy registers that grow with a simulated power, split over
``tariffs`` tariffs whose registers sum exactly to the total (the total is
their sum, as a meter shows them at 0.01 kWh), instantaneous values with the
usual scaler-units (energy -2 kWh, voltage -1 V, current -3 A, power -1 W),
a clock running ``clock_offset`` seconds off true time (SET 40000200 or the
broadcast ACTION 4000 method 127 set it), 62 daily freezes (5004), 15-minute
curves (5002, two days) and 12 monthly freezes (5006) readable with GET-Record
selectors 1, 2 and 9, and DAR 6 for an object it does not have.  Several meters
share one bus; replies are preceded by ``preamble`` FE bytes and split into
link segments when ``max_frame`` is set (the client confirms each segment).

Everything is a pure function of the ``now`` passed in (the true time), so a
test drives time explicitly.  ``frozen_at`` pins the live registers (energy,
instantaneous values) to one meter time while the clock keeps running, so a
test knows every value served and still sees a live clock; freeze records keep
their own times.  ``normal_list=False`` emulates a meter that refuses
GET-Request-NormalList (ERROR-Response "service not supported").
:class:`Dlt698Handler` serves a bus on a real pty or TCP port (``meterlink
simulate dlt698``) with the fault injection all simulators share.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698.data import Data, DataType, Oad, Road, ScalerUnit, Selector, structure
from meterlink.simulators.faults import FaultPlan
from meterlink.simulators.serve import Reply
from meterlink.simulators.wire import char_time, dlt698_transaction

RELEASE_REQUEST = 0x03
RELEASE_RESPONSE = 0x83
OBJECT_UNDEFINED = 4
OBJECT_MISSING = 6
OUT_OF_RANGE = 8
TYPE_MISMATCH = 7

DAILY_RECORDS = 62
CURVE_RECORDS = 2 * 96
MONTHLY_RECORDS = 12
FREEZE_TIME = Oad(0x2021, 2, 0)
ENERGY_OIS = frozenset((0x0000, 0x0010, 0x0020, 0x0030, 0x0040, 0x0050, 0x0060, 0x0070, 0x0080))
CENT = Decimal("0.01")


@dataclass
class Dlt698Meter:
    """One meter.  ``power_w`` is the constant simulated import; reverse energy stays at its start value."""

    address: str
    tariffs: int = 4
    power_w: Decimal = Decimal("2300.0")
    voltage: Decimal = Decimal("230.1")
    clock_offset: float = 0.0  # seconds the meter's clock runs ahead of true time
    epoch: dt.datetime = dt.datetime(2024, 1, 1)  # true time at which ``start_kwh`` was the total
    start_kwh: Decimal = Decimal("12345.67")
    frozen_at: dt.datetime | None = None  # meter time the live registers stay at (None: they follow the clock)
    normal_list: bool = True  # False: GET-Request-NormalList is answered "service not supported"
    history: int = DAILY_RECORDS  # daily freezes held (上1次..上history次)
    _shares: tuple[Decimal, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if not 1 <= self.tariffs <= 63:
            raise ValueError(f"tariffs={self.tariffs}: a meter has 1..63")
        F.ServerAddress(address=self.address)
        self._shares = tuple(Decimal(1) / self.tariffs for _ in range(self.tariffs))

    # --- time and registers -----------------------------------------------------------

    def clock(self, now: dt.datetime) -> dt.datetime:
        """The meter's wall clock at true time ``now`` (naive)."""
        return (now + dt.timedelta(seconds=self.clock_offset)).replace(microsecond=0)

    def set_clock(self, when: dt.datetime, now: dt.datetime) -> None:
        self.clock_offset = (when - now).total_seconds()

    def forward(self, at: dt.datetime) -> list[int]:
        """Total and tariffs 1..k in 0.01 kWh at meter time ``at``: the total is the exact sum."""
        hours = Decimal((at - self.epoch).total_seconds()) / 3600
        grown = self.start_kwh + max(hours, Decimal(0)) * self.power_w / 1000
        tariffs = [int((grown * share / CENT).to_integral_value(ROUND_FLOOR)) for share in self._shares]
        return [sum(tariffs), *tariffs]

    def energy(self, oi: int, at: dt.datetime) -> list[int]:
        if oi in (0x0000, 0x0010):
            return self.forward(at)  # combined = forward + reverse, reverse is 0
        return [0] * (self.tariffs + 1)

    def attribute(self, oad: Oad, at: dt.datetime, *, history: bool = False) -> Data | int:
        """The whole attribute ``oad`` (index ignored) at meter time ``at``, or a DAR.

        Live registers stand at ``frozen_at`` when it is set; a freeze record (``history``) at ``at``.
        """
        oi, attr = oad.oi, oad.attribute
        clock = at
        if self.frozen_at is not None and not history:
            at = self.frozen_at
        if oi in ENERGY_OIS:
            if attr == 2:
                kind = DataType.DOUBLE_LONG if oi in (0x0000, 0x0030, 0x0040) else DataType.DOUBLE_LONG_UNSIGNED
                return Data(DataType.ARRAY, tuple(Data(kind, v) for v in self.energy(oi, at)))
            if attr == 3:
                return Data(DataType.SCALER_UNIT, ScalerUnit(-2, 35 if oi >= 0x0030 else 33))
        instant = {
            0x2000: (DataType.LONG_UNSIGNED, ScalerUnit(-1, 38), [self.voltage] * 3, 1),
            0x2001: (DataType.DOUBLE_LONG, ScalerUnit(-3, 36), [self.power_w / self.voltage / 3] * 3, 3),
            0x2004: (DataType.DOUBLE_LONG, ScalerUnit(-1, 27), [self.power_w] + [self.power_w / 3] * 3, 1),
            0x2005: (DataType.DOUBLE_LONG, ScalerUnit(-1, 31), [Decimal(0)] * 4, 1),
            0x2006: (DataType.DOUBLE_LONG, ScalerUnit(-1, 29), [self.power_w] + [self.power_w / 3] * 3, 1),
            0x200A: (DataType.LONG, ScalerUnit(-3, 255), [Decimal(1)] * 4, 3),
        }
        if oi in instant:
            kind, su, values, decimals = instant[oi]
            if attr == 2:
                raw = [int(v.scaleb(decimals).to_integral_value(ROUND_FLOOR)) for v in values]
                return Data(DataType.ARRAY, tuple(Data(kind, v) for v in raw))
            if attr == 3:
                return Data(DataType.SCALER_UNIT, su)
        if oi == 0x200F and attr == 2:
            return Data(DataType.LONG_UNSIGNED, 5000)
        if oi == 0x200F and attr == 3:
            return Data(DataType.SCALER_UNIT, ScalerUnit(-2, 47))
        if oi in (0x1010, 0x1020) and attr == 2:
            demand = int(self.power_w.scaleb(1)) if oi == 0x1010 else 0  # kW, scaler -4
            when = at.replace(hour=0, minute=15, second=0)
            return Data(DataType.ARRAY, tuple(structure(Data(DataType.DOUBLE_LONG_UNSIGNED, demand),
                                                        Data(DataType.DATE_TIME_S, when))
                                              for _ in range(self.tariffs + 1)))
        if oi == 0x4000 and attr == 2:
            return Data(DataType.DATE_TIME_S, clock)
        if oi == 0x4001 and attr == 2:
            return Data(DataType.OCTET_STRING, bytes.fromhex(self.address))
        return OBJECT_MISSING

    def read(self, oad: Oad, at: dt.datetime, *, history: bool = False) -> Data | int:
        """GET semantics: the attribute, or its element ``oad.index`` (1-based), or a DAR."""
        whole = self.attribute(oad, at, history=history)
        if isinstance(whole, int) or oad.index == 0:
            return whole
        if whole.type not in (DataType.ARRAY, DataType.STRUCTURE):
            return OBJECT_UNDEFINED
        items: tuple[Data, ...] = whole.value  # type: ignore[assignment]
        return items[oad.index - 1] if oad.index <= len(items) else OUT_OF_RANGE

    # --- freezes ----------------------------------------------------------------------

    def freeze_times(self, oi: int, at: dt.datetime) -> list[dt.datetime]:
        """The freeze times held at meter time ``at``, newest first (上1次 first)."""
        if oi == 0x5004:
            today = at.replace(hour=0, minute=0, second=0)
            return [today - dt.timedelta(days=n) for n in range(self.history)]
        if oi == 0x5002:
            last = at.replace(minute=at.minute - at.minute % 15, second=0)
            return [last - dt.timedelta(minutes=15 * n) for n in range(CURVE_RECORDS)]
        if oi == 0x5006:
            month = at.replace(day=1, hour=0, minute=0, second=0)
            out = []
            for _ in range(MONTHLY_RECORDS):
                out.append(month)
                month = (month - dt.timedelta(days=1)).replace(day=1)
            return out
        return []

    def records(self, oad: Oad, rsd: Selector, columns: tuple[Oad | Road, ...],
                at: dt.datetime) -> A.ResultRecord:
        times = self.freeze_times(oad.oi, at)
        if not times or oad.attribute != 2:
            return A.ResultRecord(oad, columns, dar=OBJECT_MISSING)
        if rsd.number == 9:
            n = rsd.fields[0]
            chosen = [times[n - 1]] if isinstance(n, int) and 1 <= n <= len(times) else []
        elif rsd.number in (1, 2):
            if rsd.fields[0] != FREEZE_TIME:
                return A.ResultRecord(oad, columns, dar=OBJECT_UNDEFINED)
            if rsd.number == 1:
                chosen = [t for t in times if Data(DataType.DATE_TIME_S, t) == rsd.fields[1]]
            else:
                start, end = rsd.fields[1], rsd.fields[2]
                if not (isinstance(start, Data) and isinstance(end, Data)
                        and isinstance(start.value, dt.datetime) and isinstance(end.value, dt.datetime)):
                    return A.ResultRecord(oad, columns, dar=TYPE_MISMATCH)
                chosen = sorted(t for t in times if start.value <= t < end.value)  # 前闭后开
        else:
            return A.ResultRecord(oad, columns, dar=OBJECT_UNDEFINED)
        cols = columns or (FREEZE_TIME, Oad(0x0010, 2, 0), Oad(0x0020, 2, 0))
        rows = tuple(tuple(self._column(c, t) for c in cols) for t in chosen)
        return A.ResultRecord(oad, tuple(cols), rows=rows)

    def _column(self, column: Oad | Road, when: dt.datetime) -> Data:
        if column == FREEZE_TIME:
            return Data(DataType.DATE_TIME_S, when)
        if isinstance(column, Road) or column.oi not in ENERGY_OIS:
            return Data(DataType.NULL)  # a column the freeze does not hold
        value = self.read(column, when, history=True)
        return Data(DataType.NULL) if isinstance(value, int) else value


class Dlt698Bus:
    """Several meters on one half-duplex bus: ``feed(data, now)`` returns the reply bytes (maybe empty)."""

    def __init__(self, meters: list[Dlt698Meter], *, preamble: int = 4, max_frame: int | None = None) -> None:
        self.meters = {m.address: m for m in meters}
        self.preamble = preamble
        self.max_frame = max_frame
        self._buffer = b""
        self._pending: list[F.Frame] = []

    def feed(self, data: bytes, now: dt.datetime) -> bytes:
        return b"".join(reply for _, reply in self.feed_replies(data, now))

    def feed_replies(self, data: bytes, now: dt.datetime) -> list[tuple[str, bytes]]:
        """Like ``feed``, each reply with the address of the meter that sends it (for per-meter faults)."""
        self._buffer += bytes(data)
        out: list[tuple[str, bytes]] = []
        while True:
            try:
                used, frame = F.decode(self._buffer)
            except F.BadFrame as exc:
                self._buffer = self._buffer[exc.consumed :]
                continue
            self._buffer = self._buffer[used:]
            if frame is None:
                return out
            out.extend(self._answer(frame, now))

    def _answer(self, frame: F.Frame, now: dt.datetime) -> list[tuple[str, bytes]]:
        if frame.from_server:
            return []
        segment = frame.segment
        if segment is not None:
            if segment.type == F.SegmentType.CONFIRM and self._pending:
                return [(self._pending[0].server.address, self._send(self._pending.pop(0)))]
            return []
        self._pending = []
        targets = [m for m in self.meters.values() if frame.server.matches(F.ServerAddress(address=m.address))]
        broadcast = frame.server.type == F.AddressType.BROADCAST
        replies: list[tuple[str, bytes]] = []
        for meter in targets:
            reply = self._service(meter, frame.user_data, now)
            if reply is None or broadcast:
                continue
            template = F.response(F.ServerAddress(address=meter.address), b"", client_address=frame.client_address)
            frames = F.split(template, reply, self._fragment_size(template))
            self._pending = frames[1:]
            replies.append((meter.address, self._send(frames[0])))
        return replies

    def _fragment_size(self, template: F.Frame) -> int:
        if self.max_frame is None:
            return 1 << 14
        overhead = len(F.encode_frame(template, wakeup=0)) + 2  # + the segment header
        return max(1, self.max_frame - overhead)

    def _send(self, frame: F.Frame) -> bytes:
        return F.encode_frame(frame, wakeup=self.preamble)

    def _service(self, meter: Dlt698Meter, raw: bytes, now: dt.datetime) -> bytes | None:
        if len(raw) >= 2 and raw[0] == RELEASE_REQUEST:
            # RELEASE-Request [3] ∷= PIID, TimeTag; RELEASE-Response [131] ∷= PIID-ACD, 结果 {成功 (0)},
            # FollowReport, TimeTag (clause 8): 83 PIID 00 00 00, as dlt698's codec encodes it
            return bytes((RELEASE_RESPONSE, raw[1], 0, 0, 0))
        try:
            request = A.decode_apdu(raw)
        except FrameError:
            return A.encode_apdu(A.ErrorResponse(0, 1))
        if isinstance(request, A.SecurityRequest):
            inner = self._service(meter, request.apdu, now)
            if inner is None:
                return None
            return A.encode_apdu(A.SecurityResponse(inner, mac=b"\x5a\x5a\x5a\x5a"))
        at = meter.clock(now)
        if isinstance(request, A.GetRequestNormal):
            return A.encode_apdu(A.GetResponseNormal(request.piid, self._result(meter, request.oad, at)))
        if isinstance(request, A.GetRequestNormalList):
            if not meter.normal_list:
                return A.encode_apdu(A.ErrorResponse(request.piid, 2))  # 服务不支持
            results = tuple(self._result(meter, oad, at) for oad in request.oads)
            return A.encode_apdu(A.GetResponseNormalList(request.piid, results))
        if isinstance(request, A.GetRequestRecord):
            result = meter.records(request.oad, request.rsd, request.columns, at)
            return A.encode_apdu(A.GetResponseRecord(request.piid, result))
        if isinstance(request, A.SetRequestNormal):
            dar = OBJECT_MISSING
            if request.oad == Oad(0x4000, 2, 0):
                dar = TYPE_MISMATCH
                if isinstance(request.value.value, dt.datetime) and request.value.type == DataType.DATE_TIME_S:
                    meter.set_clock(request.value.value, now)
                    dar = 0
            return A.encode_apdu(A.SetResponseNormal(request.piid, request.oad, dar))
        if isinstance(request, A.ActionRequestNormal):
            if (request.omd.oi, request.omd.method) == (0x4000, 127) and isinstance(request.parameter.value,
                                                                                    dt.datetime):
                meter.set_clock(request.parameter.value, now)
                return A.encode_apdu(A.ActionResponseNormal(request.piid, request.omd, 0))
            return A.encode_apdu(A.ActionResponseNormal(request.piid, request.omd, OBJECT_MISSING))
        return A.encode_apdu(A.ErrorResponse(getattr(request, "piid", 0), 2))

    @staticmethod
    def _result(meter: Dlt698Meter, oad: Oad, at: dt.datetime) -> A.ResultNormal:
        value = meter.read(oad, at)
        return A.ResultNormal(oad, dar=value) if isinstance(value, int) else A.ResultNormal(oad, data=value)


class Dlt698Handler:
    """Serves a :class:`Dlt698Bus` on a pty or TCP port (``meterlink.simulators.serve``): true time from ``clock``,
    faults per meter (``meterlink.simulators.faults``), replies delayed by their wire time at ``wire_baud``.

    Faults: ``silent`` (no reply; the request still takes effect), ``late`` (after ``late_delay``), ``crc``
    (FCS off by one), ``truncate`` (half a frame), ``garbage`` (noise first), ``exception``
    (ERROR-Response "other" in place of the answer).
    """

    def __init__(self, bus: Dlt698Bus, *, clock: Callable[[], dt.datetime] | None = None,
                 faults: FaultPlan | None = None, late_delay: float = 2.0, wire_baud: int | None = None,
                 seed: int = 3) -> None:
        self.bus = bus
        self.clock = clock or dt.datetime.now
        self.faults = faults or FaultPlan()
        self.late_delay = late_delay
        self.wire_baud = wire_baud
        self._rng = random.Random(seed)
        self.requests = 0

    def feed(self, data: bytes) -> list[Reply]:
        out: list[Reply] = []
        for address, raw in self.bus.feed_replies(data, self.clock()):
            self.requests += 1
            fault = self.faults.pick(address)
            delay = 0.0
            if fault == "silent":
                continue
            if fault == "exception":
                raw = _error_instead(raw, self.bus.preamble)
            elif fault == "crc":
                raw = raw[:-3] + bytes(((raw[-3] + 1) & 0xFF,)) + raw[-2:]
            elif fault == "truncate":
                raw = raw[: max(4, len(raw) // 2)]
            elif fault == "garbage":
                raw = bytes(self._rng.randrange(256) for _ in range(3)) + raw
            elif fault == "late":
                delay = self.late_delay
            pace = 0.0
            if self.wire_baud:
                delay += dlt698_transaction(self.wire_baud, len(data), len(raw))  # 11-bit characters + Td
                pace = char_time(self.wire_baud)  # streamed: the reply begins long before it ends
            out.append(Reply(raw, delay, pace))
        return out


def _error_instead(raw: bytes, preamble: int) -> bytes:
    """The same reply frame carrying ERROR-Response (255 "other") for the request's PIID."""
    _, frame = F.decode(raw)
    if frame is None or frame.segmented:
        return raw
    try:
        piid_acd = getattr(A.decode_apdu(frame.user_data), "piid_acd", 0)
    except FrameError:
        piid_acd = 0
    error = F.response(frame.server, A.encode_apdu(A.ErrorResponse(piid_acd, 255)),
                       client_address=frame.client_address)
    return F.encode_frame(error, wakeup=preamble)
