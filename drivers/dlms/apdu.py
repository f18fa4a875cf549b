"""xDLMS APDUs the gateway and the simulated meter exchange beyond ACSE, no I/O.

ACSE (AARQ, AARE, RLRQ, RLRE) and xDLMS InitiateRequest/Response come from
dlms-cosem (``dlms_cosem.protocol.acse``/``xdlms``), which encodes them right.
What it lacks or gets wrong is here: the GET service with selective access,
with-list results that hold a data-access-result, GET responses for a server
(its ``GetResponseNormal.to_bytes`` fails), general-glo-ciphering with lengths
over 127 bytes, general-block-transfer, and a DataNotification whose date-time
follows the standard (and the common octet-string-tagged variant).

References: Green Book ed. 8 (DLMS UA 1000-2), 9.3 "xDLMS ASN.1 specification"
(tags of Table 73/9.5), 9.3.7 GET service; Blue Book 4.1.5 for Data.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from meterlink.core.errors import FrameError
from meterlink.drivers.dlms import axdr
from meterlink.drivers.dlms.axdr import Data

# --- APDU tags (Green Book 9.5, "xDLMS-APDU ::= CHOICE") -------------------------------

INITIATE_REQUEST = 0x01
INITIATE_RESPONSE = 0x08
CONFIRMED_SERVICE_ERROR = 0x0E
DATA_NOTIFICATION = 0x0F
GLO_INITIATE_REQUEST = 0x21
GLO_INITIATE_RESPONSE = 0x28
AARQ = 0x60
AARE = 0x61
RLRQ = 0x62
RLRE = 0x63
GET_REQUEST = 0xC0
SET_REQUEST = 0xC1
ACTION_REQUEST = 0xC3
GET_RESPONSE = 0xC4
ACTION_RESPONSE = 0xC7
GLO_GET_REQUEST = 0xC8
GLO_ACTION_REQUEST = 0xCB
GLO_GET_RESPONSE = 0xCC
GLO_ACTION_RESPONSE = 0xCF
EXCEPTION_RESPONSE = 0xD8
GENERAL_GLO_CIPHERING = 0xDB
GENERAL_BLOCK_TRANSFER = 0xE0

CLOCK_CLASS = 8
CLOCK_OBIS = "0.0.1.0.0.255"


class DataAccessResult(enum.IntEnum):
    """Green Book 9.3 "Data-Access-Result"."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250

    @classmethod
    def of(cls, value: int) -> DataAccessResult | int:
        try:
            return cls(value)
        except ValueError:
            return value


def result_text(code: DataAccessResult | int) -> str:
    if isinstance(code, DataAccessResult):
        return code.name.lower().replace("_", "-")
    return f"data-access-result {code}"


# --- COSEM attribute references ---------------------------------------------------------


def obis_bytes(obis: str) -> bytes:
    groups = [int(g) for g in obis.split(".")]
    if len(groups) != 6 or any(not 0 <= g <= 255 for g in groups):
        raise ValueError(f"{obis!r} is not an OBIS code")
    return bytes(groups)


def obis_text(raw: bytes) -> str:
    if len(raw) != 6:
        raise FrameError(f"an OBIS code has 6 bytes, got {raw.hex(' ')}")
    return ".".join(str(b) for b in raw)


