"""Mixed buses: several protocols and several line settings on one serial port, every value exact.

One pty carries a Modbus meter (9600 baud), a DL/T 645-2007 and a DL/T 645-1997 meter
(2400 and 1200 baud) and a DL/T 698.45 meter (4800 baud), as a substation's RS-485 pair
may.  (A Linux pty keeps the baud rate it is given but no parity bit, so this test
switches rates at 8N1; on a real adapter parity switches the same way.)
``testkit/mixedbus.py`` serves them; since a pty carries bytes whatever its line settings,
it also reads, as an independent witness, the port's settings when each
request arrived, so the test sees that the gateway really switched the port per meter.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from meterlink.core.config import profile_points
from meterlink.drivers.dlt698.data import Oad, scaled
from meterlink.drivers.dlt698.oads import parse_oad
from meterlink.simulators.dlt698_cli import FROZEN_AT
from testkit import mixedbus
from testkit.simproc import REPO, meterlink, write_config

CLOCKS = {"0.0.1.0.0.255"}


def _expected() -> dict[str, dict[str, Decimal]]:
    unit = mixedbus.modbus_unit()
    out: dict[str, dict[str, Decimal]] = {"modbus": unit.served()}
    for meter_id, (address, profile, standard) in {
            "dlt645": (mixedbus.DLT645_2007, "dlt645-generic-3phase", "2007"),
            "dlt645-1997": (mixedbus.DLT645_1997, "dlt645-1997-generic", "1997")}.items():
        meter = mixedbus.dlt645_meters()[address]
        values = {}
        for p in profile_points(profile):
            if p.obis in CLOCKS:
                continue
            v = meter.value_of_1997(p.di) if standard == "1997" else meter.value_of(p.di)
            values[p.obis] = v
        out[meter_id] = values
    meter698 = mixedbus.dlt698_meter()
    values = {}
    for p in profile_points("dlt698-generic-3phase"):
        oad = parse_oad(p.oad)
        if oad.oi == 0x4000:
            continue
        data = meter698.read(oad, FROZEN_AT)
        su = meter698.attribute(Oad(oad.oi, 3, 0), FROZEN_AT)
        values[p.obis] = scaled(data.value, su.value.scaler)
    out["dlt698"] = values
    return out


def test_four_meters_three_protocols_four_line_settings_on_one_port(tmp_path: Path) -> None:
    sim = subprocess.Popen([sys.executable, "-m", "testkit.mixedbus"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, cwd=REPO)
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert line.startswith("serving mixed bus on "), line + (sim.stderr.read() if sim.stderr else "")
        port = line.strip().rsplit(" ", 1)[1]
        cfg = write_config(tmp_path / "mixed.yaml", {
            "gateway": {"id": "gw-mixed", "data_dir": str(tmp_path / "data")},
            "links": {"rs485": {"type": "serial", "port": port, "timeout": "500ms"}},  # no line: each meter's own
            "meters": {
                "modbus": {"link": "rs485", "protocol": "modbus", "address": mixedbus.MODBUS_UNIT,
                           "profile": mixedbus.MODBUS_PROFILE, "baudrate": 9600, "parity": "N"},
                "dlt645": {"link": "rs485", "protocol": "dlt645", "address": mixedbus.DLT645_2007,
                           "profile": "dlt645-generic-3phase", "baudrate": 2400, "parity": "N"},
                "dlt645-1997": {"link": "rs485", "protocol": "dlt645", "address": mixedbus.DLT645_1997,
                                "standard": "1997", "profile": "dlt645-1997-generic", "baudrate": 1200,
                                "parity": "N"},
                "dlt698": {"link": "rs485", "protocol": "dlt698", "address": mixedbus.DLT698,
                           "profile": "dlt698-generic-3phase", "baudrate": 4800, "parity": "N"},
            }})
        r = meterlink("read", "-c", str(cfg), "--format", "json", timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        sim.send_signal(signal.SIGTERM)
        out, _ = sim.communicate(timeout=10)
    readings = [json.loads(x, parse_float=Decimal) for x in r.stdout.splitlines()]
    for meter_id, expected in _expected().items():
        mine = {x["obis"]: x for x in readings if x["meter"] == meter_id and x["meter_ts"] is None}
        for obis, value in expected.items():
            assert mine[obis]["quality"] == "good", mine[obis]
            assert mine[obis]["value"] == value, f"{meter_id} {obis}: read {mine[obis]['value']}, served {value}"
    # the same quantity under the same OBIS code from every generation
    assert all("1.0.1.8.0.255" in {x["obis"] for x in readings if x["meter"] == m}
               for m in ("modbus", "dlt645", "dlt645-1997", "dlt698"))
    # the independent witness: each protocol's requests arrived with its own line settings
    seen = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    rates = {(s["protocol"], s["baudrate"]) for s in seen}
    assert rates == {("modbus", 9600), ("dlt645", 2400), ("dlt645", 1200), ("dlt698", 4800)}, rates
