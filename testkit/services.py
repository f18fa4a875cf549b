"""Real Mosquitto and VictoriaMetrics servers for the test suite (a pytest plugin).

Why: Meterlink's promise is "no reading is lost" between a meter and MQTT/InfluxDB.  Mocks of
a broker or of a time-series database cannot show what really happens when the broker drops
connections, restarts, or the database is killed mid-write, so every test that talks to MQTT or
InfluxDB talks to a real server started here: a private process on a free loopback port, never
the machine's standard ports (a system Mosquitto may already serve 127.0.0.1:1883 and must not
be touched), so tests can kill and restart it at will.

Loaded from ``tests/conftest.py`` with ``pytest_plugins = ("testkit.services",)``.

Fixtures
--------
``mosquitto`` / ``victoria_metrics`` (session scope)
    One instance for the whole run.  If a test stopped or killed it, it is restarted (same port,
    same data directory) before the next test that uses it is handed the fixture.
``secure_mosquitto`` (session scope)
    Like ``mosquitto`` but with a password file and a TLS listener (see :class:`Mosquitto`).
``fresh_mosquitto`` / ``fresh_victoria_metrics`` (function scope)
    A new instance per test, for tests that kill/restart the server or need an empty database.
``mosquitto_factory`` / ``victoria_metrics_factory`` (function scope)
    Callables building instances with non-default options; all are closed after the test.

When a binary is missing, the fixtures run ``scripts/install-test-services.sh`` once per
session (it apt-installs the Debian packages as root).  A server that cannot be started makes
the test fail with the reason and the server's log tail: never a silent skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-test-services.sh"
LOOPBACK = "127.0.0.1"
# The binaries the services need; mosquitto lives in /usr/sbin, often not on a user's PATH.
REQUIRED_BINARIES = ("mosquitto", "mosquitto_passwd", "victoria-metrics", "openssl")
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


class ServiceError(RuntimeError):
    """A test service could not be started or did not answer; the message carries its log tail."""


# --------------------------------------------------------------------------- helpers

_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now and not handed out before in this process.

    The kernel picks the port (bind to 0), so it is outside the well-known range and never 1883
    or 8428.  Remembering handed-out ports stops two services of one run from racing for the
    same port between this call and the server's own bind.
    """
    with _port_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServiceError("could not find a free loopback port")


def find_binary(name: str) -> str | None:
    """Locate *name* on PATH plus the sbin directories (mosquitto is /usr/sbin/mosquitto)."""
    return shutil.which(name, path=_SEARCH_PATH)


def _require_binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise ServiceError(f"{name} not found; run scripts/install-test-services.sh as root")
    return path


