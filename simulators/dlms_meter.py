"""The COSEM objects of a simulated DLMS meter: registers with scaler-unit, clock, serial number, profiles.

Register values come from :class:`meterlink.simulators.model.MeterModel` by OBIS code,
encoded the way meters do: energy as double-long-unsigned Wh with scaler 1,
voltage as long-unsigned with scaler -1, current in mA (scaler -3), power with
scaler -1, power factor scaler -3, frequency scaler -2.  The clock is a
:class:`SimClock` that may run ahead, run fast, or stand still, so tests can
make a meter skip two hours of load profile.

The load profile (1.0.99.1.0.255, 15 min) and the daily billing profile
(1.0.98.1.0.255) hold a record for every boundary of the last ``days`` days
of the meter's clock and grow as it runs.  MeterModel only integrates forward
in time, so their history is a deterministic function of the meter's time:
the energy at the model's start plus the model's average load, with a daily
swing, never falling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from meterlink.core.config import Point
from meterlink.drivers.dlms import axdr
from meterlink.drivers.dlms.apdu import DataAccessResult, RangeSelector, obis_bytes
from meterlink.drivers.dlms.axdr import Data, Tag
from meterlink.simulators.model import _INSTANT as KINDS  # OBIS C group -> quantity, shared with the model
from meterlink.simulators.model import MeterModel

CLOCK = "0.0.1.0.0.255"
SERIAL = "0.0.96.1.0.255"
STATUS = "0.0.96.10.1.255"
LOAD_PROFILE = "1.0.99.1.0.255"
DAILY_PROFILE = "1.0.98.1.0.255"
ASSOCIATION = "0.0.40.0.0.255"
INVOCATION_COUNTER = "0.0.43.1.0.255"
TARIFF_SHARE = (0.1, 0.3, 0.4, 0.2)   # as MeterModel: tariffs 1-4 are fixed shares of the total


class SimClock:
    """The meter's clock in epoch seconds: ``start`` (default: now) plus ``offset``, running at ``speed``."""

    def __init__(self, *, offset: float = 0.0, speed: float = 1.0, start: float | None = None,
                 frozen: bool = False) -> None:
        self.real0 = time.time()
        self.meter0 = (self.real0 if start is None else start) + offset
        self.speed = 0.0 if frozen else speed

    def now(self) -> float:
        return self.meter0 + (time.time() - self.real0) * self.speed

    def set(self, meter_time: float) -> None:
        """Jump the meter's clock (tests): from now on it runs on from ``meter_time``."""
        self.real0 = time.time()
        self.meter0 = meter_time

    def advance(self, seconds: float) -> None:
        self.set(self.now() + seconds)


@dataclass(frozen=True, slots=True)
class Encoding:
    tag: Tag
    scaler: int
    unit: int  # DLMS unit code


_ENERGY_UNITS = {3: 32, 4: 32, 9: 31, 10: 31}  # varh, VAh; the rest Wh
_EXPORT = {2: "p", 22: "p", 42: "p", 62: "p", 4: "q", 24: "q", 44: "q", 64: "q", 10: "s", 30: "s", 50: "s", 70: "s"}
_INSTANT = {"voltage": Encoding(Tag.LONG_UNSIGNED, -1, 35), "current": Encoding(Tag.DOUBLE_LONG_UNSIGNED, -3, 33),
            "current_n": Encoding(Tag.DOUBLE_LONG_UNSIGNED, -3, 33), "p": Encoding(Tag.DOUBLE_LONG, -1, 27),
            "q": Encoding(Tag.DOUBLE_LONG, -1, 29), "s": Encoding(Tag.DOUBLE_LONG, -1, 28),
            "pf": Encoding(Tag.LONG, -3, 255), "frequency": Encoding(Tag.LONG_UNSIGNED, -2, 44)}


