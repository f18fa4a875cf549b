"""The peer load of BENCHMARKS.md: SDM630-like meters of 30 float32 points, as a user writes the profile.

Shared by ``bench.many``, ``bench.bare`` (the bare pymodbus + aiomqtt poller),
``bench.peers`` and ``bench.profile``, so every figure is measured on one load.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

POINTS = [
    ("1.0.32.7.0.255", 0x00), ("1.0.52.7.0.255", 0x02), ("1.0.72.7.0.255", 0x04), ("1.0.31.7.0.255", 0x06),
    ("1.0.51.7.0.255", 0x08), ("1.0.71.7.0.255", 0x0A), ("1.0.36.7.0.255", 0x0C), ("1.0.56.7.0.255", 0x0E),
    ("1.0.76.7.0.255", 0x10), ("1.0.29.7.0.255", 0x12), ("1.0.49.7.0.255", 0x14), ("1.0.69.7.0.255", 0x16),
    ("1.0.23.7.0.255", 0x18), ("1.0.43.7.0.255", 0x1A), ("1.0.63.7.0.255", 0x1C), ("1.0.33.7.0.255", 0x1E),
    ("1.0.53.7.0.255", 0x20), ("1.0.73.7.0.255", 0x22), ("1.0.12.7.0.255", 0x2A), ("1.0.11.7.0.255", 0x30),
    ("1.0.16.7.0.255", 0x34), ("1.0.9.7.0.255", 0x38), ("1.0.3.7.0.255", 0x3C), ("1.0.13.7.0.255", 0x3E),
    ("1.0.14.7.0.255", 0x46), ("1.0.1.8.0.255", 0x48), ("1.0.2.8.0.255", 0x4A), ("1.0.3.8.0.255", 0x4C),
    ("1.0.4.8.0.255", 0x4E), ("1.0.15.8.0.255", 0x156),
]


def write_profile(path: Path, interval: str = "10s") -> Path:
    lines = ["name: bench-sdm630-30", "protocol: modbus", "source: Eastron SDM630 input registers (bench subset)",
             "defaults: {function: input, type: float32}", "groups:",  # as a user writes it: no max_gap, no limits
             f"  - interval: {interval}", "    points:"]
    lines += [f"      - {{obis: {o}, name: p_{o.replace('.', '_')}, register: {r}}}" for o, r in POINTS]
    path.write_text("\n".join(lines) + "\n")
    return path


def gateway_config(path: Path, profile: Path, base: int, meters: int, sinks: dict[str, Any], *,
                   gateway: str = "bench") -> Path:
    """The gateway's configuration for the bench loads: meter ``i`` alone on TCP port ``base + i``, unit 1."""
    links = {f"t{i}": {"type": "tcp", "host": "127.0.0.1", "port": base + i, "timeout": "1s"} for i in range(meters)}
    mcfg = {f"m{i:04d}": {"link": f"t{i}", "protocol": "modbus", "address": 1, "profile": str(profile)}
            for i in range(meters)}
    path.write_text(json.dumps({"gateway": {"id": gateway, "data_dir": str(path.parent / "data")},
                                "links": links, "meters": mcfg, "sinks": sinks}))
    return path


def free_base(count: int) -> int:
    """A run of ``count`` free loopback ports (checked by binding each)."""
    for base in range(30000, 60000 - count, 1000):
        ok = True
        for p in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no run of {count} free ports")
