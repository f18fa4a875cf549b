"""Home Assistant MQTT discovery (``sinks.mqtt.homeassistant: true``): one sensor per meter point.

Each sensor reads its value out of the meter's data messages (CONTRACT
section 6) by OBIS code alone, keeping its state when a message does not carry
the point (points have different intervals), and its availability follows the
meter's retained status topic.  Config messages are retained, so Home
Assistant picks them up whenever it starts.

A reading's ``meter_ts`` does not make it historical: push readings, extended
registers and the clock carry the meter's time stamp and are live.  Values
from the meter's history (daily freezes) have their own OBIS code, F = 126
(``meterlink.core.reading.HISTORICAL_F``), so matching the live point's code (F = 255)
never shows yesterday's freeze as the live register, and no entity is made
for a historical code.

Energy registers that only ever grow are ``total_increasing``; a signed energy
(a DL/T 645 combined energy, "组合 ... 最高位是符号位", or one read as a signed
integer register) can fall, which Home Assistant would take for a meter reset,
so it is ``total``.
"""

from __future__ import annotations

import json
from typing import Any

from meterlink.core.config import Meter, Point
from meterlink.core.reading import is_historical

DISCOVERY_PREFIX = "homeassistant"

# unit -> (device_class, state_class); energy registers only ever grow: total_increasing
_BY_UNIT: dict[str, tuple[str | None, str]] = {
    "Wh": ("energy", "total_increasing"), "kWh": ("energy", "total_increasing"),
    "MWh": ("energy", "total_increasing"),
    # Home Assistant 2024.3 has no reactive_energy class and takes only "var" for reactive_power
    # (its own DISCOVERY_SCHEMA and DEVICE_CLASS_UNITS, tests/integration/ha_check.py): unit only
    "varh": (None, "total_increasing"), "kvarh": (None, "total_increasing"),
    "W": ("power", "measurement"), "kW": ("power", "measurement"), "MW": ("power", "measurement"),
    "var": ("reactive_power", "measurement"), "kvar": (None, "measurement"),
    "VA": ("apparent_power", "measurement"), "kVA": ("apparent_power", "measurement"),
    "V": ("voltage", "measurement"), "kV": ("voltage", "measurement"),
    "A": ("current", "measurement"), "Hz": ("frequency", "measurement"),
    "s": ("duration", "measurement"),
}
_POWER_FACTOR_C = {13, 33, 53, 73}
# value group C of quantities that are signed by definition: active power/energy A+ - A- (IEC 62056-6-1
# C = 16/36/56/76) and Meterlink's signed reactive codes (128 + 3/23/43/63, drivers/dlt645/dis.py)
_SIGNED_C = {16, 36, 56, 76, 131, 151, 171, 191}


def signed(point: Point) -> bool:
    """Whether the point's value may be negative, so an energy of it may fall.

    Some quantities are signed by their OBIS code; for the others the protocol
    said so when it resolved the point (a DL/T 645 identifier with a sign bit, a
    signed integer register).
    """
    return point.signed or int(point.obis.split(".")[2]) in _SIGNED_C


def classes(point: Point) -> tuple[str | None, str]:
    c = int(point.obis.split(".")[2])
    if point.unit == "" and c in _POWER_FACTOR_C:
        return "power_factor", "measurement"
    device_class, state_class = _BY_UNIT.get(point.unit, (None, "measurement"))
    if state_class == "total_increasing" and signed(point):
        state_class = "total"  # a signed energy can fall: not a meter reset
    return device_class, state_class


# Collector points: a daily frozen walk (DL/T 645) and a load profile (DLMS class 7) stand for many
# historical readings, never for one live value.
_NOT_VALUES = frozenset({"1.0.98.1.0.255", "1.0.99.1.0.255", "1.0.99.2.0.255", "0.0.99.98.0.255"})
# The live reading of the point (no meter_ts) if the message has one, else the newest one the meter
# time-stamped (a push batch, extended registers, the clock): the last is the newest, in meter order.
# A message without a value renders "", which Home Assistant's MQTT sensor ignores for a numeric
# sensor, so the entity keeps its state (rendering this.state would give 'unknown', which HA refuses).
_TEMPLATE = ("{% set r = value_json.readings | selectattr('obis', 'equalto', 'OBIS') | rejectattr('value', 'none')"
             " | list %}{% set live = r | selectattr('meter_ts', 'none') | list %}"
             "{{ (live | last).value if live else ((r | sort(attribute='meter_ts') | last).value if r else '') }}")


def discovery_messages(prefix: str, gateway: str, meter: Meter) -> list[tuple[str, str]]:
    """(topic, retained payload) for every point of ``meter``."""
    base = f"{prefix}/{gateway}/{meter.id}"
    device = {"identifiers": [f"meterlink_{gateway}_{meter.id}"], "name": meter.id,
              "manufacturer": "Meterlink", "model": meter.config.profile or meter.protocol,
              "via_device": f"meterlink_{gateway}"}
    out = []
    for p in meter.points:
        if p.obis in _NOT_VALUES or is_historical(p.obis):
            continue  # collectors (daily frozen data, load profile) and historical codes: not a live value
        uid = f"meterlink_{gateway}_{meter.id}_{p.obis.replace('.', '_')}"
        device_class, state_class = classes(p)
        template = _TEMPLATE.replace("OBIS", p.obis)
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
