"""``meterlink read`` against simulated meters over a real pty and real TCP sockets."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core.config import profile_points
from meterlink.simulators.modbus import ModbusUnit
from meterlink.simulators.model import MeterModel
from testkit.simproc import meterlink, write_config


def served(profile: str, unit: int, seed: int = 1) -> dict[str, Decimal]:
    """What ``meterlink simulate --freeze --seed SEED`` serves for a unit (its model is deterministic)."""
    return ModbusUnit(unit, profile_points(profile), MeterModel(seed=seed + unit, frozen=True)).served()


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line, parse_float=Decimal) for line in stdout.splitlines()]


def _assert_exact(readings: list[dict[str, object]], meter: str, expected: dict[str, Decimal]) -> None:
    mine = {r["obis"]: r for r in readings if r["meter"] == meter}
    assert set(mine) == set(expected), f"{meter}: read {sorted(mine)} but the simulator serves {sorted(expected)}"
    for obis, value in expected.items():
        r = mine[obis]
        assert r["quality"] == "good", r
        assert r["value"] == value, f"{meter} {obis}: read {r['value']}, served {value}"


def test_rtu_over_pty_two_units_on_one_bus(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm630", "--unit", "1", "--unit", "2", "--pty", "--freeze")
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-t", "data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "500ms"}},
        "meters": {"m1": {"link": "bus", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"},
                   "m2": {"link": "bus", "protocol": "modbus", "address": 2, "profile": "eastron-sdm630"}},
    })
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    readings = _json_lines(r.stdout)
    _assert_exact(readings, "m1", served("eastron-sdm630", 1))
    _assert_exact(readings, "m2", served("eastron-sdm630", 2))
    assert served("eastron-sdm630", 1) != served("eastron-sdm630", 2)
    for line in r.stdout.splitlines():
        assert "0000000" not in line and "9999999" not in line, f"binary-float noise in {line}"
    one = readings[0]
    assert one["gateway"] == "gw-t" and one["meter_ts"] is None and str(one["ts"]).endswith("Z")


@pytest.mark.parametrize(("framing", "profile"), [("socket", "chint-dtsu666"), ("rtu", "eastron-sdm120")])
def test_tcp_socket_and_rtu_framing(simulate, tmp_path: Path, framing: str, profile: str) -> None:
    sim = simulate("modbus", "--profile", profile, "--unit", "7", "--tcp", "0", "--framing", framing, "--freeze",
                   "--seed", "5")
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-t", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "framing": framing,
                        "timeout": "500ms"}},
        "meters": {"m7": {"link": "t", "protocol": "modbus", "address": 7, "profile": profile}},
    })
    r = meterlink("read", "-c", str(cfg), "--format", "json", "--meter", "m7")
    assert r.returncode == 0, r.stderr
    _assert_exact(_json_lines(r.stdout), "m7", served(profile, 7, seed=5))


def _faulty_bus(simulate, tmp_path: Path, fault: str) -> Path:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--pty", "--freeze",
                   "--fault", f"{fault}@2", "--late-delay", "1s")
    return write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-t", "data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms",
                          "retries": 1}},
        "meters": {"good": {"link": "bus", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"},
                   "bad": {"link": "bus", "protocol": "modbus", "address": 2, "profile": "eastron-sdm120"}},
    })


@pytest.mark.parametrize(("fault", "message"), [
    ("silent", "bad: no reply within 0.3 s x 2 tries"),
    ("late", "bad: no reply within 0.3 s x 2 tries"),
    ("crc", "bad: CRC error in reply"),
    ("truncate", "bad: truncated reply"),
    ("exception", "bad: no valid value: exception 0x04 (server device failure)"),
])
def test_faulty_meter_gives_one_clear_line_and_the_others_are_read(simulate, tmp_path: Path, fault: str,
                                                                    message: str) -> None:
    cfg = _faulty_bus(simulate, tmp_path, fault)
    t0 = time.monotonic()
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert "Traceback" not in r.stderr
    readings = _json_lines(r.stdout)
    _assert_exact(readings, "good", served("eastron-sdm120", 1))
    if fault == "exception":
        bad = [x for x in readings if x["meter"] == "bad"]
        assert bad and all(x["quality"] == "invalid" and x["value"] is None for x in bad)
    assert time.monotonic() - t0 < 20


def test_unknown_meter_and_dead_link(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"data_dir": str(tmp_path / "data")},
        "links": {"nowhere": {"type": "serial", "port": str(tmp_path / "ttyNONE")},
                  "refused": {"type": "tcp", "host": "127.0.0.1", "port": 1, "timeout": "300ms"}},
        "meters": {"a": {"link": "nowhere", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"},
                   "b": {"link": "refused", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
    })
    r = meterlink("read", "-c", str(cfg), "--meter", "zz")
    assert r.returncode == 2 and "no meter named zz" in r.stderr
    r = meterlink("read", "-c", str(cfg))
    assert r.returncode == 1, r.stderr
    lines = sorted(r.stderr.strip().splitlines())
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("a: link nowhere") and "cannot open" in lines[0]
    assert lines[1].startswith("b: link refused") and "cannot open 127.0.0.1:1" in lines[1]
    assert "Traceback" not in r.stderr
