"""MQTT sink on aiomqtt 2.x: data messages from the journal, retained status, commands (CONTRACT 6).

Data messages go out in journal order (so in ``seq`` order per meter), QoS 1,
many in flight at once; the cursor moves past a chunk only when every publish
in it returned, i.e. the broker sent PUBACK.  After a broker outage the client
reconnects with capped, jittered exponential backoff and starts again from the
cursor: messages may arrive twice, never go missing.

A failed connection is logged with its real cause: a refused login says "not
authorized" (CONNACK 135, MQTT 3.1.1 return code 5), a missing certificate
file names its key ("file not found: sinks.mqtt.tls.ca_file"); only a broker
that does not answer is "unreachable".  Commands pass a :class:`CommandGate`
first: a flood of requests is answered "busy" instead of queueing on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt

from meterlink import __version__
from meterlink.core import logs
from meterlink.core.backoff import Backoff
from meterlink.core.config import Meter
from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import format_ts
from meterlink.core.secrets import read_secret
from meterlink.engine.commands import BUSY, CommandGate, Handler, answer, handle, request_id
from meterlink.engine.journal import Journal
from meterlink.engine.sinks import SinkCounters

if TYPE_CHECKING:
    from meterlink.core.config import MqttConfig  # the sink gets its section as Settings of this model

# aiomqtt warns once per publish when many are in flight; that is our design, not a problem
_AIOMQTT_LOG = logging.getLogger("meterlink.aiomqtt")
_AIOMQTT_LOG.setLevel(logging.ERROR)

CHUNK = 500  # publishes in flight before the cursor moves
PUBLISH_TIMEOUT = 15.0
BACKOFF_MAX = 60.0
BUSY_LOG_EVERY = 60.0  # seconds between "commands refused: busy" log lines


_MQTT_ERR_SUCCESS = 0  # paho-mqtt's MQTT_ERR_SUCCESS


class _Acks:
    """The PUBACKs still due for one chunk; aiomqtt's on_publish calls :meth:`set` once per acknowledged id."""

    __slots__ = ("done", "left")

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = asyncio.Event()
        if n <= 0:
            self.done.set()

    def set(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


async def publish_acked(client: aiomqtt.Client, messages: Sequence[tuple[str, str | bytes]], timeout: float) -> None:
    """Publish ``messages`` at QoS 1, in order, and return once the broker acknowledged every one.

    Why not ``asyncio.gather(client.publish(...) ...)``: aiomqtt waits for each
    PUBACK with its own Event, ``wait_for`` task and timer, and gather wraps
    each publish in a task, which was a tenth of the gateway's CPU at 30
    messages a second (issue 14).  Here paho takes the messages directly and one
    countdown waits for all their PUBACKs, registered where aiomqtt's own
    on_publish callback looks (``Client._pending_publishes``, aiomqtt 2.x; the
    dependency is pinned below 3).  Should a release move those internals, the
    public path is taken instead: slower, equally correct.
    """
    paho = getattr(client, "_client", None)
    pending = getattr(client, "_pending_publishes", None)
    if paho is None or not isinstance(pending, dict):
        await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in messages))
        return
    acks = _Acks(len(messages))
    mids: list[int] = []
    try:
        for topic, payload in messages:
            info = paho.publish(topic, payload, 1)
            if info.rc != _MQTT_ERR_SUCCESS:
                raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
            if info.is_published():
                acks.set()
            else:
                pending[info.mid] = acks
                mids.append(info.mid)
        try:
            async with asyncio.timeout(timeout):
                await acks.done.wait()
        except TimeoutError:
            raise aiomqtt.MqttError(f"no PUBACK for {acks.left} of {len(messages)} messages "
                                    f"within {timeout:g} s") from None
    finally:
        for mid in mids:
            pending.pop(mid, None)


class MqttSetupError(MeterlinkError):
    """A local cause of a failed connection (a certificate file missing or unreadable): no broker was asked."""


