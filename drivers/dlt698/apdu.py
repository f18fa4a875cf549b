"""DL/T 698.45 application layer: the GET, SET, ACTION and SECURITY services a reading gateway needs. No I/O.

Client-APDU ∷= CHOICE {.. GET-Request [5], SET-Request [6], ACTION-Request [7] ..,
时间标签 TimeTag OPTIONAL}; Server-APDU ∷= CHOICE {.. GET-Response [133] ..,
跟随上报信息域 FollowReport OPTIONAL, 时间标签 TimeTag OPTIONAL} (clause 8).
OPTIONAL fields are one byte 00H (absent) or 01H followed by the value.

GET-Request ∷= CHOICE {GetRequestNormal [1] (PIID, OAD), GetRequestNormalList [2]
(PIID, SEQUENCE OF OAD), GetRequestRecord [3] (PIID, GetRecord ∷= OAD RSD RCSD),
GetRequestNext [5] (PIID, 最近一次接收的分帧序号 long-unsigned)}; GET-Response
mirrors them with PIID-ACD and Get-Result ∷= CHOICE {错误信息 [0] DAR, 数据 [1] Data}.
A-ResultRecord ∷= OAD, RCSD, CHOICE {错误信息 [0] DAR, M 条记录 [1] SEQUENCE OF
A-RecordRow}, each row one Data per RCSD column (no length of its own).

Security (clause 8.2 "安全传输"): SECURITY-Request [16] ∷= 应用数据单元 CHOICE
{明文 [0] octet-string, 密文 [1] octet-string}, 数据验证信息 CHOICE {SID_MAC [0],
RN [1], RN_MAC [2], SID [3]}; SECURITY-Response [144] ∷= CHOICE {明文 [0], 密文 [1],
异常错误 [2] DAR}, 数据验证信息 OPTIONAL CHOICE {MAC [0]}.  Meterlink sends "明文 +
RN" and unwraps "明文 + MAC" replies; verifying the MAC needs the meter's key
in an ESAM and is out of scope, so the MAC is returned but never checked.
CONNECT is not needed for plain reads of most meters and is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias

from meterlink.core.errors import FrameError, MeterRejected
from meterlink.drivers.dlt698.data import (
    Data,
    Oad,
    Omd,
    Road,
    Selector,
    Ti,
    _decode_ti,
    _encode_ti,
    _Reader,
    decode_date_time_s,
    decode_oad,
    decode_rcsd,
    decode_rsd,
    encode_data,
    encode_date_time_s,
    encode_length,
    encode_oad,
    encode_rcsd,
    encode_rsd,
)
from meterlink.drivers.dlt698.data import _decode as _decode_data

GET_REQUEST: Final = 0x05
SET_REQUEST: Final = 0x06
ACTION_REQUEST: Final = 0x07
SECURITY_REQUEST: Final = 0x10
GET_RESPONSE: Final = 0x85
SET_RESPONSE: Final = 0x86
ACTION_RESPONSE: Final = 0x87
SECURITY_RESPONSE: Final = 0x90
ERROR_RESPONSE: Final = 0xEE

DAR_TEXT: Final[dict[int, str]] = {
    # 数据访问结果 DAR ∷= ENUMERATED (clause 6.3.3.2); names as in icprog/dlt698.45 include/StdDataType.h
    0: "success",  # 成功
    1: "hardware failure",  # 硬件失效
    2: "temporary failure",  # 暂时失效
    3: "read-write denied",  # 拒绝读写
    4: "object undefined",  # 对象未定义
    5: "object class inconsistent",  # 对象接口类不符合
    6: "object does not exist",  # 对象不存在
    7: "type mismatch",  # 类型不匹配
    8: "out of range",  # 越界
    9: "data block unavailable",  # 数据块不可用
    10: "segmented transfer cancelled",  # 分帧传输已取消
    11: "not in segmented transfer",  # 不处于分帧传输状态
    12: "block write cancelled",  # 块写取消
    13: "no block write in progress",  # 不存在块写状态
    14: "invalid data block number",  # 数据块序号无效
    15: "password error / unauthorized",  # 密码错/未授权
    16: "baud rate cannot be changed",  # 通信速率不能更改
    17: "annual time zone count exceeded",  # 年时区数超
    18: "daily time slot count exceeded",  # 日时段数超
    19: "tariff count exceeded",  # 费率数超
    20: "security authentication mismatch",  # 安全认证不匹配
    21: "duplicate recharge",  # 重复充值
    22: "ESAM verification failed",  # ESAM 验证失败
    23: "security authentication failed",  # 安全认证失败
    24: "customer number mismatch",  # 客户编号不匹配
    25: "recharge count error",  # 充值次数错误
    26: "purchase exceeds hoarding limit",  # 购电超囤积
    27: "address exception",  # 地址异常
    28: "symmetric decryption error",  # 对称解密错误
    29: "asymmetric decryption error",  # 非对称解密错误
    30: "signature error",  # 签名错误
    31: "meter suspended",  # 电能表挂起
    32: "time tag invalid",  # 时间标签无效
    33: "request timed out",  # 请求超时
    255: "other",  # 其它
}

ERROR_RESPONSE_TEXT: Final = {1: "APDU cannot be parsed", 2: "service not supported", 255: "other"}


def describe_dar(dar: int) -> str:
    """The DAR in words with its number, e.g. ``"object does not exist (DAR 6)"``."""
    return f"{DAR_TEXT.get(dar, 'reserved code')} (DAR {dar})"


# --- PIID, TimeTag -----------------------------------------------------------------------------


def piid(sequence: int, *, high_priority: bool = False) -> int:
    """PIID: "bit7 服务优先级 (0 一般, 1 高级), bit0~bit5 服务序号 (0..63)"."""
    if not 0 <= sequence <= 63:
        raise FrameError(f"PIID service number {sequence}: need 0..63")
    return sequence | (0x80 if high_priority else 0)


@dataclass(frozen=True)
class TimeTag:
    """时间标签 TimeTag ∷= SEQUENCE {发送时标 date_time_s, 允许传输延时时间 TI}."""

    sent_at: datetime
    delay: Ti


def _encode_time_tag(tag: TimeTag | None) -> bytes:
    if tag is None:
        return b"\x00"
    return b"\x01" + encode_date_time_s(tag.sent_at) + _encode_ti(tag.delay)


def _decode_optional_time_tag(r: _Reader) -> TimeTag | None:
    if r.pos == len(r.buf):
        return None  # some meters omit the trailing OPTIONAL flags altogether
    flag = r.byte("TimeTag flag")
    if flag == 0:
        return None
    if flag != 1:
        raise FrameError(f"TimeTag OPTIONAL flag {flag:02X}H is neither 00 nor 01")
    sent = decode_date_time_s(r)
    if not isinstance(sent, datetime):
        raise FrameError(f"TimeTag send time {sent.raw.hex(' ')} is not a date")
    return TimeTag(sent, _decode_ti(r))


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultNormal:
    """A-ResultNormal ∷= OAD, Get-Result: exactly one of ``data`` and ``dar``."""

    oad: Oad
    data: Data | None = None
    dar: int | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.dar is None):
            raise FrameError(f"result for {self.oad}: need exactly one of data and DAR")

    def value(self, meter: str = "meter") -> Data:
        """The Data, or ``MeterRejected`` (code = DAR) naming the meter and the OAD."""
        if self.dar is not None:
            raise MeterRejected(f"{meter} rejected reading {self.oad}: {describe_dar(self.dar)}", code=self.dar)
        assert self.data is not None
        return self.data


@dataclass(frozen=True)
class ResultRecord:
    """A-ResultRecord: the OAD, the columns (RCSD) and rows of Data, or a DAR."""

    oad: Oad
    columns: tuple[Oad | Road, ...]
    rows: tuple[tuple[Data, ...], ...] | None = None
    dar: int | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.dar is None):
            raise FrameError(f"record result for {self.oad}: need exactly one of rows and DAR")

    def records(self, meter: str = "meter") -> tuple[tuple[Data, ...], ...]:
        if self.dar is not None:
            raise MeterRejected(f"{meter} rejected the records of {self.oad}: {describe_dar(self.dar)}",
                                code=self.dar)
        assert self.rows is not None
        return self.rows


def _encode_result_normal(res: ResultNormal) -> bytes:
    body = encode_oad(res.oad)
    if res.dar is not None:
        return body + b"\x00" + bytes((res.dar,))
    assert res.data is not None
    return body + b"\x01" + encode_data(res.data)


def _decode_result_normal(r: _Reader) -> ResultNormal:
    oad = decode_oad(r)
    choice = r.byte("Get-Result")
    if choice == 0:
        return ResultNormal(oad, dar=r.byte("DAR"))
    if choice == 1:
        return ResultNormal(oad, data=_decode_data(r))
    raise FrameError(f"Get-Result choice {choice} for {oad} is neither 0 (DAR) nor 1 (Data)")


def _encode_result_record(res: ResultRecord) -> bytes:
    body = encode_oad(res.oad) + encode_rcsd(res.columns)
    if res.dar is not None:
        return body + b"\x00" + bytes((res.dar,))
    assert res.rows is not None
    out = body + b"\x01" + encode_length(len(res.rows))
    for row in res.rows:
        if len(row) != len(res.columns):
            raise FrameError(f"record row of {len(row)} values for {len(res.columns)} columns of {res.oad}")
        out += b"".join(encode_data(d) for d in row)
    return out


def _decode_result_record(r: _Reader) -> ResultRecord:
    oad = decode_oad(r)
    columns = decode_rcsd(r)
    choice = r.byte("record result")
    if choice == 0:
        return ResultRecord(oad, columns, dar=r.byte("DAR"))
    if choice != 1:
        raise FrameError(f"record result choice {choice} for {oad} is neither 0 (DAR) nor 1 (records)")
    count = r.length("record rows")
    if columns == () and count:
        raise FrameError(f"records of {oad} without column descriptors cannot be split into rows")
    rows = tuple(tuple(_decode_data(r) for _ in columns) for _ in range(count))
    return ResultRecord(oad, columns, rows=rows)


# --- APDUs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GetRequestNormal:
    piid: int
    oad: Oad
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetRequestNormalList:
    piid: int
    oads: tuple[Oad, ...]
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetRequestRecord:
    piid: int
    oad: Oad
    rsd: Selector
    columns: tuple[Oad | Road, ...] = ()
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetRequestNext:
    piid: int
    last_block: int  # 最近一次接收的分帧序号
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class SetRequestNormal:
    piid: int
    oad: Oad
    value: Data
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class ActionRequestNormal:
    piid: int
    omd: Omd
    parameter: Data
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class FollowReport:
    """跟随上报信息域: CHOICE {若干个对象属性及其数据 [1], 若干个记录型对象属性及其数据 [2]}."""

    results: tuple[ResultNormal, ...] | tuple[ResultRecord, ...]


@dataclass(frozen=True)
class GetResponseNormal:
    piid_acd: int
    result: ResultNormal
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetResponseNormalList:
    piid_acd: int
    results: tuple[ResultNormal, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetResponseRecord:
    piid_acd: int
    result: ResultRecord
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class GetResponseNext:
    """分帧响应 (application-layer segmentation): ``last`` = 末帧标志, ``block`` = 分帧序号, and a DAR,
    a tuple of ResultNormal or a tuple of ResultRecord."""

    piid_acd: int
    last: bool
    block: int
    results: int | tuple[ResultNormal, ...] | tuple[ResultRecord, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class SetResponseNormal:
    piid_acd: int
    oad: Oad
    dar: int
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class ActionResponseNormal:
    piid_acd: int
    omd: Omd
    dar: int
    data: Data | None = None
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None


@dataclass(frozen=True)
class ErrorResponse:
    """ERROR-Response [238]: the server could not parse or does not support a request."""

    piid_acd: int
    error: int  # 异常类型: 1 APDU 无法解析, 2 服务不支持, 255 其他


@dataclass(frozen=True)
class SecurityRequest:
    """SECURITY-Request with a plaintext APDU and RN (随机数) as the verification."""

    apdu: bytes
    rn: bytes


@dataclass(frozen=True)
class SecurityResponse:
    """SECURITY-Response: the plaintext APDU (or a DAR) and the MAC if sent (not verified)."""

    apdu: bytes | None
    dar: int | None = None
    mac: bytes | None = None
    encrypted: bool = False


Apdu: TypeAlias = (
    GetRequestNormal | GetRequestNormalList | GetRequestRecord | GetRequestNext | SetRequestNormal
    | ActionRequestNormal | GetResponseNormal | GetResponseNormalList | GetResponseRecord | GetResponseNext
    | SetResponseNormal | ActionResponseNormal | ErrorResponse | SecurityRequest | SecurityResponse
)


def _encode_follow(report: FollowReport | None) -> bytes:
    if report is None:
        return b"\x00"
    if all(isinstance(x, ResultNormal) for x in report.results):
        return (b"\x01\x01" + encode_length(len(report.results))
                + b"".join(_encode_result_normal(x) for x in report.results))  # type: ignore[arg-type]
    return (b"\x01\x02" + encode_length(len(report.results))
            + b"".join(_encode_result_record(x) for x in report.results))  # type: ignore[arg-type]


def _decode_follow(r: _Reader) -> FollowReport | None:
    if r.pos == len(r.buf):
        return None
    flag = r.byte("FollowReport flag")
    if flag == 0:
        return None
    if flag != 1:
        raise FrameError(f"FollowReport OPTIONAL flag {flag:02X}H is neither 00 nor 01")
    choice = r.byte("FollowReport")
    count = r.length("FollowReport")
    if choice == 1:
        return FollowReport(tuple(_decode_result_normal(r) for _ in range(count)))
    if choice == 2:
        return FollowReport(tuple(_decode_result_record(r) for _ in range(count)))
    raise FrameError(f"FollowReport choice {choice} is neither 1 nor 2")


def encode_apdu(apdu: Apdu) -> bytes:
    """The bytes of ``apdu``, OPTIONAL trailers included."""
    a = apdu
    if isinstance(a, GetRequestNormal):
        return bytes((GET_REQUEST, 1, a.piid)) + encode_oad(a.oad) + _encode_time_tag(a.time_tag)
    if isinstance(a, GetRequestNormalList):
        return (bytes((GET_REQUEST, 2, a.piid)) + encode_length(len(a.oads)) + b"".join(map(encode_oad, a.oads))
                + _encode_time_tag(a.time_tag))
    if isinstance(a, GetRequestRecord):
        return (bytes((GET_REQUEST, 3, a.piid)) + encode_oad(a.oad) + encode_rsd(a.rsd) + encode_rcsd(a.columns)
                + _encode_time_tag(a.time_tag))
    if isinstance(a, GetRequestNext):
        return bytes((GET_REQUEST, 5, a.piid)) + a.last_block.to_bytes(2, "big") + _encode_time_tag(a.time_tag)
    if isinstance(a, SetRequestNormal):
        return (bytes((SET_REQUEST, 1, a.piid)) + encode_oad(a.oad) + encode_data(a.value)
                + _encode_time_tag(a.time_tag))
    if isinstance(a, ActionRequestNormal):
        return (bytes((ACTION_REQUEST, 1, a.piid)) + a.omd.oi.to_bytes(2, "big") + bytes((a.omd.method, a.omd.mode))
                + encode_data(a.parameter) + _encode_time_tag(a.time_tag))
    if isinstance(a, SecurityRequest):
        return (bytes((SECURITY_REQUEST, 0)) + encode_length(len(a.apdu)) + a.apdu
                + b"\x01" + encode_length(len(a.rn)) + a.rn)
    if isinstance(a, SecurityResponse):
        if a.dar is not None:
            body = bytes((SECURITY_RESPONSE, 2, a.dar))
        else:
            assert a.apdu is not None
            body = bytes((SECURITY_RESPONSE, 1 if a.encrypted else 0)) + encode_length(len(a.apdu)) + a.apdu
        if a.mac is None:
            return body + b"\x00"
        return body + b"\x01\x00" + encode_length(len(a.mac)) + a.mac
    if isinstance(a, ErrorResponse):
        return bytes((ERROR_RESPONSE, a.piid_acd, a.error))
    trailer = _encode_follow(a.follow_report) + _encode_time_tag(a.time_tag)
    if isinstance(a, GetResponseNormal):
        return bytes((GET_RESPONSE, 1, a.piid_acd)) + _encode_result_normal(a.result) + trailer
    if isinstance(a, GetResponseNormalList):
        return (bytes((GET_RESPONSE, 2, a.piid_acd)) + encode_length(len(a.results))
                + b"".join(map(_encode_result_normal, a.results)) + trailer)
    if isinstance(a, GetResponseRecord):
        return bytes((GET_RESPONSE, 3, a.piid_acd)) + _encode_result_record(a.result) + trailer
    if isinstance(a, GetResponseNext):
        head = bytes((GET_RESPONSE, 5, a.piid_acd, 1 if a.last else 0)) + a.block.to_bytes(2, "big")
        if isinstance(a.results, int):
            return head + bytes((0, a.results)) + trailer
        if all(isinstance(x, ResultNormal) for x in a.results):
            return (head + b"\x01" + encode_length(len(a.results))
                    + b"".join(_encode_result_normal(x) for x in a.results) + trailer)  # type: ignore[arg-type]
        return (head + b"\x02" + encode_length(len(a.results))
                + b"".join(_encode_result_record(x) for x in a.results) + trailer)  # type: ignore[arg-type]
    if isinstance(a, SetResponseNormal):
        return bytes((SET_RESPONSE, 1, a.piid_acd)) + encode_oad(a.oad) + bytes((a.dar,)) + trailer
    if isinstance(a, ActionResponseNormal):
        body = bytes((ACTION_RESPONSE, 1, a.piid_acd)) + a.omd.oi.to_bytes(2, "big") + bytes((a.omd.method,
                                                                                              a.omd.mode, a.dar))
        body += b"\x00" if a.data is None else b"\x01" + encode_data(a.data)
        return body + trailer
    raise FrameError(f"cannot encode {type(a).__name__}")


def decode_apdu(buf: bytes) -> Apdu:
    """One APDU filling ``buf``; ``FrameError`` names what is wrong and where."""
    r = _Reader(bytes(buf))
    tag = r.byte("APDU tag")
    if tag == SECURITY_REQUEST:
        choice = r.byte("SECURITY-Request")
        if choice != 0:
            raise FrameError("SECURITY-Request with ciphertext: only plaintext is supported")
        apdu = r.take(r.length("plaintext APDU"), "plaintext APDU")
        kind = r.byte("verification")
        if kind != 1:
            raise FrameError(f"SECURITY-Request verification choice {kind}: only RN (1) is supported")
        result: Apdu = SecurityRequest(apdu, r.take(r.length("RN"), "RN"))
    elif tag == SECURITY_RESPONSE:
        choice = r.byte("SECURITY-Response")
        plain: bytes | None = None
        dar = None
        if choice in (0, 1):
            plain = r.take(r.length("application data"), "application data")
        elif choice == 2:
            dar = r.byte("DAR")
        else:
            raise FrameError(f"SECURITY-Response choice {choice} is not 0..2")
        mac = None
        if r.pos < len(r.buf) and r.byte("verification flag"):
            if r.byte("verification choice") != 0:
                raise FrameError("SECURITY-Response verification is not a MAC")
            mac = r.take(r.length("MAC"), "MAC")
        result = SecurityResponse(plain, dar, mac, encrypted=choice == 1)
    elif tag == ERROR_RESPONSE:
        result = ErrorResponse(r.byte("PIID-ACD"), r.byte("error type"))
    elif tag in (GET_REQUEST, SET_REQUEST, ACTION_REQUEST):
        result = _decode_request(tag, r)
    elif tag in (GET_RESPONSE, SET_RESPONSE, ACTION_RESPONSE):
        result = _decode_response(tag, r)
    else:
        raise FrameError(f"APDU tag {tag} ({tag:02X}H) is not a service Meterlink handles")
    if r.pos != len(r.buf):
        raise FrameError(f"{len(r.buf) - r.pos} byte(s) after the {type(result).__name__}: "
                         f"{r.buf[r.pos:].hex(' ')}")
    return result


def _decode_request(tag: int, r: _Reader) -> Apdu:
    choice = r.byte("request choice")
    p = r.byte("PIID")
    if tag == GET_REQUEST and choice == 1:
        oad = decode_oad(r)
        return GetRequestNormal(p, oad, _decode_optional_time_tag(r))
    if tag == GET_REQUEST and choice == 2:
        oads = tuple(decode_oad(r) for _ in range(r.length("OAD list")))
        return GetRequestNormalList(p, oads, _decode_optional_time_tag(r))
    if tag == GET_REQUEST and choice == 3:
        oad = decode_oad(r)
        rsd = decode_rsd(r)
        return GetRequestRecord(p, oad, rsd, decode_rcsd(r), _decode_optional_time_tag(r))
    if tag == GET_REQUEST and choice == 5:
        block = r.uint(2, "block number")
        return GetRequestNext(p, block, _decode_optional_time_tag(r))
    if tag == SET_REQUEST and choice == 1:
        oad = decode_oad(r)
        return SetRequestNormal(p, oad, _decode_data(r), _decode_optional_time_tag(r))
    if tag == ACTION_REQUEST and choice == 1:
        raw = r.take(4, "OMD")
        omd = Omd(int.from_bytes(raw[:2], "big"), raw[2], raw[3])
        return ActionRequestNormal(p, omd, _decode_data(r), _decode_optional_time_tag(r))
    raise FrameError(f"request {tag:02X} {choice:02X} is not supported (GET 1/2/3/5, SET 1, ACTION 1)")


def _decode_response(tag: int, r: _Reader) -> Apdu:
    choice = r.byte("response choice")
    p = r.byte("PIID-ACD")
    if tag == GET_RESPONSE and choice == 1:
        res = _decode_result_normal(r)
        return GetResponseNormal(p, res, _decode_follow(r), _decode_optional_time_tag(r))
    if tag == GET_RESPONSE and choice == 2:
        results = tuple(_decode_result_normal(r) for _ in range(r.length("result list")))
        return GetResponseNormalList(p, results, _decode_follow(r), _decode_optional_time_tag(r))
    if tag == GET_RESPONSE and choice == 3:
        rec = _decode_result_record(r)
        return GetResponseRecord(p, rec, _decode_follow(r), _decode_optional_time_tag(r))
    if tag == GET_RESPONSE and choice == 5:
        last = r.byte("末帧标志") != 0
        block = r.uint(2, "分帧序号")
        kind = r.byte("分帧响应")
        payload: int | tuple[ResultNormal, ...] | tuple[ResultRecord, ...]
        if kind == 0:
            payload = r.byte("DAR")
        elif kind == 1:
            payload = tuple(_decode_result_normal(r) for _ in range(r.length("results")))
        elif kind == 2:
            payload = tuple(_decode_result_record(r) for _ in range(r.length("records")))
        else:
            raise FrameError(f"GetResponseNext choice {kind} is not 0..2")
        return GetResponseNext(p, last, block, payload, _decode_follow(r), _decode_optional_time_tag(r))
    if tag == SET_RESPONSE and choice == 1:
        oad = decode_oad(r)
        dar = r.byte("DAR")
        return SetResponseNormal(p, oad, dar, _decode_follow(r), _decode_optional_time_tag(r))
    if tag == ACTION_RESPONSE and choice == 1:
        raw = r.take(4, "OMD")
        omd = Omd(int.from_bytes(raw[:2], "big"), raw[2], raw[3])
        dar = r.byte("DAR")
        data = _decode_data(r) if r.byte("Data OPTIONAL") else None
        return ActionResponseNormal(p, omd, dar, data, _decode_follow(r), _decode_optional_time_tag(r))
    raise FrameError(f"response {tag:02X} {choice:02X} is not supported (GET 1/2/3/5, SET 1, ACTION 1)")


def unwrap(apdu: Apdu, meter: str = "meter") -> Apdu:
    """The inner APDU of a SECURITY-Response (MAC not verified), ``apdu`` itself otherwise.

    An ERROR-Response or a security DAR raises ``MeterRejected``.
    """
    if isinstance(apdu, ErrorResponse):
        text = ERROR_RESPONSE_TEXT.get(apdu.error, "reserved code")
        raise MeterRejected(f"{meter} answered ERROR-Response: {text} ({apdu.error})", code=apdu.error)
    if isinstance(apdu, SecurityResponse):
        if apdu.dar is not None:
            raise MeterRejected(f"{meter} rejected the secured request: {describe_dar(apdu.dar)}", code=apdu.dar)
        if apdu.encrypted:
            raise FrameError(f"{meter} answered in ciphertext; decrypting needs the ESAM (not supported)")
        assert apdu.apdu is not None
        return unwrap(decode_apdu(apdu.apdu), meter)
    return apdu


def clock_sync_request(p: int, when: datetime) -> SetRequestNormal:
    """SET 40000200 (日期时间, date_time_s) to ``when``, the meter's naive local time."""
    return SetRequestNormal(p, Oad(0x4000, 2, 0), Data(28, when.replace(microsecond=0)))


def broadcast_clock_request(p: int, when: datetime) -> ActionRequestNormal:
    """ACTION 4000 method 127 广播校时 (date_time_s), sent to the broadcast address."""
    return ActionRequestNormal(p, Omd(0x4000, 127, 0), Data(28, when.replace(microsecond=0)))
