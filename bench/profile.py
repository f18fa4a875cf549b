"""Where Meterlink's CPU goes on the peer load: a per-stage breakdown of the hot path.

The gateway runs in this process on the load of ``../shared/BENCHMARKS.md`` (30
SDM630-like Modbus TCP meters x 30 float32 points every 1 s, journal with
``synchronous=FULL``, QoS 1 MQTT to a private Mosquitto; the simulators run in
their own process).  After a warm-up come two windows of ``--seconds`` each:

1. unprofiled: the process CPU per 1,000 readings and each thread's share of
   it, from ``/proc/self/task/TID/stat`` (the event loop thread, the journal's
   writer thread, asyncio's default executor where the sinks read the
   journal).  These figures are exact but coarse.
2. under cProfile, on every thread that runs Meterlink code (the event loop,
   and each function handed to an executor), with a per-thread CPU clock
   (``time.thread_time``) so a wait for an fsync or for the network is not
   counted.  Every function's own time goes to a stage by its module; the
   time of a C function (``sqlite3.Connection.execute``, ``struct.pack``,
   ``socket.send``) goes to the stages of the Python functions that called
   it, in proportion.  The shares are then applied to window 1's CPU per
   1,000 readings.

cProfile costs a fixed price per Python call, so stages made of many small
Python calls (asyncio, reading construction) look dearer than they are next
to C-heavy ones (sqlite): take the split as indicative, the thread figures
of window 1 as measured.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import os
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import gateway_config
from bench.util import peer_meters

STAGES = (
    ("modbus-client", "Modbus TCP client (pymodbus: requests, MBAP framing, transactions)"),
    ("modbus-driver", "Modbus driver + codec (meterlink.drivers.modbus: plan, decode_at)"),
    ("decode", "float32 -> shortest Decimal (meterlink.core.reading.float32_decimal)"),
    ("reading", "reading construction (to_readings, Reading, PointResult)"),
    ("json", "JSON (reading_json, data message, json module)"),
    ("journal", "journal (meterlink.engine.journal + sqlite3: insert, commit, sink reads)"),
    ("mqtt", "MQTT publish (aiomqtt, paho, meterlink.engine.sinks)"),
    ("asyncio", "scheduler + asyncio (event loop, selectors, tasks, futures, threads)"),
    ("logging", "logging"),
    ("other", "other"),
)
_DECODE = {"float32_decimal", "float64_decimal", "_plain"}
_JSON = {"reading_json", "readings_json", "decimal_text", "_json_head", "_json_unit", "_ts_text", "format_ts",
         "data_message", "_pending", "to_json"}
_READING = {"to_readings", "convert_unit", "invalid"}


def stage_of(func: tuple[str, int, str]) -> str | None:
    """The stage of a Python function (file, line, name); None for a C function (charged to its callers)."""
    path, _, name = func
    if path == "~":
        return None
    p = path.replace(os.sep, "/")
    if "/pymodbus/" in p:
        return "modbus-client"
    if "/drivers/modbus/" in p:
        return "modbus-driver"
    if p.endswith(("gateway/reading.py", "core/reading.py")):
        return "decode" if name in _DECODE else "json" if name in _JSON else "reading"
    if p.endswith(("gateway/journal.py", "engine/journal.py")):
        return "json" if name in _JSON else "journal"
    if ((p.endswith(("gateway/scheduler.py", "engine/scheduler.py")) and name in _READING)
            or p.endswith(("gateway/driver.py", "core/driver.py"))):
        return "reading"
    if p == "<string>":  # dataclass-made __init__: Reading, PointResult, _Pending on this path
        return "reading"
    if "/json/" in p:
        return "json"
    if "/sqlite3/" in p:
        return "journal"
    if "/aiomqtt/" in p or "/paho/" in p or "/gateway/sinks/" in p or "/engine/sinks/" in p:
        return "mqtt"
    if "/logging/" in p or p.endswith(("gateway/logs.py", "core/logs.py")):
        return "logging"
    if ("/asyncio/" in p or "/concurrent/" in p or p.endswith(("/selectors.py", "/threading.py", "/contextlib.py",
                                                                "/socket.py", "/queue.py", "/heapq.py",
                                                                "bench/profile.py"))
            or p.endswith(("gateway/scheduler.py", "gateway/runtime.py", "engine/scheduler.py", "engine/gateway.py"))):
        return "asyncio"
    return "other"


def _c_stage(name: str) -> str | None:
    """A C function whose stage is plain from its name whoever calls it."""
    if "sqlite3" in name:
        return "journal"
    if "_lsprof" in name or "thread_time" in name:
        return "profiler"
    if "epoll" in name or "select" in name:
        return "asyncio"
    return None


def breakdown(stats: list[dict[Any, Any]]) -> dict[str, float]:
    """Seconds of own time per stage, summed over the per-thread profiles (``Profile.stats`` dicts)."""
    out: dict[str, float] = defaultdict(float)
    for st in stats:
        for func, (_cc, _nc, tt, _ct, callers) in st.items():
            stage = stage_of(func)
            if stage is None:
                stage = _c_stage(func[2])
            if stage is not None:
                out[stage] += tt
                continue
            by_caller = {c: v[2] for c, v in callers.items()}
            total = sum(by_caller.values())
            if total <= 0:
                out["other"] += tt
                continue
            for caller, t in by_caller.items():
                out[stage_of(caller) or "other"] += tt * t / total
    return dict(out)


# leaves py-spy --nonblocking may count as active though the thread waits in them
_IDLE = {("EpollSelector.select", "selectors.py"), ("_worker", "thread.py"), ("Condition.wait", "threading.py"),
         ("Event.wait", "threading.py"), ("Thread._wait_for_tstate_lock", "threading.py")}


def _worker_get_line() -> int:
    """The line of ``concurrent.futures.thread._worker`` where an idle executor thread waits for work."""
    import concurrent.futures.thread as cft
    import inspect

    lines, first = inspect.getsourcelines(cft._worker)
    return next((first + i for i, text in enumerate(lines) if "work_queue.get(block=True)" in text), -1)


_WORKER_GET = _worker_get_line()


def pyspy_breakdown(raw: str) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """Samples per stage from py-spy's raw output (``stack count`` lines): a sample goes to its innermost
    Python frame, so time in a C function (sqlite, struct, socket) goes to the Python function calling it."""
    stages: dict[str, float] = defaultdict(float)
    leaves: dict[str, float] = defaultdict(float)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        m = re.match(r"^(.*) \((.*):(\d+)\)$", leaf)
        if m is None:
            stages["other"] += int(count)
            continue
        name, path, lineno = m.group(1), m.group(2), int(m.group(3))
        if (name, Path(path).name) in _IDLE and (name != "_worker" or lineno == _WORKER_GET):
            stages["idle"] += int(count)  # a wait py-spy took for work (epoll, an executor's empty queue)
            continue
        stages[stage_of((path, lineno, name.rsplit(".", 1)[-1])) or "other"] += int(count)
        leaves[f"{name} ({'/'.join(Path(path).parts[-2:])}:{lineno})"] += int(count)
    return dict(stages), sorted(((n, f) for f, n in leaves.items()), reverse=True)[:15]


def top_functions(stats: list[dict[Any, Any]], n: int = 15) -> list[tuple[float, str]]:
    own: dict[str, float] = defaultdict(float)
    for st in stats:
        for (path, line, name), (_cc, _nc, tt, _ct, _callers) in st.items():
            where = name if path == "~" else f"{name} ({'/'.join(Path(path).parts[-2:])}:{line})"
            own[where] += tt
    return sorted(((t, f) for f, t in own.items()), reverse=True)[:n]


class Profilers:
    """One cProfile per thread, on only while :attr:`active`; executor work is wrapped to be profiled."""

    def __init__(self) -> None:
        self.active = False
        self._by_thread: dict[int, cProfile.Profile] = {}
        self._lock = threading.Lock()

    def profiler(self) -> cProfile.Profile:
        ident = threading.get_ident()
        with self._lock:
            prof = self._by_thread.get(ident)
            if prof is None:
                prof = self._by_thread[ident] = cProfile.Profile(time.thread_time)
        return prof

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def profiled(*args: Any) -> Any:
            if not self.active:
                return func(*args)
            prof = self.profiler()
            prof.enable()
            try:
                return func(*args)
            finally:
                prof.disable()
        return profiled

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every function the loop hands to an executor (the journal's commit, the sinks' reads) is profiled."""
        original = loop.run_in_executor

        def run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
            return original(executor, self.wrap(func), *args)

        loop.run_in_executor = run_in_executor  # type: ignore[method-assign]

    def stats(self) -> list[dict[Any, Any]]:
        out = []
        for prof in self._by_thread.values():
            prof.snapshot_stats()  # type: ignore[attr-defined]  # reads the counters without disabling
            out.append(dict(prof.stats))  # type: ignore[attr-defined]
        return out


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (from /proc/self/task)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        name = names.get(int(task.name), "other threads")
        if name.startswith("asyncio_"):
            name = "asyncio default executor"
        elif name.startswith("journal"):
            name = "journal writer"
        elif name == "MainThread":
            name = "event loop (main thread)"
        out[name] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def _count_calls(obj: Any, names: tuple[str, ...]) -> dict[str, int]:
    """Count calls of some of ``obj``'s methods (how often the journal commits, and the sinks write cursors)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        method = getattr(obj, name)

        def counted(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(obj, name, counted)
    return calls


async def _pyspy(seconds: float, rate: int) -> str:
    """py-spy attached to this process for ``seconds`` (sampling, without pausing it): raw stacks."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        raise SystemExit(f"bench.profile: --sampler py-spy needs py-spy beside this Python: "
                         f"{Path(sys.executable).with_name('pip')} install py-spy (or use --sampler cprofile)")
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        proc = await asyncio.create_subprocess_exec(
            str(exe), "record", "--pid", str(os.getpid()), "--duration", str(int(seconds)), "--rate", str(rate),
            "--format", "raw", "--full-filenames", "--nonblocking", "--output", out.name,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        return Path(out.name).read_text()


async def _run(cfg_path: Path, warmup: float, seconds: float, profilers: Profilers, sampler: str,
               rate: int) -> dict[str, Any]:
    from meterlink.core import logs
    from meterlink.core.config import load_config
    from meterlink.engine.gateway import Gateway

    logs.setup("text", "error")
    profilers.install(asyncio.get_running_loop())
    gw = Gateway(load_config(cfg_path))
    counted = [0]
    gw.batch_listeners.append(lambda meter, seq, readings: counted.__setitem__(0, counted[0] + len(readings)))
    calls = _count_calls(gw.journal, ("_commit", "set_cursor", "messages"))
    await gw.start()
    await asyncio.sleep(warmup)

    # window 1: unprofiled, process and thread CPU from /proc
    th0, cpu0, n0, t0, c0 = thread_cpu(), time.process_time(), counted[0], time.monotonic(), dict(calls)
    await asyncio.sleep(seconds)
    th1, cpu1, n1, t1 = thread_cpu(), time.process_time(), counted[0], time.monotonic()
    plain = {"cpu_s": cpu1 - cpu0, "readings": n1 - n0, "wall_s": t1 - t0,
             "threads": {k: v - th0.get(k, 0.0) for k, v in th1.items()},
             "calls_per_s": {k: (v - c0[k]) / (t1 - t0) for k, v in calls.items()}}

    if sampler == "py-spy":  # window 2: sampled from outside, the process runs at its own speed
        cpu0, n0, t0 = time.process_time(), counted[0], time.monotonic()
        raw = await _pyspy(seconds, rate)
        sampled = {"cpu_s": time.process_time() - cpu0, "readings": counted[0] - n0, "wall_s": time.monotonic() - t0}
        await gw.stop()
        return {"plain": plain, "profiled": sampled, "raw": raw}

    # window 2: under cProfile
    main = profilers.profiler()
    cpu0, n0, t0 = time.process_time(), counted[0], time.monotonic()
    profilers.active = True
    main.enable()
    await asyncio.sleep(seconds)
    main.disable()
    profilers.active = False
    profiled = {"cpu_s": time.process_time() - cpu0, "readings": counted[0] - n0, "wall_s": time.monotonic() - t0}
    await asyncio.sleep(0.5)  # executor work started in the window finishes (its profiler turns off)
    await gw.stop()
    return {"plain": plain, "profiled": profiled, "stats": profilers.stats()}


def run(seconds: float, warmup: float, meters: int = 30, sampler: str = "cprofile", rate: int = 250) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with peer_meters(tmp, meters) as (broker, profile, base):
            cfg = gateway_config(tmp / "gateway.yaml", profile, base, meters,
                                 {"mqtt": {"host": "127.0.0.1", "port": broker.port}})
            result = asyncio.run(_run(cfg, warmup, seconds, Profilers(), sampler, rate))
    if sampler == "py-spy":
        result["stages"], result["top"] = pyspy_breakdown(result.pop("raw"))
        result["sampler"] = "py-spy samples"
    else:
        stats = result.pop("stats")
        result["stages"], result["top"] = breakdown(stats), top_functions(stats)
        result["sampler"] = "cProfile own time"
    return result


def report(r: dict[str, Any]) -> None:
    plain, prof = r["plain"], r["profiled"]
    per_k = 1e6 * plain["cpu_s"] / max(1, plain["readings"])
    load = os.getloadavg()
    print(f"peer load in-process: {plain['readings'] / plain['wall_s']:,.0f} readings/s; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"window 1, unprofiled ({plain['wall_s']:.0f} s): {per_k:.1f} CPU-ms per 1,000 readings (whole process); "
          f"by thread:")
    for name, s in sorted(plain["threads"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {1e6 * s / max(1, plain['readings']):6.1f} CPU-ms per 1,000 readings")
    c = plain["calls_per_s"]
    print(f"  per second: {c['_commit']:.1f} journal group commits (synchronous=FULL: one fsync each), "
          f"{c['set_cursor']:.1f} sink cursor moves (stored with the next group commit), {c['messages']:.1f} sink reads")
    print(f"window 2, {r['sampler']} ({prof['wall_s']:.0f} s, {1e6 * prof['cpu_s'] / max(1, prof['readings']):.1f} "
          f"CPU-ms per 1,000 in it): CPU by stage, its share applied to window 1")
    stages = {k: v for k, v in r["stages"].items() if k not in ("profiler", "idle")}
    total = sum(stages.values()) or 1.0
    if r["stages"].get("idle"):
        print(f"  ({r['stages']['idle']:.0f} samples in waits left out, {total:.0f} counted)")
    for key, label in STAGES:
        share = stages.get(key, 0.0) / total
        print(f"  {label:80s} {100 * share:5.1f} %  {share * per_k:6.1f} CPU-ms per 1,000")
    print(f"top functions ({r['sampler']}, window 2, all threads):")
    for t, where in r["top"]:
        print(f"  {100 * t / total:5.1f} %  {where}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each of the two windows")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--meters", type=int, default=30)
    ap.add_argument("--sampler", choices=("cprofile", "py-spy"), default="cprofile",
                    help="py-spy (`pip install py-spy` into the venv) samples without slowing the gateway down")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    a = ap.parse_args()
    report(run(a.seconds, a.warmup, a.meters, a.sampler, a.rate))


if __name__ == "__main__":
    main()
