"""The server side of ACSE for the simulated DLMS meter: reading an AARQ, building an AARE.

dlms-cosem builds AARQs and reads AAREs (the client's half) but misreads the
conformance of an AARQ's InitiateRequest and has no AARE builder worth the
name for a server: these are written here, from the BER layout of Green Book
ed. 8, 9.4.2 (Table 64 "AARQ", Table 65 "AARE") and checked against its
encoding examples (Green Book 11.4 / 11.5).  The gateway's own AARQ (built
with dlms-cosem) is thus read by independent code.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterlink.core.errors import FrameError

APP_CONTEXT_LN = bytes.fromhex("60857405080101")            # logical name referencing, no ciphering
APP_CONTEXT_LN_CIPHERED = bytes.fromhex("60857405080103")   # logical name referencing with ciphering
MECHANISM_PREFIX = bytes.fromhex("608574050802")            # + mechanism id (1 LLS, 5 HLS-GMAC)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def parse_tlvs(raw: bytes) -> dict[int, bytes]:
    """The BER elements of one constructed value, by tag (single-byte tags, as ACSE uses)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise FrameError("BER element cut short")
        tag, n = raw[pos], raw[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(raw[pos:pos + k], "big")
            pos += k
        if pos + n > len(raw):
            raise FrameError(f"BER element {tag:#04x} of {n} bytes runs past the end")
        out[tag] = raw[pos:pos + n]
        pos += n
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Aarq:
    ciphered: bool
    calling_title: bytes | None
    mechanism: int | None
    authentication_value: bytes | None
    user_information: bytes | None


def parse_aarq(apdu: bytes) -> Aarq:
    if not apdu or apdu[0] != 0x60:
        raise FrameError("not an AARQ")
    fields = parse_tlvs(parse_tlvs(apdu).get(0x60, b""))
    context = parse_tlvs(fields.get(0xA1, b"")).get(0x06, b"")
    if context not in (APP_CONTEXT_LN, APP_CONTEXT_LN_CIPHERED):
        raise FrameError(f"application context {context.hex()} is not logical name referencing")
    title = parse_tlvs(fields[0xA6]).get(0x04) if 0xA6 in fields else None
    mechanism = None
    if 0x8B in fields and fields[0x8B].startswith(MECHANISM_PREFIX):
        mechanism = fields[0x8B][-1]
    value = parse_tlvs(fields[0xAC]).get(0x80) if 0xAC in fields else None
    ui = parse_tlvs(fields[0xBE]).get(0x04) if 0xBE in fields else None
    return Aarq(ciphered=context == APP_CONTEXT_LN_CIPHERED, calling_title=title, mechanism=mechanism,
                authentication_value=value, user_information=ui)


def build_aare(*, accepted: bool, diagnostic: int, ciphered: bool, user_information: bytes,
               system_title: bytes | None = None, mechanism: int | None = None,
               challenge: bytes | None = None) -> bytes:
    """AARE (Green Book Table 65): context, result, source diagnostic (acse-service-user), then
    responding-AP-title, responder-acse-requirements, mechanism name, responding authentication value and
    user-information as present."""
    body = tlv(0xA1, tlv(0x06, APP_CONTEXT_LN_CIPHERED if ciphered else APP_CONTEXT_LN))
    body += tlv(0xA2, tlv(0x02, bytes([0 if accepted else 1])))
    body += tlv(0xA3, tlv(0xA1, tlv(0x02, bytes([diagnostic]))))
    if system_title is not None:
        body += tlv(0xA4, tlv(0x04, system_title))
    if mechanism:
        body += tlv(0x88, b"\x07\x80") + tlv(0x89, MECHANISM_PREFIX + bytes([mechanism]))
    if challenge is not None:
        body += tlv(0xAA, tlv(0x80, challenge))
    body += tlv(0xBE, tlv(0x04, user_information))
    return tlv(0x61, body)
