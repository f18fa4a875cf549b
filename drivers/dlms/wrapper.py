"""The IEC 62056-47 wrapper: DLMS/COSEM APDUs over TCP, no I/O.

Green Book 7.3.3.2 (Figure 21): every APDU is preceded by an 8-byte header of
four unsigned 16-bit big-endian fields: version (0x0001), source wPort,
destination wPort, length of the APDU.  The wPorts are the client SAP and the
server's logical device address.  TCP may split or join APDUs, so the
decoder works on a byte stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterlink.core.errors import FrameError

VERSION = 1
HEADER_LEN = 8
MAX_APDU = 0xFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapperFrame:
    source: int        # wPort of the sender (client SAP, or the server's logical device)
    destination: int   # wPort of the receiver
    apdu: bytes

    def to_bytes(self) -> bytes:
        if len(self.apdu) > MAX_APDU:
            raise ValueError(f"an APDU of {len(self.apdu)} bytes does not fit the wrapper's 16-bit length")
        return (VERSION.to_bytes(2, "big") + self.source.to_bytes(2, "big") + self.destination.to_bytes(2, "big")
                + len(self.apdu).to_bytes(2, "big") + self.apdu)


def decode(buf: bytes | bytearray | memoryview) -> tuple[int, WrapperFrame | None]:
    """``(consumed, frame)`` or ``(0, None)`` for "need more".

    Raises FrameError for a header whose version is not 1: on a TCP stream
    there is no way to find the next frame after that, so the caller must drop
    the connection.
    """
    data = bytes(buf)
    if len(data) < HEADER_LEN:
        return 0, None
    version = int.from_bytes(data[0:2], "big")
    if version != VERSION:
        raise FrameError(f"wrapper version {version} (expected 1): not a DLMS/COSEM wrapper stream")
    length = int.from_bytes(data[6:8], "big")
    if len(data) < HEADER_LEN + length:
        return 0, None
    frame = WrapperFrame(source=int.from_bytes(data[2:4], "big"), destination=int.from_bytes(data[4:6], "big"),
                         apdu=data[HEADER_LEN:HEADER_LEN + length])
    return HEADER_LEN + length, frame
