"""Request planning for Modbus: the fewest block reads that cover a meter's due points.

Pure functions.  A block never exceeds the meter's register limit, never mixes
function codes, bridges a gap of unused registers only up to ``max_gap``, and
covers every point exactly once.  Blocks a meter refused (exception 02, illegal
data address, typically because the block spans registers the meter does not
map) are remembered by the driver and passed in as ``refused``: a refused block
is planned as one read per point from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.config import Point


@dataclass(frozen=True, slots=True)
class Block:
    function: str  # input | holding
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def span(self) -> tuple[str, int, int]:
        return (self.function, self.address, self.count)


def plan_blocks(points: Sequence[Point], *, max_registers: int = 125, max_gap: int = 0,
                refused: Iterable[tuple[str, int, int]] = (),
                forbidden: Iterable[tuple[str, int, int]] = ()) -> list[Block]:
    refused_spans = set(refused)
    no_go = list(forbidden)
    blocks: list[Block] = []
    for function in ("input", "holding"):
        mine = sorted((p for p in points if p.function == function), key=lambda p: (p.register or 0, p.words))
        current: list[Point] = []
        start = end = 0  # [start, end) registers covered by ``current``
        for p in mine:
            reg = p.register or 0
            p_end = reg + p.words
            bridges_forbidden = any(fn == function and first < reg and last >= end for fn, first, last in no_go)
            if current and reg - end <= max_gap and max(end, p_end) - start <= max_registers \
                    and not bridges_forbidden:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.extend(_emit(function, start, end, current, refused_spans))
            current, start, end = [p], reg, p_end
        if current:
            blocks.extend(_emit(function, start, end, current, refused_spans))
    return blocks


def _emit(function: str, start: int, end: int, points: list[Point], refused: set[tuple[str, int, int]]) -> list[Block]:
    if (function, start, end - start) in refused and len(points) > 1:
        return [Block(function, p.register or 0, p.words, (p,)) for p in points]
    return [Block(function, start, end - start, tuple(points))]


def split_block(block: Block) -> list[Block]:
    """One read per point, after the meter refused the merged block."""
    return [Block(block.function, p.register or 0, p.words, (p,)) for p in block.points]
