"""The sans-io simulated DL/T 698.45 meter answered through our codec, with PyPI ``dlt698`` decoding its replies."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import dlt698.codec as ref

from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import data as D
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698.data import Data, DataType, Oad, Selector
from meterlink.simulators.dlt698 import Dlt698Bus, Dlt698Meter

NOW = datetime(2024, 5, 6, 12, 7, 30)


def _ask(bus: Dlt698Bus, address: str, request: A.Apdu, now: datetime = NOW) -> tuple[A.Apdu, list[bytes]]:
    raw = F.encode_frame(F.request(F.ServerAddress(address=address), A.encode_apdu(request), client_address=0x10))
    reply = bus.feed(raw, now)
    frames, r, buf = [], F.Reassembler(), reply
    apdu = None
    while apdu is None:
        used, frame = F.decode(buf)
        buf = buf[used:]
        if frame is None:
            break
        frames.append(F.encode_frame(frame))
        assert frame.from_server and frame.server.address == address and frame.client_address == 0x10
        apdu = r.accept(frame)
        if apdu is None:
            buf += bus.feed(F.encode_frame(F.confirm(frame)), now)
    assert apdu is not None
    return A.decode_apdu(apdu), frames


def test_energy_tariffs_sum_to_total_and_grow() -> None:
    bus = Dlt698Bus([Dlt698Meter("000000000012"), Dlt698Meter("000000000034", tariffs=2)])
    reply, frames = _ask(bus, "000000000012", A.GetRequestNormal(1, Oad(0x0010, 2)))
    for raw in frames:  # dlt698 decodes the simulator's frames and APDUs
        ref.decode_apdu(ref.decode_frame(raw).payload)
    assert isinstance(reply, A.GetResponseNormal)
    values = [d.value for d in reply.result.value().value]  # type: ignore[union-attr]
    assert len(values) == 5 and values[0] == sum(values[1:])
    later, _ = _ask(bus, "000000000012", A.GetRequestNormal(2, Oad(0x0010, 2, 1)), NOW + timedelta(hours=1))
    grown = later.result.value().value - values[0]  # type: ignore[union-attr]
    assert abs(grown - 230) <= 4  # 2.3 kW for 1 h = 2.30 kWh, each of 4 tariff registers floored to 0.01 kWh
    su, _ = _ask(bus, "000000000034", A.GetRequestNormal(3, Oad(0x0010, 3)))
    assert D.to_decimal(Data(DataType.DOUBLE_LONG_UNSIGNED, 12345), su.result.value().value)[1] == "kWh"  # type: ignore[union-attr,arg-type]


def test_unknown_object_gets_dar_6_and_voltage_is_exact() -> None:
    bus = Dlt698Bus([Dlt698Meter("000000000012")])
    reply, _ = _ask(bus, "000000000012", A.GetRequestNormalList(4, (Oad(0x2000, 2, 1), Oad(0x2222, 2))))
    assert isinstance(reply, A.GetResponseNormalList)
    volt, missing = reply.results
    assert D.to_decimal(volt.value(), D.ScalerUnit(-1, 38)) == (Decimal("230.1"), "V")
    assert missing.dar == 6


def test_daily_freezes_by_last_n_and_time_range() -> None:
    bus = Dlt698Bus([Dlt698Meter("000000000012")])
    cols = (Oad(0x2021, 2), Oad(0x0010, 2))
    last, frames = _ask(bus, "000000000012", A.GetRequestRecord(5, Oad(0x5004, 2), Selector(9, (1,)), cols))
    ref.decode_apdu(ref.decode_frame(frames[0]).payload)
    assert isinstance(last, A.GetResponseRecord)
    (row,) = last.result.records()
    assert row[0].value == datetime(2024, 5, 6)
    start, end = datetime(2024, 4, 1), datetime(2024, 4, 8)
    sel = Selector(2, (Oad(0x2021, 2), Data(28, start), Data(28, end), Data(DataType.TI, D.Ti(3, 1))))
    week, _ = _ask(bus, "000000000012", A.GetRequestRecord(6, Oad(0x5004, 2), sel, cols))
    rows = week.result.records()  # type: ignore[union-attr]
    assert [r[0].value for r in rows] == [start + timedelta(days=n) for n in range(7)]
    totals = [r[1].value[0].value for r in rows]  # type: ignore[index]
    assert all(abs(b - a - 5520) <= 4 for a, b in itertools.pairwise(totals))  # 55.20 kWh a day


def test_long_reply_is_segmented_and_confirmed() -> None:
    bus = Dlt698Bus([Dlt698Meter("000000000012")], max_frame=64)
    reply, frames = _ask(bus, "000000000012", A.GetRequestRecord(
        7, Oad(0x5002, 2), Selector(9, (1,)), (Oad(0x2021, 2), Oad(0x0010, 2), Oad(0x0020, 2), Oad(0x0000, 2))))
    assert len(frames) > 1 and all(len(f) <= 64 + 4 for f in frames)
    assert isinstance(reply, A.GetResponseRecord) and len(reply.result.records()) == 1


def test_clock_set_and_security_wrapped_read() -> None:
    meter = Dlt698Meter("000000000012", clock_offset=95.0)
    bus = Dlt698Bus([meter])
    wrapped, _ = _ask(bus, "000000000012", A.SecurityRequest(A.encode_apdu(A.GetRequestNormal(8, Oad(0x4000, 2))),
                                                            bytes(16)))
    clock = A.unwrap(wrapped)
    assert clock.result.value().value == NOW + timedelta(seconds=95)  # type: ignore[union-attr]
    done, _ = _ask(bus, "000000000012", A.clock_sync_request(9, NOW))
    assert isinstance(done, A.SetResponseNormal) and done.dar == 0
    assert meter.clock(NOW) == NOW.replace(microsecond=0)
