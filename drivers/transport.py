"""The one asyncio byte transport of every protocol: a serial port (pyserial) or a TCP socket.

pyserial is blocking; its file descriptor is watched with ``loop.add_reader``
so a serial link never blocks the event loop.  Bytes accumulate in a buffer;
a transaction hands the buffer to a sans-io ``decode(buf) -> (consumed,
frame | None)`` until it yields a frame the caller's ``accept`` takes or the
deadline passes.  Modbus RTU, DL/T 645, DL/T 698.45 and DLMS (HDLC and the
wrapper) all go through here, so line discipline, echo handling and error
wording are the same for each.

Modbus RTU and DL/T 645 carry no transaction id, so a reply is trusted as the
answer to the request just sent only by the link's discipline (a late reply
was once read as the next register's value):

1. Before every request the input is flushed, the kernel's buffer included,
   and the line must have been quiet for one inter-frame gap (t3.5 at the
   link's baud rate, Modbus over Serial Line V1.02 2.5.1.1): a frame still
   arriving is neither cut in two nor taken for the answer.
2. After a request went unanswered (timeout or bad frame) its reply may still
   be on its way.  Before the next *different* request the transport waits
   out the silence: it discards input until the line has been quiet for one
   link timeout, at most three timeouts in all.  A reply up to twice the
   timeout late is so discarded, at the price of one timeout of bus time
   after a failure.  A retry of the *same* request (or one the caller marks
   ``retry``, such as an HDLC RR poll) goes out at once: the late answer to
   it is a right answer.
3. ``receive`` hands every decoded frame to the caller's ``accept``, which
   checks it against the request (address, function, data identifier, OAD,
   byte count); a frame it refuses is skipped, as are frames of other meters.

Field options (the requests of every gateway's issue tracker):

* ``pause``: silence kept after a reply before the next request, for meters
  whose transceiver needs time to turn from sending to receiving.  Without it
  such a meter does not hear the request and only the retry hides it.
* ``connect_pause``: a wait after a TCP connect, for device servers that drop
  the first request sent right after the connection is made.
* ``echo``: two-wire RS-485 adapters that hear their own transmission.  The
  exact bytes just sent are read back and discarded before the reply is
  looked for, so no decoder has to hunt past them by luck.
* ``reconfigure``: meters with other line settings on the same adapter (a
  DL/T 645 meter at 2400 8E1 beside Modbus meters at 9600 8N1); the port is
  switched between them without being reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import serial

from meterlink.core.config import Line, Link
from meterlink.core.errors import FrameError, LinkError, MeterTimeout
from meterlink.drivers.serial_errors import serial_error_text, tcp_error_text

F = TypeVar("F")

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
BITS_PER_CHAR = 11  # start, 8 data, parity or second stop, stop (Serial Line Guide 2.5.1)
log = logging.getLogger("meterlink.transport")


def inter_frame_gap(baudrate: int) -> float:
    """t3.5: 3.5 characters, fixed at 1.75 ms above 19200 baud (Serial Line Guide 2.5.1.1)."""
    return 0.00175 if baudrate > 19200 else 3.5 * BITS_PER_CHAR / baudrate


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where a transport goes and how it behaves there; built from a configured link by the driver."""

    name: str  # the link id, for logs
    port: str | None = None  # serial device path
    line: Line = Line()  # noqa: RUF009 - a frozen dataclass: one shared default is safe
    host: str | None = None  # TCP
    tcp_port: int = 0
    timeout: float = 1.0
    pause: float = 0.0
    connect_pause: float = 0.0
    echo: bool = False

    @property
    def is_serial(self) -> bool:
        return self.port is not None

    def describe(self) -> str:
        return f"{self.port} {self.line}" if self.is_serial else f"{self.host}:{self.tcp_port}"


