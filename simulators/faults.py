"""Fault injection shared by the simulated meters: ``KIND[:PROBABILITY][@ADDRESS]``.

``silent`` (no answer), ``late`` (answer after the link's timeout), ``crc``
(corrupt checksum), ``exception`` (a protocol error reply), ``truncate`` (the
frame is cut short), ``garbage`` (noise bytes before the reply).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("silent", "late", "crc", "exception", "truncate", "garbage")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    probability: float = 1.0
    address: str | None = None  # None: every meter the simulator serves


def parse_fault(text: str) -> Fault:
    """``crc:0.2@3`` -> Fault('crc', 0.2, '3'); raises ValueError with a one-line reason."""
    spec, _, address = text.partition("@")
    kind, _, prob = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"fault {kind!r}: must be one of {', '.join(KINDS)}")
    try:
        p = float(prob) if prob else 1.0
    except ValueError:
        raise ValueError(f"fault {text!r}: probability {prob!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"fault {text!r}: probability must be between 0 and 1")
    return Fault(kind, p, address or None)


class FaultPlan:
    """Decides, request by request, which fault (if any) the simulator commits."""

    def __init__(self, faults: Sequence[Fault] = (), seed: int | None = None) -> None:
        self.faults = list(faults)
        self._rng = random.Random(seed)

    def pick(self, address: object) -> str | None:
        for f in self.faults:
            if f.address is not None and f.address != str(address):
                continue
            if f.probability >= 1.0 or self._rng.random() < f.probability:
                return f.kind
        return None
