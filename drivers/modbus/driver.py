"""Modbus transport: pymodbus' async clients driven with the link's own timeout and tries.

pymodbus defaults to 3 s x 4 tries, which would stall an RS-485 bus for 12 s
on one silent meter; the client is created with ``retries=0`` and the link's
timeout, and this driver does the retrying, so one silent meter costs the bus
exactly ``timeout x tries`` per cycle.  pymodbus' own reconnect loop is off
(``reconnect_delay=0``): the scheduler decides when to try a dead link again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from drivers.modbus.codec import (
    FUNCTION_CODES,
    ImpossibleValue,
    decode_at,
    decode_rtu_response,
    exception_text,
    registers_to_bytes,
)
from drivers.modbus.plan import Block, plan_blocks, split_block
from gateway.config import Link, Meter, Point, SerialLinkConfig
from gateway.driver import LinkCounters, PointResult, Store
from gateway.errors import FrameError, LinkError, MeterRejected, MeterTimeout

# pymodbus logs every timeout at ERROR level without saying which meter; we log our own events.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

ILLEGAL_DATA_ADDRESS = 0x02


class ModbusDriver:
    """Modbus RTU on a serial link, Modbus TCP, or RTU frames through a serial device server."""

    def __init__(self, link: Link, store: Store | None = None) -> None:
        self.link = link
        self.counters = LinkCounters()
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._plans: dict[tuple[str, frozenset[str]], list[Block]] = {}
        self._refused: dict[str, set[tuple[str, int, int]]] = {}
        self._last_rx_problem: str | None = None
        self._rtu = isinstance(link.config, SerialLinkConfig) or link.config.framing == "rtu"

    # --- channel -------------------------------------------------------------

    def _make_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        c = self.link.config
        common = {"timeout": self.link.timeout, "retries": 0, "reconnect_delay": 0, "name": self.link.id,
                  "trace_packet": self._trace_packet}
        if isinstance(c, SerialLinkConfig):
            return AsyncModbusSerialClient(c.port, framer=FramerType.RTU, baudrate=self.link.baudrate,
                                           bytesize=c.bytesize, parity=self.link.parity, stopbits=c.stopbits,
                                           **common)
        framer = FramerType.RTU if c.framing == "rtu" else FramerType.SOCKET
        return AsyncModbusTcpClient(c.host, port=c.port, framer=framer, **common)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Keep what was wrong with a reply pymodbus threw away, so a timeout can say 'CRC error'."""
        if not sending and self._rtu and data:
            try:
                _, frame = decode_rtu_response(data)
                self._last_rx_problem = None if frame else f"truncated reply {data.hex(' ')}"
            except FrameError as exc:
                self._last_rx_problem = str(exc)
        return data

    async def open(self) -> None:
        if self._client is not None and self._client.connected:
            return
        if self._client is None:
            self._client = self._make_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), timeout=max(self.link.timeout, 1.0) * 3)
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            reason: str = str(exc) or type(exc).__name__
        else:
            reason = "connection failed"
        if not ok:
            self._client.close()
            self._client = None
            raise LinkError(f"cannot open {self.link.describe()}: {reason}")

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- reading ---------------------------------------------------------------

    def plan(self, meter: Meter, points: Sequence[Point]) -> list[Block]:
        key = (meter.id, frozenset(p.obis for p in points))
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_blocks(points, max_registers=meter.max_registers, max_gap=meter.max_gap,
                               refused=self._refused.get(meter.id, ()), forbidden=meter.forbidden)
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
            raw = registers_to_bytes(words)
            for p in block.points:
                try:
                    value = decode_at(raw, (p.register or 0) - block.address, p.type, p.word_order, p.scale)
                except ImpossibleValue as exc:
                    results.append(PointResult.invalid(p, f"impossible value: {exc}"))
                    continue
                results.append(PointResult(point=p, value=value))
        return results

    async def _transact(self, meter: Meter, block: Block) -> list[int]:
        """One block read with the link's tries; raises MeterTimeout after the last one."""
        last: Exception | None = None
        for _ in range(self.link.tries):
            await self.open()
            assert self._client is not None
            self.counters.transactions += 1
            self._last_rx_problem = None
            fc = FUNCTION_CODES[block.function]
            call = self._client.read_input_registers if fc == 4 else self._client.read_holding_registers
            try:
                # pymodbus enforces the timeout itself; ours is a backstop for a wedged transport
                async with asyncio.timeout(self.link.timeout * 2 + 1):  # no extra task per transaction
                    rr = await call(block.address, count=block.count, device_id=int(meter.address))
            except ConnectionException as exc:
                await self.close()
                raise LinkError(f"{self.link.describe()}: {exc}") from exc
            except (ModbusException, TimeoutError) as exc:
                if self._last_rx_problem:
                    self.counters.frame_errors += 1
                    last = FrameError(self._last_rx_problem)
                else:
                    self.counters.timeouts += 1
                    last = MeterTimeout(f"no reply within {self.link.timeout:g} s")
                    if isinstance(exc, ModbusException) and "device id" in str(exc):
                        last = FrameError("reply from another device id (a late reply on the bus?)")
                continue
            if rr.isError():
                self.counters.rejections += 1
                code = int(getattr(rr, "exception_code", 0) or 0)
                raise MeterRejected(f"exception {code:#04x} ({exception_text(code)}) reading "
                                    f"{block.function} registers {block.address:#06x}+{block.count}", code)
            regs = list(rr.registers)
            if len(regs) != block.count:
                self.counters.frame_errors += 1
                last = FrameError(f"asked for {block.count} registers, the reply holds {len(regs)}")
                continue
            return regs
        if isinstance(last, FrameError):
            raise FrameError(f"{last} (after {self.link.tries} tries)" if self.link.tries > 1 else str(last))
        raise MeterTimeout(f"no reply within {self.link.timeout:g} s x {self.link.tries} tries") from last

