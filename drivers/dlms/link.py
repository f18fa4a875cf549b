"""Moving DLMS APDUs over a serial port or a TCP connection, from asyncio, never blocking the loop.

dlms-cosem's ``io`` and ``client`` block on sockets and pyserial (and its
``SerialIO`` cannot set parity, which an E450 on 2400 8E1 needs).  Here a
:class:`ByteLink` is the raw channel: a serial port opened with pyserial with
every line setting and read through the event loop (``add_reader`` on its file
descriptor), or an asyncio TCP stream.  A :class:`Channel` carries one APDU
request and its response over it: :class:`HdlcChannel` (IEC 62056-46:
SNRM/UA, I frames, segmentation with RR, DISC) or :class:`WrapperChannel`
(IEC 62056-47).  Timeouts are the link's; each waiting step gives up after it.

A late answer must never be taken for the next one (issue 16).  HDLC frames
carry both addresses and the N(S)/N(R) sequence numbers, and only a frame from
the server address to our client address with the expected kind and N(S) is
accepted.  Besides, after an exchange went unanswered, the next one first
waits out the line's silence (one timeout without a byte, at most three in
all) and discards what arrives meanwhile, as ``drivers.channel`` does; a
resend inside one exchange (SNRM again, RR for a lost I frame) goes out at
once, because the late answer is the answer to it.  OS errors read as
``drivers.serial_errors`` words them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import serial

from drivers.dlms import hdlc, wrapper
from drivers.dlms.hdlc import Frame, HdlcAddress, HdlcParameters, Kind
from drivers.serial_errors import serial_error_text, tcp_error_text
from gateway.errors import FrameError, LinkError, MeterTimeout

T = TypeVar("T")
PROPOSED = HdlcParameters(max_info_tx=128, max_info_rx=512, window_tx=1, window_rx=1)


class SessionLost(LinkError):
    """The meter ended the connection or the association under us (DM, DISC, TCP close)."""


class ByteLink:
    """A byte pipe with a receive buffer the decoders consume from."""

    def __init__(self, describe: str) -> None:
        self.describe = describe
        self.buffer = bytearray()
        self._data = asyncio.Event()
        self._closed_reason: str | None = None
        self.trace: Callable[[bool, bytes], None] | None = None
        self.last_rx = 0.0  # monotonic time bytes last arrived
        self.unanswered_at: float | None = None  # an exchange gave up at this time: its answer may still come

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def _received(self, data: bytes) -> None:
        if self.trace:
            self.trace(False, data)
        self.last_rx = time.monotonic()
        self.buffer.extend(data)
        self._data.set()

    def _lost(self, reason: str) -> None:
        self._closed_reason = reason
        self._data.set()

    def discard_input(self) -> None:
        """Drop stale bytes (a late answer to a request we gave up on) before a new request."""
        self.buffer.clear()

    async def settle(self, quiet: float) -> None:
        """After an unanswered exchange: discard input until ``quiet`` s passed without a byte (at most 3x)."""
        if self.unanswered_at is None:
            return
        limit = time.monotonic() + 3 * quiet
        while self._closed_reason is None:
            self.buffer.clear()
            now = time.monotonic()
            wait = max(self.last_rx, self.unanswered_at) + quiet - now
            if wait <= 0 or now >= limit:
                break
            await asyncio.sleep(min(wait, limit - now))
        self.buffer.clear()
        self.unanswered_at = None

    async def receive(self, decode: Callable[[bytearray], tuple[int, T | None]], deadline: float) -> T:
        """The next item ``decode`` finds in the stream, waiting until ``deadline`` (monotonic)."""
        while True:
            consumed, item = decode(self.buffer)
            del self.buffer[:consumed]
            if item is not None:
                return item
            if self._closed_reason is not None:
                raise SessionLost(f"{self.describe}: {self._closed_reason}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MeterTimeout("no reply")
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.wait(), remaining)


class SerialLink(ByteLink):
    """A serial port with full line settings (pyserial), read through the event loop without threads."""

    def __init__(self, port: str, *, baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> None:
        super().__init__(f"{port} {baudrate} {bytesize}{parity}{stopbits}")
        self.port = port
        self.settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._closed_reason is None

    async def open(self) -> None:
        if self._serial is not None:
            return
        try:
            s = serial.Serial(self.port, timeout=0, write_timeout=0, exclusive=True, **self.settings)
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise LinkError(f"cannot open {self.describe}: {_reason(exc, self.describe)}") from exc
        self._serial = s
        self._closed_reason = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(s.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._serial is not None
        try:
            data = os.read(self._serial.fileno(), 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._stop_reading()
            self._lost(f"read failed: {_reason(exc, self.describe)}")
            return
        if data:
            self._received(data)

    def _stop_reading(self) -> None:
        if self._serial is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._serial.fileno())

    async def write(self, data: bytes) -> None:
        if self._serial is None:
            raise LinkError(f"{self.describe} is not open")
        if self.trace:
            self.trace(True, data)
        view = memoryview(data)
        fd = self._serial.fileno()
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.002)
                continue
            except OSError as exc:
                raise LinkError(f"{self.describe}: write failed: {_reason(exc, self.describe)}") from exc
            view = view[n:]

    async def close(self) -> None:
        if self._serial is None:
            return
        self._stop_reading()
        with contextlib.suppress(Exception):
            self._serial.close()
        self._serial = None
        self.buffer.clear()


class TcpLink(ByteLink):
    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        super().__init__(f"{host}:{port}")
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._closed_reason is None

    async def open(self) -> None:
        if self.is_open:
            return
        await self.close()
        loop = asyncio.get_running_loop()
        self._closed_reason = None
        self.buffer.clear()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpProtocol(self), self.host, self.port), self.connect_timeout)
        except TimeoutError as exc:
            raise LinkError(f"cannot open {self.describe}: no connection within {self.connect_timeout:g} s") from exc
        except OSError as exc:
            raise LinkError(f"cannot open {self.describe}: {_reason(exc)}") from exc
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    async def write(self, data: bytes) -> None:
        if not self.is_open or self._transport is None:
            raise SessionLost(f"{self.describe}: {self._closed_reason or 'not connected'}")
        if self.trace:
            self.trace(True, data)
        self._transport.write(data)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.buffer.clear()


class _TcpProtocol(asyncio.Protocol):
    """Feeds one TCP connection into its link; a connection the link has replaced reports nothing."""

    def __init__(self, link: TcpLink) -> None:
        self.link = link
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def _current(self) -> bool:
        return self.link._transport is None or self.link._transport is self.transport

    def data_received(self, data: bytes) -> None:
        if self._current():
            self.link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link._transport is self.transport:
            self.link._lost("the meter closed the connection" if exc is None else f"connection lost: {_reason(exc)}")


def _reason(exc: BaseException, line: str | None = None) -> str:
    """``line`` (``PORT 9600 8E1``) for a serial port's errors; TCP's otherwise."""
    if line is not None or isinstance(exc, (serial.SerialException, termios.error)):
        return serial_error_text(exc, line=(line or "").split(" ", 1)[-1])
    return tcp_error_text(exc)


# --- channels: one APDU exchange at a time -------------------------------------------------------


class Channel(Protocol):
    link: ByteLink

    async def connect(self) -> None: ...

    async def request(self, apdu: bytes) -> bytes: ...

    async def disconnect(self) -> None: ...


class WrapperChannel:
    """IEC 62056-47 over TCP: one wrapper frame out, the peer's frame back."""

    def __init__(self, link: ByteLink, *, client: int, logical: int, timeout: float) -> None:
        self.link = link
        self.client, self.logical = client, logical
        self.timeout = timeout

    async def connect(self) -> None:
        await self.link.open()

    async def request(self, apdu: bytes) -> bytes:
        await self.link.settle(self.timeout)
        self.link.discard_input()
        await self.link.write(wrapper.WrapperFrame(source=self.client, destination=self.logical, apdu=apdu).to_bytes())
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                frame = await self.link.receive(wrapper.decode, deadline)
            except MeterTimeout:
                self.link.unanswered_at = time.monotonic()
                raise
            if frame.destination == self.client and frame.source == self.logical:
                return frame.apdu

    async def disconnect(self) -> None:
        await self.link.close()


