"""A-XDR ``Data`` values and COSEM date-time: the typed values inside every GET response, no I/O.

dlms-cosem's ``dlms_data`` writes octet-string lengths on one byte (wrong from
128 bytes on), turns floats into binary floats, and reads a date-time
deviation of 0 as "not specified"; a gateway that must print ``1234.56`` for a
register holding 1234.56 cannot use it for values.  This module decodes the
``Data`` CHOICE of IEC 62056-6-2 (DLMS UA 1000-1 "Blue Book" 4.1.5, "Data ::=
CHOICE") into :class:`Data` nodes that keep their tag, and encodes them again
for the simulated meter.

References: IEC 62056-6-2:2017 / Blue Book ed. 12, 4.1.5 (common data types),
4.1.6.1 (date and time formats); IEC 61334-6 (A-XDR length encoding).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

from meterlink.core.errors import FrameError
from meterlink.core.reading import float32_decimal, float64_decimal


class Tag(enum.IntEnum):
    """The ``Data`` CHOICE tags (Blue Book 4.1.5)."""

    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5             # Integer32
    DOUBLE_LONG_UNSIGNED = 6    # Unsigned32
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15                # Integer8
    LONG = 16                   # Integer16
    UNSIGNED = 17               # Unsigned8
    LONG_UNSIGNED = 18          # Unsigned16
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


_INTS: dict[int, tuple[int, bool]] = {  # tag -> (size, signed)
    Tag.DOUBLE_LONG: (4, True), Tag.DOUBLE_LONG_UNSIGNED: (4, False), Tag.INTEGER: (1, True),
    Tag.LONG: (2, True), Tag.UNSIGNED: (1, False), Tag.LONG_UNSIGNED: (2, False), Tag.LONG64: (8, True),
    Tag.LONG64_UNSIGNED: (8, False), Tag.ENUM: (1, False), Tag.BCD: (1, True),
}
_FIXED_OCTETS = {Tag.DATE_TIME: 12, Tag.DATE: 5, Tag.TIME: 4}


@dataclass(frozen=True, slots=True)
class Data:
    """One A-XDR value with its tag: ``value`` is an int, bool, bytes, str, Decimal (floats), None or a tuple of Data."""

    tag: Tag
    value: Any = None

    def number(self) -> Decimal:
        """The value as an exact decimal; raises ValueError for a value that is not a number."""
        if self.tag in _INTS:
            return Decimal(int(self.value))
        if self.tag in (Tag.FLOAT32, Tag.FLOAT64):
            return Decimal(self.value)
        if self.tag is Tag.BOOLEAN:
            return Decimal(int(bool(self.value)))
        raise ValueError(f"{self.tag.name.lower().replace('_', '-')} is not a number")

    @property
    def items(self) -> tuple[Data, ...]:
        if self.tag not in (Tag.ARRAY, Tag.STRUCTURE, Tag.COMPACT_ARRAY):
            raise ValueError(f"{self.tag.name.lower()} is not an array or a structure")
        return tuple(self.value)


# --- constructors (for the simulated meter and tests) ------------------------------


def null() -> Data:
    return Data(Tag.NULL, None)


def array(items: Sequence[Data]) -> Data:
    return Data(Tag.ARRAY, tuple(items))


def structure(*items: Data) -> Data:
    return Data(Tag.STRUCTURE, tuple(items))


def octets(value: bytes) -> Data:
    return Data(Tag.OCTET_STRING, bytes(value))


def visible(value: str) -> Data:
    return Data(Tag.VISIBLE_STRING, value)


def integer(tag: Tag, value: int) -> Data:
    size, signed = _INTS[tag]
    value.to_bytes(size, "big", signed=signed)  # raises OverflowError when it does not fit
    return Data(tag, int(value))


def float64(value: float) -> Data:
    return Data(Tag.FLOAT64, float64_decimal(value))


# --- lengths -------------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """A-XDR / BER definite length: one byte below 128, else 0x8N and N big-endian bytes."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def decode_length(buf: bytes, pos: int) -> tuple[int, int]:
    """``(length, position after it)``; raises FrameError when the bytes end inside it."""
    if pos >= len(buf):
        raise FrameError("A-XDR length runs past the end of the data")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(buf):
        raise FrameError(f"bad A-XDR length {buf[pos:pos + 1 + n].hex(' ')}")
    return int.from_bytes(buf[pos + 1:pos + 1 + n], "big"), pos + 1 + n


