"""Home Assistant MQTT discovery (``sinks.mqtt.homeassistant: true``): one sensor per meter point.

Each sensor reads its value out of the meter's data messages (CONTRACT
section 6) by OBIS code, keeping its state when a message does not carry the
point (points have different intervals), and its availability follows the
meter's retained status topic.  Config messages are retained, so Home
Assistant picks them up whenever it starts.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.config import Meter, Point

DISCOVERY_PREFIX = "homeassistant"

# unit -> (device_class, state_class); energy registers only ever grow: total_increasing
_BY_UNIT: dict[str, tuple[str | None, str]] = {
    "Wh": ("energy", "total_increasing"), "kWh": ("energy", "total_increasing"),
    "MWh": ("energy", "total_increasing"),
    "varh": ("reactive_energy", "total_increasing"), "kvarh": ("reactive_energy", "total_increasing"),
    "W": ("power", "measurement"), "kW": ("power", "measurement"), "MW": ("power", "measurement"),
    "var": ("reactive_power", "measurement"), "kvar": ("reactive_power", "measurement"),
    "VA": ("apparent_power", "measurement"), "kVA": ("apparent_power", "measurement"),
    "V": ("voltage", "measurement"), "kV": ("voltage", "measurement"),
    "A": ("current", "measurement"), "Hz": ("frequency", "measurement"),
    "s": ("duration", "measurement"),
}
_POWER_FACTOR_C = {13, 33, 53, 73}


def classes(point: Point) -> tuple[str | None, str]:
    c = int(point.obis.split(".")[2])
    if point.unit == "" and c in _POWER_FACTOR_C:
        return "power_factor", "measurement"
    return _BY_UNIT.get(point.unit, (None, "measurement"))


def discovery_messages(prefix: str, gateway: str, meter: Meter) -> list[tuple[str, str]]:
    """(topic, retained payload) for every point of ``meter``."""
    base = f"{prefix}/{gateway}/{meter.id}"
    device = {"identifiers": [f"meterlink_{gateway}_{meter.id}"], "name": meter.id,
              "manufacturer": "Meterlink", "model": meter.config.profile or meter.protocol,
              "via_device": f"meterlink_{gateway}"}
    out = []
    for p in meter.points:
        if p.obis == "1.0.98.1.0.255":
            continue  # the daily frozen collector: its values arrive under the energy registers' OBIS
        uid = f"meterlink_{gateway}_{meter.id}_{p.obis.replace('.', '_')}"
        device_class, state_class = classes(p)
        template = ("{% set r = value_json.readings | selectattr('obis', 'equalto', '" + p.obis + "') "
                    "| selectattr('meter_ts', 'none') | list %}"
                    "{{ r[0].value if r and r[0].value is not none else this.state }}")
        doc: dict[str, Any] = {
            "name": p.name.replace("_", " "), "unique_id": uid, "object_id": uid,
            "state_topic": f"{base}/data", "value_template": template,
            "availability_topic": f"{base}/status",
            "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
            "state_class": state_class, "device": device,
        }
        if p.unit:
            doc["unit_of_measurement"] = p.unit
        if device_class:
            doc["device_class"] = device_class
        out.append((f"{DISCOVERY_PREFIX}/sensor/{uid}/config", json.dumps(doc)))
    return out
