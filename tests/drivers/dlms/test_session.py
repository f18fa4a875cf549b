"""The client association (:mod:`meterlink.drivers.dlms.session`) against the simulated meter's server, APDU by APDU.

No bytes on a wire here: a channel hands each request APDU to the simulator's
:class:`ServerAssociation` and returns its answer, so association, ciphering,
block transfer and GET-with-list are checked between two independent halves.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr
from meterlink.drivers.dlms.apdu import AttributeRef, AttributeRequest, DataAccessResult, RangeSelector
from meterlink.drivers.dlms.link import SessionLost
from meterlink.drivers.dlms.session import HLS_GMAC, LLS, AssociationRefused, ObjectError, Security, Session
from meterlink.simulators.dlms import make_meter
from meterlink.simulators.dlms_meter import LOAD_PROFILE, SimClock, SimMeter
from meterlink.simulators.dlms_server import DROP, ServerAssociation

EK, AK = bytes(range(16)), bytes(range(0xD0, 0xE0))


class MemoryChannel:
    """APDUs straight to a simulated meter's application layer."""

    def __init__(self, meter: SimMeter, client: int) -> None:
        self.app = ServerAssociation(meter, client)
        self.requests: list[bytes] = []

    async def connect(self) -> None:
        pass

    async def request(self, apdu: bytes) -> bytes:
        self.requests.append(apdu)
        answer = self.app.handle(apdu)
        if answer is None:
            raise AssertionError("no answer")
        if answer == DROP:
            raise SessionLost("dropped")
        return answer

    async def disconnect(self) -> None:
        pass


def _session(meter: SimMeter, security: Security, client: int = 1, start: int = 1000) -> tuple[Session, MemoryChannel]:
    channel = MemoryChannel(meter, client)
    counter = itertools.count(start)
    return Session(channel, security, lambda: next(counter)), channel


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def voltage() -> AttributeRequest:
    return AttributeRequest(AttributeRef(3, "1.0.32.7.0.255", 2))


@pytest.mark.parametrize("security", [Security(), Security(mechanism=LLS, password=b"12345678"),
                                      Security(mechanism=HLS_GMAC, encryption_key=EK, authentication_key=AK)],
                         ids=["none", "lls", "hls-gmac"])
def test_associate_get_release(security: Security) -> None:
    meter = make_meter(auth=security.mechanism, frozen=True)
    session, channel = _session(meter, security, client=16 if security.mechanism == "none" else 1)

    async def go() -> bytes:
        await session.associate()
        raw = await session.get(voltage())
        await session.release()
        return raw

    raw = run(go())
    assert axdr.decode_all(raw).number() == meter.raw("1.0.32.7.0.255")
    if security.ciphered:  # every APDU after the AARQ went general-glo-ciphered
        assert all(r[0] == ap.GENERAL_GLO_CIPHERING for r in channel.requests[1:-1])
        assert channel.requests[0][0] == ap.AARQ and channel.requests[-1][0] == ap.RLRQ


def test_wrong_password_and_wrong_keys() -> None:
    meter = make_meter(auth="lls", frozen=True)
    session, _ = _session(meter, Security(mechanism=LLS, password=b"nope"))
    with pytest.raises(AssociationRefused, match="authentication failure") as info:
        run(session.associate())
    assert info.value.code == 13
    meter = make_meter(auth="hls-gmac", frozen=True)
    session, _ = _session(meter, Security(mechanism=HLS_GMAC, encryption_key=AK, authentication_key=EK))
    with pytest.raises(AssociationRefused, match="no reason given"):
        run(session.associate())


def test_hls_with_the_right_encryption_key_and_a_wrong_authentication_key_fails() -> None:
    meter = make_meter(auth="hls-gmac", frozen=True)
    session, _ = _session(meter, Security(mechanism=HLS_GMAC, encryption_key=EK, authentication_key=EK))
    with pytest.raises(AssociationRefused):
        run(session.associate())


