"""The durable journal: every reading is committed here before anything else sees it.

SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives a
kill -9 and a power cut.  One row is one meter's data message (CONTRACT
section 6) with its ``seq``, stored as the JSON that the MQTT sink publishes
as is.  Appends from all links go through one writer thread that commits
whatever is queued in one transaction (group commit), so a thousand meters
cost a handful of fsyncs a second, not a thousand.

Sinks read through their own cursor (the highest row id they have delivered),
so each delivers at least once whatever happens to it or to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import MeterlinkError
from gateway.reading import Reading, format_ts, reading_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    meter    TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    ts       REAL    NOT NULL,        -- gateway time of acquisition, unix seconds
    n        INTEGER NOT NULL,        -- readings in the message
    payload  TEXT    NOT NULL,        -- the data message JSON of CONTRACT section 6
    UNIQUE (meter, seq)
);
CREATE TABLE IF NOT EXISTS meter_seq (meter TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, batch_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meter_ts (            -- newest meter time stamp journaled per meter and point
    meter TEXT NOT NULL, obis TEXT NOT NULL, ts REAL NOT NULL, PRIMARY KEY (meter, obis));
"""


class JournalError(MeterlinkError):
    """The journal cannot be opened or written (disk full, locked by another gateway, corrupt)."""


@dataclass(frozen=True, slots=True)
class Batch:
    id: int
    meter: str
    seq: int
    ts: float
    n: int
    payload: str

    def message(self) -> dict[str, object]:
        from decimal import Decimal

        return json.loads(self.payload, parse_float=Decimal)


def data_message(gateway: str, meter: str, seq: int, ts: datetime, readings: Sequence[Reading]) -> str:
    """CONTRACT section 6 data message, with each reading as section 5 writes it."""
    body = ", ".join(reading_json(r) for r in readings)
    return (f'{{"gateway": {json.dumps(gateway)}, "meter": {json.dumps(meter)}, "seq": {seq}, '
            f'"ts": "{format_ts(ts)}", "readings": [{body}]}}')