@dataclass(frozen=True, slots=True)
class AttributeRef:
    """Cosem-Attribute-Descriptor: class id, logical name, attribute index."""

    class_id: int
    obis: str
    attribute: int

    def to_bytes(self) -> bytes:
        return self.class_id.to_bytes(2, "big") + obis_bytes(self.obis) + self.attribute.to_bytes(1, "big", signed=True)

    @classmethod
    def from_bytes(cls, raw: bytes, pos: int = 0) -> tuple[AttributeRef, int]:
        if pos + 9 > len(raw):
            raise FrameError("attribute descriptor cut short")
        return cls(int.from_bytes(raw[pos:pos + 2], "big"), obis_text(raw[pos + 2:pos + 8]),
                   int.from_bytes(raw[pos + 8:pos + 9], "big", signed=True)), pos + 9

    def __str__(self) -> str:
        return f"{self.obis} (class {self.class_id}, attribute {self.attribute})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RangeSelector:
    """Selective access by range (Blue Book 4.3.6, profile generic ``buffer``, access selector 1).

    ``restricting`` is the capture object the range applies to (the clock,
    data index 0); ``columns`` an empty tuple for all columns.
    """

    from_value: Data
    to_value: Data
    restricting: AttributeRef = AttributeRef(CLOCK_CLASS, CLOCK_OBIS, 2)
    columns: tuple[AttributeRef, ...] = ()

    SELECTOR = 1

    def to_bytes(self) -> bytes:
        def capture(ref: AttributeRef) -> Data:
            return axdr.structure(axdr.integer(axdr.Tag.LONG_UNSIGNED, ref.class_id), axdr.octets(obis_bytes(ref.obis)),
                                  axdr.integer(axdr.Tag.INTEGER, ref.attribute),
                                  axdr.integer(axdr.Tag.LONG_UNSIGNED, 0))
        params = axdr.structure(capture(self.restricting), self.from_value, self.to_value,
                                axdr.array([capture(c) for c in self.columns]))
        return bytes([self.SELECTOR]) + axdr.encode(params)

    @classmethod
    def from_params(cls, params: Data) -> RangeSelector:
        try:
            restricting, from_value, to_value, columns = params.items
            r = restricting.items
            ref = AttributeRef(int(r[0].value), obis_text(r[1].value), int(r[2].value))
            cols = tuple(AttributeRef(int(c.items[0].value), obis_text(c.items[1].value), int(c.items[2].value))
                         for c in columns.items)
        except (ValueError, IndexError, TypeError) as exc:
            raise FrameError(f"bad range descriptor: {exc}") from None
        return cls(from_value=from_value, to_value=to_value, restricting=ref, columns=cols)

    @classmethod
    def between(cls, start: datetime, end: datetime, *, deviation: int | None = 0) -> RangeSelector:
        return cls(from_value=axdr.datetime_data(start, deviation=deviation),
                   to_value=axdr.datetime_data(end, deviation=deviation))


@dataclass(frozen=True, slots=True)
class AttributeRequest:
    ref: AttributeRef
    selector: RangeSelector | None = None

    def to_bytes(self) -> bytes:
        return self.ref.to_bytes() + (b"\x01" + self.selector.to_bytes() if self.selector else b"\x00")


def invoke_byte(invoke_id: int) -> int:
    """Invoke-Id-And-Priority: confirmed service, high priority, invoke id 0-15 (Green Book 9.3)."""
    return 0xC0 | (invoke_id & 0x0F)


# --- GET requests -------------------------------------------------------------------------


def get_request_normal(invoke_id: int, item: AttributeRequest) -> bytes:
    return bytes([GET_REQUEST, 1, invoke_byte(invoke_id)]) + item.to_bytes()


def get_request_next(invoke_id: int, block_number: int) -> bytes:
    return bytes([GET_REQUEST, 2, invoke_byte(invoke_id)]) + block_number.to_bytes(4, "big")


def get_request_with_list(invoke_id: int, items: Sequence[AttributeRequest]) -> bytes:
    return (bytes([GET_REQUEST, 3, invoke_byte(invoke_id)]) + axdr.encode_length(len(items))
            + b"".join(i.to_bytes() for i in items))


@dataclass(frozen=True, slots=True, kw_only=True)
class GetRequest:
    """A decoded GET request (the simulated meter's side)."""

    kind: int  # 1 normal, 2 next, 3 with-list
    invoke_id: int
    items: tuple[AttributeRequest, ...] = ()
    block_number: int = 0


def decode_get_request(apdu: bytes) -> GetRequest:
    if len(apdu) < 3 or apdu[0] != GET_REQUEST:
        raise FrameError("not a get-request")
    kind, invoke = apdu[1], apdu[2] & 0x0F
    if kind == 2:
        if len(apdu) != 7:
            raise FrameError("bad get-request-next")
        return GetRequest(kind=2, invoke_id=invoke, block_number=int.from_bytes(apdu[3:7], "big"))
    if kind == 1:
        item, pos = _attribute_request(apdu, 3)
        return GetRequest(kind=1, invoke_id=invoke, items=(item,))
    if kind == 3:
        count, pos = axdr.decode_length(apdu, 3)
        items = []
        for _ in range(count):
            item, pos = _attribute_request(apdu, pos)
            items.append(item)
        return GetRequest(kind=3, invoke_id=invoke, items=tuple(items))
    raise FrameError(f"unknown get-request type {kind}")


