"""A full disk under a running gateway, and at its start: a real 4 MiB tmpfs that fills and frees.

Why a real filesystem: what SQLite does on ENOSPC (``database or disk is
full``, or ``disk I/O error`` when it cannot grow its shared-memory file)
decides everything here, and only a real full filesystem shows it.  Mounting
needs root (CAP_SYS_ADMIN); without it the tests skip and say so.

What must hold (issue 16 item 2): polling never stops; /readyz and /status say
"journal: disk full" at once; writes resume within 5 s of space coming back;
every batch acquired meanwhile is journaled, in acquisition order, with no seq
gap; a start on a full disk waits (telling systemd) instead of exiting.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.services import free_port
from testkit.simproc import REPO, wait_until, write_config
from tests.integration.test_scheduler import POINTS

DISK_BYTES = 4 << 20
INTERVAL = 0.5


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of this test's own, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem refuses (ENOSPC); what is left is less than one block."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 512):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def _status(port: int) -> dict[str, Any]:
    code, body = _get(f"http://127.0.0.1:{port}/status")
    return json.loads(body) if code == 200 else {}


def _polls_ok(st: dict[str, Any]) -> int:
    return sum(m["polls_ok"] for m in st.get("meters", {}).values())


def _journal(db: Path) -> list[tuple[str, str, int, float]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return [(m, json.loads(p)["epoch"], s, ts)
                for m, s, ts, p in con.execute("SELECT meter, seq, ts, payload FROM batches ORDER BY id")]
    finally:
        con.close()


def _config(tmp_path: Path, data: Path, sim_port: int, http_port: int) -> Path:
    return write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-df", "data_dir": str(data)},
        "journal": {"queue_bytes": 1 << 20},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim_port, "timeout": "300ms"}},
        "meters": {f"m{u}": {"link": "t", "protocol": "modbus", "address": u, "interval": "500ms",
                             "points": POINTS} for u in (1, 2)},
        "http": {"host": "127.0.0.1", "port": http_port},
    })


def _start(cfg: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "meterlink.apps.cli", "run", "-c", str(cfg)], cwd=REPO,
                                stdout=out, stderr=out, env={**os.environ, **(env or {})})


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return -9
    return int(proc.returncode)


@pytest.mark.slow
def test_full_disk_polling_goes_on_and_writes_resume_in_order(simulate, small_disk: Path, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    http = free_port()
    data = small_disk / "data"
    log = tmp_path / "gateway.log"
    proc = _start(_config(tmp_path, data, sim.port, http), log)
    filler: Path | None = None
    try:
        assert wait_until(lambda: _status(http).get("journal", {}).get("rows", 0) >= 4, timeout=30), log.read_text()
        filler = fill(small_disk)
        # the journal may write into space it already holds for a while; then a write fails
        assert wait_until(lambda: "journal: disk full" in _get(f"http://127.0.0.1:{http}/readyz")[1], timeout=60), \
            log.read_text()[-3000:]
        # /readyz's own probe write may find it first; the writer's next commit (the next poll) says it too
        assert wait_until(lambda: str(_status(http)["journal"]["problem"]).startswith("disk full"), timeout=5)
        full_at = _status(http)
        assert _get(f"http://127.0.0.1:{http}/readyz")[0] == 503
        # polling goes on while nothing can be written: 10 more polls at least, all waiting in memory
        assert wait_until(lambda: _polls_ok(_status(http)) >= _polls_ok(full_at) + 10, timeout=30), \
            "polling stopped on a full disk"
        during = _status(http)
        assert during["journal"]["queued"] >= 5 and during["journal"]["problem"], during["journal"]
        rows_full = during["journal"]["rows"]
        filler.unlink()
        freed = time.monotonic()
        assert wait_until(lambda: _status(http)["journal"]["problem"] is None, timeout=15, interval=0.05), \
            log.read_text()[-3000:]
        resumed = time.monotonic() - freed
        assert wait_until(lambda: _status(http)["journal"]["rows"] > rows_full, timeout=5)
        assert resumed < 5.0, f"journal writes resumed {resumed:.1f} s after space came back"
        assert wait_until(lambda: _status(http)["journal"]["queued"] == 0, timeout=10)
        assert wait_until(lambda: _get(f"http://127.0.0.1:{http}/readyz")[0] == 200, timeout=10)
        final = _status(http)
    finally:
        rc = _stop(proc)
        if filler is not None:
            filler.unlink(missing_ok=True)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert final["journal"]["queue_dropped"] == 0, "nothing may be lost within the queue bound"
    assert all(m["missed_polls"] == 0 for m in final["meters"].values()), final["meters"]
    rows = _journal(data / "journal.sqlite")
    for meter in ("m1", "m2"):
        mine = [(seq, ts, epoch) for m, epoch, seq, ts in rows if m == meter]
        seqs = [s for s, _, _ in mine]
        assert seqs == list(range(1, len(seqs) + 1)), f"{meter}: seq gap or reuse: {seqs}"
        stamps = [t for _, t, _ in mine]
        assert stamps == sorted(stamps), f"{meter}: seqs out of acquisition order"
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        # polls every 0.5 s: no stretch of the episode without a journaled reading (a loaded box: 3 s at most)
        assert max(gaps) < 3.0, f"{meter}: {max(gaps):.1f} s without a reading"
        assert len({e for _, _, e in mine}) == 1
    print(f"\nFIGURES disk-full: resume after free {resumed:.2f} s; polls while full "
          f"{_polls_ok(during) - _polls_ok(full_at)}; queue_dropped {final['journal']['queue_dropped']}; "
          f"missed polls {sum(m['missed_polls'] for m in final['meters'].values())}")


def test_start_on_a_full_disk_waits_then_runs(simulate, small_disk: Path, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    http = free_port()
    data = small_disk / "data"
    cfg = _config(tmp_path, data, sim.port, http)
    log = tmp_path / "gateway.log"
    proc = _start(cfg, log)  # a first run makes the journal, then stops cleanly
    try:
        assert wait_until(lambda: _status(http).get("journal", {}).get("rows", 0) >= 2, timeout=30), log.read_text()
    finally:
        assert _stop(proc) == 0
    filler = fill(small_disk)
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    proc = _start(cfg, log, env={"NOTIFY_SOCKET": str(notify)})
    messages: list[str] = []

    def heard(needle: str) -> bool:
        with contextlib.suppress(TimeoutError):
            messages.append(sock.recv(4096).decode())
        return any(needle in m for m in messages)

    try:
        assert wait_until(lambda: heard("EXTEND_TIMEOUT_USEC="), timeout=20), (messages, log.read_text()[-2000:])
        time.sleep(0.5)  # the only fixed wait: proves "still running", not a condition to poll for
        assert proc.poll() is None, f"exited {proc.returncode} on a full disk: {log.read_text()[-2000:]}"
        assert any("STATUS=waiting: journal: disk full" in m for m in messages), messages
        assert "disk full at start, waiting for space" in log.read_text()
        filler.unlink()
        assert wait_until(lambda: heard("READY=1"), timeout=15), (messages, log.read_text()[-2000:])
        before = _status(http).get("journal", {}).get("rows", 0)
        assert wait_until(lambda: _status(http).get("journal", {}).get("rows", 0) > before, timeout=15)
    finally:
        rc = _stop(proc)
        sock.close()
        filler.unlink(missing_ok=True)
    assert rc == 0, log.read_text()[-2000:]


def test_unit_never_gives_up_on_a_condition_that_clears_by_itself() -> None:
    """Under StartLimitBurst=5 systemd left a gateway "failed" after a full disk; only a bad config may stop it."""
    from tests.test_systemd import unit_directives

    d = {k: v[-1] for k, v in unit_directives().items()}
    assert d["StartLimitIntervalSec"] == "0", "a start limit turns a passing fault into a dead service"
    assert "StartLimitBurst" not in d or d["StartLimitIntervalSec"] == "0"
    assert d["Restart"] in ("on-failure", "always")
    assert d["RestartPreventExitStatus"].split() == ["2"]  # exit 2: invalid configuration, a person must fix it
