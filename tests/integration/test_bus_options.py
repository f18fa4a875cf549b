"""Bus timing options users ask every gateway for: a pause between transactions, echoing adapters.

A simulated meter with a slow transceiver (``--turnaround``) does not hear a
request that comes sooner than that after its last reply; with the link's
``pause`` set, every value is exact with zero retries, and without it the
retries show.  An echoing adapter (``--echo``: every byte sent comes straight
back) is read exactly with ``echo: true``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.core.registry import create_driver
from meterlink.simulators.modbus import ModbusUnit
from meterlink.simulators.model import MeterModel

PROFILE = "eastron-sdm630"


def served(unit: int, seed: int = 1) -> dict[str, Decimal]:
    return ModbusUnit(unit, profile_points(PROFILE), MeterModel(seed=seed + unit, frozen=True)).served()


async def _read_twice(link: dict[str, Any], tmp_path: Path) -> tuple[dict[str, Decimal | None], Any]:
    cfg = parse_config({"gateway": {"id": "gw-bus", "data_dir": str(tmp_path / "data")}, "links": {"bus": link},
                        "meters": {"m1": {"link": "bus", "protocol": "modbus", "address": 1, "profile": PROFILE}}},
                       base=tmp_path)
    driver = create_driver(cfg.links["bus"])
    meter = cfg.meters["m1"]
    await driver.open()
    try:
        results = []
        for _ in range(2):
            results = await driver.read(meter, meter.points)
    finally:
        await driver.close()
    return {r.point.obis: r.value for r in results}, driver.counters


@pytest.mark.parametrize("pause", [None, "120ms"])
def test_pause_lets_a_slow_transceiver_hear_every_request(simulate, tmp_path: Path, pause: str | None) -> None:
    sim = simulate("modbus", "--profile", PROFILE, "--pty", "--freeze", "--turnaround", "100ms")
    link: dict[str, Any] = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms",
                            "retries": 2}
    if pause:
        link["pause"] = pause
    values, counters = asyncio.run(_read_twice(link, tmp_path))
    if pause is None:
        assert counters.timeouts > 0, "the slow transceiver should have missed requests sent straight after a reply"
        return
    assert counters.timeouts == 0, f"{counters.timeouts} requests went unheard with pause {pause}"
    assert values == served(1)


@pytest.mark.parametrize("echo", [False, True])
def test_echoing_adapter(simulate, tmp_path: Path, echo: bool) -> None:
    sim = simulate("modbus", "--profile", PROFILE, "--pty", "--freeze", "--echo")
    link = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms", "echo": echo}
    values, counters = asyncio.run(_read_twice(link, tmp_path))
    assert values == served(1)
    if echo:
        assert counters.timeouts == 0


def test_a_meters_own_pause_overrides_the_links(simulate, tmp_path: Path) -> None:
    """One slow meter among fast ones: its own ``pause`` makes it hear every request, the link keeps none."""
    sim = simulate("modbus", "--profile", PROFILE, "--pty", "--freeze", "--turnaround", "100ms")
    link: dict[str, Any] = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms",
                            "retries": 2}

    async def read() -> tuple[dict[str, Decimal | None], Any]:
        cfg = parse_config({"gateway": {"id": "gw-bus", "data_dir": str(tmp_path / "data")}, "links": {"bus": link},
                            "meters": {"m1": {"link": "bus", "protocol": "modbus", "address": 1, "profile": PROFILE,
                                              "pause": "120ms"}}}, base=tmp_path)
        assert cfg.links["bus"].mixed  # a meter with its own pause goes through the bus driver
        driver = create_driver(cfg.links["bus"])
        meter = cfg.meters["m1"]
        await driver.open()
        try:
            results = []
            for _ in range(2):
                results = await driver.read(meter, meter.points)
        finally:
            await driver.close()
        return {r.point.obis: r.value for r in results}, driver.counters

    values, counters = asyncio.run(read())
    assert counters.timeouts == 0, f"{counters.timeouts} requests went unheard with the meter's own pause"
    assert values == served(1)


def test_a_reply_longer_than_the_timeout_is_read_to_its_end(simulate, tmp_path: Path) -> None:
    """The timeout is for a reply to begin: a 33-value DL/T 698.45 list takes ~2.3 s of wire at 2400 baud."""
    sim = simulate("dlt698", "--address", "000000000001", "--pty", "--freeze", "--wire-time", "2400")

    async def read() -> tuple[list[Any], Any]:
        cfg = parse_config({"gateway": {"id": "gw-long", "data_dir": str(tmp_path / "data")},
                            "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 2400, "parity": "N",
                                              "timeout": "1s", "retries": 0}},
                            "meters": {"m": {"link": "bus", "protocol": "dlt698", "address": "000000000001",
                                             "profile": "dlt698-generic-3phase"}}}, base=tmp_path)
        driver = create_driver(cfg.links["bus"])
        meter = cfg.meters["m"]
        await driver.open()
        try:
            await driver.read(meter, meter.points)  # the first poll also reads the scaler-units
            return await driver.read(meter, meter.points), driver.counters
        finally:
            await driver.close()

    results, counters = asyncio.run(read())
    assert counters.timeouts == 0, "a long reply was cut off by the reply timeout"
    assert results and all(r.error is None for r in results), [r.error for r in results if r.error][:3]


@pytest.mark.parametrize("protocol", ["modbus", "dlt645"])
@pytest.mark.parametrize("connect_pause", [None, "400ms"])
def test_connect_pause_for_a_device_server_that_drops_the_first_request(simulate, tmp_path: Path, protocol: str,
                                                                         connect_pause: str | None) -> None:
    """A serial device server deaf for 300 ms after a TCP connect: ``connect_pause`` waits it out."""
    if protocol == "modbus":  # Modbus TCP through pymodbus
        sim = simulate("modbus", "--profile", PROFILE, "--tcp", "0", "--freeze", "--deaf-after-connect", "300ms")
        meter: dict[str, Any] = {"protocol": "modbus", "address": 1, "profile": PROFILE}
    else:  # DL/T 645 through the transport
        sim = simulate("dlt645", "--address", "000000000001", "--tcp", "0", "--freeze", "--deaf-after-connect",
                       "300ms")
        meter = {"protocol": "dlt645", "address": "000000000001", "profile": "dlt645-generic-1phase"}
    link: dict[str, Any] = {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "200ms", "retries": 0}
    if connect_pause:
        link["connect_pause"] = connect_pause

    async def first_read() -> tuple[list[Any], Any]:
        cfg = parse_config({"gateway": {"id": "gw-cp", "data_dir": str(tmp_path / "data")}, "links": {"t": link},
                            "meters": {"m": {"link": "t", **meter}}}, base=tmp_path)
        driver = create_driver(cfg.links["t"])
        m = cfg.meters["m"]
        await driver.open()
        try:
            return await driver.read(m, m.points), driver.counters
        except Exception as exc:  # the first request went unheard
            return [exc], driver.counters
        finally:
            await driver.close()

    results, counters = asyncio.run(first_read())
    if connect_pause is None:
        assert counters.timeouts >= 1, "the first request right after the connect should have gone unheard"
    else:
        assert counters.timeouts == 0 and all(getattr(r, "error", "x") is None for r in results), results[:2]