# --- Data ----------------------------------------------------------------------------


def encode(d: Data) -> bytes:
    tag = d.tag
    if tag in (Tag.NULL, Tag.DONT_CARE):
        return bytes([tag])
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        return bytes([tag]) + encode_length(len(d.value)) + b"".join(encode(x) for x in d.value)
    if tag is Tag.COMPACT_ARRAY:
        if not d.value:
            raise ValueError("an empty compact-array has no element to take its contents-description from")
        contents = b"".join(_encode_untagged(x) for x in d.value)
        return bytes([tag]) + _type_of(d.value[0]).to_bytes() + encode_length(len(contents)) + contents
    if tag is Tag.BOOLEAN:
        return bytes([tag, 0xFF if d.value else 0x00])
    if tag in _INTS:
        size, signed = _INTS[tag]
        return bytes([tag]) + int(d.value).to_bytes(size, "big", signed=signed)
    if tag in (Tag.OCTET_STRING, Tag.VISIBLE_STRING, Tag.UTF8_STRING):
        raw = d.value if isinstance(d.value, bytes) else str(d.value).encode("ascii" if tag is Tag.VISIBLE_STRING
                                                                          else "utf-8")
        return bytes([tag]) + encode_length(len(raw)) + raw
    if tag is Tag.BIT_STRING:
        bits, raw = d.value
        return bytes([tag]) + encode_length(bits) + raw
    if tag is Tag.FLOAT32:
        return bytes([tag]) + struct.pack(">f", float(d.value))
    if tag is Tag.FLOAT64:
        return bytes([tag]) + struct.pack(">d", float(d.value))
    if tag in _FIXED_OCTETS:
        return bytes([tag]) + bytes(d.value)
    raise ValueError(f"cannot encode {tag!r}")


def decode(buf: bytes, pos: int = 0) -> tuple[Data, int]:
    """One ``Data`` value starting at ``pos``: ``(value, position after it)``.

    Raises FrameError for bytes that are not A-XDR data (an unknown tag, a
    value running past the end): they came from a meter and are malformed.
    """
    if pos >= len(buf):
        raise FrameError("A-XDR data ends before the value")
    raw_tag = buf[pos]
    try:
        tag = Tag(raw_tag)
    except ValueError:
        raise FrameError(f"unknown A-XDR data tag {raw_tag} at byte {pos}") from None
    return _value(tag, buf, pos + 1)


