"""A seconds-long run of each benchmark, so they cannot rot; the full runs are `make bench`."""

from __future__ import annotations

from bench import drain


def test_backlog_drain_smoke() -> None:
    rates = drain.main(readings=3000)
    assert set(rates) == {"mqtt", "influxdb"}
    assert all(r > 0 for r in rates.values())
