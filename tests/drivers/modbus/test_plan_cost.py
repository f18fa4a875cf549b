"""The default plan is the wire-optimal one: gaps bridged exactly when cheaper than a new request."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from meterlink.core.config import profile_points
from meterlink.drivers.modbus.plan import Block, plan_blocks, request_overhead, split_block, wire_registers
from meterlink.drivers.modbus.points import ModbusPoint


def _point(reg: int, words: int = 2) -> ModbusPoint:
    type_ = {1: "uint16", 2: "float32", 4: "float64"}[words]
    return ModbusPoint(obis=f"1.0.{reg % 256}.{reg // 256}.0.255", name=f"p{reg}", unit="V", interval=10,
                 register=reg, function="input", type=type_)


def _cheapest(points: list[ModbusPoint], overhead: float, max_registers: int) -> float:
    """Brute force over every split of the sorted points into consecutive blocks."""
    pts = sorted(points, key=lambda p: (p.register or 0, p.words))
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=len(pts) - 1):
        groups, current = [], [pts[0]]
        for p, cut in zip(pts[1:], cuts, strict=True):
            if cut:
                groups.append(current)
                current = [p]
            else:
                current.append(p)
        groups.append(current)
        spans = [max((p.register or 0) + p.words for p in g) - (g[0].register or 0) for g in groups]
        if all(s <= max_registers for s in spans):
            best = min(best, sum(overhead + s for s in spans))
    return best


def test_overhead_per_link_type() -> None:
    # 9600 8N1 RTU: 20 frame characters + 10 ms turnaround (8.7 characters) = 28.7 chars = 14.4 registers
    assert round(request_overhead(rtu=True, baudrate=9600), 1) == 14.4
    assert request_overhead(rtu=True, baudrate=2400) < request_overhead(rtu=True, baudrate=9600)
    assert request_overhead(rtu=False) > 124  # a TCP round trip outweighs any block's bytes
    assert request_overhead(rtu=True, baudrate=9600, pause=0.02) > request_overhead(rtu=True, baudrate=9600)


def test_floats_two_registers_apart_are_one_block_on_rtu() -> None:
    """V L1, V L3, I L2, P L1, P L3 (the issue's map): 5 runs become one 18-register read."""
    pts = [_point(r) for r in (0x00, 0x04, 0x08, 0x0C, 0x10)]
    blocks = plan_blocks(pts, overhead=request_overhead(rtu=True, baudrate=9600))
    assert [(b.address, b.count) for b in blocks] == [(0, 18)]


def test_a_wide_gap_is_not_bridged_on_rtu_but_is_on_tcp() -> None:
    pts = [_point(0), _point(40)]
    assert len(plan_blocks(pts, overhead=request_overhead(rtu=True, baudrate=9600))) == 2
    assert len(plan_blocks(pts, overhead=request_overhead(rtu=False))) == 1


def test_max_gap_zero_never_reads_an_unmapped_register() -> None:
    pts = [_point(0), _point(4)]
    assert len(plan_blocks(pts, max_gap=0, overhead=request_overhead(rtu=False))) == 2


def test_user_profile_of_thirty_sdm630_points_is_two_requests_on_tcp() -> None:
    """The peer load of BENCHMARKS.md: SDM630's map as written, no max_gap, no block limit."""
    pts = profile_points("eastron-sdm630")
    blocks = plan_blocks(pts, overhead=request_overhead(rtu=False))
    assert sum(len(b.points) for b in blocks) == len(pts)
    assert len(blocks) <= 3  # input registers 0x0000..0x0156 need two 125-register reads, holding one more


def test_refused_bridging_block_is_read_as_its_contiguous_runs() -> None:
    pts = [_point(0), _point(2), _point(8), _point(10)]
    (block,) = plan_blocks(pts, overhead=request_overhead(rtu=True, baudrate=9600))
    assert [(b.address, b.count) for b in split_block(block)] == [(0, 4), (8, 4)]
    again = plan_blocks(pts, overhead=request_overhead(rtu=True, baudrate=9600), refused=[block.span])
    assert [(b.address, b.count) for b in again] == [(0, 4), (8, 4)]
    run = Block("input", 0, 4, (pts[0], pts[1]))
    assert [(b.address, b.count) for b in split_block(run)] == [(0, 2), (2, 2)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from([1, 2, 4])), min_size=1, max_size=9,
                unique_by=lambda t: t[0]),
       st.sampled_from([1200, 2400, 9600, 19200, 115200]), st.integers(8, 125))
def test_default_plan_is_within_ten_percent_of_the_cheapest(spec: list[tuple[int, int]], baud: int,
                                                           max_regs: int) -> None:
    pts = [_point(r, w) for r, w in spec]
    overhead = request_overhead(rtu=True, baudrate=baud)
    blocks = plan_blocks(pts, max_registers=max_regs, overhead=overhead)
    assert sorted((p for b in blocks for p in b.points), key=id) == sorted(pts, key=id)
    assert all(b.count <= max_regs for b in blocks)
    assert wire_registers(blocks, overhead) <= 1.10 * _cheapest(pts, overhead, max_regs) + 1e-9
