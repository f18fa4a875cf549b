"""DL/T 698.45 on a 2400 baud bus (issue 13): wire efficiency of one poll, and a crowded bus.

(1) One simulated dlt698-generic-3phase meter behind ``meterlink simulate dlt698 --pty --wire-time 2400
--freeze``, which delays each reply by the true wire time of its transaction (11-bit characters + Td,
``meterlink.simulators.wire.dlt698_transaction``), so no cycle can beat the physical limit.  The poll is
read twice: with GET-Request-NormalList (the driver's default: the due OADs in one request) and with one
GET-Request-Normal per OAD (the same simulator with ``--no-list``: the meter refuses the list, the driver
falls back).  Each cycle is divided by the wire time of its *own* transactions, computed from the very
frames they carry (the driver's requests, the sans-io simulator's replies, FE wake-up bytes included),
and the NormalList gain is the single GETs' cycle over the list's.

(2) ``N`` meters of that profile (4 with ``--quick``) on one simulated 2400 baud bus, every point every ``INTERVAL``: a
schedule larger than the wire, so the link should be busy nearly all the time (utilization goal 0.90, as
``bench.crowded`` for DL/T 645) and the polls that cannot start on time are counted late.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.util import SimProcess, percentile
from meterlink.core.config import parse_config, profile_points
from meterlink.core.registry import create_driver
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698.driver import CLOCK_OAD, _chunks
from meterlink.drivers.dlt698.oads import parse_oad
from meterlink.engine.gateway import Gateway
from meterlink.simulators.dlt698 import Dlt698Bus
from meterlink.simulators.dlt698_cli import FROZEN_AT, make_meters
from meterlink.simulators.wire import dlt698_transaction

BAUD = 2400
PROFILE = "dlt698-generic-3phase"
ADDRESS = "000000000001"
GOAL = 0.90  # crowded bus utilization, as bench.crowded
N = 8
INTERVAL = "15s"  # one poll of the whole profile is ~2.6 s of wire at 2400 baud: 8 meters need ~21 s


TIMEOUT = "5s"
"""The link timeout runs to the end of the reply, and a full-profile NormalList answer is ~2.3 s of wire at
2400 baud: a 2 s timeout would expire under a perfect meter (each poll then costs a retry)."""


def _points(quick: bool) -> list[dict[str, Any]]:
    """The profile's points, all due together (the clock too); ``quick``: the first six and the clock."""
    pts = profile_points(PROFILE)
    chosen = [*pts[:6], *[p for p in pts if p.oad == "40000200"]] if quick else pts
    return [{"oad": p.oad, "name": p.name, "interval": "1h"} for p in chosen]


def _meter_config(port: str, points: list[dict[str, Any]]) -> Any:
    return parse_config({"links": {"bus": {"type": "serial", "port": port, "baudrate": BAUD, "parity": "N",
                                           "timeout": TIMEOUT}},
                         "meters": {"m": {"link": "bus", "protocol": "dlt698", "address": ADDRESS,
                                          "points": points}}})


def wire_time(cfg: Any, normal_list: bool) -> tuple[int, float]:
    """Transactions of one poll after the first (scaler-units known) and their wire time at ``BAUD``: the
    driver's own request frames (NormalLists cut by its APDU budget, or one GET per OAD, the clock alone)
    answered by the sans-io simulated meter, so both directions are the bytes the serial line carries."""
    m = cfg.meters["m"]
    plain = [o for o in dict.fromkeys(parse_oad(p.oad) for p in m.points) if o != CLOCK_OAD]
    requests: list[A.Apdu] = []
    if normal_list:
        for chunk in _chunks(plain, 512):
            requests.append(A.GetRequestNormalList(1, tuple(chunk)) if len(chunk) > 1 else A.GetRequestNormal(1, chunk[0]))
    else:
        requests.extend(A.GetRequestNormal(1, o) for o in plain)
    requests.append(A.GetRequestNormal(1, CLOCK_OAD))
    bus = Dlt698Bus(make_meters([ADDRESS], frozen=True, normal_list=normal_list))
    address = F.ServerAddress(address=ADDRESS)
    total = 0.0
    for apdu in requests:
        request = F.encode_frame(F.request(address, A.encode_apdu(apdu)))
        reply = bus.feed(request, FROZEN_AT)
        assert reply, f"the simulated meter did not answer {apdu}"
        total += dlt698_transaction(BAUD, len(request), len(reply))
    return len(requests), total


async def _cycles(cfg: Any, n: int) -> tuple[list[float], list[int]]:
    driver = create_driver(cfg.links["bus"])
    await driver.open()
    m = cfg.meters["m"]
    times, transactions = [], []
    try:
        await driver.read(m, m.points)  # warm-up: scaler-units read, a refused NormalList remembered
        for _ in range(n):
            before = driver.counters.transactions
            t0 = time.perf_counter()
            results = await driver.read(m, m.points)
            times.append(time.perf_counter() - t0)
            transactions.append(driver.counters.transactions - before)
            assert all(r.error is None for r in results), [r.error for r in results if r.error]
    finally:
        await driver.close()
    return times, transactions


