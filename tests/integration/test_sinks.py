"""Delivery end to end: simulated meters -> gateway -> real Mosquitto and real VictoriaMetrics.

Broker and database outages, a gateway crash while both are down, and the
journal bound, each against the real services that tests/services.py starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.engine.gateway import Gateway
from meterlink.engine.journal import Journal
from testkit.simproc import REPO, await_until, meterlink_cmd, wait_until, write_config
from tests.integration.test_read_cli import served
from tests.integration.test_scheduler import POINTS

# the simulator's SDM120 registers that POINTS read
EXPECTED_OBIS = {p["obis"] for p in POINTS}


def _raw(gw_id: str, sim_port: int, data_dir: Path, *, mqtt: Any = None, influx: Any = None,
         meters: tuple[int, ...] = (1, 2), interval: str = "1s") -> dict[str, Any]:
    sinks: dict[str, Any] = {}
    if mqtt is not None:
        sinks["mqtt"] = mqtt
    if influx is not None:
        sinks["influxdb"] = influx
    return {
        "gateway": {"id": gw_id, "data_dir": str(data_dir)},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim_port, "timeout": "300ms"}},
        "meters": {f"m{u}": {"link": "t", "protocol": "modbus", "address": u, "interval": interval, "points": POINTS}
                   for u in meters},
        "sinks": sinks,
    }


class Subscriber:
    """Collects a gateway's MQTT messages; reconnects (persistent session) across broker restarts."""

    def __init__(self, port: int, topic: str, ident: str) -> None:
        self.port = port
        self.topic = topic
        self.ident = ident
        self.data: dict[str, list[int]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.ident, clean_session=False) as c:
                    await c.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for m in c.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.messages.append((str(m.topic), payload))
                        if str(m.topic).endswith("/data"):
                            doc = json.loads(payload)
                            self.data.setdefault(doc["meter"], []).append(doc["seq"])
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.2)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def ordered_unique(self, meter: str) -> list[int]:
        seen: list[int] = []
        for s in self.data.get(meter, []):
            if s not in seen:
                seen.append(s)
        return seen


def _journal_rows(data_dir: Path, gw_id: str) -> list[dict[str, Any]]:
    j = Journal(data_dir, gw_id, lock=False).open()
    try:
        return [b.as_dict() for b in j.iter_messages()]
    finally:
        j.close()


def _vm_samples(vm: Any, gw_id: str, min_points: int = 0) -> dict[tuple[str, str, int], float]:
    """(meter, obis, ms) -> value, duplicates collapsed (delivery is at least once)."""
    out: dict[tuple[str, str, int], float] = {}
    for s in vm.export(f'meter_value{{gateway="{gw_id}"}}', min_points=min_points, timeout=20):
        for v, t in zip(s["values"], s["timestamps"], strict=True):
            out[(s["metric"]["meter"], s["metric"]["obis"], t)] = v
    return out


