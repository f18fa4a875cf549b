"""The one backoff: doubles from the first delay up to the cap, jitter within bounds, reset after success."""

from __future__ import annotations

import random

from meterlink.core.backoff import Backoff


def test_doubles_up_to_the_cap_and_starts_again_after_success() -> None:
    b = Backoff(first=1.0, cap=30.0)
    assert [b.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    b.reset()
    assert b.next() == 1


def test_a_long_outage_never_overflows() -> None:
    b = Backoff(first=0.5, cap=60.0)
    for _ in range(10_000):
        assert b.next() <= 60.0


def test_jitter_stays_within_its_fraction() -> None:
    b = Backoff(first=2.0, cap=100.0, jitter=0.5, _rng=random.Random(3))
    for n in range(1, 7):
        delay = b.next()
        full = min(2.0 * 2 ** (n - 1), 100.0)
        assert full / 2 <= delay <= full
