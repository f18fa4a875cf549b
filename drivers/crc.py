"""The CRCs of the protocols, one function per polynomial, table-driven.

* CRC-16/MODBUS: reflected polynomial 0xA001 (0x8005), init 0xFFFF, no final xor
  (Modbus over Serial Line V1.02 6.2.2); the value goes on the wire low byte first.
* CRC-16/X.25: reflected 0x8408 (0x1021), init and final xor 0xFFFF (ISO/IEC
  13239 FCS-16): the FCS of DLMS HDLC frames (IEC 62056-46) and the HCS and FCS
  of DL/T 698.45 link frames; low byte first on the wire.
"""

from __future__ import annotations


def _table(poly: int) -> tuple[int, ...]:
    out = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_MODBUS = _table(0xA001)
_X25 = _table(0x8408)


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (check value of b"123456789": 0x4B37)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _MODBUS[(crc ^ b) & 0xFF]
    return crc


def crc16_x25(data: bytes) -> bytes:
    """CRC-16/X.25 of ``data`` as the two bytes on the wire, low byte first (check value 0x906E)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _X25[(crc ^ b) & 0xFF]
    return (crc ^ 0xFFFF).to_bytes(2, "little")
