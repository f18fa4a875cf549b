"""DL/T 698.45 Data (clause 6.3.3 "数据类型定义"): encoding, decoding and exact values. No I/O.

Data is A-XDR-like: a type tag byte, then the value; integers are big-endian
("高位在前"), variable lengths are A-XDR lengths (one byte below 80H, else 8nH
and n length bytes).  The tag numbers below are the standard's table 6.3.3.1
"Data ∷= CHOICE"; they were checked against two independent public sources:
the C header ``DL698_DataDef.h`` of a meter firmware (its comments quote the
standard's table) and the type enumeration of PyPI ``dlt698`` 1.0.1
(``dlt698.DataType``), which agree on every tag.

Values: integers stay ``int`` until a scaler-unit (换算及单位, attribute 3 of
every measuring interface class) is applied, and then become ``Decimal``
exactly: ``value x 10^scaler`` with :meth:`Decimal.scaleb`, never a float.

Units: DL/T 698.45 has its own enumeration (附录 "物理单位", like the DLMS one up
to 26 and then different: it has kW, kVA, kvar, kWh, kVAh, kvarh where DLMS has
Wh, VAh, varh): 27 W, 28 kW, 29 VA, 30 kVA, 31 var, 32 kvar, 33 kWh, 34 kVAh,
35 kvarh, 36 A, 38 V, 47 Hz, 51 %, 255 no unit.  Sources: the firmware header
above (``#define Unit_kWh 33 ... Unit_Hz 47``), icprog/dlt698.45
``include/StdDataType.h`` (enum ``Physical_Units`` in the same order) and
``dlt698.standard.unit_symbol`` (same codes).  Taking DLMS's 30 = Wh would
report a 698 meter's kVA as Wh: the worst kind of wrong value.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, TypeAlias

from meterlink.core.errors import FrameError


class DataType(enum.IntEnum):
    """Data ∷= CHOICE tags (table 6.3.3.1)."""

    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOL = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5  # Integer32
    DOUBLE_LONG_UNSIGNED = 6  # Unsigned32
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    INTEGER = 15  # Integer8
    LONG = 16  # Integer16
    UNSIGNED = 17  # Unsigned8
    LONG_UNSIGNED = 18  # Unsigned16
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DATE_TIME_S = 28
    OI = 80
    OAD = 81
    ROAD = 82
    OMD = 83
    TI = 84
    TSA = 85
    MAC = 86
    RN = 87
    REGION = 88
    SCALER_UNIT = 89
    RSD = 90
    CSD = 91
    MS = 92
    SID = 93
    SID_MAC = 94
    COMDCB = 95
    RCSD = 96


_INTS: Final = {
    DataType.DOUBLE_LONG: (4, True),
    DataType.DOUBLE_LONG_UNSIGNED: (4, False),
    DataType.INTEGER: (1, True),
    DataType.LONG: (2, True),
    DataType.UNSIGNED: (1, False),
    DataType.LONG_UNSIGNED: (2, False),
    DataType.LONG64: (8, True),
    DataType.LONG64_UNSIGNED: (8, False),
    DataType.ENUM: (1, False),
    DataType.OI: (2, False),
}
_BYTES_TYPES: Final = (DataType.OCTET_STRING, DataType.TSA, DataType.MAC, DataType.RN)


# --- value classes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Oad:
    """对象属性描述符 OAD: OI (2 bytes), 属性标识及其特征 (bits 0..4 attribute, 5..7 feature), 属性内元素索引
    (0 = the whole attribute, n = its n-th element)."""

    oi: int
    attribute: int
    index: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.oi <= 0xFFFF and 0 <= self.attribute <= 0xFF and 0 <= self.index <= 0xFF):
            raise FrameError(f"OAD {self.oi!r}/{self.attribute!r}/{self.index!r} out of range")

    def __str__(self) -> str:
        return f"{self.oi:04X}{self.attribute:02X}{self.index:02X}"

    def to_bytes(self) -> bytes:
        return self.oi.to_bytes(2, "big") + bytes((self.attribute, self.index))

    def whole(self) -> Oad:
        """The same attribute with element index 0."""
        return Oad(self.oi, self.attribute, 0)


@dataclass(frozen=True)
class Road:
    """记录型对象属性描述符 ROAD: an OAD and the associated OADs."""

    oad: Oad
    columns: tuple[Oad, ...]


@dataclass(frozen=True)
class Omd:
    """对象方法描述符 OMD: OI, 方法标识, 操作模式."""

    oi: int
    method: int
    mode: int = 0


@dataclass(frozen=True)
class Ti:
    """时间间隔 TI: unit (0 秒, 1 分, 2 时, 3 日, 4 月, 5 年) and interval (long-unsigned)."""

    unit: int
    interval: int


@dataclass(frozen=True)
class ScalerUnit:
    """换算及单位 Scaler_Unit: 换算 integer (power of ten), 单位 enum (DL/T 698.45 units)."""

    scaler: int
    unit: int


@dataclass(frozen=True)
class BitString:
    """bit-string: ``bits`` significant bits in ``data`` (first bit = MSB of the first byte)."""

    bits: int
    data: bytes


@dataclass(frozen=True)
class DateTime:
    """date_time (10 bytes): the fields as sent, day_of_week 0 = Sunday; FFH/FFFFH = not specified."""

    year: int
    month: int
    day: int
    day_of_week: int
    hour: int
    minute: int
    second: int
    milliseconds: int


@dataclass(frozen=True)
class Date:
    """date (5 bytes): year, month, day_of_month, day_of_week."""

    year: int
    month: int
    day: int
    day_of_week: int


@dataclass(frozen=True)
class Time:
    """time (3 bytes): hour, minute, second."""

    hour: int
    minute: int
    second: int


@dataclass(frozen=True)
class RawDateTimeS:
    """A date_time_s whose fields are no valid date (e.g. all FFH: "no value"); kept as sent."""

    raw: bytes


@dataclass(frozen=True)
class Region:
    """区间 Region: 单位 enum (0 前闭后开, 1 前开后闭, 2 前闭后闭, 3 前开后开), start and end Data."""

    kind: int
    start: Data
    end: Data


@dataclass(frozen=True)
class Sid:
    """安全标识 SID: 标识 double-long-unsigned, 附加数据 octet-string."""

    ident: int
    extra: bytes


@dataclass(frozen=True)
class SidMac:
    sid: Sid
    mac: bytes


@dataclass(frozen=True)
class Comdcb:
    """串口控制块 COMDCB: 波特率, 校验位, 数据位, 停止位, 流控 (each an enum)."""

    baud: int
    parity: int
    data_bits: int
    stop_bits: int
    flow_control: int


@dataclass(frozen=True)
class Ms:
    """电能表集合 MS: the CHOICE number and its items (0 无电能表, 1 全部用户地址: no items;
    2 用户类型 unsigned, 3 用户地址 TSA bytes, 4 配置序号 long-unsigned, 5..7 Regions)."""

    choice: int
    items: tuple[object, ...] = ()


@dataclass(frozen=True)
class Selector:
    """行选择描述符 RSD: ``number`` 0..10 and its fields in the standard's order.

    Selector1 (OAD, value), Selector2 (OAD, start, end, interval: Data),
    Selector3 (tuple of Selector2), Selector4/5 (date_time_s, MS),
    Selector6/7/8 (start, end date_time_s, TI, MS), Selector9 (上第 n 次, unsigned),
    Selector10 (上 n 条, MS).
    """

    number: int
    fields: tuple[object, ...] = ()


Csd: TypeAlias = "Oad | Road"
Value: TypeAlias = object


@dataclass(frozen=True)
class Data:
    """One typed value.  ``value`` per type: None; tuple[Data] (array, structure); bool; int
    (integers, enum, OI); bytes (octet-string, TSA, MAC, RN); str; float; BitString; DateTime;
    Date; Time; datetime or RawDateTimeS (date_time_s); Oad; Road; Omd; Ti; Region;
    ScalerUnit; Selector (RSD); Oad|Road (CSD); Ms; Sid; SidMac; Comdcb; tuple[Oad|Road] (RCSD)."""

    type: DataType
    value: Value = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", DataType(self.type))


def structure(*items: Data) -> Data:
    return Data(DataType.STRUCTURE, tuple(items))


def array(*items: Data) -> Data:
    return Data(DataType.ARRAY, tuple(items))


# --- lengths and primitives -------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """A-XDR length: "长度 < 128 用一个字节, 否则 8nH 后跟 n 个字节的长度"."""
    if n < 0:
        raise FrameError(f"length {n} is negative")
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


class _Reader:
    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise FrameError(f"{what}: need {n} bytes at offset {self.pos}, only {len(self.buf) - self.pos} left")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def length(self, what: str) -> int:
        first = self.byte(what)
        if first < 0x80:
            return first
        count = first & 0x7F
        if not 1 <= count <= 4:
            raise FrameError(f"{what}: length prefix {first:02X}H is not a valid A-XDR length")
        return int.from_bytes(self.take(count, what), "big")

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")


def _int_bytes(value: int, size: int, signed: bool, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{what}: need an int, got {type(value).__name__}")
    try:
        return value.to_bytes(size, "big", signed=signed)
    except OverflowError:
        raise FrameError(f"{what}: {value} does not fit {size} byte(s){' signed' if signed else ''}") from None


def encode_oad(oad: Oad) -> bytes:
    return oad.to_bytes()


def decode_oad(r: _Reader) -> Oad:
    raw = r.take(4, "OAD")
    return Oad(int.from_bytes(raw[:2], "big"), raw[2], raw[3])


def encode_date_time_s(value: datetime | RawDateTimeS) -> bytes:
    """date_time_s: year long-unsigned, month, day, hour, minute, second (7 bytes); naive only."""
    if isinstance(value, RawDateTimeS):
        return value.raw
    if not isinstance(value, datetime):
        raise FrameError(f"date_time_s: need a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        raise FrameError(f"date_time_s: {value.isoformat()} has a time zone; meters keep naive local time")
    return value.year.to_bytes(2, "big") + bytes((value.month, value.day, value.hour, value.minute, value.second))


def decode_date_time_s(r: _Reader) -> datetime | RawDateTimeS:
    raw = r.take(7, "date_time_s")
    try:
        return datetime(int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[4], raw[5], raw[6])
    except ValueError:
        return RawDateTimeS(raw)


def _encode_ms(ms: Ms) -> bytes:
    out = bytes((ms.choice,))
    if ms.choice in (0, 1):
        return out
    out += encode_length(len(ms.items))
    for item in ms.items:
        if ms.choice == 2:
            out += _int_bytes(item, 1, False, "MS user type")  # type: ignore[arg-type]
        elif ms.choice == 3:
            out += encode_length(len(item)) + bytes(item)  # type: ignore[arg-type]
        elif ms.choice == 4:
            out += _int_bytes(item, 2, False, "MS configuration number")  # type: ignore[arg-type]
        elif ms.choice in (5, 6, 7):
            out += _encode_region(item)  # type: ignore[arg-type]
        else:
            raise FrameError(f"MS choice {ms.choice} is not 0..7")
    return out


def _decode_ms(r: _Reader) -> Ms:
    choice = r.byte("MS")
    if choice in (0, 1):
        return Ms(choice)
    if choice > 7:
        raise FrameError(f"MS choice {choice} is not 0..7")
    items: list[object] = []
    for _ in range(r.length("MS")):
        if choice == 2:
            items.append(r.byte("MS user type"))
        elif choice == 3:
            items.append(r.take(r.length("TSA"), "TSA"))
        elif choice == 4:
            items.append(r.uint(2, "MS configuration number"))
        else:
            items.append(_decode_region(r))
    return Ms(choice, tuple(items))


def _encode_region(region: Region) -> bytes:
    return bytes((region.kind,)) + encode_data(region.start) + encode_data(region.end)


def _decode_region(r: _Reader) -> Region:
    kind = r.byte("Region")
    return Region(kind, _decode(r), _decode(r))


def _encode_ti(ti: Ti) -> bytes:
    return bytes((ti.unit,)) + _int_bytes(ti.interval, 2, False, "TI interval")


def _decode_ti(r: _Reader) -> Ti:
    return Ti(r.byte("TI"), r.uint(2, "TI"))


def encode_csd(csd: Oad | Road) -> bytes:
    """CSD ∷= CHOICE {对象属性描述符 [0] OAD, 记录型对象属性描述符 [1] ROAD}."""
    if isinstance(csd, Road):
        return b"\x01" + _encode_road(csd)
    return b"\x00" + encode_oad(csd)


def decode_csd(r: _Reader) -> Oad | Road:
    choice = r.byte("CSD")
    if choice == 0:
        return decode_oad(r)
    if choice == 1:
        return _decode_road(r)
    raise FrameError(f"CSD choice {choice} is neither 0 (OAD) nor 1 (ROAD)")


def encode_rcsd(columns: Sequence[Oad | Road]) -> bytes:
    """RCSD ∷= SEQUENCE OF CSD (empty: every column)."""
    return encode_length(len(columns)) + b"".join(encode_csd(c) for c in columns)


def decode_rcsd(r: _Reader) -> tuple[Oad | Road, ...]:
    return tuple(decode_csd(r) for _ in range(r.length("RCSD")))


def _encode_road(road: Road) -> bytes:
    return encode_oad(road.oad) + encode_length(len(road.columns)) + b"".join(map(encode_oad, road.columns))


def _decode_road(r: _Reader) -> Road:
    oad = decode_oad(r)
    return Road(oad, tuple(decode_oad(r) for _ in range(r.length("ROAD"))))


def encode_rsd(sel: Selector) -> bytes:
    """RSD ∷= CHOICE {不选择 [0] NULL, Selector1 [1] .. Selector10 [10]} (fields untagged except Data)."""
    out = bytes((sel.number,))
    f = sel.fields
    if sel.number == 0:
        return out
    if sel.number == 1:
        return out + encode_oad(f[0]) + encode_data(f[1])  # type: ignore[arg-type]
    if sel.number == 2:
        return out + encode_oad(f[0]) + b"".join(encode_data(d) for d in f[1:4])  # type: ignore[arg-type]
    if sel.number == 3:
        return out + encode_length(len(f)) + b"".join(encode_rsd(s)[1:] for s in f)  # type: ignore[arg-type]
    if sel.number in (4, 5):
        return out + encode_date_time_s(f[0]) + _encode_ms(f[1])  # type: ignore[arg-type]
    if sel.number in (6, 7, 8):
        return (out + encode_date_time_s(f[0]) + encode_date_time_s(f[1])  # type: ignore[arg-type]
                + _encode_ti(f[2]) + _encode_ms(f[3]))  # type: ignore[arg-type]
    if sel.number == 9:
        return out + _int_bytes(f[0], 1, False, "Selector9 上第n次")  # type: ignore[arg-type]
    if sel.number == 10:
        return out + _int_bytes(f[0], 1, False, "Selector10 n") + _encode_ms(f[1])  # type: ignore[arg-type]
    raise FrameError(f"RSD selector {sel.number} is not 0..10")


def decode_rsd(r: _Reader) -> Selector:
    number = r.byte("RSD")
    if number == 0:
        return Selector(0)
    if number == 1:
        return Selector(1, (decode_oad(r), _decode(r)))
    if number == 2:
        return Selector(2, (decode_oad(r), _decode(r), _decode(r), _decode(r)))
    if number == 3:
        count = r.length("Selector3")
        return Selector(3, tuple(Selector(2, (decode_oad(r), _decode(r), _decode(r), _decode(r)))
                                 for _ in range(count)))
    if number in (4, 5):
        return Selector(number, (decode_date_time_s(r), _decode_ms(r)))
    if number in (6, 7, 8):
        return Selector(number, (decode_date_time_s(r), decode_date_time_s(r), _decode_ti(r), _decode_ms(r)))
    if number == 9:
        return Selector(9, (r.byte("Selector9"),))
    if number == 10:
        return Selector(10, (r.byte("Selector10"), _decode_ms(r)))
    raise FrameError(f"RSD selector {number} is not 0..10")


# --- Data -------------------------------------------------------------------------------------


def encode_data(data: Data) -> bytes:
    """``data`` with its type tag, as it goes in an APDU."""
    return bytes((data.type,)) + _encode_value(data)


def _encode_value(data: Data) -> bytes:
    t, v = data.type, data.value
    what = t.name.lower()
    if t == DataType.NULL:
        return b""
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        items: Sequence[Data] = v  # type: ignore[assignment]
        return encode_length(len(items)) + b"".join(encode_data(i) for i in items)
    if t == DataType.BOOL:
        return b"\x01" if v else b"\x00"
    if t in _INTS:
        size, signed = _INTS[t]
        return _int_bytes(v, size, signed, what)  # type: ignore[arg-type]
    if t in _BYTES_TYPES:
        raw = bytes(v)  # type: ignore[arg-type]
        return encode_length(len(raw)) + raw
    if t == DataType.VISIBLE_STRING:
        raw = str(v).encode("ascii")
        return encode_length(len(raw)) + raw
    if t == DataType.UTF8_STRING:
        raw = str(v).encode("utf-8")
        return encode_length(len(raw)) + raw
    if t == DataType.BIT_STRING:
        bs: BitString = v  # type: ignore[assignment]
        if len(bs.data) != (bs.bits + 7) // 8:
            raise FrameError(f"bit-string of {bs.bits} bits needs {(bs.bits + 7) // 8} bytes, got {len(bs.data)}")
        return encode_length(bs.bits) + bs.data
    if t == DataType.FLOAT32:
        return struct.pack(">f", v)
    if t == DataType.FLOAT64:
        return struct.pack(">d", v)
    if t == DataType.DATE_TIME:
        d: DateTime = v  # type: ignore[assignment]
        return (d.year.to_bytes(2, "big") + bytes((d.month, d.day, d.day_of_week, d.hour, d.minute, d.second))
                + d.milliseconds.to_bytes(2, "big"))
    if t == DataType.DATE:
        dd: Date = v  # type: ignore[assignment]
        return dd.year.to_bytes(2, "big") + bytes((dd.month, dd.day, dd.day_of_week))
    if t == DataType.TIME:
        tt: Time = v  # type: ignore[assignment]
        return bytes((tt.hour, tt.minute, tt.second))
    if t == DataType.DATE_TIME_S:
        return encode_date_time_s(v)  # type: ignore[arg-type]
    if t == DataType.OAD:
        return encode_oad(v)  # type: ignore[arg-type]
    if t == DataType.ROAD:
        return _encode_road(v)  # type: ignore[arg-type]
    if t == DataType.OMD:
        o: Omd = v  # type: ignore[assignment]
        return o.oi.to_bytes(2, "big") + bytes((o.method, o.mode))
    if t == DataType.TI:
        return _encode_ti(v)  # type: ignore[arg-type]
    if t == DataType.REGION:
        return _encode_region(v)  # type: ignore[arg-type]
    if t == DataType.SCALER_UNIT:
        su: ScalerUnit = v  # type: ignore[assignment]
        return _int_bytes(su.scaler, 1, True, "scaler") + _int_bytes(su.unit, 1, False, "unit")
    if t == DataType.RSD:
        return encode_rsd(v)  # type: ignore[arg-type]
    if t == DataType.CSD:
        return encode_csd(v)  # type: ignore[arg-type]
    if t == DataType.MS:
        return _encode_ms(v)  # type: ignore[arg-type]
    if t == DataType.SID:
        s: Sid = v  # type: ignore[assignment]
        return _int_bytes(s.ident, 4, False, "SID") + encode_length(len(s.extra)) + s.extra
    if t == DataType.SID_MAC:
        sm: SidMac = v  # type: ignore[assignment]
        return _encode_value(Data(DataType.SID, sm.sid)) + encode_length(len(sm.mac)) + sm.mac
    if t == DataType.COMDCB:
        c: Comdcb = v  # type: ignore[assignment]
        return bytes((c.baud, c.parity, c.data_bits, c.stop_bits, c.flow_control))
    if t == DataType.RCSD:
        return encode_rcsd(v)  # type: ignore[arg-type]
    raise FrameError(f"cannot encode Data type {t!r}")  # pragma: no cover - every member is handled


MAX_DEPTH: Final = 16  # nesting of arrays/structures a meter may send; more is a corrupt frame


def _decode(r: _Reader, depth: int = 0) -> Data:
    at = r.pos
    tag = r.byte("Data type")
    try:
        t = DataType(tag)
    except ValueError:
        raise FrameError(f"Data type {tag} at offset {at} is not in DL/T 698.45 table 6.3.3.1") from None
    if t == DataType.NULL:
        return Data(t)
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        if depth >= MAX_DEPTH:
            raise FrameError(f"{t.name.lower()} at offset {at} nested deeper than {MAX_DEPTH}")
        count = r.length(t.name.lower())
        if count > len(r.buf) - r.pos:
            raise FrameError(f"{t.name.lower()} at offset {at} claims {count} elements, only "
                             f"{len(r.buf) - r.pos} bytes left")
        return Data(t, tuple(_decode(r, depth + 1) for _ in range(count)))
    if t == DataType.BOOL:
        return Data(t, r.byte("bool") != 0)
    if t in _INTS:
        size, signed = _INTS[t]
        return Data(t, int.from_bytes(r.take(size, t.name.lower()), "big", signed=signed))
    if t in _BYTES_TYPES:
        return Data(t, r.take(r.length(t.name.lower()), t.name.lower()))
    if t == DataType.VISIBLE_STRING:
        raw = r.take(r.length("visible-string"), "visible-string")
        return Data(t, raw.decode("latin-1"))
    if t == DataType.UTF8_STRING:
        raw = r.take(r.length("UTF8-string"), "UTF8-string")
        try:
            return Data(t, raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FrameError(f"UTF8-string at offset {at} is not UTF-8: {exc}") from exc
    if t == DataType.BIT_STRING:
        bits = r.length("bit-string")
        return Data(t, BitString(bits, r.take((bits + 7) // 8, "bit-string")))
    if t == DataType.FLOAT32:
        return Data(t, struct.unpack(">f", r.take(4, "float32"))[0])
    if t == DataType.FLOAT64:
        return Data(t, struct.unpack(">d", r.take(8, "float64"))[0])
    if t == DataType.DATE_TIME:
        raw = r.take(10, "date_time")
        return Data(t, DateTime(int.from_bytes(raw[:2], "big"), *raw[2:8], int.from_bytes(raw[8:], "big")))
    if t == DataType.DATE:
        raw = r.take(5, "date")
        return Data(t, Date(int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[4]))
    if t == DataType.TIME:
        raw = r.take(3, "time")
        return Data(t, Time(raw[0], raw[1], raw[2]))
    if t == DataType.DATE_TIME_S:
        return Data(t, decode_date_time_s(r))
    if t == DataType.OAD:
        return Data(t, decode_oad(r))
    if t == DataType.ROAD:
        return Data(t, _decode_road(r))
    if t == DataType.OMD:
        raw = r.take(4, "OMD")
        return Data(t, Omd(int.from_bytes(raw[:2], "big"), raw[2], raw[3]))
    if t == DataType.TI:
        return Data(t, _decode_ti(r))
    if t == DataType.REGION:
        return Data(t, _decode_region(r))
    if t == DataType.SCALER_UNIT:
        raw = r.take(2, "Scaler_Unit")
        return Data(t, ScalerUnit(int.from_bytes(raw[:1], "big", signed=True), raw[1]))
    if t == DataType.RSD:
        return Data(t, decode_rsd(r))
    if t == DataType.CSD:
        return Data(t, decode_csd(r))
    if t == DataType.MS:
        return Data(t, _decode_ms(r))
    if t == DataType.SID:
        return Data(t, _decode_sid(r))
    if t == DataType.SID_MAC:
        sid = _decode_sid(r)
        return Data(t, SidMac(sid, r.take(r.length("MAC"), "MAC")))
    if t == DataType.COMDCB:
        return Data(t, Comdcb(*r.take(5, "COMDCB")))
    return Data(t, decode_rcsd(r))  # RCSD, the last member


def _decode_sid(r: _Reader) -> Sid:
    ident = r.uint(4, "SID")
    return Sid(ident, r.take(r.length("SID extra data"), "SID extra data"))


def decode_data(buf: bytes, pos: int = 0) -> tuple[Data, int]:
    """One Data starting at ``buf[pos]``: ``(data, position after it)``; ``FrameError`` if malformed."""
    r = _Reader(bytes(buf), pos)
    return _decode(r), r.pos


def decode_data_all(buf: bytes) -> Data:
    """Exactly one Data filling ``buf``."""
    data, end = decode_data(buf)
    if end != len(buf):
        raise FrameError(f"{len(buf) - end} byte(s) after the Data value: {bytes(buf[end:]).hex(' ')}")
    return data


# --- values -------------------------------------------------------------------------------------

UNITS: Final[dict[int, str]] = {
    # DL/T 698.45 附录 物理单位 (see the module docstring for the sources)
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "°", 9: "°C", 10: "currency", 11: "m",
    12: "m/s", 13: "m³", 14: "m³", 15: "m³/h", 16: "m³/h", 17: "m³/d", 18: "m³/d", 19: "l", 20: "kg", 21: "N",
    22: "Nm", 23: "Pa", 24: "bar", 25: "J", 26: "J/h",
    27: "W", 28: "kW", 29: "VA", 30: "kVA", 31: "var", 32: "kvar", 33: "kWh", 34: "kVAh", 35: "kvarh",
    36: "A", 37: "C", 38: "V", 39: "V/m", 40: "F", 41: "Ω", 42: "Ωm²/m", 43: "Wb", 44: "T", 45: "A/m",
    46: "H", 47: "Hz", 48: "1/(Wh)", 49: "1/(varh)", 50: "1/(VAh)", 51: "%", 52: "byte", 53: "dBm",
    54: "currency/kWh", 55: "Ah", 56: "ms",
    254: "",  # 其他单位
    255: "",  # 无单位、缺单位、计数
}
UNIT_CODES: Final[dict[str, int]] = {
    "W": 27, "kW": 28, "VA": 29, "kVA": 30, "var": 31, "kvar": 32, "kWh": 33, "kVAh": 34, "kvarh": 35,
    "A": 36, "V": 38, "Hz": 47, "%": 51, "": 255,
}


def unit_text(code: int) -> str:
    """Our symbol of a DL/T 698.45 unit code; an unknown code is shown as such rather than guessed."""
    return UNITS.get(code, f"unit {code}")


def scaled(value: int, scaler: int) -> Decimal:
    """``value x 10^scaler`` exactly: 123456 with scaler -2 is 1234.56."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"a scaler applies to integers, got {type(value).__name__}")
    return Decimal(value).scaleb(scaler)


def to_decimal(data: Data, scaler_unit: ScalerUnit | None = None) -> tuple[Decimal, str]:
    """An integer Data as ``(exact value, unit symbol)`` with its scaler-unit applied.

    Raises ``FrameError`` for a non-numeric Data (e.g. NULL: the meter has no
    value) so no placeholder is ever reported as a reading.
    """
    if data.type not in _INTS or data.type in (DataType.ENUM, DataType.OI):
        raise FrameError(f"{data.type.name.lower()} is not a number (value {data.value!r})")
    if scaler_unit is None:
        return Decimal(data.value), ""  # type: ignore[arg-type]
    return scaled(data.value, scaler_unit.scaler), unit_text(scaler_unit.unit)  # type: ignore[arg-type]