def _attribute_request(apdu: bytes, pos: int) -> tuple[AttributeRequest, int]:
    ref, pos = AttributeRef.from_bytes(apdu, pos)
    if pos >= len(apdu):
        raise FrameError("get-request cut short")
    selector = None
    if apdu[pos]:
        if pos + 1 >= len(apdu) or apdu[pos + 1] != RangeSelector.SELECTOR:
            raise FrameError("only selective access by range is supported")
        params, pos = axdr.decode(apdu, pos + 2)
        selector = RangeSelector.from_params(params)
    else:
        pos += 1
    return AttributeRequest(ref, selector), pos


# --- GET responses ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GetResponse:
    """A decoded GET response.

    ``kind`` 1 (normal: ``data`` is the encoded Data, or ``error``), 2 (with
    block: ``data`` is this block's raw-data, ``last`` and ``block_number``,
    or ``error``), 3 (with list: ``results``, each encoded Data or a
    data-access-result).
    """

    kind: int
    invoke_id: int
    data: bytes = b""
    error: DataAccessResult | int | None = None
    last: bool = True
    block_number: int = 0
    results: tuple[bytes | DataAccessResult | int, ...] = ()


def decode_get_response(apdu: bytes) -> GetResponse:
    if len(apdu) < 4 or apdu[0] != GET_RESPONSE:
        raise FrameError(f"not a get-response: {apdu[:8].hex(' ')}")
    kind, invoke = apdu[1], apdu[2] & 0x0F
    if kind == 1:
        if apdu[3] == 0:
            return GetResponse(kind=1, invoke_id=invoke, data=apdu[4:])
        if apdu[3] == 1 and len(apdu) == 5:
            return GetResponse(kind=1, invoke_id=invoke, error=DataAccessResult.of(apdu[4]))
        raise FrameError("bad get-response-normal")
    if kind == 2:
        if len(apdu) < 10:
            raise FrameError("get-response-with-datablock cut short")
        last = apdu[3] != 0
        block = int.from_bytes(apdu[4:8], "big")
        if apdu[8] == 1:
            return GetResponse(kind=2, invoke_id=invoke, last=last, block_number=block,
                               error=DataAccessResult.of(apdu[9]))
        n, pos = axdr.decode_length(apdu, 9)
        if pos + n != len(apdu):
            raise FrameError(f"get-response block {block}: raw-data of {n} bytes, {len(apdu) - pos} in the APDU")
        return GetResponse(kind=2, invoke_id=invoke, last=last, block_number=block, data=apdu[pos:])
    if kind == 3:
        return GetResponse(kind=3, invoke_id=invoke, results=parse_list_results(apdu[3:]))
    raise FrameError(f"unknown get-response type {kind}")


def parse_list_results(raw: bytes) -> tuple[bytes | DataAccessResult | int, ...]:
    """``SEQUENCE OF Get-Data-Result``: each ``00 Data`` or ``01 Data-Access-Result``."""
    count, pos = axdr.decode_length(raw, 0)
    out: list[bytes | DataAccessResult | int] = []
    for _ in range(count):
        if pos >= len(raw):
            raise FrameError("get-response-with-list cut short")
        choice = raw[pos]
        if choice == 0:
            _, end = axdr.decode(raw, pos + 1)
            out.append(bytes(raw[pos + 1:end]))
            pos = end
        elif choice == 1 and pos + 1 < len(raw):
            out.append(DataAccessResult.of(raw[pos + 1]))
            pos += 2
        else:
            raise FrameError(f"bad Get-Data-Result choice {choice}")
    if pos != len(raw):
        raise FrameError(f"{len(raw) - pos} bytes after the get-response-with-list results")
    return tuple(out)


def get_response_normal(invoke_id: int, result: bytes | DataAccessResult) -> bytes:
    head = bytes([GET_RESPONSE, 1, invoke_byte(invoke_id)])
    if isinstance(result, DataAccessResult):
        return head + bytes([1, result])
    return head + b"\x00" + result


def list_results(results: Sequence[bytes | DataAccessResult]) -> bytes:
    body = axdr.encode_length(len(results))
    for r in results:
        body += bytes([1, r]) if isinstance(r, DataAccessResult) else b"\x00" + r
    return body


def get_response_with_list(invoke_id: int, results: Sequence[bytes | DataAccessResult]) -> bytes:
    return bytes([GET_RESPONSE, 3, invoke_byte(invoke_id)]) + list_results(results)


def get_response_block(invoke_id: int, block_number: int, raw: bytes | DataAccessResult, *, last: bool) -> bytes:
    head = bytes([GET_RESPONSE, 2, invoke_byte(invoke_id), 1 if last else 0]) + block_number.to_bytes(4, "big")
    if isinstance(raw, DataAccessResult):
        return head + bytes([1, raw])
    return head + b"\x00" + axdr.encode_length(len(raw)) + raw


