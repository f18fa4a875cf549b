"""Home Assistant discovery: retained config messages with the right classes, against a real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from meterlink.core.config import parse_config, profile_points
from meterlink.engine.discovery import classes, discovery_messages
from meterlink.engine.gateway import Gateway


def test_classes_by_unit_and_obis() -> None:
    by_obis = {p.obis: classes(p) for p in profile_points("eastron-sdm630")}
    assert by_obis["1.0.1.8.0.255"] == ("energy", "total_increasing")
    assert by_obis["1.0.3.8.0.255"] == (None, "total_increasing")  # HA 2024.3 has no reactive_energy class
    assert by_obis["1.0.131.7.0.255"] == ("reactive_power", "measurement")  # signed Q, not import-only C = 3
    assert by_obis["1.0.16.7.0.255"] == ("power", "measurement")
    assert by_obis["1.0.32.7.0.255"] == ("voltage", "measurement")
    assert by_obis["1.0.31.7.0.255"] == ("current", "measurement")
    assert by_obis["1.0.14.7.0.255"] == ("frequency", "measurement")
    assert by_obis["1.0.13.7.0.255"] == ("power_factor", "measurement")


def test_discovery_is_retained_on_the_broker(simulate, mosquitto, tmp_path: Path) -> None:
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    raw = {"gateway": {"id": "gw-ha", "data_dir": str(tmp_path / "data")},
           "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}},
           "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
           "sinks": {"mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "homeassistant": True}}}

    async def scenario() -> dict[str, dict[str, Any]]:
        gw = Gateway(parse_config(raw))
        await gw.start()
        for _ in range(100):
            if gw.sinks[0].counters.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await gw.stop()
        found: dict[str, dict[str, Any]] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:  # a late subscriber sees retained configs
            await c.subscribe("homeassistant/sensor/+/config", qos=1)

            async def gather() -> None:
                async for m in c.messages:
                    doc = json.loads(m.payload)  # type: ignore[arg-type]
                    if doc["unique_id"].startswith("meterlink_gw-ha_m1_"):
                        found[doc["unique_id"]] = doc
                    if len(found) == 12:
                        return

            await asyncio.wait_for(gather(), 10)
        return found

    found = asyncio.run(scenario())
    energy = found["meterlink_gw-ha_m1_1_0_1_8_0_255"]
    assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
    assert energy["unit_of_measurement"] == "kWh" and energy["state_topic"] == "meterlink/gw-ha/m1/data"
    assert energy["availability_topic"] == "meterlink/gw-ha/m1/status"
    assert "1.0.1.8.0.255" in energy["value_template"]
    pf = found["meterlink_gw-ha_m1_1_0_33_7_0_255"]
    assert pf["device_class"] == "power_factor" and "unit_of_measurement" not in pf


# --- issue 11: the template selects by OBIS alone; signed energies are "total" ---------------------------


def _state(template: str, readings: list[dict[str, Any]], previous: str = "kept") -> str:
    """The discovery template rendered as Home Assistant renders it (Jinja2), against one data message."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    env = sandbox.ImmutableSandboxedEnvironment()
    return env.from_string(template).render(value_json={"readings": readings}, this={"state": previous})


def _templates(meter_raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cfg = parse_config({"links": {"l": {"type": "serial", "port": "/dev/null"}}, "meters": {"m": meter_raw}})
    out = {}
    for _topic, payload in discovery_messages("meterlink", "gw", cfg.meters["m"]):
        doc = json.loads(payload)
        out[doc["unique_id"].removeprefix("meterlink_gw_m_").replace("_", ".")] = doc
    return out


def test_readings_with_a_meter_ts_reach_their_entity_frozen_ones_never() -> None:
    docs = _templates({"link": "l", "protocol": "dlt645", "address": "123456789012", "daily_frozen_days": 3,
                       "points": [{"obis": "1.0.1.8.0.255", "di": "00010000"},
                                  {"obis": "0.0.1.0.0.255", "di": "04000102"}]})
    assert set(docs) == {"1.0.1.8.0.255", "0.0.1.0.0.255"}, "no entity for the frozen collector"
    clock = docs["0.0.1.0.0.255"]["value_template"]
    # the clock (like push readings and extended registers) carries the meter's time stamp and is live
    assert _state(clock, [{"obis": "0.0.1.0.0.255", "value": 1.5, "meter_ts": "2026-01-05T10:00:00.000Z"}]) == "1.5"
    energy = docs["1.0.1.8.0.255"]["value_template"]
    frozen = [{"obis": "1.0.1.8.0.126", "value": 1000.0, "meter_ts": "2026-01-05T00:00:00.000Z"}]
    # "" is what HA's MQTT sensor ignores for a numeric sensor: the entity keeps its state
    assert _state(energy, frozen) == "", "yesterday's freeze is not the live register"
    live = [*frozen, {"obis": "1.0.1.8.0.255", "value": 1012.5, "meter_ts": None}]
    assert _state(energy, live) == "1012.5"


def test_signed_energies_are_total_not_total_increasing() -> None:
    docs = _templates({"link": "l", "protocol": "dlt645", "address": "123456789012",
                       "points": [{"obis": "1.0.15.8.0.255", "di": "00000000"},  # 组合有功: sign bit
                                  {"obis": "1.0.3.8.0.255", "di": "00030000"},  # 组合无功1: sign bit
                                  {"obis": "1.0.1.8.0.255", "di": "00010000"}]})  # forward: only grows
    assert docs["1.0.15.8.0.255"]["state_class"] == "total"
    assert docs["1.0.3.8.0.255"]["state_class"] == "total"
    assert docs["1.0.1.8.0.255"]["state_class"] == "total_increasing"
