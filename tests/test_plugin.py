"""A protocol is a package and one entry-point line: a third-party toy protocol, installed beside Meterlink.

``tests/toyproto`` is its own distribution (pyproject with a ``meterlink.protocols``
entry point).  Installed into a venv that sees the installed Meterlink and
nothing else of ours, it is checked, read and run by Meterlink's unchanged
commands: the configuration accepts its point keys and refuses unknown ones, the
driver is found through the registry, and readings reach the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from testkit.simproc import INSTALLED_VENV, REPO

TOY = REPO / "tests" / "toyproto"


@pytest.fixture(scope="module")
def toy_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the toy plug-in, seeing Meterlink (the installed wheel under make test) and its dependencies."""
    base = Path(INSTALLED_VENV) if INSTALLED_VENV else Path(sys.prefix)
    venv = tmp_path_factory.mktemp("toy") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    base_site = next((base / "lib").glob("python3*/site-packages"))
    (site / "meterlink-base.pth").write_text(f"import site; site.addsitedir({str(base_site)!r})\n")
    source = venv.parent / "toyproto"  # built from a copy: the build leaves nothing in the source tree
    shutil.copytree(TOY, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    return venv / "bin" / "python"


def _meterlink(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), "-m", "meterlink.apps.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd="/", env=env)


def _config(tmp_path: Path, points: list[dict[str, object]]) -> Path:
    meter_file = tmp_path / "meter.json"
    meter_file.write_text(json.dumps({"channels": {"1": "230.7", "2": "1234.56"}}))
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({
        "gateway": {"id": "gw-toy", "data_dir": str(tmp_path / "data")},
        "links": {"files": {"type": "tcp", "host": "127.0.0.1", "port": 1}},
        "meters": {"toy-1": {"link": "files", "protocol": "toy", "address": str(meter_file), "points": points}}}))
    return cfg


def test_a_third_party_protocol_is_checked_and_read(toy_python: Path, tmp_path: Path) -> None:
    points = [{"obis": "1.0.32.7.0.255", "channel": 1, "unit": "V"}, {"obis": "1.0.1.8.0.255", "channel": 2,
                                                                       "unit": "kWh"}]
    cfg = _config(tmp_path, points)
    r = _meterlink(toy_python, "check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    r = _meterlink(toy_python, "read", "-c", str(cfg), "--format", "json")
    assert r.returncode == 0, r.stderr
    got = {x["obis"]: x for x in map(lambda line: json.loads(line, parse_float=Decimal), r.stdout.splitlines())}
    assert got["1.0.32.7.0.255"]["value"] == Decimal("230.7") and got["1.0.32.7.0.255"]["unit"] == "V"
    assert got["1.0.1.8.0.255"]["value"] == Decimal("1234.56") and got["1.0.1.8.0.255"]["quality"] == "good"


def test_the_toy_protocols_own_keys_are_checked_with_plain_lines(toy_python: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, [{"obis": "1.0.32.7.0.255", "chanel": 1}])
    r = _meterlink(toy_python, "check", "-c", str(cfg))
    assert r.returncode == 2
    assert "meters.toy-1.points[0].chanel: unknown key, did you mean `channel`?" in r.stderr, r.stderr
    cfg = _config(tmp_path, [{"obis": "1.0.32.7.0.255"}])
    r = _meterlink(toy_python, "check", "-c", str(cfg))
    assert r.returncode == 2 and "meters.toy-1.points[0].channel: required for a toy point" in r.stderr, r.stderr


def test_the_toy_meter_is_polled_into_the_journal(toy_python: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, [{"obis": "1.0.32.7.0.255", "channel": 1, "interval": "1s"}])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    gw = subprocess.Popen([str(toy_python), "-m", "meterlink.apps.cli", "run", "-c", str(cfg)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/", env=env)
    journal = tmp_path / "data" / "journal.sqlite"
    try:
        from testkit.simproc import wait_until

        def journaled() -> bool:
            if not journal.exists():
                return False
            try:
                with sqlite3.connect(journal) as con:
                    return con.execute("SELECT count(*) FROM batches WHERE meter = 'toy-1'").fetchone()[0] >= 2
            except sqlite3.OperationalError:  # the gateway is creating the journal's tables right now
                return False
        assert wait_until(journaled, timeout=30), gw.stderr.read() if gw.poll() is not None else "no batches"
    finally:
        gw.terminate()
        gw.wait(10)
    assert gw.returncode == 0
