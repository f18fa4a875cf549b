"""A flood of MQTT commands while a slow bus is polled: polls stay on time, the excess is answered "busy".

Real pieces only: a simulated Modbus bus on a pty that answers with the true
wire time of 9600 baud, the gateway in this process, the session's Mosquitto,
and a requester that publishes a few hundred ``read`` commands at once.
Before issue 16 item 4 every command queued on the link in front of the
scheduled polls (500 reads: polls two minutes late) and nothing was refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from meterlink.core.config import parse_config
from meterlink.engine.commands import BURST, MAX_WAITING
from meterlink.engine.gateway import Gateway
from tests.integration.test_scheduler import POINTS

FLOOD = 300
LATE_BOUND = 2.0  # seconds: one call-up read in progress plus the poll itself, on a loaded test box


def _raw(gw_id: str, port: str, mqtt_port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": gw_id},
        "links": {"bus": {"type": "serial", "port": port, "baudrate": 9600, "parity": "N", "timeout": "500ms"}},
        "meters": {f"m{u}": {"link": "bus", "protocol": "modbus", "address": u, "interval": "1s", "points": POINTS}
                   for u in (1, 2)},
        "sinks": {"mqtt": {"host": "127.0.0.1", "port": mqtt_port, "commands": True}},
    }


async def flood(gw: Gateway, mqtt_port: int, n: int, timeout: float) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """Publish ``n`` read commands at once; the answers by id, and how late each poll started meanwhile."""
    base = f"meterlink/{gw.id}/cmd"
    sched = gw.schedulers["bus"]
    answers: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client("127.0.0.1", mqtt_port, max_queued_incoming_messages=0) as c:
        await c.subscribe(f"{base}/read/result", qos=1)
        deadline = time.monotonic() + 15
        while not gw.sinks[0].counters.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        while sched.state.polls < 4 and time.monotonic() < deadline:  # the first full read is behind us
            await asyncio.sleep(0.05)
        sched.state.lateness.clear()
        for i in range(n):
            await c.publish(f"{base}/read", json.dumps({"id": f"r{i}", "meter": "m1"}).encode(), qos=1)

        async def gather() -> None:
            async for m in c.messages:
                doc = json.loads(m.payload)  # type: ignore[arg-type]
                answers[str(doc["id"])] = doc
                if len(answers) == n:
                    return

        await asyncio.wait_for(gather(), timeout)
        await asyncio.sleep(2.5)  # two more poll moments after the last answer (their lateness counts too)
    return answers, list(sched.state.lateness)


@pytest.mark.slow
def test_command_flood_keeps_polls_on_time_and_answers_busy(simulate, mosquitto, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--unit", "2", "--pty",
                   "--wire-time", "9600")
    raw = _raw("gw-flood", sim.where, mosquitto.port)
    raw["gateway"]["data_dir"] = str(tmp_path / "data")

    async def scenario() -> tuple[dict[str, dict[str, Any]], list[float], dict[str, Any]]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        try:
            answers, lateness = await flood(gw, mosquitto.port, FLOOD, timeout=90)
            status = gw.status()
        finally:
            await gw.stop()
        return answers, lateness, status

    answers, lateness, status = asyncio.run(scenario())
    assert len(answers) == FLOOD, "every request gets exactly one answer"
    busy = [a for a in answers.values() if a["ok"] is False and a["error"] == "busy"]
    ok = [a for a in answers.values() if a["ok"] is True]
    assert len(busy) + len(ok) == FLOOD, [a for a in answers.values() if a not in busy and a not in ok][:3]
    assert len(busy) >= FLOOD - BURST - MAX_WAITING - 60, f"only {len(busy)} of {FLOOD} refused"
    assert len(ok) >= min(BURST, MAX_WAITING)
    assert lateness, "no poll ran during the flood"
    assert max(lateness) <= LATE_BOUND, f"polls up to {max(lateness):.2f} s late under the flood"
    assert status["meters"]["m2"]["polls_ok"] > 0
    print(f"\nFIGURES command flood: {FLOOD} reads, {len(ok)} answered ok, {len(busy)} busy; polls during it "
          f"{len(lateness)}, lateness max {max(lateness):.3f} s, p50 {sorted(lateness)[len(lateness) // 2]:.3f} s")
