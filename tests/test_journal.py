"""The journal: seq per meter, group commit, cursors, and survival across reopen."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core import logs
from meterlink.core.reading import Reading
from meterlink.engine.journal import OLDER_THAN, Journal, JournalError, JournalQueueFull


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """The gateway's log lines during the test (a handler of its own: no global setup left behind)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(fields)s"))
    level = logs.LOGGER.level
    logs.LOGGER.addHandler(handler)
    logs.LOGGER.setLevel(logging.INFO)
    yield stream
    logs.LOGGER.removeHandler(handler)
    logs.LOGGER.setLevel(level)


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
    msgs = [b.as_dict() for b in j.iter_messages("a")]
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert msgs[2]["readings"][0]["value"] == Decimal("4")  # type: ignore[index]
    assert msgs[0]["gateway"] == "gw" and msgs[0]["meter"] == "a"
    j.close()


def test_payload_is_the_contract_data_message(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw-01").open()
    j.append_many([("m-0001", datetime(2026, 11, 27, 2, 15, 0, 12000, tzinfo=UTC), _readings("m-0001", "1234.56"))])
    (b,) = j.messages()
    doc = json.loads(b.payload)
    assert list(doc) == ["gateway", "meter", "epoch", "seq", "ts", "readings"]  # CONTRACT section 6, in order
    assert doc["ts"] == "2026-11-27T02:15:00.012Z" and doc["seq"] == 1
    assert doc["epoch"] == j.epoch and len(j.epoch) == 16
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


def test_recent_hands_sinks_the_committed_messages_exactly_as_on_disk(tmp_path: Path) -> None:
    """Issue 14: a sink that keeps up takes the newest messages from memory; the same rows as a read from disk."""
    async def scenario() -> None:
        j = Journal(tmp_path, "gw").open()
        j.start()
        ts = datetime.now(UTC)
        assert j.recent(0, 100) is None  # nothing committed by this writer yet: read from disk
        await asyncio.gather(*(j.append(f"m{i % 3}", ts, _readings(f"m{i % 3}", str(i))) for i in range(50)))
        assert j.recent(0, 1000) == j.messages(0, 1000)
        assert j.recent(20, 7) == j.messages(20, 7)
        assert j.recent(50, 10) == []  # caught up
        await j.append("m0", ts, _readings("m0", "99"))
        assert [m.id for m in j.recent(50, 10) or []] == [51]
        await j.stop()
        j.close()

        j = Journal(tmp_path, "gw").open()  # a restart: what was committed before is only on disk
        j.start()
        assert j.recent(0, 10) is None
        await j.append("m1", ts, _readings("m1", "100"))
        assert j.recent(0, 10) is None  # ids 1..51 are not in memory: a backlog is read from disk
        assert j.recent(51, 10) == j.messages(51, 10)
        await j.stop()
        j.close()

    asyncio.run(scenario())


def test_cursor_only_moves_forward(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw").open()
    ts = datetime.now(UTC)
    j.append_many([("a", ts, _readings("a", str(i))) for i in range(5)])
    assert j.backlog("mqtt") == 5
    j.set_cursor("mqtt", 3)
    j.set_cursor("mqtt", 2)
    assert j.cursor("mqtt") == 3 and j.backlog("mqtt") == 2
    assert [b.seq for b in j.messages(after_id=j.cursor("mqtt"))] == [4, 5]
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
    first = j.messages(0, 1)[0].id
    assert first > 2, "rows every sink took must go before undelivered ones"
    assert counts["dropped"] == (first - 1) - 2, "the drop counter counts exactly the undelivered rows dropped"
    assert counts["rows"] == appended - (first - 1)
    j.close()


def test_age_bound(tmp_path: Path) -> None:
    j = Journal(tmp_path, "gw", max_age=3600).open()
    old = datetime(2020, 1, 1, tzinfo=UTC)
    j.append_many([("a", old, _readings("a", "1")), ("a", datetime.now(UTC), _readings("a", "2"))])
    assert j.enforce_bounds() == 1  # no sink configured: the old row was never delivered
    assert [b.seq for b in j.messages()] == [2]
    assert j.counts()["dropped"] == 1
    j.close()


def test_age_bound_check_reads_the_time_index_not_every_row(tmp_path: Path) -> None:
    """The max_age check runs every few seconds for weeks: on a full journal a scan of every row cost ~0.2 s each.

    SQLite answers ``max(id) ... WHERE ts < ?`` by walking rows from the newest
    down unless told to use the index; its query plan says which it does.
    """
    j = Journal(tmp_path, "gw", max_age=3600).open()
    plan = " ".join(str(row) for row in j.db.execute("EXPLAIN QUERY PLAN " + OLDER_THAN, (0.0,)).fetchall())
    assert "USING COVERING INDEX batches_ts" in plan, plan
    j.close()
    legacy = Journal(tmp_path / "legacy", "gw").open()  # a journal from before the index: it gets it on open
    legacy.db.execute("DROP INDEX batches_ts")
    legacy.close()
    reopened = Journal(tmp_path / "legacy", "gw").open()
    assert reopened.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'batches_ts'").fetchone()[0] == 1
    reopened.close()


# --------------------------------------------------------------------------- figures without a scan


def test_counts_are_kept_in_step_without_a_table_scan(tmp_path: Path) -> None:
    """/status and every scrape read counts(): it must match the table and never wait on the writer's lock."""
    j = Journal(tmp_path, "gw", max_bytes=1 << 18, max_age=3600).open()
    j.sink_names = ["mqtt"]
    old = datetime(2020, 1, 1, tzinfo=UTC)
    j.append_many([("a", old, _readings("a", "1")) for _ in range(3)])
    assert j.enforce_bounds() == 3  # too old and undelivered: dropped and counted
    big = [Reading(gateway="gw", meter="b", obis=f"1.0.{i}.8.0.255", name=f"e{i}", value=Decimal("1.5"), unit="kWh",
                   ts=datetime.now(UTC)) for i in range(10)]
    for _ in range(60):
        j.append_many([("b", datetime.now(UTC), big), ("a", datetime.now(UTC), _readings("a", "2"))])
    j.set_cursor("mqtt", 50)
    j.enforce_bounds()
    rows, readings, last = j.db.execute(
        "SELECT count(*), sum(n), max(id) FROM batches").fetchone()
    c = j.counts()
    assert (c["rows"], c["readings"], c["last_id"]) == (rows, readings, last)
    assert c["dropped"] == j.db.execute("SELECT sum(value) FROM counters").fetchone()[0] >= 3
    assert j.backlog("mqtt") == j.db.execute("SELECT count(*) FROM batches WHERE id > 50").fetchone()[0]
    assert j.backlog("influxdb") == rows  # a sink that took nothing yet
    with j._db_lock:  # the writer holds the database (a commit's fsync): counts() does not wait for it
        got: list[dict[str, int]] = []
        t = threading.Thread(target=lambda: got.append(j.counts()))
        t.start()
        t.join(2)
        assert got, "counts() waited for the database lock: it scans the table"
    j.close()
    j = Journal(tmp_path, "gw").open()  # and the figures are the same after a reopen
    assert {k: j.counts()[k] for k in ("rows", "readings", "last_id", "dropped")} == \
        {k: c[k] for k in ("rows", "readings", "last_id", "dropped")}
    j.close()


# --------------------------------------------------------------------------- damage and epochs


def _unclean(data: Path, rows: int) -> str:
    """A real unclean stop: another process journals ``rows`` batches and dies without closing; its epoch."""
    code = (
        "import os, sys; from datetime import UTC, datetime; from decimal import Decimal\n"
        "from meterlink.engine.journal import Journal; from meterlink.core.reading import Reading\n"
        f"j = Journal({str(data)!r}, 'gw').open()\n"
        "ts = datetime.now(UTC)\n"
        f"for i in range({rows}):\n"
        "    j.append_many([('a', ts, [Reading(gateway='gw', meter='a', obis='1.0.1.8.0.255', name='e',"
        " value=Decimal(i), unit='kWh', ts=ts)])])\n"
        "print(j.epoch, flush=True)\n"
        "os._exit(0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_garbled_journal_is_moved_aside_loudly_and_a_new_epoch_starts(tmp_path: Path, log_text: io.StringIO) -> None:
    j = Journal(tmp_path, "gw").open()
    ts = datetime.now(UTC)
    for _ in range(40):
        j.append_many([("a", ts, _readings("a", str(k))) for k in range(50)])
    old_epoch = j.epoch
    j.close()
    path = tmp_path / "journal.sqlite"
    size = path.stat().st_size
    assert size > 200_000
    with open(path, "r+b") as f:  # 16 KiB of garbage in the middle of the file
        f.seek(size // 2)
        f.write(random.Random(16).randbytes(16384))
    log_text.truncate(0)
    log_text.seek(0)
    j = Journal(tmp_path, "gw").open()
    err = log_text.getvalue()
    damaged_lines = [line for line in err.splitlines() if "JOURNAL DAMAGED" in line]
    assert len(damaged_lines) == 1 and "moved_to" in damaged_lines[0], err
    kept = list(tmp_path.glob("journal.sqlite.damaged-*"))
    assert len(kept) == 1 and kept[0].stat().st_size == size, "the damaged journal is kept, renamed"
    assert j.replaced is not None and j.replaced["moved_to"] == str(kept[0])
    assert j.epoch != old_epoch and j.counts()["rows"] == 0
    assert j.append_many([("a", ts, _readings("a", "1"))]) == [1]
    assert j.messages()[0].as_dict()["epoch"] == j.epoch
    j.close()


def test_wal_lost_after_an_unclean_stop_starts_a_new_epoch(tmp_path: Path, log_text: io.StringIO) -> None:
    old_epoch = _unclean(tmp_path, 5)
    (tmp_path / "journal.sqlite-wal").unlink()  # what a failing card or a careless copy does
    log_text.truncate(0)
    log_text.seek(0)
    j = Journal(tmp_path, "gw").open()
    err = log_text.getvalue()
    assert "JOURNAL WAL LOST" in err and old_epoch in err, err
    assert j.epoch and j.epoch != old_epoch
    seq = j.append_many([("a", datetime.now(UTC), _readings("a", "9"))])[0]
    # the seq may repeat one a subscriber already has; the epoch tells the two apart
    assert j.messages(after_id=j.counts()["last_id"] - 1)[0].as_dict()["epoch"] == j.epoch
    assert seq >= 1
    j.close()
    log_text.truncate(0)
    log_text.seek(0)
    j = Journal(tmp_path, "gw").open()  # a clean close in between: nothing is reported, the epoch stays
    assert "JOURNAL" not in log_text.getvalue() and j.replaced is None
    j.close()


def test_unclean_stop_with_the_wal_intact_keeps_the_epoch(tmp_path: Path, log_text: io.StringIO) -> None:
    epoch = _unclean(tmp_path, 5)
    log_text.truncate(0)
    log_text.seek(0)
    j = Journal(tmp_path, "gw").open()
    assert "JOURNAL" not in log_text.getvalue()
    assert j.epoch == epoch and j.replaced is None and j.last_seq("a") == 5
    assert j.append_many([("a", datetime.now(UTC), _readings("a", "9"))]) == [6]
    j.close()


def test_journal_truncated_to_zero_starts_a_new_epoch(tmp_path: Path, log_text: io.StringIO) -> None:
    old_epoch = _unclean(tmp_path, 5)
    os.truncate(tmp_path / "journal.sqlite", 0)
    (tmp_path / "journal.sqlite-wal").unlink()
    log_text.truncate(0)
    log_text.seek(0)
    j = Journal(tmp_path, "gw").open()
    assert "JOURNAL LOST" in log_text.getvalue()
    assert j.epoch != old_epoch and j.replaced is not None
    assert j.append_many([("a", datetime.now(UTC), _readings("a", "1"))]) == [1]  # seq 1 again, new epoch
    j.close()


def test_gateway_status_and_metrics_show_a_replaced_journal(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from meterlink.core.config import parse_config
    from meterlink.engine.gateway import Gateway
    from meterlink.engine.metrics import make_registry

    data = tmp_path / "data"
    data.mkdir()
    (data / "journal.sqlite").write_bytes(b"not a database at all, " * 400)
    raw = {"gateway": {"id": "gw-x", "data_dir": str(data)},
           "links": {"l": {"type": "tcp", "host": "127.0.0.1", "port": 1, "timeout": "200ms"}},
           "meters": {"m": {"link": "l", "protocol": "modbus", "address": 1, "interval": "1h",
                            "points": [{"obis": "1.0.1.8.0.255", "register": 0, "type": "float32", "unit": "kWh"}]}}}

    async def scenario() -> tuple[dict[str, object], str]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        try:
            doc = gw.status()["journal"]
            text = generate_latest(make_registry(gw)).decode()
        finally:
            await gw.stop()
        return doc, text  # type: ignore[return-value]

    doc, text = asyncio.run(scenario())
    assert isinstance(doc, dict) and "damaged" in doc["replaced"]["reason"] and doc["problem"] is None
    assert 'meterlink_journal_replaced{gateway="gw-x"} 1.0' in text


# --------------------------------------------------------------------------- the memory queue on a full disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_queue_on_a_full_disk_keeps_order_drops_oldest_and_resumes(tiny_disk: Path) -> None:
    from tests.integration.test_fault_disk_full import fill

    async def scenario() -> None:
        j = Journal(tiny_disk, "gw", queue_bytes=8192).open()
        j.start()
        ts = datetime.now(UTC)
        assert await j.append("a", ts, _readings("a", "0")) == 1
        filler = fill(tiny_disk)
        futs = [j.submit("a", ts, _readings("a", str(i))) for i in range(1, 61)]
        deadline = time.monotonic() + 10
        while not (j.problem or "").startswith("disk full") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (j.problem or "").startswith("disk full"), j.problem
        assert j.queued_bytes <= 8192 + 1024 and j.queue_dropped > 0
        dropped = [f for f in futs if f.done() and isinstance(f.exception(), JournalQueueFull)]
        assert futs[:len(dropped)] == dropped, "the oldest waiting batches go first"
        filler.unlink()
        seqs = await asyncio.gather(*futs[len(dropped):])
        assert seqs == list(range(2, 2 + len(seqs))), "seqs follow acquisition order, no gap for dropped batches"
        assert j.problem is None and j.queue_dropped == len(dropped)
        values = [b.as_dict()["readings"][0]["value"] for b in j.iter_messages()]  # type: ignore[index]
        assert values == [Decimal(0)] + [Decimal(i) for i in range(1 + len(dropped), 61)]
        await j.stop()
        j.close()

    asyncio.run(scenario())


def test_memory_queue_is_sized_to_hold_two_poll_waves(tmp_path: Path) -> None:
    """A 4 MiB queue dropped two thirds of every wave of 2,000 meters x 30 points on a healthy disk (bench.many)."""
    from meterlink.core.config import parse_config
    from meterlink.engine.gateway import Gateway
    from meterlink.engine.journal import QUEUE_BYTES, queue_bound

    assert queue_bound(10) == QUEUE_BYTES  # a small gateway keeps the least bound
    assert queue_bound(2000 * 30) >= 2 * 2000 * 30 * 230  # two waves of ~230-byte readings
    raw = {"gateway": {"id": "gw-q", "data_dir": str(tmp_path / "d")},
           "links": {f"t{k}": {"type": "tcp", "host": "127.0.0.1", "port": 1502 + k} for k in range(2)},
           "meters": {f"m{k}-{i}": {"link": f"t{k}", "protocol": "modbus", "address": i + 1,
                                    "profile": "eastron-sdm630"} for k in range(2) for i in range(200)}}
    points = sum(len(m.points) for m in parse_config(raw).meters.values())
    assert Gateway(parse_config(raw)).journal.queue_bytes == queue_bound(points) > QUEUE_BYTES
    raw["journal"] = {"queue_bytes": 65536}
    assert Gateway(parse_config(raw)).journal.queue_bytes == 65536  # the configured bound wins
