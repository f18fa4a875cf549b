"""The systemd unit and the notify protocol: systemd-analyze on the real unit file, a real datagram socket.

Why a private root for ``systemd-analyze verify``: on the host it would check
that ``/opt/meterlink/bin/meterlink`` exists, which it does only on an
installed edge box.  ``--root`` makes it look for the unit, the binary and
systemd's own units in a temporary tree holding exactly those, so the unit is
verified as written, without installing anything.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterlink.apps.run import warn_readable_secrets
from meterlink.apps.sdnotify import Notifier, watchdog_interval
from meterlink.core import logs
from meterlink.core.config import load_config
from testkit.simproc import REPO, meterlink_cmd, write_config
from tests.integration.test_scheduler import POINTS

UNIT = REPO / "systemd" / "meterlink.service"
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)


def unit_directives(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key`` -> every value it is given (DeviceAllow= and SystemCallFilter= repeat), across sections."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A filesystem root holding the unit, systemd's own units and an executable at the ExecStart path."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or SYSTEM_UNITS is None:
        pytest.skip("systemd-analyze and systemd's unit files are not installed (apt-get install systemd)")
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/meterlink.service")
    exe = root / unit_directives()["ExecStart"][0].split()[0].lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def test_unit_passes_systemd_analyze_verify(unit_root: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}", "meterlink.service"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr  # unknown keys are only warnings: none allowed


def test_unit_security_exposure_is_low(unit_root: Path) -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={unit_root}", "--no-pager",
                        "meterlink.service"], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for meterlink.service: ([\d.]+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout


def test_unit_is_a_notify_service_that_can_reach_serial_ports() -> None:
    d = unit_directives()
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert _seconds(one["WatchdogSec"]) >= 10 and one["Restart"] == "on-failure"
    assert one["ExecStart"] == "/opt/meterlink/bin/meterlink run -c /etc/meterlink/gateway.yaml"
    assert one["StateDirectory"] == "meterlink" and one["ConfigurationDirectory"] == "meterlink"
    assert one["WorkingDirectory"] == "/var/lib/meterlink"
    assert one["DynamicUser"] == "yes" and "dialout" in one["SupplementaryGroups"].split()
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyS", "char-ttyACM"} <= allowed
    assert all(v.split()[1] == "rw" for v in d["DeviceAllow"])
    for hides_devices in ("PrivateDevices", "PrivateUsers"):
        assert one.get(hides_devices, "no") == "no", f"{hides_devices}= hides /dev/ttyUSB* from the service"
    assert "AF_UNIX" in one["RestrictAddressFamilies"]  # the notify socket
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"


# --------------------------------------------------------------------------- sd_notify over a real socket


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound where systemd would put it, short enough for sun_path (108 bytes)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="ml-sd-", dir="/tmp")
    path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(d, ignore_errors=True)


def test_sdnotify_sends_each_state_as_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    n = Notifier(path)
    assert n.enabled
    assert n.ready("reading 2 meters")
    assert sock.recv(4096) == b"READY=1\nSTATUS=reading 2 meters"
    assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_sdnotify_abstract_socket_and_absent_socket() -> None:
    name = f"meterlink-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog() and sock.recv(64) == b"WATCHDOG=1"
    finally:
        sock.close()
    off = Notifier.from_env({})
    assert not off.enabled and not off.ready()
    gone = Notifier("/nonexistent/meterlink-notify")  # systemd went away: logged once, never raised
    assert not gone.watchdog() and not gone.watchdog()


def test_sdnotify_watchdog_interval_is_for_this_process_only() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # the parent's watchdog
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "x"}) is None


def _config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path / "g.yaml", {
        "gateway": {"id": "gw-sd", "data_dir": str(tmp_path / "data")},
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "300ms"}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "interval": "1s", "points": POINTS}},
    })


def _rows(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT count(*) FROM batches").fetchone()[0])
    finally:
        con.close()


def test_sdnotify_run_ready_watchdog_stopping_and_sigterm_exit_0(simulate, tmp_path: Path,
                                                                 notify_socket: tuple[socket.socket, str]) -> None:
    """``meterlink run`` under a fake service manager: READY once the journal is open, WATCHDOG every half
    WatchdogSec, STOPPING on SIGTERM, then everything acquired committed and exit 0 within TimeoutStopSec."""
    sock, path = notify_socket
    sim = simulate("modbus", "--profile", "eastron-sdm120", "--unit", "1", "--tcp", "0")
    cfg = _config(tmp_path, sim.port)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    gw = subprocess.Popen([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    messages: list[tuple[float, bytes]] = []
    try:
        while not any(m.startswith(b"READY=1") for _, m in messages):
            messages.append((time.monotonic(), sock.recv(4096)))
        assert (tmp_path / "data" / "journal.sqlite").exists(), "READY=1 before the journal was opened"
        ready_at = time.monotonic()
        while time.monotonic() - ready_at < 2.2:
            messages.append((time.monotonic(), sock.recv(4096)))
        pings = [t for t, m in messages if m == b"WATCHDOG=1" and t >= ready_at]
        assert len(pings) >= 3, messages  # every 0.5 s for WatchdogSec=1s
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.0
        t0 = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        while True:
            msg = sock.recv(4096)
            if msg.startswith(b"STOPPING=1"):
                break
            assert msg == b"WATCHDOG=1", msg
        rc = gw.wait(_seconds(unit_directives()["TimeoutStopSec"][-1]))
        elapsed = time.monotonic() - t0
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
    err = gw.stderr.read() if gw.stderr else ""
    assert rc == 0 and "Traceback" not in err, err
    assert elapsed < 5, f"SIGTERM took {elapsed:.1f} s"
    assert "gateway stopped" in err
    data = tmp_path / "data"
    assert _rows(data / "journal.sqlite") >= 2
    wal = data / "journal.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "journal not checkpointed on SIGTERM"


def test_sdnotify_bad_config_exits_2_without_ready(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    cfg = write_config(tmp_path / "g.yaml", {"links": {}, "meters": {"m1": {"link": "nowhere", "protocol": "modbus",
                                                                            "address": 1}}})
    r = subprocess.run([*meterlink_cmd(), "run", "-c", str(cfg)], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    assert r.returncode == 2 and "meters.m1.link" in r.stderr, r.stderr
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


# --------------------------------------------------------------------------- secrets in a readable config


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, False), (0o600, False)])
def test_service_warns_about_inline_secret_in_readable_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              mode: int, warned: bool) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 502}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
        "sinks": {"mqtt": {"username": "gw", "password": "hunter2-inline"},
                  "influxdb": {"url": "http://127.0.0.1:8428", "token": "tok-inline"}},
    })
    cfg.chmod(mode)
    logs.setup("text", "info")
    warn_readable_secrets(load_config(cfg))
    err = capsys.readouterr().err
    assert ("configuration file holds secrets and is readable by others" in err) is warned, err
    if warned:
        assert "sinks.mqtt.password,sinks.influxdb.token" in err and str(cfg) in err
    assert "hunter2-inline" not in err and "tok-inline" not in err


def test_service_no_warning_without_inline_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "g.yaml", {
        "links": {"t": {"type": "tcp", "host": "127.0.0.1", "port": 502}},
        "meters": {"m1": {"link": "t", "protocol": "modbus", "address": 1, "profile": "eastron-sdm120"}},
        "sinks": {"mqtt": {"username": "gw", "password_file": "/etc/meterlink/mqtt.pw"}},
    })
    cfg.chmod(0o644)
    logs.setup("text", "info")
    warn_readable_secrets(load_config(cfg))
    assert "readable by others" not in capsys.readouterr().err
