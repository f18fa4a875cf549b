"""Issue 14 item 3: a gateway imports only what its configuration uses.

The installed package (``METERLINK_VENV``, as users run it; else this tree) is
asked, in a fresh interpreter, to do what ``meterlink run`` does before it
polls: build the command line, have a Modbus-only configuration with an MQTT
sink and no HTTP validated by its child process, and make the gateway with
its drivers and sinks.  Then the modules it loaded are listed: no other
protocol's package, no simulator, no HTTP server, no rich, prometheus-client,
influxdb-client or dlms-cosem, and no pydantic, PyYAML or packaging metadata
(the child validated the file: :mod:`meterlink.core.config.child`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from testkit.simproc import INSTALLED_VENV, write_config

SCRIPT = """
import json, sys
from meterlink.apps.cli import build_parser
args = build_parser(simulate=False).parse_args(["run", "-c", sys.argv[1]])
from meterlink.core.config import load_validated
import meterlink.apps.run
from meterlink.core.registry import create_driver
from meterlink.engine.gateway import Gateway
config = load_validated(args.config)
Gateway(config)._make_sinks()  # what start() makes before the links poll
drivers = [create_driver(link) for link in config.links.values()]
print(json.dumps(sorted(sys.modules)))
"""

FORBIDDEN = ("meterlink.drivers.dlms", "meterlink.drivers.dlt645", "meterlink.drivers.dlt698", "meterlink.simulators",
             "meterlink.apps.http", "meterlink.engine.metrics", "meterlink.engine.sinks.influx", "rich",
             "prometheus_client", "influxdb_client", "dlms_cosem", "cryptography", "pydantic", "pydantic_core", "yaml",
             "importlib.metadata", "meterlink.core.config.schema", "meterlink.drivers.modbus.schema")


def test_a_modbus_mqtt_gateway_imports_no_other_protocol_nor_unconfigured_parts(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-lazy", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 1502, "timeout": "1s"}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"}},
        "sinks": {"mqtt": {"host": "127.0.0.1", "port": 1883}},
    })
    python = str(Path(INSTALLED_VENV) / "bin" / "python") if INSTALLED_VENV else sys.executable
    r = subprocess.run([python, "-c", SCRIPT, str(cfg)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout.splitlines()[-1])
    assert "meterlink.drivers.modbus.driver" in loaded and "meterlink.engine.sinks.mqtt" in loaded  # it did load
    unwanted = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not unwanted, f"a Modbus + MQTT gateway imported {unwanted}"
