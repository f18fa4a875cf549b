"""``meterlink simulate modbus ...``: simulated Modbus meters on a pty or a TCP port."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from meterlink.core.config import profile_points
from meterlink.core.config.profiles import ProfileError, load_profile
from meterlink.core.durations import parse_duration
from meterlink.simulators.faults import FaultPlan, parse_fault
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import add_line_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("modbus", help="Modbus RTU (pty or TCP with --framing rtu) or Modbus TCP meters")
    m.add_argument("--profile", default="eastron-sdm630", help="built-in profile name or profile file")
    m.add_argument("--unit", type=int, action="append", help="unit id to serve (repeatable; default 1)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (prints its path)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0: any free port)")
    m.add_argument("--link", help="with --pty: also make this symlink to the pty")
    m.add_argument("--framing", choices=("rtu", "socket"), help="default: rtu on a pty, socket (MBAP) on TCP")
    m.add_argument("--fault", action="append", default=[], metavar="KIND[:P][@UNIT]",
                   help="inject a fault: silent|late|crc|exception|truncate|garbage, probability P, one unit")
    m.add_argument("--late-delay", default="2s", help="how late a 'late' fault answers (default 2s)")
    m.add_argument("--freeze", action="store_true", help="values do not change (for exact comparisons)")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--identity", action="store_true",
                   help="also answer the maker's model-code register for this profile (what `meterlink scan` probes)")
    m.add_argument("--wire-time", type=int, metavar="BAUD",
                   help="delay each reply by its transaction's true wire time at BAUD (11-bit characters + t3.5)")
    m.add_argument("--ports", type=int, default=1,
                   help="with --tcp: serve this many meters on consecutive ports from PORT (benchmarks)")
    add_line_arguments(m)
    m.set_defaults(sim_run=run)


def run(args: argparse.Namespace) -> int:
    try:
        faults = [parse_fault(f) for f in args.fault]
        late = parse_duration(args.late_delay)
        load_profile(args.profile)
        points = profile_points(args.profile)
    except (ValueError, ProfileError) as exc:
        print(f"meterlink simulate: {exc}", file=sys.stderr)
        return 2
    units = args.unit or [1]
    bad = [u for u in units if not 1 <= u <= 247]
    if bad:
        print(f"meterlink simulate: {bad[0]} is not a unit id (1-247)", file=sys.stderr)
        return 2
    return asyncio.run(_serve_modbus(args, points, units, FaultPlan(faults), late))


async def _serve_modbus(args: argparse.Namespace, points: list, units: list[int], faults: FaultPlan,
                        late: float) -> int:
    from meterlink.simulators.modbus import ModbusHandler, ModbusUnit
    from meterlink.simulators.serve import serve_until_signal, with_line_quirks

    profile = load_profile(args.profile)
    forbidden = [(f.function, f.first, f.last) for f in profile.forbidden]
    identity: dict[int, int] = {}
    if args.identity:
        from meterlink.drivers.modbus.identify import identity_registers

        identity = identity_registers(profile.name)
        if not identity:
            print(f"meterlink simulate: --identity: no model-code register is known for {profile.name}",
                  file=sys.stderr)
            return 2
    served = {u: ModbusUnit(u, points, MeterModel(seed=args.seed + u, frozen=args.freeze), forbidden, identity)
              for u in units}
    framing = args.framing or ("rtu" if args.pty else "socket")

    def factory() -> ModbusHandler:
        return ModbusHandler(served, framing=framing, faults=faults, late_delay=late, wire_baud=args.wire_time)

    what = f"{args.profile} unit {','.join(map(str, units))} (modbus {framing})"
    if args.tcp is not None and args.ports > 1:
        return await _serve_many(args, what, points, units, forbidden, framing, faults, late)
    return await serve_until_signal(what, with_line_quirks(factory, args), pty=args.pty, link=args.link, tcp=args.tcp)


async def _serve_many(args: argparse.Namespace, what: str, points: list, units: list[int],
                      forbidden: list[tuple[str, int, int]], framing: str, faults: FaultPlan, late: float) -> int:
    """Many meters for benchmarks: one model per port, ports PORT..PORT+N-1."""
    from meterlink.simulators.modbus import ModbusHandler, ModbusUnit
    from meterlink.simulators.serve import serve_tcp

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    for i in range(args.ports):
        per_port = {u: ModbusUnit(u, points, MeterModel(seed=args.seed + 1000 * i + u, frozen=args.freeze), forbidden)
                    for u in units}
        try:
            servers.append(await serve_tcp(
                lambda units=per_port: ModbusHandler(units, framing=framing, faults=faults, late_delay=late),
                "127.0.0.1", args.tcp + i))
        except OSError as exc:
            print(f"meterlink simulate: cannot listen on 127.0.0.1:{args.tcp + i}: {exc.strerror}", file=sys.stderr)
            return 1
    print(f"serving {what} on 127.0.0.1:{args.tcp}-{args.tcp + args.ports - 1}", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()
    return 0
