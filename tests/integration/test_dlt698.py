"""DL/T 698.45 end to end: ``meterlink read`` over a real pty and TCP against ``meterlink simulate dlt698``,
NormalList fallback, late and stale replies, daily freeze backfill, clock drift, scan, and cross-checks with
the independent PyPI ``dlt698`` (its Server read by our driver, its Client reading our simulator)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt698
import dlt698.codec as ref
import pytest
from dlt698 import _native as n

from meterlink.core.config import parse_config, profile_points
from meterlink.drivers.dlt698.data import DataType, Oad, encode_data, scaled
from meterlink.drivers.dlt698.oads import parse_oad
from meterlink.drivers.dlt698.scan import find_meters
from meterlink.engine.gateway import Gateway
from meterlink.simulators.dlt698 import Dlt698Bus, Dlt698Handler, Dlt698Meter
from meterlink.simulators.dlt698_cli import FROZEN_AT, make_meters
from meterlink.simulators.serve import PtyServer, Reply
from testkit.simproc import meter_tried, meterlink, write_config

ADDRESSES = ["123456789012", "000000000002", "000000000003"]
PROFILE = "dlt698-generic-3phase"
CLOCK_OBIS = "0.0.1.0.0.255"


def served(meter: Dlt698Meter) -> dict[str, Decimal]:
    """Every profile value ``meter`` serves at FROZEN_AT (``--freeze``), by OBIS: raw x 10^scaler of attribute 3."""
    out = {}
    for p in profile_points(PROFILE):
        oad = parse_oad(p.oad)
        if oad.oi == 0x4000:
            continue
        data = meter.read(oad, FROZEN_AT)
        su = meter.attribute(Oad(oad.oi, 3, 0), FROZEN_AT)
        assert not isinstance(data, int) and not isinstance(su, int), p
        out[p.obis] = scaled(data.value, su.value.scaler)  # type: ignore[arg-type,union-attr]
    return out


def _config(tmp_path: Path, link: dict[str, Any], addresses: list[str] = ADDRESSES, **meter: Any) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-698", "data_dir": str(tmp_path / "data")},
        "links": {"bus": link},
        "meters": {f"m-{a}": {"link": "bus", "protocol": "dlt698", "address": a, "profile": PROFILE, **meter}
                   for a in addresses},
    }


def _serial(port: str) -> dict[str, Any]:
    return {"type": "serial", "port": port, "baudrate": 9600, "parity": "N", "timeout": "500ms"}


def _tcp(port: int, timeout: str = "500ms") -> dict[str, Any]:
    return {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": timeout}


def _read_json(cfg: Path) -> tuple[int, list[dict[str, Any]], str]:
    r = meterlink("read", "-c", str(cfg), "--format", "json")
    return r.returncode, [json.loads(line, parse_float=Decimal) for line in r.stdout.splitlines()], r.stderr


def _assert_exact(readings: list[dict[str, Any]], addresses: list[str]) -> None:
    for meter, address in zip(make_meters(addresses, frozen=True), addresses, strict=True):
        mine = {x["obis"]: x for x in readings if x["meter"] == f"m-{address}"}
        for obis, value in served(meter).items():
            assert mine[obis]["quality"] == "good", mine[obis]
            assert mine[obis]["value"] == value, f"{address} {obis}: {mine[obis]['value']} != {value}"
        assert sum(mine[f"1.0.1.8.{t}.255"]["value"] for t in (1, 2, 3, 4)) == mine["1.0.1.8.0.255"]["value"]
        assert mine["1.0.1.8.0.255"]["unit"] == "kWh" and mine["1.0.32.7.0.255"]["unit"] == "V"
        assert mine["1.0.16.7.0.255"]["unit"] == "W"
        clock = mine[CLOCK_OBIS]
        assert clock["unit"] == "s" and clock["meter_ts"] is not None and abs(clock["value"]) < 60


@pytest.mark.parametrize("where", ["pty", "tcp"])
def test_three_meters_on_one_bus_exact_values(simulate, tmp_path: Path, where: str) -> None:
    args = [x for a in ADDRESSES for x in ("--address", a)]
    sim = simulate("dlt698", *args, "--pty" if where == "pty" else "--tcp=0", "--freeze")
    link = _serial(sim.where) if where == "pty" else _tcp(sim.port)
    code, readings, err = _read_json(write_config(tmp_path / "g.yaml", _config(tmp_path, link)))
    assert code == 0, err
    assert len(readings) == 3 * len(profile_points(PROFILE))
    _assert_exact(readings, ADDRESSES)


def test_link_segments_are_confirmed_and_joined(simulate, tmp_path: Path) -> None:
    sim = simulate("dlt698", "--address", ADDRESSES[0], "--tcp=0", "--freeze", "--max-frame", "64")
    code, readings, err = _read_json(write_config(tmp_path / "g.yaml", _config(tmp_path, _tcp(sim.port),
                                                                               addresses=ADDRESSES[:1])))
    assert code == 0, err
    _assert_exact(readings, ADDRESSES[:1])


def test_clock_drift(simulate, tmp_path: Path) -> None:
    sim = simulate("dlt698", "--address", ADDRESSES[0], "--tcp=0", "--clock-drift=-90s")
    raw = _config(tmp_path, _tcp(sim.port), addresses=[ADDRESSES[0]])
    raw["meters"][f"m-{ADDRESSES[0]}"] = {"link": "bus", "protocol": "dlt698", "address": ADDRESSES[0],
                                          "points": [{"oad": "40000200"}]}
    code, readings, err = _read_json(write_config(tmp_path / "g.yaml", raw))
    assert code == 0, err
    (clock,) = readings
    assert clock["obis"] == CLOCK_OBIS and -92 <= clock["value"] <= -88, clock
    meter_ts = dt.datetime.fromisoformat(clock["meter_ts"].replace("Z", "+00:00"))
    assert abs((meter_ts - dt.datetime.now(dt.UTC)).total_seconds() + 90) < 5


@pytest.mark.parametrize(("fault", "message"), [
    ("silent", "no reply within 0.5 s x 2 tries"),
    ("crc", "FCS"),
])
def test_faulty_meter_on_the_bus(simulate, tmp_path: Path, fault: str, message: str) -> None:
    sim = simulate("dlt698", "--address", ADDRESSES[0], "--address", ADDRESSES[1], "--pty", "--freeze",
                   "--fault", f"{fault}@{ADDRESSES[1]}")
    code, readings, err = _read_json(write_config(tmp_path / "g.yaml", _config(tmp_path, _serial(sim.where),
                                                                               addresses=ADDRESSES[:2])))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"m-{ADDRESSES[1]}: ") and message in lines[0], err
    _assert_exact(readings, ADDRESSES[:1])


def test_late_replies_never_yield_a_wrong_value(simulate, tmp_path: Path) -> None:
    """Replies 0.7 s late on a 0.5 s timeout, at random: a late answer is skipped or right, never wrong."""
    sim = simulate("dlt698", "--address", ADDRESSES[0], "--address", ADDRESSES[1], "--pty", "--freeze",
                   "--fault", "late:0.4", "--late-delay", "700ms")
    cfg = write_config(tmp_path / "g.yaml", _config(tmp_path, _serial(sim.where), addresses=ADDRESSES[:2]))
    expected = {f"m-{m.address}": served(m) for m in make_meters(ADDRESSES[:2], frozen=True)}
    good = 0
    for _ in range(3):
        _, readings, _ = _read_json(cfg)
        for x in readings:
            if x["quality"] == "good" and x["obis"] in expected[x["meter"]]:
                assert x["value"] == expected[x["meter"]][x["obis"]], x
                good += 1
    assert good > 0


# --- in process: the gateway against a simulated bus on a pty ------------------------------------------


class _Clocked:
    """True time for the simulated meters that a test moves on."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now() + self.offset


