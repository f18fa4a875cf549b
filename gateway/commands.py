"""Commands over MQTT (CONTRACT section 6): requests in, one answer out, whatever the request.

``parse_request`` is pure and raises only :class:`CommandError`; every bad
request (bad JSON, unknown command, unknown meter) gets an ``ok: false`` answer
with a plain error, and nothing a requester sends can stop the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import OBIS_RE
from gateway.errors import MeterlinkError

MAX_REQUEST_BYTES = 65536
COMMANDS = ("read", "status", "sync_time")


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
