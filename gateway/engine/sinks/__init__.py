"""Sinks deliver journaled readings to the outside, each through its own journal cursor.

A sink never holds the only copy of a reading: it reads rows from the journal,
delivers them, and only then moves its cursor.  If the broker, the database or
the gateway dies in between, the rows are delivered again (at least once).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SinkCounters:
    delivered_batches: int = 0
    delivered_readings: int = 0
    failures: int = 0
    connected: bool = False
    last_error: str | None = None
