"""Configuration: every bad-config case names the right key path; every shipped file loads."""

from __future__ import annotations

import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core.config import ConfigProblems, check_config, load_config, parse_config, profile_points
from meterlink.core.config.profiles import builtin_names, load_profile
from testkit.simproc import meterlink_cmd

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case)
    expected = (case / "expected.err").read_text().splitlines()
    assert expected, f"{case.name}: expected.err is empty"
    with pytest.raises(ConfigProblems) as info:
        check_config("gateway.yaml")  # what `meterlink check` runs: the file and every file it names
    got = [str(p) for p in info.value.problems]
    assert len(got) == len(expected), got
    for line, want in zip(got, expected, strict=True):
        # "..." stands for any text: a list that grows with the build, an absolute path
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, line), (line, want)


def test_at_least_ten_distinct_key_paths() -> None:
    paths = {(c / "expected.err").read_text().split(":")[0] for c in CASES}
    assert len(paths) >= 10


def test_check_cli_exit_codes(tmp_path: Path) -> None:
    bad = CASES[0] / "gateway.yaml"
    r = subprocess.run([*meterlink_cmd(), "check", "-c", str(bad)], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == len((CASES[0] / "expected.err").read_text().splitlines())
    r = subprocess.run([*meterlink_cmd(), "check", "-c", str(REPO / "config/example.yaml")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "4 meters" in r.stdout and "reads per hour" in r.stdout
    r = subprocess.run([*meterlink_cmd(), "check", "-c", str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no such file" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.meters


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_profile_resolves(name: str) -> None:
    profile = load_profile(name)
    assert profile.source, f"{name} must cite the manufacturer document"
    points = profile_points(name)
    assert len({p.obis for p in points}) == len(points)
    intervals = {p.interval for p in points}
    assert 900.0 in intervals, "energy every 15 min"
    if profile.protocol == "modbus":
        assert 10.0 in intervals, "instantaneous every 10 s"
    for p in points:
        assert p.obis.startswith("1.0.") or p.obis == "0.0.1.0.0.255"  # the clock
        if ".8." in p.obis:
            assert p.unit in ("kWh", "kvarh", "Wh", "varh") and p.interval == 900.0


def test_profiles_cover_the_issue_quantities() -> None:
    for name in ("eastron-sdm630", "chint-dtsu666"):
        obis = {p.obis for p in profile_points(name)}
        for needed in ("1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255", "1.0.31.7.0.255", "1.0.16.7.0.255",
                       "1.0.131.7.0.255", "1.0.13.7.0.255", "1.0.14.7.0.255", "1.0.1.8.0.255", "1.0.2.8.0.255"):
            assert needed in obis, f"{name} lacks {needed}"


def test_meter_point_overrides_profile_point() -> None:
    cfg = parse_config({
        "links": {"bus": {"type": "serial", "port": "/dev/null"}},
        "meters": {"m": {"link": "bus", "protocol": "modbus", "address": 3, "profile": "eastron-sdm630",
                         "points": [{"obis": "1.0.1.8.0.255", "interval": "1m"}]}},
    })
    m = cfg.meters["m"]
    p = next(p for p in m.points if p.obis == "1.0.1.8.0.255")
    assert p.interval == 60 and p.register == 0x0048 and p.type == "float32" and p.function == "input"
    assert cfg.links["bus"].baudrate == 9600 and cfg.links["bus"].parity == "E"  # Modbus RTU default 8E1


def test_scale_is_exact() -> None:
    cfg = parse_config({
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 502}},
        "meters": {"m": {"link": "t", "protocol": "modbus", "address": 1,
                         "points": [{"obis": "1.0.32.7.0.255", "register": 0, "type": "uint16", "scale": 0.1,
                                     "unit": "V"}]}},
    })
    assert cfg.meters["m"].points[0].scale == Decimal("0.1")


def test_secrets_never_in_check_output(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("links: {t: {type: tcp, host: 127.0.0.1, port: 502}}\n"
                 "meters: {m: {link: t, protocol: modbus, address: 1, profile: eastron-sdm120}}\n"
                 "sinks: {mqtt: {username: u, password: hunter2-secret}, influxdb: {url: 'ftp://x', token: tok-secret}}\n")
    r = subprocess.run([*meterlink_cmd(), "check", "-c", str(f)], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ})
    assert r.returncode == 2
    assert "hunter2" not in r.stderr + r.stdout and "tok-secret" not in r.stderr + r.stdout
