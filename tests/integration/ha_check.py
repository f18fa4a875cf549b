"""Check Meterlink's MQTT discovery configs with Home Assistant's own code (run with the HA venv's python).

Usage: ha_check.py CONFIGS.json DATA.json

CONFIGS.json is a list of ``{"topic", "payload"}``: the retained discovery configs as the broker
delivered them; DATA.json the meters' data messages (CONTRACT section 6) in arrival order.  Run
by tests/integration/test_homeassistant_real.py with the python of the venv that
scripts/homeassistant-venv.sh builds; it imports Home Assistant 2024.3.3 and nothing of Meterlink,
so what it accepts is what Home Assistant accepts, not our reading of its documentation.

For every config, as Home Assistant's MQTT discovery would:

1. match the topic with discovery's ``TOPIC_MATCHER`` and expand the abbreviated keys with
   ``homeassistant.components.mqtt.abbreviations`` (top level, ``device``, ``origin`` and
   ``availability`` entries) and the ``~`` topic base, as ``mqtt/discovery.py`` does;
2. validate it with the MQTT sensor platform's ``DISCOVERY_SCHEMA``;
3. check the unit against ``DEVICE_CLASS_UNITS[device_class]`` and the state class against
   ``DEVICE_CLASS_STATE_CLASSES[device_class]`` of the sensor integration;
4. follow the entity's state through every data message on its state topic: the value template
   is rendered by the MQTT integration's own ``MqttValueTemplate`` (with a real ``HomeAssistant``
   core and state machine behind ``this``), the result goes through the MQTT sensor's rules for a
   numeric sensor ("" is ignored, "None" clears the state), and the state is read back through
   ``SensorEntity.state``, which raises for a non-numeric value exactly as Home Assistant does.

What the entity must show after a message: the value of the latest reading of its OBIS code in
that message: the live read (no ``meter_ts``) if there is one, else the newest by ``meter_ts`` (a
push batch holds several; a load-profile record carries the live register's code with an older
``meter_ts``; see ``expected_reading``); when the message holds no value of that code (another
point's interval, a failed read, a daily freeze under its own F = 126 code), the state it had.
Values compare exactly: the rendered text equals the number's JSON text, or is the same
decimal number (a JSON parser keeps no trailing zeros: ``8.50`` arrives as ``8.5``), never merely
close (``1234.5600000000002`` is a problem).

Prints one line per problem, then a JSON summary line ``{"configs": N, "renders": M, "problems": K}``;
exits 1 if there was any problem, 2 if it could not run at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from decimal import Decimal, InvalidOperation
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import sensor as mqtt_sensor
from homeassistant.components.mqtt.abbreviations import ABBREVIATIONS, DEVICE_ABBREVIATIONS, ORIGIN_ABBREVIATIONS
from homeassistant.components.mqtt.discovery import MQTT_ORIGIN_INFO_SCHEMA, TOPIC_BASE, TOPIC_MATCHER
from homeassistant.components.mqtt.models import MqttValueTemplate, PayloadSentinel
from homeassistant.components.sensor import (
    DEVICE_CLASS_STATE_CLASSES,
    DEVICE_CLASS_UNITS,
    SensorDeviceClass,
    SensorEntity,
    SensorStateClass,
)
from homeassistant.const import CONF_VALUE_TEMPLATE
from homeassistant.core import HomeAssistant

PAYLOAD_NONE = "None"  # homeassistant.components.mqtt.const.PAYLOAD_NONE: the MQTT sensor clears its state


def expand(payload: dict[str, Any]) -> dict[str, Any]:
    """The config with abbreviations expanded, step by step as mqtt/discovery.py's
    async_discovery_message_received does (2024.3.3), on a copy."""
    doc = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if isinstance(doc.get("device"), dict):
        doc["device"] = {DEVICE_ABBREVIATIONS.get(k, k): v for k, v in doc["device"].items()}
    if isinstance(doc.get("origin"), dict):
        doc["origin"] = {ORIGIN_ABBREVIATIONS.get(k, k): v for k, v in doc["origin"].items()}
        MQTT_ORIGIN_INFO_SCHEMA(doc["origin"])  # HA drops the whole config when this fails
    if isinstance(doc.get("availability"), list):
        doc["availability"] = [{ABBREVIATIONS.get(k, k): v for k, v in a.items()} if isinstance(a, dict) else a
                               for a in doc["availability"]]
    if TOPIC_BASE in doc:  # Meterlink sends full topics, but a "~" is expanded as HA would
        base = doc.pop(TOPIC_BASE)
        for k, v in list(doc.items()):
            if isinstance(v, str) and v and k.endswith("topic"):
                if v[0] == TOPIC_BASE:
                    v = doc[k] = f"{base}{v[1:]}"
                if v[-1] == TOPIC_BASE:
                    doc[k] = f"{v[:-1]}{base}"
    return doc


def _short(text: str, limit: int = 160) -> str:
    """Voluptuous lists every allowed value (70 device classes): the start says what was expected."""
    return text if len(text) <= limit else text[:limit] + " ..."


def obis_of(unique_id: str) -> str:
    """meterlink_{gateway}_{meter}_{A_B_C_D_E_F} -> A.B.C.D.E.F (the OBIS code is always the last six fields)."""
    return ".".join(unique_id.split("_")[-6:])


def number_text(x: Any) -> str:
    """A JSON number parsed with parse_float/parse_int=str keeps its exact text."""
    return str(x)


def same_number(rendered: str, token: str) -> bool:
    if rendered == token:
        return True
    try:
        return Decimal(rendered) == Decimal(token)
    except InvalidOperation:
        return False


def expected_reading(readings: list[dict[str, Any]], obis: str) -> dict[str, Any] | None:
    """The reading of ``obis`` an entity must show after this message, or None when it holds no value of it.

    A reading without ``meter_ts`` is the register as the gateway read it just now: the last of those.
    Else (push, clock, extended register, load-profile records only) the newest by ``meter_ts``, the
    last of equals.  Live first, not newest-of-all: a meter whose clock runs ahead stamps a profile
    record later than the live read that follows it."""
    mine = [r for r in readings if r.get("obis") == obis and r.get("value") is not None]
    live = [r for r in mine if r.get("meter_ts") is None]
    if live:
        return live[-1]
    best: dict[str, Any] | None = None
    for r in mine:
        if best is None or r["meter_ts"] >= best["meter_ts"]:
            best = r
    return best


class Sensor(SensorEntity):
    """Home Assistant's SensorEntity with the config's classes: its ``state`` property does HA's numeric checks."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._attr_device_class = config.get("device_class")
        self._attr_state_class = config.get("state_class")
        self._attr_native_unit_of_measurement = config.get("unit_of_measurement")
        self._attr_suggested_display_precision = config.get("suggested_display_precision")


