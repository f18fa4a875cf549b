"""Issue 17 item 5: the added built-in Modbus profiles load, check, read right, and match both cited sources.

Every profile cites two independent public register maps; their rows are kept as data in
``tests/drivers/modbus/profile_sources/<profile>.toml`` and each profile point must equal the row
of *both* sources (register, function code, type, word order, scale) -- a billing value with a
wrong word order or scale would be read as good.
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core.config import profile_points
from meterlink.core.config.profiles import builtin_names
from meterlink.simulators.modbus import ModbusUnit
from meterlink.simulators.model import MeterModel
from testkit.simproc import meterlink, write_config

SOURCES = Path(__file__).parent / "drivers" / "modbus" / "profile_sources"
# The first round's three profiles are checked in tests/test_profile_sources.py; every other profile
# with a sources file is one of issue 17's, so a new profile is tested here by adding its two files.
ORIGINAL_PROFILES = ["eastron-sdm630", "eastron-sdm120", "chint-dtsu666"]
NEW_PROFILES = sorted(p.stem for p in SOURCES.glob("*.toml") if p.stem not in ORIGINAL_PROFILES)


def test_issue_17_adds_at_least_ten_profiles() -> None:
    assert len(NEW_PROFILES) >= 10, NEW_PROFILES


def _config(tmp_path: Path, profile: str, port: str = "/dev/null") -> Path:
    return write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-t", "data_dir": str(tmp_path / "data")},
        "links": {"bus": {"type": "serial", "port": port, "baudrate": 9600, "parity": "N", "timeout": "500ms"}},
        "meters": {"m3": {"link": "bus", "protocol": "modbus", "address": 3, "profile": profile}},
    })


@pytest.mark.parametrize("profile", NEW_PROFILES)
def test_profile_is_built_in_and_passes_check(tmp_path: Path, profile: str) -> None:
    assert profile in builtin_names()
    assert profile_points(profile)
    r = meterlink("check", "-c", str(_config(tmp_path, profile)))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("profile", NEW_PROFILES)
def test_read_over_pty_equals_what_the_simulator_serves(simulate, tmp_path: Path, profile: str) -> None:
    sim = simulate("modbus", "--profile", profile, "--unit", "3", "--pty", "--freeze", "--seed", "4")
    r = meterlink("read", "-c", str(_config(tmp_path, profile, sim.where)), "--format", "json")
    assert r.returncode == 0, r.stderr
    got = {x["obis"]: x for x in (json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines())}
    served = ModbusUnit(3, profile_points(profile), MeterModel(seed=4 + 3, frozen=True)).served()
    assert set(got) == set(served)
    for obis, value in served.items():
        assert got[obis]["quality"] == "good", got[obis]
        assert got[obis]["value"] == value, f"{profile} {obis}: read {got[obis]['value']}, served {value}"
    assert all(v != 0 for v in served.values()), f"{profile}: a point served as 0 proves nothing about its encoding"


def _key(function: str, type_: str, word_order: str, scale: Decimal, register: int) -> tuple[object, ...]:
    return (register, function, type_, word_order if type_ not in ("int16", "uint16") else "big", scale)


def source_tables(profile: str) -> dict[str, dict[str, tuple[object, ...]]]:
    """The two cited sources' rows of ``profile``, by source then OBIS code (each code once per source)."""
    by_source: dict[str, dict[str, tuple[object, ...]]] = {}
    for row in tomllib.loads((SOURCES / f"{profile}.toml").read_text())["row"]:
        table = by_source.setdefault(row["source"], {})
        assert row["obis"] not in table, f"{profile}: {row['obis']} twice in {row['source']}"
        table[row["obis"]] = _key(row["function"], row["type"], row["word_order"], Decimal(row["scale"]), row["register"])
    assert len(by_source) == 2, f"{profile}: cites {len(by_source)} sources, not two"
    return by_source


def assert_points_match(profile: str, by_source: dict[str, dict[str, tuple[object, ...]]]) -> None:
    """Every point of ``profile`` is in each source with the same register, function, type, word order and scale."""
    points = {p.obis: _key(p.function, p.type, p.word_order, p.scale, p.register or 0) for p in profile_points(profile)}
    for source, table in by_source.items():
        for obis, expected in points.items():
            assert obis in table, f"{profile}: {obis} is not in {source}"
            assert table[obis] == expected, f"{profile} {obis}: profile {expected}, {source} {table[obis]}"


@pytest.mark.parametrize("profile", NEW_PROFILES)
def test_every_point_matches_both_cited_sources(profile: str) -> None:
    assert_points_match(profile, source_tables(profile))


@pytest.mark.parametrize("profile", NEW_PROFILES)
def test_header_names_both_sources(profile: str) -> None:
    """The profile file's header comment names the repository of each non-manual source."""
    text = (Path(__file__).resolve().parents[1] / "config" / "profiles" / f"{profile}.yaml").read_text()
    for row in tomllib.loads((SOURCES / f"{profile}.toml").read_text())["row"]:
        repo_path = row["source"].split(" @ ")[0]
        if "/" in repo_path and " " in repo_path and not repo_path.startswith(("Carlo", "Eastron", "B+G")):
            repo, path = repo_path.split(" ", 1)
            assert repo in text and path.split()[0].split("/")[-1] in text, f"{profile}: header misses {repo_path}"