def _value(tag: Tag, buf: bytes, pos: int) -> tuple[Data, int]:
    """The value of a ``tag`` starting at ``pos`` (after the tag byte, or untagged inside a compact-array)."""
    if tag in (Tag.NULL, Tag.DONT_CARE):
        return Data(tag, None), pos
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        count, pos = decode_length(buf, pos)
        items = []
        for _ in range(count):
            item, pos = decode(buf, pos)
            items.append(item)
        return Data(tag, tuple(items)), pos
    if tag is Tag.COMPACT_ARRAY:
        return _compact_array(buf, pos)
    if tag is Tag.BOOLEAN:
        _need(buf, pos, 1)
        return Data(tag, buf[pos] != 0), pos + 1
    if tag in _INTS:
        size, signed = _INTS[tag]
        _need(buf, pos, size)
        return Data(tag, int.from_bytes(buf[pos:pos + size], "big", signed=signed)), pos + size
    if tag in (Tag.OCTET_STRING, Tag.VISIBLE_STRING, Tag.UTF8_STRING):
        n, pos = decode_length(buf, pos)
        _need(buf, pos, n)
        raw = bytes(buf[pos:pos + n])
        if tag is Tag.OCTET_STRING:
            return Data(tag, raw), pos + n
        return Data(tag, raw.decode("latin-1" if tag is Tag.VISIBLE_STRING else "utf-8", errors="replace")), pos + n
    if tag is Tag.BIT_STRING:
        bits, pos = decode_length(buf, pos)
        n = (bits + 7) // 8
        _need(buf, pos, n)
        return Data(tag, (bits, bytes(buf[pos:pos + n]))), pos + n
    if tag is Tag.FLOAT32:
        _need(buf, pos, 4)
        return Data(tag, _float(struct.unpack(">f", buf[pos:pos + 4])[0], float32_decimal)), pos + 4
    if tag is Tag.FLOAT64:
        _need(buf, pos, 8)
        return Data(tag, _float(struct.unpack(">d", buf[pos:pos + 8])[0], float64_decimal)), pos + 8
    size = _FIXED_OCTETS[tag]
    _need(buf, pos, size)
    return Data(tag, bytes(buf[pos:pos + size])), pos + size


# --- compact-array (Green Book ed. 8, 9.5 "Data ::= CHOICE", compact-array [19]) ----------------------------
#
#   compact-array [19] IMPLICIT SEQUENCE {
#       contents-description [0] TypeDescription,
#       array-contents       [1] IMPLICIT OCTET STRING }
#   TypeDescription ::= CHOICE {
#       array     [1] IMPLICIT SEQUENCE { number-of-elements Unsigned16, type-description TypeDescription },
#       structure [2] IMPLICIT SEQUENCE OF TypeDescription,
#       ... the simple types by their Data tag }
#
# array-contents packs the elements one after the other, each encoded as its type says but without any tag and
# without the element counts the description already holds; octet-, visible- and bit-strings keep their length.
# Profile generic buffers use it (Blue Book 4.3.6, "buffer ... compact-array") to save the per-value tags.


@dataclass(frozen=True, slots=True)
class TypeDescription:
    tag: Tag
    count: int = 0                                # array: number-of-elements
    members: tuple[TypeDescription, ...] = ()     # structure: each member; array: the one element type

    def to_bytes(self) -> bytes:
        if self.tag is Tag.ARRAY:
            return bytes([self.tag]) + self.count.to_bytes(2, "big") + self.members[0].to_bytes()
        if self.tag is Tag.STRUCTURE:
            return bytes([self.tag]) + encode_length(len(self.members)) + b"".join(m.to_bytes() for m in self.members)
        return bytes([self.tag])


def _type_description(buf: bytes, pos: int) -> tuple[TypeDescription, int]:
    _need(buf, pos, 1)
    try:
        tag = Tag(buf[pos])
    except ValueError:
        raise FrameError(f"unknown type {buf[pos]} in a compact-array description at byte {pos}") from None
    pos += 1
    if tag is Tag.ARRAY:
        _need(buf, pos, 2)
        count = int.from_bytes(buf[pos:pos + 2], "big")
        element, pos = _type_description(buf, pos + 2)
        return TypeDescription(tag, count, (element,)), pos
    if tag is Tag.STRUCTURE:
        n, pos = decode_length(buf, pos)
        members = []
        for _ in range(n):
            member, pos = _type_description(buf, pos)
            members.append(member)
        return TypeDescription(tag, 0, tuple(members)), pos
    if tag is Tag.COMPACT_ARRAY:
        raise FrameError("a compact-array inside a compact-array description")
    return TypeDescription(tag), pos


def _typed(td: TypeDescription, buf: bytes, pos: int) -> tuple[Data, int]:
    if td.tag is Tag.ARRAY or td.tag is Tag.STRUCTURE:
        members = td.members * td.count if td.tag is Tag.ARRAY else td.members
        items = []
        for member in members:
            item, pos = _typed(member, buf, pos)
            items.append(item)
        return Data(td.tag, tuple(items)), pos
    return _value(td.tag, buf, pos)


