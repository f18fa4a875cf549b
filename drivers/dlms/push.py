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

Bodies are read when they are self-descriptive, as IDIS/Aidon/Kamstrup-style
lists are: structures of ``{logical name (octet-string 6), value[, scaler_unit]}``
anywhere in the body.  Positional bodies (values without logical names, as
Kaifa sends) are not mapped: their readings never appear, and a point that
never appears stays silent rather than being guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dlms_cosem.security import SecurityControlField, decrypt

from drivers.dlms import apdu as ap
from drivers.dlms import axdr, hdlc, units
from drivers.dlms.link import ByteLink, SessionLost
from gateway import logs
from gateway.config import Meter, Point
from gateway.driver import PointResult
from gateway.errors import FrameError, MeterTimeout
from gateway.reading import Quality

MAX_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class Notification:
    """One decoded DataNotification: values by logical name, and its time stamp."""

    meter_ts: datetime | None
    values: dict[str, tuple[axdr.Data, tuple[int, str] | None]]


def notification_values(n: ap.DataNotification) -> Notification:
    """The self-descriptive ``{obis, value[, scaler_unit]}`` structures of a notification body."""
    values: dict[str, tuple[axdr.Data, tuple[int, str] | None]] = {}

    def walk(d: axdr.Data) -> None:
        if d.tag not in (axdr.Tag.ARRAY, axdr.Tag.STRUCTURE):
            return
        items = d.items
        if (d.tag is axdr.Tag.STRUCTURE and len(items) in (2, 3) and items[0].tag is axdr.Tag.OCTET_STRING
                and isinstance(items[0].value, bytes) and len(items[0].value) == 6):
            su = None
            if len(items) == 3 and items[2].tag is axdr.Tag.STRUCTURE and len(items[2].items) == 2:
                scaler, unit = items[2].items
                su = (int(scaler.value), units.unit_text(int(unit.value)))
            values[ap.obis_text(items[0].value)] = (items[1], su)
            return
        for item in items:
            walk(item)

    walk(n.body)
    ts = n.date_time.to_datetime() if n.date_time is not None else None
    if ts is None and ap.CLOCK_OBIS in values:
        with contextlib.suppress(FrameError):
            ts = axdr.as_datetime(values[ap.CLOCK_OBIS][0])
    return Notification(meter_ts=ts, values=values)


class PushAssembler:
    """Sans-io: HDLC frames in, DataNotification APDUs out (segments, general-block-transfer, ciphering)."""

    def __init__(self, encryption_key: bytes | None = None, authentication_key: bytes | None = None) -> None:
        self.ek, self.ak = encryption_key, authentication_key
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
                return self.apdu(self._decipher(raw))
            if raw[:1] == bytes([ap.DATA_NOTIFICATION]):
                n = ap.decode_data_notification(raw)
                self.last_error = None
                return [n]
            raise FrameError(f"pushed APDU {raw[:1].hex()} is not a data-notification")
        except FrameError as exc:
            self.last_error = str(exc)
            return []

    def _decipher(self, raw: bytes) -> bytes:
        c = ap.decode_ciphered(raw)
        if self.ek is None:
            raise FrameError("the meter pushes ciphered notifications but no enc_key is configured")
        if c.security_control & 0x30 != 0x30 or self.ak is None:
            raise FrameError(f"security control {c.security_control:#04x}: only authenticated encryption with "
                             "enc_key and auth_key is supported")
        if not c.system_title or len(c.system_title) != 8:
            raise FrameError("ciphered notification without the meter's system title")
        try:
            return bytes(decrypt(SecurityControlField.from_bytes(bytes([c.security_control])), c.system_title,
                                 c.invocation_counter, self.ek, c.ciphered, self.ak))
        except Exception as exc:  # DecryptionError
            raise FrameError("cannot decipher the pushed notification (wrong enc_key or auth_key?)") from exc


class PushListener:
    """Listens on a push meter's serial link from the first read on; ``collect`` hands out what arrived."""

    def __init__(self, link: ByteLink, meter: Meter, timeout: float) -> None:
        from drivers.dlms.driver import _security

        sec = _security(meter)
        self.link = link
        self.timeout = timeout
        self.assembler = PushAssembler(sec.encryption_key, sec.authentication_key)
        self.queue: list[Notification] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped: str | None = None
        self.frame_errors = 0

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopped = None
            self._task = asyncio.create_task(self._run(), name=f"meterlink[{self.link.describe}].push")

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
                    frame = await self.link.receive(self._decode, time.monotonic() + 3600)
                except MeterTimeout:
                    continue
                for n in self.assembler.frame(frame):
                    try:
                        self.queue.append(notification_values(n))
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
        got, self.queue = self.queue, []
        out: list[PointResult] = []
        for n in got:
            for p in points:
                found = n.values.get(p.obis)
                if found is None:
                    continue
                data, su = found
                try:
                    value = _push_value(data, su, p)
                except ValueError as exc:
                    out.append(PointResult(point=p, value=None, quality=Quality.INVALID, meter_ts=n.meter_ts,
                                           error=str(exc)))
                    continue
                out.append(PointResult(point=p, value=value, meter_ts=n.meter_ts))
        if not out:
            logs.warning("push notifications hold none of the meter's points", meter=meter.id,
                         notifications=len(got))
        return out


def _push_value(d: axdr.Data, su: tuple[int, str] | None, p: Point) -> Decimal:
    if d.tag in (axdr.Tag.VISIBLE_STRING, axdr.Tag.OCTET_STRING, axdr.Tag.UTF8_STRING):
        text = d.value.decode("latin-1") if isinstance(d.value, bytes) else str(d.value)
        if not text.strip().isdigit():
            raise ValueError(f"the meter pushes text {text!r}, not a number")
        return Decimal(text.strip())
    value = d.number()
    if su is not None:
        scaler, unit = su
        value, _ = units.convert(units.scale(value, scaler), unit, p.unit)
    return units.plain(value)
