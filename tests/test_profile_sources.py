"""Issue 11: the three original Modbus profiles are checked against two public register maps each.

Same rule as ``tests/test_profiles_more.py`` for the newer profiles: each profile point must equal the row of
*both* sources in ``tests/drivers/modbus/profile_sources/<profile>.toml`` (register, function code, type, word
order, scale), since a wrong register or scale on a billing value would be read as good.
"""

from __future__ import annotations

import pytest

from tests.test_profiles_more import ORIGINAL_PROFILES, assert_points_match, source_tables


@pytest.mark.parametrize("profile", ORIGINAL_PROFILES)
def test_every_point_of_the_original_profiles_matches_both_sources(profile: str) -> None:
    by_source = source_tables(profile)
    assert len({s.split(" @ ")[0].split()[0] for s in by_source}) == 2, f"{profile}: both sources are one repository"
    assert_points_match(profile, by_source)
