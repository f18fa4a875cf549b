"""A DLMS/COSEM client association: AARQ/AARE with no security, LLS or HLS-GMAC, ciphering, GET, RLRQ.

:class:`Association` is sans-io: it builds request APDUs and checks response
APDUs (ACSE through dlms-cosem's ``acse`` classes, the rest through
:mod:`meterlink.drivers.dlms.apdu`).  :class:`Session` drives one over a
:class:`~meterlink.drivers.dlms.link.ApduChannel` from asyncio and adds the GET service:
block transfer, GET-with-list within the negotiated PDU size.

Security suite 0 (Green Book 9.2.3.4.5): AES-GCM-128, 12-byte tags, the
initialisation vector is the sender's system title and invocation counter.
HLS mechanism 5 (GMAC, Green Book 9.2.7.4): the meter's challenge StoC comes
in the AARE; the client answers with action ``reply_to_HLS_authentication``
on the current association (class 15, 0.0.40.0.0.255, method 1) carrying
``SC || IC || GMAC(SC || AK || StoC)``, and checks the meter's answer
``SC || IC' || GMAC(SC || AK || CtoS)`` with the meter's system title.

The client invocation counter must grow with every ciphered APDU, across
associations and across restarts (a meter refuses a counter it has seen):
``next_ic`` hands out values and the driver persists them before they reach
the wire.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dlms_cosem import enumerations
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import SecurityControlField, decrypt, encrypt, gmac

from meterlink.core.errors import FrameError, MeterlinkError, MeterRejected
from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr
from meterlink.drivers.dlms.apdu import AttributeRequest, Conformance, DataAccessResult
from meterlink.drivers.dlms.link import ApduChannel, SessionLost

NONE, LLS, HLS_GMAC = "none", "lls", "hls-gmac"
DEFAULT_CLIENT_TITLE = b"MTL\x00\x00\x00\x00\x01"  # "MTL" + 5 bytes; Green Book 4.3.4: 3-letter manufacturer id first
CLIENT_MAX_PDU = 0xFFFF
PROPOSED = (Conformance.BLOCK_TRANSFER_WITH_GET | Conformance.MULTIPLE_REFERENCES | Conformance.GET
            | Conformance.SELECTIVE_ACCESS | Conformance.ACTION | Conformance.PRIORITY_MGMT)
ASSOCIATION_LN = ap.AttributeRef(15, "0.0.40.0.0.255", 1)  # method 1: reply_to_HLS_authentication
SC_AUTH_ENC = 0x30  # security suite 0, authenticated and encrypted
SC_AUTH = 0x10      # security suite 0, authenticated only (GMAC)
_SERVICE_GLO = {ap.GET_REQUEST: ap.GLO_GET_REQUEST, ap.ACTION_REQUEST: ap.GLO_ACTION_REQUEST}  # Green Book 9.5

_DIAGNOSTICS = {
    1: "no reason given", 2: "application context name not supported", 3: "calling AP title not recognized",
    11: "authentication mechanism name not recognised", 12: "authentication mechanism name required",
    13: "authentication failure (wrong password or key?)", 14: "authentication required",
}


@dataclass(frozen=True, kw_only=True)
class Security:
    """How to associate; secrets stay out of ``repr`` so they never reach a log."""

    mechanism: str = NONE
    password: bytes | None = field(default=None, repr=False)
    encryption_key: bytes | None = field(default=None, repr=False)
    authentication_key: bytes | None = field(default=None, repr=False)
    client_title: bytes = DEFAULT_CLIENT_TITLE

    @property
    def ciphered(self) -> bool:
        return self.encryption_key is not None


class AssociationRefused(MeterRejected):
    """The meter answered the AARQ but did not accept the association."""


class Association:
    """One association's security state (sans-io)."""

    def __init__(self, security: Security, next_ic: Callable[[], int]) -> None:
        self.security = security
        self.next_ic = next_ic
        self.server_title: bytes | None = None
        self.server_ic = -1
        self.conformance = 0
        self.server_max_pdu = 0xFFFF
        self.hls_pending = False
        self._ctos = os.urandom(16) if security.mechanism == HLS_GMAC else b""
        self._stoc = b""
        if security.mechanism == HLS_GMAC and (security.encryption_key is None or security.authentication_key is None):
            raise ValueError("hls-gmac needs an encryption key and an authentication key")

    # --- ACSE ---

    def aarq(self) -> bytes:
        s = self.security
        conformance = PROPOSED | (Conformance.GENERAL_PROTECTION if s.ciphered else 0)
        initiate = ap.initiate_request(conformance, CLIENT_MAX_PDU)
        content: xdlms.InitiateRequest | xdlms.GlobalCipherInitiateRequest
        if s.ciphered:
            # glo-initiateRequest (tag 33): SC, IC, ciphered InitiateRequest || tag (Green Book 9.2.7.2.4)
            ic = self.next_ic()
            content = xdlms.GlobalCipherInitiateRequest(SecurityControlField.from_bytes(bytes([SC_AUTH_ENC])), ic,
                                                        self._encrypt(initiate, ic))
        else:
            content = xdlms.InitiateRequest(
                proposed_conformance=xdlms.Conformance.from_bytes(b"\x00" + int(conformance).to_bytes(3, "big")),
                client_max_receive_pdu_size=CLIENT_MAX_PDU)
            assert content.to_bytes() == initiate
        mechanism = {NONE: None, LLS: enumerations.AuthenticationMechanism.LLS,
                     HLS_GMAC: enumerations.AuthenticationMechanism.HLS_GMAC}[s.mechanism]
        value = s.password if s.mechanism == LLS else (self._ctos if s.mechanism == HLS_GMAC else None)
        aarq = acse.ApplicationAssociationRequest(
            ciphered=s.ciphered, system_title=s.client_title if s.ciphered else None, authentication=mechanism,
            authentication_value=value, user_information=acse.UserInformation(content=content))
        return bytes(aarq.to_bytes())

    def on_aare(self, raw: bytes) -> None:
        if not raw or raw[0] != ap.AARE:
            if raw and raw[0] == ap.EXCEPTION_RESPONSE:
                raise AssociationRefused("association refused: " + ap.decode_exception_response(raw).text())
            raise FrameError(f"expected an AARE, got {raw[:4].hex(' ')}")
        try:
            aare = acse.ApplicationAssociationResponse.from_bytes(raw)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise FrameError(f"malformed AARE: {exc}") from None
        self.server_title = aare.system_title
        if aare.result != enumerations.AssociationResult.ACCEPTED:
            diag = getattr(aare.result_source_diagnostics, "value", aare.result_source_diagnostics)
            why = _DIAGNOSTICS.get(int(diag), f"diagnostic {diag}") if isinstance(
                aare.result_source_diagnostics, enumerations.AcseServiceUserDiagnostics) else f"provider diagnostic {diag}"
            extra = ""
            with contextlib.suppress(FrameError):
                raw_ui = ap.aare_user_information(raw) or b""
                if raw_ui[:1] == bytes([ap.CONFIRMED_SERVICE_ERROR]) and raw_ui[-1:] != b"\x00":
                    extra = f"; {ap.confirmed_service_error_text(raw_ui)}"  # unless it only says "other"
            raise AssociationRefused(f"association refused by the meter: {why}{extra}", int(diag))
        # the user-information as the meter sent it, not dlms-cosem's re-encoding (ap.aare_user_information)
        ui = ap.aare_user_information(raw)
        if not ui:
            raise FrameError("AARE without user-information (no InitiateResponse)")
        if ui[:1] == bytes([ap.GLO_INITIATE_RESPONSE]):
            if not self.security.ciphered:
                raise FrameError("the meter ciphers the association but no keys are configured")
            n, pos = axdr.decode_length(ui, 1)
            body = ui[pos:pos + n]
            ic = int.from_bytes(body[1:5], "big")
            self._check_server_ic(ic)
            ui = self._decrypt(body[0], ic, body[5:])
            self.server_ic = ic
        elif self.security.ciphered:
            raise FrameError("the AARE is not ciphered although the association is")
        if ui[:1] == bytes([ap.CONFIRMED_SERVICE_ERROR]):
            raise AssociationRefused(f"association refused by the meter: {ap.confirmed_service_error_text(ui)}")
        initiate = ap.parse_initiate(ui)
        self.conformance = initiate.conformance
        self.server_max_pdu = initiate.max_receive_pdu or 0xFFFF
        if self.security.mechanism == HLS_GMAC:
            if not aare.authentication_value or not self.server_title:
                raise FrameError("HLS-GMAC AARE without the meter's challenge or system title")
            self._stoc = bytes(aare.authentication_value)
            self.hls_pending = True

    # --- HLS pass 3 and 4 ---

    def hls_request(self) -> bytes:
        """action-request reply_to_HLS_authentication with f(StoC), ciphered like every APDU of the association."""
        s = self.security
        assert s.encryption_key is not None and s.authentication_key is not None
        ic = self.next_ic()
        tag = gmac(SecurityControlField.from_bytes(bytes([SC_AUTH])), s.client_title, ic, s.encryption_key,
                   s.authentication_key, self._stoc)
        f_stoc = bytes([SC_AUTH]) + ic.to_bytes(4, "big") + tag
        req = (bytes([ap.ACTION_REQUEST, 1, ap.invoke_byte(1)]) + ASSOCIATION_LN.to_bytes() + b"\x01"
               + axdr.encode(axdr.octets(f_stoc)))
        return self.protect(req)

    def on_hls_response(self, raw: bytes) -> None:
        before = self.server_ic  # the counter of the AARE: f(CtoS) must come after it
        plain = self.unprotect(raw)
        self.hls_pending = False
        if len(plain) < 5 or plain[0] != ap.ACTION_RESPONSE or plain[1] != 1:
            raise FrameError(f"expected an action-response to the HLS reply, got {plain[:4].hex(' ')}")
        if plain[3] != 0:
            raise AssociationRefused(f"HLS authentication failed: the meter refused our f(StoC) (action result "
                                     f"{plain[3]}; wrong authentication or encryption key?)", plain[3])
        if len(plain) < 6 or plain[4] != 1 or plain[5] != 0:
            raise AssociationRefused("HLS authentication failed: the meter returned no f(CtoS)")
        data = axdr.decode_all(plain[6:])
        f_ctos = data.value if isinstance(data.value, bytes) else b""
        s = self.security
        assert s.encryption_key is not None and s.authentication_key is not None and self.server_title
        if len(f_ctos) != 17:
            raise AssociationRefused("HLS authentication failed: malformed f(CtoS) from the meter")
        ctos_ic = int.from_bytes(f_ctos[1:5], "big")
        expected = gmac(SecurityControlField.from_bytes(f_ctos[:1]), self.server_title, ctos_ic, s.encryption_key,
                        s.authentication_key, self._ctos)
        if expected != f_ctos[5:]:
            raise AssociationRefused("HLS authentication failed: the meter's f(CtoS) does not verify "
                                     "(it does not hold our keys)")
        # Green Book 9.2.7.4: f(CtoS) carries the meter's invocation counter; one not above the AARE's is a
        # replayed pass 4 (checked after the GMAC verified, so a garbled f(CtoS) moves nothing)
        if ctos_ic <= before:
            raise AssociationRefused(f"HLS authentication failed: the invocation counter in the meter's f(CtoS) "
                                     f"({ctos_ic}) is not above its AARE's ({before}): replay?")
        self.server_ic = max(self.server_ic, ctos_ic)

    # --- protection ---

    def protect(self, plain: bytes) -> bytes:
        """``plain`` ciphered as the meter granted: general-glo-ciphering only with general-protection.

        Green Book 9.3 ("xDLMS APDUs"): general-glo-ciphering (``DB``) is
        usable only where the AARE's conformance grants general-protection;
        otherwise each service has its own glo APDU (glo-get-request ``C8``,
        glo-action-request ``CB``), as Gurux's ``GXDLMS.getGloMessage`` picks.
        """
        if not self.security.ciphered:
            return plain
        ic = self.next_ic()
        tag = ap.GENERAL_GLO_CIPHERING
        if not self.conformance & Conformance.GENERAL_PROTECTION:
            tag = _SERVICE_GLO.get(plain[0], 0)
            if not tag:
                raise FrameError(f"no service-specific ciphering for APDU {plain[0]:#04x} and the meter did not "
                                 "grant general-protection")
        return ap.Ciphered(tag=tag, system_title=self.security.client_title, security_control=SC_AUTH_ENC,
                           invocation_counter=ic, ciphered=self._encrypt(plain, ic)).to_bytes()

    def unprotect(self, raw: bytes) -> bytes:
        if not raw:
            raise FrameError("empty APDU from the meter")
        tag = raw[0]
        if tag in (ap.GENERAL_GLO_CIPHERING, ap.GLO_GET_RESPONSE, ap.GLO_ACTION_RESPONSE):
            if not self.security.ciphered:
                raise FrameError("ciphered APDU from the meter but no keys are configured")
            c = ap.decode_ciphered(raw)
            self._check_server_ic(c.invocation_counter)
            plain = self._decrypt(c.security_control, c.invocation_counter, c.ciphered)
            self.server_ic = c.invocation_counter  # only once the tag verified: a forged APDU must not move it
            return plain
        if self.security.ciphered and tag not in (ap.EXCEPTION_RESPONSE, ap.RLRE):
            raise FrameError(f"unciphered APDU {tag:#04x} in a ciphered association")
        return raw

    def _encrypt(self, plain: bytes, ic: int) -> bytes:
        s = self.security
        assert s.encryption_key is not None and s.authentication_key is not None
        return bytes(encrypt(SecurityControlField.from_bytes(bytes([SC_AUTH_ENC])), s.client_title, ic,
                             s.encryption_key, plain, s.authentication_key))

    def _decrypt(self, sc: int, ic: int, text: bytes) -> bytes:
        s = self.security
        assert s.encryption_key is not None and s.authentication_key is not None
        if sc & 0x30 != 0x30:
            raise FrameError(f"security control {sc:#04x}: only authenticated encryption is supported")
        if not self.server_title:
            raise FrameError("ciphered APDU before the meter sent its system title")
        try:
            return bytes(decrypt(SecurityControlField.from_bytes(bytes([sc])), self.server_title, ic, s.encryption_key,
                                 text, s.authentication_key))
        except Exception as exc:  # dlms_cosem.exceptions.DecryptionError: wrong keys or a tampered APDU
            raise FrameError("cannot decipher the meter's APDU: authentication tag does not verify "
                             "(wrong encryption or authentication key?)") from exc

    def _check_server_ic(self, ic: int) -> None:
        """Refuse a counter already seen; the caller records it only after the GCM tag verified."""
        if ic <= self.server_ic:
            raise FrameError(f"the meter's invocation counter went backwards ({ic} after {self.server_ic}): replay?")

    def rlrq(self) -> bytes:
        return bytes(acse.ReleaseRequest(reason=enumerations.ReleaseRequestReason.NORMAL).to_bytes())


