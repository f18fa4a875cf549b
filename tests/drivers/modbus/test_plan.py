"""Block planning: limits respected, every point covered exactly once, refused blocks split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meterlink.core.config import profile_points
from meterlink.drivers.modbus.plan import plan_blocks, split_block
from meterlink.drivers.modbus.points import ModbusPoint


def _point(reg: int, type_: str = "float32", function: str = "input") -> ModbusPoint:
    return ModbusPoint(obis=f"1.0.{reg % 256}.{reg // 256}.0.255", name=f"p{reg}", unit="V", interval=10,
                 register=reg, function=function, type=type_)


def test_contiguous_registers_make_one_block() -> None:
    blocks = plan_blocks([_point(0), _point(2), _point(4)])
    assert [(b.address, b.count) for b in blocks] == [(0, 6)]


def test_gap_bridged_only_up_to_max_gap() -> None:
    pts = [_point(0), _point(6)]
    assert len(plan_blocks(pts, max_gap=3)) == 2
    assert [(b.address, b.count) for b in plan_blocks(pts, max_gap=4)] == [(0, 8)]


def test_functions_never_mixed() -> None:
    blocks = plan_blocks([_point(0), _point(2, function="holding")], max_gap=10)
    assert sorted(b.function for b in blocks) == ["holding", "input"]


def test_refused_block_is_planned_point_by_point() -> None:
    pts = [_point(0), _point(4)]
    (block,) = plan_blocks(pts, max_gap=2)
    again = plan_blocks(pts, max_gap=2, refused=[block.span])
    assert [(b.address, b.count) for b in again] == [(0, 2), (4, 2)]
    assert [(b.address, b.count) for b in split_block(block)] == [(0, 2), (4, 2)]


def test_sdm630_profile_plan() -> None:
    pts = profile_points("eastron-sdm630")
    blocks = plan_blocks(pts, max_gap=0)
    assert sum(len(b.points) for b in blocks) == len(pts)
    assert all(b.count <= 125 for b in blocks)


@given(st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["uint16", "float32", "float64"]),
                          st.sampled_from(["input", "holding"])), min_size=1, max_size=60, unique_by=lambda t: t[0]),
       st.integers(1, 125), st.integers(0, 20))
def test_blocks_cover_every_point_once_within_limits(spec: list[tuple[int, str, str]], max_regs: int,
                                                     max_gap: int) -> None:
    pts = [_point(reg, t, f) for reg, t, f in spec]
    pts = [p for p in pts if p.words <= max_regs]
    blocks = plan_blocks(pts, max_registers=max_regs, max_gap=max_gap)
    covered = [p for b in blocks for p in b.points]
    assert sorted(covered, key=id) == sorted(pts, key=id)
    for b in blocks:
        assert 1 <= b.count <= max_regs
        for p in b.points:
            assert p.function == b.function
            assert b.address <= p.register and p.register + p.words <= b.address + b.count  # type: ignore[operator]


def test_blocks_never_bridge_forbidden_registers() -> None:
    pts = [_point(0), _point(10)]
    assert len(plan_blocks(pts, max_gap=20)) == 1
    blocks = plan_blocks(pts, max_gap=20, forbidden=[("input", 4, 5)])
    assert [(b.address, b.count) for b in blocks] == [(0, 2), (10, 2)]
    # a forbidden range of the other function code does not matter
    assert len(plan_blocks(pts, max_gap=20, forbidden=[("holding", 4, 5)])) == 1


@given(st.lists(st.integers(0, 200), min_size=1, max_size=40, unique=True), st.integers(0, 30),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 10)), max_size=4))
def test_planned_blocks_never_cover_forbidden(regs: list[int], max_gap: int, ranges: list[tuple[int, int]]) -> None:
    forbidden = [("input", a, a + n) for a, n in ranges]
    pts = [_point(r, "uint16") for r in regs if not any(a <= r <= b for _, a, b in forbidden)]
    for b in plan_blocks(pts, max_gap=max_gap, forbidden=forbidden):
        for _, first, last in forbidden:
            assert b.address + b.count <= first or b.address > last, (b, first, last)
