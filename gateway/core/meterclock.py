"""Meter clocks that carry no zone (DL/T 645, DL/T 698, DLMS with deviation "not specified").

Such a meter keeps naive local wall time in the zone it was set up in, which
need not be the gateway's: a Beijing meter read by a gateway on UTC is 8 h
ahead of UTC, not 8 h wrong.  The zone is the meter's ``timezone`` key (an
IANA name, CONTRACT section 3); without it, the gateway's own zone.

The offset is looked up per time stamp with the zone's rules, never as "the
offset now": a freeze stamped 00:00 before a daylight-saving change has the
offset of its own day, so 45 daily freezes across the change of Europe/Berlin
all land on their midnight (a fixed offset put 8 of them 1 h late).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo


def check_zone(name: str) -> str:
    """``name`` if it is an IANA zone this machine knows; ``ValueError`` with a plain reason otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)")
    try:
        _zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone known to this machine "
                         "(e.g. Asia/Shanghai, Europe/Berlin, UTC; install tzdata if none is found)") from None
    return name


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def localize(wall: dt.datetime, zone: str | None) -> dt.datetime:
    """The meter's naive wall time ``wall`` as an aware datetime, in ``zone`` (None: the gateway's zone).

    The gateway's zone is applied with ``astimezone()``, which asks the C
    library for the offset *at that time stamp* (daylight saving included).
    """
    if wall.tzinfo is not None:
        return wall
    if zone is None:
        return wall.astimezone()
    return wall.replace(tzinfo=_zone(zone))


def wall_clock(when: dt.datetime, zone: str | None) -> dt.datetime:
    """``when`` as the naive wall time a meter in ``zone`` shows (None: the gateway's zone)."""
    if when.tzinfo is None:
        when = when.astimezone()
    local = when.astimezone(None if zone is None else _zone(zone))
    return local.replace(tzinfo=None)


def zone_info(zone: str | None) -> dt.tzinfo | None:
    """The tzinfo of ``zone`` for APIs that take one (None: let them use the gateway's zone)."""
    return None if zone is None else _zone(zone)
