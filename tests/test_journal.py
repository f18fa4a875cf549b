"""The journal: seq per meter, group commit, cursors, and survival across reopen."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.journal import Journal, JournalError
from gateway.reading import Reading


def _readings(meter: str, value: str) -> list[Reading]:
    ts = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)
    return [Reading(gateway="gw", meter=meter, obis="1.0.1.8.0.255", name="e", value=Decimal(value), unit="kWh",
                    ts=ts)]


def test_seq_per_meter_survives_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw").open()
    ts = datetime.now(UTC)
    assert j.append_many([("a", ts, _readings("a", "1")), ("b", ts, _readings("b", "2")),
                          ("a", ts, _readings("a", "3"))]) == [1, 1, 2]
    j.close()
    j = Journal(tmp_path, "gw").open()
    assert j.append_many([("a", ts, _readings("a", "4"))]) == [3]
    msgs = [b.message() for b in j.iter_batches("a")]
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert msgs[2]["readings"][0]["value"] == Decimal("4")  # type: ignore[index]
    assert msgs[0]["gateway"] == "gw" and msgs[0]["meter"] == "a"
    j.close()


def test_payload_is_the_contract_data_message(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw-01").open()
    j.append_many([("m-0001", datetime(2026, 11, 27, 2, 15, 0, 12000, tzinfo=UTC), _readings("m-0001", "1234.56"))])
    (b,) = j.batches()
    doc = json.loads(b.payload)
    assert set(doc) == {"gateway", "meter", "seq", "ts", "readings"}
    assert doc["ts"] == "2026-11-27T02:15:00.012Z" and doc["seq"] == 1
    assert '"value": 1234.56,' in b.payload
    j.close()


def test_group_commit_from_many_tasks(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        j = Journal(tmp_path, "gw").open()
        j.start()
        ts = datetime.now(UTC)
        seqs = await asyncio.gather(*(j.append(f"m{i % 7}", ts, _readings(f"m{i % 7}", str(i))) for i in range(700)))
        await j.stop()
        assert j.counts()["rows"] == 700
        j.close()
        return list(seqs)

    seqs = asyncio.run(scenario())
    assert sorted(seqs) == sorted(list(range(1, 101)) * 7)


def test_cursor_only_moves_forward(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw").open()
    ts = datetime.now(UTC)
    j.append_many([("a", ts, _readings("a", str(i))) for i in range(5)])
    assert j.backlog("mqtt") == 5
    j.set_cursor("mqtt", 3)
    j.set_cursor("mqtt", 2)
    assert j.cursor("mqtt") == 3 and j.backlog("mqtt") == 2
    assert [b.seq for b in j.batches(after_id=j.cursor("mqtt"))] == [4, 5]
    j.close()


def test_second_gateway_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw").open()
    with pytest.raises(JournalError, match="in use by another meterlink"):
        Journal(tmp_path, "gw").open()
    j.close()
    Journal(tmp_path, "gw").open().close()


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="cannot create data_dir"):
        Journal(tmp_path / "file" / "sub", "gw").open()


def test_bound_drops_delivered_rows_first_then_counts_undelivered(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw", max_bytes=1 << 18).open()
    j.sink_names = ["mqtt", "influxdb"]
    ts = datetime.now(UTC)
    big = [Reading(gateway="gw", meter="a", obis=f"1.0.{i}.8.0.255", name=f"e{i}", value=Decimal("123456.78"),
                   unit="kWh", ts=ts) for i in range(10)]
    j.append_many([("a", ts, big) for _ in range(3)])
    assert j.counts()["rows"] == 3
    j.set_cursor("mqtt", 3)
    j.set_cursor("influxdb", 2)  # rows 1-2 were taken by every sink
    appended = 3
    for _ in range(100):
        j.append_many([("a", ts, big)])
        appended += 1
        assert j.used_bytes() <= j.max_bytes
    counts = j.counts()
    first = j.batches(0, 1)[0].id
    assert first > 2, "rows every sink took must go before undelivered ones"
    assert counts["dropped"] == (first - 1) - 2, "the drop counter counts exactly the undelivered rows dropped"
    assert counts["rows"] == appended - (first - 1)
    j.close()


def test_age_bound(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw", max_age=3600).open()
    old = datetime(2020, 1, 1, tzinfo=UTC)
    j.append_many([("a", old, _readings("a", "1")), ("a", datetime.now(UTC), _readings("a", "2"))])
    assert j.enforce_bounds() == 1  # no sink configured: the old row was never delivered
    assert [b.seq for b in j.batches()] == [2]
    assert j.counts()["dropped"] == 1
    j.close()
