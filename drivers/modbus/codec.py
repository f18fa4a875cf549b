"""Modbus codec: frames and register values, no I/O.

The gateway's Modbus client is pymodbus; this module is what Meterlink itself
knows about the wire: the RTU and MBAP (Modbus TCP) frames of function codes
03/04 and exception replies, and how register words become exact decimal
values.  The simulated meters are built on it, so the client (pymodbus) and the
server (this codec) are two independent implementations checking each other.

References: "MODBUS Application Protocol Specification V1.1b3" (modbus.org,
2012), "MODBUS over Serial Line Specification and Implementation Guide V1.02"
(modbus.org, 2006), "MODBUS Messaging on TCP/IP Implementation Guide V1.0b".
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from meterlink.core.errors import BadFrame, FrameError, MeterlinkError
from meterlink.core.reading import float32_decimal, float64_decimal
from meterlink.drivers.crc import crc16_modbus

READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
FUNCTION_CODES = {"holding": READ_HOLDING_REGISTERS, "input": READ_INPUT_REGISTERS}
MAX_READ_REGISTERS = 125  # Application Protocol 6.3/6.4: "Quantity of Registers 1 to 125 (0x7D)"

# Application Protocol section 7, "MODBUS Exception Codes"
EXCEPTION_CODES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f",
           "int64": ">q", "uint64": ">Q", "float64": ">d"}
_UNPACK = {t: struct.Struct(f) for t, f in _STRUCT.items()}


def exception_text(code: int) -> str:
    return EXCEPTION_CODES.get(code, f"exception code {code:#04x}")


# --- CRC ---------------------------------------------------------------------

def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (Serial Line Guide 6.2.2: polynomial 0xA001 reflected, init 0xFFFF)."""
    return crc16_modbus(data)


def with_crc(frame: bytes) -> bytes:
    """The CRC goes on the wire low byte first (Serial Line Guide 2.5.1.2)."""
    return frame + crc16(frame).to_bytes(2, "little")


