"""The one backoff: capped exponential delays with optional jitter, for every retry loop.

A silent meter, a lost broker, a database outage, a link task that crashed and a
live view that lost its broker all wait the same way: the first delay, doubled
per failure up to a cap, and started again after a success.  Jitter (a random
fraction of the delay taken off) keeps many gateways that lost one broker from
reconnecting in the same instant.  The exponent is bounded so a long outage
never overflows a float.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    first: float
    cap: float
    jitter: float = 0.0  # 0.5: each delay is drawn from [delay/2, delay]
    failures: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next(self, *, cap: float | None = None) -> float:
        """The delay before the next try, after one more failure (``cap``: this failure's own ceiling)."""
        self.failures += 1
        delay = min(self.first * 2 ** min(self.failures - 1, 64), self.cap if cap is None else cap)
        if self.jitter:
            delay *= self._rng.uniform(1.0 - self.jitter, 1.0)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again."""
        self.failures = 0
