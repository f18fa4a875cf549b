"""The durable journal: every reading is committed here before anything else sees it.

SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives a
kill -9 and a power cut.  One row is one meter's data message (CONTRACT
section 6) with its ``epoch`` and ``seq``, stored as the JSON that the MQTT
sink publishes as is.  Appends from all links go through one writer thread
that commits whatever is queued in one transaction (group commit), so a
thousand meters cost a handful of fsyncs a second, not a thousand.

Why a bounded queue in memory in front of the writer: a journal that cannot
be written (disk full, a dying SD card) must not stop the meters being read.
Batches wait in acquisition order, up to ``queue_bytes``; past that the
oldest waiting batch is dropped and counted.  ``seq`` is given at commit, in
queue order, so a batch that waited never gets a seq after a newer one and a
dropped batch leaves no gap.  While writes fail, :attr:`Journal.problem` says
why ("disk full: ..."), and the writer tries again every second.

Why an ``epoch``: a random id made with the journal and stored in it.  A
journal that had to be replaced (damaged, emptied, its write-ahead log lost)
starts a new epoch, so a subscriber never takes its seqs, which start again,
for duplicates of messages it already has.

Sinks read through their own cursor (the highest row id they have delivered),
so each delivers at least once whatever happens to it or to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from meterlink.core import logs
from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import Reading, format_ts, readings_json

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
-- the max_age check every few seconds (OLDER_THAN): without it, a scan of every row, which on a
-- full journal (1 GiB, ~175,000 rows of 6 KB) cost ~0.2 s of CPU each time
CREATE INDEX IF NOT EXISTS batches_ts ON batches (ts);
"""
# The newest row older than max_age.  INDEXED BY: without it SQLite answers max(id) by walking the
# rows from the newest id down, i.e. all of them when none is old (tests/test_journal.py).
OLDER_THAN = "SELECT coalesce(max(id), 0) FROM batches INDEXED BY batches_ts WHERE ts < ?"

EPOCH_KEY = "journal.epoch"
OPENED_KEY = "journal.opened"
QUEUE_BYTES = 4 << 20  # the least bound of the batches waiting in memory for the journal
QUEUED_POINT_BYTES = 300  # one reading's JSON (~230 bytes) and its share of the message and row overhead


def queue_bound(points_per_wave: int) -> int:
    """The memory queue's default bound: two poll waves of every point, at least :data:`QUEUE_BYTES`.

    All meters due at one moment hand their batches over within a fraction of
    a second, faster than a commit of them takes: a bound below one wave drops
    readings at every wave although the disk is healthy (2,000 meters x 30
    points: a 4 MiB bound dropped two thirds of each wave, bench.many).  Two
    waves also carry one wave's commit being late.
    """
    return max(QUEUE_BYTES, 2 * points_per_wave * QUEUED_POINT_BYTES)


RETRY_EVERY = 1.0  # seconds between write attempts while the journal cannot be written
LOW_SPACE = 256 << 10  # bytes free on the journal's filesystem below which a failed write is "disk full"
WAL_HEADER = 32  # bytes: a write-ahead log that was written to is at least this long
COMMIT_MAX = 2000  # batches in one group commit
# A poll wave (every meter due at one moment) arrives over a few to some tens of milliseconds:
# gathering it costs a little delivery latency and saves an fsync per meter (bench.profile: each
# commit is ~2 ms of CPU with its fsync).  The writer waits while batches keep arriving, a quiet
# COMMIT_GATHER at a time, at most COMMIT_GATHER_MAX in all: one commit per wave (a fixed 20 ms
# split the peer load's waves into 1.6 commits a second).  A slow bus, whose batches come further
# apart than COMMIT_GATHER, still commits each batch 20 ms after it came; a steady stream (2,000
# meters, bench.pipeline) commits as soon as COMMIT_ENOUGH batches share one fsync, since a longer
# wait would only hold back whoever awaits the commit.
COMMIT_GATHER = 0.02
COMMIT_GATHER_MAX = 0.06
COMMIT_ENOUGH = 64
# Sink cursors are stored with the next group commit, or after this long when no reading is
# being written; a crash in between only means rows delivered again (at least once).
CURSOR_FLUSH_EVERY = 1.0
# The newest committed messages kept in memory for sinks that keep up (Journal.recent): about two
# poll waves of a large gateway, bounded in bytes so a backlog never grows it.
TAIL_MESSAGES = 4000
TAIL_BYTES = 1 << 20
# SQLite result codes (sqlite3.h): what a failed call means for the journal
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26


