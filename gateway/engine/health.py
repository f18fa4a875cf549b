"""Is the gateway alive, and is it ready: the answers behind ``/healthz``, ``/readyz`` and the systemd watchdog.

``/healthz`` (liveness, and what feeds the systemd watchdog)
    the event loop answers, every link's poll loop is running, and no link has
    been stuck in one read while its next poll is long overdue
    (:class:`Liveness`).  A failure here is cured by a restart.
``/readyz`` (readiness)
    the journal takes a write, and every link produced a successful read within
    3 intervals of one of its meters (:class:`Readiness`).  A failure here is a
    meter, a cable or a disk to look at; a restart does not fix it.  A journal
    that fails a write says so at once ("journal: disk full: ..."), from the
    writer's own last attempt, not only from the periodic probe.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from meterlink.engine.journal import JournalError

if TYPE_CHECKING:
    from meterlink.core.config import Link
    from meterlink.engine.gateway import Gateway
    from meterlink.engine.scheduler import LinkScheduler

READY_INTERVALS = 3  # /readyz: a link must have read a meter successfully within this many of its intervals
HUNG_MIN = 120.0  # seconds: a link idle this long with a poll this overdue is hung (at least; see hung_after)
JOURNAL_PROBE_EVERY = 5.0  # seconds: /readyz writes to the journal at most this often
# The classic text format every Prometheus (and VictoriaMetrics, Telegraf) parses; our names are all legacy-safe,
# so prometheus-client's output is the same in it (newer clients announce version=1.0.0, which old servers reject).


# --------------------------------------------------------------------------- metrics


def hung_after(link: Link) -> float:
    """How long a link may go without finishing a read, with a poll overdue, before it counts as hung.

    Far longer than any legitimate read: a silent meter costs ``timeout x tries``
    and the driver gives up on it at once; a healthy batch is a few transactions.
    """
    return max(HUNG_MIN, 20 * link.timeout * link.tries)


class Liveness:
    """Whether the gateway is still making progress; the one judgement behind /healthz and the watchdog.

    It is called periodically (the watchdog task, /healthz probes) and
    remembers when each link's read count last moved.  A link is hung when that
    count has not moved for :func:`hung_after` *and* its next poll is overdue by
    as much: a link idle until its next 15-minute moment is not hung.  A link
    whose poll loop ended (a bug raised out of it) is dead.
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._progress: dict[str, tuple[int, float]] = {}

    def check(self, *, now: float | None = None, mono: float | None = None) -> list[str]:
        """Problems found, one line each; empty when alive."""
        now = time.time() if now is None else now
        mono = time.monotonic() if mono is None else mono
        problems = []
        for lid in self.gw.schedulers:
            if self.gw.link_alive(lid) is False:  # None: not started (yet), not judged
                problems.append(f"link {lid}: poll loop ended")
        for lid, sched in self.gw.schedulers.items():
            problem = self._link_hung(lid, sched, now, mono)
            if problem:
                problems.append(problem)
        return problems

    def _link_hung(self, lid: str, sched: LinkScheduler, now: float, mono: float) -> str | None:
        since = sched.state.busy_since
        # one read may legitimately take minutes (a DLMS load-profile backfill at 2400 baud): 15 min at least
        if since is not None and mono - since > max(900.0, hung_after(sched.link)):
            return f"link {lid}: one read has been running for {mono - since:.0f} s"
        polls = sched.state.polls
        seen = self._progress.get(lid)
        if seen is None or seen[0] != polls:
            self._progress[lid] = (polls, mono)
            return None
        if not sched.meters:
            return None
        stalled = mono - seen[1]
        overdue = now - min(ms.next_due() for ms in sched.meters.values())
        limit = hung_after(sched.link)
        if stalled > limit and overdue > limit:
            return f"link {lid}: no read finished for {stalled:.0f} s while a poll is {overdue:.0f} s overdue"
        return None


class Readiness:
    """Whether the gateway does its job: the journal takes writes and every link produces readings."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._journal_checked = -JOURNAL_PROBE_EVERY
        self._journal_problem: str | None = None

    def links(self, now: float | None = None) -> list[str]:
        """One line per link none of whose meters was read successfully within 3 of its intervals."""
        now = time.time() if now is None else now
        problems = []
        for lid, sched in self.gw.schedulers.items():
            fresh = False
            newest: datetime | None = None
            for ms in sched.meters.values():
                if ms.last_ok is None:
                    continue
                newest = ms.last_ok if newest is None else max(newest, ms.last_ok)
                interval = min(g.interval for g in ms.groups)
                if now - ms.last_ok.timestamp() <= READY_INTERVALS * interval:
                    fresh = True
                    break
            if not fresh:
                if newest is None:
                    problems.append(f"link {lid}: no successful read yet")
                else:
                    problems.append(f"link {lid}: no successful read within {READY_INTERVALS} intervals "
                                    f"(last {now - newest.timestamp():.0f} s ago)")
        return problems

    def probe_journal(self) -> str | None:
        """Write one small row to the journal (blocking: call it in a thread); the problem, or None."""
        try:
            self.gw.journal.set_state("meterlink.readyz", datetime.now(UTC).isoformat())
        except JournalError as exc:
            return f"journal: {exc}"
        except (sqlite3.Error, OSError) as exc:
            return f"journal: not writable: {self.gw.journal.path}: {exc}"
        return None

    async def check(self) -> list[str]:
        problems = []
        if self.gw.journal.problem:  # the writer's own last attempt failed: say so at once, no probe needed
            return [f"journal: {self.gw.journal.problem}", *self.links()]
        if time.monotonic() - self._journal_checked >= JOURNAL_PROBE_EVERY:
            try:
                self._journal_problem = await asyncio.wait_for(asyncio.to_thread(self.probe_journal), 5.0)
            except TimeoutError:
                self._journal_problem = f"journal {self.gw.journal.path}: a write took more than 5 s"
            self._journal_checked = time.monotonic()
        if self._journal_problem:
            problems.append(self._journal_problem)
        return problems + self.links()


# --------------------------------------------------------------------------- HTTP


