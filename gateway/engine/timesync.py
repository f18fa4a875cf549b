"""Meter clock synchronisation (``sync_time``), guarded the way metering departments require.

Meters freeze their billing data at midnight and at full hours, so a clock
step near those moments can move energy into the wrong interval: the command
refuses to run within 5 minutes of a full hour (midnight included).  It reads
the clock first and only corrects a drift beyond the meter's tolerance; it
reports the drift before and after.  Changing a meter is off unless the meter's
``time_sync.enabled`` is set, and every run is logged with its requester.

A meter clock that carries no zone (DL/T 645) is read and set in the meter's
``timezone`` (default: the gateway's own zone): the guard looks at the meter's
wall clock, since that is when the meter freezes, and the 08H frame carries
the meter's wall time, not the gateway's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from meterlink.core import logs, meterclock
from meterlink.core.config import Meter
from meterlink.core.errors import MeterlinkError

GUARD_MINUTES = 5


class TimeSyncRefused(MeterlinkError):
    """The sync was not attempted: disabled for the meter, or too close to a freeze time."""


def guard(now: dt.datetime) -> str | None:
    """Why a sync may not run at ``now`` (the meter's wall clock), or None."""
    if now.minute >= 60 - GUARD_MINUTES or now.minute < GUARD_MINUTES:
        nxt = "midnight" if (now.hour == 23 and now.minute >= 55) or (now.hour == 0 and now.minute < 5) \
            else "a full hour"
        return (f"refused at {now:%H:%M}: within {GUARD_MINUTES} min of {nxt}, when meters freeze their data; "
                f"try between :{GUARD_MINUTES:02d} and :{60 - GUARD_MINUTES}")
    return None


async def sync_time(driver: object, meter: Meter, *, requester: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Read the clock, correct it when it is off by more than the tolerance, read it again."""
    cfg = meter.config.time_sync
    if cfg is None or not cfg.enabled:
        raise TimeSyncRefused(f"time sync is off for meter {meter.id} (set meters.{meter.id}.time_sync.enabled)")
    if not hasattr(driver, "read_clock") or not hasattr(driver, "set_clock"):
        raise TimeSyncRefused(f"time sync is not supported for {meter.protocol} meters")
    zone = meter.config.timezone
    local_now = meterclock.wall_clock((now or dt.datetime.now()).astimezone(), zone)
    why = guard(local_now)
    if why:
        logs.warning("time sync refused", meter=meter.id, link=meter.link, requester=requester, reason=why)
        raise TimeSyncRefused(why)
    address = str(meter.address)
    select = getattr(driver, "select", None)
    if select is not None:  # a mixed bus: the meter's own driver, the port on its line
        driver = await select(meter)
    if hasattr(driver, "know_meter"):
        driver.know_meter(meter)  # type: ignore[attr-defined]  # DL/T 645: 1997 meters read C010 + C011
    before = await driver.read_clock(address, zone)  # type: ignore[attr-defined]
    result: dict[str, Any] = {"meter": meter.id, "drift_before_s": round(before.drift, 3),
                              "tolerance_s": cfg.tolerance, "synced": False}
    if abs(before.drift) <= cfg.tolerance:
        result["reason"] = "clock within tolerance"
    elif getattr(driver, "sync_window", None) is not None and abs(before.drift) > driver.sync_window:  # type: ignore[attr-defined]
        result["reason"] = (f"drift beyond +/-{driver.sync_window / 60:g} min: meters ignore a time sync that "  # type: ignore[attr-defined]
                            "large; set the clock on site")
    else:
        target = None if cfg.broadcast else address
        await driver.set_clock(target, dt.datetime.now().astimezone(), zone)  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        after = await driver.read_clock(address, zone)  # type: ignore[attr-defined]
        result["drift_after_s"] = round(after.drift, 3)
        result["synced"] = abs(after.drift) <= max(cfg.tolerance, 2.0)
        method = getattr(driver, "sync_method", "time set")
        result["method"] = f"broadcast {method}" if target is None else f"{method} to the meter"
        if not result["synced"]:
            result["reason"] = "the meter did not take the new time"
    logs.info("time sync", meter=meter.id, link=meter.link, requester=requester, synced=result["synced"],
              drift_before_s=result["drift_before_s"], drift_after_s=result.get("drift_after_s"),
              reason=result.get("reason"))
    return result
