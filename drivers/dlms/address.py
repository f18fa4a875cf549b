"""A DLMS meter's addresses as configured: client SAP, server logical and physical address.

``address: {client: 16, logical: 1, physical: 17}``; ``physical: auto`` takes
the physical address from the meter's ``serial`` with the formula of
IEC 62056-46 (Green Book 8.4.2.3) that meter vendors and Gurux
(``GXDLMSClient.GetServerAddressFromSerialNumber``) apply by default:
``SN % 10000 + 1000``, so physical addresses 1000-10999 (4-byte HDLC addresses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PUBLIC_CLIENT = 16       # Green Book 7.3.3.4: public client, no security
MANAGEMENT_CLIENT = 1    # client management process
MANAGEMENT_LOGICAL_DEVICE = 1
KEYS = ("client", "logical", "physical", "size")


@dataclass(frozen=True, slots=True, kw_only=True)
class DlmsAddress:
    client: int = PUBLIC_CLIENT
    logical: int = MANAGEMENT_LOGICAL_DEVICE
    physical: int | None = None
    size: int = 0  # HDLC server address bytes (1, 2, 4); 0: the smallest that fits


def physical_from_serial(serial: str) -> int:
    """``SN % 10000 + 1000`` over the digits of the serial number (Green Book 8.4.2.3; Gurux default formula)."""
    digits = re.sub(r"\D", "", serial)
    if not digits:
        raise ValueError(f"serial {serial!r} has no digits to compute a physical address from")
    return int(digits) % 10000 + 1000


def parse_address(raw: Any, serial: str | None = None) -> DlmsAddress:
    """The configured ``address`` mapping; raises ValueError with a one-line reason."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{raw!r} is not a DLMS address ({{client: 16, logical: 1, physical: 17}})")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (keys: {', '.join(KEYS)})")

    def number(key: str, default: int | None, lo: int, hi: int) -> int | None:
        v = raw.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{key} {v!r} is not a number {lo}-{hi}")
        return v

    client = number("client", PUBLIC_CLIENT, 0, 127)
    logical = number("logical", MANAGEMENT_LOGICAL_DEVICE, 0, 0x3FFF)
    size = number("size", 0, 0, 4)
    if size not in (0, 1, 2, 4):
        raise ValueError(f"size {size} is not an HDLC address size (1, 2 or 4)")
    phys_raw = raw.get("physical")
    physical: int | None
    if phys_raw == "auto":
        if not serial:
            raise ValueError("physical: auto needs the meter's serial (key 'serial')")
        physical = physical_from_serial(serial)
    else:
        physical = number("physical", None, 0, 0x3FFF)
    assert client is not None and logical is not None and size is not None
    return DlmsAddress(client=client, logical=logical, physical=physical, size=size)