class Checker:
    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.problems: list[str] = []
        self.renders = 0

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def config(self, topic: str, raw: str) -> tuple[str, dict[str, Any]] | None:
        """Expand and validate one config; the validated config, or None with the problems noted."""
        try:
            payload = json.loads(raw)
        except ValueError as e:
            self.problem(topic, f"not JSON: {e}")
            return None
        if not isinstance(payload, dict):
            self.problem(topic, "not a JSON object")
            return None
        match = TOPIC_MATCHER.match(topic.removeprefix("homeassistant/"))
        if match is None or match.group("component") != "sensor":
            self.problem(topic, "Home Assistant's discovery ignores this topic "
                                "(homeassistant/sensor/[node_id/]object_id/config)")
            return None
        try:
            doc = expand(payload)
        except vol.Invalid as e:
            self.problem(topic, f"origin rejected, Home Assistant drops the config: {_short(str(e))}")
            return None
        uid = str(doc.get("unique_id", topic))
        try:
            config: dict[str, Any] = mqtt_sensor.DISCOVERY_SCHEMA(doc)
        except vol.MultipleInvalid as e:
            for err in e.errors:
                key = err.path[0] if err.path else None
                value = f" {doc.get(key)!r}" if isinstance(key, str) else ""
                self.problem(uid, f"DISCOVERY_SCHEMA rejects {'.'.join(map(str, err.path)) or 'it'}{value}: "
                                  f"{_short(err.msg)}")
            return None
        except vol.Invalid as e:
            self.problem(uid, f"DISCOVERY_SCHEMA rejects it: {_short(str(e))}")
            return None
        device_class = config.get("device_class")
        unit = config.get("unit_of_measurement")
        state_class = config.get("state_class")
        if device_class is not None:
            dc = SensorDeviceClass(device_class)
            units = DEVICE_CLASS_UNITS.get(dc)
            if units is not None and unit not in units:
                self.problem(uid, f"unit {unit!r} is not one of device class {device_class}'s units "
                                  f"{sorted(map(str, units))}")
            state_classes = DEVICE_CLASS_STATE_CLASSES.get(dc)
            if state_class is not None and state_classes is not None and SensorStateClass(state_class) \
                    not in state_classes:
                self.problem(uid, f"state class '{state_class}' is not allowed for device class {device_class} "
                                  f"(allowed: {sorted(str(s) for s in state_classes)})")
        return uid, config

    def follow(self, uid: str, config: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        """The entity's state through every data message on its state topic, as Home Assistant keeps it.

        A problem repeats on every message alike: each kind is one line, with its first message and count."""
        obis = obis_of(uid)
        entity_id = f"sensor.{uid.replace('-', '_').lower()}"
        entity = _EntityRef(self.hass, entity_id, config.get("name"))
        template = MqttValueTemplate(config.get(CONF_VALUE_TEMPLATE), entity=entity)  # type: ignore[arg-type]
        self.hass.states.async_set(entity_id, "unknown")  # a new entity's state before its first value
        sensor = Sensor(config)
        sensor.entity_id = entity_id
        sensor.hass = self.hass
        native: str | None = None
        found: dict[str, tuple[str, int]] = {}  # kind -> (first problem, how many messages)
        seen = 0

        def note(kind: str, seq: object, text: str) -> None:
            first, n = found.get(kind, (f"message seq {seq}: {text}", 0))
            found[kind] = (first, n + 1)

        for m in messages:
            if m["topic"] != config["state_topic"]:
                continue
            seen += 1
            seq = m["doc"].get("seq")
            self.renders += 1
            try:
                rendered = template.async_render_with_possible_json_value(m["payload"], PayloadSentinel.DEFAULT)
            except Exception as e:  # every template error is a finding, whatever its type
                note("template", seq, f"value_template fails: {type(e).__name__}: {e}")
                continue
            # homeassistant/components/mqtt/sensor.py MqttSensor._update_state, numeric sensor branch
            if rendered is not PayloadSentinel.DEFAULT:
                text = str(rendered)
                if text == PAYLOAD_NONE:
                    native = None
                elif text != "":
                    native = text
            want = expected_reading(m["doc"]["readings"], obis)
            if want is not None:
                token = number_text(want["value"])
                if native is None or not same_number(native, token):
                    kind = ("clock reading" if obis == "0.0.1.0.0.255" else
                            f"reading with meter_ts {want['meter_ts']}" if want.get("meter_ts") else "live reading")
                    same = sum(1 for r in m["doc"]["readings"] if r.get("obis") == obis and r.get("value") is not None)
                    note("value", seq, f"shows {native!r}, the newest {kind} is {token}"
                                       + (f" (the message holds {same} readings of {obis})" if same > 1 else ""))
            sensor._attr_native_value = native
            try:
                state = sensor.state
            except ValueError as e:
                note("state", seq, f"Home Assistant refuses the state: {e}")
                state = "unknown"
            self.hass.states.async_set(entity_id, "unknown" if state is None else str(state))
        for first, n in found.values():
            self.problem(uid, f"{first} ({n} of {seen} messages)")


class _EntityRef:
    """What MqttValueTemplate reads of its entity: hass, the id (``this`` is the state machine's state of it)
    and the name.  The MQTT sensor entity itself needs a configured MQTT integration and client."""

    def __init__(self, hass: HomeAssistant, entity_id: str, name: str | None) -> None:
        self.hass = hass
        self.entity_id = entity_id
        self.name = name


async def check(configs: list[dict[str, str]], data: list[dict[str, str]]) -> Checker:
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        checker = Checker(hass)
        messages = [{"topic": m["topic"], "payload": m["payload"],
                     "doc": json.loads(m["payload"], parse_float=str, parse_int=str)} for m in data]
        for c in configs:
            got = checker.config(c["topic"], c["payload"])
            if got is not None:
                uid, config = got
                checker.follow(uid, config, messages)
        return checker


def main(argv: list[str]) -> int:
    # Home Assistant's own warnings (an impossible unit, a template error) go to stderr, marked as
    # its log: they repeat what the checks find, in Home Assistant's words.  Problems go to stdout.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="ha log %(levelname)s %(name)s: %(message)s")
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        configs = json.load(f)
    with open(argv[2]) as f:
        data = json.load(f)
    checker = asyncio.run(check(configs, data))
    for line in checker.problems:
        print(line)
    print(json.dumps({"configs": len(configs), "renders": checker.renders, "problems": len(checker.problems)}))
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