class Transport(Generic[F]):
    """One link's byte pipe; ``send`` a request, then ``receive`` the frame that answers it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._buf = bytearray()
        self._event = asyncio.Event()
        self._serial: serial.Serial | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None
        self._gap = inter_frame_gap(endpoint.line.baudrate) if endpoint.is_serial else 0.0
        self._last_rx = 0.0  # monotonic time the last bytes arrived
        self._opened_at = 0.0
        self._unanswered_at: float | None = None  # when a request was given up on; its reply may still come
        self._last_request: bytes | None = None
        self._sent_at = 0.0
        self.trace: Callable[[bool, bytes], None] | None = None  # (sending, bytes), for diagnostics
        self.bytes_out = 0
        self.bytes_in = 0
        self.stale_bytes = 0  # discarded before a request: late replies, noise
        self.echo_mismatches = 0

    # --- state ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return (self._serial is not None or self._writer is not None) and self._closed_reason is None

    @property
    def line(self) -> Line:
        return self.endpoint.line

    def describe(self) -> str:
        return self.endpoint.describe()

    # --- opening and closing ---------------------------------------------------------------

    async def open(self) -> None:
        if self.is_open:
            return
        await self.close()
        self._closed_reason = None
        e = self.endpoint
        if e.is_serial:
            try:
                self._serial = serial.Serial(e.port, baudrate=e.line.baudrate, bytesize=e.line.bytesize,
                                             parity=_PARITY[e.line.parity], stopbits=e.line.stopbits, timeout=0,
                                             write_timeout=2, exclusive=True)
            except (serial.SerialException, OSError, ValueError, termios.error) as exc:
                raise LinkError(f"cannot open {e.describe()}: {serial_error_text(exc, line=str(e.line))}") from exc
            os.set_blocking(self._serial.fileno(), False)
            asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_serial)
        else:
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(e.host, e.tcp_port), timeout=max(e.timeout, 1.0) * 3)
            except (OSError, TimeoutError) as exc:
                raise LinkError(f"cannot open {e.describe()}: {tcp_error_text(exc)}") from exc
            self._pump = asyncio.create_task(self._pump_tcp(), name=f"meterlink[{e.name}].rx")
        self._opened_at = time.monotonic()

    async def reconfigure(self, line: Line) -> None:
        """Switch the serial port to ``line`` (a meter with other settings on the same adapter)."""
        if line == self.endpoint.line:
            return
        self.endpoint = replace(self.endpoint, line=line)
        self._gap = inter_frame_gap(line.baudrate)
        if self._serial is None:
            return
        try:  # one reconfiguration of the port, not one per setting
            self._serial.apply_settings({"baudrate": line.baudrate, "bytesize": line.bytesize,
                                         "parity": _PARITY[line.parity], "stopbits": line.stopbits})
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            reason = serial_error_text(exc, line=str(line))
            self._lost(reason)
            raise LinkError(f"cannot switch {self.endpoint.port} to {line}: {reason}") from exc

    def set_pause(self, pause: float) -> None:
        """The silence kept before the next requests (a meter that needs more than the link's pause)."""
        if pause != self.endpoint.pause:
            self.endpoint = replace(self.endpoint, pause=pause)

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

    # --- receiving ---------------------------------------------------------------------------

    def _on_serial(self) -> None:
        assert self._serial is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"serial port error: {serial_error_text(exc, line=str(self.line))}")
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
                self._lost(f"serial port error: {serial_error_text(exc, line=str(self.line))}")
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
        if self.trace:
            self.trace(False, data)
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

    async def _wait(self, until: float) -> bool:
        """Wait for more bytes until ``until`` (monotonic); False when the time is up."""
        left = until - time.monotonic()
        if left <= 0:
            return False
        self._event.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left):
                await self._event.wait()
        return True

    # --- one transaction ------------------------------------------------------------------

    async def send(self, data: bytes, *, retry: bool = False) -> None:
        """Send a request on a flushed, quiet line (see the module docstring).

        ``retry``: the request repeats or polls for the one just given up on (an HDLC RR), so the
        late answer to it is a right answer and the silence is not waited out first.
        """
        if not self.is_open:
            raise LinkError(f"{self.describe()}: {self._closed_reason or 'not open'}")
        e = self.endpoint
        now = time.monotonic()
        stale_before = self.stale_bytes
        if self._unanswered_at is not None and not retry and data != self._last_request:
            await self._quiet(e.timeout, self._unanswered_at, now + 3 * e.timeout)
            self._unanswered_at = None
        elif self._gap or e.pause:
            await self._quiet(max(self._gap, e.pause), 0.0, now + max(e.timeout, 4 * self._gap, 2 * e.pause))
        if e.connect_pause and time.monotonic() < self._opened_at + e.connect_pause:
            await asyncio.sleep(self._opened_at + e.connect_pause - time.monotonic())
        if not e.is_serial:
            for _ in range(3):  # let the TCP pump hand over what the socket already holds
                await asyncio.sleep(0)
        self._drain_kernel()
        self._discard()  # whatever arrived before the request cannot be its answer
        if self.stale_bytes > stale_before:
            log.debug("link %s: discarded %d stale bytes before a request", e.name, self.stale_bytes - stale_before)
        if not self.is_open:
            raise LinkError(f"{self.describe()}: {self._closed_reason or 'not open'}")
        self._last_request = bytes(data)
        self._sent_at = time.monotonic()
        self.bytes_out += len(data)
        if self.trace:
            self.trace(True, data)
        try:
            if self._serial is not None:
                self._serial.write(data)
            else:
                assert self._writer is not None
                self._writer.write(data)
                await self._writer.drain()
        except (serial.SerialException, OSError, termios.error) as exc:
            reason = serial_error_text(exc, line=str(self.line)) if e.is_serial else tcp_error_text(exc)
            self._lost(reason)
            raise LinkError(f"{self.describe()}: write failed: {reason}") from exc
        if e.echo:
            await self._swallow_echo(bytes(data))

    async def _swallow_echo(self, sent: bytes) -> None:
        """Read back exactly the bytes just sent (an echoing RS-485 adapter) and drop them.

        The echo arrives while the request is on the wire: its own transmission time plus a few
        characters.  Bytes that differ from what was sent are not an echo: they stay for the
        decoder, and the mismatch is counted (a noisy line, or ``echo: true`` on a quiet adapter).
        """
        char = BITS_PER_CHAR / self.line.baudrate if self.endpoint.is_serial else 0.0
        until = time.monotonic() + len(sent) * char + max(0.05, 10 * char)
        while len(self._buf) < len(sent):
            if bytes(self._buf) != sent[: len(self._buf)] or not await self._wait(until):
                break
        if bytes(self._buf[: len(sent)]) == sent:
            del self._buf[: len(sent)]
        else:
            self.echo_mismatches += 1
            log.debug("link %s: expected the echo of %d bytes, got %s", self.endpoint.name, len(sent),
                      bytes(self._buf[:32]).hex(" ") or "nothing")

    async def receive(self, decode: Callable[[bytes], tuple[int, F | None]], accept: Callable[[F], bool],
                      timeout: float) -> F:
        """The first decoded frame ``accept`` takes, within ``timeout``; other frames (other meters) are skipped.

        ``timeout`` is for the reply to begin: once bytes of a frame are arriving,
        the wait goes on while they keep coming (a gap of at most 20 characters,
        50 ms at least), so a long reply at 2400 baud (a DL/T 698.45 list of 33
        values is 2.3 s of wire) is not cut off by a timeout meant for a silent
        meter; a line that never stops talking is given up on after 10 s more.

        A bad frame is remembered: if nothing acceptable follows, the timeout
        reports it ("checksum error") instead of a bare "no reply".  Either
        failure marks the request unanswered, so the next different request
        first waits out the silence.
        """
        start = time.monotonic()
        deadline = start + timeout
        gap = max(0.05, 20 * BITS_PER_CHAR / self.line.baudrate) if self.endpoint.is_serial else 0.2
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
                    if used:
                        continue  # the decoder skipped bytes (garbage, a frame it counted as bad): go on
                    break
                if accept(frame):
                    if self._unanswered_at is not None or self._buf:
                        # a retry after a timeout: this may be the late answer to the first try, the
                        # retry's own answer may still come; or more than one frame came for one request
                        self._unanswered_at = max(time.monotonic(), self._sent_at + timeout)
                    return frame
            if self._closed_reason is not None:
                raise LinkError(f"{self.describe()}: {self._closed_reason}")
            # a frame under way: its end may come after the timeout, at the line's pace
            until = min(max(deadline, self._last_rx + gap), deadline + 10.0) if self._buf else deadline
            if not await self._wait(until):
                if self._buf and time.monotonic() < min(self._last_rx + gap, deadline + 10.0):
                    continue  # bytes came in meanwhile: wait for the rest
                self._unanswered_at = time.monotonic()
                if problem:
                    raise FrameError(problem)
                if self._buf:
                    raise FrameError(f"truncated reply {bytes(self._buf[:64]).hex(' ')}")
                raise MeterTimeout(f"no reply within {timeout:g} s")

    async def listen(self, decode: Callable[[bytes], tuple[int, F | None]], timeout: float) -> F:
        """The next frame that arrives unasked (a push meter's notification), within ``timeout``."""
        return await self.receive(decode, lambda _frame: True, timeout)


def endpoint_for(link: Link) -> Endpoint:
    """The transport endpoint of a configured link."""
    c = link.config
    common = {"name": link.id, "timeout": link.timeout, "pause": c.pause, "echo": c.echo}
    if link.serial:
        return Endpoint(port=c.port, line=Line(link.baudrate, c.bytesize, link.parity, c.stopbits), **common)
    return Endpoint(host=c.host, tcp_port=c.port, connect_pause=c.connect_pause, **common)