def encoding(obis: str) -> Encoding:
    """How the simulated meter stores a quantity (type, scaler, unit), by OBIS code."""
    a, _b, c, d, _e, _f = (int(x) for x in obis.split("."))
    if a == 1 and d == 8:
        return Encoding(Tag.DOUBLE_LONG if c == 16 else Tag.DOUBLE_LONG_UNSIGNED, 1, _ENERGY_UNITS.get(c, 30))
    if a == 1 and d == 6:
        return Encoding(Tag.DOUBLE_LONG_UNSIGNED, -1, 27)
    if a == 1 and d == 7 and c in KINDS:
        return _INSTANT[KINDS[c][0]]
    if a == 1 and d == 7 and c in _EXPORT:  # export power: the model has none, the meter serves 0
        return _INSTANT[_EXPORT[c]]
    return Encoding(Tag.DOUBLE_LONG, 0, 255)


@dataclass
class SimObject:
    class_id: int
    obis: str
    kind: str  # register | clock | serial | status | profile | association | counter


@dataclass
class SimMeter:
    """One simulated logical device: its objects, its security settings, its clock."""

    points: Sequence[Point]
    model: MeterModel
    clock: SimClock = field(default_factory=SimClock)
    serial: str = "12345678"
    logical: int = 1
    physical: int | None = 17
    auth: str = "none"                         # what the management client (SAP 1) must use
    password: bytes = b"12345678"
    encryption_key: bytes = bytes(range(16))
    authentication_key: bytes = bytes(range(0xD0, 0xE0))
    system_title: bytes = b"SIM\x00\x00\x00\x00\x01"
    utc_offset: int = 0                        # minutes; the clock sends deviation = -utc_offset
    zone: str | None = None                    # IANA zone: wall time there, deviation "not specified" (0x8000)
    days: int = 10
    missing: frozenset[str] = frozenset()
    max_pdu: int = 512
    with_list: bool = True
    drop_after: int | None = None              # drop the association after this many GET requests
    general_protection: bool = True            # grant general-glo-ciphering; False: glo-get/glo-action only
    clock_status: int = 0                      # clock_status byte of every date-time (0x01 invalid, 0x02 doubtful)
    compact_buffer: bool = False               # profile buffers as compact-array (tag 19) instead of array
    objects: dict[str, SimObject] = field(default_factory=dict)
    last_client_ic: dict[int, int] = field(default_factory=dict)
    server_ic: int = 0x100
    start: float = 0.0

    def __post_init__(self) -> None:
        for p in self.points:
            if (p.class_id or 3) in (1, 3, 4, 5):
                self.objects[p.obis] = SimObject(p.class_id or 3, p.obis, "register")
        for obis in ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"):
            self.objects.setdefault(obis, SimObject(3, obis, "register"))
        self.objects[CLOCK] = SimObject(8, CLOCK, "clock")
        self.objects[SERIAL] = SimObject(1, SERIAL, "serial")
        self.objects[STATUS] = SimObject(1, STATUS, "status")
        self.objects[LOAD_PROFILE] = SimObject(7, LOAD_PROFILE, "profile")
        self.objects[DAILY_PROFILE] = SimObject(7, DAILY_PROFILE, "profile")
        self.objects[ASSOCIATION] = SimObject(15, ASSOCIATION, "association")
        self.objects[INVOCATION_COUNTER] = SimObject(1, INVOCATION_COUNTER, "counter")
        for obis in self.missing:
            self.objects.pop(obis, None)
        self.start = self.clock.now()
        self._e0 = {k: float(self.model.value(o)) * 1000 for k, o in (("import", "1.0.1.8.0.255"),
                                                                       ("export", "1.0.2.8.0.255"))}
        self._p_avg = max(100.0, float(self.model.value("1.0.1.7.0.255")))

    @property
    def address(self) -> str:
        return str(self.logical) if self.physical is None else f"{self.logical}/{self.physical}"

    # --- values ---

    def raw(self, obis: str) -> int:
        """The register's integer as stored: the model's value (energy in kWh, the rest in base units) in the
        meter's unit (energy in Wh) divided by 10^scaler; exact for the model's decimals."""
        enc = encoding(obis)
        value = self.model.value(obis)
        if obis.startswith("1.") and obis.split(".")[3] == "8":
            value = value.scaleb(3)  # kWh -> Wh
        scaled = value.scaleb(-enc.scaler)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{obis}: {value} does not fit scaler {enc.scaler}")
        return int(scaled)

    def register(self, obis: str) -> tuple[Data, Data]:
        """(value, scaler_unit) of a register as the meter holds it."""
        enc = encoding(obis)
        return axdr.integer(enc.tag, self.raw(obis)), scaler_unit(enc)

    def served(self, point: Point) -> Decimal:
        """What a reader gets for a register point in the profile's unit: exactly the model's value."""
        return self.model.value(point.obis)

    def meter_datetime(self, t: float | None = None) -> datetime:
        return datetime.fromtimestamp(self.clock.now() if t is None else t, UTC)

    def cosem_time(self, t: float | None = None, *, status: int | None = None) -> axdr.CosemDateTime:
        """The meter's time ``t`` as it sends it: local time with deviation ``-utc_offset``; with a ``zone``,
        as meters set up in local time do, the wall time there with deviation "not specified" and
        clock_status bit 7 "daylight saving active" set in summer time (Blue Book 4.1.6.1)."""
        status = self.clock_status if status is None else status
        if self.zone is None:
            return axdr.CosemDateTime.from_datetime(self.meter_datetime(t), deviation=-self.utc_offset,
                                                    status=status)
        local = self.meter_datetime(t).astimezone(ZoneInfo(self.zone))
        return axdr.CosemDateTime(year=local.year, month=local.month, day=local.day, hour=local.hour,
                                  minute=local.minute, second=local.second, hundredths=local.microsecond // 10000,
                                  deviation=None, status=status | (axdr.CLOCK_DST if local.dst() else 0))

    def local_midnight(self, t: float) -> float:
        """The start of the meter's local day holding ``t``."""
        if self.zone is None:
            shift = self.utc_offset * 60
            return math.floor((t + shift) / 86400) * 86400 - shift
        local = datetime.fromtimestamp(t, ZoneInfo(self.zone))
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def clock_data(self, t: float | None = None) -> Data:
        return axdr.octets(self.cosem_time(t).to_bytes())

    def energy_wh(self, kind: str, t: float) -> int:
        """Deterministic cumulative energy at meter time ``t`` (never falls): the profiles' history."""
        dt = t - self.start
        if kind == "import":
            return int(self._e0["import"] + self._p_avg * dt / 3600.0
                       + self._p_avg * math.sin(2 * math.pi * dt / 86400.0))
        return int(self._e0["export"] + 5.0 * dt / 3600.0)

    # --- COSEM access ---

    def get(self, class_id: int, obis: str, attribute: int, selector: RangeSelector | None = None
            ) -> Data | DataAccessResult:
        obj = self.objects.get(obis)
        if obj is None:
            return DataAccessResult.OBJECT_UNDEFINED
        if obj.class_id != class_id:
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        if attribute == 1:
            return axdr.octets(obis_bytes(obis))
        if obj.kind == "register":
            value, su = self.register(obis)
            if attribute == 2 or (attribute == 3 and class_id == 5):  # class 5: last_average_value as well
                return value
            if (attribute == 3 and class_id in (3, 4)) or (attribute == 4 and class_id == 5):
                return su
            if attribute == 5 and class_id == 4:
                if self.zone is not None:
                    return axdr.octets(self.cosem_time(self.local_midnight(self.clock.now()), status=0).to_bytes())
                midnight = self.meter_datetime().replace(hour=0, minute=0, second=0, microsecond=0)
                return axdr.datetime_data(midnight, deviation=-self.utc_offset)
            return DataAccessResult.OBJECT_UNAVAILABLE
        if obj.kind == "clock":
            if attribute == 2:
                return self.clock_data()
            if attribute == 3:
                return axdr.integer(Tag.LONG, -self.utc_offset)
            return DataAccessResult.OBJECT_UNAVAILABLE
        if obj.kind == "serial" and attribute == 2:
            return axdr.octets(self.serial.encode("ascii"))
        if obj.kind == "status" and attribute == 2:
            return axdr.integer(Tag.UNSIGNED, 0)
        if obj.kind == "counter" and attribute == 2:
            return axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, max(self.last_client_ic.values(), default=0))
        if obj.kind == "profile":
            return self._profile(obis, attribute, selector)
        return DataAccessResult.READ_WRITE_DENIED

    # --- profile generic ---

    def _columns(self, obis: str) -> list[tuple[int, str]]:
        if obis == LOAD_PROFILE:
            return [(8, CLOCK), (1, STATUS), (3, "1.0.1.8.0.255"), (3, "1.0.2.8.0.255")]
        return [(8, CLOCK), (3, "1.0.1.8.0.255"), (3, "1.0.1.8.1.255"), (3, "1.0.1.8.2.255"), (3, "1.0.2.8.0.255")]

    def period(self, obis: str) -> int:
        return 900 if obis == LOAD_PROFILE else 86400

    def record_times(self, obis: str, now: float | None = None) -> list[float]:
        """The record time stamps in the buffer: every period boundary of the last ``days`` days (meter-local)."""
        now = self.clock.now() if now is None else now
        period = self.period(obis)
        first = now - self.days * 86400
        out = []
        if period == 86400:  # daily records at local midnight (23 or 25 h apart across a DST change)
            day = datetime.fromtimestamp(self.local_midnight(now), UTC)
            while day.timestamp() >= first:
                out.append(day.timestamp())
                day = datetime.fromtimestamp(self.local_midnight((day - timedelta(hours=1)).timestamp()), UTC)
            return out[::-1]
        t = math.floor(now / period) * period
        while t >= first:
            out.append(t)
            t -= period
        return out[::-1]

    def record(self, obis: str, t: float) -> Data:
        values: list[Data] = []
        for cls, col in self._columns(obis):
            if cls == 8:
                values.append(self.clock_data(t))
            elif col == STATUS:
                values.append(axdr.integer(Tag.UNSIGNED, 0))
            else:
                values.append(axdr.integer(encoding(col).tag, self.profile_raw(col, t)))
        return axdr.structure(*values)

    def profile_raw(self, obis: str, t: float) -> int:
        """The raw register value (Wh / 10, scaler 1) a profile captured at ``t``."""
        tariff = int(obis.split(".")[4])
        kind = "export" if obis.split(".")[2] == "2" else "import"
        wh = self.energy_wh(kind, t)
        if tariff:
            wh = int(wh * TARIFF_SHARE[(tariff - 1) % 4])
        return wh // 10

    def _profile(self, obis: str, attribute: int, selector: RangeSelector | None) -> Data | DataAccessResult:
        if attribute == 2:
            times = self.record_times(obis)
            if selector is not None:
                if selector.restricting.obis != CLOCK:
                    return DataAccessResult.OTHER_REASON
                try:
                    zone = ZoneInfo(self.zone) if self.zone else UTC
                    lo = axdr.as_datetime(selector.from_value, zone).timestamp()
                    hi = axdr.as_datetime(selector.to_value, zone).timestamp()
                except ValueError:
                    return DataAccessResult.TYPE_UNMATCHED
                times = [t for t in times if lo <= t <= hi]
            records = [self.record(obis, t) for t in times]
            return axdr.compact_array(records) if self.compact_buffer and records else axdr.array(records)
        if attribute == 3:
            return axdr.array([axdr.structure(axdr.integer(Tag.LONG_UNSIGNED, cls), axdr.octets(obis_bytes(o)),
                                              axdr.integer(Tag.INTEGER, 2), axdr.integer(Tag.LONG_UNSIGNED, 0))
                               for cls, o in self._columns(obis)])
        if attribute == 4:
            return axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, self.period(obis))
        if attribute in (7, 8):
            return axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, len(self.record_times(obis)))
        return DataAccessResult.OBJECT_UNAVAILABLE

    def expected_record(self, obis: str, t: float) -> dict[str, Decimal]:
        """What the gateway should journal for a profile record at ``t``, in the meter's units (Wh)."""
        return {col: Decimal(self.profile_raw(col, t)).scaleb(1) for cls, col in self._columns(obis)
                if cls == 3}


def scaler_unit(enc: Encoding) -> Data:
    return axdr.structure(axdr.integer(Tag.INTEGER, enc.scaler), axdr.integer(Tag.ENUM, enc.unit))


def parse_instant(text: str) -> float:
    """``2026-01-05T10:00:00Z`` as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
