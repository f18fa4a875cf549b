"""Push-only DLMS meters (P1/HAN ports): DataNotifications in HDLC frames, turned into readings.

A push meter never answers a request; it sends a DataNotification every few
seconds, in HDLC UI (or I) frames, possibly segmented, possibly wrapped in
general-block-transfer, possibly AES-GCM ciphered (general-glo-ciphering,
security suite 0).  The driver interface is one ``read()`` per poll, so the
push "driver" is a listener: a task decodes everything the meter sends into a
queue from the moment the link is read first, and each ``read()`` returns the
readings received since the previous one (waiting for the first when none
came yet), with ``meter_ts`` the notification's own time stamp (its date-time,
else a clock value in its body).

Bodies are read when they are self-descriptive.  Two layouts name their values:

* IDIS/Aidon style: structures ``{logical name (octet-string 6), value[,
  scaler_unit]}`` anywhere in the body;
* Kamstrup style: one flat structure, an optional list identifier first
  (visible-string ``Kamstrup_V0001``), then logical name and value alternating
  (captured frame: amsreader-firmware ``Samples/Kamstrup/readme.md``).  It
  carries no scaler-unit: the values are the meter's integers, in units
  Kamstrup documents apart from the list (:data:`KAMSTRUP_SCALERS`), which
  the driver applies to lists that name themselves ``Kamstrup_...``, so a
  current sent as 564 reads 5.64 A.

Each value goes out with the unit the meter gives it (``PointResult.unit``),
converted to the point's unit where that is a multiple of it (Wh -> kWh); a
unit that is no multiple makes the reading invalid, as for polled registers.

Positional bodies (values without logical names, as Kaifa sends) are not
mapped: their readings never appear, and a point that never appears stays
silent rather than being guessed.

Ciphered notifications (Green Book 9.2.7.2.4, security suite 0 and 1 share
AES-GCM-128): security control ``0x30``/``0x31`` authenticated encryption,
``0x20``/``0x21`` encryption only (no tag), ``0x10``/``0x11`` authentication
only; bit 6 (``0x40``) selects the broadcast key instead of the unicast
``enc_key``.  The invocation counter of each meter (system title) must grow: a
notification with a counter already seen is a replay and is dropped; the
counter is recorded only once the notification deciphered and decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from meterlink.core import logs
from meterlink.core.config import Meter, Point
from meterlink.core.driver import PointResult
from meterlink.core.errors import FrameError, MeterTimeout
from meterlink.core.meterclock import zone_info
from meterlink.core.reading import Quality
from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr, hdlc, units
from meterlink.drivers.dlms.link import SessionLost
from meterlink.drivers.transport import Transport

MAX_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class Notification:
    """One decoded DataNotification: values by logical name, and its time stamp."""

    meter_ts: datetime | None
    values: dict[str, tuple[axdr.Data, tuple[int, str] | None]]
    clock_status: int = 0


KAMSTRUP_LIST = "Kamstrup_"
KAMSTRUP_SCALERS: dict[tuple[int, int], tuple[int, str]] = {
    (1, 7): (0, "W"), (2, 7): (0, "W"), (3, 7): (0, "var"), (4, 7): (0, "var"),
    (31, 7): (-2, "A"), (51, 7): (-2, "A"), (71, 7): (-2, "A"),
    (32, 7): (0, "V"), (52, 7): (0, "V"), (72, 7): (0, "V"),
    (1, 8): (1, "Wh"), (2, 8): (1, "Wh"), (3, 8): (1, "varh"), (4, 8): (1, "varh"),
}
"""(OBIS C, D) -> (scaler, unit) of the values in a Kamstrup HAN list (A = 1), which carries no scaler-unit.

