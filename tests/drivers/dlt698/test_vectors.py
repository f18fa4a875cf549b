"""Every vector in ``vectors/*.toml`` decoded whole, byte by byte and amid garbage, then re-encoded.

A vector is ``hex`` (the frame on the wire), ``source`` (a public capture or the
output of an independent implementation, named) and ``expect``: ``address``
(nameplate order), ``client_address``, ``control``, ``apdu`` and optionally
``logical``.  The APDU is decoded by ``apdu.decode_apdu`` and re-encoded to the
same bytes, and the whole frame is decoded by PyPI ``dlt698`` too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import dlt698.codec as ref
import pytest

from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import frame as F

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.toml"))


def _load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(params=VECTORS, ids=[p.stem for p in VECTORS])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    data = _load(request.param)
    assert data["source"].strip(), f"{request.param.name}: every vector cites its source"
    return data


def _check(frame: F.Frame, expect: dict[str, Any]) -> None:
    assert frame.server.address == expect["address"]
    assert frame.server.logical == expect.get("logical", 0)
    assert frame.client_address == expect["client_address"]
    assert frame.control == expect["control"]
    assert frame.user_data == bytes.fromhex(expect["apdu"])


def test_decodes_whole_and_reencodes(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    used, frame = F.decode(raw)
    assert used == len(raw) and frame is not None
    _check(frame, vector["expect"])
    assert F.encode_frame(frame, wakeup=0) == raw
    apdu = A.decode_apdu(frame.user_data)
    assert A.encode_apdu(apdu) == frame.user_data


def test_decodes_byte_by_byte(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    buf = b""
    frames = []
    for i in range(len(raw)):
        buf += raw[i : i + 1]
        used, frame = F.decode(buf)
        buf = buf[used:]
        if frame is not None:
            frames.append((i, frame))
    assert len(frames) == 1 and frames[0][0] == len(raw) - 1
    _check(frames[0][1], vector["expect"])


@pytest.mark.parametrize("garbage", [b"\xfe\xfe\xfe\xfe", b"\x00\x68\x17\x00\x43\xff", b"\x68" * 3 + b"\x16\xfe"])
def test_decodes_amid_garbage(vector: dict[str, Any], garbage: bytes) -> None:
    raw = bytes.fromhex(vector["hex"])
    buf = garbage + raw + b"\xfe\x00\x68"
    frames = []
    while True:
        try:
            used, frame = F.decode(buf)
        except F.BadFrame as exc:
            buf = buf[exc.consumed :]
            continue
        buf = buf[used:]
        if frame is None:
            break
        frames.append(frame)
    assert len(frames) == 1
    _check(frames[0], vector["expect"])


def test_dlt698_decodes_the_same_frame(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    theirs = ref.decode_frame(raw)
    _, ours = F.decode(raw)
    assert ours is not None
    assert theirs.payload == ours.user_data
    assert theirs.client == ours.client_address and theirs.control == ours.control
    assert bytes(reversed(theirs.server.bytes)).hex().upper() == ours.server.address
