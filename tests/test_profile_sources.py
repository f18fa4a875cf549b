"""Issue 11: the three original Modbus profiles are checked against two public register maps each.

Same rule as ``tests/test_profiles_more.py`` for the newer profiles: each profile point must equal the row of
*both* sources in ``tests/drivers/modbus/profile_sources/<profile>.toml`` (register, function code, type, word
order, scale), since a wrong register or scale on a billing value would be read as good.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from meterlink.core.config import profile_points
from tests.test_profiles_more import ORIGINAL_PROFILES, SOURCES, _key


@pytest.mark.parametrize("profile", ORIGINAL_PROFILES)
def test_every_point_of_the_original_profiles_matches_both_sources(profile: str) -> None:
    rows = tomllib.loads((SOURCES / f"{profile}.toml").read_text())["row"]
    by_source: dict[str, dict[str, tuple[object, ...]]] = {}
    for row in rows:
        table = by_source.setdefault(row["source"], {})
        assert row["obis"] not in table, f"{profile}: {row['obis']} twice in {row['source']}"
        table[row["obis"]] = _key(row["function"], row["type"], row["word_order"], Decimal(row["scale"]), row["register"])
    assert len(by_source) == 2, f"{profile}: cites {len(by_source)} sources, not two"
    assert len({s.split(" @ ")[0].split()[0] for s in by_source}) == 2, f"{profile}: both sources are one repository"
    points = {p.obis: _key(p.function, p.type, p.word_order, p.scale, p.register or 0) for p in profile_points(profile)}
    for source, table in by_source.items():
        for obis, expected in points.items():
            assert obis in table, f"{profile}: {obis} is not in {source}"
            assert table[obis] == expected, f"{profile} {obis}: profile {expected}, {source} {table[obis]}"