Sources: amsreader-firmware ``Samples/Kamstrup/obisdata.md`` (a captured list
1: power 1468 = 1468 W, current 564 = 5.64 A, voltage 232 = 232 V, reactive
power 462 var) and amshan ``amshan/kamstrup.py`` ``_field_scaling_standard``
(currents 10^-2 A, energies A14/A23/R12/R34 10^1 Wh and varh, i.e. 0.01 kWh).
"""
KAMSTRUP_CT_CURRENT = -3
"""Kamstrup CT meters (meter type, 1.1.96.1.1.255, starting ``685``) send currents in mA: amshan
``_field_scaling_ct_meter``."""


def kamstrup_scaler(obis: str, meter_type: str = "") -> tuple[int, str] | None:
    """The scaler-unit of a value in a Kamstrup list (:data:`KAMSTRUP_SCALERS`); None for one it does not list."""
    a, _b, c, d, _e, _f = (int(x) for x in obis.split("."))
    su = KAMSTRUP_SCALERS.get((c, d)) if a == 1 else None
    if su is not None and su[1] == "A" and meter_type.startswith("685"):
        return KAMSTRUP_CT_CURRENT, "A"
    return su


def _is_obis(d: axdr.Data) -> bool:
    return d.tag is axdr.Tag.OCTET_STRING and isinstance(d.value, bytes) and len(d.value) == 6


def _flat_pairs(items: tuple[axdr.Data, ...]) -> list[tuple[axdr.Data, axdr.Data]] | None:
    """Kamstrup's flat list: ``[list id,] obis, value, obis, value, ...``; None for any other structure."""
    start = 0 if items and _is_obis(items[0]) else 1
    rest = items[start:]
    if len(rest) < 2 or len(rest) % 2 or (start and items[0].tag not in (axdr.Tag.VISIBLE_STRING,
                                                                          axdr.Tag.OCTET_STRING)):
        return None
    pairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest), 2)]
    if not all(_is_obis(obis) and value.tag not in (axdr.Tag.ARRAY, axdr.Tag.STRUCTURE) for obis, value in pairs):
        return None
    return pairs


def notification_values(n: ap.DataNotification, zone: tzinfo | None = None) -> Notification:
    """The logical-name-value pairs of a notification body, IDIS/Aidon or Kamstrup style (module docstring).

    A date-time with deviation "not specified" (P1 ports of meters set up in
    local time send it so) is the meter's wall time in ``zone``, the meter's
    ``timezone`` (None: the gateway's own zone).
    """
    values: dict[str, tuple[axdr.Data, tuple[int, str] | None]] = {}

    def walk(d: axdr.Data) -> None:
        if d.tag not in (axdr.Tag.ARRAY, axdr.Tag.STRUCTURE):
            return
        items = d.items
        if d.tag is axdr.Tag.STRUCTURE and len(items) in (2, 3) and _is_obis(items[0]) and not _is_obis(items[1]):
            su = None
            if len(items) == 3 and items[2].tag is axdr.Tag.STRUCTURE and len(items[2].items) == 2:
                scaler, unit = items[2].items
                su = (int(scaler.value), units.unit_text(int(unit.value)))
            values[ap.obis_text(items[0].value)] = (items[1], su)
            return
        pairs = _flat_pairs(items) if d.tag is axdr.Tag.STRUCTURE else None
        if pairs is not None:
            list_id = _text(items[0]) if not _is_obis(items[0]) else ""
            flat = {ap.obis_text(obis.value): value for obis, value in pairs}
            kamstrup = list_id.startswith(KAMSTRUP_LIST)
            meter_type = _text(flat["1.1.96.1.1.255"]) if "1.1.96.1.1.255" in flat else ""
            for obis, value in flat.items():
                values[obis] = (value, kamstrup_scaler(obis, meter_type) if kamstrup else None)
            return
        for item in items:
            walk(item)

    walk(n.body)
    ts = n.date_time.to_datetime(zone) if n.date_time is not None else None
    status = n.date_time.status if n.date_time is not None else 0
    if ts is None and ap.CLOCK_OBIS in values:
        with contextlib.suppress(FrameError):
            ts = axdr.as_datetime(values[ap.CLOCK_OBIS][0], zone)
            status = axdr.clock_status(values[ap.CLOCK_OBIS][0])
    return Notification(meter_ts=ts, values=values,
                        clock_status=0 if status == axdr.CLOCK_STATUS_NOT_SPECIFIED else status)


