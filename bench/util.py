"""Shared by the benchmarks: simulators as subprocesses, process CPU and memory from /proc."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from testkit import simproc
from testkit.services import Mosquitto, VictoriaMetrics, ensure_binaries

REPO = Path(__file__).resolve().parents[1]


class SimProcess:
    """``meterlink simulate ...`` in its own process (so its work never shares the gateway's CPU or loop),
    as a context manager around the test suite's :class:`testkit.simproc.SimProcess`."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self._sim: simproc.SimProcess | None = None
        self.where = ""

    def __enter__(self) -> SimProcess:
        self._sim = simproc.SimProcess(*self.args)
        self.where = self._sim.where
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._sim is not None:
            self._sim.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (clock ticks from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def broker_and_database(base: Path) -> Iterator[tuple[Mosquitto, VictoriaMetrics]]:
    """A private Mosquitto and VictoriaMetrics for one benchmark, stopped whatever happens."""
    ensure_binaries()
    broker = Mosquitto(base / "mq")
    vm = VictoriaMetrics(base / "vm")
    broker.start()
    try:
        vm.start()
        yield broker, vm
    finally:
        broker.close()
        vm.close()