class HdlcChannel:
    """The client side of an HDLC connection (Green Book 8.4): SNRM/UA, I frames with segmentation, DISC.

    Frames for other stations on a multi-drop bus, and the local echo of our
    own frames on a 2-wire RS-485 adapter, are skipped: only frames from the
    server address to our client address count.
    """

    def __init__(self, link: ByteLink, *, client: int, server: HdlcAddress, timeout: float, tries: int = 1) -> None:
        self.link = link
        self.client = HdlcAddress(client, None, 1)
        self.server = server
        self.timeout = timeout
        self.tries = max(1, tries)
        self.seq = hdlc.Sequencer(own=self.client, peer=server)
        self.params = HdlcParameters()
        self.connected = False
        self.last_bad: str | None = None

    def _decode(self, buf: bytearray) -> tuple[int, Frame | None]:
        try:
            return hdlc.decode(buf)
        except hdlc.BadFrame as exc:
            # a corrupt frame: drop it and report it unless a good one follows in time
            self.last_bad = str(exc)
            return exc.consumed, None

    async def _wait_frame(self, deadline: float) -> Frame:
        while True:
            frame = await self.link.receive(self._decode, deadline)
            if frame.destination == self.client and frame.source == self.server:
                return frame

    async def _exchange(self, frame: Frame, accept: Callable[[Frame], bool], what: str) -> Frame:
        """Send ``frame`` and wait for a frame ``accept`` takes; resend up to ``tries`` times on silence."""
        self.last_bad = None
        await self.link.settle(self.timeout)
        for attempt in range(self.tries):
            self.link.discard_input()
            await self.link.write(hdlc.encode_frame(frame))
            deadline = time.monotonic() + self.timeout
            try:
                while True:
                    reply = await self._wait_frame(deadline)
                    if reply.kind is Kind.DM and frame.kind is not Kind.DISC:
                        self.connected = False
                        raise SessionLost(f"the meter answered {what} with DM (not connected)")
                    if reply.kind is Kind.FRMR:
                        raise FrameError(f"the meter rejected our frame (FRMR {reply.info.hex(' ')})")
                    if accept(reply):
                        return reply
            except MeterTimeout:
                self.link.unanswered_at = time.monotonic()
                if attempt + 1 < self.tries:
                    if frame.kind is Kind.I:  # the response may have been lost: poll for it with RR
                        frame = self.seq.rr()
                    continue
                if self.last_bad:
                    raise FrameError(self.last_bad) from None
                raise MeterTimeout(f"no answer to {what} from HDLC server address {self.server} "
                                   f"within {self.timeout:g} s x {self.tries}") from None
        raise AssertionError("unreachable")

    async def connect(self) -> None:
        await self.link.open()
        snrm = Frame(kind=Kind.SNRM, destination=self.server, source=self.client, info=PROPOSED.to_bytes())
        ua = await self._exchange(snrm, lambda f: f.kind is Kind.UA, "SNRM")
        server = HdlcParameters.from_bytes(ua.info)  # the server's view: its tx is our rx
        self.params = HdlcParameters(max_info_tx=min(PROPOSED.max_info_tx, server.max_info_rx),
                                     max_info_rx=min(PROPOSED.max_info_rx, server.max_info_tx), window_tx=1,
                                     window_rx=1)
        self.seq.reset()
        self.seq.max_info = self.params.max_info_tx
        self.connected = True

    async def request(self, apdu: bytes) -> bytes:
        if not self.connected:
            raise SessionLost("HDLC connection is down")
        frames = self.seq.i_frames(hdlc.LLC_REQUEST + apdu)
        for frame in frames[:-1]:  # a segment: the server acknowledges it with RR N(R) = N(S) + 1
            expected = (frame.ssn + 1) % 8
            await self._exchange(frame, lambda f, n=expected: f.kind is Kind.RR and f.rsn == n, "a segment")
        reply = await self._exchange(frames[-1], self._is_next_i, "the request")
        info = bytearray()
        while True:
            self.seq.accept(reply)
            info.extend(reply.info)
            if not reply.segmented:
                break
            reply = await self._exchange(self.seq.rr(), self._is_next_i, "RR")
        if info[:3] != hdlc.LLC_RESPONSE:
            raise FrameError(f"HDLC response without the LLC header E6 E7 00 ({bytes(info[:3]).hex(' ')})")
        return bytes(info[3:])

    def _is_next_i(self, f: Frame) -> bool:
        if f.kind is Kind.DISC:
            self.connected = False
            raise SessionLost("the meter disconnected (DISC)")
        return f.kind is Kind.I and f.ssn == self.seq.vr

    async def disconnect(self) -> None:
        if self.connected and self.link.is_open:
            self.connected = False
            disc = Frame(kind=Kind.DISC, destination=self.server, source=self.client)
            with contextlib.suppress(MeterTimeout, FrameError, LinkError):
                await self._exchange(disc, lambda f: f.kind in (Kind.UA, Kind.DM), "DISC")
        self.connected = False