# --- errors ---------------------------------------------------------------------------------

_STATE_ERRORS = {1: "service-not-allowed", 2: "service-unknown"}
_SERVICE_ERRORS = {1: "operation-not-possible", 2: "service-not-supported", 3: "other-reason", 4: "pdu-too-long",
                   5: "deciphering-error", 6: "invocation-counter-error"}
INVOCATION_COUNTER_ERROR = 6


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """Green Book 9.3 EXCEPTION-Response: the server could not even parse or accept the request."""

    state_error: int
    service_error: int
    invocation_counter: int | None = None

    def text(self) -> str:
        s = _STATE_ERRORS.get(self.state_error, f"state-error {self.state_error}")
        v = _SERVICE_ERRORS.get(self.service_error, f"service-error {self.service_error}")
        return f"exception response: {s}, {v}"

    def to_bytes(self) -> bytes:
        out = bytes([EXCEPTION_RESPONSE, self.state_error, self.service_error])
        if self.invocation_counter is not None:
            out += self.invocation_counter.to_bytes(4, "big")
        return out


def decode_exception_response(apdu: bytes) -> ExceptionResponse:
    if len(apdu) < 3 or apdu[0] != EXCEPTION_RESPONSE:
        raise FrameError("not an exception-response")
    ic = int.from_bytes(apdu[3:7], "big") if apdu[2] == INVOCATION_COUNTER_ERROR and len(apdu) >= 7 else None
    return ExceptionResponse(apdu[1], apdu[2], ic)


_CSE_SERVICES = {1: "initiate", 2: "get-status", 3: "get-name-list", 4: "get-variable-attribute", 5: "read",
                 6: "write", 7: "get-data-set-attribute", 8: "get-ti-attribute", 9: "change-scope", 10: "start",
                 11: "stop", 12: "resume", 13: "make-usable", 14: "initiate-load", 15: "load-segment",
                 16: "terminate-load", 17: "initiate-upload", 18: "upload-segment", 19: "terminate-upload"}
_CSE_TYPES = {0: "application-reference", 1: "hardware-resource", 2: "vde-state-error", 3: "service",
              4: "definition", 5: "access", 6: "initiate", 7: "load-data-set", 8: "change-scope", 9: "task",
              10: "other"}
_INITIATE_ERRORS = {0: "other", 1: "dlms-version-too-low", 2: "incompatible-conformance", 3: "pdu-size-too-short",
                    4: "refused-by-the-VDE-handler"}


def confirmed_service_error_text(apdu: bytes) -> str:
    """Green Book 9.3 ConfirmedServiceError: ``0E service error-type value``."""
    if len(apdu) < 4 or apdu[0] != CONFIRMED_SERVICE_ERROR:
        return f"confirmed-service-error {apdu.hex(' ')}"
    service = _CSE_SERVICES.get(apdu[1], str(apdu[1]))
    kind = _CSE_TYPES.get(apdu[2], str(apdu[2]))
    value = _INITIATE_ERRORS.get(apdu[3], str(apdu[3])) if apdu[2] == 6 else str(apdu[3])
    return f"confirmed-service-error ({service}): {kind} {value}"


# --- ciphering containers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ciphered:
    """The content of general-glo-ciphering (or a service-specific glo APDU): SC, IC and the ciphered text + tag."""

    tag: int
    system_title: bytes | None
    security_control: int
    invocation_counter: int
    ciphered: bytes

    def to_bytes(self) -> bytes:
        content = bytes([self.security_control]) + self.invocation_counter.to_bytes(4, "big") + self.ciphered
        head = bytes([self.tag])
        if self.tag == GENERAL_GLO_CIPHERING:
            title = self.system_title or b""
            head += axdr.encode_length(len(title)) + title
        return head + axdr.encode_length(len(content)) + content


def decode_ciphered(apdu: bytes) -> Ciphered:
    """general-glo-ciphering (``DB title content``) or a service-specific glo APDU (``tag content``)."""
    if not apdu:
        raise FrameError("empty APDU")
    pos = 1
    title = None
    if apdu[0] == GENERAL_GLO_CIPHERING:
        n, pos = axdr.decode_length(apdu, 1)
        title = bytes(apdu[pos:pos + n])
        pos += n
    n, pos = axdr.decode_length(apdu, pos)
    content = apdu[pos:pos + n]
    if len(content) != n or n < 5 + 12:
        raise FrameError(f"ciphered APDU {apdu[0]:#04x}: content of {n} bytes, {len(apdu) - pos} present")
    return Ciphered(tag=apdu[0], system_title=title, security_control=content[0],
                    invocation_counter=int.from_bytes(content[1:5], "big"), ciphered=bytes(content[5:]))


