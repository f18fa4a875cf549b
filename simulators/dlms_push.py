"""Push frames of a simulated P1/HAN port: DataNotifications in HDLC UI frames.

A notification carries a self-descriptive list (as Aidon and IDIS P1 ports
send): ``array of structure {logical name, value, scaler_unit}`` for every
register of the meter and the clock, with the meter's time in the header.
It may be ciphered (general-glo-ciphering, security suite 0), cut into
general-block-transfer blocks, and the HDLC information field is segmented
at ``max_info`` bytes; the first segment starts with the LLC header E6 E7 00.
"""

from __future__ import annotations

from meterlink.drivers.dlms import apdu as ap
from meterlink.drivers.dlms import axdr, hdlc
from meterlink.drivers.dlms.hdlc import Frame, HdlcAddress, Kind
from meterlink.drivers.dlms.push import encipher
from meterlink.simulators.dlms_meter import CLOCK, SimMeter


def notification(meter: SimMeter, invoke_id: int) -> bytes:
    items = [axdr.structure(axdr.octets(ap.obis_bytes(CLOCK)), meter.clock_data())]
    for obis, obj in sorted(meter.objects.items()):
        if obj.kind != "register":
            continue
        value, su = meter.register(obis)
        items.append(axdr.structure(axdr.octets(ap.obis_bytes(obis)), value, su))
    when = meter.cosem_time(status=0)
    return ap.DataNotification(long_invoke_id=invoke_id, date_time=when, body=axdr.array(items)).to_bytes()


def push_frames(meter: SimMeter, invoke_id: int, *, cipher: bool = False, gbt: int = 0, max_info: int = 128,
                security_control: int = 0x30, key: bytes | None = None) -> list[bytes]:
    """The HDLC frames of one notification, ready for the wire.

    ``security_control`` as the meter sets it (0x30 authenticated encryption,
    0x20 encryption only, 0x10 authentication only, +0x40 broadcast key, +1
    suite 1); ``key`` the key it ciphers with (default: its encryption key).
    """
    apdu = notification(meter, invoke_id)
    if cipher:
        meter.server_ic += 1
        text = encipher(security_control, meter.system_title, meter.server_ic, key or meter.encryption_key,
                        meter.authentication_key, apdu)
        apdu = ap.Ciphered(tag=ap.GENERAL_GLO_CIPHERING, system_title=meter.system_title,
                           security_control=security_control, invocation_counter=meter.server_ic,
                           ciphered=text).to_bytes()
    apdus = [b.to_bytes() for b in ap.split_blocks(apdu, gbt)] if gbt else [apdu]
    client = HdlcAddress(16, None, 1)
    server = HdlcAddress(meter.logical, meter.physical)
    out = []
    for one in apdus:
        info = hdlc.LLC_RESPONSE + one
        chunks = [info[i:i + max_info] for i in range(0, len(info), max_info)]
        for n, chunk in enumerate(chunks):
            out.append(hdlc.encode_frame(Frame(kind=Kind.UI, destination=client, source=server,
                                               segmented=n < len(chunks) - 1, info=chunk)))
    return out
