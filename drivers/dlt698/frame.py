"""DL/T 698.45-2017 link layer: frames, server addresses, HCS/FCS, link segmentation. No I/O.

Frame format (DL/T 698.45 clause 7.1 "帧结构")::

    68H | L (2) | C | AF | SA (1..16) | CA | HCS (2) | APDU (link user data) | FCS (2) | 16H

* 长度域 L: "bit0~bit13 有效，是传输帧中除起始字符和结束字符之外的帧字节数；
  bit14 为帧数据长度单位 (0 表示字节，1 表示千字节)；bit15 保留" (14 bits of
  length: the frame's bytes without 68H and 16H; bit 14 the length unit; bit 15
  reserved).  Sent low byte first.
* 控制域 C: "bit7 传输方向位 DIR (0 客户机发出, 1 服务器发出); bit6 启动标志位 PRM
  (1 客户机发起, 0 服务器发起); bit5 分帧标志位 (1 链路用户数据为 APDU 片段);
  bit3 扰码标志位 SC; bit0~bit2 功能码 (1 链路管理, 3 用户数据)".
* 地址域 AF: "bit7~bit6 地址类型 (0 单地址, 1 通配地址, 2 组地址, 3 广播地址);
  bit5~bit4 逻辑地址; bit3~bit0 地址长度 (0..15 表示 1..16 字节)"; SA 服务器地址
  "采用 BCD 码，低字节在前", a wildcard nibble is AH; CA 客户机地址 (0: 不关注).
* 帧头校验 HCS: "对帧头部分除起始字符和 HCS 本身之外的所有字节的校验"; 帧校验
  FCS: "对整帧除起始字符、结束字符和 FCS 本身之外的所有字节的校验", both the
  CRC of RFC 1662 (CRC-16/X.25), low byte first: the same FCS-16 as DLMS HDLC,
  so the one implementation in ``meterlink.drivers.dlms.hdlc`` is reused.
* 分帧 (clause 7.2.2): with bit 5 of C set, the link user data starts with a
  2-byte 分帧格式域 (low byte first): "bit0~bit11 分帧传输序号 (0~4095 循环);
  bit14~bit15 分帧类型: 00 起始帧, 01 最后帧, 10 确认帧, 11 中间帧".  The
  receiver confirms each segment with a 确认帧 carrying its sequence number.

Field reality (the reason ``decode`` hunts): meters and RS-485 adapters send FE
wake-up bytes before a frame ("前导字节 FEH") and line noise adds garbage, so a
frame is found by hunting for a 68H whose header passes its HCS, never by
assuming it starts at byte 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from meterlink.core.errors import BadFrame, FrameError
from meterlink.drivers.crc import crc16_x25 as fcs16  # CRC-16/X.25, the FCS of DLMS HDLC too

START: Final = 0x68
END: Final = 0x16
WAKEUP: Final = 0xFE
DEFAULT_WAKEUP_COUNT: Final = 4
MAX_LENGTH: Final = 0x3FFF  # 14 bits of L
LENGTH_UNIT_KBYTE: Final = 0x4000  # L bit 14

DIR_SERVER: Final = 0x80
PRM_CLIENT: Final = 0x40
SEGMENTED: Final = 0x20
SCRAMBLED: Final = 0x08
FUNCTION_MASK: Final = 0x07

SEQUENCE_MASK: Final = 0x0FFF


class Function(enum.IntEnum):
    """功能码 (bits 0..2 of C)."""

    LINK_MANAGEMENT = 1  # 链路管理: 登录, 心跳, 退出登录
    USER_DATA = 3  # 用户数据: 应用连接管理及数据交换服务


class AddressType(enum.IntEnum):
    """地址类型 (AF bits 7..6)."""

    SINGLE = 0  # 单地址
    WILDCARD = 1  # 通配地址
    GROUP = 2  # 组地址
    BROADCAST = 3  # 广播地址


class SegmentType(enum.IntEnum):
    """分帧类型 (bits 14..15 of the segment header)."""

    FIRST = 0  # 起始帧
    LAST = 1  # 最后帧
    CONFIRM = 2  # 确认帧
    MIDDLE = 3  # 中间帧


# --- server address -----------------------------------------------------------------

_ADDRESS_DIGITS = frozenset("0123456789AF")


@dataclass(frozen=True, kw_only=True)
class ServerAddress:
    """服务器地址 SA with its AF bits: ``address`` is the nameplate string, e.g. ``"000000000001"``.

    The nameplate is printed high digit first; the wire carries it "低字节在前"
    (low byte first), so ``"123456789012"`` goes out as ``12 90 78 56 34 12``.
    Each character is a BCD digit, ``A`` (通配, wildcard) or ``F`` (filler of an
    odd digit count).  ``logical`` is AF bits 5..4; in the 2017 edition bit 5 set
    means the first SA byte is an extended logical address, which stays part of
    ``address`` here (the last two characters of the nameplate string).
    """

    address: str
    type: AddressType = AddressType.SINGLE
    logical: int = 0

    def __post_init__(self) -> None:
        text = self.address.upper() if isinstance(self.address, str) else ""
        if not 2 <= len(text) <= 32 or len(text) % 2 or not set(text) <= _ADDRESS_DIGITS:
            raise FrameError(
                f"server address {self.address!r}: need 2..32 characters (1..16 bytes) of BCD digits, "
                "A (wildcard) or F (filler), nameplate order, e.g. '000000000001'"
            )
        object.__setattr__(self, "address", text)
        object.__setattr__(self, "type", AddressType(self.type))
        if not 0 <= self.logical <= 3:
            raise FrameError(f"logical address {self.logical}: AF bits 5..4 hold 0..3")

    def to_wire(self) -> bytes:
        """AF followed by SA (low byte first)."""
        sa = bytes(reversed(bytes.fromhex(self.address)))
        af = (self.type << 6) | (self.logical << 4) | (len(sa) - 1)
        return bytes((af,)) + sa

    @classmethod
    def from_wire(cls, af: int, sa: bytes) -> ServerAddress:
        text = bytes(reversed(sa)).hex().upper()
        if not set(text) <= _ADDRESS_DIGITS:
            raise FrameError(f"server address bytes {sa.hex(' ')} are not BCD/A/F digits")
        return cls(address=text, type=AddressType(af >> 6), logical=(af >> 4) & 3)

    @classmethod
    def broadcast(cls) -> ServerAddress:
        """广播地址: AF type 3, SA AAH (one byte of wildcards)."""
        return cls(address="AA", type=AddressType.BROADCAST)

    @classmethod
    def wildcard(cls, length: int = 6) -> ServerAddress:
        """通配地址 AAAAAAAAAAAA: reaches the single meter on a point-to-point link."""
        return cls(address="AA" * length, type=AddressType.WILDCARD)

    def matches(self, actual: ServerAddress) -> bool:
        """Whether a reply from ``actual`` answers a request sent to this address (A matches any digit)."""
        if self.type == AddressType.BROADCAST:
            return True
        if len(self.address) != len(actual.address):
            return False
        return all(want in ("A", got) for want, got in zip(self.address, actual.address, strict=True))


# --- segments -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Segment:
    """分帧格式域: sequence number 0..4095 and the segment type."""

    sequence: int
    type: SegmentType

    def __post_init__(self) -> None:
        if not 0 <= self.sequence <= SEQUENCE_MASK:
            raise FrameError(f"segment sequence {self.sequence}: need 0..4095")
        object.__setattr__(self, "type", SegmentType(self.type))

    def to_bytes(self) -> bytes:
        return (self.sequence | (self.type << 14)).to_bytes(2, "little")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Segment:
        if len(raw) < 2:
            raise FrameError("segmented frame without its 2-byte 分帧格式域")
        word = int.from_bytes(raw[:2], "little")
        if word & 0x3000:
            raise FrameError(f"segment header {raw[:2].hex(' ')}: reserved bits 12..13 are set")
        return cls(sequence=word & SEQUENCE_MASK, type=SegmentType(word >> 14))


# --- frames ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One link frame.  ``user_data`` is the link user data: the APDU, or with ``segmented``
    the 分帧格式域 followed by an APDU fragment (see ``segment`` and ``fragment``)."""

    server: ServerAddress
    client_address: int = 0
    control: int = PRM_CLIENT | Function.USER_DATA
    user_data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.client_address <= 0xFF:
            raise FrameError(f"client address CA={self.client_address}: need one byte")
        if not 0 <= self.control <= 0xFF:
            raise FrameError(f"control C={self.control}: need one byte")
        object.__setattr__(self, "user_data", bytes(self.user_data))
        if self.segmented:
            Segment.from_bytes(self.user_data)

    @property
    def from_server(self) -> bool:
        """DIR = 1: "由服务器发出"."""
        return bool(self.control & DIR_SERVER)

    @property
    def client_initiated(self) -> bool:
        """PRM = 1: the transaction was started by the client (a request or its response)."""
        return bool(self.control & PRM_CLIENT)

    @property
    def segmented(self) -> bool:
        return bool(self.control & SEGMENTED)

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def segment(self) -> Segment | None:
        return Segment.from_bytes(self.user_data) if self.segmented else None

    @property
    def fragment(self) -> bytes:
        """The APDU (or APDU fragment) without the segment header."""
        return self.user_data[2:] if self.segmented else self.user_data


