"""HDLC frames of IEC 62056-46 (DLMS/COSEM on serial lines and on TCP without the wrapper), no I/O.

dlms-cosem has HDLC frames, but drops zero address bytes (a 4-byte server
address such as logical 1 / physical 1234 comes out as 3 bytes), cannot parse a
client-to-server frame whose server address exceeds 127, has no DM, FRMR or
RNR, and no parameter negotiation.  This module is the whole MAC sublayer the
gateway and the simulated meter need: frame format type 3, 1-, 2- and 4-byte
addresses, HCS and FCS, the SNRM/UA information field, segmentation.

References: IEC 62056-46:2002+A1:2006 (DLMS UA 1000-2 "Green Book" ed. 8,
chapter 8 "Using the connection-oriented HDLC based data link layer"), ISO/IEC
13239 (frame format type 3, FCS-16).

Frame (Green Book 8.4.1.1)::

    7E | format (2) | destination (1/2/4) | source (1/2/4) | control | HCS (2) | information | FCS (2) | 7E

The format field is ``1010 S LLLLLLLLLLL``: type 3, the segmentation bit, and
the frame length without the flags.  HCS and FCS are CRC-16/X.25 (ISO 13239
FCS-16), least significant byte first; a frame without information has no HCS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterlink.core.errors import BadFrame, FrameError
from meterlink.drivers.crc import crc16_x25

FLAG = 0x7E
LLC_REQUEST = b"\xe6\xe6\x00"   # Green Book 8.4.5.3: LLC header client -> server (LSAPs E6 E6, quality 0)
LLC_RESPONSE = b"\xe6\xe7\x00"  # server -> client (source LSAP E7: response)
DEFAULT_MAX_INFO = 128          # Green Book 8.4.5.4.3: default maximum information field length
MAX_FRAME_LENGTH = 0x7FF        # 11 bits of frame length


# --- FCS-16 ---------------------------------------------------------------------------


def fcs16(data: bytes) -> bytes:
    """CRC-16/X.25 (ISO 13239 FCS-16: reflected 0x1021, init and final xor 0xFFFF), low byte first on the wire."""
    return crc16_x25(data)


# --- addresses ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address: the client SAP (1 byte) or a server's upper (logical) and lower (physical) address.

    Green Book 8.4.2.2: "The client address shall always be expressed on one
    byte"; the server address is the upper HDLC address (logical device),
    optionally followed by the lower one (physical device on a multi-drop),
    on 1, 2 or 4 bytes in all.  Every byte carries 7 address bits; the low
    bit marks the last byte.
    """

    logical: int
    physical: int | None = None
    size: int = 0  # 1, 2 or 4 bytes; 0: the smallest that fits

    def __post_init__(self) -> None:
        size = self.size or self.smallest_size()
        object.__setattr__(self, "size", size)
        if size not in (1, 2, 4):
            raise ValueError(f"an HDLC address has 1, 2 or 4 bytes, not {size}")
        limit = 0x7F if size < 4 else 0x3FFF
        if not 0 <= self.logical <= limit:
            raise ValueError(f"logical address {self.logical} does not fit a {size}-byte HDLC address (0-{limit})")
        if size == 1 and self.physical is not None:
            raise ValueError("a 1-byte HDLC address has no physical (lower) address")
        if size > 1 and not 0 <= (self.physical or 0) <= limit:
            raise ValueError(f"physical address {self.physical} does not fit a {size}-byte HDLC address (0-{limit})")

    def smallest_size(self) -> int:
        if self.physical is None:
            return 1 if self.logical <= 0x7F else 4
        return 2 if self.logical <= 0x7F and self.physical <= 0x7F else 4

    def to_bytes(self) -> bytes:
        if self.size == 1:
            return bytes([(self.logical << 1) | 1])
        lower = self.physical or 0
        if self.size == 2:
            return bytes([self.logical << 1, (lower << 1) | 1])
        return bytes([(self.logical >> 7) << 1, (self.logical & 0x7F) << 1, (lower >> 7) << 1,
                      ((lower & 0x7F) << 1) | 1])

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcAddress:
        n = len(raw)
        values = [b >> 1 for b in raw]
        if n == 1:
            return cls(values[0], None, 1)
        if n == 2:
            return cls(values[0], values[1], 2)
        if n == 4:
            return cls((values[0] << 7) | values[1], (values[2] << 7) | values[3], 4)
        raise ValueError(f"an HDLC address has 1, 2 or 4 bytes, not {n}")

    def __str__(self) -> str:
        if self.physical is None:
            return str(self.logical)
        return f"{self.logical}/{self.physical}"


