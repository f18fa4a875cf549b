"""An asyncio byte channel over a serial port (pyserial) or a TCP socket, for our own protocol codecs.

pyserial is blocking; its file descriptor is watched with ``loop.add_reader``
so a serial link never blocks the event loop.  Bytes accumulate in a buffer;
a transaction hands the buffer to a sans-io ``decode(buf) -> (consumed,
frame | None)`` until it yields the frame the caller wants or the deadline
passes.

Modbus RTU and DL/T 645 carry no transaction id, so a reply is trusted as the
answer to the request just sent only by the link's discipline (issue 16: a
late reply was read as the next register's value):

1. Before every request the input is flushed, the kernel's buffer included,
   and the line must have been quiet for one inter-frame gap (t3.5 at the
   link's baud rate, Modbus over Serial Line V1.02 2.5.1.1): a frame still
   arriving is neither cut in two nor taken for the answer.
2. After a request went unanswered (timeout or bad frame) its reply may still
   be on its way.  Before the next *different* request the channel waits out
   the silence: it discards input until the line has been quiet for one link
   timeout, at most three timeouts in all.  A reply up to twice the timeout
   late is so discarded, at the price of one timeout of bus time after a
   failure.  A retry of the *same* request goes out at once: the late answer
   to an identical request is a right answer to it, and the silence is still
   waited out before the next different request.
3. ``receive`` hands every decoded frame to the caller's ``accept``, which
   checks it against the request (address, function, data identifier or
   byte count); a frame it refuses is skipped, as are echoes and frames of
   other meters on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import serial

from drivers.serial_errors import serial_error_text, tcp_error_text
from gateway.config import Link, SerialLinkConfig
from gateway.errors import FrameError, LinkError, MeterTimeout

F = TypeVar("F")

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
BITS_PER_CHAR = 11  # start, 8 data, parity or second stop, stop (Serial Line Guide 2.5.1)
log = logging.getLogger("meterlink.channel")


def inter_frame_gap(baudrate: int) -> float:
    """t3.5: 3.5 characters, fixed at 1.75 ms above 19200 baud (Serial Line Guide 2.5.1.1)."""
    return 0.00175 if baudrate > 19200 else 3.5 * BITS_PER_CHAR / baudrate


class Channel(Generic[F]):
    """One link's byte pipe; ``send`` a request, then ``receive`` the frame that answers it."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._buf = bytearray()
        self._event = asyncio.Event()
        self._serial: serial.Serial | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None
        self._is_serial = isinstance(link.config, SerialLinkConfig)
        self._gap = inter_frame_gap(link.baudrate) if self._is_serial else 0.0
        self._last_rx = 0.0  # monotonic time the last bytes arrived
        self._unanswered_at: float | None = None  # when a request was given up on; its reply may still come
        self._last_request: bytes | None = None
        self._sent_at = 0.0
        self.bytes_out = 0
        self.bytes_in = 0
        self.stale_bytes = 0  # discarded before a request: late replies, noise

    @property
    def is_open(self) -> bool:
        return (self._serial is not None or self._writer is not None) and self._closed_reason is None

    def _line(self) -> str:
        c = self.link.config
        assert isinstance(c, SerialLinkConfig)
        return f"{self.link.baudrate} {c.bytesize}{self.link.parity}{c.stopbits}"

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
            except (serial.SerialException, OSError, ValueError, termios.error) as exc:
                raise LinkError(f"cannot open {self.link.describe()}: {serial_error_text(exc, line=self._line())}") \
                    from exc
            os.set_blocking(self._serial.fileno(), False)
            asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_serial)
        else:
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(c.host, c.port), timeout=max(self.link.timeout, 1.0) * 3)
            except (OSError, TimeoutError) as exc:
                raise LinkError(f"cannot open {self.link.describe()}: {tcp_error_text(exc)}") from exc
            self._pump = asyncio.create_task(self._pump_tcp(), name=f"meterlink[{self.link.id}].rx")

    def _on_serial(self) -> None:
        assert self._serial is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"serial port error: {serial_error_text(exc, line=self._line())}")
            return
        if data:
            self._got(data)

    def _drain_kernel(self) -> None:
        """Read out what the serial driver holds but the event loop has not delivered yet."""
        if self._serial is None:
            return
        fd = self._serial.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(f"serial port error: {serial_error_text(exc, line=self._line())}")
                return
            if not data:
                return
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
            self._lost(f"connection lost: {tcp_error_text(exc)}")

    def _got(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._last_rx = time.monotonic()
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

    def _discard(self) -> None:
        self.stale_bytes += len(self._buf)
        self._buf.clear()

    async def _quiet(self, quiet: float, since: float, limit: float) -> None:
        """Discard input until nothing arrived for ``quiet`` s after ``since`` (monotonic), or until ``limit``."""
        while self._closed_reason is None:
            self._drain_kernel()
            self._discard()
            now = time.monotonic()
            wait = max(self._last_rx, since) + quiet - now
            if wait <= 0 or now >= limit:
                return  # a line that never falls quiet: the checks in ``accept`` are what is left
            await asyncio.sleep(min(wait, limit - now))

    async def send(self, data: bytes) -> None:
        """Send a request on a flushed, quiet line (see the module docstring)."""
        if not self.is_open:
            raise LinkError(f"{self.link.describe()}: {self._closed_reason or 'not open'}")
        now = time.monotonic()
        stale_before = self.stale_bytes
        if self._unanswered_at is not None and data != self._last_request:
            await self._quiet(self.link.timeout, self._unanswered_at, now + 3 * self.link.timeout)
            self._unanswered_at = None
        elif self._gap:
            await self._quiet(self._gap, 0.0, now + max(self.link.timeout, 4 * self._gap))
        if not self._is_serial:
            for _ in range(3):  # let the TCP pump hand over what the socket already holds
                await asyncio.sleep(0)
        self._drain_kernel()
        self._discard()  # whatever arrived before the request cannot be its answer
        if self.stale_bytes > stale_before:
            log.debug("link %s: discarded %d stale bytes before a request", self.link.id,
                      self.stale_bytes - stale_before)
        if not self.is_open:
            raise LinkError(f"{self.link.describe()}: {self._closed_reason or 'not open'}")
        self._last_request = bytes(data)
        self._sent_at = time.monotonic()
        self.bytes_out += len(data)
        try:
            if self._serial is not None:
                self._serial.write(data)
            else:
                assert self._writer is not None
                self._writer.write(data)
                await self._writer.drain()
        except (serial.SerialException, OSError, termios.error) as exc:
            reason = serial_error_text(exc, line=self._line()) if self._is_serial else tcp_error_text(exc)
            self._lost(reason)
            raise LinkError(f"{self.link.describe()}: write failed: {reason}") from exc

    async def receive(self, decode: Callable[[bytes], tuple[int, F | None]], accept: Callable[[F], bool],
                      timeout: float) -> F:
        """The first decoded frame ``accept`` takes, within ``timeout``; other frames (echoes, other meters) are skipped.

        A bad frame is remembered: if nothing acceptable follows, the timeout
        reports it ("checksum error") instead of a bare "no reply".  Either
        failure marks the request unanswered, so the next different request
        first waits out the silence.
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
                    if self._unanswered_at is not None or self._buf:
                        # a retry after a timeout: this may be the late answer to the first try, the
                        # retry's own answer may still come; or more than one frame came for one request
                        self._unanswered_at = max(time.monotonic(), self._sent_at + timeout)
                    return frame
            if self._closed_reason is not None:
                raise LinkError(f"{self.link.describe()}: {self._closed_reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                self._unanswered_at = time.monotonic()
                if problem:
                    raise FrameError(problem)
                if self._buf:
                    raise FrameError(f"truncated reply {bytes(self._buf[:64]).hex(' ')}")
                raise MeterTimeout(f"no reply within {timeout:g} s")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._event.wait()