def _header(frame: Frame, length: int) -> bytes:
    return length.to_bytes(2, "little") + bytes((frame.control,)) + frame.server.to_wire() + bytes(
        (frame.client_address,)
    )


def encode_frame(frame: Frame, *, wakeup: int | None = None) -> bytes:
    """The bytes of ``frame`` on the wire, after ``wakeup`` FE bytes (default: 4 before a
    client's frame, none before a server's)."""
    if wakeup is None:
        wakeup = 0 if frame.from_server else DEFAULT_WAKEUP_COUNT
    if wakeup < 0:
        raise FrameError(f"wake-up count {wakeup} is negative")
    sa_len = len(frame.server.address) // 2
    length = 2 + 1 + 1 + sa_len + 1 + 2 + len(frame.user_data) + 2
    if length > MAX_LENGTH:
        raise FrameError(f"frame of {length} bytes exceeds L's 14 bits ({MAX_LENGTH}); segment the APDU")
    head = _header(frame, length)
    head += fcs16(head)
    body = head + frame.user_data
    return bytes((WAKEUP,)) * wakeup + bytes((START,)) + body + fcs16(body) + bytes((END,))


def _header_at(data: bytes, start: int) -> tuple[int, int] | None:
    """(header length incl. HCS, declared total length) of a candidate at ``start``; None: need more."""
    if len(data) - start < 5:
        return None
    sa_len = (data[start + 4] & 0x0F) + 1
    header_end = start + 1 + 2 + 1 + 1 + sa_len + 1 + 2  # 68 L C AF SA CA HCS
    return header_end, int.from_bytes(data[start + 1 : start + 3], "little")


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, Frame | None]:
    """Find the next frame in ``buf``: ``(consumed, frame)``, or ``(consumed, None)`` for "need more".

    FE wake-up bytes and garbage before a frame are consumed with it.  A 68H
    whose header fails its HCS is garbage and skipped, unless the whole declared
    frame is there and ends with 16H: then ``BadFrame`` names the HCS.  A frame
    whose header is good but whose FCS or end byte is wrong raises ``BadFrame``.
    ``BadFrame.consumed`` says how much to drop before decoding again.
    """
    data = bytes(buf)
    size = len(data)
    pos = 0
    while True:
        start = data.find(START, pos)
        if start < 0:
            return size, None
        found = _header_at(data, start)
        if found is None or found[0] > size:
            return start, None
        header_end, l_field = found
        if l_field & 0x8000 or l_field & LENGTH_UNIT_KBYTE:
            pos = start + 1  # bit 15 reserved; kilobyte frames do not occur on meter links: garbage
            continue
        total = start + 1 + (l_field & MAX_LENGTH) + 1
        hcs_ok = fcs16(data[start + 1 : header_end - 2]) == data[header_end - 2 : header_end]
        if not hcs_ok or total < header_end + 3:
            if hcs_ok or total > size or total < header_end or data[total - 1] != END:
                pos = start + 1
                continue
            raise BadFrame(
                f"frame at byte {start}: header check HCS {data[header_end - 2 : header_end].hex(' ')} is wrong "
                f"(computed {fcs16(data[start + 1 : header_end - 2]).hex(' ')})",
                consumed=start + 1,
            )
        if total > size:
            return start, None
        if data[total - 1] != END:
            raise BadFrame(f"frame at byte {start}: ends with {data[total - 1]:02X}, not 16 (L={l_field})",
                           consumed=start + 1)
        fcs = fcs16(data[start + 1 : total - 3])
        if fcs != data[total - 3 : total - 1]:
            raise BadFrame(
                f"frame at byte {start}: frame check FCS {data[total - 3 : total - 1].hex(' ')} is wrong "
                f"(computed {fcs.hex(' ')})",
                consumed=start + 1,
            )
        sa_end = header_end - 3
        server = ServerAddress.from_wire(data[start + 4], data[start + 5 : sa_end])
        try:
            frame = Frame(server=server, client_address=data[sa_end], control=data[start + 3],
                          user_data=data[header_end : total - 3])
        except FrameError as exc:
            raise BadFrame(f"frame at byte {start}: {exc}", consumed=total) from exc
        return total, frame