class PushAssembler:
    """Sans-io: HDLC frames in, DataNotification APDUs out (segments, general-block-transfer, ciphering)."""

    def __init__(self, encryption_key: bytes | None = None, authentication_key: bytes | None = None,
                 broadcast_key: bytes | None = None) -> None:
        self.ek, self.ak, self.bk = encryption_key, authentication_key, broadcast_key
        self.counters: dict[bytes, int] = {}   # system title -> newest invocation counter accepted
        self._segments = bytearray()
        self._blocks: dict[int, bytes] = {}
        self.last_error: str | None = None

    def frame(self, frame: hdlc.Frame) -> list[ap.DataNotification]:
        if frame.kind not in (hdlc.Kind.UI, hdlc.Kind.I):
            return []
        self._segments.extend(frame.info)
        if frame.segmented:
            return []
        info, self._segments = bytes(self._segments), bytearray()
        if info[:3] in (hdlc.LLC_RESPONSE, hdlc.LLC_REQUEST):
            info = info[3:]
        return self.apdu(info)

    def apdu(self, raw: bytes) -> list[ap.DataNotification]:
        try:
            if raw[:1] == bytes([ap.GENERAL_BLOCK_TRANSFER]):
                block = ap.decode_block_transfer(raw)
                if block.block_number == 1:
                    self._blocks = {}
                self._blocks[block.block_number] = block.data
                if not block.last:
                    return []
                numbers = sorted(self._blocks)
                if numbers != list(range(1, len(numbers) + 1)):
                    self._blocks = {}
                    raise FrameError(f"general-block-transfer blocks {numbers} have gaps")
                whole = b"".join(self._blocks[n] for n in numbers)
                self._blocks = {}
                return self.apdu(whole)
            if raw[:1] == bytes([ap.GENERAL_GLO_CIPHERING]):
                c = ap.decode_ciphered(raw)
                plain = self._decipher(c)
                out = self.apdu(plain)
                if out and c.system_title:
                    self.counters[c.system_title] = c.invocation_counter  # deciphered and decoded: now it counts
                return out
            if raw[:1] == bytes([ap.DATA_NOTIFICATION]):
                n = ap.decode_data_notification(raw)
                self.last_error = None
                return [n]
            raise FrameError(f"pushed APDU {raw[:1].hex()} is not a data-notification")
        except FrameError as exc:
            self.last_error = str(exc)
            return []

    def _decipher(self, c: ap.Ciphered) -> bytes:
        sc = c.security_control
        if sc & 0x0F not in (0, 1) or sc & 0x80:
            raise FrameError(f"security control {sc:#04x}: only security suites 0 and 1 without compression "
                             "are supported")
        if not sc & 0x30:
            raise FrameError(f"security control {sc:#04x} applies no protection inside a ciphered APDU")
        broadcast = bool(sc & 0x40)
        key, key_name = (self.bk, "broadcast_key") if broadcast else (self.ek, "enc_key")
        if key is None:
            raise FrameError(f"the meter pushes notifications ciphered with its {key_name.replace('_', ' ')} "
                             f"(security control {sc:#04x}) but no {key_name} is configured")
        if sc & 0x10 and self.ak is None:
            raise FrameError(f"security control {sc:#04x} authenticates the notification but no auth_key is "
                             "configured")
        if not c.system_title or len(c.system_title) != 8:
            raise FrameError("ciphered notification without the meter's system title")
        last = self.counters.get(c.system_title)
        if last is not None and c.invocation_counter <= last:
            raise FrameError(f"pushed notification with invocation counter {c.invocation_counter}, not above "
                             f"{last} already received: a replay, dropped")
        return decipher(sc, c.system_title, c.invocation_counter, key, self.ak, c.ciphered)


def decipher(sc: int, system_title: bytes, ic: int, key: bytes, ak: bytes | None, text: bytes) -> bytes:
    """AES-GCM-128 per Green Book 9.2.7.2.4 (suites 0 and 1), by the protection ``sc`` asks for.

    IV = system title || invocation counter.  Authenticated encryption: AAD =
    SC || AK, tag of 12 bytes after the ciphertext.  Encryption only: GCM with
    no tag, which is AES-CTR from counter block IV || 00000002.  Authentication
    only: the APDU in clear, then GMAC(SC || AK || APDU).
    """
    iv = system_title + ic.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        assert ak is not None
        if len(text) < 12:
            raise FrameError("ciphered notification shorter than its tag")
        gcm = Cipher(algorithms.AES(key), modes.GCM(iv, text[-12:], min_tag_length=12)).decryptor()
        gcm.authenticate_additional_data(bytes([sc]) + ak)
        try:
            return gcm.update(text[:-12]) + gcm.finalize()
        except InvalidTag as exc:
            raise FrameError("cannot decipher the pushed notification (wrong enc_key, broadcast_key or "
                             "auth_key?)") from exc
    if sc & 0x20:
        ctr = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).decryptor()
        return ctr.update(text) + ctr.finalize()
    assert ak is not None
    if len(text) < 12:
        raise FrameError("authenticated notification shorter than its tag")
    plain, tag = text[:-12], text[-12:]
    gcm = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    gcm.authenticate_additional_data(bytes([sc]) + ak + plain)
    gcm.finalize()
    if gcm.tag[:12] != tag:
        raise FrameError("the pushed notification's authentication tag does not verify (wrong auth_key?)")
    return plain


