"""Moving DLMS APDUs over the link's transport, from asyncio, never blocking the loop.

dlms-cosem's ``io`` and ``client`` block on sockets and pyserial (and its
``SerialIO`` cannot set parity, which an E450 on 2400 8E1 needs).  Here the
bytes go through :class:`meterlink.drivers.transport.Transport`, the one transport of
every protocol (line settings, echo, pause, silence after a timeout).  A
:class:`ApduChannel` carries one APDU request and its response over it:
:class:`HdlcChannel` (IEC 62056-46: SNRM/UA, I frames, segmentation with RR,
DISC) or :class:`WrapperChannel` (IEC 62056-47).  Timeouts are the link's;
each waiting step gives up after it.

A late answer must never be taken for the next one (issue 16).  HDLC frames
carry both addresses and the N(S)/N(R) sequence numbers, and only a frame from
the server address to our client address with the expected kind and N(S) is
accepted.  Besides, after an exchange went unanswered, the next one first
waits out the line's silence (one timeout without a byte, at most three in
all) and discards what arrives meanwhile, as the transport does for every
protocol; a resend inside one exchange (SNRM again, RR for a lost I frame)
goes out at once, because the late answer is the answer to it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from meterlink.core.errors import FrameError, LinkError, MeterTimeout
from meterlink.drivers.dlms import hdlc, wrapper
from meterlink.drivers.dlms.hdlc import Frame, HdlcAddress, HdlcParameters, Kind
from meterlink.drivers.transport import Transport

PROPOSED = HdlcParameters(max_info_tx=128, max_info_rx=512, window_tx=1, window_rx=1)


class SessionLost(LinkError):
    """The meter ended the connection or the association under us (DM, DISC, TCP close)."""


# --- channels: one APDU exchange at a time -------------------------------------------------------


class ApduChannel(Protocol):
    link: Transport[Any]

    async def connect(self) -> None: ...

    async def request(self, apdu: bytes) -> bytes: ...

    async def disconnect(self) -> None: ...


class WrapperChannel:
    """IEC 62056-47 over TCP: one wrapper frame out, the peer's frame back."""

    def __init__(self, link: Transport[Any], *, client: int, logical: int, timeout: float) -> None:
        self.link = link
        self.client, self.logical = client, logical
        self.timeout = timeout

    async def connect(self) -> None:
        await self.link.open()

    async def request(self, apdu: bytes) -> bytes:
        await self.link.send(wrapper.WrapperFrame(source=self.client, destination=self.logical, apdu=apdu).to_bytes())
        frame = await self.link.receive(wrapper.decode,
                                        lambda f: f.destination == self.client and f.source == self.logical,
                                        self.timeout)
        return frame.apdu

    async def disconnect(self) -> None:
        await self.link.close()


class HdlcChannel:
    """The client side of an HDLC connection (Green Book 8.4): SNRM/UA, I frames with segmentation, DISC.

    Frames for other stations on a multi-drop bus, and the local echo of our
    own frames on a 2-wire RS-485 adapter, are skipped: only frames from the
    server address to our client address count.
    """

    def __init__(self, link: Transport[Any], *, client: int, server: HdlcAddress, timeout: float, tries: int = 1) -> None:
        self.link = link
        self.client = HdlcAddress(client, None, 1)
        self.server = server
        self.timeout = timeout
        self.tries = max(1, tries)
        self.seq = hdlc.Sequencer(own=self.client, peer=server)
        self.params = HdlcParameters()
        self.connected = False

    def _ours(self, frame: Frame) -> bool:
        return frame.destination == self.client and frame.source == self.server

    async def _exchange(self, frame: Frame, accept: Callable[[Frame], bool], what: str) -> Frame:
        """Send ``frame`` and wait for a frame ``accept`` takes; resend up to ``tries`` times on silence.

        A corrupt frame is skipped by the transport and reported, instead of a bare timeout, when
        nothing acceptable follows.
        """
        for attempt in range(self.tries):
            await self.link.send(hdlc.encode_frame(frame), retry=attempt > 0)
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    reply = await self.link.receive(hdlc.decode, self._ours, max(deadline - time.monotonic(), 0.0))
                except (MeterTimeout, FrameError) as exc:
                    if attempt + 1 == self.tries:
                        if isinstance(exc, FrameError):
                            raise
                        raise MeterTimeout(f"no answer to {what} from HDLC server address {self.server} "
                                           f"within {self.timeout:g} s x {self.tries}") from None
                    if frame.kind is Kind.I:  # the response may have been lost: poll for it with RR
                        frame = self.seq.rr()
                    break
                if reply.kind is Kind.DM and frame.kind is not Kind.DISC:
                    self.connected = False
                    raise SessionLost(f"the meter answered {what} with DM (not connected)")
                if reply.kind is Kind.FRMR:
                    raise FrameError(f"the meter rejected our frame (FRMR {reply.info.hex(' ')})")
                if accept(reply):
                    return reply
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
