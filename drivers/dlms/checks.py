"""Configuration checks only DLMS knows: addresses, transport for the link type, security keys.

Called by :mod:`meterlink.core.config` for every ``protocol: dlms`` meter; each
problem is ``(key suffix, message)`` and becomes one line of ``meterlink check``.
Secrets are not read here (they are read when the driver starts); only their
sources are checked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from meterlink.drivers.dlms.address import DlmsAddress, parse_address
from meterlink.drivers.dlms.hdlc import HdlcAddress

if TYPE_CHECKING:
    from meterlink.core.config import SerialLinkConfig, TcpLinkConfig


def check_meter(m: Any, link: SerialLinkConfig | TcpLinkConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    serial_link = link.type == "serial"
    try:
        address = parse_address(m.address, m.serial)
    except ValueError as exc:
        problems.append(("address", str(exc)))
    else:
        hdlc_transport = m.transport == "hdlc" or (m.transport is None and serial_link)
        if hdlc_transport:
            problem = _hdlc_address_problem(address)
            if problem:
                problems.append(("address", problem))
    if m.transport == "wrapper" and serial_link:
        problems.append(("transport", "wrapper (IEC 62056-47) runs on a tcp link; a serial link carries hdlc or push"))
    if m.transport == "push" and not serial_link:
        problems.append(("transport", "push listens on a serial link (P1/HAN port)"))
    for name in ("password", "auth_key", "enc_key", "broadcast_key"):
        if getattr(m, f"{name}_file") is not None and getattr(m, f"{name}_env") is not None:
            problems.append((f"{name}_file", f"give one of {name}_file and {name}_env"))
    has = {name: getattr(m, f"{name}_file") is not None or getattr(m, f"{name}_env") is not None
           for name in ("password", "auth_key", "enc_key")}
    auth = m.auth or "none"
    if auth == "lls" and not has["password"]:
        problems.append(("password_file", "auth lls needs password_file or password_env"))
    if auth == "hls-gmac":
        for name in ("auth_key", "enc_key"):
            if not has[name]:
                problems.append((f"{name}_file", f"auth hls-gmac needs {name}_file or {name}_env"))
    # a password or keys given with another auth are left unused, not refused: CONTRACT section 3's own
    # example pairs auth: none with a password_file
    if m.client_system_title is not None and not re.fullmatch(r"[0-9A-Fa-f]{16}", m.client_system_title):
        problems.append(("client_system_title", f"{m.client_system_title!r} is not 8 bytes as 16 hex digits"))
    if (m.broadcast_key_file is not None or m.broadcast_key_env is not None) and m.transport != "push":
        problems.append(("broadcast_key_file", "a broadcast key is only read for a push meter (transport: push)"))
    if m.transport == "push" and m.auth not in (None, "none"):
        problems.append(("auth", "a push meter does not associate; leave auth out"))
    return problems


def _hdlc_address_problem(a: DlmsAddress) -> str | None:
    """Why the HDLC server address cannot reach a meter, or None.

    Green Book 8.4.2.2: a 2- or 4-byte server address carries a lower
    (physical) address; without ``physical`` it would be 0, NO_STATION, which
    no meter answers to, so every reply would go unmatched.
    """
    if a.size in (2, 4) and a.physical is None:
        return (f"size {a.size} needs physical (the lower HDLC address, e.g. 17); without it the lower address is "
                "0 (NO_STATION) and no meter answers")
    if a.physical == 0:
        return "physical 0 is NO_STATION (Green Book 8.4.2.2), which no meter answers; give the meter's own"
    try:
        HdlcAddress(a.logical, a.physical, a.size)
    except ValueError as exc:
        return str(exc)
    return None
