"""Test helpers: a receive loop that drives ``codec.decode`` the way a transport does."""

from __future__ import annotations

from collections.abc import Iterable

from meterlink.drivers.dlt645.codec import BadFrame, Frame, decode


def feed(chunks: Iterable[bytes]) -> tuple[list[Frame], list[BadFrame], bytes]:
    """Feed ``chunks`` into one buffer, decoding after each: frames, errors, and the bytes left over.

    On ``BadFrame`` the loop drops ``consumed`` bytes and keeps decoding, as a
    transport does while it waits for the reply.
    """
    buf = bytearray()
    frames: list[Frame] = []
    errors: list[BadFrame] = []
    for chunk in chunks:
        buf += chunk
        while buf:
            try:
                consumed, frame = decode(buf)
            except BadFrame as exc:
                assert 0 < exc.consumed <= len(buf)
                errors.append(exc)
                del buf[: exc.consumed]
                continue
            assert 0 <= consumed <= len(buf)
            del buf[:consumed]
            if frame is None:
                break
            assert consumed > 0
            frames.append(frame)
    return frames, errors, bytes(buf)


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]
