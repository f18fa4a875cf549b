"""Frames, Data and APDUs: errors, segmentation, exact values, hypothesis round-trips and PyPI ``dlt698`` both ways."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import dlt698
import dlt698.codec as ref
import dlt698.standard as ref_standard
import pytest
from dlt698.protocol import link as ref_link
from hypothesis import given, settings
from hypothesis import strategies as st

from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.crc import crc16_x25 as fcs16
from meterlink.drivers.dlt698 import apdu as A
from meterlink.drivers.dlt698 import data as D
from meterlink.drivers.dlt698 import frame as F
from meterlink.drivers.dlt698 import oads
from meterlink.drivers.dlt698.data import Data, DataType, Oad

METER = F.ServerAddress(address="000000000012")


def test_crc_is_x25() -> None:
    assert fcs16(b"123456789") == (0x906E).to_bytes(2, "little")  # CRC-16/X.25 check value
    assert int.from_bytes(fcs16(b"123456789"), "little") == ref.crc16(b"123456789")


def test_nameplate_address_goes_low_byte_first() -> None:
    frame = F.request(F.ServerAddress(address="123456789012"), b"\x05\x01\x00\x40\x01\x02\x00\x00")
    raw = F.encode_frame(frame, wakeup=0)
    assert raw[4:11] == bytes.fromhex("05 12 90 78 56 34 12")
    with pytest.raises(FrameError, match="BCD digits"):
        F.ServerAddress(address="12345678901G")


def test_bad_hcs_and_fcs_are_named() -> None:
    raw = bytearray(F.encode_frame(F.request(METER, bytes.fromhex("0501004001020000")), wakeup=0))
    bad_fcs = bytes(raw[:-3]) + bytes((raw[-3] ^ 1, raw[-2], raw[-1]))
    with pytest.raises(F.BadFrame, match="FCS"):
        F.decode(bad_fcs)
    bad_hcs = bytearray(raw)
    bad_hcs[12] ^= 0xFF
    with pytest.raises(F.BadFrame, match="HCS"):
        F.decode(bytes(bad_hcs))
    # a bad frame followed by a good one: drop what BadFrame says, the good one follows
    buf = bytes(bad_hcs) + bytes(raw)
    with pytest.raises(F.BadFrame) as info:
        F.decode(buf)
    _used, frame = F.decode(buf[info.value.consumed :])
    assert frame is not None and frame.user_data == bytes.fromhex("0501004001020000")


def test_segmentation_round_trip_and_dlt698_agrees_on_headers() -> None:
    apdu = bytes(range(256)) * 3
    template = F.response(METER, b"", client_address=0x10)
    frames = F.split(template, apdu, 100)
    assert [f.segment.type for f in frames] == (  # type: ignore[union-attr]
        [F.SegmentType.FIRST] + [F.SegmentType.MIDDLE] * (len(frames) - 2) + [F.SegmentType.LAST])
    r = F.Reassembler()
    out = None
    for frame in frames:
        _, decoded = F.decode(F.encode_frame(frame))
        assert decoded is not None
        theirs = ref.decode_frame(F.encode_frame(frame))
        fragment = ref_link.decode_fragment(theirs.payload)
        assert fragment.sequence == decoded.segment.sequence  # type: ignore[union-attr]
        assert int(fragment.type) == int(decoded.segment.type)  # type: ignore[union-attr]
        out = r.accept(decoded)
        confirm = F.confirm(decoded)
        assert not confirm.from_server and confirm.segment.type == F.SegmentType.CONFIRM  # type: ignore[union-attr]
    assert out == apdu


def test_reassembler_refuses_out_of_sequence() -> None:
    frames = F.split(F.response(METER, b""), bytes(50), 10)
    r = F.Reassembler()
    r.accept(frames[0])
    with pytest.raises(FrameError, match="out of sequence"):
        r.accept(frames[2])
    with pytest.raises(FrameError, match="without a first"):
        r.accept(frames[3])


addresses = st.lists(st.sampled_from("0123456789"), min_size=2, max_size=32).filter(
    lambda d: len(d) % 2 == 0).map("".join)


@settings(max_examples=150, deadline=None)
@given(addresses, st.integers(0, 255), st.sampled_from([0x43, 0xC3, 0x41, 0x83]), st.binary(max_size=300),
       st.integers(0, 3))
def test_frame_round_trip(address: str, ca: int, control: int, user_data: bytes, logical: int) -> None:
    frame = F.Frame(server=F.ServerAddress(address=address, logical=logical), client_address=ca, control=control,
                    user_data=user_data)
    raw = F.encode_frame(frame)
    assert F.decode(raw) == (len(raw), frame)
    theirs = ref.decode_frame(raw[raw.index(0x68):])  # dlt698 decodes our encoding
    assert theirs.payload == user_data and theirs.client == ca
    assert ref.encode_frame(theirs) == raw[raw.index(0x68):]  # and re-encodes it byte for byte


def _data() -> st.SearchStrategy[Data]:
    dts = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0))
    oad = st.builds(Oad, st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255))
    leaves = st.one_of(
        st.just(Data(DataType.NULL)),
        st.booleans().map(lambda b: Data(DataType.BOOL, b)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: Data(DataType.DOUBLE_LONG, v)),
        st.integers(0, 2**32 - 1).map(lambda v: Data(DataType.DOUBLE_LONG_UNSIGNED, v)),
        st.integers(-128, 127).map(lambda v: Data(DataType.INTEGER, v)),
        st.integers(-(2**15), 2**15 - 1).map(lambda v: Data(DataType.LONG, v)),
        st.integers(0, 255).map(lambda v: Data(DataType.UNSIGNED, v)),
        st.integers(0, 65535).map(lambda v: Data(DataType.LONG_UNSIGNED, v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: Data(DataType.LONG64, v)),
        st.integers(0, 2**64 - 1).map(lambda v: Data(DataType.LONG64_UNSIGNED, v)),
        st.integers(0, 255).map(lambda v: Data(DataType.ENUM, v)),
        st.binary(max_size=300).map(lambda v: Data(DataType.OCTET_STRING, v)),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(
            lambda v: Data(DataType.VISIBLE_STRING, v)),
        st.text(max_size=20).map(lambda v: Data(DataType.UTF8_STRING, v)),
        dts.map(lambda v: Data(DataType.DATE_TIME_S, v)),
        oad.map(lambda v: Data(DataType.OAD, v)),
        st.builds(D.ScalerUnit, st.integers(-128, 127), st.integers(0, 255)).map(
            lambda v: Data(DataType.SCALER_UNIT, v)),
        st.builds(D.Ti, st.integers(0, 5), st.integers(0, 65535)).map(lambda v: Data(DataType.TI, v)),
        st.integers(0, 0xFFFF).map(lambda v: Data(DataType.OI, v)),
        st.builds(D.Omd, st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255)).map(
            lambda v: Data(DataType.OMD, v)),
    )
    return st.recursive(leaves, lambda kids: st.one_of(
        st.lists(kids, max_size=5).map(lambda v: Data(DataType.ARRAY, tuple(v))),
        st.lists(kids, max_size=5).map(lambda v: Data(DataType.STRUCTURE, tuple(v)))), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_data())
def test_data_round_trip_and_dlt698_agrees(data: Data) -> None:
    raw = D.encode_data(data)
    assert D.decode_data_all(raw) == data
    assert ref.encode_data(ref.decode_data(raw)) == raw  # dlt698 reads our bytes and writes the same ones


@pytest.mark.parametrize("build", [
    lambda: dlt698.Data.scaler_unit(dlt698._native.ScalerUnit(scaler=-2, unit=33)),
    lambda: dlt698.Data.bit_string(12, b"\xab\xc0"),
    lambda: dlt698.Data.date_time([7, 0xE8, 1, 2, 2, 3, 4, 5, 2, 0x58]),
    lambda: dlt698.Data.date([7, 0xE8, 1, 2, 2]),
    lambda: dlt698.Data.time([23, 59, 58]),
    lambda: dlt698.Data.tsa(bytes.fromhex("05010000000000")),
    lambda: dlt698.Data.octet_string(bytes(200)),
    lambda: dlt698.Data.float32(1.5),
    lambda: dlt698.Data.float64(-2.25),
    lambda: dlt698.Data.ms(dlt698._native.AllMeters()),
    lambda: dlt698.Data.rn(bytes(16)),
    lambda: dlt698.Data.mac(b"\x01\x02\x03\x04"),
])
def test_dlt698_encodings_decode_and_reencode(build: object) -> None:
    raw = ref.encode_data(build())  # type: ignore[operator]
    assert D.encode_data(D.decode_data_all(raw)) == raw


def test_scaler_unit_gives_exact_decimals_and_698_units() -> None:
    value = Data(DataType.DOUBLE_LONG_UNSIGNED, 1234567)
    assert D.to_decimal(value, D.ScalerUnit(-2, 33)) == (Decimal("12345.67"), "kWh")
    assert D.to_decimal(Data(DataType.LONG_UNSIGNED, 2301), D.ScalerUnit(-1, 38)) == (Decimal("230.1"), "V")
    with pytest.raises(FrameError, match="not a number"):
        D.to_decimal(Data(DataType.NULL))
    for code, ours in D.UNIT_CODES.items():
        if ours != 255:
            assert ref_standard.unit_symbol(ours) == code, f"698 unit {ours}"


def test_dar_becomes_meter_rejected_with_text() -> None:
    raw = bytes.fromhex("85 01 03 22 22 02 00 00 06 00 00")
    response = A.decode_apdu(raw)
    assert isinstance(response, A.GetResponseNormal)
    with pytest.raises(MeterRejected, match=r"m-0001 rejected reading 22220200: object does not exist \(DAR 6\)"):
        response.result.value("m-0001")


def test_security_response_is_unwrapped_without_mac_check() -> None:
    inner = A.encode_apdu(A.GetResponseNormal(1, A.ResultNormal(Oad(0x4001, 2), data=Data(9, b"\x12"))))
    wrapped = A.decode_apdu(A.encode_apdu(A.SecurityResponse(inner, mac=b"\x00\x00\x00\x00")))
    assert A.unwrap(wrapped) == A.decode_apdu(inner)


def test_clock_sync_matches_dlt698() -> None:
    ours = A.encode_apdu(A.clock_sync_request(6, datetime(2024, 3, 4, 5, 6, 7)))
    theirs = ref.encode_apdu(dlt698._native.SetRequest(piid=6, attributes=[dlt698._native.SetAttribute(
        attribute=dlt698.Oad(oi=0x4000, attribute=2, index=0), value=dlt698.Data.date_time_s([7, 0xE8, 3, 4, 5, 6, 7]))]))
    assert ours == theirs


def test_oad_key_parser() -> None:
    assert oads.parse_oad("00100201") == Oad(0x0010, 2, 1)
    for bad in ("0010020", "0010020G", 100201, "00100001"):
        with pytest.raises(FrameError, match="oad"):
            oads.parse_oad(bad)


def test_oad_table_uses_the_dlt645_obis_of_the_same_quantity() -> None:
    from meterlink.drivers.dlt645 import dis

    checked = 0
    for row in oads.OADS.values():
        if row.obis is None or row.di645 is None or row.di645 not in dis.DATA_ITEMS:
            continue
        assert dis.DATA_ITEMS[row.di645].obis == row.obis, row
        checked += 1
    assert checked >= 25
