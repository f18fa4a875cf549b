"""Home Assistant discovery checked by Home Assistant's own code (2024.3.3), not our reading of its docs.

The real gateway (``meterlink run``) publishes discovery configs and data for simulated meters of
every protocol (Modbus SDM630 and DTSU666, DL/T 645 with its clock and daily freezes, DLMS polled
with its clock, an extended register, load-profile records and an object the meter lacks, DLMS push
batches) to a real Mosquitto.  Everything the broker
delivers is written to JSON files and handed to ``tests/integration/ha_check.py``, run with the
python of a private Home Assistant venv (``scripts/homeassistant-venv.sh``, built once per machine
outside the work tree).  The checker validates each config with the MQTT sensor platform's
discovery schema, checks units and state classes against the sensor integration's tables, and
renders every value template with Home Assistant's template engine against every data message,
following the state an entity would have.

Slow: the first run on a machine installs Home Assistant (a few minutes, ~400 MB).  Under CI a
failed install fails the test with pip's error tail; elsewhere it skips with the same text.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from meterlink.core.config import profile_points
from testkit.simproc import REPO, meterlink_cmd, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

HA_VENV_SCRIPT = REPO / "scripts" / "homeassistant-venv.sh"
CHECKER = Path(__file__).with_name("ha_check.py")
INSTALL_TIMEOUT = 1500  # s: a cold pip install of Home Assistant on a 2-core machine takes several minutes
COLLECT_TIMEOUT = 90.0  # s: every kind of reading below reaches the broker well within this
EK, AK = "000102030405060708090A0B0C0D0E0F", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
DLT645_ADDRESS = "000000000101"
CLOCK = "0.0.1.0.0.255"
MISSING = "1.0.91.7.0.255"  # the DLMS meter lacks its neutral current: every read of it is invalid, value null


@pytest.fixture(scope="session")
def ha_python() -> str:
    """The python of the Home Assistant venv, built by the repo's own script if this machine lacks it."""
    try:
        r = subprocess.run(["bash", str(HA_VENV_SCRIPT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        ok, why = r.returncode == 0, r.stderr[-4000:]
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        ok, why = False, f"{HA_VENV_SCRIPT} did not finish within {INSTALL_TIMEOUT} s\n{err[-4000:]}"
    if not ok:
        msg = f"cannot build the Home Assistant venv (scripts/homeassistant-venv.sh):\n{why}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return r.stdout.strip().splitlines()[-1]


def _fast(profile: str, *, skip: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """The profile's points polled every 2 s, so one short run carries every one of them."""
    return [{"obis": p.obis, "interval": "2s"} for p in profile_points(profile) if p.obis not in skip]


def _config(tmp_path: Path, gw: str, broker_port: int, sims: dict[str, Any]) -> Path:
    dlms_extra = [{"obis": CLOCK, "name": "clock", "class_id": 8, "unit": "s", "interval": "2s"},
                  {"obis": "0.0.96.1.0.255", "name": "serial_number", "class_id": 1, "interval": "2s"}]
    raw = {
        "gateway": {"id": gw, "data_dir": str(tmp_path / "data")},
        "links": {
            "tcp-sdm630": {"type": "tcp", "host": "127.0.0.1", "port": sims["sdm630"].port, "timeout": "500ms"},
            "tcp-dtsu": {"type": "tcp", "host": "127.0.0.1", "port": sims["dtsu"].port, "timeout": "500ms"},
            "rs485-645": {"type": "serial", "port": sims["dlt645"].where, "baudrate": 2400, "parity": "N",
                          "timeout": "500ms"},
            "tcp-dlms": {"type": "tcp", "host": "127.0.0.1", "port": sims["dlms"].port, "timeout": "1s"},
            "p1": {"type": "serial", "port": sims["push"].where, "baudrate": 115200, "parity": "N", "timeout": "2s"},
        },
        "meters": {
            "sdm630": {"link": "tcp-sdm630", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630",
                       "points": _fast("eastron-sdm630")},
            "dtsu": {"link": "tcp-dtsu", "protocol": "modbus", "address": 1, "profile": "chint-dtsu666",
                     "points": _fast("chint-dtsu666")},
            "dlt645": {"link": "rs485-645", "protocol": "dlt645", "address": DLT645_ADDRESS,
                       "profile": "dlt645-generic-3phase", "daily_frozen_days": 2,
                       "points": _fast("dlt645-generic-3phase")},
            "dlms": {"link": "tcp-dlms", "protocol": "dlms", "address": {"client": 16, "logical": 1},
                     "transport": "wrapper", "auth": "none", "profile": "dlms-generic-3phase",
                     "points": [*_fast("dlms-generic-3phase", skip=("1.0.99.1.0.255", "1.0.98.1.0.255")),
                                *dlms_extra]},
            "home": {"link": "p1", "protocol": "dlms", "transport": "push", "address": {"client": 16},
                     "profile": "dlms-generic-3phase", "enc_key_env": "TEST_DLMS_EK", "auth_key_env": "TEST_DLMS_AK"},
        },
        "sinks": {"mqtt": {"host": "127.0.0.1", "port": broker_port, "homeassistant": True}},
    }
    return write_config(tmp_path / "gateway.yaml", raw)


def _kinds(data: list[dict[str, str]]) -> dict[str, set[str]]:
    """Which kinds of reading reached the broker, per meter: what the checker then covered."""
    kinds: dict[str, set[str]] = {}
    for m in data:
        doc = json.loads(m["payload"])
        seen = kinds.setdefault(doc["meter"], set())
        for r in doc["readings"]:
            if r["value"] is None:
                seen.add("invalid")
                continue
            f = int(r["obis"].rsplit(".", 1)[1])
            if r["obis"] == CLOCK:
                seen.add("clock")
            elif f != 255:
                seen.add("historical")
            elif r["meter_ts"] is not None:
                seen.add("meter_ts")
            else:
                seen.add("live")
    return kinds


WANTED = {"sdm630": {"live"}, "dtsu": {"live"}, "dlt645": {"live", "clock", "historical"},
          "dlms": {"live", "clock", "meter_ts", "invalid"}, "home": {"meter_ts"}}


async def _collect(cfg: Path, gw: str, broker_port: int, messages_per_meter: int
                   ) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """Run the gateway; gather retained configs and data messages (in arrival order) until every meter
    has sent ``messages_per_meter`` data messages carrying every kind of reading it has."""
    configs: dict[str, dict[str, str]] = {}
    data: list[dict[str, str]] = []
    async with aiomqtt.Client("127.0.0.1", broker_port) as client:
        await client.subscribe("homeassistant/sensor/+/config", qos=1)
        await client.subscribe(f"meterlink/{gw}/+/data", qos=1)
        proc = await asyncio.create_subprocess_exec(
            *meterlink_cmd(), "run", "-c", str(cfg), cwd=REPO, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "TEST_DLMS_EK": EK, "TEST_DLMS_AK": AK})

        def enough() -> bool:
            counts: dict[str, int] = {}
            for m in data:
                meter = m["topic"].split("/")[2]
                counts[meter] = counts.get(meter, 0) + 1
            kinds = _kinds(data)
            return all(counts.get(meter, 0) >= messages_per_meter and want <= kinds.get(meter, set())
                       for meter, want in WANTED.items())

        async def gather() -> None:
            async for m in client.messages:
                topic, payload = str(m.topic), bytes(m.payload).decode()  # type: ignore[arg-type]
                if topic.startswith("homeassistant/"):
                    if f"meterlink_{gw}_" in topic and payload:
                        configs[topic] = {"topic": topic, "payload": payload}
                else:
                    data.append({"topic": topic, "payload": payload})
                    if enough():
                        return

        try:
            await asyncio.wait_for(gather(), COLLECT_TIMEOUT)
        except TimeoutError:
            pass
        finally:
            proc.terminate()
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 20)
            except TimeoutError:
                proc.kill()
                _, err = await proc.communicate()
        for topic in configs:  # retained configs of this run's unique gateway: leave the shared broker clean
            await client.publish(topic, b"", qos=1, retain=True)
    return list(configs.values()), data, err.decode(errors="replace")


def test_discovery_configs_and_templates_pass_home_assistant(ha_python: str, simulate, mosquitto,
                                                             tmp_path: Path) -> None:
    sims = {"sdm630": simulate("modbus", "--profile", "eastron-sdm630", "--unit", "1", "--tcp", "0"),
            "dtsu": simulate("modbus", "--profile", "chint-dtsu666", "--unit", "1", "--tcp", "0"),
            "dlt645": simulate("dlt645", "--address", DLT645_ADDRESS, "--pty"),
            "dlms": simulate("dlms", "--tcp", "0", "--wrapper", "--missing", MISSING),
            "push": simulate("dlms", "--pty", "--push", "--push-interval", "500ms", "--push-cipher")}
    gw = f"gw-ha-{uuid.uuid4().hex[:8]}"
    cfg = _config(tmp_path, gw, mosquitto.port, sims)
    started = time.monotonic()
    configs, data, stderr = asyncio.run(_collect(cfg, gw, mosquitto.port, messages_per_meter=3))
    kinds = _kinds(data)
    missing = {m: sorted(want - kinds.get(m, set())) for m, want in WANTED.items() if want - kinds.get(m, set())}
    assert not missing, (f"after {time.monotonic() - started:.0f} s the broker had no readings of these kinds: "
                         f"{missing}\ngateway stderr:\n{stderr[-3000:]}")
    meters_with_configs = {c["topic"].split(f"meterlink_{gw}_", 1)[1].split("_", 1)[0] for c in configs}
    assert meters_with_configs == set(WANTED), f"discovery configs for {sorted(meters_with_configs)} only"

    (tmp_path / "configs.json").write_text(json.dumps(configs))
    (tmp_path / "data.json").write_text(json.dumps(data))
    r = subprocess.run([ha_python, str(CHECKER), str(tmp_path / "configs.json"), str(tmp_path / "data.json")],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    report = r.stdout + r.stderr
    sys.stdout.write(report)
    assert r.returncode == 0, f"Home Assistant's code rejects Meterlink's discovery:\n{report[-20000:]}"
    checked = json.loads(r.stdout.strip().splitlines()[-1])
    assert checked["configs"] == len(configs) >= 100, checked
    assert checked["renders"] >= checked["configs"] * 3, checked


# The checker itself, on hand-made messages in CONTRACT section 5/6's format: it must pass configs that are
# right for Home Assistant 2024.3.3 and name each wrong one, or the test above proves nothing.
_TOPIC = "meterlink/gw-t/m/data"
_LATEST = ("{% set r = value_json.readings | selectattr('obis', 'equalto', 'OBIS') | rejectattr('value', 'none')"
           " | list %}{% set live = r | selectattr('meter_ts', 'none') | list %}"
           "{{ (live | last).value if live else ((r | sort(attribute='meter_ts') | last).value if r else '') }}")
_FIRST_OR_THIS = ("{% set r = value_json.readings | selectattr('obis', 'equalto', 'OBIS') | list %}"
                  "{{ r[0].value if r and r[0].value is not none else this.state }}")


def _reading(obis: str, value: str, unit: str, ts: str, meter_ts: str | None = None) -> str:
    quality = "invalid" if value == "null" else "good"
    mts = "null" if meter_ts is None else f'"{meter_ts}"'
    return (f'{{"gateway": "gw-t", "meter": "m", "obis": "{obis}", "name": "x", "value": {value}, "unit": "{unit}", '
            f'"ts": "{ts}", "meter_ts": {mts}, "quality": "{quality}"}}')


def _message(seq: int, readings: list[str]) -> dict[str, str]:
    return {"topic": _TOPIC, "payload": (f'{{"gateway": "gw-t", "meter": "m", "epoch": "e", "seq": {seq}, '
                                         f'"ts": "2026-01-05T10:00:0{seq}.000Z", "readings": [{", ".join(readings)}]}}')}


def _sensor(meter: str, obis: str, template: str, **classes: str) -> dict[str, str]:
    uid = f"meterlink_gw-t_{meter}_{obis.replace('.', '_')}"
    doc = {"name": meter, "uniq_id": uid, "obj_id": uid, "stat_t": _TOPIC,  # abbreviated, as HA allows
           "val_tpl": template.replace("OBIS", obis), "dev": {"ids": ["meterlink_gw-t_m"], "name": "m"}, **classes}
    return {"topic": f"homeassistant/sensor/{uid}/config", "payload": json.dumps(doc)}


def test_the_checker_passes_right_configs_and_names_each_wrong_one(ha_python: str, tmp_path: Path) -> None:
    t1, t2 = "2026-01-05T10:00:01.000Z", "2026-01-05T10:00:02.000Z"
    data = [
        _message(1, [_reading("1.0.1.8.0.255", "1234.56", "kWh", t1),  # live register
                     _reading("1.0.1.8.0.255", "1230.10", "kWh", t1, "2026-01-05T09:45:00.000Z"),  # load profile
                     _reading("1.0.1.8.0.126", "1200.00", "kWh", t1, "2026-01-05T00:00:00.000Z"),  # daily freeze
                     _reading("1.0.32.7.0.255", "230.10", "V", t1),  # trailing zero: 230.1 is the same number
                     _reading("0.0.1.0.0.255", "-2.5", "s", t1, t1),  # clock drift
                     _reading("1.0.91.7.0.255", "null", "A", t1)]),  # an object the meter lacks
        _message(2, [_reading("1.0.32.7.0.255", "231.0", "V", t2, "2026-01-05T10:00:01.200Z"),  # push batch
                     _reading("1.0.32.7.0.255", "232.5", "V", t2, "2026-01-05T10:00:01.700Z"),
                     _reading("1.0.91.7.0.255", "null", "A", t2)]),
    ]
    energy = {"dev_cla": "energy", "unit_of_meas": "kWh", "stat_cla": "total_increasing"}
    voltage = {"dev_cla": "voltage", "unit_of_meas": "V", "stat_cla": "measurement"}
    current = {"dev_cla": "current", "unit_of_meas": "A", "stat_cla": "measurement"}
    good = [_sensor("good", "1.0.1.8.0.255", _LATEST, **energy),
            _sensor("good", "1.0.32.7.0.255", _LATEST, **voltage),
            _sensor("good", "0.0.1.0.0.255", _LATEST, dev_cla="duration", unit_of_meas="s", stat_cla="measurement"),
            _sensor("good", "1.0.91.7.0.255", _LATEST, **current),
            _sensor("good", "1.0.3.8.0.255", _LATEST, unit_of_meas="kvarh", stat_cla="total")]
    bad = {"firstpush": _sensor("firstpush", "1.0.32.7.0.255", _FIRST_OR_THIS, **voltage),
           "thisstate": _sensor("thisstate", "1.0.91.7.0.255", _FIRST_OR_THIS, **current),
           "reactiveenergy": _sensor("reactiveenergy", "1.0.3.8.0.255", _LATEST, dev_cla="reactive_energy",
                                     unit_of_meas="kvarh", stat_cla="total"),
           "kvar": _sensor("kvar", "1.0.131.7.0.255", _LATEST, dev_cla="reactive_power", unit_of_meas="kvar",
                           stat_cla="measurement"),
           "measuredenergy": _sensor("measuredenergy", "1.0.1.8.0.255", _LATEST,
                                     **{**energy, "stat_cla": "measurement"})}
    (tmp_path / "configs.json").write_text(json.dumps([*good, *bad.values()]))
    (tmp_path / "data.json").write_text(json.dumps(data))
    r = subprocess.run([ha_python, str(CHECKER), str(tmp_path / "configs.json"), str(tmp_path / "data.json")],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads(lines[-1]) == {"configs": 10, "renders": 18, "problems": 5}, r.stdout + r.stderr
    named = {line.split("_")[2]: line for line in lines[:-1]}
    assert set(named) == set(bad), r.stdout
    assert "shows '231.0', the newest reading with meter_ts 2026-01-05T10:00:01.700Z is 232.5" in named["firstpush"]
    assert "non-numeric value: 'unknown'" in named["thisstate"]
    assert "rejects device_class 'reactive_energy'" in named["reactiveenergy"]
    assert "unit 'kvar' is not one of device class reactive_power's units" in named["kvar"]
    assert "state class 'measurement' is not allowed for device class energy" in named["measuredenergy"]
