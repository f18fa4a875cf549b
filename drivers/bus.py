"""A mixed bus: meters of several protocols, line settings or pauses on one adapter.

The field has such buses: DL/T 645 meters at 2400 8E1 and Modbus meters at
9600 8N1 on one RS-485 pair, or DL/T 698.45, 645-2007 and 645-1997 meters
side by side.  One transport owns the port; each protocol's driver gets it,
and before a meter's transaction the port is switched to that meter's line
(``Transport.reconfigure``, no reopen).  The scheduler orders due meters by
their line, so the port switches as rarely as possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meterlink.core.config import Link, Meter, Point
from meterlink.core.driver import Driver, LinkCounters, PointResult, Store
from meterlink.drivers.transport import Transport, endpoint_for


class Bus:
    """One link's driver when it carries several protocols or line settings: each read goes to the meter's driver."""

    def __init__(self, link: Link, store: Store | None, drivers: dict[str, type]) -> None:
        self.link = link
        self.transport: Transport[Any] = Transport(endpoint_for(link))
        self.drivers: dict[str, Driver] = {name: cls(link, store, transport=self.transport)
                                           for name, cls in drivers.items()}
        self._chosen: Driver | None = None
        self.switches = 0  # line changes, for the figures

    @property
    def counters(self) -> LinkCounters:
        total = LinkCounters()
        for d in self.drivers.values():
            c = d.counters
            total.transactions += c.transactions
            total.timeouts += c.timeouts
            total.frame_errors += c.frame_errors
            total.rejections += c.rejections
        return total

    async def open(self) -> None:
        await self.transport.open()

    async def close(self) -> None:
        for d in self.drivers.values():
            await d.close()
        await self.transport.close()

    async def select(self, meter: Meter) -> Driver:
        """The meter's driver, with the port on the meter's line."""
        line = meter.line or self.link.line
        if line != self.transport.line:
            self.switches += 1
            await self.transport.reconfigure(line)
        pause = meter.config.pause
        self.transport.set_pause(self.link.config.pause if pause is None else pause)
        self._chosen = self.drivers[meter.protocol]
        return self._chosen

    async def read(self, meter: Meter, points: Sequence[Point]) -> list[PointResult]:
        driver = await self.select(meter)
        return await driver.read(meter, points)

    def __getattr__(self, name: str) -> Any:
        """What only some protocols have (a clock, a meter's edition) goes to the meter's driver chosen last."""
        if self._chosen is None:
            raise AttributeError(name)
        return getattr(self._chosen, name)
