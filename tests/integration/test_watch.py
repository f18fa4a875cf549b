"""``meterlink watch`` against a real Mosquitto: a real gateway, a gateway gone quiet, and one that died.

The monitoring centre's view is checked where it matters: live values come
from the meterlink's data messages (and match its journal exactly in the CSV),
silence is flagged ``stale``, a gateway's will or a meter's status flags
``offline``, and old messages drained from a backlog do not overwrite newer ones.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiomqtt
import pytest
from rich.console import Console

from meterlink.apps.watch import Monitor, parse_broker, render
from meterlink.core.reading import format_ts
from meterlink.engine.journal import Journal
from testkit.simproc import REPO, meterlink_cmd, wait_until, write_config

P = "fleet"


def _data(gw: str, meter: str, seq: int, ts: float, readings: list[tuple[str, str | None, str]]) -> bytes:
    stamp = format_ts(datetime.fromtimestamp(ts, UTC))
    return json.dumps({"gateway": gw, "meter": meter, "seq": seq, "ts": stamp, "readings": [
        {"gateway": gw, "meter": meter, "obis": o, "name": "x", "value": None if v is None else float(v), "unit": u,
         "ts": stamp, "meter_ts": None, "quality": "good"} for o, v, u in readings]}).encode()


# --------------------------------------------------------------------------- the model, message by message


def test_monitor_values_by_acquisition_time_units_and_energy_today() -> None:
    mon = Monitor(P, stale=60)
    midnight = time.mktime(time.strptime("2030-06-01 00:00:00", "%Y-%m-%d %H:%M:%S"))
    t = midnight + 10 * 3600
    mon.handle(f"{P}/gw/m1/data", _data("gw", "m1", 5, t, [("1.0.16.7.0.255", "2500", "W"),
                                                          ("1.0.1.8.0.255", "100.5", "kWh")]))
    # a backlog message from earlier today arrives late: it must not overwrite the live power, and starts the day
    mon.handle(f"{P}/gw/m1/data", _data("gw", "m1", 2, midnight + 60, [("1.0.16.7.0.255", "900", "W"),
                                                                      ("1.0.1.8.0.255", "90.25", "kWh")]))
    mv = mon.meters[("gw", "m1")]
    assert mv.power_kw() == Decimal("2.5")
    assert mv.energy_today() == (Decimal("10.25"), False)
    assert mv.gaps == 0 and mv.seq == 5  # watch came in at 5 (no gap), 2 is a late one (no gap either)
    mon.handle(f"{P}/gw/m1/data", _data("gw", "m1", 8, t + 10, [("1.0.16.7.0.255", "2600", "W")]))
    assert mv.gaps == 2 and mv.seq == 8 and mv.power_kw() == Decimal("2.6")  # 6 and 7 went missing
    # yesterday's last reading does not start today
    mon.handle(f"{P}/gw/m2/data", _data("gw", "m2", 1, midnight - 30, [("1.0.1.8.0.255", "7", "kWh")]))
    mon.handle(f"{P}/gw/m2/data", _data("gw", "m2", 2, t, [("1.0.1.8.0.255", "8", "kWh"),
                                                          ("1.0.36.7.0.255", "1.5", "kW"),
                                                          ("1.0.56.7.0.255", "500", "W"),
                                                          ("1.0.32.7.0.255", "231.4", "V")]))
    m2 = mon.meters[("gw", "m2")]
    assert m2.energy_today() == (Decimal(0), True)  # first seen at 10:00: a partial day, marked
    assert m2.power_kw() == Decimal("2.0") and m2.voltages() == [Decimal("231.4"), None, None]


def test_monitor_stale_offline_and_garbage() -> None:
    mon = Monitor(P, stale=60)
    now = 2_000_000_000.0
    for seq, ts in enumerate((now - 40, now - 30, now - 20), start=1):
        mon.handle(f"{P}/gw/m1/data", _data("gw", "m1", seq, ts, [("1.0.32.7.0.255", "230", "V")]))
    mv = mon.meters[("gw", "m1")]
    assert mv.period() == 10 and mon.meter_state(mv, now) == "online"
    assert mon.meter_state(mv, now + 41) == "stale"
    slow = Monitor(P, stale=60)  # a meter polled every 15 min is stale only after 3 of its periods
    for seq, ts in enumerate((now - 1800, now - 900), start=1):
        slow.handle(f"{P}/gw/e/data", _data("gw", "e", seq, ts, [("1.0.1.8.0.255", "1", "kWh")]))
    assert slow.meter_state(slow.meters[("gw", "e")], now + 1700) == "online"
    assert slow.meter_state(slow.meters[("gw", "e")], now + 1900) == "stale"
    mon.handle(f"{P}/gw/m1/status", b'{"online": false, "last_ok": null, "error": "no reply"}')
    assert mon.meter_state(mv, now) == "offline" and mv.error == "no reply"
    mon.handle(f"{P}/gw/m1/status", b'{"online": true, "last_ok": null, "error": null}')
    mon.handle(f"{P}/gw/status", b'{"online": false}')  # the will
    assert mon.meter_state(mv, now) == "offline" and mon.gateway_state(mon.gateways["gw"], now) == "offline"
    for topic, payload in ((f"{P}/gw/m1/data", b"\xff\xfe"), (f"{P}/gw/m1/data", b"[1]"),
                           (f"{P}/gw/m1/data", b'{"ts": "yesterday"}'), (f"{P}/gw/cmd/status", b'{"id": 1}'),
                           ("other/gw/m1/data", b"{}"), (f"{P}/gw/m1/data", b"[" * 100000)):
        assert mon.handle(topic, payload) is None
    assert ("gw", "cmd") not in mon.meters and mon.bad_messages == 4


@pytest.mark.parametrize(("width", "height"), [(30, 10), (60, 15), (100, None), (200, None)])
def test_watch_view_fits_the_terminal(width: int, height: int | None) -> None:
    mon = Monitor(P, stale=60)
    now = 2_000_000_000.0
    for g in range(3):
        mon.handle(f"{P}/gw-{g}/status", b'{"online": true, "version": "0.1.0"}')
        for m in range(12):
            age = 3600 if m == 5 else 5
            mon.handle(f"{P}/gw-{g}/meter-{m:02d}/data", _data(f"gw-{g}", f"meter-{m:02d}", 1, now - age, [
                ("1.0.16.7.0.255", "1234.5", "W"), ("1.0.32.7.0.255", "230.1", "V"), ("1.0.52.7.0.255", "229", "V"),
                ("1.0.72.7.0.255", "231", "V"), ("1.0.1.8.0.255", "4321.25", "kWh")]))
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render(mon, width, height, now=now, broker="mqtt://b:1"))
    lines = out.getvalue().rstrip("\n").splitlines()
    assert all(len(line) <= width for line in lines), out.getvalue()
    if height is not None:
        assert len(lines) <= height + 1, out.getvalue()
    assert "stale" in out.getvalue()  # the stale meters come first, so they survive a short terminal
    if width >= 100:
        assert "1.23" in out.getvalue() and "230.1" in out.getvalue()


def _local_midnight(now: float) -> float:
    return datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _history_data(gw: str, meter: str, seq: int, ts: float,
                  readings: list[tuple[str, str, str, float | None]]) -> bytes:
    """A data message whose readings may carry a meter_ts (a freeze, a load-profile record)."""
    stamp = format_ts(datetime.fromtimestamp(ts, UTC))
    return json.dumps({"gateway": gw, "meter": meter, "seq": seq, "ts": stamp, "readings": [
        {"gateway": gw, "meter": meter, "obis": o, "name": "x", "value": float(v), "unit": u, "ts": stamp,
         "meter_ts": None if mts is None else format_ts(datetime.fromtimestamp(mts, UTC)), "quality": "good"}
        for o, v, u, mts in readings]}).encode()


def test_monitor_energy_today_from_midnight_and_history_is_not_live() -> None:
    mon = Monitor(P, stale=60)
    now = time.mktime(time.strptime("2030-06-01 10:00:00", "%Y-%m-%d %H:%M:%S"))
    midnight = _local_midnight(now)
    # watch came in at 10:00; the gateway delivers the daily freeze at local midnight as F = 126
    mon.handle(f"{P}/gw/e1/data", _history_data("gw", "e1", 9, now, [
        ("1.0.1.8.0.255", "1234.5", "kWh", None), ("1.0.1.8.0.126", "1200.25", "kWh", midnight)]))
    e1 = mon.meters[("gw", "e1")]
    assert e1.energy_today() == (Decimal("34.25"), False)
    # the older scheme: the freeze under the live code with its meter_ts, listed after the live value
    mon.handle(f"{P}/gw/e2/data", _history_data("gw", "e2", 4, now, [
        ("1.0.1.8.0.255", "520.75", "kWh", None), ("1.0.16.7.0.255", "3.5", "kW", None),
        ("1.0.1.8.0.255", "500", "kWh", midnight), ("1.0.16.7.0.255", "9.9", "kW", midnight + 900)]))
    e2 = mon.meters[("gw", "e2")]
    assert e2.readings["1.0.1.8.0.255"]["value"] == Decimal("520.75") and e2.power_kw() == Decimal("3.5")
    assert e2.energy_today() == (Decimal("20.75"), False)
    # yesterday's freeze does not start today: without today's, the figure counts from 10:00, marked partial
    mon.handle(f"{P}/gw/e3/data", _history_data("gw", "e3", 1, now, [
        ("1.0.1.8.0.255", "70", "kWh", None), ("1.0.1.8.0.126", "60", "kWh", midnight - 86400)]))
    assert mon.meters[("gw", "e3")].energy_today() == (Decimal(0), True)


def test_monitor_waiting_meter_says_how_long() -> None:
    mon = Monitor(P, stale=60)
    now = 2_000_000_000.0
    mon.handle(f"{P}/gw/status", b'{"online": true, "version": "0.1.0"}')
    mon.handle(f"{P}/gw/slow/status", b'{"online": true, "last_ok": null, "error": null, "interval_s": 900.0}')
    mon.handle(f"{P}/gw/old/status", b'{"online": true, "last_ok": null, "error": null}')  # an older gateway
    assert mon.meter_state(mon.meters[("gw", "slow")], now) == "waiting"
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render(mon, 160, None, now=now, broker="mqtt://b:1"))
    lines = out.getvalue().splitlines()
    assert any("slow" in line and "waiting (polls every 15m)" in line for line in lines), out.getvalue()
    assert any("old" in line and "waiting" in line and "polls" not in line for line in lines), out.getvalue()
    assert "no data" not in out.getvalue()


def test_parse_broker() -> None:
    assert parse_broker("h") == ("h", 1883) and parse_broker("h:1884") == ("h", 1884)
    assert parse_broker("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError):
        parse_broker("h:0")


# --------------------------------------------------------------------------- end to end over a real broker


async def _publish(port: int, messages: list[tuple[str, bytes, bool]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{uuid.uuid4().hex[:8]}") as c:
        for topic, payload, retain in messages:
            await c.publish(topic, payload, qos=1, retain=retain)


def _journal_values(data_dir: Path, gw: str) -> dict[tuple[str, int, str], Decimal]:
    j = Journal(data_dir, gw, lock=False).open()
    try:
        return {(b.meter, b.seq, r["obis"]): r["value"] for b in j.iter_messages() for r in b.as_dict()["readings"]}
    finally:
        j.close()


def _real_seqs(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open() as f:
        return {r["seq"] for r in csv.DictReader(f) if r.get("gateway") == "gw-real"}


def _retained(port: int, topic: str) -> dict[str, object]:
    async def get() -> dict[str, object]:
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{uuid.uuid4().hex[:8]}") as c:
            await c.subscribe(topic, qos=1)
            async with asyncio.timeout(10):
                async for m in c.messages:
                    return dict(json.loads(bytes(m.payload)))
        return {}

    return asyncio.run(get())


def test_watch_real_gateway_quiet_gateway_dead_gateway(simulate, mosquitto, tmp_path: Path) -> None:
    prefix = f"watch-{uuid.uuid4().hex[:8]}"
    now = time.time()
    asyncio.run(_publish(mosquitto.port, [
        (f"{prefix}/gw-dead/status", b'{"online": false}', True),
        (f"{prefix}/gw-quiet/status", b'{"online": true, "ts": "2030-01-01T00:00:00.000Z", "version": "0.1.0"}', True),
    ]))
    out_csv = tmp_path / "seen.csv"
    watch = subprocess.Popen([*meterlink_cmd(), "watch", "--mqtt", f"127.0.0.1:{mosquitto.port}",
                              "--prefix", prefix, "--csv", str(out_csv)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "COLUMNS": "200"})
    gw = None
    try:
        assert watch.stderr is not None
        line = watch.stderr.readline()
        assert "subscribed to" in line, line + watch.stderr.read()
        asyncio.run(_publish(mosquitto.port, [
            (f"{prefix}/gw-quiet/q1/data", _data("gw-quiet", "q1", 7, now - 600, [("1.0.16.7.0.255", "1000", "W")]),
             False),
            (f"{prefix}/gw-dead/d1/data", _data("gw-dead", "d1", 3, now, [("1.0.16.7.0.255", "2000", "W")]), False),
        ]))
        sim = simulate("modbus", "--profile", "eastron-sdm630", "--unit", "1", "--tcp", "0")
        fast = [{"obis": o, "interval": "1s"} for o in ("1.0.16.7.0.255", "1.0.32.7.0.255", "1.0.52.7.0.255",
                                                         "1.0.72.7.0.255", "1.0.1.8.0.255")]
        cfg = write_config(tmp_path / "g.yaml", {
            "gateway": {"id": "gw-real", "data_dir": str(tmp_path / "data")},
            "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"}},
            "meters": {"sdm": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630",
                               "points": fast}},
            "sinks": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "prefix": prefix}},
        })
        gw = subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # until the CSV holds 3 of the real gateway's data messages (then Ctrl-C: watch prints its last view)
        assert wait_until(lambda: len(_real_seqs(out_csv)) >= 3, timeout=40), "watch saw fewer than 3 data messages"
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
        if gw is not None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
    assert watch.returncode == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("gw-")}
    by_meter = {tuple(line.split()[:2]): line for line in out.splitlines() if line.strip().startswith("gw-")
                and len(line.split()) > 2 and line.split()[1] in ("sdm", "q1", "d1")}
    assert "online" in by_meter[("gw-real", "sdm")], out
    assert "stale" in by_meter[("gw-quiet", "q1")] and "offline" in by_meter[("gw-dead", "d1")], out
    assert "stale" in rows["gw-quiet"] and "offline" in rows["gw-dead"], out

    with out_csv.open() as f:
        seen = list(csv.DictReader(f))
    real = [r for r in seen if r["gateway"] == "gw-real"]
    assert len({r["seq"] for r in real}) >= 3, "watch saw fewer than 3 data messages"
    # the meter's retained status says how often it is polled, for "waiting (polls every ...)"
    assert _retained(mosquitto.port, f"{prefix}/gw-real/sdm/status")["interval_s"] == 1.0
    journal = _journal_values(tmp_path / "data", "gw-real")
    for r in real:
        assert Decimal(r["value"]) == journal[("sdm", int(r["seq"]), r["obis"])], r
    assert {"1.0.16.7.0.255", "1.0.32.7.0.255", "1.0.1.8.0.255"} <= {r["obis"] for r in real}
    power = next(r for r in reversed(real) if r["obis"] == "1.0.16.7.0.255")
    shown = Decimal(by_meter[("gw-real", "sdm")].split()[3].replace(",", ""))
    assert shown == (Decimal(power["value"]) / 1000).quantize(Decimal("0.01")), (shown, power)
    assert any(r["gateway"] == "gw-quiet" and r["seq"] == "7" for r in seen)


def test_watch_live_on_a_small_terminal(mosquitto) -> None:
    from tests.integration.test_metrics_run import run_in_pty

    prefix = f"live-{uuid.uuid4().hex[:8]}"
    asyncio.run(_publish(mosquitto.port, [(f"{prefix}/gw-a/status", b'{"online": false}', True)]))
    rc, screen = run_in_pty([*meterlink_cmd(), "watch", "--mqtt", f"127.0.0.1:{mosquitto.port}",
                             "--prefix", prefix, "--seconds", "2.5"], seconds=30, rows=10, cols=40)
    assert rc == 0 and "gw-a" in screen and "offline" in screen and "Traceback" not in screen, screen


def test_watch_live_waiting_meters_and_energy_since_midnight(mosquitto) -> None:
    """On a real terminal: a meter known only by its status waits with its interval; kWh today counts from midnight."""
    from tests.integration.test_metrics_run import run_in_pty

    prefix = f"today-{uuid.uuid4().hex[:8]}"
    now = time.time()
    midnight = _local_midnight(now)
    # retained, so the watch started below gets them at once (a gateway's data messages are not retained)
    asyncio.run(_publish(mosquitto.port, [
        (f"{prefix}/gw-t/status", b'{"online": true, "version": "0.1.0"}', True),
        (f"{prefix}/gw-t/w1/status", b'{"online": true, "last_ok": null, "error": null, "interval_s": 60}', True),
        (f"{prefix}/gw-t/e1/data", _history_data("gw-t", "e1", 3, now, [
            ("1.0.1.8.0.255", "1234.5", "kWh", None), ("1.0.1.8.0.126", "1200.25", "kWh", midnight)]), True),
        (f"{prefix}/gw-t/e2/data", _history_data("gw-t", "e2", 3, now, [
            ("1.0.1.8.0.255", "520.75", "kWh", None), ("1.0.1.8.0.255", "500", "kWh", midnight)]), True),
    ]))
    rc, screen = run_in_pty([*meterlink_cmd(), "watch", "--mqtt", f"127.0.0.1:{mosquitto.port}",
                             "--prefix", prefix, "--seconds", "2.5"], seconds=30, rows=24, cols=160)
    final = screen[screen.rfind("gateway"):] if "gateway" in screen else screen
    assert rc == 0 and "Traceback" not in screen, screen
    assert "waiting (polls every 1m)" in final and "no data" not in screen, final
    e1 = next(line for line in final.splitlines() if " e1 " in line)
    e2 = next(line for line in final.splitlines() if " e2 " in line)
    assert "34.25" in e1 and "34.25*" not in e1, e1
    assert "20.75" in e2 and "20.75*" not in e2, e2


def test_watch_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([*meterlink_cmd(), "watch", "--mqtt", "127.0.0.1:1", "--seconds", "1.5"],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr.strip().startswith("meterlink watch: no connection to 127.0.0.1:1")
    assert "Traceback" not in r.stderr
    bad = subprocess.run([*meterlink_cmd(), "watch", "--mqtt", "h", "--prefix", "a/#"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--prefix" in bad.stderr