class JournalError(MeterlinkError):
    """The journal cannot be opened or written (disk full, locked by another gateway, corrupt)."""


class JournalFull(JournalError):
    """The journal's filesystem is full: a condition that clears when space is freed, so it is waited out."""


class JournalQueueFull(JournalError):
    """A batch was dropped from the memory queue unwritten (the journal was failing and the queue full)."""


class _Damaged(Exception):
    """The database file fails its integrity check (internal: the journal is moved aside and started anew)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One data message as journaled: a meter's readings of one poll (``payload``, the JSON sinks send).

    The SQLite table keeps its first name, ``batches``, so journals written before stay readable.
    """

    id: int
    meter: str
    seq: int
    ts: float
    n: int
    payload: str

    def as_dict(self) -> dict[str, object]:
        from decimal import Decimal

        return json.loads(self.payload, parse_float=Decimal)


@dataclass(slots=True)
class _Pending:
    """One meter's readings of one poll, waiting for the group commit (its seq is given then)."""

    meter: str
    ts: datetime
    n: int
    body: str  # the readings' JSON, comma-separated: the message is complete once epoch and seq are known
    stamps: list[tuple[str, float]]  # (obis, meter_ts) of readings that carry the meter's own time
    fut: asyncio.Future[int] | None = None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.body) + len(self.meter) + 160  # the head of the message and the row's overhead


def data_message(gateway: str, meter: str, seq: int, ts: datetime, readings: Sequence[Reading] | str, *,
                 epoch: str = "") -> str:
    """CONTRACT section 6 data message, with each reading as section 5 writes it."""
    body = readings if isinstance(readings, str) else readings_json(readings)
    return (f'{{"gateway": {json.dumps(gateway)}, "meter": {json.dumps(meter)}, "epoch": {json.dumps(epoch)}, '
            f'"seq": {seq}, "ts": "{format_ts(ts)}", "readings": [{body}]}}')


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF  # extended codes carry the primary in the low byte


