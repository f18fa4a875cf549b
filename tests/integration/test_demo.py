"""``meterlink demo`` runs its simulated meters through the gateway and shows their readings.

The table is checked where a metering engineer would look first: the first
frame on a real terminal is complete (no half-filled rows), every column has
one unit and fixed decimals, the import register is the live one and not the
midnight load-profile record or the daily freeze stored under the same code,
and five simulated meters do not all show the same voltage.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from meterlink.apps.demo import COLUMNS, DLT645_BUS, Column, cell, is_live
from meterlink.core.reading import Quality, Reading
from meterlink.engine.journal import Journal
from meterlink.simulators.model import MeterModel
from testkit.simproc import meterlink, meterlink_cmd
from tests.integration.test_metrics_run import run_in_pty

METERS = ("sdm630-1", "dtsu666-1", "dlt645-0101", "dlt645-0102", "dlt698-0201", "dlms-1")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
# the value cells of a row, column by column: V 1 decimal, A 2, kW 3, Hz 2, kWh 2 (thousands with commas)
CELL = (r"\d{3}\.\d", r"\d+\.\d\d", r"-?\d+\.\d{3}", r"\d\d\.\d\d", r"[\d,]+\.\d\d", r"[\d,]+\.\d\d")
ROW = re.compile(r"^\s*(\S+)\s+(\S+)\s+" + r"\s+".join(f"({c})" for c in CELL) + r"\s+(\d+)\s+\d\d:\d\d:\d\d\.\d{3}\s*$")


def test_demo_reads_every_simulated_meter(tmp_path: Path) -> None:
    r = meterlink("demo", "--data-dir", str(tmp_path / "data"), "--seconds", "3", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    con = sqlite3.connect(tmp_path / "data" / "journal.sqlite")
    meters = {m for (m,) in con.execute("SELECT DISTINCT meter FROM batches")}
    con.close()
    assert meters == set(METERS)
    assert "sdm630-1" in r.stdout and "online" in r.stdout


def _journal(data_dir: Path) -> dict[str, list[tuple[int, dict[str, object]]]]:
    j = Journal(data_dir, "demo", lock=False).open()
    try:
        out: dict[str, list[tuple[int, dict[str, object]]]] = {}
        for b in j.iter_messages():
            for r in b.as_dict()["readings"]:
                out.setdefault(b.meter, []).append((b.seq, r))
        return out
    finally:
        j.close()


def test_demo_first_frame_is_whole_live_and_in_one_unit_per_column(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rc, screen = run_in_pty([*meterlink_cmd(), "demo", "--data-dir", str(data), "--mqtt", "127.0.0.1:1",
                             "--seconds", "1"], seconds=60, rows=40, cols=140)
    text = ANSI.sub("", screen)
    assert rc == 0 and "Traceback" not in text, text
    frames = text.split("Meterlink demo: gateway demo")
    assert len(frames) >= 2, text
    first = frames[1].splitlines()
    header = next(line for line in first if "meter" in line and "state" in line)
    for col in ("U L1 V", "I L1 A", "P kW", "f Hz", "import kWh", "export kWh"):
        assert col in header, header
    rows = {m.group(1): m for m in (ROW.match(line) for line in first) if m}
    # no torn first frame: every meter polled once, every cell filled, in its column's unit and decimals
    assert set(rows) == set(METERS), "\n".join(first)
    assert all(m.group(2) == "online" for m in rows.values()), "\n".join(first)
    assert not any(re.search(r"\d (k?Wh?|V|A|Hz)\b", line) for line in first if ROW.match(line)), "\n".join(first)

    voltages = {m.group(3) for m in rows.values()}
    assert len(voltages) >= 3, f"simulated meters look alike: {voltages}"

    # the import shown is the live register of the poll shown (seq), never a load-profile record or a freeze
    journal = _journal(data)
    historical_shown = 0
    for mid, m in rows.items():
        seq, shown = int(m.group(9)), Decimal(m.group(7).replace(",", ""))
        live = [Decimal(str(r["value"])) for s, r in journal[mid] if s == seq and r["obis"] == "1.0.1.8.0.255"
                and r["meter_ts"] is None]
        assert live and shown == live[-1].quantize(Decimal("0.01")), (mid, shown, live)
        history = {Decimal(str(r["value"])).quantize(Decimal("0.01")) for _, r in journal[mid]
                   if r["obis"].startswith("1.0.1.8.0.") and (r["meter_ts"] is not None or r["obis"][-4:] != ".255")}
        historical_shown += bool(history)
    assert historical_shown >= 3, "the demo's DLMS profile and DL/T 645 freezes should give the table history to skip"


def _reading(obis: str, value: str, unit: str, *, meter_ts: datetime | None = None,
             quality: Quality = Quality.GOOD) -> Reading:
    return Reading(gateway="demo", meter="m", obis=obis, name="x", value=Decimal(value), unit=unit,
                   ts=datetime(2030, 6, 1, 10, 0, tzinfo=UTC), meter_ts=meter_ts, quality=quality)


def test_demo_takes_only_live_values_under_either_scheme() -> None:
    midnight = datetime(2030, 6, 1, 0, 0, tzinfo=UTC)
    assert is_live(_reading("1.0.1.8.0.255", "100", "kWh"))
    assert not is_live(_reading("1.0.1.8.0.126", "90", "kWh", meter_ts=midnight))  # a freeze, own OBIS identity
    assert not is_live(_reading("1.0.1.8.0.101", "90", "kWh"))  # a billing period value
    assert not is_live(_reading("1.0.1.8.0.255", "90", "kWh", meter_ts=midnight))  # a freeze under the live code
    push = datetime(2030, 6, 1, 10, 0, tzinfo=UTC) - timedelta(seconds=3)  # a push stamped by a clock 3 s slow
    assert is_live(_reading("1.0.16.7.0.255", "5", "kW", meter_ts=push))


def test_demo_cells_have_one_unit_and_fixed_decimals() -> None:
    power, energy = COLUMNS[2], COLUMNS[4]
    assert (power.unit, energy.unit) == ("kW", "kWh")
    assert cell(_reading("1.0.16.7.0.255", "5314.3", "W"), power).plain == "5.314"
    assert cell(_reading("1.0.16.7.0.255", "6.1387", "kW"), power).plain == "6.139"
    assert cell(_reading("1.0.1.8.0.255", "24083.7", "kWh"), energy).plain == "24,083.70"
    assert cell(_reading("1.0.1.8.0.255", "1234567", "Wh"), energy).plain == "1,234.57"
    assert cell(_reading("1.0.32.7.0.255", "230", "V"), Column(("1.0.32.7.0.255",), "U", "V", 1)).plain == "230.0"
    assert cell(_reading("1.0.16.7.0.255", "5", "kvar"), power).plain == "in kvar?"  # not a power in W: no number
    assert cell(_reading("1.0.16.7.0.255", "5", "kW", quality=Quality.INVALID), power).plain == "invalid"


def test_simulated_meters_differ_by_address_and_repeat_per_address() -> None:
    obis = ("1.0.32.7.0.255", "1.0.31.7.0.255", "1.0.16.7.0.255", "1.0.1.8.0.255")
    start = 2_000_000_000.0
    served = {a: tuple(MeterModel.for_address(a, frozen=True, start=start).value(o) for o in obis)
              for a in (*DLT645_BUS, "rs485-1/1", "tcp-dtsu/1", "dlms-tcp/1")}
    for i, quantity in enumerate(("voltage", "current", "power", "energy")):
        values = [v[i] for v in served.values()]
        assert len(set(values)) == len(values), f"{quantity}: {values}"
    assert all(Decimal(220) < v[0] < Decimal(240) for v in served.values())
    again = MeterModel.for_address(DLT645_BUS[0], frozen=True, start=start)
    assert tuple(again.value(o) for o in obis) == served[DLT645_BUS[0]]
