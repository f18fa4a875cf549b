"""Shared by the benchmarks: simulators as subprocesses, process CPU and memory from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from bench.load import free_base, write_profile
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


@contextmanager
def peer_meters(tmp: Path, meters: int, interval: str = "1s",
                broker_class: type[Mosquitto] = Mosquitto) -> Iterator[tuple[Mosquitto, Path, int]]:
    """A private broker and ``meters`` SDM630-like simulated meters, one per TCP port from ``base``.

    Yields ``(broker, profile, base)``; everything is stopped whatever happens.
    """
    ensure_binaries()
    broker = broker_class(tmp / "mq")
    broker.start()
    try:
        profile = write_profile(tmp / "bench-sdm630-30.yaml", interval)
        base = free_base(meters)
        with SimProcess("modbus", "--profile", str(profile), "--unit", "1", "--tcp", str(base),
                        "--ports", str(meters)):
            yield broker, profile, base
    finally:
        broker.close()


async def count_in_window(port: int, topic: str, seconds: float, warmup: float,
                          count: Callable[[str, bytes], int]) -> int:
    """What ``count(topic, payload)`` adds up over the messages a subscriber receives from ``warmup`` on, for ``seconds``."""
    import aiomqtt  # here: a poller process that imports bench.util must not pay for it

    total = 0
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.subscribe(topic, qos=1)
        t_start = time.monotonic() + warmup

        async def gather() -> None:
            nonlocal total
            async for m in c.messages:
                if time.monotonic() >= t_start:
                    total += count(str(m.topic), m.payload)  # type: ignore[arg-type]

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gather(), t_start + seconds - time.monotonic())
    return total
