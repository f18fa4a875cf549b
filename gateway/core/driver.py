"""The one driver interface every protocol implements.

A driver owns one link (an RS-485 bus or a TCP endpoint) and the protocol
spoken on it.  The scheduler hands it *all* of one meter's points that are due
at one moment as one batch, so the driver can read them in as few
transactions as the protocol allows (block reads, GET-with-list, ``FF``
data-identifier blocks).  The scheduler guarantees one ``read`` at a time per
driver: a link carries one transaction at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from meterlink.core.config import Link, Meter, Point
from meterlink.core.errors import FrameError, MeterTimeout
from meterlink.core.reading import Quality

T = TypeVar("T")


@dataclass(slots=True, unsafe_hash=True)
class PointResult:
    """What a driver made of one point: a value, or why there is none.

    ``unit`` is the unit ``value`` is in as the meter reports it (DLMS
    scaler-unit) or the standard defines it for the identifier (DL/T 645
    appendix A); None when the driver only knows the point's configured unit.
    :func:`meterlink.engine.scheduler.to_readings` turns it into the reading's unit
    (CONTRACT section 5): the configured unit, converted where the meter
    reports another multiple, else this one.
    """

    point: Point
    value: Decimal | None
    quality: Quality = Quality.GOOD
    meter_ts: datetime | None = None
    error: str | None = None
    unit: str | None = None

    @classmethod
    def invalid(cls, point: Point, error: str) -> PointResult:
        return cls(point=point, value=None, quality=Quality.INVALID, error=error)


@dataclass(slots=True)
class LinkCounters:
    """What a link did, for utilization and error figures."""

    transactions: int = 0
    timeouts: int = 0
    frame_errors: int = 0
    rejections: int = 0


class Store(Protocol):
    """What a driver may keep across restarts, in the journal (so it is as durable as the readings).

    ``last_meter_ts`` is the newest meter time stamp journaled for a meter's
    point (load profiles, frozen data): where a backfill starts.  ``get_state``
    and ``set_state`` keep small driver values such as a DLMS invocation
    counter that must never go backwards.
    """

    def last_meter_ts(self, meter: str, obis: str) -> datetime | None: ...

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...


class Driver(Protocol):
    """One link's protocol driver; created by :func:`meterlink.drivers.create_driver`."""

    link: Link
    counters: LinkCounters

    async def open(self) -> None:
        """Open the channel; raise :class:`meterlink.core.errors.LinkError` with a plain reason when it cannot."""

    async def close(self) -> None: ...

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        """Read ``points`` of ``meter`` in as few transactions as possible.

        Per-point problems (an exception reply, an impossible value) come back
        as ``invalid`` results.  When the meter as a whole cannot be read (it
        does not answer within the link's timeout x tries, or the link is
        down) the driver raises :class:`MeterTimeout` or :class:`LinkError`
        at once instead of trying the remaining transactions, so a silent
        meter costs the bus at most one timeout x tries per cycle.
        """
        ...


async def with_tries(link: Link, counters: LinkCounters, attempt: Callable[[], Awaitable[T]]) -> T:
    """One transaction with the link's tries: the one retry loop of every driver.

    Each try is counted; a timeout or a bad frame is retried up to ``link.tries``
    times, anything else (a meter's error reply, a lost link) goes up at once.
    After the last try the error names how many there were, so one silent
    meter costs the bus exactly timeout x tries.
    """
    last: MeterTimeout | FrameError | None = None
    for _ in range(link.tries):
        counters.transactions += 1
        try:
            return await attempt()
        except MeterTimeout as exc:
            counters.timeouts += 1
            last = exc
        except FrameError as exc:
            counters.frame_errors += 1
            last = exc
    if isinstance(last, FrameError):
        raise FrameError(f"{last} (after {link.tries} tries)" if link.tries > 1 else str(last))
    raise MeterTimeout(f"no reply within {link.timeout:g} s x {link.tries} tries") from last
