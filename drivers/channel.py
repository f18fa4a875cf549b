"""An asyncio byte channel over a serial port (pyserial) or a TCP socket, for our own protocol codecs.

pyserial is blocking; its file descriptor is watched with ``loop.add_reader``
so a serial link never blocks the event loop.  Bytes accumulate in a buffer;
a transaction hands the buffer to a sans-io ``decode(buf) -> (consumed,
frame | None)`` until it yields the frame the caller wants or the deadline
passes.  Stale bytes (a late reply to an earlier request) are discarded before
each request, so they cannot be taken for the next answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import serial

from gateway.config import Link, SerialLinkConfig
from gateway.errors import FrameError, LinkError, MeterTimeout

F = TypeVar("F")

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class Channel(Generic[F]):
    """One link's byte pipe; ``transact`` sends a request and waits for a matching frame."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._buf = bytearray()
        self._event = asyncio.Event()
        self._serial: serial.Serial | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None
        self.bytes_out = 0
        self.bytes_in = 0

    @property
    def is_open(self) -> bool:
        return (self._serial is not None or self._writer is not None) and self._closed_reason is None

    async def open(self) -> None:
        if self.is_open:
            return
        await self.close()
        self._closed_reason = None
        c = self.link.config
        if isinstance(c, SerialLinkConfig):
            try:
                self._serial = serial.Serial(c.port, baudrate=self.link.baudrate, bytesize=c.bytesize,
                                             parity=_PARITY[self.link.parity], stopbits=c.stopbits, timeout=0,
                                             write_timeout=2, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise LinkError(f"cannot open {self.link.describe()}: {exc}") from exc
            os.set_blocking(self._serial.fileno(), False)
            asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_serial)
        else:
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(c.host, c.port), timeout=max(self.link.timeout, 1.0) * 3)
            except (OSError, TimeoutError) as exc:
                raise LinkError(f"cannot open {self.link.describe()}: {exc.strerror or exc}") from exc
            self._pump = asyncio.create_task(self._pump_tcp(), name=f"meterlink[{self.link.id}].rx")

    def _on_serial(self) -> None:
        assert self._serial is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"serial port error: {exc.strerror}")
            return
        if data:
            self._got(data)

    async def _pump_tcp(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(4096)
                if not data:
                    self._lost("connection closed by the peer")
                    return
                self._got(data)
        except OSError as exc:
            self._lost(f"connection lost: {exc.strerror or exc}")

    def _got(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._buf += data
        self._event.set()

    def _lost(self, reason: str) -> None:
        self._closed_reason = reason
        if self._serial is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
        self._event.set()

    async def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            with contextlib.suppress(Exception):
                self._serial.close()
            self._serial = None
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
            self._reader = None
        self._buf.clear()

    async def send(self, data: bytes) -> None:
        if not self.is_open:
            raise LinkError(f"{self.link.describe()}: {self._closed_reason or 'not open'}")
        self._buf.clear()  # whatever arrived before the request cannot be its answer
        self.bytes_out += len(data)
        try:
            if self._serial is not None:
                self._serial.write(data)
            else:
                assert self._writer is not None
                self._writer.write(data)
                await self._writer.drain()
        except (serial.SerialException, OSError) as exc:
            self._lost(str(exc))
            raise LinkError(f"{self.link.describe()}: write failed: {exc}") from exc

    async def receive(self, decode: Callable[[bytes], tuple[int, F | None]], accept: Callable[[F], bool],
                      timeout: float) -> F:
        """The first decoded frame ``accept`` takes, within ``timeout``; other frames (echoes, other meters) are skipped.

        A bad frame is remembered: if nothing acceptable follows, the timeout
        reports it ("checksum error") instead of a bare "no reply".
        """
        deadline = time.monotonic() + timeout
        problem: str | None = None
        while True:
            while self._buf:
                try:
                    used, frame = decode(bytes(self._buf))
                except FrameError as exc:
                    problem = str(exc)
                    del self._buf[: max(1, int(getattr(exc, "consumed", 1)))]
                    continue
                del self._buf[:used]
                if frame is None:
                    break
                if accept(frame):
                    return frame
            if self._closed_reason is not None:
                raise LinkError(f"{self.link.describe()}: {self._closed_reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                if problem:
                    raise FrameError(problem)
                if self._buf:
                    raise FrameError(f"incomplete reply {bytes(self._buf[:64]).hex(' ')}")
                raise MeterTimeout(f"no reply within {timeout:g} s")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._event.wait()
