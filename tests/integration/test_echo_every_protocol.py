"""Every protocol read through an echoing RS-485 adapter (``links.<id>.echo: true``).

The simulated adapter (``--echo``) sends every byte the gateway transmits
straight back, as a two-wire adapter that hears itself does.  With ``echo:
true`` the transport reads back exactly those bytes and drops them, so no
decoder depends on hunting past them.  Each protocol's values through the
echoing adapter must equal those of the same frozen meter on a quiet line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from testkit.simproc import meterlink, write_config

CASES: dict[str, tuple[list[str], dict[str, Any]]] = {
    "modbus": (["modbus", "--profile", "eastron-sdm630", "--unit", "1"],
               {"protocol": "modbus", "address": 1, "profile": "eastron-sdm630"}),
    "dlt645": (["dlt645", "--address", "000000000101"],
               {"protocol": "dlt645", "address": "000000000101", "profile": "dlt645-generic-3phase"}),
    "dlt698": (["dlt698", "--address", "000000000201"],
               {"protocol": "dlt698", "address": "000000000201", "profile": "dlt698-generic-3phase"}),
    "dlms": (["dlms"], {"protocol": "dlms", "address": {"client": 16, "logical": 1, "physical": 17},
                        "profile": "dlms-generic-3phase", "transport": "hdlc"}),
}
CLOCKS = {"0.0.1.0.0.255"}  # a clock's drift moves between two reads of the same meter


def _values(simulate, tmp_path: Path, protocol: str, echo: bool) -> dict[str, Decimal]:
    sim_args, meter = CASES[protocol]
    sim = simulate(*sim_args, "--pty", "--freeze", *(["--echo"] if echo else []))
    cfg = write_config(tmp_path / f"{protocol}-{echo}.yaml", {
        "gateway": {"id": "gw-echo", "data_dir": str(tmp_path / f"data-{echo}")},
        "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "500ms",
                          "echo": echo}},
        "meters": {"m": {"link": "bus", **meter}}})
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    readings = [json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines()]
    bad = [x for x in readings if x["quality"] != "good"]
    assert not bad, bad[:3]
    return {x["obis"]: x["value"] for x in readings if x["meter_ts"] is None and x["obis"] not in CLOCKS}


@pytest.mark.parametrize("protocol", sorted(CASES))
def test_read_through_an_echoing_adapter(simulate, tmp_path: Path, protocol: str) -> None:
    quiet = _values(simulate, tmp_path, protocol, echo=False)
    echoed = _values(simulate, tmp_path, protocol, echo=True)
    assert len(quiet) >= 5
    assert echoed == quiet
