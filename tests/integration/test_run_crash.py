"""``meterlink run``: kill -9 loses nothing committed and seq continues; SIGTERM exits 0."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from testkit.simproc import REPO, meterlink_cmd, wait_until, write_config
from tests.integration.test_scheduler import POINTS


def _rows(db: Path) -> dict[tuple[str, int], str]:
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {(m, s): p for m, s, p in con.execute("SELECT meter, seq, payload FROM batches")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _start(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_keeps_every_committed_reading_and_seq_continues(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--pty")
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-k", "data_dir": str(data)},
        "links": {"bus": {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms"}},
        "meters": {f"m{u}": {"link": "bus", "protocol": "modbus", "address": u, "interval": "500ms",
                             "points": POINTS} for u in (1, 2)},
    })
    db = data / "journal.sqlite"
    gw = _start(cfg)
    try:
        assert wait_until(lambda: len(_rows(db)) >= 6, timeout=20), "gateway journaled nothing"
        before = _rows(db)
        gw.send_signal(signal.SIGKILL)
        gw.wait(5)
        time.sleep(0.2)
        seen_at_kill = _rows(db)
    finally:
        if gw.poll() is None:
            gw.kill()
    assert set(before) <= set(seen_at_kill)
    gw = _start(cfg)
    try:
        assert wait_until(lambda: len(_rows(db)) >= len(seen_at_kill) + 4, timeout=20)
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait(10)
    finally:
        if gw.poll() is None:
            gw.kill()
    assert rc == 0, gw.stderr.read() if gw.stderr else ""
    after = _rows(db)
    for key, payload in seen_at_kill.items():
        assert after.get(key) == payload, f"{key} changed or vanished after kill -9"
    for meter in ("m1", "m2"):
        seqs = sorted(s for m, s in after if m == meter)
        assert seqs == list(range(1, len(seqs) + 1)), f"{meter}: seq has gaps or reuse: {seqs}"
        old = max((s for m, s in seen_at_kill if m == meter), default=0)
        assert max(seqs) > old


def test_sigterm_flushes_and_exits_0(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-t", "data_dir": str(data)},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
    })
    gw = _start(cfg)
    try:
        assert wait_until(lambda: len(_rows(data / "journal.sqlite")) >= 1, timeout=15)
        t0 = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait(10)
        elapsed = time.monotonic() - t0
    finally:
        if gw.poll() is None:
            gw.kill()
    err = gw.stderr.read() if gw.stderr else ""
    assert rc == 0, err
    assert elapsed < 5
    assert "gateway stopped" in err and "Traceback" not in err
    assert not (data / "journal.sqlite-wal").exists() or (data / "journal.sqlite-wal").stat().st_size == 0