def encipher(sc: int, system_title: bytes, ic: int, key: bytes, ak: bytes | None, plain: bytes) -> bytes:
    """The reverse of :func:`decipher` (the simulated meter's side)."""
    iv = system_title + ic.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        gcm = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        assert ak is not None
        gcm.authenticate_additional_data(bytes([sc]) + ak)
        return gcm.update(plain) + gcm.finalize() + gcm.tag[:12]
    if sc & 0x20:
        ctr = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
        return ctr.update(plain) + ctr.finalize()
    assert ak is not None
    gcm = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    gcm.authenticate_additional_data(bytes([sc]) + ak + plain)
    gcm.finalize()
    return plain + gcm.tag[:12]


class PushListener:
    """Listens on a push meter's serial link from the first read on; ``collect`` hands out what arrived."""

    def __init__(self, link: Transport[Any], meter: Meter, timeout: float) -> None:
        from meterlink.drivers.dlms.driver import _hex_secret, _security

        sec = _security(meter)
        self.link = link
        self.timeout = timeout
        self.assembler = PushAssembler(sec.encryption_key, sec.authentication_key, _hex_secret(meter, "broadcast_key"))
        self.zone = zone_info(meter.config.timezone)
        self.queue: list[Notification] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped: str | None = None
        self.frame_errors = 0

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopped = None
            self._task = asyncio.create_task(self._run(), name=f"meterlink[{self.link.describe()}].push")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _decode(self, buf: bytearray) -> tuple[int, hdlc.Frame | None]:
        try:
            return hdlc.decode(buf)
        except hdlc.BadFrame as exc:
            self.frame_errors += 1
            self.assembler.last_error = str(exc)
            return exc.consumed, None

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.link.listen(self._decode, 3600)
                except MeterTimeout:
                    continue
                for n in self.assembler.frame(frame):
                    try:
                        self.queue.append(notification_values(n, self.zone))
                    except (FrameError, ValueError) as exc:
                        self.assembler.last_error = f"unreadable notification: {exc}"
                if self.queue or self.assembler.last_error:
                    self._arrived.set()
        except SessionLost as exc:
            self._stopped = str(exc)
            self._arrived.set()

    async def collect(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        self.start()
        if not self.queue:
            wait = min(MAX_WAIT, max(self.timeout, min((p.interval for p in points), default=self.timeout)))
            started = time.monotonic()
            deadline = started + wait
            while not self.queue and self._stopped is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.assembler.last_error and time.monotonic() - started >= self.timeout:
                    break  # data keeps arriving and none of it can be read: no use waiting longer
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            if self._stopped is not None:
                raise SessionLost(self._stopped)
            if not self.queue:
                if self.assembler.last_error:
                    raise FrameError(f"push data arrives but cannot be read: {self.assembler.last_error}")
                raise MeterTimeout(f"no push notification within {wait:g} s")
        from meterlink.drivers.dlms.driver import _clock_quality

        got, self.queue = self.queue, []
        out: list[PointResult] = []
        for n in got:
            for p in points:
                found = n.values.get(p.obis)
                if found is None:
                    continue
                data, su = found
                try:
                    value, unit = _push_value(data, su, p)
                except ValueError as exc:
                    out.append(PointResult(point=p, value=None, quality=Quality.INVALID, meter_ts=n.meter_ts,
                                           error=str(exc)))
                    continue
                out.append(_clock_quality(PointResult(point=p, value=value, meter_ts=n.meter_ts, unit=unit),
                                          n.clock_status))
        if not out:
            logs.warning("push notifications hold none of the meter's points", meter=meter.id,
                         notifications=len(got))
        return out


def _text(d: axdr.Data) -> str:
    if d.tag not in (axdr.Tag.VISIBLE_STRING, axdr.Tag.OCTET_STRING, axdr.Tag.UTF8_STRING):
        return ""
    return d.value.decode("latin-1") if isinstance(d.value, bytes) else str(d.value)


def _push_value(d: axdr.Data, su: tuple[int, str] | None, p: Point) -> tuple[Decimal, str | None]:
    """``(value, unit)``: scaled by the scaler-unit and in the point's unit where the meter names one (its
    unit then goes with the reading); the bare number and no unit where it names none."""
    if d.tag in (axdr.Tag.VISIBLE_STRING, axdr.Tag.OCTET_STRING, axdr.Tag.UTF8_STRING):
        text = _text(d)
        if not text.strip().isdigit():
            raise ValueError(f"the meter pushes text {text!r}, not a number")
        return Decimal(text.strip()), None
    value = d.number()
    if su is None:
        return units.plain(value), None
    scaler, unit = su
    value, unit = units.convert(units.scale(value, scaler), unit, p.unit)
    return units.plain(value), unit
