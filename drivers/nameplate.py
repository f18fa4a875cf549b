"""Lists of nameplate addresses to probe: the 12 decimal digits of DL/T 645 and DL/T 698.45 meters.

Both State Grid protocols address a meter by the number printed on its
nameplate, so ``meterlink scan --range 000000000001-000000000032`` or
``--addresses FILE`` mean the same for either.
"""

from __future__ import annotations

from pathlib import Path

from meterlink.core.errors import MeterlinkError


def candidates(id_range: str | None, addresses_file: str | None) -> list[str]:
    out: list[str] = []
    if addresses_file:
        try:
            lines = Path(addresses_file).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise MeterlinkError(f"--addresses {addresses_file}: {getattr(exc, 'strerror', None) or exc}") from None
        for a in lines:
            if not (len(a) == 12 and a.isdigit()):
                raise MeterlinkError(f"--addresses {addresses_file}: {a!r} is not a 12-digit address")
            out.append(a)
    if id_range:
        lo, _, hi = id_range.partition("-")
        if not (len(lo) == 12 and lo.isdigit() and len(hi or lo) == 12 and (hi or lo).isdigit()):
            raise MeterlinkError(f"--range {id_range!r}: write 12-digit addresses, e.g. 000000000001-000000000032")
        a, b = int(lo), int(hi or lo)
        if not 0 <= b - a < 10000:
            raise MeterlinkError(f"--range {id_range!r}: at most 10,000 addresses, in increasing order")
        out.extend(f"{n:012d}" for n in range(a, b + 1))
    return out
