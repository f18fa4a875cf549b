"""The MQTT command parser: any request gets an answer, nothing else escapes."""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterlink.engine.commands import BUSY, CommandError, CommandGate, Request, answer, handle, parse_request, request_id


async def _status(req: Request) -> str:
    return json.dumps({"seen": req.args})


HANDLERS = {"status": _status, "read": _status}


def test_answers_name_the_request_id() -> None:
    text = asyncio.run(handle("reboot", b'{"id": 42}', HANDLERS))
    assert json.loads(text) == {"id": 42, "ok": False,
                                "error": "unknown command 'reboot' (commands: read, status, sync_time)"}
    text = asyncio.run(handle("status", b'{"id": "a"}', HANDLERS))
    assert json.loads(text) == {"id": "a", "ok": True, "result": {"seen": {}}}


def test_bad_requests() -> None:
    for payload, needle in [(b"[1, 2]", "JSON object"), (b"\xff\xfe", "not valid JSON"), (b'{"id": true}', "'id'"),
                            (b"x" * 70000, "larger than")]:
        try:
            parse_request("status", payload)
        except CommandError as exc:
            assert needle in str(exc)
        else:
            raise AssertionError(payload)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])  # a loaded CI box is slow to generate
@given(st.text(max_size=40), st.binary(max_size=400))
def test_random_requests_always_get_one_json_answer(command: str, payload: bytes) -> None:
    doc = json.loads(asyncio.run(handle(command, payload, HANDLERS)))
    assert set(doc) in ({"id", "ok", "result"}, {"id", "ok", "error"})


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=12)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])  # a loaded CI box is slow to generate
@given(st.sampled_from(["read", "status", "sync_time"]),
       st.dictionaries(st.sampled_from(["id", "meter", "points", "x"]), json_values, max_size=4))
def test_structured_requests_never_raise(command: str, body: dict[str, object]) -> None:
    doc = json.loads(asyncio.run(handle(command, json.dumps(body).encode(), HANDLERS)))
    assert doc["ok"] in (True, False)


def test_gate_admits_a_burst_then_the_rate_and_bounds_commands_in_progress() -> None:
    now = [100.0]
    gate = CommandGate(rate=5.0, burst=20, max_waiting=1000, clock=lambda: now[0])
    assert [gate.admit() for _ in range(25)] == [True] * 20 + [False] * 5  # a burst of 20, the rest busy
    now[0] += 1.0  # one second later: 5 more
    assert [gate.admit() for _ in range(7)] == [True] * 5 + [False] * 2
    assert (gate.admitted, gate.refused) == (25, 7)
    small = CommandGate(rate=1000.0, burst=1000, max_waiting=3, clock=lambda: now[0])
    assert [small.admit() for _ in range(5)] == [True, True, True, False, False]  # 3 in progress at most
    small.done()
    assert small.admit() is True and small.admit() is False


def test_busy_answer_keeps_the_request_id() -> None:
    assert request_id(b'{"id": "r7", "meter": "m1"}') == "r7"
    assert request_id(b'{"id": 3}') == 3
    assert request_id(b"{not json") is None
    assert json.loads(answer(request_id(b'{"id": "r7"}'), error=BUSY)) == {"id": "r7", "ok": False, "error": "busy"}
