"""Simulated meters as real subprocesses (``meterlink simulate``), for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# `make test` installs the built wheel, non-editable, into a venv of its own and names it here, so
# every end-to-end test runs the `meterlink` command a user installs, not this source tree.
INSTALLED_VENV = os.environ.get("METERLINK_VENV")


def meterlink_cmd() -> list[str]:
    """The `meterlink` command under test: the installed wheel's (make test), else this source tree's."""
    if INSTALLED_VENV:
        return [str(Path(INSTALLED_VENV) / "bin" / "meterlink")]
    return [sys.executable, "-m", "meterlink.apps.cli"]


class SimProcess:
    """``meterlink simulate ...`` running; ``where`` is the pty path or ``host:port`` it printed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*meterlink_cmd(), "simulate", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r" on (\S+)$", line.strip())
        if not m:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r} {err}")
        self.where = m.group(1)

    @property
    def port(self) -> int:
        return int(self.where.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_config(path: Path, raw: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def meterlink(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*meterlink_cmd(), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Whether ``predicate`` came true within ``timeout``: tests wait on conditions, never on fixed sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def await_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """:func:`wait_until` inside an event loop, which keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


async def meter_tried(gw: Any, meter: str, timeout: float = 10.0) -> None:
    """Wait until the running gateway ``gw`` has read ``meter`` once, well or not (it is online or offline)."""
    def tried() -> bool:
        ms = gw.meter_state(meter)
        return ms is not None and ms.online is not None

    if not await await_until(tried, timeout):
        raise AssertionError(f"{meter} was never read")
