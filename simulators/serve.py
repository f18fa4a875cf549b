"""Byte pipes for simulated meters: a serial pty pair or a TCP listener.

The gateway opens the pty's slave side with pyserial exactly as it opens
``/dev/ttyUSB0``, so the real serial code runs in tests.  Each protocol gives
a :class:`FrameHandler` that turns received bytes into timed replies; the pipe
only moves bytes.  Note that ptys reject parity settings: simulated serial
links use 8N1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    delay: float = 0.0  # seconds after the request was complete
    pace: float = 0.0  # seconds per byte once the reply begins (wire-time emulation streams it, as a UART does)


def _schedule(loop: asyncio.AbstractEventLoop | None, reply: Reply, write: Callable[[bytes], None]) -> None:
    """Write ``reply`` after its delay: at once, or byte run by byte run at its pace."""
    if reply.pace > 0 and loop is not None:
        end = reply.delay  # the whole reply is on the wire by then; its first byte leaves earlier
        first = max(0.0, end - len(reply.data) * reply.pace)
        for i in range(0, len(reply.data), 8):
            loop.call_later(first + (i + 8) * reply.pace, write, reply.data[i:i + 8])
    elif reply.delay > 0 and loop is not None:
        loop.call_later(reply.delay, write, reply.data)
    else:
        write(reply.data)


class FrameHandler(Protocol):
    def feed(self, data: bytes) -> list[Reply]:
        """Take bytes from the wire; return the replies to send (none for other meters' frames)."""
        ...


HandlerFactory = Callable[[], FrameHandler]


class LineQuirks:
    """What a real bus does besides the meter's protocol: an echoing adapter, a slow transceiver.

    ``echo``: every byte the gateway sends comes straight back to it, as on a two-wire RS-485
    adapter that hears its own transmission.  ``turnaround``: after answering, the meter's
    transceiver needs this long to turn from sending back to receiving; a request that arrives
    sooner is not heard at all (the fault a link's ``pause`` exists for).  ``deaf_after_connect``:
    a serial device server that drops what arrives this soon after a TCP connect (the fault a
    link's ``connect_pause`` exists for); each connection gets a handler of its own.
    """

    def __init__(self, handler: FrameHandler, *, echo: bool = False, turnaround: float = 0.0,
                 deaf_after_connect: float = 0.0) -> None:
        import time

        self.handler = handler
        self.echo = echo
        self.turnaround = turnaround
        self._busy_until = 0.0
        self._deaf_until = time.monotonic() + deaf_after_connect
        self.unheard = 0

    def feed(self, data: bytes) -> list[Reply]:
        import time

        now = time.monotonic()
        out = [Reply(data)] if self.echo else []
        if now < self._deaf_until or (self.turnaround and now < self._busy_until + self.turnaround):
            self.unheard += 1
            return out
        replies = self.handler.feed(data)
        if replies:
            self._busy_until = now + max(r.delay for r in replies)
        return out + replies


class SharedBus:
    """Meters of several protocols on one wire: every handler hears every byte, each answers its own frames."""

    def __init__(self, *handlers: FrameHandler) -> None:
        self.handlers = handlers

    def feed(self, data: bytes) -> list[Reply]:
        return [reply for h in self.handlers for reply in h.feed(data)]


def add_line_arguments(parser: Any) -> None:
    """``--echo`` and ``--turnaround`` for every simulator."""
    parser.add_argument("--echo", action="store_true", help="send every received byte straight back (echoing adapter)")
    parser.add_argument("--turnaround", default="0s", metavar="DURATION",
                        help="ignore requests arriving sooner than this after a reply (slow transceiver)")
    parser.add_argument("--deaf-after-connect", default="0s", metavar="DURATION",
                        help="on TCP: drop what arrives this soon after a connect (a slow device server)")


def with_line_quirks(factory: HandlerFactory, args: Any) -> HandlerFactory:
    from meterlink.core.durations import parse_duration

    def duration(key: str) -> float:
        written = getattr(args, key, "0s")
        return 0.0 if written in (None, "0", "0s") else parse_duration(written)

    echo, turnaround, deaf = bool(getattr(args, "echo", False)), duration("turnaround"), duration("deaf_after_connect")
    if not echo and not turnaround and not deaf:
        return factory
    return lambda: LineQuirks(factory(), echo=echo, turnaround=turnaround, deaf_after_connect=deaf)


class PtyServer:
    """Serves one handler on a pseudo-terminal; ``path`` is what the gateway opens."""

    def __init__(self, factory: HandlerFactory, link: str | None = None) -> None:
        self._factory = factory
        self._link = Path(link) if link else None
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self.path = os.ttyname(self._slave)
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()
            self._link.symlink_to(self.path)
        os.set_blocking(self.master, False)
        self._handler = factory()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return str(self._link) if self._link else self.path

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no client has the slave open
        if not data:
            return
        for reply in self._handler.feed(data):
            _schedule(self._loop, reply, self._write)

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                continue
            except OSError:
                return
            view = view[n:]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.master)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link.unlink()


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, factory: HandlerFactory) -> None:
        self._handler = factory()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._handler.feed(data)
        except Exception:  # a simulator never dies of a bad frame: drop the connection
            if self._transport is not None:
                self._transport.close()
            return
        loop = asyncio.get_running_loop()
        for reply in replies:
            _schedule(loop, reply, self._write)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


async def serve_tcp(factory: HandlerFactory, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _TcpProtocol(factory), host, port, reuse_address=True)


def tcp_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def serve_until_signal(what: str, factory: HandlerFactory, *, pty: bool, link: str | None = None,
                             tcp: int | None = None, pty_server: PtyServer | None = None,
                             with_pty: Callable[[PtyServer], Awaitable[None]] | None = None) -> int:
    """Serve on a new pty (printing its path) or on 127.0.0.1:``tcp`` until SIGTERM/SIGINT; the exit code.

    ``pty_server`` replaces the default :class:`PtyServer`; ``with_pty`` runs beside it (a push loop).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if pty:
        srv = pty_server or PtyServer(factory, link)
        srv.start()
        print(f"serving {what} on {srv.path}", flush=True)
        extra = asyncio.create_task(with_pty(srv)) if with_pty else None
        try:
            await stop.wait()
        finally:
            if extra is not None:
                extra.cancel()
            srv.close()
        return 0
    try:
        server = await serve_tcp(factory, "127.0.0.1", tcp or 0)
    except OSError as exc:
        print(f"meterlink simulate: cannot listen on 127.0.0.1:{tcp}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"serving {what} on 127.0.0.1:{tcp_port(server)}", flush=True)
    async with server:
        await stop.wait()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    return 0
