"""Shared fixtures: real services (tests/services.py) and simulated meters as subprocesses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit.simproc import SimProcess

pytest_plugins = ("testkit.services",)


@pytest.fixture
def simulate() -> Iterator[Callable[..., SimProcess]]:
    """Start ``meterlink simulate ...`` subprocesses; all are stopped after the test."""
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        sim = SimProcess(*args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
