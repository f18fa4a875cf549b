"""``meterlink run`` validates its configuration in a child process and runs on what comes back (issue 14 item 3).

What the gateway receives must be what ``check_config`` makes in-process, to
the last point, with no secret in any repr; a configuration with problems
must fail with exactly the lines ``meterlink check`` prints.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from meterlink.core.config import ConfigProblems, Settings, check_config, load_validated
from testkit.simproc import write_config


def _gateway(tmp_path: Path, **sinks: object) -> Path:
    return write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-child", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 1502, "timeout": "300ms"},
                  "bus": {"type": "serial", "port": "/dev/ttyUSB7", "baudrate": 2400}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"},
                   "d1": {"link": "bus", "protocol": "dlt645", "address": "000000000001", "interval": "15s",
                          "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"}]}},
        "sinks": sinks,
    })


def test_the_child_hands_back_what_check_config_makes(tmp_path: Path) -> None:
    path = _gateway(tmp_path, mqtt={"host": "127.0.0.1", "username": "u", "password": "s3cret-pw"})
    here, there = check_config(path), load_validated(path)
    assert there == here
    assert there.meters["m1"].points == here.meters["m1"].points and len(there.meters["m1"].points) > 20
    assert there.links["bus"].serial and not there.links["t"].serial
    assert there.links["t"].drivers == (("modbus", "meterlink.drivers.modbus.driver:ModbusDriver"),)
    assert there.warnings == here.warnings  # the serial port that is not there (yet?)
    assert any("ttyUSB7" in w for w in there.warnings)


def test_settings_are_read_only_and_keep_secrets_out_of_their_repr(tmp_path: Path) -> None:
    cfg = load_validated(_gateway(tmp_path, mqtt={"username": "u", "password": "s3cret-pw"},
                                  influxdb={"url": "http://127.0.0.1:1", "token": "t0ken-value"}))
    assert isinstance(cfg.sinks.mqtt, Settings) and cfg.sinks.mqtt.password == "s3cret-pw"
    shown = repr(cfg.sinks) + repr(cfg)
    assert "s3cret-pw" not in shown and "t0ken-value" not in shown and "username='u'" in shown
    with pytest.raises(AttributeError, match="read-only"):
        cfg.sinks.mqtt.port = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    probe = cfg.links["t"].for_probing(0.05)
    assert (probe.config.timeout, probe.config.retries, cfg.links["t"].config.timeout) == (0.05, 0, 0.3)


def test_problems_come_back_as_the_lines_check_prints(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", {
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 1502, "timout": "1s"}},
        "meters": {"m1": {"link": "u", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630"}},
    })
    with pytest.raises(ConfigProblems) as here:
        check_config(path)
    with pytest.raises(ConfigProblems) as there:
        load_validated(path)
    assert [str(p) for p in there.value.problems] == [str(p) for p in here.value.problems]
    assert any(p.key_path == "links.t.timout" for p in there.value.problems)


def test_the_lazy_package_names_what_it_loads() -> None:
    """``meterlink.core.config`` loads each public name from the module ``_WHERE`` says (PEP 562); the imports
    under TYPE_CHECKING tell static readers the same: the two lists must agree, and every name must load."""
    import ast

    import meterlink.core.config as package

    tree = ast.parse(Path(package.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    typed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    where = {name: m if "." in m else f"meterlink.core.config.{m}" for name, m in package._WHERE.items()}
    assert typed == where
    assert all(getattr(package, name) is not None for name in package.__all__)