class Journal:
    def __init__(self, data_dir: Path, gateway: str, *, max_bytes: int = 1 << 30, max_age: float = 30 * 86400.0,
                 lock: bool = True, queue_bytes: int = QUEUE_BYTES) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "journal.sqlite"
        self.marker = self.data_dir / "journal.open"  # present while open: its presence at open means an unclean stop
        self.gateway = gateway
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.queue_bytes = queue_bytes
        self.epoch = ""
        self._lock_wanted = lock
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._writer: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._db_lock = threading.Lock()
        self._listeners: list[asyncio.Event] = []
        self._last_dropped = 0  # undelivered rows dropped by the writer since the last report
        self.sink_names: list[str] = []  # the configured sinks; rows all of them took are dropped first
        # the memory queue: waiting batches in acquisition order, and those in the commit under way
        self._pending: deque[_Pending] = deque()
        self._inflight: list[_Pending] = []
        self._pending_bytes = 0
        self.queue_dropped = 0  # batches dropped from the memory queue, never journaled
        self.queue_dropped_readings = 0
        self.write_failures = 0  # failed group commits
        self.problem: str | None = None  # why the journal cannot be written now; None while writes succeed
        self.problem_since: float | None = None
        self.replaced: dict[str, str] | None = None  # a damaged or lost journal this open replaced: where, why
        # O(1) figures for /status and /metrics, kept in step with every insert and delete
        self._rows = 0
        self._readings = 0
        self._first_id = 0
        self._last_id = 0
        self._dropped = 0
        self._cursors: dict[str, int] = {}
        self._dirty_cursors: set[str] = set()  # moved in memory, not stored yet
        # the newest committed messages, for sinks that keep up (see recent); filled on the loop's thread
        self._tail: deque[Message] = deque()
        self._tail_bytes = 0

    # --- opening ---------------------------------------------------------------

    def open(self) -> Journal:
        """Open (or make) the journal; a damaged one is moved aside, kept, and a new one started.

        Raises :class:`JournalFull` when the filesystem is full (the caller waits
        and tries again) and :class:`JournalError` for what needs a person.
        """
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create data_dir {self.data_dir}: {exc.strerror}") from exc
        if self._lock_wanted and self._lock_fd is None:
            self._take_lock()
        unclean = self._read_marker() if self._lock_wanted else None  # a reader (lock=False) leaves it alone
        existed = self.path.exists() and self.path.stat().st_size > 0
        wal = self.data_dir / "journal.sqlite-wal"
        wal_lost = unclean is not None and existed and (not wal.exists() or wal.stat().st_size < WAL_HEADER)
        try:
            self._open_db()
        except _Damaged as exc:
            moved = self._move_aside()
            self.replaced = {"reason": f"damaged: {exc}", "moved_to": str(moved), "at": format_ts(datetime.now(UTC))}
            logs.error("JOURNAL DAMAGED: moved aside and a new journal started; its undelivered readings are in the "
                       "old file", journal=str(self.path), moved_to=str(moved), problem=str(exc)[:300])
            self._open_db()
        else:
            if unclean is not None and (not existed or wal_lost):
                what = ("the journal file was missing or empty" if not existed else
                        "its write-ahead log was lost: rows committed since the last checkpoint are gone")
                if self.epoch == unclean or not unclean:  # the epoch survived in the database file: a new one
                    self.epoch = self._new_epoch()
                self.replaced = {"reason": f"after an unclean stop {what}", "moved_to": "",
                                 "at": format_ts(datetime.now(UTC))}
                logs.error(f"JOURNAL {'LOST' if not existed else 'WAL LOST'}: after an unclean stop {what}; new "
                           "epoch, so seqs given again are not taken for duplicates", journal=str(self.path),
                           old_epoch=unclean or "?", epoch=self.epoch)
        if self._lock_wanted:
            self._write_marker()
        return self

    def _read_marker(self) -> str | None:
        """The epoch written in the open-marker of a run that did not close the journal; None after a clean stop."""
        try:
            return self.marker.read_text().strip() or ""
        except FileNotFoundError:
            return None
        except OSError:
            return ""

    def _write_marker(self) -> None:
        try:
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, self.epoch.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk may refuse even this: the WAL check then just does not run next time
            logs.warning("journal open-marker not written", file=str(self.marker), error=exc.strerror or str(exc))

    def _open_db(self) -> None:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise self._classify(exc, "cannot open") from exc
        try:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file: lets it shrink
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=256")
            db.execute("PRAGMA synchronous=FULL")
            check = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)").fetchall()]
            if check != ["ok"]:
                raise _Damaged("; ".join(check).replace("\n", "; ")[:500])  # one log line
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM state WHERE key = ?", (EPOCH_KEY,)).fetchone()
            self.epoch = str(row[0]) if row else ""
            self._seq = dict(db.execute("SELECT meter, seq FROM meter_seq").fetchall())
            self._rows, self._readings, self._first_id, self._last_id = db.execute(
                "SELECT count(*), coalesce(sum(n), 0), coalesce(min(id), 0), coalesce(max(id), 0) FROM batches"
            ).fetchone()
            self._dropped = int(db.execute("SELECT coalesce(sum(value), 0) FROM counters "
                                           "WHERE name LIKE 'dropped%'").fetchone()[0])
            self._cursors = {str(s): int(b) for s, b in db.execute("SELECT sink, batch_id FROM cursors")}
            self._tail.clear()
            self._tail_bytes = 0
            self._db = db
            if not self.epoch:
                self.epoch = self._new_epoch()
                logs.info("journal epoch started", journal=str(self.path), epoch=self.epoch)
            if self._lock_wanted:
                # a write at every open: the WAL holds a frame from now on, so a WAL missing after an unclean
                # stop means it was lost (see open)
                self._set_state_locked(OPENED_KEY, format_ts(datetime.now(UTC)))
        except _Damaged:
            self._db = None
            db.close()
            raise
        except sqlite3.Error as exc:
            self._db = None
            db.close()
            if _code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB):
                raise _Damaged(str(exc)) from exc
            raise self._classify(exc, "cannot open") from exc

    def _new_epoch(self) -> str:
        """A fresh random epoch, stored before any row is written under it."""
        epoch = secrets.token_hex(8)
        self._set_state_locked(EPOCH_KEY, epoch)
        return epoch

    def _set_state_locked(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO state (key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _move_aside(self) -> Path:
        """Rename the damaged files with a time stamp (kept for a person to look at), so a new journal can start."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"journal.sqlite.damaged-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"journal.sqlite.damaged-{stamp}-{n}")
            n += 1
        for suffix in ("-wal", "-shm", ""):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                try:
                    src.rename(Path(f"{target}{suffix}"))
                except OSError as exc:
                    raise JournalError(f"journal {self.path} is damaged and cannot be moved aside: "
                                       f"{exc.strerror or exc}") from exc
        return target

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.data_dir)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _classify(self, exc: BaseException, what: str) -> JournalError:
        """The error a failed open or write becomes: disk full (waited out) or something a person must see."""
        text = str(exc)
        free = self.free_bytes()
        full = _code(exc) == SQLITE_FULL or "full" in text.lower() or getattr(exc, "errno", None) == 28
        if full or (_code(exc) in (SQLITE_IOERR, SQLITE_CANTOPEN) and free is not None and free < LOW_SPACE):
            kib = "?" if free is None else f"{free // 1024}"
            return JournalFull(f"disk full: {kib} KiB free on {self.data_dir}; {what} {self.path}: {text}")
        if _code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB):
            return JournalError(f"damaged: {what} {self.path}: {text}")
        return JournalError(f"{what} journal {self.path}: {text}")

    def _take_lock(self) -> None:
        lock_path = self.data_dir / "meterlink.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._classify(exc, "cannot create the lock file of") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JournalError(f"data_dir {self.data_dir} is in use by another meterlink (pid {other})") from None
        with contextlib.suppress(OSError):  # the pid is for the message above only: a full disk may refuse it
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._db is not None:
            self.flush_cursors()
            with self._db_lock:
                clean = False
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    clean = True
                if clean and self._lock_wanted:  # everything is in the database file: the next open need not check the WAL
                    with contextlib.suppress(OSError):
                        self.marker.unlink()
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
        return [m.seq for m in self._commit([_pending(m, ts, rs) for m, ts, rs in items])]

    def _commit(self, items: Sequence[_Pending]) -> list[Message]:
        """One group commit (in the writer's thread); returns the messages as stored, ``items``' order."""
        rows = []
        stamps: dict[tuple[str, str], float] = {}
        pending = dict(self._seq)
        for it in items:
            for obis, t in it.stamps:
                key = (it.meter, obis)
                stamps[key] = max(stamps.get(key, 0.0), t)
            seq = pending.get(it.meter, 0) + 1
            pending[it.meter] = seq
            rows.append((it.meter, seq, it.ts.timestamp(), it.n,
                         data_message(self.gateway, it.meter, seq, it.ts, it.body, epoch=self.epoch)))
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
                moved = [(sink, self._cursors[sink]) for sink in self._dirty_cursors]
                if moved:  # the sinks' cursors ride this commit's fsync
                    db.executemany("INSERT INTO cursors (sink, batch_id) VALUES (?, ?) ON CONFLICT(sink) "
                                   "DO UPDATE SET batch_id = max(batch_id, excluded.batch_id)", moved)
                last = int(db.execute("SELECT max(id) FROM batches").fetchone()[0] or 0)
                db.execute("COMMIT")
                self._dirty_cursors.difference_update(s for s, _ in moved)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise self._classify(exc, "cannot write") from exc
            committed: list[Message] = []
            if rows:
                self._rows += len(rows)
                self._readings += sum(it.n for it in items)
                self._last_id = last
                if not self._first_id:
                    self._first_id = last - len(rows) + 1
                # one writer, one transaction: the rows took the ids up to the last one, in order
                first = last - len(rows) + 1
                committed = [Message(first + i, *row) for i, row in enumerate(rows)]
        self._seq = pending
        try:  # the batches are committed: nothing after this may make the writer try them again
            if self.used_bytes() > self.max_bytes:  # three PRAGMAs: cheap next to the commit's fsync
                self._last_dropped += self.enforce_bounds()
        except (sqlite3.Error, JournalError) as exc:
            logs.warning("journal bound check failed", journal=str(self.path), error=str(exc))
        return committed

    def start(self) -> None:
        """Start the group-commit writer in the running loop (for :meth:`submit` and :meth:`append`)."""
        self._kick = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="meterlink.journal")

    async def stop(self, timeout: float = 10.0) -> None:
        """Commit everything queued (for up to ``timeout`` while the journal fails), then stop the writer."""
        if self._writer is None:
            return
        deadline = time.monotonic() + timeout
        while (self._pending or self._inflight) and time.monotonic() < deadline and not self._writer.done():
            await asyncio.sleep(0.05)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None
        self.flush_cursors()  # where each sink got to, stored before the stop
        lost = list(self._inflight) + list(self._pending)
        if lost:
            logs.error("journal: batches not written at stop", batches=len(lost),
                       readings=sum(p.n for p in lost), error=self.problem or "stopped")
            for p in lost:
                if p.fut is not None and not p.fut.done():
                    p.fut.set_exception(JournalError(f"not written at stop: {self.problem or 'stopped'}"))
            self._pending.clear()
            self._inflight = []
            self._pending_bytes = 0

    def submit(self, meter: str, ts: datetime, readings: Sequence[Reading]) -> asyncio.Future[int]:
        """Queue a batch for the next group commit without waiting; the future gets its ``seq`` once on disk.

        Never blocks and never raises for a journal problem: a poll goes on
        whatever the disk does.  When the queue is over ``queue_bytes`` the
        oldest waiting batch is dropped (its future fails with
        :class:`JournalQueueFull`) and counted.
        """
        if self._kick is None:
            raise JournalError("journal writer is not started")
        item = _pending(meter, ts, readings)
        item.fut = asyncio.get_running_loop().create_future()
        self._pending.append(item)
        self._pending_bytes += item.size
        while self._pending_bytes > self.queue_bytes and len(self._pending) > 1:
            old = self._pending.popleft()
            self._pending_bytes -= old.size
            self.queue_dropped += 1
            self.queue_dropped_readings += old.n
            if old.fut is not None and not old.fut.done():
                old.fut.set_exception(JournalQueueFull(
                    f"dropped from the journal queue ({self.queue_bytes} bytes full): {self.problem or 'slow disk'}"))
            if self.queue_dropped == 1 or self.queue_dropped % 1000 == 0:
                logs.error("journal queue full: dropping the oldest unwritten readings", meter=old.meter,
                           dropped_batches=self.queue_dropped, queue_bytes=self.queue_bytes,
                           error=self.problem or "slow disk")
        self._kick.set()
        return item.fut

    async def append(self, meter: str, ts: datetime, readings: Sequence[Reading]) -> int:
        """Queue a batch for the next group commit; returns its ``seq`` once it is on disk."""
        return await self.submit(meter, ts, readings)

    def subscribe(self) -> asyncio.Event:
        """An event set after every commit, for sinks that wait for new rows."""
        ev = asyncio.Event()
        self._listeners.append(ev)
        return ev

    @property
    def queued(self) -> int:
        """Batches acquired but not yet committed (waiting, or in the commit under way)."""
        return len(self._pending) + len(self._inflight)

    @property
    def queued_bytes(self) -> int:
        return self._pending_bytes

    async def _write_loop(self) -> None:
        assert self._kick is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._kick.clear()
                if self._dirty_cursors:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), CURSOR_FLUSH_EVERY)
                    if not self._pending:
                        await loop.run_in_executor(self._executor, self.flush_cursors)
                    continue
                await self._kick.wait()
                continue
            await self._gather()
            n = min(len(self._pending), COMMIT_MAX)
            self._inflight = [self._pending.popleft() for _ in range(n)]
            try:
                committed = await loop.run_in_executor(self._executor, self._commit, self._inflight)
            except (JournalError, sqlite3.Error, OSError) as exc:
                # back to the head of the queue, in order: their seqs are given when a commit succeeds
                self._pending.extendleft(reversed(self._inflight))
                self._inflight = []
                self.write_failures += 1
                self._failed(exc)
                await asyncio.sleep(RETRY_EVERY)
                continue
            except BaseException:
                self._pending.extendleft(reversed(self._inflight))
                self._inflight = []
                raise
            done, self._inflight = self._inflight, []
            self._remember(committed)
            for p in done:
                self._pending_bytes -= p.size
            for p, m in zip(done, committed, strict=True):
                if p.fut is not None and not p.fut.done():
                    p.fut.set_result(m.seq)
            if self.problem is not None:
                logs.info("journal writes resumed", journal=str(self.path), was=self.problem,
                          after_s=f"{time.monotonic() - (self.problem_since or time.monotonic()):.1f}",
                          written_batches=len(done), still_queued=len(self._pending),
                          dropped_batches=self.queue_dropped)
                self.problem = None
                self.problem_since = None
            for ev in self._listeners:
                ev.set()

    async def _gather(self) -> None:
        """Wait for the rest of this poll wave: one fsync for all of it (see :data:`COMMIT_GATHER`)."""
        waited, seen = 0.0, len(self._pending)
        while seen < COMMIT_MAX and waited < COMMIT_GATHER_MAX:
            await asyncio.sleep(COMMIT_GATHER)
            waited += COMMIT_GATHER
            if len(self._pending) == seen or len(self._pending) >= COMMIT_ENOUGH:  # quiet, or enough for one fsync
                return
            seen = len(self._pending)

    def _failed(self, exc: BaseException) -> None:
        err = exc if isinstance(exc, JournalError) else self._classify(exc, "cannot write")
        text = str(err)
        first = self.problem is None
        kind = text.split(":", 1)[0]
        if first or kind != (self.problem or "").split(":", 1)[0]:
            logs.error("journal write failed: readings wait in memory", journal=str(self.path), error=text,
                       queued_batches=len(self._pending), queue_bytes=self.queue_bytes,
                       retry_every_s=f"{RETRY_EVERY:g}")
        if first:
            self.problem_since = time.monotonic()
        self.problem = text

    # --- reading back ---------------------------------------------------------

    def last_seq(self, meter: str) -> int:
        return self._seq.get(meter, 0)

    def messages(self, after_id: int = 0, limit: int = 1000, meter: str | None = None) -> list[Message]:
        sql = "SELECT id, meter, seq, ts, n, payload FROM batches WHERE id > ?"
        args: list[object] = [after_id]
        if meter is not None:
            sql += " AND meter = ?"
            args.append(meter)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._db_lock:
            return [Message(*row) for row in self.db.execute(sql, args).fetchall()]

    def _remember(self, committed: list[Message]) -> None:
        if committed and self._tail and self._tail[-1].id + 1 != committed[0].id:
            self._tail.clear()  # ids jumped (rows dropped, journal replaced): the tail must stay contiguous
            self._tail_bytes = 0
        for m in committed:
            self._tail.append(m)
            self._tail_bytes += len(m.payload)
        while self._tail and (len(self._tail) > TAIL_MESSAGES or self._tail_bytes > TAIL_BYTES):
            self._tail_bytes -= len(self._tail.popleft().payload)

    def recent(self, after_id: int, limit: int) -> list[Message] | None:
        """The messages after ``after_id`` from memory, when they are all among the newest committed.

        A sink that keeps up asks for what the last commit wrote: handing it
        the messages the commit just built saves reading them back from SQLite
        in another thread (issue 14).  None when some of them are only on disk
        (a backlog, a restart): read them with :meth:`messages`.  Call from the
        event loop's thread.
        """
        tail = self._tail
        if not tail or tail[0].id > after_id + 1:
            return None
        if tail[-1].id <= after_id:
            return []
        start = after_id + 1 - tail[0].id
        return [tail[i] for i in range(start, min(len(tail), start + limit))]

    def iter_messages(self, meter: str | None = None) -> Iterator[Message]:
        after = 0
        while True:
            rows = self.messages(after, 1000, meter)
            if not rows:
                return
            yield from rows
            after = rows[-1].id

    def cursor(self, sink: str) -> int:
        return self._cursors.get(sink, 0)

    def set_cursor(self, sink: str, batch_id: int) -> None:
        """Move a sink's cursor; on a full disk it moves in memory (delivery goes on) and is stored next time."""
        with self._db_lock:
            moved = max(self._cursors.get(sink, 0), batch_id)
            if moved != self._cursors.get(sink):
                self._cursors[sink] = moved
                self._dirty_cursors.add(sink)
        if self._writer is None:  # no write loop (a reader, a tool): store it now
            self.flush_cursors()

    def flush_cursors(self) -> None:
        """Store the cursors that moved since the last time (in the writer's thread, or a tool's own)."""
        with self._db_lock:
            if not self._dirty_cursors:
                return
            rows = [(sink, self._cursors[sink]) for sink in self._dirty_cursors]
            # not stored on a full disk: after a crash those rows are delivered again (at least once)
            with contextlib.suppress(sqlite3.OperationalError):
                self.db.executemany("INSERT INTO cursors (sink, batch_id) VALUES (?, ?) ON CONFLICT(sink) "
                                    "DO UPDATE SET batch_id = max(batch_id, excluded.batch_id)", rows)
                self._dirty_cursors.clear()

    def counts(self) -> dict[str, int]:
        """Rows, readings, last row id, dropped rows and file size: kept as rows come and go, no table scan."""
        return {"rows": self._rows, "readings": self._readings, "last_id": self._last_id, "dropped": self._dropped,
                "bytes": self.size_bytes(), "queued": self.queued, "queued_bytes": self._pending_bytes,
                "queue_dropped": self.queue_dropped}

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += (self.data_dir / f"journal.sqlite{suffix}").stat().st_size
        return total

    def backlog(self, sink: str) -> int:
        """Rows the sink has not delivered.  Row ids are consecutive and rows only ever leave from the oldest
        end, so this is arithmetic, not a count."""
        if not self._rows:
            return 0
        return max(0, self._last_id - max(self.cursor(sink), self._first_id - 1))

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
            taken = self._taken()
            old = db.execute(OLDER_THAN, (now - self.max_age,)).fetchone()[0]
            if old:
                dropped += self._delete_upto(old, taken)
        while self.used_bytes() > self.max_bytes:
            with self._db_lock:
                db = self.db
                total = self._rows
                if total == 0:
                    break
                chunk = max(1, total // 10)
                first = self._first_id
                taken = self._taken()
                upto = first + chunk - 1
                if taken >= first:
                    upto = min(upto, taken)  # delivered rows first
                dropped += self._delete_upto(upto, taken)
                db.execute("PRAGMA incremental_vacuum")
        with self._db_lock, contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA incremental_vacuum")
        return dropped

    def _taken(self) -> int:
        cursors = [self._cursors.get(s, 0) for s in self.sink_names]
        return min(cursors) if cursors else 0

    def _delete_upto(self, upto: int, taken: int) -> int:
        """Delete the rows up to id ``upto`` (an oldest-end range), keep the figures in step; the undelivered count."""
        db = self.db
        gone, gone_n = db.execute("SELECT count(*), coalesce(sum(n), 0) FROM batches WHERE id <= ?",
                                  (upto,)).fetchone()
        lost = db.execute("SELECT count(*) FROM batches WHERE id <= ? AND id > ?", (upto, taken)).fetchone()[0]
        db.execute("DELETE FROM batches WHERE id <= ?", (upto,))
        self._rows -= gone
        self._readings -= gone_n
        self._first_id = upto + 1 if self._rows else 0
        return self._count_dropped(lost)

    def take_dropped(self) -> int:
        """Undelivered rows the writer dropped to stay within the bound since the last call."""
        n, self._last_dropped = self._last_dropped, 0
        return n

    def _count_dropped(self, n: int) -> int:
        if n:
            self.db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (n,))
            self._dropped += int(n)
        return int(n)

    def last_meter_ts(self, meter: str, obis: str) -> datetime | None:
        """The newest meter time stamp acquired for the point: journaled, or waiting in the queue to be."""
        with self._db_lock:
            row = self.db.execute("SELECT ts FROM meter_ts WHERE meter = ? AND obis = ?", (meter, obis)).fetchone()
        best = None if row is None else float(row[0])
        for p in (*self._inflight, *self._pending):
            if p.meter == meter:
                for o, t in p.stamps:
                    if o == obis and (best is None or t > best):
                        best = t
        return None if best is None else datetime.fromtimestamp(best, UTC)

    # --- state for drivers (e.g. DLMS invocation counters) ---------------------

    def get_state(self, key: str) -> str | None:
        with self._db_lock:
            row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._db_lock:
            try:
                self._set_state_locked(key, value)
            except sqlite3.Error as exc:
                raise self._classify(exc, "cannot write") from exc


def _pending(meter: str, ts: datetime, readings: Sequence[Reading]) -> _Pending:
    stamps = [(r.obis, r.meter_ts.timestamp()) for r in readings if r.meter_ts is not None]
    return _Pending(meter, ts, len(readings), readings_json(readings), stamps)


