"""``meterlink read`` against ``meterlink simulate dlms`` over a real pty and real TCP sockets.

Every transport (HDLC on a pty, HDLC on TCP, the IEC 62056-47 wrapper on TCP)
with every authentication level (none, LLS, HLS-GMAC): values, scalers, units
and the clock exactly as the simulated meter serves them.  Then what goes
wrong: wrong password, wrong keys, wrong address, an association dropped
mid-read, missing objects, line faults, each one clear line, the other meters
read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from meterlink.core.config import profile_points
from meterlink.core.reading import historical_obis
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import SimClock, parse_instant
from testkit.simproc import meterlink, write_config

PROFILE = "dlms-generic-3phase"
START = "2026-01-05T10:07:30Z"
EK, AK = "000102030405060708090A0B0C0D0E0F", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
EXTRA = [{"obis": "0.0.1.0.0.255", "name": "clock", "class_id": 8, "unit": "s"},
         {"obis": "0.0.96.1.0.255", "name": "serial_number", "class_id": 1}]
CLIENT = {"none": 16, "lls": 1, "hls-gmac": 1}


def _expected(seed: int = 1) -> dict[tuple[str, str | None], Decimal]:
    """What the frozen simulator serves: registers by OBIS, profile records by (OBIS, meter_ts)."""
    meter = make_meter(profile=PROFILE, seed=seed, frozen=True, clock=SimClock(start=parse_instant(START), frozen=True))
    out: dict[tuple[str, str | None], Decimal] = {}
    for p in profile_points(PROFILE):
        if p.class_id == 3:
            out[(p.obis, None)] = meter.served(p)
        elif p.class_id == 4:  # an extended register's capture time is its meter_ts (the simulator: midnight)
            out[(p.obis, START[:10] + "T00:00:00.000Z")] = meter.served(p)
    now = parse_instant(START)
    for profile in ("1.0.99.1.0.255", "1.0.98.1.0.255"):
        period = meter.period(profile)
        for t in meter.record_times(profile):
            if now - 2 * period < t:  # a one-off read fetches the newest records
                stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                out[(profile, stamp)] = Decimal(0)
                for obis, wh in meter.expected_record(profile, t).items():
                    # a record's values: the historical code (F = 126), in kWh as the profile's points
                    out[(historical_obis(obis), stamp)] = wh.scaleb(-3)
    return out


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line, parse_float=Decimal) for line in stdout.splitlines()]


def _meter(link: str, auth: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    m: dict[str, object] = {"link": link, "protocol": "dlms", "profile": PROFILE, "auth": auth, "points": EXTRA,
                            "address": {"client": CLIENT[auth], "logical": 1, "physical": 17}}
    if auth == "lls":
        (tmp_path / "m.pw").write_text("12345678\n")
        (tmp_path / "m.pw").chmod(0o600)
        m["password_file"] = str(tmp_path / "m.pw")
    if auth == "hls-gmac":
        m.update(enc_key_env="TEST_DLMS_EK", auth_key_env="TEST_DLMS_AK")
    m.update(extra)
    return m


def _config(tmp_path: Path, links: dict[str, object], meters: dict[str, object]) -> Path:
    return write_config(tmp_path / "g.yaml", {"gateway": {"id": "gw-t", "data_dir": str(tmp_path / "data")},
                                              "links": links, "meters": meters})


def _read(cfg: Path, *args: str):  # type: ignore[no-untyped-def]
    return meterlink("read", "-c", str(cfg), "--format", "json", *args,
                     env={"TEST_DLMS_EK": EK, "TEST_DLMS_AK": AK})


TRANSPORTS = [("pty", "hdlc"), ("tcp", "hdlc"), ("tcp", "wrapper")]


@pytest.mark.parametrize("auth", ["none", "lls", "hls-gmac"])
@pytest.mark.parametrize(("where", "transport"), TRANSPORTS, ids=[f"{w}-{t}" for w, t in TRANSPORTS])
def test_values_scalers_units_and_clock_exactly_as_served(simulate, tmp_path: Path, where: str, transport: str,
                                                          auth: str) -> None:
    sim = simulate("dlms", "--pty" if where == "pty" else "--tcp", *([] if where == "pty" else ["0"]),
                   f"--{transport}", "--auth", auth, "--freeze", "--clock-start", START)
    if where == "pty":
        link = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "500ms"}
    else:
        link = {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"}
    cfg = _config(tmp_path, {"l": link}, {"m": _meter("l", auth, tmp_path, transport=transport)})
    r = _read(cfg)
    assert r.returncode == 0, r.stderr
    readings = _json_lines(r.stdout)
    got = {(x["obis"], x["meter_ts"]): x for x in readings}
    expected = _expected()
    for key, value in expected.items():
        assert key in got, f"{key} not read"
        assert got[key]["quality"] == "good", got[key]
        assert got[key]["value"] == value, f"{key}: read {got[key]['value']}, served {value}"
    by_obis = {x["obis"]: x for x in readings if x["meter_ts"] is None or x["obis"] in ("0.0.1.0.0.255",
                                                                                         "1.0.1.6.0.255")}
    assert by_obis["0.0.1.0.0.255"]["meter_ts"] == "2026-01-05T10:07:30.000Z"  # the meter's clock
    assert by_obis["0.0.1.0.0.255"]["unit"] == "s" and by_obis["0.0.1.0.0.255"]["value"] < -3600  # drift
    assert by_obis["0.0.96.1.0.255"]["value"] == 12345678
    assert by_obis["1.0.1.6.0.255"]["meter_ts"] == "2026-01-05T00:00:00.000Z"  # extended register capture time
    units = {x["obis"]: x["unit"] for x in readings}
    assert units["1.0.1.8.0.255"] == "kWh" and units["1.0.32.7.0.255"] == "V" and units["1.0.13.7.0.255"] == ""
    assert units["1.0.3.8.0.255"] == "kvarh" and units["1.0.14.7.0.255"] == "Hz"
    text = r.stdout
    assert "1234.5600000" not in text and "E+" not in text and "e+" not in text
    assert "12345678" not in r.stderr and EK not in r.stdout + r.stderr


def test_push_meter_on_a_pty(simulate, tmp_path: Path) -> None:
    """A P1/HAN port: ciphered DataNotifications in general-block-transfer blocks and segmented UI frames."""
    sim = simulate("dlms", "--pty", "--push", "--push-interval", "200ms", "--push-cipher", "--push-gbt", "100",
                   "--max-info", "64", "--freeze", "--clock-start", START)
    cfg = _config(tmp_path, {"p1": {"type": "serial", "port": sim.where, "baudrate": 115200, "parity": "N",
                                    "timeout": "2s"}},
                  {"home": {"link": "p1", "protocol": "dlms", "transport": "push", "address": {"client": 16},
                            "profile": PROFILE, "enc_key_env": "TEST_DLMS_EK", "auth_key_env": "TEST_DLMS_AK"}})
    r = _read(cfg)
    assert r.returncode == 0, r.stderr
    readings = _json_lines(r.stdout)
    expected = {k[0]: v for k, v in _expected().items() if k[1] is None or k[0] == "1.0.1.6.0.255"}
    got = {x["obis"]: x for x in readings}
    assert set(got) == set(expected)
    for obis, value in expected.items():
        assert got[obis]["value"] == value and got[obis]["quality"] == "good"
        assert got[obis]["meter_ts"] == "2026-01-05T10:07:30.000Z"


def test_push_with_a_wrong_key_says_so(simulate, tmp_path: Path) -> None:
    sim = simulate("dlms", "--pty", "--push", "--push-interval", "200ms", "--push-cipher", "--freeze")
    cfg = _config(tmp_path, {"p1": {"type": "serial", "port": sim.where, "timeout": "1s"}},
                  {"home": {"link": "p1", "protocol": "dlms", "transport": "push", "address": {"client": 16},
                            "profile": "dlms-generic-1phase", "enc_key_env": "TEST_DLMS_AK",
                            "auth_key_env": "TEST_DLMS_AK"}})
    r = _read(cfg)
    assert r.returncode == 1
    assert r.stderr.startswith("home: push data arrives but cannot be read: cannot decipher"), r.stderr
    assert AK not in r.stderr


# --- what goes wrong ---------------------------------------------------------------------------


def test_wrong_password_and_wrong_keys_are_one_clear_line(simulate, tmp_path: Path) -> None:
    lls = simulate("dlms", "--tcp", "0", "--auth", "lls", "--freeze")
    hls = simulate("dlms", "--tcp", "0", "--auth", "hls-gmac", "--freeze", "--enc-key", AK, "--auth-key", EK)
    good = simulate("dlms", "--tcp", "0", "--freeze", "--clock-start", START)
    (tmp_path / "bad.pw").write_text("hunter22\n")
    (tmp_path / "bad.pw").chmod(0o600)
    links = {n: {"type": "tcp", "host": "127.0.0.1", "port": s.port, "timeout": "500ms"}
             for n, s in (("a", lls), ("b", hls), ("c", good))}
    meters = {"pw": _meter("a", "lls", tmp_path), "keys": _meter("b", "hls-gmac", tmp_path),
              "ok": _meter("c", "none", tmp_path)}
    meters["pw"]["password_file"] = str(tmp_path / "bad.pw")
    r = _read(_config(tmp_path, links, meters))
    assert r.returncode == 1
    lines = sorted(r.stderr.strip().splitlines())
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("keys: association refused by the meter") and "check enc_key, auth_key" in lines[0]
    assert lines[1].startswith("pw: association refused by the meter: authentication failure")
    assert "hunter22" not in r.stderr + r.stdout and EK not in r.stderr and "Traceback" not in r.stderr
    ok = [x for x in _json_lines(r.stdout) if x["meter"] == "ok" and x["meter_ts"] is None]
    assert ok and all(x["quality"] == "good" for x in ok)


def test_wrong_address_on_a_bus_and_the_other_meter_is_read(simulate, tmp_path: Path) -> None:
    sim = simulate("dlms", "--pty", "--physical", "17", "--physical", "18", "--freeze", "--clock-start", START)
    link = {"type": "serial", "port": sim.where, "baudrate": 9600, "parity": "N", "timeout": "300ms", "retries": 1}
    meters = {"m17": _meter("bus", "none", tmp_path), "m19": _meter("bus", "none", tmp_path),
              "m18": _meter("bus", "none", tmp_path)}
    meters["m19"]["address"] = {"client": 16, "logical": 1, "physical": 19}
    meters["m18"]["address"] = {"client": 16, "logical": 1, "physical": 18}
    r = _read(_config(tmp_path, {"bus": link}, meters))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "m19: no answer to SNRM from HDLC server address 1/19 within 0.3 s x 2"), r.stderr
    readings = _json_lines(r.stdout)
    for meter, seed in (("m17", 1), ("m18", 2)):
        served = {k[0]: v for k, v in _expected(seed).items() if k[1] is None}
        assert served
        got = {x["obis"]: x["value"] for x in readings if x["meter"] == meter and x["meter_ts"] is None}
        assert all(got[o] == v for o, v in served.items()), meter


def test_serial_number_address(simulate, tmp_path: Path) -> None:
    """``physical: auto``: the physical address from the serial number (SN % 10000 + 1000), a 4-byte address."""
    sim = simulate("dlms", "--pty", "--physical", str(87654321 % 10000 + 1000), "--freeze")
    link = {"type": "serial", "port": sim.where, "timeout": "500ms"}
    m = _meter("bus", "none", tmp_path, serial="87654321")
    m["address"] = {"client": 16, "logical": 1, "physical": "auto"}
    r = _read(_config(tmp_path, {"bus": link}, {"m": m}), "--meter", "m")
    assert r.returncode == 0, r.stderr


def test_association_dropped_mid_read(simulate, tmp_path: Path) -> None:
    """The meter drops the association after 2 GETs: the driver re-associates and finishes; a meter that drops it
    at once every time is one clear error."""
    points = [{"obis": "1.0.32.7.0.255", "name": "voltage_l1", "unit": "V"},
              {"obis": "1.0.1.8.0.255", "name": "active_energy_import", "unit": "kWh"},
              {"obis": "1.0.99.1.0.255", "name": "load_profile", "class_id": 7}]
    flaky = simulate("dlms", "--pty", "--drop-after", "2", "--freeze", "--clock-start", START)
    gone = simulate("dlms", "--tcp", "0", "--drop-after", "0", "--freeze")
    links = {"a": {"type": "serial", "port": flaky.where, "timeout": "500ms"},
             "b": {"type": "tcp", "host": "127.0.0.1", "port": gone.port, "timeout": "500ms"}}
    meters = {"flaky": {"link": "a", "protocol": "dlms", "address": {"client": 16, "physical": 17}, "points": points},
              "gone": {"link": "b", "protocol": "dlms", "address": {"client": 16}, "points": points}}
    r = _read(_config(tmp_path, links, meters))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gone: the meter dropped the association during the read"), lines
    flaky_readings = [x for x in _json_lines(r.stdout) if x["meter"] == "flaky"]
    assert {x["obis"] for x in flaky_readings} >= {"1.0.32.7.0.255", "1.0.1.8.0.255", "1.0.99.1.0.255"}
    assert all(x["quality"] == "good" for x in flaky_readings)
    assert len([x for x in flaky_readings if x["obis"] == "1.0.99.1.0.255"]) == 2


def test_missing_object_is_an_invalid_point(simulate, tmp_path: Path) -> None:
    sim = simulate("dlms", "--tcp", "0", "--missing", "1.0.32.7.0.255", "--no-with-list", "--freeze")
    cfg = _config(tmp_path, {"t": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}},
                  {"m": {"link": "t", "protocol": "dlms", "address": {"client": 16}, "profile": "dlms-generic-1phase"}})
    r = _read(cfg)
    assert r.returncode == 0, r.stderr
    got = {x["obis"]: x for x in _json_lines(r.stdout) if x["meter_ts"] is None}
    assert got["1.0.32.7.0.255"]["quality"] == "invalid" and got["1.0.32.7.0.255"]["value"] is None
    assert got["1.0.32.7.0.255"]["error"] == "the meter answered object-undefined"
    assert got["1.0.31.7.0.255"]["quality"] == "good"


@pytest.mark.parametrize(("fault", "message"), [
    ("silent", "m: no answer to SNRM from HDLC server address 1/17 within 0.3 s x 2"),
    ("crc", "m: HDLC FCS error"),
    ("exception", "m: no valid value: the meter answered hardware-fault"),
])
def test_line_faults(simulate, tmp_path: Path, fault: str, message: str) -> None:
    sim = simulate("dlms", "--pty", "--fault", fault, "--freeze")
    cfg = _config(tmp_path, {"bus": {"type": "serial", "port": sim.where, "timeout": "300ms", "retries": 1}},
                  {"m": {"link": "bus", "protocol": "dlms", "address": {"client": 16, "physical": 17},
                         "points": [{"obis": "1.0.32.7.0.255", "name": "voltage_l1", "unit": "V"}]}})
    r = _read(cfg)
    assert r.returncode == 1
    assert r.stderr.startswith(message), r.stderr
    assert "Traceback" not in r.stderr


def test_hls_with_a_meter_that_grants_no_general_protection(simulate, tmp_path: Path) -> None:
    """Issue 11 item 7: such a meter knows only glo-get-request / glo-action-request (Green Book 9.3)."""
    sim = simulate("dlms", "--tcp", "0", "--auth", "hls-gmac", "--freeze", "--clock-start", START,
                   "--no-general-protection")
    link = {"type": "tcp", "host": "127.0.0.1", "port": sim.port, "timeout": "500ms"}
    cfg = _config(tmp_path, {"l": link}, {"m": _meter("l", "hls-gmac", tmp_path, transport="wrapper")})
    r = _read(cfg)
    assert r.returncode == 0, r.stderr
    got = {(x["obis"], x["meter_ts"]): x for x in _json_lines(r.stdout)}
    for key, value in _expected().items():
        assert got[key]["quality"] == "good" and got[key]["value"] == value, key
