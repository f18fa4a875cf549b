"""The simulated DLMS meter's server: association (none, LLS, HLS-GMAC), GET, and the HDLC or wrapper link.

:class:`ServerAssociation` is the application layer: it reads the AARQ
(:mod:`meterlink.simulators.dlms_acse`), answers with an AARE, checks the LLS password or
runs the HLS-GMAC exchange, deciphers and ciphers APDUs (dlms-cosem's
``security`` functions), answers GET normal / with-list / next with block
transfer above the PDU size, and releases.  :class:`HdlcServer` and
:class:`WrapperServer` are :class:`meterlink.simulators.serve.FrameHandler` byte handlers
that carry it, with the HDLC link layer a meter has (SNRM/UA with parameter
negotiation, I frames with segmentation both ways, RR, DISC, DM) and fault
injection (:mod:`meterlink.simulators.faults`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from dlms_cosem.security import SecurityControlField, decrypt, encrypt, gmac

from meterlink.core.errors import FrameError
from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr, hdlc, wrapper
from meterlink.drivers.dlms.apdu import Conformance, DataAccessResult
from meterlink.drivers.dlms.hdlc import Frame, HdlcAddress, HdlcParameters, Kind
from meterlink.simulators.dlms_acse import build_aare, parse_aarq
from meterlink.simulators.dlms_meter import SimMeter
from meterlink.simulators.faults import FaultPlan
from meterlink.simulators.serve import Reply

SUPPORTED = (Conformance.BLOCK_TRANSFER_WITH_GET | Conformance.MULTIPLE_REFERENCES | Conformance.GET
             | Conformance.SELECTIVE_ACCESS | Conformance.ACTION | Conformance.PRIORITY_MGMT
             | Conformance.GENERAL_PROTECTION)
PUBLIC_CLIENT, MANAGEMENT_CLIENT = 16, 1
MECHANISMS = {"none": 0, "lls": 1, "hls-gmac": 5}
DROP = b"DROP"   # the application asks its link layer to drop the association


@dataclass
class ServerAssociation:
    """One client's association with one simulated logical device."""

    meter: SimMeter
    client: int
    associated: bool = False
    ciphered: bool = False
    client_title: bytes = b""
    client_max_pdu: int = 0xFFFF
    conformance: int = 0
    hls_pending: bool = False
    stoc: bytes = b""
    ctos: bytes = b""
    gets: int = 0
    blocks: list[bytes] = field(default_factory=list)
    block_invoke: int = 0
    next_block: int = 0

    def handle(self, raw: bytes, fault: str | None = None) -> bytes | None:
        """The response APDU to ``raw``; ``None`` for no answer, :data:`DROP` to drop the association."""
        tag = raw[:1]
        if tag == bytes([ap.AARQ]):
            return self._aarq(raw)
        if tag == bytes([ap.RLRQ]):
            self.associated = False
            return bytes.fromhex("6303800100")  # RLRE, reason normal
        if not self.associated:
            return ap.ExceptionResponse(1, 3).to_bytes()  # service-not-allowed, other-reason
        try:
            plain = self._unprotect(raw)
        except FrameError:
            return ap.ExceptionResponse(2, 5).to_bytes()  # deciphering-error
        except _CounterError as exc:
            return ap.ExceptionResponse(1, ap.INVOCATION_COUNTER_ERROR, exc.expected).to_bytes()
        if plain[:1] == bytes([ap.ACTION_REQUEST]):
            return self._protect(self._action(plain))
        if plain[:1] != bytes([ap.GET_REQUEST]):
            return ap.ExceptionResponse(2, 2).to_bytes()  # service-unknown, service-not-supported
        if self.hls_pending:
            return ap.ExceptionResponse(1, 1).to_bytes()  # no access before HLS pass 4
        self.gets += 1
        if self.meter.drop_after is not None and self.gets > self.meter.drop_after:
            self.associated = False
            return DROP
        try:
            req = ap.decode_get_request(plain)
        except FrameError:
            return ap.ExceptionResponse(2, 2).to_bytes()
        if req.kind == 3 and not self.meter.with_list:
            return ap.ExceptionResponse(2, 2).to_bytes()
        return self._protect(self._get(req, fault))

    # --- association ---

    def _aarq(self, raw: bytes) -> bytes:
        self.associated = False
        aarq = parse_aarq(raw)
        required = "none" if self.client == PUBLIC_CLIENT else self.meter.auth
        proposed = aarq.mechanism or 0
        initiate = aarq.user_information or b""
        self.ciphered = aarq.ciphered
        self.client_title = aarq.calling_title or b""

        def reject(diagnostic: int, ui: bytes = bytes.fromhex("0e010600")) -> bytes:
            return build_aare(accepted=False, diagnostic=diagnostic, ciphered=aarq.ciphered, user_information=ui)

        if proposed != MECHANISMS[required]:
            return reject(12 if proposed == 0 else 11)  # mechanism name required / not recognised
        if required == "lls" and aarq.authentication_value != self.meter.password:
            return reject(13)  # authentication failure
        if aarq.ciphered:
            if len(self.client_title) != 8 or initiate[:1] != bytes([ap.GLO_INITIATE_REQUEST]):
                return reject(1)
            n, pos = axdr.decode_length(initiate, 1)
            body = initiate[pos:pos + n]
            ic = int.from_bytes(body[1:5], "big")
            if ic <= self.meter.last_client_ic.get(self.client, -1):
                return reject(1)
            try:
                initiate = self._decrypt(self.client_title, body[0], ic, body[5:])
            except FrameError:
                return reject(1)
            self.meter.last_client_ic[self.client] = ic
        elif required == "hls-gmac":
            return reject(1)  # HLS-GMAC needs the ciphered application context
        try:
            req = ap.parse_initiate(initiate)
        except FrameError:
            return reject(1)
        self.client_max_pdu = req.max_receive_pdu or 0xFFFF
        supported = SUPPORTED if self.meter.with_list else SUPPORTED & ~Conformance.MULTIPLE_REFERENCES
        if not self.meter.general_protection:
            supported &= ~Conformance.GENERAL_PROTECTION
        self.conformance = req.conformance & supported
        response = ap.initiate_response(self.conformance, self.meter.max_pdu)
        if aarq.ciphered:
            ic = self._server_ic()
            content = bytes([0x30]) + ic.to_bytes(4, "big") + self._encrypt(response, ic)
            response = bytes([ap.GLO_INITIATE_RESPONSE]) + axdr.encode_length(len(content)) + content
        self.associated = True
        self.gets = 0
        self.blocks = []
        if required == "hls-gmac":
            self.hls_pending = True
            self.ctos = aarq.authentication_value or b""
            self.stoc = os.urandom(16)
            return build_aare(accepted=True, diagnostic=14, ciphered=True, system_title=self.meter.system_title,
                              mechanism=5, challenge=self.stoc, user_information=response)
        self.hls_pending = False
        return build_aare(accepted=True, diagnostic=0, ciphered=aarq.ciphered,
                          system_title=self.meter.system_title if aarq.ciphered else None,
                          mechanism=MECHANISMS[required] or None, user_information=response)

    def _action(self, plain: bytes) -> bytes:
        invoke = plain[2] & 0x0F
        ref, pos = ap.AttributeRef.from_bytes(plain, 3)
        if not self.hls_pending or ref.obis != "0.0.40.0.0.255" or ref.class_id != 15 or ref.attribute != 1:
            return bytes([ap.ACTION_RESPONSE, 1, ap.invoke_byte(invoke), DataAccessResult.READ_WRITE_DENIED, 0])
        try:
            data = axdr.decode_all(plain[pos + 1:])
            f_stoc = data.value if isinstance(data.value, bytes) else b""
            expected = gmac(SecurityControlField.from_bytes(f_stoc[:1]), self.client_title,
                            int.from_bytes(f_stoc[1:5], "big"), self.meter.encryption_key,
                            self.meter.authentication_key, self.stoc)
        except (FrameError, ValueError, IndexError):
            expected, f_stoc = b"?", b""
        if expected != f_stoc[5:]:
            self.associated = False
            self.hls_pending = False
            return bytes([ap.ACTION_RESPONSE, 1, ap.invoke_byte(invoke), DataAccessResult.OTHER_REASON, 0])
        self.hls_pending = False
        ic = self._server_ic()
        tag = gmac(SecurityControlField.from_bytes(b"\x10"), self.meter.system_title, ic, self.meter.encryption_key,
                   self.meter.authentication_key, self.ctos)
        f_ctos = b"\x10" + ic.to_bytes(4, "big") + tag
        return bytes([ap.ACTION_RESPONSE, 1, ap.invoke_byte(invoke), 0, 1, 0]) + axdr.encode(axdr.octets(f_ctos))

    # --- GET ---

    def _get(self, req: ap.GetRequest, fault: str | None) -> bytes:
        limit = min(self.client_max_pdu, self.meter.max_pdu) - (48 if self.ciphered else 16)
        if req.kind == 2:
            if not self.blocks or req.invoke_id != self.block_invoke or req.block_number != self.next_block:
                self.blocks = []
                return ap.get_response_block(req.invoke_id, req.block_number + 1,
                                             DataAccessResult.NO_LONG_GET_IN_PROGRESS, last=True)
            n = self.next_block
            self.next_block += 1
            return ap.get_response_block(req.invoke_id, n + 1, self.blocks[n], last=n + 1 == len(self.blocks))
        results: list[bytes | DataAccessResult] = []
        for item in req.items:
            if fault == "exception":
                results.append(DataAccessResult.HARDWARE_FAULT)
                continue
            got = self.meter.get(item.ref.class_id, item.ref.obis, item.ref.attribute, item.selector)
            results.append(got if isinstance(got, DataAccessResult) else axdr.encode(got))
        if req.kind == 1:
            whole = ap.get_response_normal(req.invoke_id, results[0])
            if len(whole) <= limit or isinstance(results[0], DataAccessResult):
                return whole
            raw = results[0]
        else:
            whole = ap.get_response_with_list(req.invoke_id, results)
            if len(whole) <= limit:
                return whole
            raw = ap.list_results(results)
        assert isinstance(raw, bytes)
        size = max(16, limit - 16)
        self.blocks = [raw[i:i + size] for i in range(0, len(raw), size)]
        self.block_invoke = req.invoke_id
        self.next_block = 1
        return ap.get_response_block(req.invoke_id, 1, self.blocks[0], last=len(self.blocks) == 1)

    # --- protection ---

    def _server_ic(self) -> int:
        self.meter.server_ic += 1
        return self.meter.server_ic

    def _encrypt(self, plain: bytes, ic: int) -> bytes:
        return bytes(encrypt(SecurityControlField.from_bytes(b"\x30"), self.meter.system_title, ic,
                             self.meter.encryption_key, plain, self.meter.authentication_key))

    def _decrypt(self, title: bytes, sc: int, ic: int, text: bytes) -> bytes:
        try:
            return bytes(decrypt(SecurityControlField.from_bytes(bytes([sc])), title, ic, self.meter.encryption_key,
                                 text, self.meter.authentication_key))
        except Exception as exc:
            raise FrameError("deciphering failed") from exc

    def _unprotect(self, raw: bytes) -> bytes:
        if not self.ciphered:
            return raw
        general = bool(self.conformance & Conformance.GENERAL_PROTECTION)
        allowed = (ap.GENERAL_GLO_CIPHERING,) if general else (ap.GLO_GET_REQUEST, ap.GLO_ACTION_REQUEST)
        if raw[:1] not in [bytes([t]) for t in allowed]:
            # a meter that did not grant general-protection does not know general-glo-ciphering (and the reverse
            # for this simulator): the client must follow the conformance it was given
            raise FrameError(f"APDU {raw[:1].hex()} is not a ciphering this association granted")
        c = ap.decode_ciphered(raw)
        last = self.meter.last_client_ic.get(self.client, -1)
        if c.invocation_counter <= last:
            raise _CounterError(last + 1)
        plain = self._decrypt(c.system_title or self.client_title, c.security_control, c.invocation_counter,
                              c.ciphered)
        self.meter.last_client_ic[self.client] = c.invocation_counter
        return plain

    def _protect(self, plain: bytes) -> bytes:
        if not self.ciphered:
            return plain
        ic = self._server_ic()
        tag = ap.GENERAL_GLO_CIPHERING
        if not self.conformance & Conformance.GENERAL_PROTECTION:
            tag = {ap.GET_RESPONSE: ap.GLO_GET_RESPONSE, ap.ACTION_RESPONSE: ap.GLO_ACTION_RESPONSE}[plain[0]]
        return ap.Ciphered(tag=tag, system_title=self.meter.system_title, security_control=0x30,
                           invocation_counter=ic, ciphered=self._encrypt(plain, ic)).to_bytes()