# --- frames --------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequest:
    """A read of ``count`` registers from ``address`` with function 03 or 04."""

    device_id: int
    function_code: int
    address: int
    count: int
    transaction_id: int = 0  # MBAP only

    def pdu(self) -> bytes:
        return struct.pack(">BHH", self.function_code, self.address, self.count)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadResponse:
    device_id: int
    function_code: int
    registers: tuple[int, ...]
    transaction_id: int = 0

    def pdu(self) -> bytes:
        return struct.pack(f">BB{len(self.registers)}H", self.function_code, 2 * len(self.registers),
                           *self.registers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExceptionResponse:
    device_id: int
    function_code: int  # the request's function code, without the 0x80 bit
    exception_code: int
    transaction_id: int = 0

    def pdu(self) -> bytes:
        return bytes((self.function_code | 0x80, self.exception_code))

    @property
    def text(self) -> str:
        return exception_text(self.exception_code)


Response = ReadResponse | ExceptionResponse


def encode_rtu(msg: ReadRequest | ReadResponse | ExceptionResponse) -> bytes:
    return with_crc(bytes((msg.device_id,)) + msg.pdu())


def encode_tcp(msg: ReadRequest | ReadResponse | ExceptionResponse) -> bytes:
    """MBAP header (TCP guide 3.1.3): transaction id, protocol id 0, length of unit id + PDU, unit id."""
    pdu = msg.pdu()
    return struct.pack(">HHHB", msg.transaction_id, 0, len(pdu) + 1, msg.device_id) + pdu


def _parse_pdu_request(device_id: int, pdu: bytes, tid: int) -> ReadRequest | ExceptionResponse:
    fc = pdu[0]
    if fc not in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        return ExceptionResponse(device_id=device_id, function_code=fc & 0x7F, exception_code=0x01,
                                 transaction_id=tid)
    if len(pdu) != 5:
        raise FrameError(f"function {fc:#04x} request of {len(pdu)} bytes, expected 5")
    _, address, count = struct.unpack(">BHH", pdu)
    return ReadRequest(device_id=device_id, function_code=fc, address=address, count=count, transaction_id=tid)


def decode_rtu_request(buf: bytes) -> tuple[int, ReadRequest | ExceptionResponse | None]:
    """One RTU request from the start of ``buf``: ``(consumed, request)``; ``(consumed, None)`` needs more.

    A server cannot see the 3.5-character silence through a USB adapter, so
    like pymodbus' ``FramerRTU`` it hunts: it tries a frame at each offset and
    drops a byte when the CRC does not match.  Only 03/04 requests (8 bytes)
    are framed; any other function code with a valid 8-byte CRC is answered
    with exception 01 (the caller builds it from the returned object).
    """
    skipped = 0
    while len(buf) - skipped >= 8:
        frame = buf[skipped:skipped + 8]
        if crc16(frame[:6]).to_bytes(2, "little") == frame[6:8]:
            return skipped + 8, _parse_pdu_request(frame[0], frame[1:6], 0)
        skipped += 1
    return skipped, None


def decode_tcp_request(buf: bytes) -> tuple[int, ReadRequest | ExceptionResponse | None]:
    """One MBAP request from the start of ``buf`` (TCP has its own framing, no hunting)."""
    if len(buf) < 7:
        return 0, None
    tid, proto, length, unit = struct.unpack(">HHHB", buf[:7])
    if proto != 0 or not 2 <= length <= 254:
        raise FrameError(f"MBAP header with protocol id {proto} and length {length}")
    if len(buf) < 6 + length:
        return 0, None
    pdu = buf[7:6 + length]
    return 6 + length, _parse_pdu_request(unit, pdu, tid)


def _parse_pdu_response(device_id: int, pdu: bytes, tid: int) -> Response:
    fc = pdu[0]
    if fc & 0x80:
        if len(pdu) != 2:
            raise FrameError(f"exception reply of {len(pdu)} bytes, expected 2")
        return ExceptionResponse(device_id=device_id, function_code=fc & 0x7F, exception_code=pdu[1],
                                 transaction_id=tid)
    if fc not in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        raise FrameError(f"reply with function code {fc:#04x}, expected 0x03 or 0x04")
    if len(pdu) < 2:
        raise FrameError(f"reply of {len(pdu)} byte(s): no byte count")
    n = pdu[1]
    if n % 2 or len(pdu) != 2 + n:
        raise FrameError(f"reply announces {n} data bytes but carries {len(pdu) - 2}")
    regs = struct.unpack(f">{n // 2}H", pdu[2:])
    return ReadResponse(device_id=device_id, function_code=fc, registers=regs, transaction_id=tid)


def decode_rtu_response(buf: bytes) -> tuple[int, Response | None]:
    """One RTU reply from the start of ``buf``; raises :class:`FrameError` on a bad CRC."""
    if len(buf) < 5:
        return 0, None
    fc = buf[1]
    if fc & 0x80:
        size = 5
    elif fc in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        size = 5 + buf[2]
    else:
        raise FrameError(f"reply with function code {fc:#04x}, expected 0x03 or 0x04")
    if len(buf) < size:
        return 0, None
    frame = buf[:size]
    if crc16(frame[:-2]).to_bytes(2, "little") != frame[-2:]:
        raise FrameError(f"CRC error in reply {frame.hex(' ')}")
    return size, _parse_pdu_response(frame[0], frame[1:-2], 0)


def decode_rtu_reply(buf: bytes, request: ReadRequest) -> tuple[int, Response | None]:
    """The reply to ``request`` from the start of ``buf``: ``(consumed, reply)``; ``(consumed, None)`` needs more.

    RTU has no transaction id, so a reply is the answer to ``request`` only if
    it carries the request's device id, its function code (or that code with
    the exception bit, Application Protocol 7) and, for a read, the byte count
    2 x quantity (Application Protocol 6.3/6.4).  Bytes that cannot begin
    such a frame are skipped (noise, local echo, another meter's frame, a
    stale reply of another length); a candidate whose CRC fails raises
    :class:`FrameError`, and the caller drops one byte and hunts on.
    """
    unit, fc, want = request.device_id, request.function_code, 2 * request.count
    size_of_exception, size_of_read = 5, 5 + want
    n = len(buf)
    i = 0
    while i < n:
        if buf[i] != unit:
            i += 1
            continue
        if i + 1 >= n:
            return i, None
        if buf[i + 1] == fc | 0x80:
            size = size_of_exception
        elif buf[i + 1] == fc:
            if i + 2 >= n:
                return i, None
            if buf[i + 2] != want:
                i += 1
                continue
            size = size_of_read
        else:
            i += 1
            continue
        if n - i < size:
            return i, None
        frame = buf[i:i + size]
        if crc16(frame[:-2]).to_bytes(2, "little") != frame[-2:]:
            raise BadFrame(f"CRC error in reply {frame.hex(' ')}", consumed=i + 1)
        return i + size, _parse_pdu_response(frame[0], frame[1:-2], 0)
    return n, None


def decode_tcp_response(buf: bytes) -> tuple[int, Response | None]:
    if len(buf) < 7:
        return 0, None
    tid, proto, length, unit = struct.unpack(">HHHB", buf[:7])
    if proto != 0 or not 2 <= length <= 254:
        raise FrameError(f"MBAP header with protocol id {proto} and length {length}")
    if len(buf) < 6 + length:
        return 0, None
    return 6 + length, _parse_pdu_response(unit, buf[7:6 + length], tid)


# --- values --------------------------------------------------------------------

class ImpossibleValue(MeterlinkError, ValueError):
    """Registers that decode to NaN or infinity: the meter answered, but with nonsense."""


def decode_value(words: Sequence[int], type_: str, word_order: str = "big", scale: Decimal = Decimal(1)) -> Decimal:
    """Exact decimal value of a register group: floats by shortest round-trip, integers times ``scale``."""
    if len(words) != WORDS[type_]:
        raise FrameError(f"{type_} needs {WORDS[type_]} registers, got {len(words)}")
    return decode_at(registers_to_bytes(words), 0, type_, word_order, scale)


def registers_to_bytes(words: Sequence[int]) -> bytes:
    """A block's registers as big-endian bytes, once per block instead of once per point."""
    return struct.pack(f">{len(words)}H", *words)


def decode_at(raw: bytes, offset: int, type_: str, word_order: str = "big", scale: Decimal = Decimal(1)) -> Decimal:
    """The value of the point starting ``offset`` registers into a block's bytes (see :func:`decode_value`).

    Runs once per point per poll: big-endian values are unpacked in place with a
    precompiled struct, without copying the block.
    """
    n = WORDS[type_]
    start = 2 * offset
    if offset < 0 or start + 2 * n > len(raw):
        raise FrameError(f"{type_} needs {n} registers, the block has {max(0, len(raw) - start) // 2} left")
    if word_order != "big" and n > 1:
        chunk = b"".join(raw[i:i + 2] for i in range(start + 2 * n - 2, start - 2, -2))
        (raw_value,) = _UNPACK[type_].unpack(chunk)
    else:
        (raw_value,) = _UNPACK[type_].unpack_from(raw, start)
    if type_ == "float32" or type_ == "float64":
        if not math.isfinite(raw_value):
            raise ImpossibleValue(f"{type_} register holds {raw_value}")
        value = float32_decimal(raw_value) if type_ == "float32" else float64_decimal(raw_value)
    else:
        value = Decimal(raw_value)
    return value if scale == 1 else value * scale


_F32_FROM = _UNPACK["float32"].unpack_from


def decode_block(raw: bytes, layout: Sequence[tuple[int, str, str, Decimal]]) -> list[Decimal | ImpossibleValue]:
    """The values of a block's points, ``layout`` giving each one's (register offset, type, word order, scale).

    A value that is NaN or infinite comes back as its :class:`ImpossibleValue`,
    so one bad register spoils only its own point.  The common point of a
    power meter (a big-endian float32, scale 1) is unpacked and converted in
    place: a third of :func:`decode_at`'s time, for every point of every poll.
    """
    out: list[Decimal | ImpossibleValue] = []
    last = len(raw) - 4
    for offset, type_, word_order, scale in layout:
        start = 2 * offset
        if type_ == "float32" and word_order == "big" and scale == 1 and 0 <= start <= last:
            (x,) = _F32_FROM(raw, start)
            try:
                out.append(float32_decimal(x))
            except ValueError:  # NaN or infinity: float32_decimal keeps no such value
                out.append(ImpossibleValue(f"float32 register holds {x}"))
            continue
        try:
            out.append(decode_at(raw, offset, type_, word_order, scale))
        except ImpossibleValue as exc:
            out.append(exc)
    return out


def encode_value(value: Decimal | float, type_: str, word_order: str = "big", scale: Decimal = Decimal(1)) -> list[int]:
    """Register words that hold ``value`` (the inverse of :func:`decode_value`, for the simulators)."""
    v = Decimal(str(value)) if isinstance(value, float) else value
    raw_dec = v / scale if scale != 1 else v
    if type_ in ("float32", "float64"):
        raw: float | int = float(raw_dec)
    else:
        raw = int(raw_dec.to_integral_value())
        bits = 16 * WORDS[type_]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if type_.startswith("int") else (0, (1 << bits) - 1)
        raw = max(lo, min(hi, raw))
    data = struct.pack(_STRUCT[type_], raw)
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))