# --- requests and segmentation -----------------------------------------------------------


def request(server: ServerAddress, apdu: bytes, *, client_address: int = 0) -> Frame:
    """A client's user-data frame (C=43H: DIR=0, PRM=1, 用户数据) carrying ``apdu``."""
    return Frame(server=server, client_address=client_address, control=PRM_CLIENT | Function.USER_DATA,
                 user_data=apdu)


def response(server: ServerAddress, apdu: bytes, *, client_address: int = 0) -> Frame:
    """A server's answer to a client's request (C=C3H: DIR=1, PRM=1, 用户数据)."""
    return Frame(server=server, client_address=client_address,
                 control=DIR_SERVER | PRM_CLIENT | Function.USER_DATA, user_data=apdu)


def split(template: Frame, apdu: bytes, max_user_data: int) -> list[Frame]:
    """``apdu`` as link segments of at most ``max_user_data`` bytes of fragment each (first, middle.., last);
    a single unsegmented frame when it fits."""
    if max_user_data < 1:
        raise FrameError(f"segment size {max_user_data}: need at least one byte")
    if len(apdu) <= max_user_data:
        return [Frame(server=template.server, client_address=template.client_address,
                      control=template.control & ~SEGMENTED, user_data=apdu)]
    pieces = [apdu[i : i + max_user_data] for i in range(0, len(apdu), max_user_data)]
    frames = []
    for n, piece in enumerate(pieces):
        kind = SegmentType.FIRST if n == 0 else SegmentType.LAST if n == len(pieces) - 1 else SegmentType.MIDDLE
        header = Segment(sequence=n & SEQUENCE_MASK, type=kind).to_bytes()
        frames.append(Frame(server=template.server, client_address=template.client_address,
                            control=template.control | SEGMENTED, user_data=header + piece))
    return frames