def port_is_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGKILL the server if the pytest process dies (no orphans on a crash).

    Only used when the server is spawned from the main thread: PDEATHSIG fires when the
    spawning *thread* exits, which for a worker thread could be mid-test.
    """
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_live: set[_Service] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    """Last line of defence: finalizers normally stop everything, this catches the rest."""
    with _live_lock:
        services = list(_live)
    for service in services:
        with contextlib.suppress(Exception):
            service.kill()


# --------------------------------------------------------------------------- base class


class _Service:
    """A server process owned by the tests: start, stop (SIGTERM), kill (SIGKILL), restart.

    State (ports, data directory) survives stop/kill so that :meth:`restart` brings the very
    same server back, as a real deployment's service manager would.
    """

    name = "service"

    def __init__(self, base_dir: Path | str | None = None) -> None:
        if base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"meterlink-{self.name}-"))
            self._owns_dir = True
        else:
            self.base_dir = Path(base_dir)
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._owns_dir = False
        self.log_file = self.base_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._closed = False

    # ---- to be provided by subclasses
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files etc. before the first start."""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        raise NotImplementedError

    # ---- process management
    @property
    def running(self) -> bool:
        """True while the server process is alive (it may still be starting up)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self) -> None:
        if self._closed:
            raise ServiceError(f"{self.name} was closed")
        if self.running:
            raise ServiceError(f"{self.name} already running (pid {self.pid})")
        cmd = self._command()
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            log.flush()
            main_thread = threading.current_thread() is threading.main_thread()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which stops us cleanly
                preexec_fn=_child_setup if main_thread else None,
            )
        with _live_lock:
            _live.add(self)

    def _start_on(self, port: int | None) -> None:
        """Start on *port* (or a fresh free one), retrying fresh ports if another process won the race."""
        attempts = 1 if port is not None else 3
        last: ServiceError | None = None
        for _ in range(attempts):
            self.port = port if port is not None else free_port()
            self._assign_extra_ports(keep=port is not None)
            self._prepare()
            self._spawn()
            try:
                self.wait_ready()
                return
            except ServiceError as exc:
                last = exc
                self.kill()
        assert last is not None
        raise last

    def _assign_extra_ports(self, keep: bool) -> None:
        """Hook for services with more than one port (Mosquitto's TLS listener)."""

    def start(self, port: int | None = None) -> None:
        """Start the server on *port* (default: a free loopback port) and wait until it answers."""
        self._start_on(port)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop (SIGTERM, then wait); falls back to SIGKILL if it hangs."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._forget()

    def kill(self) -> None:
        """Abrupt death (SIGKILL): what a power cut or OOM kill does to the server."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        self._forget()

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def restart(self) -> None:
        """Stop if running, then start again on the same port(s) with the same data."""
        if self.port is None:
            raise ServiceError(f"{self.name} was never started")
        self.stop()
        self._start_on(self.port)

    def ensure_running(self) -> None:
        """Restart on the same port if a previous test stopped or killed the server."""
        if not self.running:
            self.restart()

    def close(self) -> None:
        """Stop for good and remove the temporary directory if this object created it."""
        self.stop()
        self._closed = True
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _wait_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServiceError(
                    f"{self.name} exited with code {self.proc.returncode if self.proc else None} "
                    f"while starting on port {port}; log tail:\n{self.log_tail()}"
                )
            if port_is_open(port):
                return
            time.sleep(0.02)
        raise ServiceError(f"{self.name} did not listen on {port} within {timeout}s; log:\n{self.log_tail()}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} pid={self.pid} dir={self.base_dir}>"


# --------------------------------------------------------------------------- Mosquitto


class Mosquitto(_Service):
    """A private Mosquitto broker on 127.0.0.1 with a generated config.

    Plain mode (default): one listener on ``.port``, anonymous clients allowed.

    Secure mode (``secure=True``): ``per_listener_settings`` with
      * the plain listener on ``.port`` requiring ``.username`` / ``.password``
        (password file made with ``mosquitto_passwd -b -c``);
      * a TLS listener on ``.tls_port`` requiring the same credentials, with a server
        certificate valid for ``127.0.0.1`` and ``localhost`` signed by a test CA
        (``.ca_file``); ``.client_cert`` / ``.client_key`` is a client certificate signed by the
        same CA.  With ``require_client_cert=True`` the TLS listener rejects clients without it.
    All key material is generated with the ``openssl`` CLI into the instance directory, so
    nothing on the machine is trusted or changed.

    ``persistent=True`` enables Mosquitto's persistence in the instance directory, so queued
    QoS 1 messages of persistent sessions survive a graceful :meth:`restart` (Mosquitto writes
    its database on SIGTERM; after :meth:`kill` it is lost, as in production).
    """

    name = "mosquitto"

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        secure: bool = False,
        require_client_cert: bool = False,
        persistent: bool = False,
        username: str = "meterlink",
        password: str = "s3cret-test-pass",
    ) -> None:
        super().__init__(base_dir)
        self.secure = secure
        self.require_client_cert = require_client_cert
        self.persistent = persistent
        self.username: str | None = username if secure else None
        self.password: str | None = password if secure else None
        self.tls_port: int | None = None
        self.config_file = self.base_dir / "mosquitto.conf"
        self.password_file = self.base_dir / "passwd"
        pki = self.base_dir / "pki"
        self.ca_file: Path | None = pki / "ca.crt" if secure else None
        self.server_cert: Path | None = pki / "server.crt" if secure else None
        self.server_key: Path | None = pki / "server.key" if secure else None
        self.client_cert: Path | None = pki / "client.crt" if secure else None
        self.client_key: Path | None = pki / "client.key" if secure else None
        self._material_ready = False

    @property
    def host(self) -> str:
        return LOOPBACK

    def _assign_extra_ports(self, keep: bool) -> None:
        if self.secure and not (keep and self.tls_port is not None):
            self.tls_port = free_port()

    def _prepare(self) -> None:
        if self.secure and not self._material_ready:
            self._make_password_file()
            self._make_pki()
            self._material_ready = True
        self.config_file.write_text(self._config())

    def _config(self) -> str:
        # Running as root, mosquitto would switch to the 'mosquitto' user and then be unable to
        # read our 0700 temp dir; naming the current user keeps it as is (ignored for non-root).
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            "# generated by tests/services.py",
            f"user {user}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.base_dir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if self.secure:
            lines += [
                "per_listener_settings true",
                "",
                f"listener {self.port} {LOOPBACK}",
                "allow_anonymous false",
                f"password_file {self.password_file}",
                "",
                f"listener {self.tls_port} {LOOPBACK}",
                "allow_anonymous false",
                f"password_file {self.password_file}",
                f"cafile {self.ca_file}",
                f"certfile {self.server_cert}",
                f"keyfile {self.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        else:
            lines += ["", f"listener {self.port} {LOOPBACK}", "allow_anonymous true"]
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        return [_require_binary("mosquitto"), "-c", str(self.config_file)]

    def _run(self, cmd: list[str]) -> None:
        res = subprocess.run(cmd, cwd=self.base_dir, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")

    def _make_password_file(self) -> None:
        assert self.username is not None and self.password is not None
        self._run(
            [_require_binary("mosquitto_passwd"), "-b", "-c", str(self.password_file), self.username, self.password]
        )

    def _make_pki(self) -> None:
        """CA, server cert (SAN 127.0.0.1 + localhost) and client cert, all EC P-256 (fast)."""
        assert self.ca_file and self.server_cert and self.server_key and self.client_cert and self.client_key
        openssl = _require_binary("openssl")
        pki = self.ca_file.parent
        pki.mkdir(parents=True, exist_ok=True)
        ca_key = pki / "ca.key"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._run(
            [openssl, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(self.ca_file),
             "-days", "3650", "-subj", "/CN=Meterlink Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        )  # fmt: skip

        def leaf(stem: str, cn: str, ext: str, cert: Path, key: Path) -> None:
            csr = pki / f"{stem}.csr"
            ext_file = pki / f"{stem}.ext"
            ext_file.write_text(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n" + ext
            )
            self._run([openssl, "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}"])
            self._run(
                [openssl, "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "3650", "-sha256", "-extfile", str(ext_file)]
            )  # fmt: skip

        leaf(
            "server", "localhost", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
            self.server_cert, self.server_key,
        )  # fmt: skip
        leaf("client", "meterlink-test-client", "extendedKeyUsage=clientAuth\n", self.client_cert, self.client_key)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every listener accepts TCP connections (Mosquitto opens them all at once)."""
        assert self.port is not None
        self._wait_port(self.port, timeout)
        if self.secure:
            assert self.tls_port is not None
            self._wait_port(self.tls_port, timeout)


# --------------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetrics(_Service):
    """A private single-node VictoriaMetrics, the stand-in for InfluxDB in tests.

    It accepts InfluxDB line protocol on ``/api/v2/write`` (and ``/write``), which is what
    ``influxdb-client`` sends; token, org and bucket are accepted and ignored.

    Series naming (observed with Debian's victoria-metrics 1.79.5): every *field* of a line
    becomes its own series named ``<measurement>_<field>``, the tags become labels, and the
    bucket/db is not a label.  So ``meter,gateway=gw-01,meter=m-0001,obis=1.0.1.8.0.255,unit=kWh
    value=1234.56 <ms>`` is exported as
    ``{"metric": {"__name__": "meter_value", "gateway": "gw-01", "meter": "m-0001",
    "obis": "1.0.1.8.0.255", "unit": "kWh"}, "values": [1234.56], "timestamps": [<ms>]}``;
    a second field ``quality=0i`` would give a separate series ``meter_quality``.  Timestamps
    are stored in milliseconds.

    Visibility (also observed): a 2xx answer to a write does NOT mean the rows are stored; this
    version parses line protocol asynchronously and makes rows searchable up to ~1 s later even
    after ``/internal/force_flush`` (and ~10 s later without it).  :meth:`export` and
    :meth:`query` therefore *settle* first: they write a sentinel point through the same
    line-protocol path, wait until it is visible (calling force_flush), delete it, and only then
    read, so everything written before the call is seen.

    Durability (observed): a graceful :meth:`stop` (SIGTERM) persists everything.  A
    :meth:`kill` (SIGKILL) loses writes acknowledged in roughly the last 10 s, even ones
    already visible after force_flush.  So a test that wants "VictoriaMetrics crashed" while
    asserting that no acknowledged reading is lost must stop() gracefully first, or accept that
    loss as the database's, not the gateway's.
    """

    name = "victoria-metrics"
    SENTINEL = "meterlink_test_sentinel"

    def __init__(self, base_dir: Path | str | None = None, *, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(base_dir)
        self.data_dir = self.base_dir / "data"
        self.extra_args = tuple(extra_args)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (pass it to ``InfluxDBClient(url=...)``)."""
        if self.port is None:
            raise ServiceError("victoria-metrics was never started")
        return f"http://{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        return [
            _require_binary("victoria-metrics"),
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",  # test data may carry any timestamp; nothing is dropped as too old
            "-search.latencyOffset=1s",  # default 1m would hide just-written points from queries
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            *self.extra_args,
        ]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until GET /health answers OK (storage is opened before the HTTP server starts)."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise ServiceError(
                    f"victoria-metrics exited with code {self.proc.returncode if self.proc else None} "
                    f"while starting on port {self.port}; log tail:\n{self.log_tail()}"
                )
            try:
                if self._http("GET", "/health", timeout=1.0).strip() == "OK":
                    return
            except (OSError, ServiceError) as exc:
                last = str(exc)
            time.sleep(0.02)
        raise ServiceError(f"victoria-metrics not healthy within {timeout}s ({last}); log:\n{self.log_tail()}")

    # ---- HTTP helpers
    def _http(
        self, method: str, path: str, params: list[tuple[str, str]] | None = None,
        body: bytes | None = None, timeout: float = 10.0,
    ) -> str:  # fmt: skip
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def flush(self) -> None:
        """``/internal/force_flush``: make rows that reached storage searchable now."""
        self._http("GET", "/internal/force_flush")

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every write accepted before this call is visible (not yet durable: see class doc)."""
        tag = uuid.uuid4().hex
        name = f"{self.SENTINEL}_seen"
        line = f"{self.SENTINEL},probe={tag} seen=1 {int(time.time() * 1000)}\n"
        self._http("POST", "/write", [("precision", "ms")], body=line.encode())
        match = [("match[]", f'{name}{{probe="{tag}"}}')]
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            if self._http("GET", "/api/v1/export", match).strip():
                break
            if time.monotonic() > deadline:
                raise ServiceError(f"victoria-metrics did not make a write visible within {timeout}s")
            time.sleep(0.02)
        self._http("POST", "/api/v1/admin/tsdb/delete_series", [("match[]", f'{{__name__=~"{self.SENTINEL}.*"}}')])

    def export(
        self, match: str = '{__name__=~".+"}', *, min_points: int = 0, timeout: float = 10.0, settle: bool = True
    ) -> list[dict[str, Any]]:
        """Everything matching *match*, as raw samples from ``/api/v1/export`` (JSON lines).

        Each item is ``{"metric": {"__name__": ..., labels...}, "values": [...], "timestamps": [ms...]}``;
        items are sorted by their labels so tests can compare with ``==``.  Raw means raw: two
        writes of the same point are two samples (no deduplication flag is set), which is how
        tests can catch duplicate deliveries.  With ``settle`` (default) all earlier writes are
        visible first; with ``min_points`` it keeps polling (up to *timeout*) until at least that
        many samples are returned, for data written concurrently by another process.
        """
        if settle:
            self.settle(timeout)
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            text = self._http("GET", "/api/v1/export", [("match[]", match)])
            series = [json.loads(line) for line in text.splitlines() if line.strip()]
            series = [s for s in series if not s["metric"].get("__name__", "").startswith(self.SENTINEL)]
            if sum(len(s["values"]) for s in series) >= min_points or time.monotonic() > deadline:
                return sorted(series, key=lambda s: json.dumps(s["metric"], sort_keys=True))
            time.sleep(0.05)

    def query(self, promql: str, at: float | None = None, *, settle: bool = True) -> dict[str, Any]:
        """Instant query via ``/api/v1/query``; returns the ``data`` object (resultType, result).

        *at* is a Unix time in seconds (default: now).  Note the instant query looks back 5 min
        from *at* and ignores the last ``-search.latencyOffset`` (1 s) before now, so pass *at*
        when asserting on points stamped with the current time.
        """
        if settle:
            self.settle()
        params = [("query", promql)]
        if at is not None:
            params.append(("time", f"{at:.3f}"))
        payload = json.loads(self._http("GET", "/api/v1/query", params))
        if payload.get("status") != "success":
            raise ServiceError(f"query {promql!r} failed: {payload}")
        return dict(payload["data"])


# --------------------------------------------------------------------------- install + fixtures

_install_lock = threading.Lock()
_install_result: str | None = None  # None: not tried; "" ok; otherwise the failure message


def ensure_binaries() -> None:
    """Install the service packages once per session if a binary is missing; fail the test if impossible."""
    global _install_result
    with _install_lock:
        missing = [b for b in REQUIRED_BINARIES if find_binary(b) is None]
        if not missing:
            return
        if _install_result is None:
            res = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
            )
            still = [b for b in REQUIRED_BINARIES if find_binary(b) is None]
            if res.returncode != 0 or still:
                _install_result = (
                    f"missing test service binaries {still or missing}; {INSTALL_SCRIPT.name} exited "
                    f"{res.returncode}: {(res.stderr or res.stdout).strip()[-2000:]}"
                )
            else:
                _install_result = ""
        if _install_result:
            pytest.fail(_install_result, pytrace=False)


def _start_or_fail(service: _Service) -> None:
    try:
        service.start()
    except (ServiceError, OSError, subprocess.SubprocessError) as exc:
        service.close()
        pytest.fail(f"could not start test {service.name}: {exc}", pytrace=False)


def _revive_or_fail(service: _Service) -> None:
    try:
        service.ensure_running()
    except (ServiceError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"could not restart test {service.name} on port {service.port}: {exc}", pytrace=False)


def _session_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, make: Callable[[Path], _Service]
) -> _Service:
    ensure_binaries()
    service = make(tmp_path_factory.mktemp(request.fixturename))
    request.addfinalizer(service.close)  # registered before start: a half-started server is cleaned too
    _start_or_fail(service)
    return service


