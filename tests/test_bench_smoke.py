"""A seconds-long run of each benchmark, so they cannot rot; the full runs are `make bench`."""

from __future__ import annotations

import pytest

from bench import bare, bus, crowded, dlt698, drain, hotpath, load, many, pipeline


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
def test_dlt698_wire_smoke() -> None:
    r = dlt698.wire(quick=True)
    assert r["list_transactions"] < r["single_transactions"]
    for kind in ("list", "single"):  # the simulator emulates the wire: nothing beats it
        assert r[f"{kind}_cycle_s"] >= r[f"{kind}_wire_s"] * 0.95, r
    assert r["gain"] > 1.0, "a NormalList poll must beat one GET per OAD"


@pytest.mark.slow
def test_dlt698_crowded_smoke() -> None:
    r = dlt698.crowded(quick=True)
    assert r["polls"] > 0 and r["errors"] == 0, r
    assert r["late_polls"] > 0, "a schedule larger than the wire must be reported late"


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
def test_peer_bare_poller_smoke() -> None:
    """The bare poller, Meterlink's CPU reference, really reads the peer load in 2 block reads and publishes it."""
    r = bare.measure(warmup=3, window=4, meters=5)
    assert r["planned_per_cycle"] == 2 and r["requests_per_cycle"] == pytest.approx(2.0, abs=0.01)
    assert r["readings"] > 0, "the bare poller published nothing in the window"
    assert r["cpu_ms_per_1000"] > 0 and r["rss_mb"] > 0


def test_bare_poller_blocks() -> None:
    """The bare poller's plan is the minimal one: 0x0000-0x004F and 0x0156 in two reads, offsets in bytes."""
    plan = bare.blocks([(f"p{r}", r) for _, r in load.POINTS])
    assert [(start, count) for start, count, _ in plan] == [(0x00, 0x50), (0x156, 2)]
    assert plan[0][2][:2] == [("p0", 0), ("p2", 4)] and plan[1][2] == [("p342", 0)]
    assert bare.blocks([("a", 0), ("b", 123), ("c", 125)]) == [(0, 125, [("a", 0), ("b", 246)]), (125, 2, [("c", 0)])]


def test_profile_stages_of_pyspy_samples() -> None:
    """bench.profile charges a sample to its innermost Python frame's stage and leaves idle waits out."""
    from bench import profile

    raw = "\n".join([
        "run (/x/gateway/scheduler.py:1);_commit (/x/gateway/journal.py:404) 7",
        "run (/x/gateway/scheduler.py:1);float32_decimal (/x/gateway/reading.py:190) 3",
        "run (/x/gateway/scheduler.py:1);reading_json (/x/gateway/reading.py:89) 2",
        "run (/v/lib/python3.11/site-packages/pymodbus/pdu/register_message.py:78) 4",
        "main (/x/a.py:1);EpollSelector.select (/usr/lib/python3.11/selectors.py:468) 50",
    ])
    stages, top = profile.pyspy_breakdown(raw)
    assert stages == {"journal": 7, "decode": 3, "json": 2, "modbus-client": 4, "idle": 50}
    assert top[0] == (7, "_commit (gateway/journal.py:404)")


def test_hotpath_smoke() -> None:
    r = hotpath.main(number=200)
    assert r["meterlink"] > 0 and r["bare"] > 0 and r["ratio"] == r["meterlink"] / r["bare"]
