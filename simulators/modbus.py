"""Simulated Modbus meters: RTU on a pty (many unit ids on one bus), Modbus TCP, RTU over TCP.

Built on ``meterlink.drivers.modbus.codec`` (frames, CRC, value encoding), never on the
pymodbus client it is there to test.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from decimal import Decimal

from meterlink.core.config import Point
from meterlink.core.errors import FrameError
from meterlink.drivers.modbus.codec import (
    MAX_READ_REGISTERS,
    ExceptionResponse,
    ReadRequest,
    ReadResponse,
    decode_rtu_request,
    decode_tcp_request,
    decode_value,
    encode_rtu,
    encode_tcp,
    encode_value,
)
from meterlink.simulators.faults import FaultPlan
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import Reply
from meterlink.simulators.wire import modbus_rtu_transaction

ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04


class ModbusUnit:
    """One simulated meter: a register map (from a profile's points) over a :class:`MeterModel`.

    Registers between the lowest and highest mapped address read as 0, as on
    most meters; reads outside that span get exception 02.
    """

    def __init__(self, unit_id: int, points: Sequence[Point], model: MeterModel,
                 forbidden: Sequence[tuple[str, int, int]] = (), identity: Mapping[int, int] | None = None) -> None:
        self.unit_id = unit_id
        self.identity = dict(identity or {})  # extra holding registers naming the model (drivers/modbus/identify.py)
        self.points = list(points)
        self.model = model
        self.forbidden = list(forbidden)  # (function, first, last) the meter refuses with exception 02
        self._spans: dict[str, tuple[int, int]] = {}
        for p in self.points:
            lo, hi = self._spans.get(p.function, (p.register or 0, (p.register or 0) + p.words))
            self._spans[p.function] = (min(lo, p.register or 0), max(hi, (p.register or 0) + p.words))

    def words(self, point: Point) -> list[int]:
        return encode_value(self.model.value(point.obis), point.type, point.word_order, point.scale)

    def served(self) -> dict[str, Decimal]:
        """What a reader gets for each point right now (exact decimals, as the registers hold them)."""
        return {p.obis: decode_value(self.words(p), p.type, p.word_order, p.scale) for p in self.points}

    def read(self, function: str, address: int, count: int) -> list[int] | int:
        """Register words, or a Modbus exception code."""
        if not 1 <= count <= MAX_READ_REGISTERS:
            return ILLEGAL_DATA_VALUE
        if function == "holding" and self.identity and all(a in self.identity for a in range(address, address + count)):
            return [self.identity[a] for a in range(address, address + count)]
        span = self._spans.get(function)
        if span is None or address < span[0] or address + count > span[1]:
            return ILLEGAL_DATA_ADDRESS
        for fn, first, last in self.forbidden:
            if fn == function and address <= last and address + count > first:
                return ILLEGAL_DATA_ADDRESS
        regs = [0] * count
        for p in self.points:
            reg = p.register or 0
            if p.function != function or reg + p.words <= address or reg >= address + count:
                continue
            for i, w in enumerate(self.words(p)):
                if address <= reg + i < address + count:
                    regs[reg + i - address] = w
        return regs


class ModbusHandler:
    """Frames requests off the wire and answers for the units it serves; silent for other unit ids."""

    def __init__(self, units: dict[int, ModbusUnit], *, framing: str = "rtu", faults: FaultPlan | None = None,
                 late_delay: float = 2.0, wire_baud: int | None = None) -> None:
        self.wire_baud = wire_baud  # emulate the line: each reply waits its transaction's wire time
        self.units = units
        self.framing = framing
        self.faults = faults or FaultPlan()
        self.late_delay = late_delay
        self._buf = b""
        self._rng = random.Random(7)
        self.requests = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        replies: list[Reply] = []
        while True:
            try:
                if self.framing == "rtu":
                    used, req = decode_rtu_request(self._buf)
                else:
                    used, req = decode_tcp_request(self._buf)
            except FrameError:
                self._buf = b""
                break
            self._buf = self._buf[used:]
            if req is None:
                break
            reply = self._answer(req)
            if reply is not None:
                replies.append(reply)
        if len(self._buf) > 512:  # noise that never framed
            self._buf = self._buf[-16:]
        return replies

    def _encode(self, msg: ReadResponse | ExceptionResponse) -> bytes:
        return encode_rtu(msg) if self.framing == "rtu" else encode_tcp(msg)

    def _answer(self, req: ReadRequest | ExceptionResponse) -> Reply | None:
        unit = self.units.get(req.device_id)
        if unit is None:
            return None  # another meter's request on a multi-drop bus
        self.requests += 1
        tid = req.transaction_id
        fault = self.faults.pick(req.device_id)
        if fault == "silent":
            return None
        msg: ReadResponse | ExceptionResponse
        if isinstance(req, ExceptionResponse):
            msg = req
        elif fault == "exception":
            msg = ExceptionResponse(device_id=req.device_id, function_code=req.function_code,
                                    exception_code=SERVER_DEVICE_FAILURE, transaction_id=tid)
        else:
            function = "holding" if req.function_code == 3 else "input"
            regs = unit.read(function, req.address, req.count)
            if isinstance(regs, int):
                msg = ExceptionResponse(device_id=req.device_id, function_code=req.function_code,
                                        exception_code=regs, transaction_id=tid)
            else:
                msg = ReadResponse(device_id=req.device_id, function_code=req.function_code,
                                   registers=tuple(regs), transaction_id=tid)
        frame = self._encode(msg)
        delay = 0.0
        if fault == "crc":
            frame = frame[:-1] + bytes((frame[-1] ^ 0x5A,)) if self.framing == "rtu" else \
                frame[:8] + bytes((frame[8] ^ 0x0F,)) + frame[9:]
        elif fault == "truncate":
            frame = frame[: max(3, len(frame) // 2)]
        elif fault == "garbage":
            frame = bytes(self._rng.randrange(256) for _ in range(3)) + frame
        elif fault == "late":
            delay = self.late_delay
        if self.wire_baud:
            request_bytes = 8 if self.framing == "rtu" else 12
            delay += modbus_rtu_transaction(self.wire_baud, request_bytes, len(frame))
        return Reply(frame, delay)
