"""Proof that the real-service fixtures of tests/services.py work.

Why: every MQTT/InfluxDB test of the gateway relies on these fixtures; if the broker or the
database they start were misconfigured (wrong port, auth not enforced, data not durable,
fresh writes invisible) those tests would pass or fail for the wrong reason.  These tests pin
the behaviour down against the real Mosquitto and VictoriaMetrics.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from testkit.services import INSTALL_SCRIPT, Mosquitto, VictoriaMetrics, ensure_binaries, free_port, port_is_open

# --------------------------------------------------------------------------- MQTT helpers


async def _roundtrip(
    port: int,
    *,
    hostname: str = "127.0.0.1",
    username: str | None = None,
    password: str | None = None,
    tls_params: aiomqtt.TLSParameters | None = None,
    payload: bytes = b"42",
) -> aiomqtt.Message:
    """Subscribe with one client and publish QoS 1 with another; return the message received."""
    topic = f"meterlink/test/{uuid.uuid4().hex}"
    kwargs = {"username": username, "password": password, "tls_params": tls_params, "timeout": 5}
    async with asyncio.timeout(10):
        async with aiomqtt.Client(hostname, port, identifier=f"sub-{uuid.uuid4().hex[:8]}", **kwargs) as sub:
            await sub.subscribe(topic, qos=1)
            async with aiomqtt.Client(hostname, port, identifier=f"pub-{uuid.uuid4().hex[:8]}", **kwargs) as pub:
                await pub.publish(topic, payload, qos=1)
            async for message in sub.messages:
                return message
    raise AssertionError("no message received")


def roundtrip(port: int, **kwargs: object) -> aiomqtt.Message:
    """Sync wrapper: tests stay plain functions (no pytest-asyncio in this project)."""
    return asyncio.run(_roundtrip(port, **kwargs))  # type: ignore[arg-type]


def connect_error(port: int, **kwargs: object) -> aiomqtt.MqttError:
    """Connect expecting a refusal; return the error so the test can check its reason."""

    async def attempt() -> None:
        async with aiomqtt.Client("127.0.0.1", port, **{"timeout": 5, **kwargs}):  # type: ignore[arg-type]
            pass

    with pytest.raises(aiomqtt.MqttError) as info:
        asyncio.run(attempt())
    return info.value


def tls(broker: Mosquitto, *, client_cert: bool = True, ca: Path | None = None) -> aiomqtt.TLSParameters:
    return aiomqtt.TLSParameters(
        ca_certs=str(ca or broker.ca_file),
        certfile=str(broker.client_cert) if client_cert else None,
        keyfile=str(broker.client_key) if client_cert else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


def tls_error_without_client_cert(broker: Mosquitto) -> ssl.SSLError | None:
    """TLS-connect trusting the test CA but presenting no client certificate; return the error."""
    ctx = ssl.create_default_context(cafile=str(broker.ca_file))
    assert broker.tls_port is not None
    with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                # TLS 1.3: the handshake completes client-side; the server's alert is the next record.
                conn.recv(4)
        except ssl.SSLError as exc:
            return exc
    return None


# --------------------------------------------------------------------------- Mosquitto


def test_free_port_is_free_and_not_standard() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    assert not ports & {1883, 8883, 8428, 8086}
    assert not any(port_is_open(p) for p in ports)


def test_mosquitto_qos1_roundtrip(mosquitto: Mosquitto) -> None:
    assert mosquitto.port not in (None, 1883)
    message = roundtrip(mosquitto.port, payload=b"1234.56")
    assert message.payload == b"1234.56"
    assert message.qos == 1


def test_mosquitto_kill_and_restart_same_port(fresh_mosquitto: Mosquitto) -> None:
    broker = fresh_mosquitto
    port = broker.port
    assert roundtrip(port).payload == b"42"

    broker.kill()
    assert not broker.running
    assert not port_is_open(port)
    connect_error(port)

    broker.restart()
    assert broker.port == port and broker.running
    assert roundtrip(port, payload=b"after-restart").payload == b"after-restart"

    broker.stop()
    assert not port_is_open(port)
    broker.restart()
    assert roundtrip(port, payload=b"after-stop").payload == b"after-stop"


def test_secure_mosquitto_password_and_tls(secure_mosquitto: Mosquitto) -> None:
    broker = secure_mosquitto
    assert broker.tls_port and broker.tls_port != broker.port
    creds = {"username": broker.username, "password": broker.password}

    # Right credentials: plain listener and TLS listener (hostname verified for both names).
    assert roundtrip(broker.port, **creds).payload == b"42"
    assert roundtrip(broker.tls_port, tls_params=tls(broker), **creds).payload == b"42"
    assert roundtrip(broker.tls_port, hostname="localhost", tls_params=tls(broker), **creds).payload == b"42"
    # The client certificate is optional unless require_client_cert=True.
    assert roundtrip(broker.tls_port, tls_params=tls(broker, client_cert=False), **creds).payload == b"42"

    # Wrong or missing credentials are refused on both listeners, by the broker (CONNACK code).
    assert broker.username and broker.password
    for port, tls_params in ((broker.port, None), (broker.tls_port, tls(broker))):
        for bad in ({"username": broker.username, "password": "wrong"},
                    {"username": "nobody", "password": broker.password}, {}):  # fmt: skip
            err = connect_error(port, tls_params=tls_params, **bad)
            assert isinstance(err, aiomqtt.MqttCodeError) and "Not authorized" in str(err), err
    # TLS without trusting our CA fails verification; plain MQTT on the TLS port gets no CONNACK.
    untrusted = aiomqtt.TLSParameters(cert_reqs=ssl.CERT_REQUIRED)  # system CAs only
    err = connect_error(broker.tls_port, tls_params=untrusted, **creds)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err), err
    connect_error(broker.tls_port, timeout=1, **creds)


def test_mosquitto_require_client_cert(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(secure=True, require_client_cert=True)
    creds = {"username": broker.username, "password": broker.password}
    assert roundtrip(broker.tls_port, tls_params=tls(broker), **creds).payload == b"42"
    # Without a client certificate the server aborts with a TLS alert.  paho does not surface
    # that alert (the client just times out waiting for CONNACK), so check it with plain ssl.
    connect_error(broker.tls_port, tls_params=tls(broker, client_cert=False), timeout=1, **creds)
    assert "CERTIFICATE_REQUIRED" in str(tls_error_without_client_cert(broker))


def test_mosquitto_persistent_session_survives_graceful_restart(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    """persistent=True: a QoS 1 message queued for an offline persistent session survives a restart."""
    broker = mosquitto_factory(persistent=True)
    topic, client_id = f"meterlink/test/{uuid.uuid4().hex}", f"persist-{uuid.uuid4().hex[:8]}"

    async def subscribe_and_leave() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=client_id, clean_session=False) as sub:
            await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client("127.0.0.1", broker.port) as pub:
            await pub.publish(topic, b"queued", qos=1)

    async def come_back() -> bytes:
        async with asyncio.timeout(10), aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=client_id, clean_session=False
        ) as sub:
            async for message in sub.messages:
                return bytes(message.payload)  # type: ignore[arg-type]
        raise AssertionError("no message")

    asyncio.run(subscribe_and_leave())
    broker.restart()  # SIGTERM: mosquitto writes its persistence file on the way out
    assert asyncio.run(come_back()) == b"queued"


# --------------------------------------------------------------------------- VictoriaMetrics

LINE = "meter,gateway=gw-01,meter={meter},obis=1.0.1.8.0.255,unit=kWh value={value} {ms}"


def write_lines(vm: VictoriaMetrics, lines: list[str]) -> None:
    """Write the way the gateway does: influxdb-client, synchronous API, ms precision."""
    with InfluxDBClient(url=vm.url, token="x", org="o") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="b", record=lines, write_precision=WritePrecision.MS)


def two_points(meter: str) -> tuple[list[str], list[dict[str, object]]]:
    """Two readings of one meter and exactly what /api/v1/export must return for them."""
    ms = int(time.time() * 1000) - 60_000
    lines = [LINE.format(meter=meter, value=1234.56, ms=ms), LINE.format(meter=meter, value=1234.78, ms=ms + 1000)]
    expected = [
        {
            "metric": {"__name__": "meter_value", "gateway": "gw-01", "meter": meter,
                       "obis": "1.0.1.8.0.255", "unit": "kWh"},
            "values": [1234.56, 1234.78],
            "timestamps": [ms, ms + 1000],
        }
    ]  # fmt: skip
    return lines, expected


def test_victoria_metrics_write_and_export_exactly(victoria_metrics: VictoriaMetrics) -> None:
    meter = f"m-{uuid.uuid4().hex[:8]}"  # the session instance is shared: isolate by label
    lines, expected = two_points(meter)
    write_lines(victoria_metrics, lines)
    assert victoria_metrics.export(f'meter_value{{meter="{meter}"}}') == expected

    at = expected[0]["timestamps"][-1] / 1000 + 1  # type: ignore[index]
    data = victoria_metrics.query(f'meter_value{{meter="{meter}"}}', at=at)
    assert [r["value"][1] for r in data["result"]] == ["1234.78"]


def test_victoria_metrics_series_naming(victoria_metrics: VictoriaMetrics) -> None:
    """Each field becomes <measurement>_<field>; tags become labels; the bucket is not a label."""
    meter = f"m-{uuid.uuid4().hex[:8]}"
    ms = int(time.time() * 1000) - 30_000
    write_lines(victoria_metrics, [f"meter,meter={meter} value=1.5,quality=0i {ms}"])
    got = victoria_metrics.export(f'{{meter="{meter}"}}')
    assert [(s["metric"], s["values"], s["timestamps"]) for s in got] == [
        ({"__name__": "meter_quality", "meter": meter}, [0], [ms]),
        ({"__name__": "meter_value", "meter": meter}, [1.5], [ms]),
    ]


def test_victoria_metrics_keeps_duplicate_samples(victoria_metrics: VictoriaMetrics) -> None:
    """No dedup flag: writing the same point twice stores two samples, so tests can see re-deliveries."""
    meter = f"m-{uuid.uuid4().hex[:8]}"
    lines, _ = two_points(meter)
    write_lines(victoria_metrics, lines[:1])
    write_lines(victoria_metrics, lines[:1])
    (series,) = victoria_metrics.export(f'meter_value{{meter="{meter}"}}')
    assert series["values"] == [1234.56, 1234.56]


def test_victoria_metrics_stop_restart_keeps_data(fresh_victoria_metrics: VictoriaMetrics) -> None:
    vm = fresh_victoria_metrics
    assert vm.export() == []  # a fresh instance is empty
    url = vm.url
    lines, expected = two_points("m-0001")
    write_lines(vm, lines)
    assert vm.export() == expected

    vm.stop()
    assert not vm.running and not port_is_open(vm.port)  # type: ignore[arg-type]
    vm.restart()
    assert vm.url == url
    assert vm.export() == expected

    vm.kill()  # what the graceful stop wrote to disk survives a later SIGKILL
    vm.restart()
    assert vm.export() == expected


# --------------------------------------------------------------------------- session revival

_killed: dict[str, int] = {}


def test_session_services_can_be_killed(mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics) -> None:
    """Leave both session services dead; the next test must get them back (order matters here)."""
    _killed.update(mosquitto=mosquitto.port, victoria_metrics=victoria_metrics.port)  # type: ignore[arg-type]
    mosquitto.kill()
    victoria_metrics.stop()
    assert not mosquitto.running and not victoria_metrics.running


def test_session_services_are_revived(mosquitto: Mosquitto, victoria_metrics: VictoriaMetrics) -> None:
    assert mosquitto.running and victoria_metrics.running
    if _killed:  # run after the test above: same ports as before the kill
        assert mosquitto.port == _killed["mosquitto"]
        assert victoria_metrics.port == _killed["victoria_metrics"]
    assert roundtrip(mosquitto.port).payload == b"42"  # type: ignore[arg-type]
    meter = f"m-{uuid.uuid4().hex[:8]}"
    lines, expected = two_points(meter)
    write_lines(victoria_metrics, lines)
    assert victoria_metrics.export(f'meter_value{{meter="{meter}"}}') == expected


# --------------------------------------------------------------------------- install script


def test_install_script_is_a_noop_when_installed() -> None:
    """With the packages present the script must not touch apt (fast, offline, no output)."""
    ensure_binaries()
    started = time.monotonic()
    res = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    assert time.monotonic() - started < 5
