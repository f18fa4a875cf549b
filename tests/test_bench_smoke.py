"""A seconds-long run of each benchmark, so they cannot rot; the full runs are `make bench`."""

from __future__ import annotations

import pytest

from bench import bus, crowded, drain, many, peers, pipeline


def test_backlog_drain_smoke() -> None:
    rates = drain.main(readings=3000)
    assert set(rates) == {"mqtt", "influxdb"}
    assert all(r > 0 for r in rates.values())


@pytest.mark.slow
def test_bus_efficiency_smoke() -> None:
    r = bus.main(quick=True)
    assert r["transactions"] < r["naive_transactions"]
    assert r["cycle_s"] >= r["wire_s"] * 0.95, "the simulator emulates the wire: nothing beats it"


@pytest.mark.slow
def test_crowded_bus_smoke() -> None:
    r = crowded.main(quick=True)
    assert r["rs485-1"]["polls"] > 0 and r["rs485-2"]["polls"] > 0
    assert r["rs485-1"]["late_polls"] > 0, "a schedule larger than the wire must be reported late"


@pytest.mark.slow
def test_pipeline_smoke() -> None:
    r = pipeline.main(quick=True)
    assert r["mqtt"] > 0 and r["influxdb"] > 0


@pytest.mark.slow
def test_many_meters_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    r = many.scenario("smoke", 20, "1s", ("mqtt",), warmup=2, window=3)
    # two block reads per meter and cycle; a retry after a timeout on a loaded CI machine only adds
    assert r["readings"] > 0 and r["planned_per_cycle"] == pytest.approx(2.0)
    assert r["tx_per_poll"] >= 2.0 and r["transactions"] - r["failed_tries"] <= 2 * r["polls"]


@pytest.mark.slow
def test_peer_thingsboard_smoke() -> None:
    """thingsboard-gateway (installed into .bench-peers on first use) really delivers the peer load."""
    r = peers.thingsboard(warmup=20, window=5)
    assert r["readings"] > 0, "thingsboard-gateway delivered nothing: its session-limits answer or ACL broke"
    assert r["cpu_ms_per_1000"] > 0
