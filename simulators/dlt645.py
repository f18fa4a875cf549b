"""Simulated DL/T 645-2007 and -1997 meters: several addresses on one bus, built on ``meterlink.drivers.dlt645.codec``.

Each meter has time-of-use energy registers for its ``tariffs`` tariffs (4 by
default, following a sharp/peak/flat/valley timetable; 2, 8, 12, ... split the
day evenly) that sum exactly to the total, 62 days of daily frozen data, a
clock in its own ``timezone`` with a configurable drift that the 08H broadcast
sets, error replies for identifiers it does not know, follow-up frames for
replies longer than ``max_payload``, FE preambles of random length, and the
fault injection all simulators share.  ``blocks=False`` emulates meters that
answer block identifiers with an error (``block_error``: "no requested data",
or "other error" as some meters do); ``history`` and ``missing`` emulate a
meter whose frozen records beyond ``history`` days are not there yet, answered
with an error, or with zeros or FF as some meters do.

A meter with ``standard="1997"`` answers the 1997 edition's frames
(``meterlink.drivers.dlt645.codec1997``: 01H/02H, 2-byte identifiers, 81H/82H/C1H
replies) from the same model: 9010..901E are the same time-of-use registers
as 00010000.., the instantaneous values are the 2007 ones at the 1997
resolution (whole volts, 0.01 A, 0.01 kvar); it keeps no daily frozen data.
Meters of both editions may share one bus.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

from meterlink.core import meterclock
from meterlink.core.errors import FrameError
from meterlink.drivers.dlt645 import codec, codec1997, dis, dis1997
from meterlink.drivers.dlt645.codec import Frame, Function
from meterlink.simulators.faults import FaultPlan
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import Reply
from meterlink.simulators.wire import dlt645_transaction

OTHER_ERROR = 0x01
NO_REQUESTED_DATA = 0x02
ILLEGAL_DATA_1997 = 0x01  # DL/T 645-1997 ERR bit 0 "非法数据"
UNKNOWN_DI_1997 = 0x02  # DL/T 645-1997 ERR bit 1 "数据标识错"

# 尖峰平谷: tariff 1 sharp, 2 peak, 3 flat, 4 valley, by hour of the day (a common provincial timetable)
TIMETABLE = {h: 4 for h in range(24)}
TIMETABLE.update({h: 3 for h in (7, 12, 13, 14, 15, 16, 22)})
TIMETABLE.update({h: 2 for h in (8, 9, 17, 18, 21)})
TIMETABLE.update({h: 1 for h in (10, 11, 19, 20)})

DAILY_KWH_RANGE = (8.0, 60.0)
FOUR_TARIFF_SHARES = (0.08, 0.32, 0.35, 0.25)


class BlockRefused(KeyError):
    """The meter knows no block identifiers (``blocks=False``)."""


def tariff_of_hour(hour: int, tariffs: int) -> int:
    """The tariff (1..k) in force at ``hour``: the 尖峰平谷 timetable for 4 tariffs, equal slices otherwise."""
    if tariffs == 4:
        return TIMETABLE[hour]
    return hour * tariffs // 24 + 1 if tariffs <= 24 else hour + 1


@dataclass
class Dlt645Meter:
    """One meter: its address, a :class:`MeterModel` for instantaneous values, TOU registers and history."""

    address: str
    model: MeterModel
    clock_offset: float = 0.0  # seconds the meter's clock runs ahead of true time
    blocks: bool = True
    tariffs: int = 4  # 费率数: energy blocks hold total + this many tariffs
    timezone: str | None = None  # the zone of the meter's wall clock (None: this machine's)
    block_error: int = NO_REQUESTED_DATA  # ERR of the reply to a block when ``blocks`` is False
    history: int = 62  # daily frozen records the meter holds (上1次..上history次)
    missing: str = "error"  # how it answers a record it does not hold: error | zeros | ff
    standard: str = "2007"  # the DL/T 645 edition it speaks: 2007 | 1997
    _tou: list[float] = field(default_factory=list)  # forward active energy per tariff 1..k, kWh
    _reverse: list[float] = field(default_factory=list)
    _last: float = 0.0
    _daily: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.tariffs <= dis.MAX_TARIFFS:
            raise ValueError(f"tariffs={self.tariffs}: a meter has 1..{dis.MAX_TARIFFS}")
        if self.missing not in ("error", "zeros", "ff"):
            raise ValueError(f"missing={self.missing!r}: error | zeros | ff")
        if self.standard not in ("2007", "1997"):
            raise ValueError(f"standard={self.standard!r}: 2007 | 1997")
        if self.standard == "1997" and self.tariffs > dis1997.MAX_TARIFFS:
            raise ValueError(f"tariffs={self.tariffs}: a DL/T 645-1997 meter has 1..{dis1997.MAX_TARIFFS}")
        rng = random.Random(int(self.address) if self.address.isdigit() else 7)
        total = rng.uniform(2000.0, 40000.0)
        self._shares = FOUR_TARIFF_SHARES if self.tariffs == 4 else (1.0 / self.tariffs,) * self.tariffs
        self._tou = [total * share for share in self._shares]
        reverse_shares = (0.1, 0.3, 0.4, 0.2) if self.tariffs == 4 else self._shares
        self._reverse = [rng.uniform(0.0, 50.0) * share for share in reverse_shares]
        self._daily = rng.uniform(*DAILY_KWH_RANGE)
        self._last = self.model.start

    # --- time ---------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The meter's own local wall time in its zone (naive, as the meter keeps it)."""
        base = self.model.start if self.model.frozen else dt.datetime.now().timestamp()
        aware = dt.datetime.fromtimestamp(base + self.clock_offset, dt.UTC)
        return meterclock.wall_clock(aware, self.timezone).replace(microsecond=0)

    def set_clock(self, when: dt.datetime) -> None:
        """Set the wall clock to ``when`` (naive, the meter's zone), as an 08H time sync does."""
        true_now = self.model.start if self.model.frozen else dt.datetime.now().timestamp()
        self.clock_offset = meterclock.localize(when, self.timezone).timestamp() - true_now

    def _advance(self) -> None:
        if self.model.frozen:
            return
        t = dt.datetime.now().timestamp()
        dt_s = t - self._last
        if dt_s <= 0:
            return
        p_kw = float(self.model.value("1.0.16.7.0.255")) / 1000.0
        tariff = tariff_of_hour(self.now().hour, self.tariffs)
        self._tou[tariff - 1] += max(p_kw, 0.0) * dt_s / 3600.0
        self._last = t

    # --- registers ---------------------------------------------------------------

    def forward(self) -> list[Decimal]:
        """Total and tariffs 1..k, each as the meter shows it (0.01 kWh); the total is their exact sum."""
        self._advance()
        tariffs = [Decimal(f"{v:.2f}") for v in self._tou]
        return [sum(tariffs, Decimal(0)), *tariffs]

    def reverse(self) -> list[Decimal]:
        tariffs = [Decimal(f"{v:.2f}") for v in self._reverse]
        return [sum(tariffs, Decimal(0)), *tariffs]

    def frozen(self, n: int) -> tuple[dt.datetime, list[Decimal], list[Decimal]]:
        """The freeze of ``n`` days ago: midnight of that day and the registers as they stood then."""
        today = self.now().replace(hour=0, minute=0, second=0)
        when = today - dt.timedelta(days=n - 1)
        hours_back = (self.now() - when).total_seconds() / 3600.0
        fwd = self.forward()[1:]
        past = []
        for i, v in enumerate(fwd):
            share = self._shares[i]
            past.append(max(Decimal(0), v - Decimal(f"{self._daily * share * hours_back / 24.0:.2f}")))
        rev = self.reverse()[1:]
        return when, [sum(past, Decimal(0)), *past], [sum(rev, Decimal(0)), *rev]

    def value_of(self, di: str) -> Decimal | dt.date | dt.time | dt.datetime | str:
        """The value of one single (non-block) identifier."""
        item = dis.lookup(di)
        if di[:4] in ("0000", "0001", "0002") and di[4:6] != "FF":
            t = int(di[4:6], 16)
            if t > self.tariffs:
                raise KeyError(f"{di}: the meter has {self.tariffs} tariffs")
            if di.startswith("0001"):
                return self.forward()[t]
            if di.startswith("0002"):
                return self.reverse()[t]
            return self.forward()[t] + self.reverse()[t]
        if di in ("00030000", "00040000"):
            return Decimal(f"{float(self.model.value(item.obis or '')):.2f}")
        if di == "04000101":
            return self.now().date()
        if di == "04000102":
            return self.now().time()
        if di == "04000401":
            return self.address
        if item.obis is None:
            raise KeyError(di)
        v = self.model.value(item.obis)
        if item.unit in ("kW", "kvar"):
            v = v / 1000
        return v.quantize(Decimal(1).scaleb(-codec.FORMATS[item.fmt].decimals))

    def payload(self, di: str) -> bytes:
        """The reply payload for ``di``; raises KeyError when the meter has no such data."""
        item = dis.lookup(di)
        if di.startswith("0506"):
            n = int(di[6:8], 16)
            kind = di[4:6]
            if n > self.history:
                if self.missing == "error":
                    raise KeyError(di)
                length = 5 if kind == "00" else dis.item_length(di, self.tariffs)
                return bytes((0x00 if self.missing == "zeros" else 0xFF,)) * length
            when, fwd, rev = self.frozen(n)
            if kind == "00":
                return codec.encode_value("YYMMDDhhmm", when)
            return dis.encode_item(di, fwd if kind == "01" else rev)
        if item.is_block:
            if not self.blocks:
                raise BlockRefused(di)
            members = item.members[: self.tariffs + 1] if item.tariff_block else item.members
            return dis.encode_item(di, [self.value_of(m) for m in members])
        return dis.encode_item(di, [self.value_of(di)])


    # --- the DL/T 645-1997 view of the same registers -----------------------------

    def reactive_1997(self, obis_c: int) -> list[Decimal]:
        """Forward (C=3) or reverse (C=4) reactive energy: the 2007 total, split into tariffs summing to it."""
        total = Decimal(f"{float(self.model.value(f'1.0.{obis_c}.8.0.255')):.2f}")
        tariffs = [(total * Decimal(str(share))).quantize(Decimal("0.01")) for share in self._shares[:-1]]
        return [total, *tariffs, total - sum(tariffs, Decimal(0))]

    def value_of_1997(self, di: str) -> Decimal | dt.date | dt.time | str:
        """The value of one single (non-block) DL/T 645-1997 identifier, from the same model as the 2007 ones."""
        item = dis1997.lookup(di)
        if di[:3] in ("901", "902", "911", "912"):
            t = int(di[3], 16)
            if t > self.tariffs:
                raise KeyError(f"{di}: the meter has {self.tariffs} tariffs")
            registers = {"901": self.forward, "902": self.reverse,
                         "911": lambda: self.reactive_1997(3), "912": lambda: self.reactive_1997(4)}[di[:3]]()
            return registers[t]
        if di == "C010":
            return self.now().date()
        if di == "C011":
            return self.now().time()
        if di == "C032":
            return self.address
        if item.obis is None:
            raise KeyError(di)
        v = self.model.value(item.obis)
        if item.unit in ("kW", "kvar"):
            v = v / 1000
        return v.quantize(Decimal(1).scaleb(-codec.FORMATS[item.fmt].decimals))

    def payload_1997(self, di: str) -> bytes:
        """The reply payload for a 1997 identifier; raises KeyError when the meter has no such data."""
        item = dis1997.lookup(di)
        if item.is_block:
            if not self.blocks:
                raise BlockRefused(di)
            members = item.members[: self.tariffs + 1] if item.tariff_block else item.members
            return dis1997.encode_item(di, [self.value_of_1997(m) for m in members])
        return dis1997.encode_item(di, [self.value_of_1997(di)])


