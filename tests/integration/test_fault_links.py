"""Links under faults: a failing link task is restarted and counted, a dead channel is reopened within 30 s,
polls go before waiting commands, and a refused MQTT login or a missing CA file is named as such.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from meterlink.core.config import parse_config
from meterlink.core.errors import LinkError, MeterTimeout
from meterlink.engine.gateway import Gateway
from meterlink.engine.health import Liveness
from meterlink.engine.metrics import make_registry
from meterlink.engine.scheduler import BACKOFF_CAP, COMMAND, LINK_BACKOFF_CAP, POLL, LinkLock
from testkit.simproc import await_until
from tests.integration.test_scheduler import POINTS
from tests.test_journal import log_text  # noqa: F401  (a fixture)


def _raw(tmp_path: Path, port: int, interval: str = "500ms", **sinks: Any) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-lf", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "300ms"}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "interval": interval, "points": POINTS}},
        "sinks": sinks,
    }




def test_a_failing_link_task_is_restarted_and_counted(simulate, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    gw = Gateway(parse_config(_raw(tmp_path, sim.port)))
    failures = [1]

    def buggy_listener(ms: Any) -> None:  # a bug reached from the poll loop: what used to end the link for good
        if failures:
            failures.pop()
            raise RuntimeError("a bug in a status listener")

    gw.status_listeners.append(buggy_listener)

    async def scenario() -> tuple[int, int, str, list[str]]:
        await gw.start()
        try:
            assert await await_until(lambda: gw.link_tasks["t"].restarts == 1, 10)
            polls = gw.schedulers["t"].meters["m1"].polls_ok
            assert await await_until(lambda: gw.schedulers["t"].meters["m1"].polls_ok >= polls + 3, 10), \
                "the restarted link does not poll"
            text = generate_latest(make_registry(gw)).decode()
            return gw.link_tasks["t"].restarts, gw.status()["links"]["t"]["restarts"], text, Liveness(gw).check()
        finally:
            await gw.stop()

    restarts, in_status, text, problems = asyncio.run(scenario())
    assert restarts == 1 and in_status == 1
    assert 'meterlink_link_restarts_total{gateway="gw-lf",link="t"} 1.0' in text
    assert problems == []  # alive again: the watchdog is fed


def test_link_reopen_backoff_is_capped_at_30_s_and_a_silent_meter_keeps_the_long_one(tmp_path: Path) -> None:
    gw = Gateway(parse_config(_raw(tmp_path, 1, interval="10s")))
    sched = gw.schedulers["t"]
    ms = sched.meters["m1"]
    now = 1_000_000.0
    for _ in range(40):  # hours of a dead device server: the exponent must not overflow either
        sched._failed(ms, LinkError("cannot open 127.0.0.1:1: connection refused"), now)
    assert ms.retry_at - now == LINK_BACKOFF_CAP == 30.0
    ms.backoff.reset()
    for _ in range(40):
        sched._failed(ms, MeterTimeout("no answer from unit 1"), now)
    assert ms.retry_at - now == BACKOFF_CAP


def test_a_due_poll_goes_before_waiting_commands() -> None:
    async def scenario() -> list[str]:
        lock = LinkLock()
        order: list[str] = []
        await lock.acquire(COMMAND)  # a command holds the link

        async def user(name: str, priority: int) -> None:
            async with lock.hold(priority):
                order.append(name)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(user(f"cmd{i}", COMMAND)) for i in range(3)]
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(user("gone", COMMAND))
        await asyncio.sleep(0)
        cancelled.cancel()  # a requester that went away leaves no hole in the queue
        tasks.append(asyncio.create_task(user("poll", POLL)))
        await asyncio.sleep(0)
        lock.release()
        await asyncio.gather(*tasks)
        assert not lock.locked()
        return order

    assert asyncio.run(scenario()) == ["poll", "cmd0", "cmd1", "cmd2"]


def test_refused_login_is_not_authorized_not_unreachable(simulate, secure_mosquitto, tmp_path: Path) -> None:
    m = secure_mosquitto
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    raw = _raw(tmp_path, sim.port, interval="1h",
               mqtt={"host": "127.0.0.1", "port": m.port, "username": m.username, "password": "wrong-password"})

    async def scenario() -> str | None:
        gw = Gateway(parse_config(raw))
        await gw.start()
        try:
            sink = gw.sinks[0]
            assert await await_until(lambda: sink.counters.failures >= 1, 10)
            return sink.counters.last_error
        finally:
            await gw.stop()

    error = asyncio.run(scenario()) or ""
    assert error.startswith(("not authorized", "bad user name or password")), error
    assert "CONNACK 13" in error and "sinks.mqtt.username" in error
    assert "wrong-password" not in error


def test_missing_ca_file_is_named_by_its_key(secure_mosquitto, tmp_path: Path,
                                             log_text: io.StringIO) -> None:  # noqa: F811
    m = secure_mosquitto
    missing = tmp_path / "nowhere" / "ca.crt"
    raw = _raw(tmp_path, 1, interval="1h",
               mqtt={"host": "127.0.0.1", "port": m.tls_port, "username": m.username, "password": m.password,
                     "tls": {"ca_file": str(missing)}})

    async def scenario() -> str | None:
        gw = Gateway(parse_config(raw))
        await gw.start()
        try:
            sink = gw.sinks[0]
            assert await await_until(lambda: sink.counters.failures >= 1, 10)
            return sink.counters.last_error
        finally:
            await gw.stop()

    error = asyncio.run(scenario())
    assert error == f"file not found: sinks.mqtt.tls.ca_file ({missing})"
    err = log_text.getvalue()
    assert "mqtt cannot connect: local configuration problem" in err
    assert "unreachable" not in err