def wire(quick: bool = False) -> dict[str, float]:
    """(1): cycle time / wire time with NormalList and with single GETs, and the NormalList gain."""
    n = 2 if quick else 10
    points = _points(quick)
    out: dict[str, float] = {}
    for label, normal_list in (("list", True), ("single", False)):
        extra = () if normal_list else ("--no-list",)
        with SimProcess("dlt698", "--address", ADDRESS, "--pty", "--wire-time", str(BAUD), "--freeze", *extra) as sim:
            cfg = _meter_config(sim.where, points)
            tx, wire_s = wire_time(cfg, normal_list)
            times, done = asyncio.run(_cycles(cfg, n if normal_list else max(1, n // 2)))
        assert set(done) == {tx}, f"{label}: the driver made {done} transactions per poll, the wire model {tx}"
        cycle = statistics.median(times)
        out |= {f"{label}_transactions": tx, f"{label}_cycle_s": cycle, f"{label}_wire_s": wire_s,
                f"{label}_ratio": cycle / wire_s}
    out["gain"] = out["single_cycle_s"] / out["list_cycle_s"]
    print(f"DL/T 698.45 wire efficiency, {PROFILE} ({len(points)} points) at {BAUD} baud with wire-time emulation:")
    for label, what in (("list", "GET-Request-NormalList"), ("single", "single GET-Request-Normal")):
        print(f"  {what:26s}: {out[f'{label}_transactions']:2.0f} transactions, cycle "
              f"{out[f'{label}_cycle_s'] * 1000:7.1f} ms, wire time of its transactions "
              f"{out[f'{label}_wire_s'] * 1000:7.1f} ms -> {out[f'{label}_ratio']:.3f} x the physical limit")
    print(f"  NormalList gain           : {out['gain']:.2f} x faster than single GETs "
          f"(wire-time limits {out['single_wire_s'] / out['list_wire_s']:.2f} x apart)")
    return out


async def _crowded_run(raw: dict[str, Any], warmup: float, window: float) -> dict[str, Any]:
    """The link's figures over ``window`` seconds after ``warmup`` (the first round also reads every meter's
    scaler-units, so the steady state is measured apart from it)."""
    gw = Gateway(parse_config(raw))
    await gw.start()
    sched = gw.schedulers["rs485"]
    try:
        await asyncio.sleep(warmup)
        state, counters = sched.state, sched.driver.counters
        t0, busy0, polls0, tx0, err0 = time.monotonic(), state.busy, state.polls, counters.transactions, state.errors
        late0 = sum(ms.late_polls for ms in sched.meters.values())
        seen0 = len(state.lateness)
        await asyncio.sleep(window)
        wall = time.monotonic() - t0
        lateness = list(state.lateness)[min(seen0, len(state.lateness)):] if seen0 < 256 else list(state.lateness)
        return {"utilization": (state.busy - busy0) / wall, "polls": state.polls - polls0,
                "late_polls": sum(ms.late_polls for ms in sched.meters.values()) - late0,
                "lateness_p50": percentile(lateness, 0.5), "lateness_max": max(lateness, default=0.0),
                "errors": state.errors - err0, "transactions": counters.transactions - tx0}
    finally:
        await gw.stop()


def crowded(quick: bool = False) -> dict[str, Any]:
    """(2): N meters on one 2400 baud DL/T 698.45 bus, a schedule larger than the wire."""
    n, interval, warmup, window = (4, "5s", 8.0, 6.0) if quick else (N, INTERVAL, 45.0, 60.0)
    addresses = [f"{u:012d}" for u in range(1, n + 1)]
    points = [{"oad": p.oad, "interval": interval} for p in profile_points(PROFILE)]
    with SimProcess("dlt698", *[x for a in addresses for x in ("--address", a)], "--pty", "--wire-time",
                    str(BAUD)) as sim, tempfile.TemporaryDirectory() as tmp:
        raw = {"gateway": {"id": "bench", "data_dir": str(Path(tmp))},
               "links": {"rs485": {"type": "serial", "port": sim.where, "baudrate": BAUD, "parity": "N",
                                   "timeout": TIMEOUT}},
               "meters": {f"dlt698-{a[-2:]}": {"link": "rs485", "protocol": "dlt698", "address": a,
                                               "profile": PROFILE, "points": points} for a in addresses}}
        r = asyncio.run(_crowded_run(raw, warmup, window))
    print(f"crowded DL/T 698.45 bus, {n} x {PROFILE} at {BAUD} baud, every point every {interval} "
          f"(more than the wire carries), {window:.0f} s after {warmup:.0f} s of warm-up:")
    print(f"  utilization {r['utilization']:.3f} ({r['utilization'] / GOAL:.2f} x the {GOAL} goal), {r['polls']} polls, "
          f"{r['transactions']} transactions, {r['errors']} errors, {r['late_polls']} late polls "
          f"(lateness p50 {r['lateness_p50']:.2f} s, max {r['lateness_max']:.2f} s)")
    return r


def main(quick: bool = False) -> dict[str, Any]:
    return {"wire": wire(quick=quick), "crowded": crowded(quick=quick)}


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