class ObjectError(MeterlinkError):
    """A per-attribute GET failure: the meter answered with a data-access-result."""

    def __init__(self, result: DataAccessResult | int) -> None:
        super().__init__(ap.result_text(result))
        self.result = result


class Session:
    """An open association over a channel; ``get``/``get_many`` return encoded Data or raise per attribute."""

    MAX_BLOCKS = 100_000

    def __init__(self, channel: ApduChannel, security: Security, next_ic: Callable[[], int],
                 on_request: Callable[[], None] | None = None) -> None:
        self.channel = channel
        self.on_request = on_request
        self.assoc = Association(security, next_ic)
        self.invoke_id = 0
        self.open = False
        self.with_list = True   # until the meter shows it cannot

    async def associate(self) -> None:
        await self.channel.connect()
        self.assoc.on_aare(await self.channel.request(self.assoc.aarq()))
        if self.assoc.hls_pending:
            self.assoc.on_hls_response(await self.channel.request(self.assoc.hls_request()))
        self.open = True
        self.with_list = bool(self.assoc.conformance & Conformance.MULTIPLE_REFERENCES)

    async def release(self) -> None:
        """RLRQ then disconnect; errors are moot here (the meter may already have gone)."""
        if self.open:
            self.open = False
            with contextlib.suppress(Exception):  # releasing a dead association must not raise
                await self.channel.request(self.assoc.rlrq())
        with contextlib.suppress(Exception):
            await self.channel.disconnect()

    def _next_invoke(self) -> int:
        self.invoke_id = (self.invoke_id + 1) % 16
        return self.invoke_id

    async def _request(self, plain: bytes) -> bytes:
        """One confirmed request; returns the plain response, raises for exception responses."""
        if self.on_request:
            self.on_request()
        raw = await self.channel.request(self.assoc.protect(plain))
        if raw[:1] == bytes([ap.EXCEPTION_RESPONSE]):
            exc = ap.decode_exception_response(raw)
            if exc.state_error == 1 and exc.service_error != 2:  # service-not-allowed: the association is gone
                self.open = False
                raise SessionLost(f"the meter no longer has our association ({exc.text()})")
            raise MeterRejected(exc.text(), exc.service_error)
        if raw[:1] in (bytes([ap.RLRE]), bytes([ap.RLRQ])):
            self.open = False
            raise SessionLost("the meter released the association")
        plain_resp = self.assoc.unprotect(raw)
        if plain_resp[:1] == bytes([ap.EXCEPTION_RESPONSE]):
            exc = ap.decode_exception_response(plain_resp)
            raise MeterRejected(exc.text(), exc.service_error)
        return plain_resp

    async def _get(self, request: bytes, invoke: int) -> ap.GetResponse:
        resp = ap.decode_get_response(await self._request(request))
        if resp.invoke_id != invoke:
            raise FrameError(f"get-response for invoke id {resp.invoke_id}, expected {invoke}")
        return resp

    async def _blocks(self, first: ap.GetResponse, invoke: int) -> bytes | DataAccessResult | int:
        """Collect a get-response-with-datablock sequence (Green Book 9.3.7 "long GET")."""
        data = bytearray()
        resp = first
        expected = 1
        while True:
            if resp.error is not None:
                return resp.error
            if resp.block_number != expected:
                raise FrameError(f"block {resp.block_number} received, {expected} expected")
            data.extend(resp.data)
            if resp.last:
                return bytes(data)
            if expected >= self.MAX_BLOCKS:
                raise FrameError(f"more than {self.MAX_BLOCKS} blocks")
            resp = await self._get(ap.get_request_next(invoke, resp.block_number), invoke)
            if resp.kind != 2:
                raise FrameError("a get-response-normal in the middle of a block transfer")
            expected += 1

    async def get(self, item: AttributeRequest) -> bytes:
        """The encoded Data of one attribute; raises :class:`ObjectError` for a data-access-result."""
        invoke = self._next_invoke()
        resp = await self._get(ap.get_request_normal(invoke, item), invoke)
        if resp.kind == 2:
            result = await self._blocks(resp, invoke)
        elif resp.kind == 1:
            result = resp.error if resp.error is not None else resp.data
        else:
            raise FrameError("get-response-with-list to a get-request-normal")
        if not isinstance(result, bytes):
            raise ObjectError(result)
        return result

    def list_capacity(self, items: Sequence[AttributeRequest]) -> int:
        """How many of ``items`` fit one get-request-with-list within the meter's PDU size (ciphering included)."""
        budget = self.assoc.server_max_pdu - 3 - 3 - (30 if self.assoc.security.ciphered else 0)
        used, n = 0, 0
        for item in items:
            size = len(item.to_bytes())
            if used + size > budget:
                break
            used += size
            n += 1
        return max(1, n)

    async def get_many(self, items: Sequence[AttributeRequest],
                       out: list[bytes | DataAccessResult | int] | None = None) -> list[bytes | DataAccessResult | int]:
        """Every item, with get-request-with-list where the meter offers it (falls back to one GET each).

        Results are appended to ``out`` as they arrive, so a caller whose
        association drops half way keeps what was read and asks for the rest.
        """
        out = [] if out is None else out
        pending = list(items)
        while pending:
            if not self.with_list or len(pending) == 1:
                item = pending.pop(0)
                try:
                    out.append(await self.get(item))
                except ObjectError as exc:
                    out.append(exc.result)
                continue
            n = self.list_capacity(pending)
            chunk, pending = pending[:n], pending[n:]
            if n == 1:
                pending.insert(0, chunk[0])
                self.with_list = False
                continue
            invoke = self._next_invoke()
            try:
                resp = await self._get(ap.get_request_with_list(invoke, chunk), invoke)
            except MeterRejected as exc:
                if exc.code == 2:  # service-not-supported: this meter has no GET-with-list after all
                    self.with_list = False
                    pending[:0] = chunk
                    continue
                raise
            if resp.kind == 2:
                collected = await self._blocks(resp, invoke)
                if not isinstance(collected, bytes):
                    out.extend([collected] * len(chunk))
                    continue
                results = ap.parse_list_results(collected)
            elif resp.kind == 3:
                results = resp.results
            else:
                raise FrameError("get-response-normal to a get-request-with-list")
            if len(results) != len(chunk):
                raise FrameError(f"get-response-with-list holds {len(results)} results for {len(chunk)} attributes")
            out.extend(results)
        return out