class _CounterError(Exception):
    def __init__(self, expected: int) -> None:
        super().__init__(f"invocation counter below {expected}")
        self.expected = expected


class _Faults:
    """What a fault does to a reply on the wire (the 'exception' fault acts in the application)."""

    def __init__(self, plan: FaultPlan | None, late_delay: float) -> None:
        self.plan = plan or FaultPlan()
        self.late_delay = late_delay
        self.rng = random.Random(7)

    def pick(self, address: str) -> str | None:
        return self.plan.pick(address)

    def apply(self, kind: str | None, data: bytes, *, crc: int | None = None) -> list[Reply]:
        if kind == "silent":
            return []
        if kind == "late":
            return [Reply(data, self.late_delay)]
        if kind == "crc" and crc is not None:
            data = data[:crc] + bytes([data[crc] ^ 0xFF]) + data[crc + 1:]
        if kind == "truncate":
            data = data[:max(1, len(data) // 2)]
        if kind == "garbage":
            data = bytes(self.rng.randrange(256) for _ in range(7)).replace(b"\x7e", b"\x00") + data
        return [Reply(data)]


# --- HDLC -----------------------------------------------------------------------------------


@dataclass
class _HdlcConnection:
    app: ServerAssociation
    seq: hdlc.Sequencer
    address: HdlcAddress                # the meter's address as the client wrote it
    params: HdlcParameters = field(default_factory=HdlcParameters)
    rx: bytearray = field(default_factory=bytearray)
    tx: list[Frame] = field(default_factory=list)
    last: list[bytes] = field(default_factory=list)


class HdlcServer:
    """Simulated meters on one HDLC line (a multi-drop bus: several physical addresses), client side frames in."""

    def __init__(self, meters: Sequence[SimMeter], *, faults: FaultPlan | None = None, late_delay: float = 2.0,
                 max_info: int = 128) -> None:
        self.meters = {(m.logical, m.physical): m for m in meters}
        self.faults = _Faults(faults, late_delay)
        self.max_info = max_info
        self.buffer = bytearray()
        self.connections: dict[tuple[int, int | None, int], _HdlcConnection] = {}

    def feed(self, data: bytes) -> list[Reply]:
        self.buffer.extend(data)
        replies: list[Reply] = []
        while True:
            try:
                consumed, frame = hdlc.decode(self.buffer)
            except hdlc.BadFrame as exc:
                del self.buffer[:exc.consumed]
                continue
            del self.buffer[:consumed]
            if frame is None:
                return replies
            replies.extend(self._frame(frame))

    def _send(self, conn: _HdlcConnection, frames: list[Frame], fault: str | None) -> list[Reply]:
        raw = [hdlc.encode_frame(f) for f in frames]
        conn.last = raw
        out: list[Reply] = []
        for r in raw:
            out.extend(self.faults.apply(fault, r, crc=len(r) - 2))
        return out

    def _frame(self, frame: Frame) -> list[Reply]:
        dst = frame.destination
        meter = self.meters.get((dst.logical, dst.physical))
        if meter is None or frame.source.size != 1:
            return []  # another station's frame (or our own echo): a meter on a bus stays silent
        key = (dst.logical, dst.physical, frame.source.logical)
        conn = self.connections.get(key)
        fault = self.faults.pick(meter.address) if frame.kind in (Kind.SNRM, Kind.I) else None
        if frame.kind is Kind.SNRM:
            client = HdlcParameters.from_bytes(frame.info)  # the client's view
            params = HdlcParameters(max_info_tx=min(self.max_info, client.max_info_rx),
                                    max_info_rx=min(self.max_info, client.max_info_tx))
            seq = hdlc.Sequencer(own=dst, peer=frame.source, max_info=params.max_info_tx)
            conn = _HdlcConnection(ServerAssociation(meter, frame.source.logical), seq, dst, params)
            self.connections[key] = conn
            ua = Frame(kind=Kind.UA, destination=frame.source, source=dst, info=params.to_bytes())
            return self._send(conn, [ua], fault)
        if frame.kind is Kind.DISC:
            had = self.connections.pop(key, None)
            kind = Kind.UA if had is not None else Kind.DM
            return [Reply(hdlc.encode_frame(Frame(kind=kind, destination=frame.source, source=dst)))]
        if conn is None:
            if frame.kind in (Kind.I, Kind.RR):
                return [Reply(hdlc.encode_frame(Frame(kind=Kind.DM, destination=frame.source, source=dst)))]
            return []
        if frame.kind is Kind.RR:
            if conn.tx and frame.rsn == conn.tx[0].ssn:  # the client acknowledges a segment: send the next
                nxt = conn.tx.pop(0)
                return self._send(conn, [nxt], None)
            return [Reply(r) for r in conn.last]  # a poll after a lost frame: send it again
        if frame.kind is not Kind.I:
            return []
        if frame.ssn == (conn.seq.vr - 1) % 8 and conn.last:
            return [Reply(r) for r in conn.last]  # a repeated request: repeat the answer
        try:
            conn.seq.accept(frame)
        except FrameError:
            return []
        conn.rx.extend(frame.info)
        if frame.segmented:
            return self._send(conn, [conn.seq.rr()], None)
        request, conn.rx = bytes(conn.rx), bytearray()
        if request[:3] != hdlc.LLC_REQUEST:
            return []
        response = conn.app.handle(request[3:], fault)
        if response is None:
            return []
        if response == DROP:
            self.connections.pop(key, None)
            return [Reply(hdlc.encode_frame(Frame(kind=Kind.DM, destination=frame.source, source=dst)))]
        frames = conn.seq.i_frames(hdlc.LLC_RESPONSE + response)
        conn.tx = frames[1:]
        return self._send(conn, frames[:1], fault)


# --- wrapper ----------------------------------------------------------------------------------


class WrapperServer:
    """A simulated meter behind the IEC 62056-47 wrapper on one TCP connection."""

    def __init__(self, meter: SimMeter, *, faults: FaultPlan | None = None, late_delay: float = 2.0) -> None:
        self.meter = meter
        self.faults = _Faults(faults, late_delay)
        self.buffer = bytearray()
        self.apps: dict[int, ServerAssociation] = {}

    def feed(self, data: bytes) -> list[Reply]:
        self.buffer.extend(data)
        replies: list[Reply] = []
        while True:
            consumed, frame = wrapper.decode(self.buffer)  # FrameError drops the connection (serve.py)
            del self.buffer[:consumed]
            if frame is None:
                return replies
            if frame.destination != self.meter.logical:
                continue  # no such logical device: silence
            app = self.apps.setdefault(frame.source, ServerAssociation(self.meter, frame.source))
            fault = self.faults.pick(self.meter.address)
            response = app.handle(frame.apdu, fault)
            if response is None:
                continue
            if response == DROP:
                response = ap.ExceptionResponse(1, 3).to_bytes()  # service-not-allowed: the association is gone
            out = wrapper.WrapperFrame(source=self.meter.logical, destination=frame.source, apdu=response).to_bytes()
            replies.extend(self.faults.apply(fault, out, crc=len(out) - 1))
