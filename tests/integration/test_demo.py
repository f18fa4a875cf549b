"""``meterlink demo`` runs its simulated meters through the gateway and shows their readings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.simproc import meterlink


def test_demo_reads_every_simulated_meter(tmp_path: Path) -> None:
    r = meterlink("demo", "--data-dir", str(tmp_path / "data"), "--seconds", "3", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    con = sqlite3.connect(tmp_path / "data" / "journal.sqlite")
    meters = {m for (m,) in con.execute("SELECT DISTINCT meter FROM batches")}
    con.close()
    assert meters == {"sdm630-1", "dtsu666-1", "dlt645-0101", "dlt645-0102", "dlms-1"}
    assert "sdm630-1" in r.stdout and "online" in r.stdout
