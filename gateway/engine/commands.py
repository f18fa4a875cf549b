"""Commands over MQTT (CONTRACT section 6): requests in, one answer out, whatever the request.

``parse_request`` is pure and raises only :class:`CommandError`; every bad
request (bad JSON, unknown command, unknown meter) gets an ``ok: false`` answer
with a plain error, and nothing a requester sends can stop the gateway.

Nor can a flood of requests starve the meter bus: :class:`CommandGate` admits
at most :data:`RATE` commands a second (bursts of :data:`BURST`) and
:data:`MAX_WAITING` at a time; any beyond are answered at once with
``{"ok": false, "error": "busy"}``.  (On the link itself a due poll goes before
a waiting call-up read: :class:`meterlink.engine.scheduler.LinkLock`.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from meterlink.core.errors import MeterlinkError
from meterlink.core.reading import OBIS_RE

MAX_REQUEST_BYTES = 65536
COMMANDS = ("read", "status", "sync_time")
RATE = 5.0  # commands admitted per second, sustained
BURST = 20  # commands admitted at once after a quiet spell
MAX_WAITING = 16  # commands admitted and not yet answered, at most
BUSY = "busy"  # the error of a command refused by the gate: the requester may try again later


class CommandError(MeterlinkError):
    """A request that cannot be carried out; its text is what the requester reads."""

    def __init__(self, message: str, rid: str | int | None = None) -> None:
        super().__init__(message)
        self.rid = rid  # the request's id, when it could be read


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    id: str | int | None
    args: dict[str, Any]


def parse_request(command: str, payload: bytes) -> Request:
    """Validate a request; the id is recovered whenever the payload is a JSON object that has one."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError(f"request of {len(payload)} bytes is larger than {MAX_REQUEST_BYTES}")
    try:
        doc = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CommandError(f"request is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(doc, dict):
        raise CommandError("request must be a JSON object such as {\"id\": \"1\"}")
    rid = doc.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int)):
        raise CommandError("'id' must be a string or an integer")
    if command not in COMMANDS:
        raise CommandError(f"unknown command {command[:64]!r} (commands: {', '.join(COMMANDS)})", rid)
    if command in ("read", "sync_time"):
        meter = doc.get("meter")
        if not isinstance(meter, str) or not meter:
            raise CommandError(f"{command} needs 'meter': the id of a meter", rid)
        points = doc.get("points")
        if points is not None and (
                not isinstance(points, list) or not all(isinstance(p, str) and OBIS_RE.match(p) for p in points)):
            raise CommandError("'points' must be a list of OBIS codes such as \"1.0.1.8.0.255\"", rid)
    return Request(command, rid, {k: v for k, v in doc.items() if k != "id"})


def answer(rid: str | int | None, *, result_json: str | None = None, error: str | None = None) -> str:
    """The answer document; ``result_json`` is already JSON (so readings keep their exact decimals)."""
    head = f'{{"id": {json.dumps(rid)}, "ok": {"false" if error is not None else "true"}, '
    if error is not None:
        return head + f'"error": {json.dumps(error)}}}'
    return head + f'"result": {result_json}}}'


Handler = Callable[[Request], Awaitable[str]]


async def handle(command: str, payload: bytes, handlers: dict[str, Handler]) -> str:
    """Answer one request: the handler's JSON result, or an error, never an exception."""
    rid: str | int | None = None
    try:
        req = parse_request(command, payload)
        rid = req.id
        handler = handlers.get(req.command)
        if handler is None:
            raise CommandError(f"command {req.command!r} is not available on this gateway", rid)
        return answer(rid, result_json=await handler(req))
    except CommandError as exc:
        return answer(exc.rid if rid is None else rid, error=str(exc))
    except MeterlinkError as exc:
        return answer(rid, error=str(exc))


def request_id(payload: bytes) -> str | int | None:
    """The id of a request, when it has a readable one (for a "busy" answer, which still names it)."""
    try:
        return parse_request("status", payload).id
    except CommandError as exc:
        return exc.rid


class CommandGate:
    """A token bucket and a bound on commands in progress: what a burst of requests may cost the gateway.

    Pure bookkeeping (the clock is injectable), used by the MQTT sink:
    :meth:`admit` before a command is started, :meth:`done` when it is answered.
    """

    def __init__(self, *, rate: float = RATE, burst: int = BURST, max_waiting: int = MAX_WAITING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_waiting = max_waiting
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.waiting = 0
        self.admitted = 0
        self.refused = 0

    def admit(self) -> bool:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.waiting >= self.max_waiting or self.tokens < 1.0:
            self.refused += 1
            return False
        self.tokens -= 1.0
        self.waiting += 1
        self.admitted += 1
        return True

    def done(self) -> None:
        self.waiting = max(0, self.waiting - 1)