def test_replayed_invocation_counter_is_refused() -> None:
    meter = make_meter(auth="hls-gmac", frozen=True)
    sec = Security(mechanism=HLS_GMAC, encryption_key=EK, authentication_key=AK)
    first, _ = _session(meter, sec, start=500)
    run(first.associate())
    again, _ = _session(meter, sec, start=500)  # a client that lost its counter
    with pytest.raises(AssociationRefused):
        run(again.associate())


def test_block_transfer_of_a_load_profile() -> None:
    meter = make_meter(frozen=True, max_pdu=256)
    session, channel = _session(meter, Security(), client=16)
    now = meter.meter_datetime()
    from datetime import timedelta

    sel = RangeSelector.between(now - timedelta(days=2), now)

    async def go() -> bytes:
        await session.associate()
        return await session.get(AttributeRequest(AttributeRef(7, LOAD_PROFILE, 2), sel))

    buffer = axdr.decode_all(run(go()))
    assert len(buffer.items) in (192, 193)
    nexts = [r for r in channel.requests if r[:2] == bytes([ap.GET_REQUEST, 2])]
    assert len(nexts) > 20  # block transfer: many get-request-next


def test_get_with_list_results_and_fallback() -> None:
    meter = make_meter(frozen=True, missing=frozenset({"1.0.31.7.0.255"}), clock=SimClock(start=1e9, frozen=True))
    items = [voltage(), AttributeRequest(AttributeRef(3, "1.0.31.7.0.255", 2)),
             AttributeRequest(AttributeRef(8, "0.0.1.0.0.255", 2)), AttributeRequest(AttributeRef(1, "1.0.32.7.0.255", 2))]
    session, channel = _session(meter, Security(), client=16)

    async def go() -> list[bytes | DataAccessResult | int]:
        await session.associate()
        return await session.get_many(items)

    got = run(go())
    assert got[1] == DataAccessResult.OBJECT_UNDEFINED and got[3] == DataAccessResult.OBJECT_CLASS_INCONSISTENT
    assert isinstance(got[0], bytes) and isinstance(got[2], bytes)
    assert sum(r[:2] == bytes([ap.GET_REQUEST, 3]) for r in channel.requests) == 1  # one request for all four
    # a meter without GET-with-list: one GET each, same results
    plain = make_meter(frozen=True, with_list=False, missing=frozenset({"1.0.31.7.0.255"}),
                       clock=SimClock(start=1e9, frozen=True))
    session, channel = _session(plain, Security(), client=16)
    assert run(go()) == got
    assert not any(r[:2] == bytes([ap.GET_REQUEST, 3]) for r in channel.requests)


def test_with_list_within_the_pdu_size() -> None:
    meter = make_meter(frozen=True, max_pdu=64)
    items = [AttributeRequest(AttributeRef(3, p.obis, 2)) for p in meter.points if p.class_id == 3]
    session, channel = _session(meter, Security(), client=16)

    async def go() -> list[bytes | DataAccessResult | int]:
        await session.associate()
        return await session.get_many(items)

    got = run(go())
    assert all(isinstance(g, bytes) for g in got) and len(got) == len(items)
    lists = [r for r in channel.requests if r[:2] == bytes([ap.GET_REQUEST, 3])]
    assert len(lists) > 1 and all(len(r) <= 64 for r in lists)


def test_object_error_and_dropped_association() -> None:
    meter = make_meter(frozen=True, drop_after=1)
    session, _ = _session(meter, Security(), client=16)

    async def go() -> None:
        await session.associate()
        with pytest.raises(ObjectError, match="object-undefined"):
            await session.get(AttributeRequest(AttributeRef(3, "9.9.9.9.9.9", 2)))
        with pytest.raises(SessionLost):
            await session.get(voltage())

    run(go())


def test_a_request_without_association_is_refused_by_the_meter() -> None:
    meter = make_meter(frozen=True)
    session, _ = _session(meter, Security(), client=16)
    with pytest.raises(SessionLost, match="no longer has our association"):
        run(session.get(voltage()))