async def _in_process(handler: Any, raw_meters: dict[str, Any], tmp_path: Path) -> tuple[Gateway, PtyServer]:
    pty = PtyServer(lambda: handler)
    pty.start()
    raw = _config(tmp_path, _serial(pty.path), addresses=[])
    raw["links"]["bus"]["timeout"] = "3s"  # requests are counted: a reply late on a loaded machine must not be retried
    raw["meters"] = raw_meters
    gw = Gateway(parse_config(raw))
    await gw.start()
    return gw, pty


def test_normal_list_refused_is_remembered(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    oads = {p.oad for p in profile_points(PROFILE)}

    async def scenario(normal_list: bool) -> tuple[int, list[Any]]:
        (meter,) = make_meters([address], frozen=True, normal_list=normal_list)
        handler = Dlt698Handler(Dlt698Bus([meter]))
        gw, pty = await _in_process(handler, {"m": {"link": "bus", "protocol": "dlt698", "address": address,
                                                    "profile": PROFILE, "interval": "1h"}}, tmp_path / str(normal_list))
        try:
            await meter_tried(gw, "m")
            before = handler.requests
            readings = await gw.read_now("m")
            return handler.requests - before, readings
        finally:
            await gw.stop()
            pty.close()

    singles, readings = asyncio.run(scenario(False))
    assert singles == len(oads), "after the refusal every OAD is read alone, the list is not tried again"
    (meter,) = make_meters([address], frozen=True)
    expected = served(meter)
    for r in readings:
        if r.obis in expected:
            assert r.value == expected[r.obis] and r.quality.value == "good", r
    listed, _ = asyncio.run(scenario(True))
    assert listed <= 2, f"a meter with NormalList: the 32 registers in one list, the clock alone ({listed})"


class _StaleFirst:
    """Every reply is preceded by the reply to the request before: a late answer arriving at the worst moment."""

    def __init__(self, inner: Dlt698Handler) -> None:
        self.inner = inner
        self.previous: bytes | None = None
        self.requests = 0

    def feed(self, data: bytes) -> list[Reply]:
        replies = self.inner.feed(data)
        out = [Reply(self.previous)] if self.previous is not None and replies else []
        if replies:
            self.previous = b"".join(r.data for r in replies)
        return out + replies


def test_stale_reply_is_never_taken(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    (meter,) = make_meters([address], frozen=True)
    expected = served(meter)
    handler = _StaleFirst(Dlt698Handler(Dlt698Bus([meter])))

    async def scenario() -> list[Any]:
        gw, pty = await _in_process(handler, {"m": {"link": "bus", "protocol": "dlt698", "address": address,
                                                    "profile": PROFILE, "interval": "1h"}}, tmp_path)
        try:
            await meter_tried(gw, "m")
            return [*await gw.read_now("m"), *await gw.read_now("m")]
        finally:
            await gw.stop()
            pty.close()

    readings = asyncio.run(scenario())
    checked = 0
    for r in readings:
        if r.obis in expected:
            assert r.quality.value == "good" and r.value == expected[r.obis], r
            checked += 1
    assert checked == 2 * len(expected)


def test_daily_freeze_backfill_after_three_day_gap(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    clock = _Clocked()
    handler = Dlt698Handler(Dlt698Bus(make_meters([address])), clock=clock)
    raw_meters = {"m": {"link": "bus", "protocol": "dlt698", "address": address, "daily_frozen_days": 5,
                        "interval": "1h", "points": [{"oad": "00100201"}]}}

    async def scenario() -> list[tuple[dt.datetime, Decimal]]:
        gw, pty = await _in_process(handler, raw_meters, tmp_path)
        try:
            await meter_tried(gw, "m")
            await gw.read_now("m")  # nothing new: nothing journaled twice
            clock.offset += dt.timedelta(days=3)  # three days without the gateway
            await gw.read_now("m")
            await gw.read_now("m")
            await gw.journal.stop()
            gw.journal.start()
            out = []
            for b in gw.journal.iter_messages("m"):
                for r in b.as_dict()["readings"]:  # type: ignore[union-attr]
                    if r["obis"] == "1.0.1.8.0.126":  # frozen: F = 126, not the live 255
                        assert r["quality"] == "good" and r["unit"] == "kWh", r
                        out.append((dt.datetime.fromisoformat(r["meter_ts"].replace("Z", "+00:00")),
                                    Decimal(str(r["value"]))))
            return out
        finally:
            await gw.stop()
            pty.close()

    got = asyncio.run(scenario())
    stamps = [t for t, _ in got]
    assert len(stamps) == len(set(stamps)) == 8, stamps  # 5 days, then the 3 missed ones, each once
    assert stamps == sorted(stamps), "oldest first"
    assert all((b - a).total_seconds() == 86400 for a, b in itertools.pairwise(stamps))
    (meter,) = make_meters([address])
    for when, value in got:  # each freeze is the register at its own midnight
        wall = when.astimezone().replace(tzinfo=None)
        assert wall.hour == wall.minute == 0
        assert value == scaled(meter.forward(wall)[0], -2)


def test_minute_freeze_curve_backfills_once(tmp_path: Path) -> None:
    address = ADDRESSES[0]
    clock = _Clocked()
    handler = Dlt698Handler(Dlt698Bus(make_meters([address])), clock=clock)
    raw_meters = {"m": {"link": "bus", "protocol": "dlt698", "address": address, "interval": "1h",
                        "backfill": "2h", "points": [{"oad": "50020200", "name": "curve"}]}}

    async def scenario() -> list[dt.datetime]:
        gw, pty = await _in_process(handler, raw_meters, tmp_path)
        try:
            await meter_tried(gw, "m")
            await gw.read_now("m")
            clock.offset += dt.timedelta(hours=1)
            await gw.read_now("m")
            await gw.journal.stop()
            gw.journal.start()
            return [dt.datetime.fromisoformat(r["meter_ts"].replace("Z", "+00:00"))
                    for b in gw.journal.iter_messages("m") for r in b.as_dict()["readings"]  # type: ignore[union-attr]
                    if r["obis"] == "1.0.1.8.0.255"]
        finally:
            await gw.stop()
            pty.close()

    stamps = asyncio.run(scenario())
    assert len(stamps) == len(set(stamps)) >= 12, stamps  # 2 h backfill + 1 h later, every 15 min once
    assert all((b - a).total_seconds() == 900 for a, b in itertools.pairwise(sorted(stamps)))


def test_scan_finds_the_single_meter_and_listed_ones(simulate) -> None:
    from meterlink.core.config import Link, TcpLinkConfig

    one = simulate("dlt698", "--address", ADDRESSES[0], "--tcp=0")
    bus = simulate("dlt698", "--address", ADDRESSES[1], "--address", ADDRESSES[2], "--tcp=0")

    def link(port: int) -> Link:
        return Link(id="bus", config=TcpLinkConfig(type="tcp", host="127.0.0.1", port=port), protocol="dlt698")

    notes: list[str] = []
    found = asyncio.run(find_meters(link(one.port), [], 0.5, lambda _: None, notes.append))
    assert [a for a, _ in found] == [ADDRESSES[0]] and not notes
    listed = asyncio.run(find_meters(link(bus.port), ["000000000001", *ADDRESSES[1:]], 0.5, lambda _: None,
                                     notes.append))
    assert [a for a, _ in listed] == ADDRESSES[1:]


# --- cross-checks with the independent implementation (PyPI dlt698) -------------------------------------


def _their_data(data: Any) -> n.Data:
    return ref.decode_data(encode_data(data))


def test_our_driver_reads_their_server_over_tcp(tmp_path: Path) -> None:
    """PyPI dlt698's Server holds the values our simulated meter would serve; `meterlink read` gets them exact."""
    address = ADDRESSES[0]
    (meter,) = make_meters([address], frozen=True)
    session = n.SessionOptions(server=n.ServerAddress(bytes=bytes.fromhex(address)[::-1], logical=0,
                                                      type=n.AddressType.single))
    server = dlt698.Server(n.Device(n.DeviceOptions(layout=n.DeviceLayout(tariff_count=4))),
                           n.ServerOptions(protocol=session))
    for oi in sorted({parse_oad(p.oad).oi for p in profile_points(PROFILE)}):
        for attribute in (2, 3):
            value = meter.attribute(Oad(oi, attribute, 0), FROZEN_AT)
            if not isinstance(value, int):
                server.set(n.Oad(oi=oi, attribute=attribute, index=0), _their_data(value))
    server.start_tcp("127.0.0.1", 0, n.ConnectionProfile.local_preset)
    try:
        raw = _config(tmp_path, _tcp(server.local_port, "2s"), addresses=[address])
        raw["meters"][f"m-{address}"]["profile"] = PROFILE
        code, readings, err = _read_json(write_config(tmp_path / "g.yaml", raw))
    finally:
        server.close()
    assert code == 0, err
    mine = {x["obis"]: x for x in readings}
    for obis, value in served(meter).items():
        assert mine[obis]["quality"] == "good" and mine[obis]["value"] == value, mine[obis]
    assert mine[CLOCK_OBIS]["quality"] == "good"  # their clock is the frozen time we gave it: drift is large


def test_their_client_reads_our_simulator_over_tcp(simulate) -> None:
    address = ADDRESSES[0]
    sim = simulate("dlt698", "--address", address, "--tcp=0", "--freeze")
    (meter,) = make_meters([address], frozen=True)
    session = n.SessionOptions(server=n.ServerAddress(bytes=bytes.fromhex(address)[::-1], logical=0,
                                                      type=n.AddressType.single))
    client = dlt698.Client(n.ClientOptions(protocol=session))
    try:
        client.connect_tcp("127.0.0.1", sim.port, n.ConnectionProfile.local_preset)
        for oad in (Oad(0x0010, 2, 0), Oad(0x0010, 3, 0), Oad(0x2000, 2, 1), Oad(0x2004, 2, 0), Oad(0x4001, 2, 0)):
            theirs = client.get(n.Oad(oi=oad.oi, attribute=oad.attribute, index=oad.index)).require_data()
            ours = meter.read(oad, FROZEN_AT)
            assert not isinstance(ours, int)
            assert ref.encode_data(theirs) == encode_data(ours), oad
        listed = client.get_list([n.Oad(oi=0x0010, attribute=2, index=1), n.Oad(oi=0x2222, attribute=2, index=0)])
        total, missing_dar = (a.result for a in listed.attributes)
        ours_total = meter.read(Oad(0x0010, 2, 1), FROZEN_AT)
        assert not isinstance(ours_total, int) and ref.encode_data(total) == encode_data(ours_total)
        assert missing_dar == 6
        missing = client.get(n.Oad(oi=0x2222, attribute=2, index=0))
        assert missing.dar == 6 and missing.data is None
        clock = client.get(n.Oad(oi=0x4000, attribute=2, index=0)).require_data()
        assert ref.encode_data(clock)[0] == DataType.DATE_TIME_S
    finally:
        client.close()


def test_their_client_reads_our_simulator_over_a_pty() -> None:
    """dlt698's serial client (8N1: a pty takes no parity) on the pty our simulator serves."""
    address = ADDRESSES[0]
    (meter,) = make_meters([address], frozen=True, tariffs=2)
    session = n.SessionOptions(server=n.ServerAddress(bytes=bytes.fromhex(address)[::-1], logical=0,
                                                      type=n.AddressType.single))

    def client(path: str) -> list[bytes]:
        c = dlt698.Client(n.ClientOptions(protocol=session, transport_timeout=3.0))
        try:
            c.open_serial_configured(path, n.SerialOptions(baud_rate=9600, parity=n.SerialParity.none),
                                     n.SerialLinkOptions(), n.ConnectionProfile.local_preset)
            return [ref.encode_data(c.get(n.Oad(oi=0x0010, attribute=a, index=0)).require_data()) for a in (2, 3)]
        finally:
            c.close()

    async def scenario() -> list[bytes]:
        pty = PtyServer(lambda: Dlt698Handler(Dlt698Bus([meter])))
        pty.start()
        try:
            return await asyncio.to_thread(client, pty.path)
        finally:
            pty.close()

    values, scaler = asyncio.run(scenario())
    ours = [meter.read(Oad(0x0010, a, 0), FROZEN_AT) for a in (2, 3)]
    assert [values, scaler] == [encode_data(d) for d in ours if not isinstance(d, int)]