def confirm(received: Frame) -> Frame:
    """The 确认帧 a receiver sends for segment ``received`` (same sequence number, opposite direction)."""
    segment = received.segment
    if segment is None:
        raise FrameError("only a segmented frame is confirmed")
    control = (received.control ^ DIR_SERVER) | SEGMENTED
    header = Segment(sequence=segment.sequence, type=SegmentType.CONFIRM).to_bytes()
    return Frame(server=received.server, client_address=received.client_address, control=control,
                 user_data=header)


class Reassembler:
    """Collects link segments into the whole APDU (clause 7.2.2 "分帧传输").

    ``accept(frame)`` returns the APDU once the last segment arrives, ``None``
    before; an unsegmented frame's APDU is returned at once.  A segment out of
    sequence, a middle or last segment without a first, or a confirmation
    where data was expected raises ``FrameError``.  ``max_apdu`` bounds the
    memory a misbehaving meter can make us hold.
    """

    def __init__(self, *, max_apdu: int = 65536) -> None:
        self.max_apdu = max_apdu
        self._parts: list[bytes] = []
        self._next: int | None = None

    @property
    def active(self) -> bool:
        return self._next is not None

    def reset(self) -> None:
        self._parts, self._next = [], None

    def accept(self, frame: Frame) -> bytes | None:
        segment = frame.segment
        if segment is None:
            if self.active:
                self.reset()
                raise FrameError("unsegmented frame while a segmented APDU was being received")
            return frame.user_data
        if segment.type == SegmentType.CONFIRM:
            raise FrameError(f"confirmation of segment {segment.sequence} where a data segment was expected")
        if segment.type == SegmentType.FIRST:
            self.reset()
        elif self._next is None:
            raise FrameError(f"{segment.type.name.lower()} segment {segment.sequence} without a first segment")
        elif segment.sequence != self._next:
            expected = self._next
            self.reset()
            raise FrameError(f"segment {segment.sequence} out of sequence, expected {expected}")
        self._parts.append(frame.fragment)
        if sum(map(len, self._parts)) > self.max_apdu:
            self.reset()
            raise FrameError(f"segmented APDU longer than {self.max_apdu} bytes")
        if segment.type == SegmentType.LAST:
            apdu = b"".join(self._parts)
            self.reset()
            return apdu
        self._next = (segment.sequence + 1) & SEQUENCE_MASK
        return None
