"""Lists of nameplate addresses to probe: the 12 decimal digits of DL/T 645 and DL/T 698.45 meters.

Both State Grid protocols address a meter by the number printed on its
nameplate, so ``meterlink scan --range 000000000001-000000000032`` or
``--addresses FILE`` mean the same for either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from meterlink.core.config import Link
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


async def scan_bus(link: Link, *, protocol: str, broadcast: str, hint: str, id_range: str | None,
                   addresses_file: str | None, timeout: float, progress: Callable[[str, int], Any],
                   note: Callable[[str], None],
                   find: Callable[..., Awaitable[list[tuple[str, str]]]]) -> list[tuple[str, str, str, str]]:
    """A State Grid protocol's scan: listed addresses one by one, else its ``broadcast`` read; the found meters as
    (meter id, address as YAML, how it answered, profile hint)."""
    addresses = candidates(id_range, addresses_file)
    what = f"{len(addresses)} {protocol} address(es)" if addresses else f"{protocol} {broadcast}"
    note(f"probing {link.id} ({link.describe()}) for {what}, {timeout * 1000:.0f} ms per probe")
    bar = progress(f"{link.id} {protocol}", len(addresses) or 1)
    try:
        found = await find(link, addresses, timeout, bar, note)
    finally:
        bar.close()
    return [(f"m-{a}", f'"{a}"', how, hint) for a, how in found]