def _compact_array(buf: bytes, pos: int) -> tuple[Data, int]:
    td, pos = _type_description(buf, pos)
    n, pos = decode_length(buf, pos)
    _need(buf, pos, n)
    contents, end = bytes(buf[pos:pos + n]), pos + n
    items = []
    at = 0
    while at < len(contents):
        item, nxt = _typed(td, contents, at)
        if nxt == at:
            raise FrameError("a compact-array whose elements take no bytes")
        items.append(item)
        at = nxt
    return Data(Tag.COMPACT_ARRAY, tuple(items)), end


def _type_of(d: Data) -> TypeDescription:
    if d.tag is Tag.ARRAY:
        if not d.value:
            raise ValueError("an empty array inside a compact-array has no element type")
        return TypeDescription(Tag.ARRAY, len(d.value), (_type_of(d.value[0]),))
    if d.tag is Tag.STRUCTURE:
        return TypeDescription(Tag.STRUCTURE, 0, tuple(_type_of(x) for x in d.value))
    return TypeDescription(d.tag)


def _encode_untagged(d: Data) -> bytes:
    if d.tag in (Tag.ARRAY, Tag.STRUCTURE):
        return b"".join(_encode_untagged(x) for x in d.value)
    return encode(d)[1:]


def compact_array(items: Sequence[Data]) -> Data:
    """A compact-array of ``items`` (all of one type, as a profile buffer's records are)."""
    return Data(Tag.COMPACT_ARRAY, tuple(items))


def decode_all(buf: bytes) -> Data:
    """Exactly one value filling ``buf``."""
    d, end = decode(buf, 0)
    if end != len(buf):
        raise FrameError(f"{len(buf) - end} bytes after the A-XDR value")
    return d


