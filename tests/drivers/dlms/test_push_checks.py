"""Push frames to notifications (sans-io), and the configuration checks of DLMS meters."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meterlink.core.config import ConfigProblems, parse_config
from meterlink.drivers.dlms import hdlc, units
from meterlink.drivers.dlms.push import PushAssembler, notification_values
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import SimClock, parse_instant
from meterlink.simulators.dlms_push import push_frames

EK, AK = bytes(range(16)), bytes(range(0xD0, 0xE0))


def _notifications(frames: list[bytes], assembler: PushAssembler) -> list:  # type: ignore[type-arg]
    out = []
    buf = bytearray(b"".join(frames))
    while True:
        consumed, frame = hdlc.decode(buf)
        del buf[:consumed]
        if frame is None:
            return out
        out.extend(assembler.frame(frame))


@pytest.mark.parametrize(("cipher", "gbt", "max_info"), [(False, 0, 128), (True, 0, 64), (True, 50, 32),
                                                        (False, 40, 500)])
def test_simulated_push_frames_decode_to_the_meters_values(cipher: bool, gbt: int, max_info: int) -> None:
    clock = SimClock(start=parse_instant("2026-01-05T10:07:30Z"), frozen=True)
    meter = make_meter(frozen=True, clock=clock, encryption_key=EK, authentication_key=AK)
    frames = push_frames(meter, 7, cipher=cipher, gbt=gbt, max_info=max_info)
    assert len(frames) > 1  # segmented
    (n,) = _notifications(frames + frames[:1], PushAssembler(EK, AK))  # a second notification, cut short
    got = notification_values(n)
    assert got.meter_ts == datetime(2026, 1, 5, 10, 7, 30, tzinfo=UTC)
    for p in meter.points:
        if p.class_id == 3:
            data, (scaler, unit) = got.values[p.obis]
            assert units.convert(units.scale(data.number(), scaler), unit, p.unit)[0] == meter.served(p)


def test_wrong_key_and_no_key_are_reported() -> None:
    meter = make_meter(frozen=True, encryption_key=EK, authentication_key=AK)
    frames = push_frames(meter, 1, cipher=True)
    wrong = PushAssembler(AK, EK)
    assert _notifications(frames, wrong) == [] and "wrong enc_key" in (wrong.last_error or "")
    none = PushAssembler()
    assert _notifications(frames, none) == [] and "no enc_key" in (none.last_error or "")


def test_captured_aidon_frame() -> None:
    v = next(f for f in tomllib.loads((Path(__file__).parent / "vectors/hdlc.toml").read_text())["frame"]
             if f["name"] == "ui_frame_push_aidon")
    (n,) = _notifications([bytes.fromhex(v["hex"].replace("\\", " "))], PushAssembler())
    data, su = notification_values(n).values["1.0.1.7.0.255"]
    assert data.number() == 1105 and su == (0, "W")


# --- configuration ---------------------------------------------------------------------------------


def _problems(meter: dict[str, object], link: dict[str, object] | None = None) -> list[str]:
    raw = {"links": {"l": link or {"type": "tcp", "host": "127.0.0.1", "port": 4059}},
           "meters": {"m": {"link": "l", "protocol": "dlms", "profile": "dlms-generic-1phase", **meter}}}
    try:
        parse_config(raw)
    except ConfigProblems as exc:
        return [str(p) for p in exc.problems]
    return []


SERIAL = {"type": "serial", "port": "/dev/ttyUSB0", "baudrate": 2400, "parity": "E"}


@pytest.mark.parametrize(("meter", "link", "problem"), [
    ({"address": {"client": 16}}, None, None),
    ({"address": {"client": 16, "physical": 17}, "transport": "hdlc"}, SERIAL, None),
    ({"address": {"client": 1, "physical": "auto"}, "serial": "87654321"}, SERIAL, None),
    ({"address": {"client": 300}}, None, "meters.m.address: client 300 is not a number 0-127"),
    ({"address": {"physical": "auto"}}, SERIAL, "meters.m.address: physical: auto needs the meter's serial"),
    ({"address": {}, "transport": "wrapper"}, SERIAL, "meters.m.transport: wrapper (IEC 62056-47) runs on a tcp link"),
    ({"address": {}, "transport": "push"}, None, "meters.m.transport: push listens on a serial link"),
    ({"address": {"client": 1}, "auth": "lls"}, None, "meters.m.password_file: auth lls needs password_file"),
    ({"address": {"client": 1}, "auth": "hls-gmac", "enc_key_env": "X"}, None,
     "meters.m.auth_key_file: auth hls-gmac needs auth_key_file or auth_key_env"),
    ({"address": {"client": 16, "logical": 1, "physical": 17}, "transport": "wrapper", "auth": "none",
      "password_file": "/etc/meterlink/m-0003.pw"}, None, None),  # CONTRACT section 3's example meter
    ({"address": {}, "client_system_title": "4D4D"}, None, "meters.m.client_system_title: '4D4D' is not 8 bytes"),
    ({"address": {}, "auth": "lls", "password_env": "A", "password_file": "b"}, None,
     "meters.m.password_file: give one of password_file and password_env"),
])
def test_config_checks(meter: dict[str, object], link: dict[str, object] | None, problem: str | None) -> None:
    problems = _problems(meter, link)
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


def test_dlms_serial_link_keeps_its_line_settings() -> None:
    cfg = parse_config({"links": {"l": SERIAL}, "meters": {"m": {"link": "l", "protocol": "dlms", "address": {},
                                                                 "profile": "dlms-generic-1phase"}}})
    assert cfg.links["l"].baudrate == 2400 and cfg.links["l"].parity == "E"  # E450-class 2400 8E1
    from meterlink.core.config import Line
    from meterlink.drivers.dlms.driver import DlmsDriver

    link = DlmsDriver(cfg.links["l"])._byte_link()
    assert link.endpoint.is_serial
    assert link.line == Line(baudrate=2400, bytesize=8, parity="E", stopbits=1)