def _split_address(buf: bytes, pos: int, end: int) -> int:
    """Length of the address starting at ``pos`` (bytes up to the one with the low bit set)."""
    for i in range(pos, min(pos + 4, end)):
        if buf[i] & 1:
            n = i - pos + 1
            if n == 3:
                raise ValueError("a 3-byte HDLC address")
            return n
    raise ValueError("an HDLC address longer than 4 bytes")


# --- frames ---------------------------------------------------------------------------


class Kind(enum.Enum):
    """Frame types and their control field patterns (Green Book 8.4.3.2, Table 10)."""

    I = "I"          # noqa: E741  -- the standard's name: information frame
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    DISC = "DISC"
    UA = "UA"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


_UNNUMBERED = {Kind.SNRM: 0x83, Kind.DISC: 0x43, Kind.UA: 0x63, Kind.DM: 0x0F, Kind.FRMR: 0x87, Kind.UI: 0x03}
_UNNUMBERED_BY_CODE = {v: k for k, v in _UNNUMBERED.items()}
POLL_FINAL = 0x10


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One HDLC frame.  ``ssn``/``rsn`` are N(S)/N(R) where the frame type has them (I: both, RR/RNR: rsn)."""

    kind: Kind
    destination: HdlcAddress
    source: HdlcAddress
    poll_final: bool = True
    ssn: int = 0
    rsn: int = 0
    segmented: bool = False
    info: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.ssn <= 7 and 0 <= self.rsn <= 7):
            raise ValueError("HDLC sequence numbers are 0-7")
        if self.info and self.kind in (Kind.RR, Kind.RNR):
            raise ValueError(f"a {self.kind.value} frame has no information field")

    @property
    def control(self) -> int:
        pf = POLL_FINAL if self.poll_final else 0
        if self.kind is Kind.I:
            return (self.rsn << 5) | pf | (self.ssn << 1)
        if self.kind is Kind.RR:
            return (self.rsn << 5) | pf | 0x01
        if self.kind is Kind.RNR:
            return (self.rsn << 5) | pf | 0x05
        return _UNNUMBERED[self.kind] | pf


def encode_frame(frame: Frame) -> bytes:
    """The frame on the wire, flags included."""
    dst, src = frame.destination.to_bytes(), frame.source.to_bytes()
    length = 2 + len(dst) + len(src) + 1 + 2 + (2 + len(frame.info) if frame.info else 0)
    if length > MAX_FRAME_LENGTH:
        raise ValueError(f"HDLC frame of {length} bytes exceeds the 11-bit length field")
    fmt = 0xA000 | (0x0800 if frame.segmented else 0) | length
    header = fmt.to_bytes(2, "big") + dst + src + bytes([frame.control])
    body = header + (fcs16(header) + frame.info if frame.info else b"")
    return bytes([FLAG]) + body + fcs16(body) + bytes([FLAG])


def _parse_control(c: int) -> tuple[Kind, int, int]:
    if c & 0x01 == 0:
        return Kind.I, (c >> 1) & 7, (c >> 5) & 7
    if c & 0x0F == 0x01:
        return Kind.RR, 0, (c >> 5) & 7
    if c & 0x0F == 0x05:
        return Kind.RNR, 0, (c >> 5) & 7
    kind = _UNNUMBERED_BY_CODE.get(c & ~POLL_FINAL & 0xFF)
    if kind is None:
        raise ValueError(f"unknown HDLC control field {c:#04x}")
    return kind, 0, 0


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, Frame | None]:
    """Find the next frame in ``buf``: ``(consumed, frame)``, or ``(consumed, None)`` for "need more".

    The caller drops ``consumed`` bytes either way.  Garbage and repeated
    flags before a frame are consumed with it.  A frame's closing flag may be
    the next frame's opening flag (Green Book 8.4.1.1: "the closing flag may
    also serve as the opening flag of the next frame"), so it is left in the
    buffer.  Raises :class:`BadFrame` only for a whole frame that fails a
    check (HCS, FCS, closing flag, addresses, control field); its ``consumed``
    says how much to drop, and a good frame may follow.
    """
    data = bytes(buf)
    size = len(data)
    pos = 0
    while True:
        start = data.find(FLAG, pos)
        if start < 0:
            return size, None
        if start + 1 >= size:
            return start, None
        if data[start + 1] == FLAG:
            pos = start + 1
            continue
        if data[start + 1] & 0xF0 != 0xA0:  # not frame format type 3: a flag in the noise
            pos = start + 1
            continue
        if start + 3 > size:
            return start, None
        length = ((data[start + 1] & 0x07) << 8) | data[start + 2]
        end = start + 1 + length  # index of the closing flag
        if length < 7:
            raise BadFrame(f"HDLC frame length {length} is too short", consumed=start + 1)
        if end >= size:
            # maybe line noise that looks like a frame start: a complete good frame later in the buffer wins
            later = _complete_frame_after(data, start + 1)
            return later if later is not None else (start, None)
        if data[end] != FLAG:
            raise BadFrame(f"HDLC frame of length {length} has no closing flag (got {data[end]:#04x})",
                           consumed=start + 1)
        try:
            frame = _parse(data[start + 1:end])
        except BadFrame as exc:
            raise BadFrame(str(exc), consumed=end) from None
        return end, frame


def _complete_frame_after(data: bytes, pos: int) -> tuple[int, Frame] | None:
    """The first complete, valid frame starting at a flag at or after ``pos``: ``(consumed, frame)``."""
    while True:
        start = data.find(FLAG, pos)
        if start < 0 or start + 3 > len(data):
            return None
        if data[start + 1] & 0xF0 == 0xA0:
            end = start + 1 + (((data[start + 1] & 0x07) << 8) | data[start + 2])
            if end < len(data) and data[end] == FLAG:
                try:
                    return end, _parse(data[start + 1:end])
                except BadFrame:
                    pass
        pos = start + 1


def _parse(body: bytes) -> Frame:
    """``body`` is format .. FCS (no flags)."""
    if fcs16(body[:-2]) != body[-2:]:
        raise BadFrame(f"HDLC FCS error: computed {fcs16(body[:-2]).hex()}, frame has {body[-2:].hex()}", consumed=0)
    segmented = bool(body[0] & 0x08)
    end = len(body) - 2
    try:
        dn = _split_address(body, 2, end)
        sn = _split_address(body, 2 + dn, end)
        dst = HdlcAddress.from_bytes(body[2:2 + dn])
        src = HdlcAddress.from_bytes(body[2 + dn:2 + dn + sn])
        cpos = 2 + dn + sn
        if cpos >= end:
            raise ValueError("frame ends before the control field")
        kind, ssn, rsn = _parse_control(body[cpos])
    except ValueError as exc:
        raise BadFrame(f"bad HDLC frame: {exc}", consumed=0) from None
    info = b""
    if end > cpos + 1:
        hcs_at = cpos + 1
        if end < hcs_at + 2:
            raise BadFrame("HDLC frame ends inside its HCS", consumed=0)
        if fcs16(body[:hcs_at]) != body[hcs_at:hcs_at + 2]:
            raise BadFrame(f"HDLC HCS error: computed {fcs16(body[:hcs_at]).hex()}, frame has "
                           f"{body[hcs_at:hcs_at + 2].hex()}", consumed=0)
        info = bytes(body[hcs_at + 2:end])
    return Frame(kind=kind, destination=dst, source=src, poll_final=bool(body[cpos] & POLL_FINAL), ssn=ssn, rsn=rsn,
                 segmented=segmented, info=info)


# --- parameter negotiation (SNRM / UA information field) ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HdlcParameters:
    """The negotiated link parameters, as seen by the station that sends them.

    Green Book 8.4.5.3.2 (Table 12): format identifier 81h, group identifier
    80h, group length, then parameters 05 (maximum information field length,
    transmit), 06 (receive), 07 (window size, transmit), 08 (receive).  A
    parameter left out takes its default: 128 bytes, window 1.
    """

    max_info_tx: int = DEFAULT_MAX_INFO
    max_info_rx: int = DEFAULT_MAX_INFO
    window_tx: int = 1
    window_rx: int = 1

    def to_bytes(self) -> bytes:
        group = b"".join(_param(pid, value, 4 if pid > 6 else (1 if value < 256 else 2))
                         for pid, value in ((5, self.max_info_tx), (6, self.max_info_rx), (7, self.window_tx),
                                            (8, self.window_rx)))
        return bytes([0x81, 0x80, len(group)]) + group

    @classmethod
    def from_bytes(cls, raw: bytes) -> HdlcParameters:
        if not raw:
            return cls()
        if len(raw) < 3 or raw[0] != 0x81 or raw[1] != 0x80 or raw[2] != len(raw) - 3:
            raise FrameError(f"bad HDLC parameter field {raw.hex(' ')}")
        values: dict[int, int] = {}
        pos = 3
        while pos < len(raw):
            if pos + 2 > len(raw) or pos + 2 + raw[pos + 1] > len(raw):
                raise FrameError(f"bad HDLC parameter field {raw.hex(' ')}")
            pid, n = raw[pos], raw[pos + 1]
            values[pid] = int.from_bytes(raw[pos + 2:pos + 2 + n], "big")
            pos += 2 + n
        return cls(max_info_tx=values.get(5, DEFAULT_MAX_INFO), max_info_rx=values.get(6, DEFAULT_MAX_INFO),
                   window_tx=values.get(7, 1), window_rx=values.get(8, 1))

def _param(pid: int, value: int, size: int) -> bytes:
    return bytes([pid, size]) + value.to_bytes(size, "big")


# --- sequence numbers and segmentation (one station's side) --------------------------


@dataclass
class Sequencer:
    """V(S) and V(R) of one station; builds its I frames and checks the peer's (Green Book 8.4.3.3).

    ``segments`` cuts an APDU into information fields of at most
    ``max_info`` bytes; every one but the last has the segmentation bit, and
    the peer acknowledges each with RR (window size 1, the default).
    """

    own: HdlcAddress
    peer: HdlcAddress
    vs: int = 0
    vr: int = 0
    max_info: int = DEFAULT_MAX_INFO

    def reset(self) -> None:
        self.vs = self.vr = 0

    def i_frames(self, info: bytes) -> list[Frame]:
        """The I frames carrying ``info`` (LLC header included by the caller), segmented to ``max_info``."""
        chunks = [info[i:i + self.max_info] for i in range(0, len(info), self.max_info)] or [b""]
        frames = []
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            frames.append(Frame(kind=Kind.I, destination=self.peer, source=self.own, ssn=self.vs, rsn=self.vr,
                                segmented=not last, poll_final=True, info=chunk))
            self.vs = (self.vs + 1) % 8
        return frames

    def rr(self) -> Frame:
        return Frame(kind=Kind.RR, destination=self.peer, source=self.own, rsn=self.vr, poll_final=True)

    def accept(self, frame: Frame) -> None:
        """Check an I frame from the peer against V(R) and our V(S); raises FrameError when out of sequence."""
        if frame.ssn != self.vr:
            raise FrameError(f"HDLC I frame out of sequence: N(S)={frame.ssn}, expected {self.vr}")
        if frame.rsn != self.vs:
            raise FrameError(f"HDLC I frame acknowledges N(R)={frame.rsn}, expected {self.vs}")
        self.vr = (self.vr + 1) % 8