def _need(buf: bytes, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise FrameError(f"A-XDR value needs {n} bytes at byte {pos}, {len(buf) - pos} left")


def _float(x: float, convert: Any) -> Decimal | None:
    try:
        return convert(x)  # type: ignore[no-any-return]
    except ValueError:
        return None  # NaN or infinity: not a value


# --- COSEM date-time (Blue Book 4.1.6.1) --------------------------------------------

NOT_SPECIFIED_DEVIATION = -0x8000


@dataclass(frozen=True, slots=True, kw_only=True)
class CosemDateTime:
    """The 12-byte date-time: ``deviation`` in minutes, ``None`` when the meter leaves it unspecified.

    Blue Book 4.1.6.1: "deviation: ... in minutes of local time to UTC", so
    local time = UTC - deviation, and a meter on CET (UTC+01:00) sends -60.
    Some companion standards send the opposite sign; the driver reads the
    standard's.
    """

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    hundredths: int = 0
    deviation: int | None = None
    status: int = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> CosemDateTime:
        if len(raw) != 12:
            raise FrameError(f"a date-time has 12 bytes, got {len(raw)}")
        year = int.from_bytes(raw[0:2], "big")
        month, day, _dow, hour, minute, second, hundredths = raw[2:9]
        deviation = int.from_bytes(raw[9:11], "big", signed=True)
        if year == 0xFFFF or month > 12 or day > 31 or month in (0, 0xFF) or day in (0, 0xFF) or hour > 23 \
                or minute > 59 or second > 59:
            raise FrameError(f"date-time {raw.hex(' ')} is not a point in time (unspecified or out of range fields)")
        return cls(year=year, month=month, day=day, hour=hour, minute=minute, second=second,
                   hundredths=0 if hundredths == 0xFF else min(hundredths, 99),
                   deviation=None if deviation == NOT_SPECIFIED_DEVIATION else deviation, status=raw[11])

    @classmethod
    def from_datetime(cls, dt: datetime, *, deviation: int | None = 0, status: int = 0) -> CosemDateTime:
        """``dt`` (aware) as a meter would send it, in the local time that ``deviation`` describes."""
        utc = dt.astimezone(UTC)
        local = utc - timedelta(minutes=deviation or 0)
        return cls(year=local.year, month=local.month, day=local.day, hour=local.hour, minute=local.minute,
                   second=local.second, hundredths=local.microsecond // 10000, deviation=deviation, status=status)

    def to_bytes(self) -> bytes:
        try:
            dow = datetime(self.year, self.month, self.day).isoweekday()  # Monday = 1 (Blue Book)
        except ValueError:
            dow = 0xFF
        dev = NOT_SPECIFIED_DEVIATION if self.deviation is None else self.deviation
        return (self.year.to_bytes(2, "big") + bytes([self.month, self.day, dow, self.hour, self.minute, self.second,
                                                      self.hundredths])
                + dev.to_bytes(2, "big", signed=True) + bytes([self.status]))

    def to_datetime(self, unspecified: tzinfo | None = None) -> datetime:
        """An aware datetime; a missing deviation means the zone ``unspecified`` (default: the gateway's).

        Without a deviation the meter's wall time is read in ``unspecified``
        with that zone's rules at this very time stamp (a record from before a
        daylight-saving change gets the offset of its own day).  The hour the
        clocks go back is on the wall twice; clock_status bit 7 "daylight
        saving active" (Blue Book 4.1.6.1) says which of the two the meter
        means, when the meter sets the status at all (not 0xFF).
        """
        try:
            naive = datetime(self.year, self.month, self.day, self.hour, self.minute, self.second,
                             self.hundredths * 10000)
        except ValueError as exc:
            raise FrameError(f"date-time is not a valid date: {exc}") from None
        if self.deviation is None:
            if unspecified is None:
                return naive.astimezone()
            local = naive.replace(tzinfo=unspecified)
            if self.status != CLOCK_STATUS_NOT_SPECIFIED:
                other = local.replace(fold=1)
                if other.utcoffset() != local.utcoffset():  # the repeated hour: fold 0 is the summer-time one
                    chosen = local if bool(self.status & CLOCK_DST) == bool(local.dst()) else other
                    # as a fixed offset: datetimes of one zone compare by wall time, fold ignored
                    return chosen.astimezone(timezone(chosen.utcoffset() or timedelta(0)))
            return local
        return naive.replace(tzinfo=timezone(timedelta(minutes=-self.deviation)))


def datetime_data(dt: datetime, *, deviation: int | None = 0) -> Data:
    """A date-time as meters send it: an octet-string of 12 bytes (Blue Book 4.1.6.1)."""
    return octets(CosemDateTime.from_datetime(dt, deviation=deviation).to_bytes())


CLOCK_INVALID = 0x01    # Blue Book 4.1.6.1 clock_status bit 0: invalid value
CLOCK_DOUBTFUL = 0x02   # bit 1: doubtful value
CLOCK_DST = 0x80        # bit 7: daylight saving active
CLOCK_STATUS_NOT_SPECIFIED = 0xFF


def clock_status(d: Data) -> int:
    """The clock_status byte of a date-time value; 0 when absent, not specified (0xFF) or not a date-time."""
    if d.tag not in (Tag.OCTET_STRING, Tag.DATE_TIME) or not isinstance(d.value, bytes) or len(d.value) != 12:
        return 0
    status = d.value[11]
    return 0 if status == CLOCK_STATUS_NOT_SPECIFIED else status


def as_datetime(d: Data, unspecified: tzinfo | None = None) -> datetime:
    """A date-time value (octet-string of 12 bytes or the date-time tag) as an aware datetime."""
    if d.tag not in (Tag.OCTET_STRING, Tag.DATE_TIME) or not isinstance(d.value, bytes):
        raise FrameError(f"expected a date-time, got {d.tag.name.lower()}")
    return CosemDateTime.from_bytes(d.value).to_datetime(unspecified)
