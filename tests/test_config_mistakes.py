"""A technician's configuration mistakes, each answered with one plain line (issues 15 and 16).

The case folders in ``tests/config/cases`` pin the exact lines; these tests pin what a
folder cannot: the ``check``/``run`` exit codes and warnings, time and size bounds, and
defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterlink.core.config import MAX_YAML_BYTES, ConfigProblems, check_config, load_config, load_yaml, parse_config
from testkit.simproc import REPO

BOMB = ("&i [&h [&g [&f [&e [&d [&c [&b [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol],*a,*a,*a,*a,*a,*a,*a,*a],"
        "*b,*b,*b,*b,*b,*b,*b,*b],*c,*c,*c,*c,*c,*c,*c,*c],*d,*d,*d,*d,*d,*d,*d,*d],*e,*e,*e,*e,*e,*e,*e,*e],"
        "*f,*f,*f,*f,*f,*f,*f,*f],*g,*g,*g,*g,*g,*g,*g,*g],*h,*h,*h,*h,*h,*h,*h,*h]")
TCP = "links: {t: {type: tcp, host: 127.0.0.1, port: 502}}\n"
METER = "meters: {m-1: {link: t, protocol: modbus, address: 1, profile: eastron-sdm120}}\n"


def _cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterlink.apps.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, env={**os.environ, **(env or {})})


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        check_config(path)
    return [str(p) for p in info.value.problems]


def test_check_warns_on_bare_numbers_and_a_missing_port_but_passes(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("links: {rs485-1: {type: serial, port: /dev/ttyUSB-not-here, timeout: 0.5}}\n"
                 "meters: {m-1: {link: rs485-1, protocol: modbus, address: 1, profile: eastron-sdm120, "
                 "interval: 10}}\n")
    r = _cli("check", "-c", str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "ok: gateway gw-01" in r.stdout
    assert r.stderr.splitlines() == [
        "warning: links.rs485-1.timeout: a bare number is read as seconds (0.5 s); write 500ms to say so",
        "warning: meters.m-1.interval: a bare number is read as seconds (10 s); write 10s to say so",
        "warning: links.rs485-1.port: /dev/ttyUSB-not-here does not exist (yet?): plug the adapter in or fix "
        "the path",
    ]
    # written with units and on a port that exists: nothing to say
    f.write_text("links: {rs485-1: {type: serial, port: /dev/null, timeout: 500ms}}\n"
                 "meters: {m-1: {link: rs485-1, protocol: modbus, address: 1, profile: eastron-sdm120}}\n")
    r = _cli("check", "-c", str(f))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_bare_number_keeps_meaning_seconds() -> None:
    cfg = parse_config({"links": {"t": {"type": "tcp", "host": "h", "port": 1, "timeout": 1.0}},
                        "meters": {"m": {"link": "t", "protocol": "modbus", "address": 1,
                                         "profile": "eastron-sdm120"}}})
    assert cfg.links["t"].timeout == 1.0  # CONTRACT section 3 writes `timeout: 1.0`
    assert cfg.warnings == ("links.t.timeout: a bare number is read as seconds (1 s); write 1s to say so",)


@pytest.mark.parametrize("command", ["check", "run"])
def test_config_errors_exit_2_with_one_line_each(command: str, tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(TCP + METER + f"gateway: {{data_dir: {tmp_path / 'data'}}}\n"
                 "sinks: {mqtt: {username: gw, password_file: mqtt.pw, tls: {ca_file: /nonexistent/ca.pem}}}\n")
    r = _cli(command, "-c", str(f))
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"sinks.mqtt.password_file: cannot read {tmp_path}/mqtt.pw: No such file or directory",
        "sinks.mqtt.tls.ca_file: /nonexistent/ca.pem: no such file",
    ]


def test_run_exits_2_on_a_config_error_found_at_start(tmp_path: Path) -> None:
    """A secret read when the sink starts (an environment variable) is still a configuration error: 2, not 1."""
    f = tmp_path / "g.yaml"
    f.write_text(TCP + METER + f"gateway: {{data_dir: {tmp_path / 'data'}}}\n"
                 "sinks: {influxdb: {url: 'http://127.0.0.1:1', token_env: ML_TEST_TOKEN_NOT_SET}}\n")
    env = {k: v for k, v in os.environ.items() if k != "ML_TEST_TOKEN_NOT_SET"}
    r = subprocess.run([sys.executable, "-m", "meterlink.apps.cli", "run", "-c", str(f)], capture_output=True, text=True,
                       cwd=REPO, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1] == "sinks.influxdb.token_env: environment variable ML_TEST_TOKEN_NOT_SET is not set"


def test_mqtt_commands_are_off_unless_asked_for() -> None:
    base: dict[str, Any] = {"links": {"t": {"type": "tcp", "host": "h", "port": 1}},
                            "meters": {"m": {"link": "t", "protocol": "modbus", "address": 1,
                                             "profile": "eastron-sdm120"}}}
    assert parse_config({**base, "sinks": {"mqtt": {}}}).sinks.mqtt.commands is False  # type: ignore[union-attr]
    on = parse_config({**base, "sinks": {"mqtt": {"commands": True}}})
    assert on.sinks.mqtt.commands is True  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["protocol", "address", "interval"])
def test_alias_bomb_is_refused_fast(key: str, tmp_path: Path) -> None:
    """Before: MemoryError after 13-48 s, with the expanded input repr()ed into the message."""
    values = {"protocol": "modbus", "address": 1, "interval": "10s"}
    values[key] = "BOMB"
    f = tmp_path / "g.yaml"
    f.write_text(TCP + "meters:\n  m-1:\n    link: t\n    profile: eastron-sdm120\n"
                 + "".join(f"    {k}: {v}\n" for k, v in values.items()).replace("BOMB", BOMB))
    started = time.monotonic()
    got = _problems(f)
    assert time.monotonic() - started < 2.0
    assert got == [f"meters.m-1.{key}: the YAML aliases (*name) here expand to more than 1,000,000 values; "
                   "write the values out"]


def test_aliases_in_moderation_still_work(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(TCP + "meters:\n  m-1: &common {link: t, protocol: modbus, profile: eastron-sdm120, address: 1}\n"
                       "  m-2: {<<: *common, address: 2}\n")
    cfg = check_config(f)
    assert cfg.meters["m-2"].address == 2 and cfg.meters["m-2"].config.profile == "eastron-sdm120"


def test_huge_values_are_cut_in_messages(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(TCP + "meters: {m-1: {link: t, address: 1, protocol: " + "x" * 200_000 + ", points: [{obis: "
                 + "1.2" * 100_000 + "}]}}\n")
    got = _problems(f)
    assert got and all(len(line) < 300 for line in got), [len(line) for line in got]
    assert got[0].startswith("meters.m-1.protocol: 'xxx")
    f.write_text(TCP + "meters: {m-1: {link: t, address: " + "1" * 5000 + ", protocol: modbus}}\n")
    assert _problems(f) == [f"{f}: a value cannot be read (Exceeds the limit (4300 digits) for integer string "
                            "conversion)"]


def test_large_non_regular_and_binary_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_YAML_BYTES + "\n")
    assert _problems(big) == [f"{big}: larger than 1024 KiB; is it the right file?"]
    assert _problems(tmp_path) == [f"{tmp_path}: not a regular file"]
    os.mkfifo(tmp_path / "fifo.yaml")  # opening a FIFO would block until a writer comes
    assert _problems(tmp_path / "fifo.yaml") == [f"{tmp_path}/fifo.yaml: not a regular file"]
    (tmp_path / "bin.yaml").write_bytes(b"links: \xff\xfe\n")
    assert _problems(tmp_path / "bin.yaml") == [f"{tmp_path}/bin.yaml: not UTF-8 text (byte 7); is it the right file?"]


def test_duplicate_keys_anywhere_name_both_lines(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(TCP + "meters:\n  m-1: {link: t, protocol: modbus, address: 1, address: 2, profile: eastron-sdm120}\n")
    assert _problems(f) == ["meters.m-1.address: defined twice (lines 3 and 3)"]


def test_secret_files_that_are_devices_or_binary(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text(TCP + METER + "sinks: {influxdb: {url: 'http://127.0.0.1:8086', token_file: /dev/zero}}\n")
    assert _problems(f) == ["sinks.influxdb.token_file: /dev/zero is larger than 64 KiB: not a secret file "
                            "(one line: the password, token or key)"]


def test_dlms_key_files_are_read_by_check(tmp_path: Path) -> None:
    (tmp_path / "ak.hex").write_text("000102030405060708090A0B0C0D0E0F\n")
    (tmp_path / "ek.hex").write_text("not hex\n")
    f = tmp_path / "g.yaml"
    f.write_text("links: {t: {type: tcp, host: 127.0.0.1, port: 4059}}\n"
                 "meters: {m-1: {link: t, protocol: dlms, address: {client: 1, logical: 1}, auth: hls-gmac, "
                 "auth_key_file: ak.hex, enc_key_file: ek.hex, points: [{obis: 1.0.1.8.0.255}]}}\n")
    assert _problems(f) == [f"meters.m-1.enc_key_file: {tmp_path}/ek.hex does not hold a key of 32 hex digits"]
    (tmp_path / "ek.hex").unlink()
    assert _problems(f) == [f"meters.m-1.enc_key_file: cannot read {tmp_path}/ek.hex: No such file or directory"]


def test_profile_mistakes_name_the_profile_and_key(tmp_path: Path) -> None:
    prof = tmp_path / "p.yaml"
    prof.write_text("name: p\nprotocol: modbus\nsource: test\ndefaults: {functon: input}\n"
                    "groups: [{points: [{obis: 1.0.32.7.0.255, register: 0}]}]\n")
    f = tmp_path / "g.yaml"
    f.write_text(TCP + "meters: {m-1: {link: t, protocol: modbus, address: 1, profile: ./p.yaml}}\n")
    assert _problems(f) == ["meters.m-1.profile: ./p.yaml: defaults.functon: unknown key, did you mean `function`?"]
    prof.write_text("name: p\nprotocol: modbus\nname: q\n")
    assert _problems(f) == ["meters.m-1.profile: ./p.yaml: name: defined twice (lines 1 and 3)"]
    prof.write_text("- just a list\n")
    assert _problems(f) == ["meters.m-1.profile: ./p.yaml: a profile holds a mapping (name, protocol, defaults, "
                            "groups)"]


def test_influxdb_v1_keys_are_checked(tmp_path: Path) -> None:
    base: dict[str, Any] = {"links": {"t": {"type": "tcp", "host": "h", "port": 1}},
                            "meters": {"m": {"link": "t", "protocol": "modbus", "address": 1,
                                             "profile": "eastron-sdm120"}}}

    def problems(influx: dict[str, Any]) -> list[str]:
        with pytest.raises(ConfigProblems) as info:
            parse_config({**base, "sinks": {"influxdb": {"url": "http://127.0.0.1:8086", **influx}}})
        return [str(p) for p in info.value.problems]

    assert problems({"api": "v1"}) == [
        "sinks.influxdb.database: required with api: v1 (the InfluxDB 1.x database to write to)"]
    assert problems({"api": "v1", "database": "d", "token": "t", "password_file": "pw"}) == [
        "sinks.influxdb.token_file: api: v1 logs in with username and password_file, not a token",
        "sinks.influxdb.username: required when a password is given"]
    assert problems({"database": "d"}) == [
        "sinks.influxdb.database: only with api: v1 (InfluxDB 1.x); with api: v2 name the bucket and a token"]
    assert problems({"api": "v3"})[0].startswith("sinks.influxdb.api: 'v3': must be 'v2' or 'v1'")
    ok = parse_config({**base, "sinks": {"influxdb": {"url": "http://x:8086", "api": "v1", "database": "meters",
                                                      "retention_policy": "autogen", "username": "u",
                                                      "password_file": "pw"}}})
    assert ok.sinks.influxdb is not None and ok.sinks.influxdb.api == "v1"


def test_load_speed_of_a_large_config(tmp_path: Path) -> None:
    """The duplicate-key and alias checks walk every node once: loading stays as fast as plain libyaml."""
    raw = {"links": {f"l{i}": {"type": "tcp", "host": "127.0.0.1", "port": 502, "timeout": "1s"} for i in range(200)},
           "meters": {f"m{i}": {"link": f"l{i % 200}", "protocol": "modbus", "address": 1 + i // 200,
                                "profile": "eastron-sdm630", "interval": "10s"} for i in range(2000)}}
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump(raw))

    def best_of_3(load: Any) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            load()
            times.append(time.perf_counter() - started)
        return min(times)

    plain = best_of_3(lambda: yaml.load(f.read_text(), Loader=yaml.CSafeLoader))
    ours = best_of_3(lambda: load_yaml(f))
    assert ours < 3 * plain + 0.05, (ours, plain)
    assert len(load_config(f).meters) == 2000
