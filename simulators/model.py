"""What a simulated meter measures, derived from the OBIS code of each point.

One model serves every protocol: profiles name their points by standard OBIS
codes, so the simulator knows that ``1.0.32.7.0.255`` is the L1 voltage and
``1.0.1.8.0.255`` the imported active energy without a per-profile table.
Power fluctuates around a per-meter load; energy registers integrate it and
never fall.  ``frozen`` stops time, so tests can compare exactly what was served.

Every quantity depends on the seed (the load, the energy registers, and the
mains: nominal voltage, frequency offset, power factor), so two simulated
meters side by side never show the same voltage, as two real meters on one
feeder would not; :meth:`MeterModel.for_address` seeds a meter from its
address or serial number, deterministic for that address.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal

# OBIS C group -> (quantity, phase); D=7 instantaneous, D=8 energy (IEC 62056-61 / DLMS Blue Book 7.5)
_INSTANT = {
    32: ("voltage", 1), 52: ("voltage", 2), 72: ("voltage", 3), 12: ("voltage", 0),
    31: ("current", 1), 51: ("current", 2), 71: ("current", 3), 91: ("current_n", 0), 11: ("current", 0),
    36: ("p", 1), 56: ("p", 2), 76: ("p", 3), 16: ("p", 0),
    21: ("p", 1), 41: ("p", 2), 61: ("p", 3), 1: ("p", 0),
    23: ("q", 1), 43: ("q", 2), 63: ("q", 3), 3: ("q", 0),
    151: ("q", 1), 171: ("q", 2), 191: ("q", 3), 131: ("q", 0),  # signed Q (dlt645 dis.SIGNED_REACTIVE_POWER_C)
    29: ("s", 1), 49: ("s", 2), 69: ("s", 3), 9: ("s", 0),
    33: ("pf", 1), 53: ("pf", 2), 73: ("pf", 3), 13: ("pf", 0),
    14: ("frequency", 0),
}
def address_seed(address: str | int) -> int:
    """The seed of a meter address or serial number (CRC-32 of its text: stable across runs and machines)."""
    return zlib.crc32(str(address).encode())


_ENERGY = {1: "ea_import", 2: "ea_export", 15: "ea_total", 3: "er_import", 4: "er_export", 16: "ea_net"}


@dataclass
class MeterModel:
    """A three-phase (or single-phase) load with slowly wandering power and integrating registers."""

    seed: int = 1
    phases: int = 3
    frozen: bool = False
    start: float = field(default_factory=time.time)
    _t: float = 0.0
    _energy: dict[str, float] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._base = [self._rng.uniform(600.0, 2500.0) for _ in range(3)]
        self._phase_shift = [self._rng.uniform(0, 2 * math.pi) for _ in range(3)]
        self._energy = {
            "ea_import": self._rng.uniform(1000.0, 50000.0),
            "ea_export": self._rng.uniform(0.0, 500.0),
            "er_import": self._rng.uniform(100.0, 5000.0),
            "er_export": self._rng.uniform(0.0, 300.0),
        }
        # drawn after the load and registers, so a seed's power and energy stay what they always were
        self._volts = self._rng.uniform(226.0, 236.0)  # this meter's point on the feeder
        self._volt_shift = [self._rng.uniform(-1.5, 1.5) for _ in range(3)]  # phase imbalance
        self._hz_offset = self._rng.uniform(-0.03, 0.03)
        self._pf_base = self._rng.uniform(0.88, 0.95)
        self._t = self.start

    @classmethod
    def for_address(cls, address: str | int, *, phases: int = 3, frozen: bool = False,
                    start: float | None = None) -> MeterModel:
        """A meter seeded from its address or serial number: the same address serves the same values."""
        return cls(seed=address_seed(address), phases=phases, frozen=frozen,
                   start=time.time() if start is None else start)

    # --- instantaneous values ---------------------------------------------------

    def _power(self, phase: int, t: float) -> float:
        if phase > self.phases:
            return 0.0
        b = self._base[phase - 1]
        wobble = 0.15 * math.sin(2 * math.pi * (t - self.start) / 300.0 + self._phase_shift[phase - 1])
        return round(b * (1.0 + wobble), 1)

    def _pf(self, phase: int) -> float:
        return self._pf_base + 0.01 * phase

    def _voltage(self, phase: int, t: float) -> float:
        if phase > self.phases:
            return 0.0
        return self._volts + self._volt_shift[phase - 1] + 2.0 * math.sin((t - self.start) / 37.0 + phase)

    def advance(self, now: float | None = None) -> None:
        """Integrate energy up to ``now``: registers only ever grow."""
        if self.frozen:
            return
        now = time.time() if now is None else now
        dt = now - self._t
        if dt <= 0:
            return
        p = sum(self._power(ph, now) for ph in range(1, self.phases + 1))
        q = sum(self._power(ph, now) * math.tan(math.acos(self._pf(ph))) for ph in range(1, self.phases + 1))
        self._energy["ea_import"] += p * dt / 3.6e6
        self._energy["er_import"] += q * dt / 3.6e6
        self._t = now

    def value(self, obis: str) -> Decimal:
        """The meter's current value for an OBIS code (0 for codes the model does not know)."""
        self.advance()
        t = self._t
        try:
            a, _b, c, d, e, _f = (int(x) for x in obis.split("."))
        except ValueError:
            return Decimal(0)
        if a != 1:
            return Decimal(0)
        if d == 8:
            kind = _ENERGY.get(c)
            if kind is None:
                return Decimal(0)
            if kind == "ea_total":
                v = self._energy["ea_import"] + self._energy["ea_export"]
            elif kind == "ea_net":
                v = self._energy["ea_import"] - self._energy["ea_export"]
            else:
                v = self._energy[kind]
            if e:  # tariff registers: a fixed share of the total, so tariffs 1-4 sum to the total
                v *= (0.1, 0.3, 0.4, 0.2)[(e - 1) % 4]
            return Decimal(f"{v:.2f}")
        kind_phase = _INSTANT.get(c)
        if kind_phase is None:
            return Decimal(0)
        kind, phase = kind_phase
        phases = [phase] if phase else list(range(1, self.phases + 1))
        if kind == "voltage":
            return Decimal(f"{self._voltage(phase or 1, t):.1f}")
        if kind == "frequency":
            return Decimal(f"{50.0 + self._hz_offset + 0.02 * math.sin((t - self.start) / 23.0):.2f}")
        if kind == "pf":
            return Decimal(f"{sum(self._pf(p) for p in phases) / len(phases):.3f}")
        if kind in ("p", "q", "s"):
            total = 0.0
            for ph in phases:
                p = self._power(ph, t)
                if kind == "q":
                    p *= math.tan(math.acos(self._pf(ph)))
                elif kind == "s":
                    p /= self._pf(ph)
                total += p
            return Decimal(f"{total:.1f}")
        if kind == "current":
            ph = phase or 1
            v = self._power(ph, t) / self._pf(ph) / self._voltage(ph, t) if ph <= self.phases else 0.0
            return Decimal(f"{v:.3f}")
        if kind == "current_n":
            return Decimal("0.150")
        return Decimal(0)