# Session fixtures a test may leave stopped/killed; revived by _revive_session_services.
_REVIVABLE = ("mosquitto", "secure_mosquitto", "victoria_metrics")


@pytest.fixture(scope="session")
def mosquitto(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    """Session-wide anonymous broker; restarted on the same port if a test stopped/killed it."""
    service = _session_service(request, tmp_path_factory, lambda d: Mosquitto(d))
    assert isinstance(service, Mosquitto)
    return service


@pytest.fixture(scope="session")
def secure_mosquitto(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mosquitto:
    """Session-wide broker with username/password on both listeners and a TLS listener."""
    service = _session_service(request, tmp_path_factory, lambda d: Mosquitto(d, secure=True))
    assert isinstance(service, Mosquitto)
    return service


@pytest.fixture(scope="session")
def victoria_metrics(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VictoriaMetrics:
    """Session-wide VictoriaMetrics (data accumulates: filter by unique labels in tests)."""
    service = _session_service(request, tmp_path_factory, lambda d: VictoriaMetrics(d))
    assert isinstance(service, VictoriaMetrics)
    return service


@pytest.fixture(autouse=True)
def _revive_session_services(request: pytest.FixtureRequest) -> None:
    """Before each test, restart any session service it uses that an earlier test left down.

    Why autouse rather than making the fixtures function-scoped: session scope keeps one
    server per run (fast) and lets other session/module fixtures depend on it.  Session
    fixtures are set up before function ones, so the instance already exists here.
    """
    for name in _REVIVABLE:
        if name in request.fixturenames:
            service = request.getfixturevalue(name)
            _revive_or_fail(service)


S = TypeVar("S", bound=_Service)


def _factory(make_service: Callable[[Path], S], tmp_path: Path, stem: str) -> Iterator[Callable[..., S]]:
    ensure_binaries()
    made: list[S] = []

    def make(**kwargs: Any) -> S:
        service = make_service(tmp_path / f"{stem}-{len(made)}", **kwargs)  # type: ignore[call-arg]
        made.append(service)
        _start_or_fail(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``make(**Mosquitto kwargs) -> started Mosquitto``; every broker made is closed after the test."""
    yield from _factory(Mosquitto, tmp_path, "mosquitto")


@pytest.fixture
def victoria_metrics_factory(tmp_path: Path) -> Iterator[Callable[..., VictoriaMetrics]]:
    """``make(**VictoriaMetrics kwargs) -> started instance``; all are closed after the test."""
    yield from _factory(VictoriaMetrics, tmp_path, "victoria-metrics")


@pytest.fixture
def fresh_mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A broker of this test's own: kill/stop/restart it freely."""
    return mosquitto_factory()


@pytest.fixture
def fresh_victoria_metrics(victoria_metrics_factory: Callable[..., VictoriaMetrics]) -> VictoriaMetrics:
    """An empty VictoriaMetrics of this test's own: kill/stop/restart it freely."""
    return victoria_metrics_factory()


# --------------------------------------------------------------------------- InfluxDB 1.x


def _ensure_own_binary(name: str) -> str:
    """Binaries only some tests need (influxd, promtool): install on demand, fail only those tests."""
    if find_binary(name) is None:
        with _install_lock:
            if find_binary(name) is None:
                res = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900,
                                     stdin=subprocess.DEVNULL)
                if find_binary(name) is None:
                    pytest.fail(f"{name} not found; {INSTALL_SCRIPT.name} exited {res.returncode}: "
                                f"{(res.stderr or res.stdout).strip()[-2000:]}", pytrace=False)
    path = find_binary(name)
    assert path is not None
    return path


class InfluxDB1(_Service):
    """A private InfluxDB 1.x (Debian's ``influxdb`` package, 1.6.7), for the ``api: v1`` sink.

    1.6 has only the 1.x HTTP API (``/write``, ``/query``; ``/api/v2/write`` arrived in 1.8), so
    it shows the gateway really speaks the old protocol.  With ``auth=True`` the HTTP API wants a
    user: the admin user is created through ``/query`` on the first start (InfluxDB allows
    exactly that one unauthenticated statement while no user exists).  Data, WAL and meta live in
    the base directory, so :meth:`restart` brings the same database back; every write is in the
    WAL before the 204 (``wal-fsync-delay`` 0), so a graceful stop loses nothing acknowledged.
    """

    name = "influxd"

    def __init__(self, base_dir: Path | str | None = None, *, auth: bool = False, database: str = "meters",
                 admin: tuple[str, str] = ("admin", "admin-secret")) -> None:
        super().__init__(base_dir)
        self.auth = auth
        self.database = database
        self.admin = admin
        self.rpc_port: int | None = None
        self.config_file = self.base_dir / "influxdb.conf"
        self._initialised = False

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceError("influxd was never started")
        return f"http://{LOOPBACK}:{self.port}"

    def _assign_extra_ports(self, keep: bool) -> None:
        if not keep or self.rpc_port is None:
            self.rpc_port = free_port()  # the backup/restore RPC listener (default 8088) also binds

    def _prepare(self) -> None:
        b = self.base_dir
        self.config_file.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{LOOPBACK}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{b / "meta"}"\n'
            f'[data]\n  dir = "{b / "data"}"\n  wal-dir = "{b / "wal"}"\n  query-log-enabled = false\n'
            f'[http]\n  enabled = true\n  bind-address = "{LOOPBACK}:{self.port}"\n'
            f"  auth-enabled = {'true' if self.auth else 'false'}\n  log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    def _command(self) -> list[str]:
        return [_ensure_own_binary("influxd"), "-config", str(self.config_file)]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for ``/ping`` (204), then create the admin user and the database once."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ServiceError(f"influxd exited with code {self.proc.returncode if self.proc else None} "
                                   f"while starting on port {self.port}; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1.0) as resp:
                    if resp.status == 204:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"influxd did not answer /ping within {timeout}s; log:\n{self.log_tail()}")
            time.sleep(0.05)
        if not self._initialised:
            if self.auth:
                user, password = self.admin
                self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES", login=False)
            self.query(f'CREATE DATABASE "{self.database}"')
            self._initialised = True

    def query(self, q: str, *, db: str | None = None, login: bool = True) -> dict[str, Any]:
        """Run InfluxQL through ``/query`` (POST); returns the first result, raising on its error."""
        params = [("q", q), ("epoch", "ms")] + ([("db", db)] if db else [])
        req = urllib.request.Request(self.url + "/query", data=urllib.parse.urlencode(params).encode(),
                                     method="POST")
        if self.auth and login:
            pair = f"{self.admin[0]}:{self.admin[1]}".encode()
            import base64

            req.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"influxd query {q!r} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc
        result = payload["results"][0]
        if "error" in result:
            raise ServiceError(f"influxd query {q!r}: {result['error']}")
        return dict(result)

    def points(self, measurement: str = "meter", *, where: str = "") -> list[dict[str, Any]]:
        """Every stored point of ``measurement`` as ``{"time": ms, tag/field: value, ...}``, oldest first."""
        q = f'SELECT * FROM "{measurement}"' + (f" WHERE {where}" if where else "")
        out: list[dict[str, Any]] = []
        for series in self.query(q, db=self.database).get("series", []):
            cols = series["columns"]
            out.extend(dict(zip(cols, row, strict=True)) for row in series["values"])
        return out


@pytest.fixture
def influxdb1_factory(tmp_path: Path) -> Iterator[Callable[..., InfluxDB1]]:
    """``make(auth=..., database=...) -> started InfluxDB 1.x``; all are closed after the test."""
    _ensure_own_binary("influxd")
    yield from _factory(InfluxDB1, tmp_path, "influxd")


@pytest.fixture
def fresh_influxdb1(influxdb1_factory: Callable[..., InfluxDB1]) -> InfluxDB1:
    """An empty InfluxDB 1.x of this test's own, database ``meters``, no auth: stop/restart it freely."""
    return influxdb1_factory()
