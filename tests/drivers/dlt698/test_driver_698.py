"""The driver's pure parts: reply matching (a late reply is never taken), APDU budgeting, values, point checks."""

from __future__ import annotations

import datetime as dt

import pytest

from meterlink.core.errors import FrameError
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698.data import Data, DataType, Oad, structure
from meterlink.drivers.dlt698.driver import MAX_APDU, _chunks, answers, number
from meterlink.drivers.dlt698.points import PointProblem, check_point, default_obis

V1, V2 = Oad(0x2000, 2, 1), Oad(0x2000, 2, 2)


def _result(oad: Oad) -> A.ResultNormal:
    return A.ResultNormal(oad, data=Data(DataType.LONG_UNSIGNED, 2301))


def test_a_reply_answers_only_its_own_request() -> None:
    req = A.GetRequestNormalList(7, (V1, V2))
    assert answers(req, A.GetResponseNormalList(7, (_result(V1), _result(V2))))
    assert answers(req, A.GetResponseNormalList(7 | 0x40, (_result(V1), _result(V2))))  # ACD bit set
    assert not answers(req, A.GetResponseNormalList(6, (_result(V1), _result(V2))))  # an earlier request's
    assert not answers(req, A.GetResponseNormalList(7, (_result(V2), _result(V1))))  # other OADs
    assert not answers(req, A.GetResponseNormal(7, _result(V1)))  # another service
    assert answers(req, A.ErrorResponse(7, 2)) and not answers(req, A.ErrorResponse(5, 2))
    single = A.GetRequestNormal(9, V1)
    assert answers(single, A.GetResponseNormal(9, _result(V1)))
    assert not answers(single, A.GetResponseNormal(9, _result(V2)))
    wrapped = A.SecurityResponse(A.encode_apdu(A.GetResponseNormal(8, _result(V1))), mac=b"\0" * 4)
    assert not answers(single, wrapped)


def test_lists_fit_the_apdu_budget() -> None:
    oads = [Oad(0x0010, 2, i % 5 + 1) for i in range(100)]
    chunks = _chunks(oads, MAX_APDU)
    assert sum(map(len, chunks)) == 100 and [len(c) for c in chunks] == [36, 36, 28]
    assert all(8 + 14 * len(c) <= MAX_APDU for c in chunks)


def test_numbers_and_what_is_not_one() -> None:
    assert number(Data(DataType.DOUBLE_LONG, -5)) == (-5, None)
    when = dt.datetime(2024, 5, 6, 0, 15)
    assert number(structure(Data(DataType.DOUBLE_LONG_UNSIGNED, 23000), Data(DataType.DATE_TIME_S, when))) == \
        (23000, when)
    for bad in (Data(DataType.NULL), Data(DataType.ENUM, 1), Data(DataType.VISIBLE_STRING, "x")):
        with pytest.raises(FrameError, match="not a number"):
            number(bad)


def test_point_checks() -> None:
    assert check_point("00100201", None) == ("00100201", "kWh")
    assert check_point("20040201", "kW") == ("20040201", "kW")
    assert check_point("40000200", None) == ("40000200", "s")
    assert default_obis("00100203") == "1.0.1.8.2.255"
    with pytest.raises(PointProblem, match="is in kWh") as exc:
        check_point("00100201", "V")
    assert exc.value.key == "unit"
    with pytest.raises(PointProblem, match=r"name one element, e\.g\. 00100201"):
        check_point("00100200", None)