# --- general-block-transfer (Green Book 9.3.5, "General-Block-Transfer") ---------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockTransfer:
    last: bool
    block_number: int
    block_number_ack: int = 0
    streaming: bool = False
    window: int = 1
    data: bytes = b""

    def to_bytes(self) -> bytes:
        control = (0x80 if self.last else 0) | (0x40 if self.streaming else 0) | (self.window & 0x3F)
        return (bytes([GENERAL_BLOCK_TRANSFER, control]) + self.block_number.to_bytes(2, "big")
                + self.block_number_ack.to_bytes(2, "big") + axdr.encode_length(len(self.data)) + self.data)


def decode_block_transfer(apdu: bytes) -> BlockTransfer:
    if len(apdu) < 6 or apdu[0] != GENERAL_BLOCK_TRANSFER:
        raise FrameError("not a general-block-transfer APDU")
    n, pos = axdr.decode_length(apdu, 6)
    if pos + n != len(apdu):
        raise FrameError(f"general-block-transfer: block-data of {n} bytes, {len(apdu) - pos} present")
    c = apdu[1]
    return BlockTransfer(last=bool(c & 0x80), streaming=bool(c & 0x40), window=c & 0x3F,
                         block_number=int.from_bytes(apdu[2:4], "big"),
                         block_number_ack=int.from_bytes(apdu[4:6], "big"), data=bytes(apdu[pos:]))


def split_blocks(apdu: bytes, size: int) -> list[BlockTransfer]:
    """An APDU cut into general-block-transfer blocks of ``size`` bytes, numbered from 1."""
    chunks = [apdu[i:i + size] for i in range(0, len(apdu), size)] or [b""]
    return [BlockTransfer(last=i == len(chunks) - 1, block_number=i + 1, data=c) for i, c in enumerate(chunks)]


# --- data-notification (Green Book 9.3.9) -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataNotification:
    """``0F long-invoke-id-and-priority date-time notification-body``.

    The date-time is an OCTET STRING: ``00`` when absent, ``0C`` and 12
    bytes when present.  Kaifa HAN meters tag it as A-XDR data (``09 0C`` and
    12 bytes); both are read.
    """

    long_invoke_id: int
    date_time: axdr.CosemDateTime | None
    body: Data

    def to_bytes(self) -> bytes:
        dt = b"\x00" if self.date_time is None else b"\x0c" + self.date_time.to_bytes()
        return bytes([DATA_NOTIFICATION]) + self.long_invoke_id.to_bytes(4, "big") + dt + axdr.encode(self.body)


def decode_data_notification(apdu: bytes) -> DataNotification:
    if len(apdu) < 6 or apdu[0] != DATA_NOTIFICATION:
        raise FrameError("not a data-notification APDU")
    invoke = int.from_bytes(apdu[1:5], "big")
    pos = 5
    if apdu[pos] == axdr.Tag.OCTET_STRING and pos + 1 < len(apdu) and apdu[pos + 1] == 12:
        pos += 1  # Kaifa: the date-time carries the octet-string data tag
    n = apdu[pos]
    if n not in (0, 12):
        raise FrameError(f"data-notification date-time of {n} bytes (expected 0 or 12)")
    when = axdr.CosemDateTime.from_bytes(apdu[pos + 1:pos + 13]) if n == 12 else None
    body = axdr.decode_all(apdu[pos + 1 + n:])
    return DataNotification(long_invoke_id=invoke, date_time=when, body=body)


# --- xDLMS initiate (Green Book 9.3.2, carried in the AARQ/AARE user-information) -------------


