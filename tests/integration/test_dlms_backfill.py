"""A running gateway (:class:`meterlink.engine.gateway.Gateway`, in-process) against simulated DLMS meters on TCP.

Backfill: the gateway stops for two hours of meter time and restarts; every
missed 15 min load-profile record is journaled exactly once with its meter
time stamp, its captured values under their historical OBIS codes (F = 126).
Security state: the HLS invocation counter lives in the journal and never goes
backwards across restarts.  Faulty meters: a wrong password and a meter that
drops every association leave the gateway and the good meter running.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterlink.core.config import parse_config
from meterlink.core.reading import Reading
from meterlink.engine.gateway import Gateway
from meterlink.engine.journal import Journal
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import LOAD_PROFILE, SimClock, SimMeter, parse_instant
from meterlink.simulators.dlms_server import WrapperServer
from meterlink.simulators.serve import serve_tcp, tcp_port

EK, AK = bytes(range(16)), bytes(range(0xD0, 0xE0))


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def _serve(meter: SimMeter) -> tuple[asyncio.Server, int]:
    server = await serve_tcp(lambda: WrapperServer(meter))
    return server, tcp_port(server)


def _profile_readings(data_dir: Path, meter: str) -> list[dict[str, object]]:
    j = Journal(data_dir, "gw-b", lock=False).open()
    try:
        return [r for b in j.iter_messages(meter) for r in b.as_dict()["readings"]  # type: ignore[union-attr]
                if r["meter_ts"] is not None]
    finally:
        j.close()


def test_backfill_after_two_hours_of_outage(tmp_path: Path) -> None:
    t0 = parse_instant("2026-01-05T10:02:00Z")
    clock = SimClock(start=t0, frozen=True)
    meter = make_meter(seed=3, frozen=True, clock=clock)
    data = tmp_path / "data"

    async def scenario() -> None:
        server, port = await _serve(meter)
        raw = {"gateway": {"id": "gw-b", "data_dir": str(data)},
               "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "500ms"}},
               "meters": {"m": {"link": "t", "protocol": "dlms", "address": {"client": 16}, "backfill": "1h",
                                "points": [{"obis": LOAD_PROFILE, "name": "load_profile", "class_id": 7,
                                            "interval": "1s"}]}}}

        seen: list[Reading] = []

        def runner(gw_raw: dict[str, object]) -> Gateway:
            gw = Gateway(parse_config(gw_raw))
            gw.batch_listeners.append(lambda m, seq, rs: seen.extend(rs))
            return gw

        # first run: no history, so the last hour (backfill: 1h) is read
        gw = runner(raw)
        await gw.start()
        await _wait(lambda: len([r for r in seen if r.obis == LOAD_PROFILE]) >= 4)
        await asyncio.sleep(1.2)  # a poll or two more: nothing new, nothing twice
        await gw.stop()
        # the gateway is down for two hours of the meter's time
        clock.advance(2 * 3600)
        seen.clear()
        gw = runner(raw)  # a restart: the journal says where the profile stopped
        await gw.start()
        await _wait(lambda: len([r for r in seen if r.obis == LOAD_PROFILE]) >= 8)
        clock.advance(15 * 60)  # time goes on while the gateway runs: one record more
        await _wait(lambda: len([r for r in seen if r.obis == LOAD_PROFILE]) >= 9)
        await asyncio.sleep(1.2)
        await gw.stop()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    readings = _profile_readings(data, "m")
    marks = [r["meter_ts"] for r in readings if r["obis"] == LOAD_PROFILE]
    first = parse_instant("2026-01-05T09:15:00Z")
    expected = [_stamp(first + 900 * k) for k in range(13)]  # 09:15 .. 12:15, every 15 min
    assert marks == expected, marks
    # each record's values once, with the record's time stamp, under the historical code (F = 126): a
    # subscriber of the live register 1.0.1.8.0.255 never takes a backfilled record for the current value
    energy = {r["meter_ts"]: r for r in readings if r["obis"] == "1.0.1.8.0.126"}
    assert sorted(energy) == expected
    assert not [r for r in readings if r["obis"].endswith(".255") and r["obis"] != LOAD_PROFILE]
    for k in range(13):
        t = first + 900 * k
        want = meter.expected_record(LOAD_PROFILE, t)["1.0.1.8.0.255"]
        got = energy[_stamp(t)]
        assert got["value"] == want and got["unit"] == "Wh" and got["quality"] == "good"
    assert all(Decimal(str(r["value"])) >= 0 for r in readings)


async def _wait(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_hls_invocation_counter_survives_restarts(tmp_path: Path) -> None:
    meter = make_meter(auth="hls-gmac", frozen=True, encryption_key=EK, authentication_key=AK)
    data = tmp_path / "data"
    (tmp_path / "ek").write_text(EK.hex())
    (tmp_path / "ak").write_text(AK.hex())
    for f in ("ek", "ak"):
        (tmp_path / f).chmod(0o600)

    async def scenario() -> list[int]:
        server, port = await _serve(meter)
        raw = {"gateway": {"id": "gw-b", "data_dir": str(data)},
               "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "500ms"}},
               "meters": {"m": {"link": "t", "protocol": "dlms", "address": {"client": 1}, "auth": "hls-gmac",
                                "enc_key_file": str(tmp_path / "ek"), "auth_key_file": str(tmp_path / "ak"),
                                "points": [{"obis": "1.0.32.7.0.255", "name": "voltage_l1", "unit": "V",
                                            "interval": "1s"}]}}}
        counters = []
        for run in range(3):
            if run == 2:  # the journal holds a counter far above the clock's: it must win
                j = Journal(data, "gw-b", lock=False).open()
                j.set_state("dlms.m.invocation_counter", str(int(time.time()) + 10_000_000))
                j.close()
            gw = Gateway(parse_config(raw))
            got: list[Reading] = []
            gw.batch_listeners.append(lambda m, seq, rs, got=got: got.extend(rs))
            await gw.start()
            await _wait(lambda got=got: len(got) >= 1)
            await gw.stop()
            assert all(r.quality.value == "good" for r in got), got
            j = Journal(data, "gw-b", lock=False).open()
            counters.append(int(j.get_state("dlms.m.invocation_counter") or 0))
            j.close()
        server.close()
        await server.wait_closed()
        return counters

    counters = asyncio.run(scenario())
    assert counters[0] < counters[1] < counters[2]
    assert counters[2] > int(time.time()) + 10_000_000
    assert meter.last_client_ic[1] == counters[2] - 1  # the meter saw the journal's counter, never a smaller one


def test_faulty_meters_leave_the_gateway_and_the_good_meter_running(tmp_path: Path) -> None:
    good = make_meter(seed=5, frozen=True)
    locked = make_meter(auth="lls", password=b"other-pw", frozen=True)
    dropping = make_meter(frozen=True, drop_after=0)
    (tmp_path / "pw").write_text("12345678")
    (tmp_path / "pw").chmod(0o600)
    point = [{"obis": "1.0.32.7.0.255", "name": "voltage_l1", "unit": "V", "interval": "1s"}]

    good_readings: list[Reading] = []

    async def scenario() -> None:
        servers = [await _serve(m) for m in (good, locked, dropping)]
        links = {n: {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "300ms"}
                 for n, (_, port) in zip(("a", "b", "c"), servers, strict=True)}
        raw = {"gateway": {"id": "gw-b", "data_dir": str(tmp_path / "data")}, "links": links,
               "meters": {"good": {"link": "a", "protocol": "dlms", "address": {"client": 16}, "points": point},
                          "locked": {"link": "b", "protocol": "dlms", "address": {"client": 1}, "auth": "lls",
                                     "password_file": str(tmp_path / "pw"), "points": point},
                          "dropping": {"link": "c", "protocol": "dlms", "address": {"client": 16}, "points": point}}}
        gw = Gateway(parse_config(raw))
        batches: list[str] = []
        gw.batch_listeners.append(lambda m, seq, rs: (batches.append(m), good_readings.extend(rs if m == "good" else [])))
        await gw.start()
        await _wait(lambda: batches.count("good") >= 3)
        assert all(not t.done() for t in gw._tasks), "a link task died"
        states = {m: gw.meter_state(m) for m in ("good", "locked", "dropping")}
        await gw.stop()
        for server, _ in servers:
            server.close()
        assert "locked" not in batches and "dropping" not in batches
        st = {m: s for m, s in states.items() if s is not None}
        assert st["good"].online is True and st["good"].last_error is None
        assert st["locked"].online is False and "authentication failure" in (st["locked"].last_error or "")
        assert st["dropping"].online is False and "dropped the association" in (st["dropping"].last_error or "")

    asyncio.run(scenario())
    voltage = next(p for p in good.points if p.obis == "1.0.32.7.0.255")
    assert good_readings and all(r.value == good.served(voltage) for r in good_readings)


def test_association_is_reused_and_an_expired_one_replaced() -> None:
    """Polls within a minute reuse the association; when the meter has forgotten it (inactivity timeout), the
    driver associates again on its own."""
    from meterlink.core.registry import create_driver
    from meterlink.simulators.dlms_server import HdlcServer

    meter = make_meter(frozen=True)
    handlers: list[HdlcServer] = []

    def factory() -> HdlcServer:
        handlers.append(HdlcServer([meter]))
        return handlers[-1]

    async def scenario() -> list[int]:
        server = await serve_tcp(factory)
        cfg = parse_config({"links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": tcp_port(server)}},
                            "meters": {"m": {"link": "t", "protocol": "dlms", "transport": "hdlc",
                                             "address": {"client": 16, "physical": 17},
                                             "points": [{"obis": "1.0.32.7.0.255", "name": "u", "unit": "V"}]}}})
        driver = create_driver(cfg.links["t"])
        m = cfg.meters["m"]
        await driver.open()
        counts = []
        for step in range(3):
            if step == 2:
                handlers[-1].connections.clear()  # the meter's HDLC inactivity timeout struck
            results = await driver.read(m, m.points)
            assert [r.value for r in results] == [meter.served(m.points[0])]
            counts.append(driver.counters.transactions)
        await driver.close()
        server.close()
        await server.wait_closed()
        return counts

    counts = asyncio.run(scenario())
    assert counts == [1, 2, 4]  # one GET each; the third one's first try met DM, then a new association
