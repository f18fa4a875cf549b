"""Bus efficiency: one simulated SDM630 at 9600 baud with wire-time emulation, every point due.

The simulator (a separate process on a real pty) delays each reply by the
true wire time of its transaction (11-bit characters + t3.5), so a cycle can
never beat the physical limit; the figure is how close Meterlink gets to it.
Compared with (a) the wire time of the minimal plan and (b) one request per
point, the way most gateways poll.  Goal (issue 6): cycle <= 1.10 x (a).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.util import SimProcess
from meterlink.core.config import parse_config
from meterlink.core.registry import create_driver
from meterlink.drivers.modbus.plan import plan_blocks, request_overhead
from meterlink.drivers.modbus.points import options
from meterlink.simulators.wire import modbus_read_bytes, modbus_rtu_transaction

BAUD = 9600
GOAL = 1.10


def _meter_config(port: str, per_point: bool) -> Any:
    meter: dict[str, Any] = {"link": "bus", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"}
    if per_point:
        meter.update(max_registers=2, max_gap=0)  # every float32 point its own request
    return parse_config({"links": {"bus": {"type": "serial", "port": port, "baudrate": BAUD, "parity": "N",
                                           "timeout": "1s"}},
                         "meters": {"m": meter}})


def wire_time(cfg: Any) -> tuple[int, float]:
    m = cfg.meters["m"]
    max_registers, max_gap, forbidden = options(m)
    blocks = plan_blocks(m.points, max_registers=max_registers, max_gap=max_gap, forbidden=forbidden,
                         overhead=request_overhead(rtu=True, baudrate=BAUD))  # the driver's own default plan
    return len(blocks), sum(modbus_rtu_transaction(BAUD, *modbus_read_bytes(b.count)) for b in blocks)


async def _cycles(cfg: Any, n: int) -> list[float]:
    driver = create_driver(cfg.links["bus"])
    await driver.open()
    m = cfg.meters["m"]
    times = []
    try:
        await driver.read(m, m.points)  # warm-up: plan cached, port settled
        for _ in range(n):
            t0 = time.perf_counter()
            results = await driver.read(m, m.points)
            times.append(time.perf_counter() - t0)
            assert all(r.error is None for r in results), [r.error for r in results if r.error]
    finally:
        await driver.close()
    return times


def main(quick: bool = False) -> dict[str, float]:
    n = 3 if quick else 20
    with SimProcess("modbus", "--profile", "eastron-sdm630", "--unit", "1", "--pty", "--wire-time", str(BAUD),
                    "--freeze") as sim:
        minimal = _meter_config(sim.where, per_point=False)
        naive = _meter_config(sim.where, per_point=True)
        tx_min, wire_min = wire_time(minimal)
        tx_naive, wire_naive = wire_time(naive)
        cycle_min = statistics.median(asyncio.run(_cycles(minimal, n)))
        cycle_naive = statistics.median(asyncio.run(_cycles(naive, max(2, n // 4))))
    points = len(minimal.meters["m"].points)
    ratio = cycle_min / wire_min
    print(f"bus efficiency, SDM630 ({points} points) at {BAUD} baud with wire-time emulation, median of {n} cycles:")
    print(f"  meterlink plan     : {tx_min:2d} transactions, cycle {cycle_min * 1000:7.1f} ms, wire time of the plan "
          f"{wire_min * 1000:7.1f} ms -> {ratio:.3f} x the physical limit (goal <= {GOAL})")
    print(f"  one request / point: {tx_naive:2d} transactions, cycle {cycle_naive * 1000:7.1f} ms (wire time "
          f"{wire_naive * 1000:7.1f} ms) -> {cycle_naive / cycle_min:.1f} x slower than meterlink's plan")
    return {"transactions": tx_min, "cycle_s": cycle_min, "wire_s": wire_min, "ratio": ratio,
            "naive_transactions": tx_naive, "naive_cycle_s": cycle_naive}


if __name__ == "__main__":
    main()