class Conformance(enum.IntFlag):
    """The conformance block bits (Green Book 9.4.6.1, Table 56); bit 0 is the most significant of 24."""

    GENERAL_PROTECTION = 1 << (23 - 1)
    GENERAL_BLOCK_TRANSFER = 1 << (23 - 2)
    READ = 1 << (23 - 3)
    WRITE = 1 << (23 - 4)
    UNCONFIRMED_WRITE = 1 << (23 - 5)
    ATTRIBUTE0_WITH_SET = 1 << (23 - 8)
    PRIORITY_MGMT = 1 << (23 - 9)
    ATTRIBUTE0_WITH_GET = 1 << (23 - 10)
    BLOCK_TRANSFER_WITH_GET = 1 << (23 - 11)
    BLOCK_TRANSFER_WITH_SET = 1 << (23 - 12)
    BLOCK_TRANSFER_WITH_ACTION = 1 << (23 - 13)
    MULTIPLE_REFERENCES = 1 << (23 - 14)
    INFORMATION_REPORT = 1 << (23 - 15)
    DATA_NOTIFICATION = 1 << (23 - 16)
    ACCESS = 1 << (23 - 17)
    PARAMETERIZED_ACCESS = 1 << (23 - 18)
    GET = 1 << (23 - 19)
    SET = 1 << (23 - 20)
    SELECTIVE_ACCESS = 1 << (23 - 21)
    EVENT_NOTIFICATION = 1 << (23 - 22)
    ACTION = 1 << (23 - 23)


DLMS_VERSION = 6


def initiate_request(conformance: int, max_receive_pdu: int) -> bytes:
    """``01 dedicated-key(absent) response-allowed(default) qos(absent) 06 5F1F 04 00 <24 bits> <max pdu>``."""
    return (bytes([INITIATE_REQUEST, 0x00, 0x00, 0x00, DLMS_VERSION, 0x5F, 0x1F, 0x04, 0x00])
            + int(conformance).to_bytes(3, "big") + max_receive_pdu.to_bytes(2, "big"))


def initiate_response(conformance: int, max_receive_pdu: int) -> bytes:
    """``08 qos(absent) 06 5F1F 04 00 <24 bits> <max pdu> 0007`` (vaa-name 0x0007: LN referencing)."""
    return (bytes([INITIATE_RESPONSE, 0x00, DLMS_VERSION, 0x5F, 0x1F, 0x04, 0x00]) + int(conformance).to_bytes(3, "big")
            + max_receive_pdu.to_bytes(2, "big") + b"\x00\x07")


@dataclass(frozen=True, slots=True)
class Initiate:
    conformance: int
    max_receive_pdu: int
    version: int


def parse_initiate(raw: bytes) -> Initiate:
    """An InitiateRequest or InitiateResponse: conformance and maximum PDU size (they end both)."""
    if raw[:1] == bytes([INITIATE_RESPONSE]):
        body = raw[:-2] if raw.endswith(b"\x00\x07") else raw
    elif raw[:1] == bytes([INITIATE_REQUEST]):
        body = raw
    else:
        raise FrameError(f"not an xDLMS initiate APDU: {raw[:4].hex(' ')}")
    marker = body.rfind(b"\x5f\x1f\x04")
    if marker < 0 or len(body) != marker + 3 + 4 + 2:
        raise FrameError(f"bad xDLMS initiate APDU {raw.hex(' ')}")
    return Initiate(conformance=int.from_bytes(body[marker + 4:marker + 7], "big"),
                    max_receive_pdu=int.from_bytes(body[marker + 7:marker + 9], "big"), version=body[marker - 1])



def _ber_elements(raw: bytes) -> dict[int, bytes]:
    """The BER elements of one constructed value, by tag (ACSE uses single-byte tags), lengths as BER defines."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        n, pos = axdr.decode_length(raw, pos + 1)  # A-XDR and BER definite lengths are the same encoding
        if pos + n > len(raw):
            raise FrameError(f"AARE element {tag:#04x} of {n} bytes runs past the end")
        out.setdefault(tag, bytes(raw[pos:pos + n]))
        pos += n
    return out


def aare_user_information(aare: bytes) -> bytes | None:
    """The xDLMS APDU inside an AARE's user-information (Green Book 9.4.2 Table 65: ``[30] IMPLICIT``
    ``Association-information``, an OCTET STRING around the InitiateResponse), as the meter sent it.

    The driver reads the conformance from these bytes with :func:`parse_initiate`: dlms-cosem 21.3.2's
    ``InitiateResponse`` keeps only the conformance bits it knows (no read, write, unconfirmed-write,
    information-report or parameterized-access), so its re-encoding is not what the meter granted.
    """
    if not aare or aare[0] != AARE:
        raise FrameError(f"not an AARE: {aare[:4].hex(' ')}")
    fields = _ber_elements(_ber_elements(aare).get(AARE, b""))
    if 0xBE not in fields:
        return None
    return _ber_elements(fields[0xBE]).get(0x04)
