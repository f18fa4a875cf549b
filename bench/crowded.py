"""Crowded bus: 32 Modbus RTU meters on one 9600 baud link and 32 DL/T 645 meters on one 2400 baud link.

Both simulated buses emulate wire time, and the schedule asks for more than
the wire can carry, so the links should be busy nearly all the time (goal:
utilization >= 0.90) and the polls that cannot start on time are counted late,
with by how much.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.util import SimProcess, percentile
from meterlink.core.config import parse_config, profile_points
from meterlink.engine.gateway import Gateway

GOAL = 0.90
N = 32


def _config(modbus_port: str, dlt_port: str, data_dir: Path) -> dict[str, Any]:
    fast_modbus = [{"obis": p.obis, "interval": "5s"} for p in profile_points("eastron-sdm630")]
    fast_dlt = [{"obis": p.obis, "interval": "30s"} for p in profile_points("dlt645-generic-3phase")]
    meters: dict[str, Any] = {}
    for u in range(1, N + 1):
        meters[f"sdm-{u:02d}"] = {"link": "rs485-1", "protocol": "modbus", "address": u, "profile": "eastron-sdm630",
                                  "points": fast_modbus}
        meters[f"dlt-{u:02d}"] = {"link": "rs485-2", "protocol": "dlt645", "address": f"{u:012d}",
                                  "profile": "dlt645-generic-3phase", "points": fast_dlt}
    return {"gateway": {"id": "bench", "data_dir": str(data_dir)},
            "links": {"rs485-1": {"type": "serial", "port": modbus_port, "baudrate": 9600, "parity": "N",
                                  "timeout": "1s"},
                      "rs485-2": {"type": "serial", "port": dlt_port, "baudrate": 2400, "parity": "N",
                                  "timeout": "1s"}},
            "meters": meters}


async def _run(raw: dict[str, Any], seconds: float) -> dict[str, dict[str, Any]]:
    gw = Gateway(parse_config(raw))
    await gw.start()
    await asyncio.sleep(seconds)
    out = {}
    for lid, sched in gw.schedulers.items():
        late = [ms.late_polls for ms in sched.meters.values()]
        lateness = list(sched.state.lateness)
        out[lid] = {"utilization": sched.state.utilization(), "polls": sched.state.polls,
                    "late_polls": sum(late), "lateness_p50": percentile(lateness, 0.5),
                    "lateness_max": max(lateness, default=0.0), "errors": sched.state.errors,
                    "transactions": sched.driver.counters.transactions}
    await gw.stop()
    return out


def main(quick: bool = False) -> dict[str, dict[str, Any]]:
    seconds = 12 if quick else 60
    units = [x for u in range(1, N + 1) for x in ("--unit", str(u))]
    addresses = [x for u in range(1, N + 1) for x in ("--address", f"{u:012d}")]
    with SimProcess("modbus", "--profile", "eastron-sdm630", *units, "--pty", "--wire-time", "9600") as mb, \
            SimProcess("dlt645", *addresses, "--pty", "--wire-time", "2400") as dl, \
            tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(_run(_config(mb.where, dl.where, Path(tmp)), seconds))
    print(f"crowded bus, {N} meters per link, schedule larger than the wire, {seconds} s:")
    for lid, label in (("rs485-1", "Modbus RTU 9600"), ("rs485-2", "DL/T 645 2400")):
        r = out[lid]
        print(f"  {label:16s}: utilization {r['utilization']:.3f} ({r['utilization'] / GOAL:.2f} x the 0.90 goal), "
              f"{r['polls']} polls, {r['transactions']} transactions, {r['errors']} errors, "
              f"{r['late_polls']} late polls (lateness p50 {r['lateness_p50']:.2f} s, max {r['lateness_max']:.2f} s)")
    return out


if __name__ == "__main__":
    main()
