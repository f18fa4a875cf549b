"""DL/T 645-2007 codec: frames, addresses, data identifiers and BCD values, no I/O.

DL/T 645-2007 "多功能电能表通信协议" (multi-function watt-hour meter communication
protocol) is the half-duplex master/slave protocol of Chinese electricity meters
on RS-485.  This module is everything Meterlink knows about its wire format:
pure functions and frozen keyword-only dataclasses, no asyncio and no serial
port, so the transport, the simulator and the tests share one implementation.

Why our own codec: there is no trustworthy Python library.  PyPI ``dlt645``
sends nameplate addresses in the wrong byte order (the standard sends the
*low* byte first, see ``address_to_wire``), so it talks to no real meter
unless the address is a palindrome of bytes.  This module was written from the
standard; public C/Java/Rust implementations and documented captures were only
read to cross-check it (the vectors in ``tests/drivers/dlt645/vectors`` cite
their source).

The standard is quoted beside the code implementing it, by clause title; the
quotes are the standard's Chinese wording with an English gloss.

Field reality (the reason ``decode`` hunts): RS-485 adapters and meters put
any number of ``FE`` wake-up bytes before a frame, and line noise around the
half-duplex turnaround adds garbage, so a frame is found by hunting for
``68 A0..A5 68``, never by assuming it starts at byte 0.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

from meterlink.core.errors import BadFrame, FrameError, MeterRejected

# --- frame constants ------------------------------------------------------------

START: Final = 0x68
"""帧起始符: "68H 标识一帧信息的开始" (68H marks the start of a frame; it appears twice)."""

END: Final = 0x16
"""结束符: "16H 标识一帧信息的结束" (16H marks the end of a frame)."""

WAKEUP: Final = 0xFE
"""前导字节: "在主站发送帧信息之前，先发送4个字节FEH，以唤醒接收方"
(before a frame the master sends four FEH bytes to wake the receiver up)."""

DEFAULT_WAKEUP_COUNT: Final = 4

DATA_OFFSET: Final = 0x33
"""数据域: "传输时发送方按字节进行加33H处理，接收方按字节进行减33H处理"
(the sender adds 33H to every data byte, the receiver subtracts it)."""

MAX_DATA_LEN: Final = 200
"""数据域长度 L: "读数据时 L≤200，写数据时 L≤50，L=0 表示无数据域"
(L <= 200 when reading, <= 50 when writing, 0 means no data field)."""

HEADER_LEN: Final = 10  # 68 A0..A5 68 C L
OVERHEAD: Final = 12  # header + CS + 16

# 控制码 C: "D7 传送方向: 0 由主站发出的命令帧, 1 由从站发出的应答帧;
#            D6 从站应答标志: 0 从站正确应答, 1 从站对异常信息的应答;
#            D5 后续帧标志: 0 无后续数据帧, 1 有后续数据帧; D4~D0 功能码"
DIRECTION_REPLY: Final = 0x80  # D7: frame sent by the slave (meter)
ABNORMAL_REPLY: Final = 0x40  # D6: the meter answers with an error word
FOLLOW_UP: Final = 0x20  # D5: more frames follow (read them with function 12H)
FUNCTION_MASK: Final = 0x1F  # D4..D0


class Function(enum.IntEnum):
    """功能码 (D4..D0 of the control code), in the standard's order."""

    BROADCAST_TIME_SYNC = 0x08  # 01000 广播校时
    READ_DATA = 0x11  # 10001 读数据
    READ_FOLLOW_UP = 0x12  # 10010 读后续数据
    READ_ADDRESS = 0x13  # 10011 读通信地址
    WRITE_DATA = 0x14  # 10100 写数据
    WRITE_ADDRESS = 0x15  # 10101 写通信地址
    FREEZE = 0x16  # 10110 冻结命令
    CHANGE_BAUD_RATE = 0x17  # 10111 更改通信速率
    CHANGE_PASSWORD = 0x18  # 11000 修改密码
    CLEAR_MAX_DEMAND = 0x19  # 11001 最大需量清零
    CLEAR_METER = 0x1A  # 11010 电表清零
    CLEAR_EVENTS = 0x1B  # 11011 事件清零