def _expected_samples(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], Decimal]:
    from meterlink.core.reading import parse_ts

    out = {}
    for doc in rows:
        for r in doc["readings"]:
            if r["value"] is not None:
                out[(r["meter"], r["obis"], round(parse_ts(r["ts"]).timestamp() * 1000))] = r["value"]
    return out


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_every_seq_and_every_value(simulate, mosquitto, victoria_metrics, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0", "--freeze")
    gw_id = "gw-e2e"
    raw = _raw(gw_id, sim.port, tmp_path / "data", mqtt={"host": "127.0.0.1", "port": mosquitto.port},
               influx={"url": victoria_metrics.url, "bucket": "b"})

    async def scenario() -> Subscriber:
        sub = Subscriber(mosquitto.port, f"meterlink/{gw_id}/#", "e2e-sub")
        await sub.start()
        gw = Gateway(parse_config(raw))
        await gw.start()
        await asyncio.sleep(4)
        assert await await_until(lambda: gw.journal.backlog("mqtt") == 0 and gw.journal.backlog("influxdb") == 0, 10)
        last = {m: gw.journal.last_seq(m) for m in ("m1", "m2")}
        # polling goes on meanwhile: wait for every seq journaled so far, later ones may arrive too
        assert await await_until(lambda: all(len(sub.ordered_unique(m)) >= last[m] for m in last), 10)
        assert await await_until(lambda: gw.journal.backlog("influxdb") == 0, 10)
        delivered = gw.journal.cursor("influxdb")
        await gw.stop()
        await asyncio.sleep(0.3)
        await sub.stop()
        return sub, last, delivered

    sub, last, delivered = run(scenario())
    rows = _journal_rows(tmp_path / "data", gw_id)
    for meter in ("m1", "m2"):
        seen = sub.ordered_unique(meter)
        assert last[meter] >= 3
        assert seen == list(range(1, len(seen) + 1)), f"{meter}: gap or disorder: {sub.data[meter]}"
        assert last[meter] <= len(seen) <= max(r["seq"] for r in rows if r["meter"] == meter)
    # the retained statuses
    topics = {t: p for t, p in sub.messages}
    assert json.loads(topics[f"meterlink/{gw_id}/m1/status"])["online"] is True
    assert json.loads(topics[f"meterlink/{gw_id}/status"]) == {"online": False}  # clean stop says so
    # the database holds exactly what the simulators served, tagged as CONTRACT section 7 says
    j = Journal(tmp_path / "data", gw_id, lock=False).open()
    try:
        taken = [b.as_dict() for b in j.iter_messages() if b.id <= delivered]
    finally:
        j.close()
    expected = _expected_samples(taken)
    got = _vm_samples(victoria_metrics, gw_id, min_points=len(expected))
    assert set(expected) <= set(got) <= set(_expected_samples(rows))
    for (meter, obis, _), value in expected.items():
        assert value == served("eastron-sdm120", int(meter[1:]))[obis]
    for key, value in expected.items():
        assert Decimal(repr(got[key])) == value, key
    series = victoria_metrics.export(f'meter_value{{gateway="{gw_id}",meter="m1",obis="1.0.1.8.0.255"}}')
    assert series and series[0]["metric"]["unit"] == "kWh"


# --------------------------------------------------------------------------- outages


@pytest.mark.slow
def test_broker_outage_loses_no_seq(simulate, mosquitto_factory, tmp_path: Path) -> None:
    broker = mosquitto_factory(persistent=True)
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    gw_id = "gw-bo"
    raw = _raw(gw_id, sim.port, tmp_path / "data", mqtt={"host": "127.0.0.1", "port": broker.port})

    async def scenario() -> tuple[Subscriber, dict[str, int]]:
        sub = Subscriber(broker.port, f"meterlink/{gw_id}/+/data", "bo-sub")
        await sub.start()
        gw = Gateway(parse_config(raw))
        await gw.start()
        await asyncio.sleep(3)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(15)
        assert gw.journal.backlog("mqtt") > 0, "readings must pile up in the journal while the broker is down"
        await asyncio.to_thread(broker.start, broker.port)
        await asyncio.sleep(3)
        assert await await_until(lambda: gw.journal.backlog("mqtt") == 0, 30)
        last = {m: gw.journal.last_seq(m) for m in ("m1", "m2")}
        # polling goes on meanwhile: wait for every seq journaled so far, later ones may arrive too
        assert await await_until(lambda: all(len(sub.ordered_unique(m)) >= last[m] for m in last), 15)
        await gw.stop()
        await sub.stop()
        return sub, last

    sub, last = run(scenario())
    for meter, n in last.items():
        assert n >= 18
        seen = sub.ordered_unique(meter)
        assert seen == list(range(1, len(seen) + 1)), f"{meter} gap or disorder: {sub.data[meter]}"
        assert len(seen) >= n


@pytest.mark.slow
def test_database_outage_loses_no_reading(simulate, victoria_metrics_factory, tmp_path: Path) -> None:
    vm = victoria_metrics_factory()
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    gw_id = "gw-do"
    raw = _raw(gw_id, sim.port, tmp_path / "data", influx={"url": vm.url, "bucket": "b"})

    async def scenario() -> None:
        gw = Gateway(parse_config(raw))
        await gw.start()
        await asyncio.sleep(3)
        await asyncio.to_thread(vm.stop)
        await asyncio.sleep(15)
        assert gw.journal.backlog("influxdb") > 0
        status = gw.status()["sinks"]["influxdb"]  # type: ignore[index]
        assert status["connected"] is False and status["last_error"]
        await asyncio.to_thread(vm.start, vm.port)
        assert await await_until(lambda: gw.journal.backlog("influxdb") == 0, 40)
        await gw.stop()

    run(scenario())
    expected = _expected_samples(_journal_rows(tmp_path / "data", gw_id))
    got = _vm_samples(vm, gw_id, min_points=len(expected))
    assert set(expected) <= set(got), f"{len(set(expected) - set(got))} readings missing from the database"
    assert len(expected) >= 2 * 18 * len(POINTS)


def _gateway_proc(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_gateway_killed_while_sinks_down_delivers_everything_after_restart(
        simulate, mosquitto_factory, victoria_metrics_factory, tmp_path: Path) -> None:
    broker = mosquitto_factory(persistent=True)
    vm = victoria_metrics_factory()
    broker.stop()
    vm.stop()
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    gw_id = "gw-kc"
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "g.yaml", _raw(gw_id, sim.port, data, meters=(1,),
                                                  mqtt={"host": "127.0.0.1", "port": broker.port},
                                                  influx={"url": vm.url, "bucket": "b"}))
    proc = _gateway_proc(cfg)
    try:
        assert wait_until(lambda: (data / "journal.sqlite").exists() and len(_journal_rows(data, gw_id)) >= 4, 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _journal_rows(data, gw_id)
    broker.start(broker.port)
    vm.start(vm.port)

    async def collect() -> Subscriber:
        sub = Subscriber(broker.port, f"meterlink/{gw_id}/+/data", "kc-sub")
        await sub.start()
        proc2 = await asyncio.to_thread(_gateway_proc, cfg)
        try:
            n = len(before)
            assert await await_until(lambda: sub.ordered_unique("m1")[:n] == list(range(1, n + 1)), 30), sub.data
        finally:
            proc2.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc2.wait, 10) == 0
        await sub.stop()
        return sub

    run(collect())
    expected = _expected_samples(before)
    got = _vm_samples(vm, gw_id, min_points=len(expected))
    assert set(expected) <= set(got)


@pytest.mark.slow
def test_bounded_journal_with_sinks_down(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--tcp", "0")
    gw_id = "gw-bj"
    raw = _raw(gw_id, sim.port, tmp_path / "data", interval="100ms",
               mqtt={"host": "127.0.0.1", "port": 1}, influx={"url": "http://127.0.0.1:1", "bucket": "b"})
    for m in raw["meters"].values():  # every SDM120 register, ten times a second
        m["profile"] = "eastron-sdm120"
        m["points"] = [{"obis": p.obis, "interval": "100ms"} for p in profile_points("eastron-sdm120")]
    raw["journal"] = {"max_bytes": 262144}

    async def scenario() -> dict[str, Any]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        sizes = []
        for _ in range(30):
            await asyncio.sleep(0.25)
            sizes.append(gw.journal.used_bytes())
        status = gw.status()
        total = sum(gw.journal.last_seq(m) for m in ("m1", "m2"))
        counts = gw.journal.counts()
        await gw.stop()
        return {"sizes": sizes, "status": status, "total": total, "counts": counts}

    out = run(scenario())
    assert max(out["sizes"]) <= 262144
    counts = out["counts"]
    assert counts["dropped"] > 0
    assert counts["dropped"] == out["total"] - counts["rows"], "every dropped row is counted, no more"
    assert out["status"]["journal"]["dropped"] > 0


# --------------------------------------------------------------------------- commands


def test_commands_round_trip(simulate, mosquitto, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0", "--freeze")
    gw_id = "gw-cmd"
    raw = _raw(gw_id, sim.port, tmp_path / "data", meters=(1,), interval="1h",
               mqtt={"host": "127.0.0.1", "port": mosquitto.port, "commands": True})
    base = f"meterlink/{gw_id}/cmd"

    async def scenario() -> dict[str, dict[str, Any]]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        answers: dict[str, dict[str, Any]] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(f"{base}/+/result", qos=1)
            assert await await_until(lambda: gw.sinks[0].counters.connected, 10)
            await asyncio.sleep(0.3)
            requests = [
                ("read", {"id": "r1", "meter": "m1"}),
                ("read", {"id": "r2", "meter": "m1", "points": ["1.0.1.8.0.255"]}),
                ("read", {"id": "r3", "meter": "nope"}),
                ("status", {"id": "s1"}),
                ("reboot", {"id": "x1"}),
                ("read", b"{not json"),
                ("read", {"id": "r4"}),
                ("read", {"id": "r5", "meter": "m1", "points": ["1.0.1.8"]}),
            ]
            for command, body in requests:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                await c.publish(f"{base}/{command}", payload, qos=1)

            async def gather() -> None:
                async for m in c.messages:
                    doc = json.loads(m.payload, parse_float=Decimal)  # type: ignore[arg-type]
                    answers[str(doc["id"]) if doc["id"] is not None else "none"] = doc
                    if len(answers) == len(requests):
                        return

            await asyncio.wait_for(gather(), 15)
        await gw.stop()
        return answers

    a = run(scenario())
    assert a["r1"]["ok"] is True
    readings = a["r1"]["result"]["readings"]
    assert {r["obis"] for r in readings} == EXPECTED_OBIS
    expected = served("eastron-sdm120", 1)
    for r in readings:
        assert r["value"] == expected[r["obis"]]
    assert [r["obis"] for r in a["r2"]["result"]["readings"]] == ["1.0.1.8.0.255"]
    assert a["r3"]["ok"] is False and "unknown meter 'nope'" in a["r3"]["error"]
    assert a["s1"]["ok"] is True and a["s1"]["result"]["meters"]["m1"]["online"] is True
    assert "backlog" in a["s1"]["result"]["sinks"]["mqtt"]
    assert a["x1"]["ok"] is False and "unknown command 'reboot'" in a["x1"]["error"]
    assert a["none"]["ok"] is False and "not valid JSON" in a["none"]["error"]
    assert a["r4"]["ok"] is False and "needs 'meter'" in a["r4"]["error"]
    assert a["r5"]["ok"] is False and "OBIS" in a["r5"]["error"]


def test_commands_can_be_switched_off(simulate, mosquitto, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    gw_id = "gw-nocmd"
    raw = _raw(gw_id, sim.port, tmp_path / "data", meters=(1,), interval="1h",
               mqtt={"host": "127.0.0.1", "port": mosquitto.port})  # commands are off by default

    async def scenario() -> list[str]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        got: list[str] = []
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(f"meterlink/{gw_id}/cmd/+/result", qos=1)
            assert await await_until(lambda: gw.sinks[0].counters.connected, 10)
            await c.publish(f"meterlink/{gw_id}/cmd/status", b'{"id": "1"}', qos=1)

            async def gather() -> None:
                async for m in c.messages:
                    got.append(str(m.topic))

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gather(), 2)
        await gw.stop()
        return got

    assert run(scenario()) == []


# --------------------------------------------------------------------------- security


def test_tls_and_password_and_no_secret_in_logs(simulate, secure_mosquitto, tmp_path: Path) -> None:
    m = secure_mosquitto
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    pw = tmp_path / "mqtt.pw"
    pw.write_text(m.password + "\n")
    pw.chmod(0o600)
    token = tmp_path / "influx.token"
    token.write_text("tok-very-secret\n")
    token.chmod(0o600)
    gw_id = "gw-tls"
    good = _raw(gw_id, sim.port, tmp_path / "data", meters=(1,), interval="1h",
                mqtt={"host": "127.0.0.1", "port": m.tls_port, "username": m.username, "password_file": str(pw),
                      "tls": {"ca_file": str(m.ca_file), "cert_file": str(m.client_cert),
                              "key_file": str(m.client_key)}},
                influx={"url": "http://127.0.0.1:1", "token_file": str(token), "bucket": "b"})
    cfg = write_config(tmp_path / "good.yaml", good)
    proc = _gateway_proc(cfg)

    async def first_data() -> bytes:
        async with aiomqtt.Client("127.0.0.1", m.port, username=m.username, password=m.password) as c:
            await c.subscribe(f"meterlink/{gw_id}/+/data", qos=1)
            async for msg in c.messages:
                return msg.payload  # type: ignore[return-value]
        return b""

    try:
        payload = asyncio.run(asyncio.wait_for(first_data(), 20))
        assert json.loads(payload)["meter"] == "m1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    log = proc.stderr.read() if proc.stderr else ""
    assert "mqtt connected" in log and "tls=True" in log
    assert m.password not in log and "tok-very-secret" not in log

    bad = json.loads(json.dumps(good))
    pw.write_text("wrong-password\n")
    bad["gateway"]["data_dir"] = str(tmp_path / "data2")
    proc = _gateway_proc(write_config(tmp_path / "bad.yaml", bad))
    time.sleep(3)
    assert proc.poll() is None, "a refused login must not stop the gateway"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    log = proc.stderr.read() if proc.stderr else ""
    # a refused login is named as such, not "unreachable" (issue 16 item 6)
    assert "mqtt broker refused the login" in log and "unreachable" not in log and "wrong-password" not in log
