"""Issue 16 item 1: a late reply must never become the next register's value.

A simulated meter answers some requests after the link's timeout.  RTU has no
transaction id, so only the link's discipline (wait out the silence after a
timeout, flush before each request, accept only the answer to the request just
sent) keeps that stale frame from being read as the answer to the next request
of the same length.  Hundreds of requests go through the real driver over a
real pty and over RTU-over-TCP against ``meterlink simulate --freeze``, whose
values are known exactly: every good reading must be the value of its own
register, and the late answers must show up as timeouts.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.core.errors import FrameError, MeterTimeout
from meterlink.core.reading import Quality
from meterlink.core.registry import create_driver
from meterlink.simulators.modbus import ModbusUnit
from meterlink.simulators.model import MeterModel

PROFILE = "eastron-sdm120"  # eight 2-register blocks per meter: a stale reply fits the next request's length
SEED = 1
TIMEOUT = 0.15
LATE = "240ms"  # after the timeout, well before the next request would be answered


def served(unit: int) -> dict[str, Decimal]:
    """What ``meterlink simulate --freeze --seed SEED`` serves for a unit (its model is deterministic)."""
    return ModbusUnit(unit, profile_points(PROFILE), MeterModel(seed=SEED + unit, frozen=True)).served()


async def _hammer(link_cfg: dict[str, object], tmp_path: Path, requests: int) -> tuple[int, int, int, list[str]]:
    """Read both meters until ``requests`` transactions went out: (good readings, wrong, timeouts, wrong lines)."""
    cfg = parse_config({
        "gateway": {"id": "gw-late", "data_dir": str(tmp_path / "data")},
        "links": {"bus": link_cfg},
        "meters": {f"m{u}": {"link": "bus", "protocol": "modbus", "address": u, "profile": PROFILE} for u in (1, 2)},
    }, base=tmp_path)
    expected = {f"m{u}": served(u) for u in (1, 2)}
    assert expected["m1"] != expected["m2"]
    # the stale-reply hazard needs two registers of one length holding different values
    assert len(set(expected["m1"].values())) > 4
    driver = create_driver(cfg.links["bus"])
    good = 0
    wrong: list[str] = []
    deadline = time.monotonic() + 150
    try:
        while driver.counters.transactions < requests:
            assert time.monotonic() < deadline, f"only {driver.counters.transactions} requests in 150 s"
            # one point per read, as the scheduler asks when points fall due apart: every request then
            # has the length of the next one, so only the link's discipline can tell a stale reply
            batches = [(meter, [p]) for meter in cfg.meters.values() for p in meter.points]
            for meter, points in batches:
                try:
                    results = await driver.read(meter, points)
                except (MeterTimeout, FrameError):
                    continue
                for r in results:
                    if r.quality is not Quality.GOOD:
                        continue
                    good += 1
                    want = expected[meter.id][r.point.obis]
                    if r.value != want:
                        wrong.append(f"{meter.id} {r.point.obis}: read {r.value}, the register holds {want}")
    finally:
        await driver.close()
    return good, len(wrong), driver.counters.timeouts, wrong


@pytest.mark.parametrize("via", ["pty", "rtu-over-tcp"])
def test_late_replies_never_become_another_registers_value(simulate, tmp_path: Path, via: str) -> None:
    where = ["--pty"] if via == "pty" else ["--tcp", "0", "--framing", "rtu"]
    sim = simulate("modbus", "--profile", PROFILE, "--unit", "1", "--unit", "2", *where, "--freeze",
                   "--seed", str(SEED), "--fault", "late:0.15", "--late-delay", LATE)
    if via == "pty":
        link: dict[str, object] = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N"}
    else:
        link = {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "framing": "rtu"}
    link |= {"timeout": f"{int(TIMEOUT * 1000)}ms", "retries": 1}
    requests = 300 if via == "pty" else 200
    good, n_wrong, timeouts, wrong = asyncio.run(_hammer(link, tmp_path, requests))
    assert n_wrong == 0, f"{n_wrong} wrong values reported as good, e.g. " + "; ".join(wrong[:5])
    assert timeouts >= requests * 0.05, f"only {timeouts} timeouts: the late fault did not bite"
    assert good >= requests * 0.5, f"only {good} good readings out of {requests} requests"


DLT645_ADDRESSES = ["123456789012", "000000000002"]
DLT645_PROFILE = "dlt645-generic-3phase"


def test_dlt645_late_replies_never_become_another_identifiers_value(simulate, tmp_path: Path) -> None:
    """DL/T 645 frames carry address and DI: a late reply must be skipped, never read as another DI's value."""
    from meterlink.simulators.dlt645 import Dlt645Meter

    args = [x for a in DLT645_ADDRESSES for x in ("--address", a)]
    sim = simulate("dlt645", *args, "--pty", "--freeze", "--fault", "late:0.15", "--late-delay", LATE)
    cfg = parse_config({
        "gateway": {"id": "gw-late", "data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N",
                          "timeout": f"{int(TIMEOUT * 1000)}ms", "retries": 1}},
        "meters": {f"m-{a}": {"link": "bus", "protocol": "dlt645", "address": a, "profile": DLT645_PROFILE}
                   for a in DLT645_ADDRESSES},
    }, base=tmp_path)
    expected: dict[str, dict[str, Decimal]] = {}
    for i, a in enumerate(DLT645_ADDRESSES):
        model = Dlt645Meter(a, MeterModel(seed=1 + i, frozen=True))
        expected[f"m-{a}"] = {p.obis: model.value_of(p.di or "") for p in profile_points(DLT645_PROFILE)
                              if p.di not in ("04000102", "05060101")}  # type: ignore[misc]
    assert expected[f"m-{DLT645_ADDRESSES[0]}"] != expected[f"m-{DLT645_ADDRESSES[1]}"]

    async def hammer() -> tuple[int, list[str], int]:
        driver = create_driver(cfg.links["bus"])
        good, wrong = 0, []
        deadline = time.monotonic() + 150
        try:
            while driver.counters.transactions < 150:
                assert time.monotonic() < deadline, f"only {driver.counters.transactions} requests in 150 s"
                for meter in cfg.meters.values():
                    for p in meter.points:
                        if p.obis not in expected[meter.id]:
                            continue
                        try:
                            results = await driver.read(meter, [p])
                        except (MeterTimeout, FrameError):
                            continue
                        for r in results:
                            if r.quality is Quality.GOOD:
                                good += 1
                                want = expected[meter.id][r.point.obis]
                                if r.value != want:
                                    wrong.append(f"{meter.id} {r.point.obis}: read {r.value}, the meter holds {want}")
        finally:
            await driver.close()
        return good, wrong, driver.counters.timeouts

    good, wrong, timeouts = asyncio.run(hammer())
    assert not wrong, f"{len(wrong)} wrong values reported as good, e.g. " + "; ".join(wrong[:5])
    assert timeouts >= 150 * 0.05, f"only {timeouts} timeouts: the late fault did not bite"
    assert good >= 150 * 0.5