class Dlt645Handler:
    """Frames requests off the bus and answers for the meters it serves (silent for other addresses)."""

    def __init__(self, meters: dict[str, Dlt645Meter], *, faults: FaultPlan | None = None, late_delay: float = 2.0,
                 max_payload: int = 200, seed: int = 3, wire_baud: int | None = None) -> None:
        self.wire_baud = wire_baud
        self.meters = meters
        self.faults = faults or FaultPlan()
        self.late_delay = late_delay
        self.max_payload = max_payload
        self._buf = b""
        self._rng = random.Random(seed)
        self._pending: dict[tuple[str, str], list[bytes]] = {}  # follow-up frames still to send
        self.requests = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        replies: list[Reply] = []
        while self._buf:
            try:
                used, frame = codec.decode(self._buf)
            except FrameError as exc:
                self._buf = self._buf[max(1, int(getattr(exc, "consumed", 1))):]
                continue
            self._buf = self._buf[used:]
            if frame is None:
                break
            if frame.is_reply:
                continue  # another meter's answer on the bus
            replies.extend(self._answer(frame))
        return replies

    def _targets(self, frame: Frame) -> list[Dlt645Meter]:
        if frame.address == codec.BROADCAST_ADDRESS:
            return list(self.meters.values())
        return [m for a, m in self.meters.items() if codec.address_matches(frame.address, a)]

    def _answer(self, frame: Frame) -> list[Reply]:
        targets = self._targets(frame)
        if not targets:
            return []
        if frame.function == Function.BROADCAST_TIME_SYNC:
            when = codec.decode_value("YYMMDDhhmmss", frame.data)
            if isinstance(when, dt.datetime):
                for m in targets:
                    # the standard: a meter only accepts a broadcast time sync within +/-5 min
                    if abs((when - m.now()).total_seconds()) <= 300:
                        m.set_clock(when)
            return []
        out = []
        for meter in targets:
            self.requests += 1
            fault = self.faults.pick(meter.address)
            if fault == "silent":
                continue
            reply = self._reply(meter, frame, fault)
            if reply is None:
                continue
            data = codec.encode_frame(reply, wakeup=self._rng.randrange(0, 5))
            delay = 0.0
            if fault == "crc":
                data = data[:-2] + bytes(((data[-2] + 1) & 0xFF,)) + data[-1:]
            elif fault == "truncate":
                data = data[: max(4, len(data) // 2)]
            elif fault == "garbage":
                data = bytes(self._rng.randrange(256) for _ in range(3)) + data
            elif fault == "late":
                delay = self.late_delay
            if self.wire_baud:
                delay += dlt645_transaction(self.wire_baud, len(codec.encode_frame(frame)), len(data))
            out.append(Reply(data, delay))
        return out

    def _reply(self, meter: Dlt645Meter, frame: Frame, fault: str | None) -> Frame | None:
        fn = frame.function
        if fault == "exception":
            return codec.error_reply(meter.address, fn, OTHER_ERROR)
        if meter.standard == "1997":
            return self._reply_1997(meter, frame)
        if fn == Function.READ_ADDRESS:
            return codec.read_address_reply(meter.address)
        if fn == Function.READ_DATA:
            if len(frame.data) < 4:
                return codec.error_reply(meter.address, fn, OTHER_ERROR)
            di = codec.decode_di(frame.data[:4])
            try:
                payload = meter.payload(di)
            except BlockRefused:
                return codec.error_reply(meter.address, fn, meter.block_error)
            except (KeyError, FrameError, ValueError):
                return codec.error_reply(meter.address, fn, NO_REQUESTED_DATA)
            chunks = [payload[i:i + self.max_payload - 5] for i in range(0, len(payload), self.max_payload - 5)] \
                or [b""]
            self._pending[(meter.address, di)] = chunks[1:]
            return codec.read_reply(meter.address, di, chunks[0], more=len(chunks) > 1)
        if fn == Function.READ_FOLLOW_UP:
            if len(frame.data) < 5:
                return codec.error_reply(meter.address, fn, OTHER_ERROR)
            di = codec.decode_di(frame.data[:4])
            seq = frame.data[4]
            pending = self._pending.get((meter.address, di), [])
            if not pending:
                return codec.error_reply(meter.address, fn, NO_REQUESTED_DATA)
            chunk = pending.pop(0)
            return codec.read_follow_up_reply(meter.address, di, chunk, seq, more=bool(pending))
        return codec.error_reply(meter.address, fn, OTHER_ERROR)

    def _reply_1997(self, meter: Dlt645Meter, frame: Frame) -> Frame | None:
        """A DL/T 645-1997 meter's answer: 81H/82H (A1H/A2H with more frames) or C1H/C2H with the 1997 ERR bits."""
        fn = frame.function
        if fn not in (codec1997.Function.READ_DATA, codec1997.Function.READ_FOLLOW_UP):
            return codec.error_reply(meter.address, fn, ILLEGAL_DATA_1997)
        if len(frame.data) != 2:
            return codec.error_reply(meter.address, fn, ILLEGAL_DATA_1997)
        di = codec1997.decode_di(frame.data)
        if fn == codec1997.Function.READ_FOLLOW_UP:
            pending = self._pending.get((meter.address, di), [])
            if not pending:
                return codec.error_reply(meter.address, fn, UNKNOWN_DI_1997)
            chunk = pending.pop(0)
            return codec1997.read_follow_up_reply(meter.address, di, chunk, more=bool(pending))
        try:
            payload = meter.payload_1997(di)
        except (KeyError, FrameError, ValueError):  # a refused block, too: "数据标识错"
            return codec.error_reply(meter.address, fn, UNKNOWN_DI_1997)
        size = self.max_payload - 2
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        self._pending[(meter.address, di)] = chunks[1:]
        return codec1997.read_reply(meter.address, di, chunks[0], more=len(chunks) > 1)