class MqttSink:
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, journal: Journal, gateway: str, *, base: Path | None = None,
                 handlers: dict[str, Handler] | None = None,
                 meter_statuses: Callable[[], dict[str, dict[str, object]]] | None = None,
                 meters: Sequence[Meter] = ()) -> None:
        self.cfg = cfg
        self.journal = journal
        self.gateway = gateway
        self.prefix = f"{cfg.prefix}/{gateway}"
        self.handlers = handlers or {}
        self.meter_statuses = meter_statuses or dict
        self.meters = list(meters)
        self.counters = SinkCounters()
        self._password = read_secret("sinks.mqtt.password_file", value=cfg.password, file=cfg.password_file,
                                     env=cfg.password_env, base=base)
        self._wake = journal.subscribe()
        self._status_queue: asyncio.Queue[tuple[str, dict[str, object]]] = asyncio.Queue()
        self._client: aiomqtt.Client | None = None
        self.gate = CommandGate()
        self._busy_logged = -BUSY_LOG_EVERY

    # --- called by the gateway ---------------------------------------------------

    def meter_status_changed(self, meter: str, status: dict[str, object]) -> None:
        self._status_queue.put_nowait((meter, status))

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.cfg.tls
        if tls is None:
            return None
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path and not Path(path).is_file():
                raise MqttSetupError(f"file not found: sinks.mqtt.tls.{key} ({path})")
        try:
            ctx = ssl.create_default_context(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise MqttSetupError(f"cannot load sinks.mqtt.tls.ca_file ({tls.ca_file}): "
                                 f"{getattr(exc, 'strerror', None) or exc}") from exc
        if tls.cert_file and tls.key_file:
            try:
                ctx.load_cert_chain(tls.cert_file, tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise MqttSetupError(f"cannot load sinks.mqtt.tls.cert_file/key_file ({tls.cert_file}, "
                                     f"{tls.key_file}): {getattr(exc, 'strerror', None) or exc}") from exc
        if tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _gateway_status(self, online: bool) -> str:
        if not online:
            return '{"online": false}'
        return json.dumps({"online": True, "ts": format_ts(datetime.now(UTC)), "version": __version__})

    async def run(self) -> None:
        backoff = Backoff(first=1.0, cap=BACKOFF_MAX, jitter=0.5)
        while True:
            try:
                await self._session()
            except* (aiomqtt.MqttError, OSError, ssl.SSLError, MqttSetupError) as group:
                self.counters.failures += 1
                self.counters.last_error = _reason(group.exceptions[0])
            except* Exception as group:  # a bug must not end delivery for good: log it and reconnect
                self.counters.failures += 1
                self.counters.last_error = repr(group.exceptions[0])
                logs.error("mqtt sink error", error=self.counters.last_error)
            was = self.counters.connected
            self.counters.connected = False
            if was:
                backoff.reset()  # a connection that worked: the next try comes soon
            wait = backoff.next()
            logs.warning("mqtt connection lost" if was else _headline(self.counters.last_error or ""),
                         host=self.cfg.host, port=self.cfg.port, error=self.counters.last_error,
                         retry_in_s=f"{wait:.1f}")
            await asyncio.sleep(wait)

    async def _session(self) -> None:
        status_topic = f"{self.prefix}/status"
        will = aiomqtt.Will(status_topic, self._gateway_status(False), qos=1, retain=True)
        client = aiomqtt.Client(
            self.cfg.host, self.cfg.port, username=self.cfg.username, password=self._password,
            identifier=self.cfg.client_id or f"meterlink-{self.gateway}", will=will, keepalive=self.cfg.keepalive,
            tls_context=self._tls_context(), tls_insecure=bool(self.cfg.tls and self.cfg.tls.insecure) or None,
            max_inflight_messages=CHUNK, timeout=PUBLISH_TIMEOUT, clean_session=True, logger=_AIOMQTT_LOG)
        async with client:
            self._client = client
            self.counters.connected = True
            logs.info("mqtt connected", host=self.cfg.host, port=self.cfg.port, tls=self.cfg.tls is not None)
            await client.publish(status_topic, self._gateway_status(True), qos=1, retain=True)
            for meter, status in self.meter_statuses().items():
                await client.publish(f"{self.prefix}/{meter}/status", json.dumps(status), qos=1, retain=True)
            if self.cfg.homeassistant:
                from meterlink.engine.discovery import discovery_messages

                for m in self.meters:
                    for topic, payload in discovery_messages(self.cfg.prefix, self.gateway, m):
                        await client.publish(topic, payload, qos=1, retain=True)
            if self.cfg.commands and self.handlers:
                await client.subscribe(f"{self.prefix}/cmd/+", qos=1)
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._deliver(client), name="meterlink.mqtt.deliver")
                    tg.create_task(self._statuses(client), name="meterlink.mqtt.status")
                    tg.create_task(self._commands(client, tg), name="meterlink.mqtt.commands")
            finally:
                self._client = None

    async def _deliver(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cursor = self.journal.cursor(self.name)
            rows = self.journal.recent(cursor, CHUNK)
            if rows is None:  # a backlog on disk
                rows = await loop.run_in_executor(None, self.journal.messages, cursor, CHUNK)
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                continue
            # each message goes to paho synchronously, so they leave in this order
            await publish_acked(client, [(f"{self.prefix}/{b.meter}/data", b.payload) for b in rows],
                                PUBLISH_TIMEOUT)
            self.journal.set_cursor(self.name, rows[-1].id)
            self.counters.delivered_messages += len(rows)
            self.counters.delivered_readings += sum(b.n for b in rows)

    async def _statuses(self, client: aiomqtt.Client) -> None:
        while True:
            meter, status = await self._status_queue.get()
            await client.publish(f"{self.prefix}/{meter}/status", json.dumps(status), qos=1, retain=True)

    async def _commands(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        base = f"{self.prefix}/cmd/"
        async for message in client.messages:
            topic = str(message.topic)
            if not topic.startswith(base) or topic.endswith("/result"):
                continue
            command = topic[len(base):]
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if not self.gate.admit():
                tg.create_task(self._busy(client, command, payload))
                continue
            tg.create_task(self._answer(client, command, payload))

    async def _busy(self, client: aiomqtt.Client, command: str, payload: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._busy_logged >= BUSY_LOG_EVERY:
            self._busy_logged = now
            logs.warning("commands refused: busy", command=command[:64], refused_total=self.gate.refused,
                         in_progress=self.gate.waiting, max_in_progress=self.gate.max_waiting,
                         per_second=f"{self.gate.rate:g}")
        await client.publish(f"{self.prefix}/cmd/{command}/result", answer(request_id(payload), error=BUSY), qos=1)

    async def _answer(self, client: aiomqtt.Client, command: str, payload: bytes) -> None:
        try:
            text = await handle(command, payload, self.handlers)
        finally:
            self.gate.done()
        logs.info("command", command=command[:64], ok='"ok": true' in text[:80])
        await client.publish(f"{self.prefix}/cmd/{command}/result", text, qos=1)

    async def stop(self) -> None:
        """On a clean stop, say so ourselves (the will only fires on an unclean disconnect)."""
        if self._client is not None:
            try:
                await self._client.publish(f"{self.prefix}/status", self._gateway_status(False), qos=1,
                                           retain=True, timeout=2)
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                logs.warning("mqtt: could not publish the offline status on stop", error=_reason(exc))


# CONNACK codes that mean "your credentials": MQTT 5 reason codes (3.1.1 return codes 4 and 5 map onto them)
_LOGIN_REFUSED = {134: "bad user name or password", 135: "not authorized", 4: "bad user name or password",
                  5: "not authorized"}


def _reason(exc: BaseException) -> str:
    """The cause of a failed session in a person's words, naming what to fix where it is known."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc is not None:
        code = int(getattr(exc.rc, "value", exc.rc))
        if code in _LOGIN_REFUSED:
            return (f"{_LOGIN_REFUSED[code]}: the broker refused the login (CONNACK {code}); "
                    f"check sinks.mqtt.username and the password")
    return str(exc) or type(exc).__name__


def _headline(reason: str) -> str:
    """The log line's message: unreachable only when the broker did not answer."""
    if reason.startswith(("not authorized", "bad user name or password")):
        return "mqtt broker refused the login"
    if reason.startswith(("file not found:", "cannot load sinks.mqtt")):
        return "mqtt cannot connect: local configuration problem"
    return "mqtt broker unreachable"
