"""Sinks deliver journaled readings to the outside, each through its own journal cursor.

A sink never holds the only copy of a reading: it reads rows from the journal,
delivers them, and only then moves its cursor.  If the broker, the database or
the gateway dies in between, the rows are delivered again (at least once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class SinkCounters:
    delivered_messages: int = 0
    delivered_readings: int = 0
    failures: int = 0
    connected: bool = False
    last_error: str | None = None


class Sink(Protocol):
    """What the gateway needs of a sink: a name (its journal cursor), counters, a run loop, a clean stop."""

    name: str
    counters: SinkCounters

    async def run(self) -> None:
        """Deliver journaled rows for good: reconnect on failure, never end on its own."""

    async def stop(self) -> None:
        """On a clean stop: say so outside (MQTT's offline status), then let go of connections."""
