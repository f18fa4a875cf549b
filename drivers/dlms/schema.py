"""What a DLMS/COSEM meter and point are in the configuration, and what they resolve to.

A point is an object attribute: an OBIS code, its interface class (``class_id``,
3 Register by default) and the attribute (2, the value).  A meter adds its
addresses, its transport on a TCP link (HDLC or the IEC 62056-47 wrapper), and
its security: passwords and keys from files or environment variables, never
inline.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from meterlink.core.config import DefaultsBase, Duration, PointBase, protocol_models
from meterlink.drivers.dlms.checks import check_meter
from meterlink.drivers.dlms.points import DlmsPoint


class DlmsPointConfig(PointBase):
    class_id: int | None = Field(default=None, ge=0, le=65535)
    attribute: int | None = Field(default=None, ge=1, le=127)


class DlmsDefaults(DefaultsBase):
    class_id: int | None = Field(default=None, ge=0, le=65535)
    attribute: int | None = Field(default=None, ge=1, le=127)


DlmsMeterConfig, DlmsProfileConfig = protocol_models(
    "dlms", point=DlmsPointConfig, defaults=DlmsDefaults,
    meter_fields={
        "transport": (Literal["hdlc", "wrapper", "push"] | None, None),
        "auth": (Literal["none", "lls", "hls-gmac"] | None, None),
        "password_file": (str | None, None), "password_env": (str | None, None),
        "auth_key_file": (str | None, None), "auth_key_env": (str | None, None),
        "enc_key_file": (str | None, None), "enc_key_env": (str | None, None),
        # push: the broadcast key, for security control with bit 6 (0x40) set
        "broadcast_key_file": (str | None, None), "broadcast_key_env": (str | None, None),
        "client_system_title": (str | None, None),  # 8 bytes as 16 hex digits
        "serial": (str | None, None),  # the meter's serial number: physical address "auto" derives from it
        "backfill": (Duration | None, None),  # how far back a profile's first read reaches (default 1d)
    })


def make_point(_meter: Any, common: dict[str, Any], d: dict[str, Any]) -> DlmsPoint:
    return DlmsPoint(**common, class_id=d.get("class_id", 3), attribute=d.get("attribute", 2))


def address(m: Any, _link: Any) -> Any:
    if not isinstance(m.address, dict):
        raise ValueError(f"{m.address!r} is not a DLMS address ({{client: 16, logical: 1, physical: 17}})")
    return m.address


def files(m: Any) -> list[tuple[str, str | None, str]]:
    return [("password_file", m.password_file, "secret"), ("auth_key_file", m.auth_key_file, "key"),
            ("enc_key_file", m.enc_key_file, "key"), ("broadcast_key_file", m.broadcast_key_file, "key")]


def checks(m: Any, link: Any) -> list[tuple[str, str]]:
    return check_meter(m, link)
