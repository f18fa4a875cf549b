"""Issue 17 item 5: ``meterlink scan`` suggests a profile from the registers that name a meter's model.

Vectors are the documented codes, each with its source:
  - ABB B-series: holding 0x8960, 2 registers, ASCII; 0x42323120 'B21 ', 0x42323320 'B23 ', 0x42323420 'B24 '
    (victronenergy/dbus-modbus-client abb.py @ 026a3606204871de1af5b408ee9265f8dadb5910, ModelRegister(Reg_u32b(0x8960))).
  - Carlo Gavazzi EM24 Ethernet: holding 0x000B, uint16, 1648..1653
    (victronenergy/dbus-modbus-client carlo_gavazzi.py @ 08361f485c71cb315664068f69741af817759ea4).
  - Eastron SDM630 V2: holding 0xFC02, uint16, 112 and 121 (community VenusOS Eastron SDM630v2 module for
    dbus-modbus-client, ModelRegister(Reg_u16(0xfc02))).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from meterlink.core.errors import LinkError, MeterRejected, MeterTimeout
from meterlink.drivers.modbus.identify import PROBES, decode_code, identity_registers, suggest_profile
from meterlink.simulators.modbus import ModbusUnit
from meterlink.simulators.model import MeterModel
from testkit.simproc import meterlink, write_config


def _meter(registers: dict[tuple[str, int], int], refuse: type[Exception] = MeterRejected):
    """A read_registers over a fixed register map: what a meter with those registers would answer."""
    calls: list[tuple[str, int, int]] = []

    async def read(function: str, address: int, count: int) -> Sequence[int]:
        calls.append((function, address, count))
        try:
            return [registers[(function, a)] for a in range(address, address + count)]
        except KeyError:
            raise refuse("exception 0x02 (illegal data address)") from None

    return read, calls


@pytest.mark.parametrize(("words", "profile"), [
    ([0x4232, 0x3120], "abb-b21"),   # 'B21 '
    ([0x4232, 0x3320], "abb-b23"),   # 'B23 '
    ([0x4232, 0x3420], "abb-b23"),   # 'B24 ': same 3-phase map as the B23
])
def test_abb_type_designation(words: list[int], profile: str) -> None:
    read, _ = _meter({("holding", 0x8960): words[0], ("holding", 0x8961): words[1]})
    assert asyncio.run(suggest_profile(read)) == profile


@pytest.mark.parametrize("code", [1648, 1649, 1650, 1651, 1652, 1653])
def test_carlo_gavazzi_em24_model_id(code: int) -> None:
    read, _ = _meter({("holding", 0x000B): code})
    assert asyncio.run(suggest_profile(read)) == "carlo-gavazzi-em24"


@pytest.mark.parametrize("code", [112, 121])
def test_eastron_meter_code(code: int) -> None:
    read, calls = _meter({("holding", 0xFC02): code})
    assert asyncio.run(suggest_profile(read)) == "eastron-sdm630"
    assert calls == [("holding", 0xFC02, 1)]  # the first probe matched: no further reads on the bus


def test_unknown_codes_suggest_nothing() -> None:
    """A code not in the table is no evidence: the generic hint stays (a wrong profile reads wrong values as good)."""
    read, calls = _meter({("holding", 0xFC02): 0x0020, ("holding", 0x8960): 0x4232, ("holding", 0x8961): 0x3520,
                          ("holding", 0x000B): 1700})
    assert asyncio.run(suggest_profile(read)) is None
    assert [c[1] for c in calls] == [p.register for p in PROBES]


def test_silent_and_refusing_registers_mean_not_this_maker() -> None:
    read, _ = _meter({("holding", 0x000B): 1651}, refuse=MeterTimeout)
    assert asyncio.run(suggest_profile(read)) == "carlo-gavazzi-em24"


def test_a_lost_link_is_not_a_no() -> None:
    read, _ = _meter({}, refuse=LinkError)
    with pytest.raises(LinkError):
        asyncio.run(suggest_profile(read))


def test_decode_of_short_or_non_ascii_answers() -> None:
    abb = next(p for p in PROBES if p.maker == "ABB")
    assert decode_code(abb, [0x4232]) is None
    assert decode_code(abb, [0xC232, 0x3320]) is None


def test_simulator_identity_is_the_inverse_of_the_table() -> None:
    """The simulator's --identity serves exactly what the probe decodes back to the same profile."""
    for profile in ("abb-b21", "abb-b23", "carlo-gavazzi-em24", "eastron-sdm630"):
        regs = identity_registers(profile)
        unit = ModbusUnit(1, [], MeterModel(seed=1, frozen=True), identity=regs)
        first = min(regs)
        assert unit.read("holding", first, len(regs)) == [regs[a] for a in sorted(regs)]
    assert identity_registers("chint-dtsu666") == {}  # no identifying register known
    assert identity_registers("eastron-sdm120") == {}


def _link_only(tmp_path: Path, port: str) -> Path:
    return write_config(tmp_path / "scan.yaml", {
        "gateway": {"id": "gw-ident", "data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": port, "baudrate": 9600, "parity": "N", "timeout": "1s"}},
        "meters": {}})


@pytest.mark.parametrize(("profile", "unit"), [("abb-b23", 2), ("carlo-gavazzi-em24", 3)])
def test_scan_over_a_pty_suggests_the_identified_profile(simulate, tmp_path: Path, profile: str, unit: int) -> None:
    sim = simulate("modbus", "--profile", profile, "--unit", str(unit), "--pty", "--identity")
    r = meterlink("scan", "-c", str(_link_only(tmp_path, sim.where)), "--link", "bus", "--protocol", "modbus",
                  "--range", "1-3", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"address: {unit}\n    profile: {profile}   # " in r.stdout, r.stdout
    assert "suggested; check the nameplate" in r.stdout
    assert r.stdout.count("protocol: modbus") == 1


def test_scan_keeps_the_generic_hint_without_an_identity(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "abb-b23", "--unit", "2", "--pty")
    r = meterlink("scan", "-c", str(_link_only(tmp_path, sim.where)), "--link", "bus", "--protocol", "modbus",
                  "--range", "1-3", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "profile: eastron-sdm630   # set the profile of this meter model" in r.stdout, r.stdout


def test_identity_for_a_profile_without_one_is_a_one_line_error(tmp_path: Path) -> None:
    r = meterlink("simulate", "modbus", "--profile", "chint-dtsu666", "--pty", "--identity", timeout=30)
    assert r.returncode == 2 and "--identity" in r.stderr and "chint-dtsu666" in r.stderr
