"""Modbus transport: RTU frames over the one :class:`meterlink.drivers.transport.Transport`, Modbus TCP through pymodbus.

pymodbus defaults to 3 s x 4 tries, which would stall an RS-485 bus for 12 s
on one silent meter; every transaction here uses the link's own timeout and
this driver does the retrying, so one silent meter costs the bus
``timeout x tries`` per cycle (plus, on RTU, one timeout of silence before the
next request, see below).  pymodbus' own reconnect loop is off
(``reconnect_delay=0``): the scheduler decides when to try a dead link again.

Why RTU does not go through pymodbus (issue 16: a late reply became the next
register's value).  RTU has no transaction id; pymodbus 3.16's
``TransactionManager`` takes the first frame its ``FramerRTU`` finds after a
request, checking only the device id.  A meter answering after the timeout
thus has its stale frame taken as the answer to the next request of the same
length to it.  The hooks pymodbus offers cannot close that hole: ``trace_packet``
sees the bytes but can only rewrite them (``FramerRTU.decode`` then reports
the whole buffer as used, so a stale frame cannot be skipped and the true
reply behind it kept), the kernel's input buffer is never flushed, and the
line's silence after a timeout could only be watched through its internals.  So on a
serial link and on RTU through a device server (``framing: rtu``) requests go
out through ``Transport`` (flush before every request, silence waited out after
an unanswered one) and replies are framed by ``codec.decode_rtu_reply``,
which accepts only the device id, function code and byte count of the request
just sent.  Modbus TCP (MBAP) keeps pymodbus: the transaction id it checks
makes a stale reply recognisable, and the driver still checks device id,
function code and register count of what it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import LinkCounters, PointResult, Store, with_tries
from meterlink.core.errors import FrameError, LinkError, MeterRejected, MeterTimeout
from meterlink.drivers.modbus.codec import (
    FUNCTION_CODES,
    ExceptionResponse,
    ImpossibleValue,
    ReadRequest,
    ReadResponse,
    Response,
    decode_block,
    decode_rtu_reply,
    encode_rtu,
    exception_text,
    registers_to_bytes,
)
from meterlink.drivers.modbus.plan import Block, plan_blocks, request_overhead, split_block
from meterlink.drivers.modbus.points import options
from meterlink.drivers.serial_errors import tcp_error_text
from meterlink.drivers.transport import Transport, endpoint_for

# pymodbus logs every timeout at ERROR level without saying which meter; we log our own events.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

ILLEGAL_DATA_ADDRESS = 0x02


class ModbusDriver:
    """Modbus RTU on a serial link, Modbus TCP, or RTU frames through a serial device server."""

    def __init__(self, link: Link, store: Store | None = None, *, transport: Transport[Any] | None = None) -> None:
        self.link = link
        self.counters = LinkCounters()
        self._rtu = link.serial or link.config.framing == "rtu"
        self.channel: Transport[Response] | None = (transport or Transport(endpoint_for(link))) if self._rtu else None
        self._client: AsyncModbusTcpClient | None = None
        self._plans: dict[tuple[str, frozenset[str]], list[Block]] = {}
        self._refused: dict[str, set[tuple[str, int, int]]] = {}

    # --- channel -------------------------------------------------------------

    async def open(self) -> None:
        if self.channel is not None:
            await self.channel.open()
            return
        if self._client is not None and self._client.connected:
            return
        c = self.link.config
        assert not self.link.serial
        if self._client is None:
            self._client = AsyncModbusTcpClient(c.host, port=c.port, framer=FramerType.SOCKET,
                                                timeout=self.link.timeout, retries=0, reconnect_delay=0,
                                                name=self.link.id)
        connect_timeout = max(self.link.timeout, 1.0) * 3
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=connect_timeout)
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            reason: str = tcp_error_text(exc)
        else:
            reason = ""
        if not ok:
            self._client.close()
            self._client = None
            raise LinkError(f"cannot open {self.link.describe()}: {reason or await self._why_not(connect_timeout)}")
        if c.connect_pause:  # a device server that drops the first request sent right after a connect
            await asyncio.sleep(c.connect_pause)

    async def _why_not(self, timeout: float) -> str:
        """pymodbus says only "connection failed": connect once more ourselves to learn the OS's reason."""
        c = self.link.config
        assert not self.link.serial
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(c.host, c.port), timeout=timeout)
        except (OSError, TimeoutError) as exc:
            return tcp_error_text(exc)
        writer.close()
        return "connection failed (the port accepts connections now: a transient fault?)"

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- reading ---------------------------------------------------------------

    def plan(self, meter: Meter, points: Sequence[Point]) -> list[Block]:
        key = (meter.id, frozenset(p.obis for p in points))
        plan = self._plans.get(key)
        if plan is None:
            max_registers, max_gap, forbidden = options(meter)
            pause = meter.config.pause if meter.config.pause is not None else self.link.config.pause
            overhead = request_overhead(rtu=self._rtu, baudrate=(meter.line or self.link.line).baudrate, pause=pause)
            plan = plan_blocks(points, max_registers=max_registers, max_gap=max_gap,
                               overhead=overhead, refused=self._refused.get(meter.id, ()),
                               forbidden=forbidden)
            self._plans[key] = plan
        return plan

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        results: list[PointResult] = []
        queue = list(self.plan(meter, points))
        while queue:
            block = queue.pop(0)
            try:
                words = await self._transact(meter, block)
            except MeterRejected as exc:
                if exc.code == ILLEGAL_DATA_ADDRESS and len(block.points) > 1:
                    # the meter does not map some register the merged block bridged: split, remember
                    self._refused.setdefault(meter.id, set()).add(block.span)
                    self._plans = {k: v for k, v in self._plans.items() if k[0] != meter.id}
                    queue[:0] = split_block(block)
                    continue
                results.extend(PointResult.invalid(p, str(exc)) for p in block.points)
                continue
            for p, value in zip(block.points, decode_block(registers_to_bytes(words), block.layout), strict=True):
                if value.__class__ is ImpossibleValue:
                    results.append(PointResult.invalid(p, f"impossible value: {value}"))
                else:
                    results.append(PointResult(p, value))  # positional: this runs per point
        return results

    async def _transact(self, meter: Meter, block: Block) -> list[int]:
        """One block read with the link's tries; raises MeterTimeout after the last one."""
        request = ReadRequest(device_id=int(meter.address), function_code=FUNCTION_CODES[block.function],
                              address=block.address, count=block.count)

        async def attempt() -> Response:
            await self.open()
            return await (self._exchange_rtu(request) if self.channel is not None else self._exchange_tcp(request))

        reply = await with_tries(self.link, self.counters, attempt)
        if isinstance(reply, ExceptionResponse):
            self.counters.rejections += 1
            code = reply.exception_code
            raise MeterRejected(f"exception {code:#04x} ({exception_text(code)}) reading "
                                f"{block.function} registers {block.address:#06x}+{block.count}", code)
        return list(reply.registers)

    async def _exchange_rtu(self, request: ReadRequest) -> Response:
        """One RTU request; only the frame that answers it (device id, function, byte count) is taken."""
        assert self.channel is not None
        await self.channel.send(encode_rtu(request))
        return await self.channel.receive(lambda buf: decode_rtu_reply(buf, request), lambda _reply: True,
                                          self.link.timeout)

    async def _exchange_tcp(self, request: ReadRequest) -> Response:
        """One MBAP request through pymodbus, its reply checked against the request as on RTU."""
        assert self._client is not None
        call = self._client.read_input_registers if request.function_code == 4 else \
            self._client.read_holding_registers
        try:
            # pymodbus enforces the link's timeout itself (wait_for on each transaction, retries=0)
            rr = await call(request.address, count=request.count, device_id=request.device_id)
        except ConnectionException as exc:
            await self.close()
            raise LinkError(f"{self.link.describe()}: {exc}") from exc
        except (ModbusException, TimeoutError) as exc:
            if isinstance(exc, ModbusException) and "device id" in str(exc):
                raise FrameError("reply from another device id (a late reply?)") from exc
            raise MeterTimeout(f"no reply within {self.link.timeout:g} s") from exc
        dev_id = int(getattr(rr, "dev_id", request.device_id) or request.device_id)
        fc = int(rr.function_code) & 0x7F
        if dev_id != request.device_id or fc != request.function_code:
            raise FrameError(f"reply from device id {dev_id} with function {fc:#04x} does not answer "
                             f"function {request.function_code:#04x} to device id {request.device_id}")
        if rr.isError():
            return ExceptionResponse(device_id=dev_id, function_code=fc,
                                     exception_code=int(getattr(rr, "exception_code", 0) or 0))
        regs = tuple(rr.registers)
        if len(regs) != request.count:
            raise FrameError(f"asked for {request.count} registers, the reply holds {len(regs)}")
        return ReadResponse(device_id=dev_id, function_code=fc, registers=regs)