class Journal:
    def __init__(self, data_dir: Path, gateway: str, *, max_bytes: int = 1 << 30, max_age: float = 30 * 86400.0,
                 lock: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "journal.sqlite"
        self.gateway = gateway
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._lock_wanted = lock
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._queue: asyncio.Queue[tuple[str, datetime, Sequence[Reading], asyncio.Future[int]]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._db_lock = threading.Lock()
        self._listeners: list[asyncio.Event] = []
        self._last_dropped = 0  # undelivered rows dropped by the writer since the last report
        self.sink_names: list[str] = []  # the configured sinks; rows all of them took are dropped first

    # --- opening ---------------------------------------------------------------

    def open(self) -> Journal:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create data_dir {self.data_dir}: {exc.strerror}") from exc
        if self._lock_wanted:
            self._take_lock()
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file: lets it shrink
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=256")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self._seq = dict(db.execute("SELECT meter, seq FROM meter_seq").fetchall())
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        self._db = db
        return self

    def _take_lock(self) -> None:
        lock_path = self.data_dir / "meterlink.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JournalError(f"data_dir {self.data_dir} is in use by another meterlink (pid {other})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._db is not None:
            with self._db_lock:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal is not open")
        return self._db

    # --- appending ---------------------------------------------------------------

    def append_many(self, items: Sequence[tuple[str, datetime, Sequence[Reading]]]) -> list[int]:
        """Commit several meters' batches in one transaction; returns their ``seq`` numbers."""
        seqs: list[int] = []
        rows = []
        stamps: dict[tuple[str, str], float] = {}
        pending = dict(self._seq)
        for meter, ts, readings in items:
            for r in readings:
                if r.meter_ts is not None:
                    key = (meter, r.obis)
                    stamps[key] = max(stamps.get(key, 0.0), r.meter_ts.timestamp())
            seq = pending.get(meter, 0) + 1
            pending[meter] = seq
            seqs.append(seq)
            rows.append((meter, seq, ts.timestamp(), len(readings),
                         data_message(self.gateway, meter, seq, ts, readings)))
        with self._db_lock:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO batches (meter, seq, ts, n, payload) VALUES (?, ?, ?, ?, ?)", rows)
                db.executemany("INSERT INTO meter_seq (meter, seq) VALUES (?, ?) "
                               "ON CONFLICT(meter) DO UPDATE SET seq = excluded.seq",
                               [(m, s) for m, s in pending.items() if self._seq.get(m) != s])
                if stamps:
                    db.executemany("INSERT INTO meter_ts (meter, obis, ts) VALUES (?, ?, ?) "
                                   "ON CONFLICT(meter, obis) DO UPDATE SET ts = max(ts, excluded.ts)",
                                   [(m, o, t) for (m, o), t in stamps.items()])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise JournalError(f"cannot write journal {self.path}: {exc}") from exc
        self._seq = pending
        if self.used_bytes() > self.max_bytes:  # three PRAGMAs: cheap next to the commit's fsync
            self._last_dropped += self.enforce_bounds()
        return seqs

    def start(self) -> None:
        """Start the group-commit writer in the running loop (for :meth:`append`)."""
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="meterlink.journal")

    async def stop(self) -> None:
        """Commit everything queued, then stop the writer."""
        if self._queue is not None and self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def append(self, meter: str, ts: datetime, readings: Sequence[Reading]) -> int:
        """Queue a batch for the next group commit; returns its ``seq`` once it is on disk."""
        if self._queue is None:
            raise JournalError("journal writer is not started")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((meter, ts, readings, fut))
        return await fut

    def subscribe(self) -> asyncio.Event:
        """An event set after every commit, for sinks that wait for new rows."""
        ev = asyncio.Event()
        self._listeners.append(ev)
        return ev

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            while not self._queue.empty() and len(items) < 2000:
                items.append(self._queue.get_nowait())
            try:
                seqs = await loop.run_in_executor(self._executor, self.append_many, [i[:3] for i in items])
            except Exception as exc:
                for *_, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for (*_, fut), seq in zip(items, seqs, strict=True):
                    if not fut.done():
                        fut.set_result(seq)
                for ev in self._listeners:
                    ev.set()
            finally:
                for _ in items:
                    self._queue.task_done()

    # --- reading back ---------------------------------------------------------

    def last_seq(self, meter: str) -> int:
        return self._seq.get(meter, 0)

    def batches(self, after_id: int = 0, limit: int = 1000, meter: str | None = None) -> list[Batch]:
        sql = "SELECT id, meter, seq, ts, n, payload FROM batches WHERE id > ?"
        args: list[object] = [after_id]
        if meter is not None:
            sql += " AND meter = ?"
            args.append(meter)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._db_lock:
            return [Batch(*row) for row in self.db.execute(sql, args).fetchall()]

    def iter_batches(self, meter: str | None = None) -> Iterator[Batch]:
        after = 0
        while True:
            rows = self.batches(after, 1000, meter)
            if not rows:
                return
            yield from rows
            after = rows[-1].id

    def cursor(self, sink: str) -> int:
        with self._db_lock:
            row = self.db.execute("SELECT batch_id FROM cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, sink: str, batch_id: int) -> None:
        with self._db_lock:
            self.db.execute("INSERT INTO cursors (sink, batch_id) VALUES (?, ?) "
                            "ON CONFLICT(sink) DO UPDATE SET batch_id = max(batch_id, excluded.batch_id)",
                            (sink, batch_id))

    def counts(self) -> dict[str, int]:
        with self._db_lock:
            rows, readings, last = self.db.execute(
                "SELECT count(*), coalesce(sum(n), 0), coalesce(max(id), 0) FROM batches").fetchone()
            dropped = self.db.execute("SELECT coalesce(sum(value), 0) FROM counters "
                                      "WHERE name LIKE 'dropped%'").fetchone()[0]
        return {"rows": rows, "readings": readings, "last_id": last, "dropped": dropped,
                "bytes": self.size_bytes()}

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += (self.data_dir / f"journal.sqlite{suffix}").stat().st_size
        return total

    def backlog(self, sink: str) -> int:
        cur = self.cursor(sink)
        with self._db_lock:
            return int(self.db.execute("SELECT count(*) FROM batches WHERE id > ?", (cur,)).fetchone()[0])

    # --- bounds ----------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes the rows occupy in the database file (free pages not counted, WAL not counted)."""
        with self._db_lock:
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def enforce_bounds(self, now: float | None = None) -> int:
        """Keep the journal within ``max_bytes`` and ``max_age``; returns how many undelivered rows were dropped.

        Rows every sink has already taken go first; only then the oldest
        undelivered rows, which are counted (``dropped``) and reported.  With no
        sink configured every row counts as undelivered: readings are kept up to
        the bound.
        """
        now = time.time() if now is None else now
        dropped = 0
        with self._db_lock:
            db = self.db
            cursors = [self._cursor_locked(s) for s in self.sink_names]
            taken = min(cursors) if cursors else 0
            old = db.execute("SELECT coalesce(max(id), 0) FROM batches WHERE ts < ?",
                             (now - self.max_age,)).fetchone()[0]
            if old:
                lost = db.execute("SELECT count(*) FROM batches WHERE id <= ? AND id > ?", (old, taken)).fetchone()[0]
                db.execute("DELETE FROM batches WHERE id <= ?", (old,))
                dropped += self._count_dropped(lost)
        while self.used_bytes() > self.max_bytes:
            with self._db_lock:
                db = self.db
                total = db.execute("SELECT count(*) FROM batches").fetchone()[0]
                if total == 0:
                    break
                chunk = max(1, total // 10)
                first = db.execute("SELECT min(id) FROM batches").fetchone()[0]
                cursors = [self._cursor_locked(s) for s in self.sink_names]
                taken = min(cursors) if cursors else 0
                upto = db.execute("SELECT id FROM batches ORDER BY id LIMIT 1 OFFSET ?", (chunk - 1,)).fetchone()[0]
                if taken >= first:
                    upto = min(upto, taken)  # delivered rows first
                lost = db.execute("SELECT count(*) FROM batches WHERE id <= ? AND id > ?", (upto, taken)).fetchone()[0]
                db.execute("DELETE FROM batches WHERE id <= ?", (upto,))
                dropped += self._count_dropped(lost)
                db.execute("PRAGMA incremental_vacuum")
        with self._db_lock, contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA incremental_vacuum")
        return dropped

    def take_dropped(self) -> int:
        """Undelivered rows the writer dropped to stay within the bound since the last call."""
        n, self._last_dropped = self._last_dropped, 0
        return n

    def _cursor_locked(self, sink: str) -> int:
        row = self.db.execute("SELECT batch_id FROM cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def _count_dropped(self, n: int) -> int:
        if n:
            self.db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (n,))
        return int(n)

    def last_meter_ts(self, meter: str, obis: str) -> datetime | None:
        with self._db_lock:
            row = self.db.execute("SELECT ts FROM meter_ts WHERE meter = ? AND obis = ?", (meter, obis)).fetchone()
        return None if row is None else datetime.fromtimestamp(row[0], UTC)

    # --- state for drivers (e.g. DLMS invocation counters) ---------------------

    def get_state(self, key: str) -> str | None:
        with self._db_lock:
            row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._db_lock:
            self.db.execute("INSERT INTO state (key, value) VALUES (?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def now_utc() -> datetime:
    return datetime.now(UTC)

