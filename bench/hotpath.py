"""The per-reading hot path alone: a block's bytes to the journal's message body, against the bare poller's.

Meterlink turns each float32 register into a :class:`~meterlink.core.reading.Reading`
with an exact decimal value and writes CONTRACT section 5's JSON for it; the bare
poller (:mod:`bench.bare`) unpacks a float and lets ``json.dumps`` write a
``name: value`` pair.  Both run here, in this process, on the same 30-point
SDM630-like blocks (50 sets of varied values), and the ratio is printed: what
the reading model costs per reading, free of the network, the event loop and
the machine's drift.
"""

from __future__ import annotations

import json
import random
import struct
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

from bench.load import write_profile


def main(number: int = 20000) -> dict[str, float]:
    from meterlink.core.config import profile_points
    from meterlink.core.driver import PointResult
    from meterlink.drivers.modbus.codec import decode_at, registers_to_bytes
    from meterlink.engine.journal import _pending
    from meterlink.engine.scheduler import to_readings

    with tempfile.TemporaryDirectory() as tmp:
        points = sorted(profile_points(str(write_profile(Path(tmp) / "p.yaml", "1s"))), key=lambda p: p.register)
    base = points[0].register
    span = points[-1].register + 2 - base
    rng = random.Random(14)
    blocks = []
    for _ in range(50):
        words = [0] * span
        for p in points:
            hi, lo = struct.unpack(">HH", struct.pack(">f", round(rng.uniform(0, 400), rng.choice([1, 2, 3]))))
            words[p.register - base:p.register - base + 2] = [hi, lo]
        blocks.append(words)

    class _Meter:
        id = "m0001"

    ts = datetime.now(UTC)
    names = [(f"p_{p.obis.replace('.', '_')}", 2 * (p.register - base)) for p in points]
    turn = [0]

    def meterlink() -> None:
        words = blocks[turn[0] % 50]
        turn[0] += 1
        raw = registers_to_bytes(words)
        results = [PointResult(point=p, value=decode_at(raw, p.register - base, p.type, p.word_order, p.scale))
                   for p in points]
        _pending("m0001", ts, to_readings("gw", _Meter(), ts, results))  # type: ignore[arg-type]

    def bare() -> None:
        words = blocks[turn[0] % 50]
        turn[0] += 1
        raw = struct.pack(f">{len(words)}H", *words)
        values = {name: struct.unpack_from(">f", raw, off)[0] for name, off in names}
        json.dumps({"meter": 1, "ts": time.time(), "values": values})

    per = {}
    for name, fn in (("meterlink", meterlink), ("bare", bare)):
        fn()
        per[name] = min(timeit.repeat(fn, number=number // 10, repeat=5)) / (number // 10) / len(points) * 1e6
    ratio = per["meterlink"] / per["bare"]
    print(f"per reading, a 30-point float32 block to the message body: Meterlink (Decimal, Reading, CONTRACT JSON) "
          f"{ratio:.2f} x the bare poller's (struct float, json.dumps) ({per['meterlink']:.2f} / {per['bare']:.2f} µs)")
    return per | {"ratio": ratio}


if __name__ == "__main__":
    main()