BROADCAST_ADDRESS: Final = "999999999999"
"""地址域: "通信地址999999999999H为广播地址，只针对特殊命令有效，如广播校时、广播冻结等。
广播命令不要求从站应答" (broadcast address, only for special commands such as
broadcast time sync; meters do not answer broadcasts)."""

WILDCARD_ADDRESS: Final = "AAAAAAAAAAAA"
"""All-wildcard address, used by "读通信地址" (read communication address) when a
single meter is on the bus."""

ERROR_BITS: Final[tuple[tuple[int, str], ...]] = (
    # 错误信息字 ERR: Bit0 其他错误, Bit1 无请求数据, Bit2 密码错/未授权,
    # Bit3 通信速率不能更改, Bit4 年时区数超, Bit5 日时段数超, Bit6 费率数超, Bit7 保留
    (0x01, "other error"),
    (0x02, "no requested data"),
    (0x04, "password error / unauthorized"),
    (0x08, "baud rate cannot be changed"),
    (0x10, "annual time zone count exceeded"),
    (0x20, "daily time slot count exceeded"),
    (0x40, "rate/tariff count exceeded"),
    (0x80, "reserved bit 7"),
)

BAUD_RATE_CODES: Final[Mapping[int, int]] = MappingProxyType(
    {
        # 通信速率特征字 Z (function 17H): Bit0 保留, Bit1 600, Bit2 1200, Bit3 2400,
        # Bit4 4800, Bit5 9600, Bit6 19200, Bit7 保留 (bit/s)
        600: 0x02,
        1200: 0x04,
        2400: 0x08,
        4800: 0x10,
        9600: 0x20,
        19200: 0x40,
    }
)


# --- addresses ------------------------------------------------------------------


def address_to_wire(address: str) -> bytes:
    """Nameplate address (12 characters) to the six address bytes A0..A5 on the wire.

    地址域 A0~A5: "地址域由6个字节构成，每字节2位BCD码 ... 地址域传输时低字节在前，高字节在后"
    (six bytes of two BCD digits; sent low byte first).  So nameplate
    ``123456789012`` goes out as ``12 90 78 56 34 12``.

    "地址域支持缩位寻址，即从若干低位起，剩余高位补AAH作为通配符进行读表操作"
    (abbreviated addressing: keep some low bytes, fill the remaining high bytes
    with AAH wildcards): ``AA`` pairs are allowed only as a run from the left of
    the nameplate string, e.g. ``AAAA56789012``.
    """
    if not isinstance(address, str) or len(address) != 12:
        raise FrameError(f"address {address!r}: need 12 characters (nameplate order)")
    wire = bytearray()
    wildcard_run = True
    for i in range(0, 12, 2):  # nameplate order is high byte first
        pair = address[i : i + 2].upper()
        if pair == "AA":
            if not wildcard_run:
                raise FrameError(f"address {address!r}: AA wildcards only in the high (left) bytes")
            wire.append(0xAA)
        elif pair.isascii() and pair.isdigit():
            wildcard_run = False
            wire.append(int(pair, 16))  # "90" -> 0x90: two BCD digits
        else:
            raise FrameError(f"address {address!r}: {pair!r} is neither two BCD digits nor AA")
    wire.reverse()
    return bytes(wire)


def _address_or_none(wire: bytes) -> str | None:
    """The nameplate string of six wire bytes, or None unless BCD/AA as in ``address_to_wire``."""
    if len(wire) != 6:
        return None
    text = bytes(reversed(wire)).hex().upper()
    try:
        address_to_wire(text)
    except FrameError:
        return None
    return text


def address_from_wire(wire: bytes) -> str:
    """The six address bytes A0..A5 (low byte first) to the nameplate string."""
    address = _address_or_none(bytes(wire))
    if address is None:
        raise FrameError(f"address bytes {bytes(wire).hex(' ')} are not 6 BCD/AA bytes")
    return address


def address_matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` answers a request sent to ``expected`` (AA pairs match any byte).

    "从站应答帧的地址域返回实际通信地址" (the reply carries the meter's real
    address), so a reply to ``AAAA56789012`` comes from e.g. ``123456789012``.
    """
    address_to_wire(expected)
    address_to_wire(actual)
    expected, actual = expected.upper(), actual.upper()
    return all(
        expected[i : i + 2] in ("AA", actual[i : i + 2]) for i in range(0, 12, 2)
    )


# --- data identifiers -----------------------------------------------------------


def normalize_di(di: str) -> str:
    """A data identifier as the standard writes it: 8 hex digits DI3 DI2 DI1 DI0, upper case."""
    if (
        not isinstance(di, str)
        or len(di) != 8
        or not all(c in "0123456789abcdefABCDEF" for c in di)
    ):
        raise FrameError(f"data identifier {di!r}: need 8 hex digits DI3DI2DI1DI0, e.g. '00010000'")
    return di.upper()


def encode_di(di: str) -> bytes:
    """``"00010000"`` to the 4 bytes DI0 DI1 DI2 DI3 (``00 00 01 00``), without the 33H offset.

    The standard writes an identifier DI3 DI2 DI1 DI0, but "所有数据项均先传送低位
    字节，后传送高位字节" (every data item is sent low byte first), so DI0 leads.
    """
    return bytes(reversed(bytes.fromhex(normalize_di(di))))


def decode_di(raw: bytes) -> str:
    """The 4 bytes DI0..DI3 (offset already removed) to ``"DI3DI2DI1DI0"``."""
    if len(raw) != 4:
        raise FrameError(f"data identifier needs 4 bytes, got {len(raw)}")
    return bytes(reversed(raw)).hex().upper()


# --- frames ---------------------------------------------------------------------


def checksum(frame_bytes: bytes) -> int:
    """校验码 CS: "从第一个帧起始符开始到校验码之前的所有各字节的模256的和"
    (sum modulo 256 of every byte from the first 68H up to the checksum; the FE
    wake-up bytes are not part of the frame and not summed)."""
    return sum(frame_bytes) & 0xFF


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One DL/T 645 frame: ``68 A0..A5 68 C L DATA CS 16``.

    ``address`` is in nameplate order (``"123456789012"``, AA wildcards allowed
    as in ``address_to_wire``); ``data`` is the data field *without* the 33H
    offset, which only the codec adds and removes.  Validated on construction so
    a Frame is always encodable.
    """

    address: str
    control_code: int
    data: bytes = b""

    def __post_init__(self) -> None:
        address_to_wire(self.address)
        object.__setattr__(self, "address", self.address.upper())
        if not isinstance(self.control_code, int) or not 0 <= self.control_code <= 0xFF:
            raise FrameError(f"control code {self.control_code!r}: need one byte")
        object.__setattr__(self, "control_code", int(self.control_code))
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > MAX_DATA_LEN:
            raise FrameError(f"data field of {len(self.data)} bytes: L must be <= {MAX_DATA_LEN}")

    @property
    def function(self) -> int:
        """功能码, D4..D0 of the control code (compare with ``Function``)."""
        return self.control_code & FUNCTION_MASK

    @property
    def is_reply(self) -> bool:
        """D7 = 1: "由从站发出的应答帧" (sent by the meter)."""
        return bool(self.control_code & DIRECTION_REPLY)

    @property
    def is_abnormal(self) -> bool:
        """D6 = 1: "从站对异常信息的应答" (the meter answers with an error word)."""
        return bool(self.control_code & ABNORMAL_REPLY)

    @property
    def has_follow_up(self) -> bool:
        """D5 = 1: "有后续数据帧" (read the rest with 读后续数据, function 12H)."""
        return bool(self.control_code & FOLLOW_UP)


def encode_frame(frame: Frame, *, wakeup: int | None = None) -> bytes:
    """The bytes of ``frame`` on the wire, preceded by ``wakeup`` FE bytes.

    ``wakeup=None`` sends the standard's four FE before a request (D7 = 0) and
    none before a reply; meters differ in what they send, so the simulator may
    pass any count.
    """
    if wakeup is None:
        wakeup = 0 if frame.is_reply else DEFAULT_WAKEUP_COUNT
    if wakeup < 0:
        raise FrameError(f"wake-up count {wakeup} is negative")
    body = bytearray((START,))
    body += address_to_wire(frame.address)
    body += bytes((START, frame.control_code, len(frame.data)))
    body += bytes((b + DATA_OFFSET) & 0xFF for b in frame.data)
    body += bytes((checksum(body), END))
    return bytes((WAKEUP,)) * wakeup + bytes(body)


def _complete_frame_at(buf: bytes, start: int) -> tuple[int, Frame] | None:
    """The valid, complete frame starting at ``buf[start]`` or None (no errors raised)."""
    if len(buf) - start < HEADER_LEN or buf[start + 7] != START:
        return None
    length = buf[start + 9]
    end = start + OVERHEAD + length
    if length > MAX_DATA_LEN or end > len(buf):
        return None
    if buf[end - 2] != checksum(buf[start : end - 2]) or buf[end - 1] != END:
        return None
    address = _address_or_none(buf[start + 1 : start + 7])
    if address is None:
        return None
    data = bytes((b - DATA_OFFSET) & 0xFF for b in buf[start + HEADER_LEN : end - 2])
    return end, Frame(address=address, control_code=buf[start + 8], data=data)


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, Frame | None]:
    """Find the next frame in ``buf``: ``(consumed, frame)``, or ``(consumed, None)`` for "need more".

    The caller drops ``consumed`` bytes from the front of its buffer either way:
    FE wake-up bytes and garbage before a frame are consumed with it, and with
    ``None`` the consumed bytes are garbage that can never start a frame.

    Raises ``BadFrame`` (a ``FrameError``) only for a whole frame that fails:
    bad checksum, missing 16H end byte, L over 200, or an address that is not
    BCD.  ``BadFrame.consumed`` says how much to drop; a valid reply may still
    follow in the same buffer, so keep decoding after dropping it.

    A candidate ``68 .. 68`` whose length runs past the end of ``buf`` may be
    garbage that swallowed the real frame's start; if a complete valid frame
    starts later in ``buf``, that frame is returned and the false start is
    consumed as garbage, so a stray ``68`` in line noise cannot stall a reply.
    """
    data = bytes(buf)
    size = len(data)
    pos = 0
    while True:
        start = data.find(START, pos)
        if start < 0:
            return size, None
        if size - start < 8:
            return start, None
        if data[start + 7] != START:
            pos = start + 1
            continue
        if size - start < HEADER_LEN:
            return start, None
        length = data[start + 9]
        if length > MAX_DATA_LEN:
            raise BadFrame(
                f"frame at byte {start}: L={length} exceeds the standard's {MAX_DATA_LEN}",
                consumed=start + 1,
            )
        end = start + OVERHEAD + length
        if end > size:
            later = data.find(START, start + 1)
            while later >= 0:
                found = _complete_frame_at(data, later)
                if found is not None:
                    return found
                later = data.find(START, later + 1)
            return start, None
        expected = checksum(data[start : end - 2])
        if data[end - 2] != expected:
            raise BadFrame(
                f"frame at byte {start}: checksum {data[end - 2]:02X}, computed {expected:02X}",
                consumed=start + 1,
            )
        if data[end - 1] != END:
            raise BadFrame(
                f"frame at byte {start}: ends with {data[end - 1]:02X}, not 16 (L={length})",
                consumed=start + 1,
            )
        address = _address_or_none(data[start + 1 : start + 7])
        if address is None:
            raise BadFrame(
                f"frame at byte {start}: address {data[start + 1 : start + 7].hex(' ')} is not BCD",
                consumed=end,
            )
        payload = bytes((b - DATA_OFFSET) & 0xFF for b in data[start + HEADER_LEN : end - 2])
        return end, Frame(address=address, control_code=data[start + 8], data=payload)


# --- requests (master -> meter) -------------------------------------------------


def read_request(
    address: str, di: str, *, blocks: int | None = None, since: datetime | None = None
) -> Frame:
    """读数据 (C=11H): "DI0..DI3" (L=04H).

    For load records the standard adds the block count N ("DI0..DI3 N", L=05H)
    and optionally the start time ("DI0..DI3 N mmhhDDMMYY", L=0AH); ``blocks``
    and ``since`` carry them.  ``since`` is the meter's naive local time, whole
    minutes.
    """
    data = encode_di(di)
    if blocks is not None:
        if not 1 <= blocks <= 0xFF:
            raise FrameError(f"block count N={blocks}: need 1..255")
        data += bytes((blocks,))
        if since is not None:
            data += encode_value("YYMMDDhhmm", since)
    elif since is not None:
        raise FrameError("a start time needs a block count N (DI0..DI3 N mmhhDDMMYY)")
    return Frame(address=address, control_code=Function.READ_DATA, data=data)


def read_follow_up_request(address: str, di: str, seq: int) -> Frame:
    """读后续数据 (C=12H): "DI0..DI3 SEQ" (L=05H), SEQ = 帧序号 of the follow-up frame wanted."""
    if not 0 <= seq <= 0xFF:
        raise FrameError(f"frame sequence SEQ={seq}: need one byte")
    return Frame(
        address=address, control_code=Function.READ_FOLLOW_UP, data=encode_di(di) + bytes((seq,))
    )


def read_address_request() -> Frame:
    """读通信地址 (C=13H, L=00H) to AAAAAAAAAAAA: only for a bus with a single meter."""
    return Frame(address=WILDCARD_ADDRESS, control_code=Function.READ_ADDRESS)


def time_sync_request(when: datetime) -> Frame:
    """广播校时 (C=08H) to 999999999999 with "ssmmhhDDMMYY" (L=06H), ss sent first.

    ``when`` is the meter's naive local wall time; microseconds are dropped.
    The standard: "广播校时不要求应答。仅当从站的日历和时钟与主站的时差在±5min以内时执行校时命令"
    (no reply; a meter only accepts it when its clock is within +/-5 min), and
    "每天只允许校对一次" (once a day), not around midnight when the meter
    freezes: that policy is the scheduler's, not the codec's.
    """
    data = encode_value("YYMMDDhhmmss", when.replace(microsecond=0))
    return Frame(address=BROADCAST_ADDRESS, control_code=Function.BROADCAST_TIME_SYNC, data=data)


# --- replies (meter -> master), for the simulator --------------------------------


def read_reply(address: str, di: str, payload: bytes, *, more: bool = False) -> Frame:
    """读数据 normal reply: C=91H (or B1H with follow-up frames), "DI0..DI3 N1..Nm"."""
    control = DIRECTION_REPLY | Function.READ_DATA | (FOLLOW_UP if more else 0)
    return Frame(address=address, control_code=control, data=encode_di(di) + bytes(payload))


def read_follow_up_reply(
    address: str, di: str, payload: bytes, seq: int, *, more: bool = False
) -> Frame:
    """读后续数据 normal reply: C=92H (or B2H), "DI0..DI3 N1..Nm SEQ"."""
    if not 0 <= seq <= 0xFF:
        raise FrameError(f"frame sequence SEQ={seq}: need one byte")
    control = DIRECTION_REPLY | Function.READ_FOLLOW_UP | (FOLLOW_UP if more else 0)
    return Frame(address=address, control_code=control, data=encode_di(di) + bytes(payload) + bytes((seq,)))


def read_address_reply(address: str) -> Frame:
    """读通信地址 reply: C=93H, L=06H, the data field is the address A0..A5 again."""
    wire = address_to_wire(address)
    if 0xAA in wire:
        raise FrameError(f"address {address!r}: a meter answers with its real address, not wildcards")
    return Frame(address=address, control_code=DIRECTION_REPLY | Function.READ_ADDRESS, data=wire)


def error_reply(address: str, function: int, err: int) -> Frame:
    """Abnormal reply: C = C0H | function (D1H for 读数据), L=01H, the error word ERR."""
    if not 0 <= err <= 0xFF:
        raise FrameError(f"error word ERR={err}: need one byte")
    control = DIRECTION_REPLY | ABNORMAL_REPLY | (function & FUNCTION_MASK)
    return Frame(address=address, control_code=control, data=bytes((err,)))


# --- reply parsing --------------------------------------------------------------


def describe_error(err: int) -> str:
    """The error word ERR in words, every set bit, e.g. ``"no requested data"``."""
    texts = [text for bit, text in ERROR_BITS if err & bit]
    return ", ".join(texts) if texts else "no error bit set"


@dataclass(frozen=True, kw_only=True)
class ReadReply:
    """A meter's normal answer to 读数据 / 读后续数据.

    ``payload`` is the data after the identifier (offset removed, values still
    BCD low byte first); ``more`` is D5, "有后续数据帧"; ``seq`` is the 帧序号 of a
    读后续数据 reply and None for a 读数据 reply.
    """

    di: str
    payload: bytes
    more: bool
    seq: int | None = None


def parse_read_reply(
    frame: Frame, expected_address: str, expected_di: str, *, expected_seq: int | None = None
) -> ReadReply:
    """Match ``frame`` to a 读数据 request (or, with ``expected_seq``, a 读后续数据 request).

    Raises ``FrameError`` if the frame answers something else: a request frame,
    another function, another meter, another data identifier or SEQ.  Raises
    ``MeterRejected`` with ``code`` = ERR for an abnormal reply (C=D1H/D2H).
    """
    want_di = normalize_di(expected_di)
    function = Function.READ_DATA if expected_seq is None else Function.READ_FOLLOW_UP
    if not frame.is_reply:
        raise FrameError(f"control code {frame.control_code:02X}H is a master's request, not a reply")
    if frame.function != function:
        raise FrameError(
            f"control code {frame.control_code:02X}H does not answer {function.name} ({function:02X}H)"
        )
    if not address_matches(expected_address, frame.address):
        raise FrameError(f"reply from meter {frame.address}, expected {expected_address.upper()}")
    if frame.is_abnormal:
        if len(frame.data) != 1:
            raise FrameError(f"abnormal reply with L={len(frame.data)}, the standard has L=01H (ERR)")
        err = frame.data[0]
        raise MeterRejected(
            f"meter {frame.address} rejected reading {want_di}: {describe_error(err)} (ERR={err:02X}H)",
            code=err,
        )
    minimum = 4 if expected_seq is None else 5
    if len(frame.data) < minimum:
        raise FrameError(f"reply data field of {len(frame.data)} bytes, need at least {minimum}")
    di = decode_di(frame.data[:4])
    if di != want_di:
        raise FrameError(f"reply for data identifier {di}, expected {want_di}")
    if expected_seq is None:
        return ReadReply(di=di, payload=frame.data[4:], more=frame.has_follow_up)
    seq = frame.data[-1]
    if seq != expected_seq:
        raise FrameError(f"follow-up reply SEQ={seq}, expected {expected_seq}")
    return ReadReply(di=di, payload=frame.data[4:-1], more=frame.has_follow_up, seq=seq)


def parse_read_address_reply(frame: Frame) -> str:
    """The meter's nameplate address from a 读通信地址 reply (C=93H, data = A0..A5)."""
    if not frame.is_reply or frame.function != Function.READ_ADDRESS:
        raise FrameError(f"control code {frame.control_code:02X}H is not a read-address reply (93H)")
    if frame.is_abnormal:
        err = frame.data[0] if len(frame.data) == 1 else None
        text = describe_error(err) if err is not None else "no error word"
        raise MeterRejected(f"meter {frame.address} rejected reading its address: {text}", code=err)
    address = _address_or_none(frame.data)
    if address is None or "A" in address:
        raise FrameError(f"read-address reply data {frame.data.hex(' ')} is not a 6-byte BCD address")
    if address != frame.address:
        raise FrameError(f"read-address reply from {frame.address} carries address {address}")
    return address


# --- values ---------------------------------------------------------------------

ValueKind = Literal["decimal", "datetime", "date", "time", "address"]
Value = Decimal | datetime | date | time | str


@dataclass(frozen=True, kw_only=True)
class ValueFormat:
    """A data format of appendix A ("数据格式"), e.g. ``XXXXXX.XX`` = 8 BCD digits, 2 decimals.

    ``signed`` is the default sign convention of the format: the standard's
    notes put a sign in the top bit ("最高位表示方向，0正，1负") of currents,
    powers and power factors; combined energies share ``XXXXXX.XX`` with the
    unsigned forward/reverse energies, so the table in ``dis`` passes
    ``signed`` per identifier.
    """

    name: str
    length: int
    kind: ValueKind
    decimals: int = 0
    signed: bool = False


def _number(name: str, *, signed: bool = False) -> ValueFormat:
    digits = name.count("X")
    decimals = len(name.partition(".")[2])
    return ValueFormat(name=name, length=digits // 2, kind="decimal", decimals=decimals, signed=signed)


FORMATS: Final[Mapping[str, ValueFormat]] = MappingProxyType(
    {
        fmt.name: fmt
        for fmt in (
            _number("XXXXXX.XX"),  # energy, kWh / kvarh, 4 bytes
            _number("XXX.X"),  # voltage, V, 2 bytes
            _number("XXX.XXX", signed=True),  # current, A, 3 bytes, "电流最高位表示方向"
            _number("XX.XXXX", signed=True),  # power, kW / kvar / kVA, 3 bytes
            _number("X.XXX", signed=True),  # power factor, 2 bytes
            _number("XX.XX"),  # frequency, Hz, 2 bytes (DL/T 645-1997: current A, reactive power kvar)
            # DL/T 645-1997 voltage "XXX" V: whole volts in 2 bytes (4 BCD digits, e.g. 20 02 -> 220 V)
            ValueFormat(name="XXX", length=2, kind="decimal"),
            ValueFormat(name="YYMMDDhhmm", length=5, kind="datetime"),
            ValueFormat(name="YYMMDDhhmmss", length=6, kind="datetime"),
            ValueFormat(name="YYMMDDWW", length=4, kind="date"),  # WW: 0 = Sunday
            ValueFormat(name="hhmmss", length=3, kind="time"),
            ValueFormat(name="NNNNNNNNNNNN", length=6, kind="address"),
        )
    }
)

_CENTURY = 2000  # YY: two digits; DL/T 645-2007 meters live in 2000..2099


def _format(fmt: str) -> ValueFormat:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown DL/T 645 value format {fmt!r}; known: {', '.join(FORMATS)}") from None


def _bcd_digits(raw_high_first: bytes, fmt: str) -> str:
    digits = raw_high_first.hex()
    if not digits.isdigit():
        raise FrameError(f"{fmt}: {raw_high_first.hex(' ')} (high byte first) is not BCD")
    return digits


def decode_value(fmt: str, payload: bytes, *, signed: bool | None = None) -> Value:
    """Decode one data item: BCD, "先传送低位字节" (low byte first), as an exact value.

    Numbers become ``Decimal`` with the format's decimals (``"XXXXXX.XX"``,
    ``56 34 12 00`` -> ``Decimal("1234.56")``); ``signed`` overrides the
    format's sign convention (top bit of the highest byte, 1 = negative).
    ``YYMMDDhhmm``/``YYMMDDhhmmss`` become naive ``datetime`` (meter local
    time), ``YYMMDDWW`` a ``date``, ``hhmmss`` a ``time``, ``NNNNNNNNNNNN`` the
    12-digit string.  Raises ``FrameError`` for a wrong length, a nibble over 9
    or an impossible date.

    The weekday WW (0 = Sunday) is checked to be 0..6 but not against the date:
    meters keep it as a separately written register, and a wrong weekday is the
    meter's clock setting, not a frame fault.
    """
    spec = _format(fmt)
    raw = bytes(payload)
    if len(raw) != spec.length:
        raise FrameError(f"{fmt}: need {spec.length} bytes, got {len(raw)} ({raw.hex(' ')})")
    high_first = bytes(reversed(raw))
    if spec.kind == "decimal":
        negative = False
        if spec.signed if signed is None else signed:
            negative = bool(high_first[0] & 0x80)
            high_first = bytes((high_first[0] & 0x7F,)) + high_first[1:]
        digits = _bcd_digits(high_first, fmt)
        return Decimal((int(negative), tuple(int(d) for d in digits), -spec.decimals))
    digits = _bcd_digits(high_first, fmt)
    if spec.kind == "address":
        return digits
    fields = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    try:
        if spec.kind == "datetime":
            year, month, day, hour, minute, *second = fields
            return datetime(_CENTURY + year, month, day, hour, minute, *second)
        if spec.kind == "date":
            year, month, day, weekday = fields
            if weekday > 6:
                raise FrameError(f"{fmt}: weekday {weekday} is not 0 (Sunday)..6")
            return date(_CENTURY + year, month, day)
        hour, minute, second = fields
        return time(hour, minute, second)
    except ValueError as exc:
        raise FrameError(f"{fmt}: {digits} is not a valid {spec.kind}: {exc}") from exc


def encode_value(fmt: str, value: Value | int, *, signed: bool | None = None) -> bytes:
    """The inverse of ``decode_value``: ``value`` as BCD, low byte first (no 33H offset).

    Exact or nothing: raises ``FrameError`` when the value does not fit the
    format (too many decimals, out of range, negative for an unsigned item,
    seconds for ``YYMMDDhhmm``, a time zone, a year outside 2000..2099) and
    ``TypeError`` for a value of the wrong type (floats are refused: use
    ``Decimal``).
    """
    spec = _format(fmt)
    if spec.kind == "decimal":
        return _encode_decimal(spec, value, spec.signed if signed is None else signed)
    if spec.kind == "address":
        if not isinstance(value, str):
            raise TypeError(f"{fmt}: need a 12-digit string, got {type(value).__name__}")
        if len(value) != 12 or not (value.isascii() and value.isdigit()):
            raise FrameError(f"{fmt}: {value!r} is not 12 decimal digits")
        return bytes(reversed(bytes.fromhex(value)))
    if spec.kind == "datetime":
        if not isinstance(value, datetime):
            raise TypeError(f"{fmt}: need a datetime, got {type(value).__name__}")
        if value.tzinfo is not None:
            raise FrameError(f"{fmt}: {value.isoformat()} has a time zone; meters keep naive local time")
        fields = [value.year - _CENTURY, value.month, value.day, value.hour, value.minute]
        if spec.length == 6:
            fields.append(value.second)
        elif value.second:
            raise FrameError(f"{fmt}: {value.isoformat()} has seconds, the format has none")
        if value.microsecond:
            raise FrameError(f"{fmt}: {value.isoformat()} has microseconds, the format has none")
        year = value.year
    elif spec.kind == "date":
        if isinstance(value, datetime) or not isinstance(value, date):
            raise TypeError(f"{fmt}: need a date, got {type(value).__name__}")
        # WW: 0 = Sunday ("其中0代表星期天"); Python's weekday() has Monday = 0
        fields = [value.year - _CENTURY, value.month, value.day, (value.weekday() + 1) % 7]
        year = value.year
    else:
        if not isinstance(value, time):
            raise TypeError(f"{fmt}: need a time, got {type(value).__name__}")
        if value.tzinfo is not None or value.microsecond:
            raise FrameError(f"{fmt}: {value.isoformat()} has a time zone or microseconds")
        fields = [value.hour, value.minute, value.second]
        year = _CENTURY  # no year in hhmmss
    if not _CENTURY <= year < _CENTURY + 100:
        raise FrameError(f"{fmt}: year {year} does not fit YY (2000..2099)")
    return bytes(reversed(bytes.fromhex("".join(f"{f:02d}" for f in fields))))


def _encode_decimal(spec: ValueFormat, value: object, signed: bool) -> bytes:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{spec.name}: need a Decimal or int, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise FrameError(f"{spec.name}: {number} is not a finite number")
    scaled = number.scaleb(spec.decimals)
    if scaled != scaled.to_integral_value():
        raise FrameError(f"{spec.name}: {number} has more than {spec.decimals} decimals")
    negative = number.is_signed()  # keeps -0 of a signed item: decode/encode stay byte-exact
    if negative and not signed:
        if number != 0:
            raise FrameError(f"{spec.name}: {number} is negative, the item is unsigned")
        negative = False
    digits = 2 * spec.length
    # signed: the top bit is the sign, so the highest digit stays <= 7 (e.g. 0.000..799.999)
    limit = 8 * 10 ** (digits - 1) if signed else 10**digits
    magnitude = int(abs(scaled))
    if magnitude >= limit:
        raise FrameError(f"{spec.name}: {number} is out of range")
    high_first = bytearray(bytes.fromhex(f"{magnitude:0{digits}d}"))
    if negative:
        high_first[0] |= 0x80
    return bytes(reversed(high_first))
