"""``meterlink simulate dlt698 ...``: a simulated DL/T 698.45 bus on a pty or a TCP port.

The meters are :class:`meterlink.simulators.dlt698.Dlt698Meter` (sans-io) served by
:class:`meterlink.simulators.dlt698.Dlt698Handler`.  Meter i of ``--address`` draws
``2300 + 100 i`` W and started at ``12345.67 + 1000 i`` kWh, so meters on one
bus serve different values.  ``--freeze`` pins every live register at meter
time :data:`FROZEN_AT` (the clock keeps running): a test computes what is served
with :func:`make_meters`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from decimal import Decimal

from meterlink.core import meterclock
from meterlink.core.durations import parse_duration
from meterlink.core.meterclock import check_zone
from meterlink.simulators.dlt698 import DAILY_RECORDS, Dlt698Bus, Dlt698Handler, Dlt698Meter
from meterlink.simulators.faults import FaultPlan, parse_fault
from meterlink.simulators.serve import add_line_arguments

FROZEN_AT = dt.datetime(2024, 6, 1, 12, 0, 0)


def make_meters(addresses: list[str], *, tariffs: int = 4, drift: float = 0.0, frozen: bool = False,
                normal_list: bool = True, history: int = DAILY_RECORDS) -> list[Dlt698Meter]:
    """The meters ``meterlink simulate dlt698`` serves for these options."""
    return [Dlt698Meter(address=a, tariffs=tariffs, clock_offset=drift, power_w=Decimal(2300 + 100 * i),
                        start_kwh=Decimal("12345.67") + 1000 * i, frozen_at=FROZEN_AT if frozen else None,
                        normal_list=normal_list, history=history)
            for i, a in enumerate(addresses)]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("dlt698", help="DL/T 698.45 meters on one bus (pty or TCP, raw bytes)")
    m.add_argument("--address", action="append", help="12-digit server address (repeatable; default 000000000001)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (prints its path)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0: any free port)")
    m.add_argument("--link", help="with --pty: also make this symlink to the pty")
    m.add_argument("--fault", action="append", default=[], metavar="KIND[:P][@ADDRESS]",
                   help="inject a fault: silent|late|crc|exception|truncate|garbage, probability P, one meter")
    m.add_argument("--late-delay", default="2s")
    m.add_argument("--clock-drift", default="0s", help="how far the meters' clocks run ahead, e.g. 90s (or -90s)")
    m.add_argument("--tariffs", type=int, default=4, metavar="N", help="tariffs per energy array (1-63; default 4)")
    m.add_argument("--timezone", metavar="ZONE", help="IANA zone of the meters' wall clocks (default: this machine's)")
    m.add_argument("--history", type=int, default=DAILY_RECORDS, metavar="DAYS",
                   help=f"daily freezes (5004) the meters hold (1-{DAILY_RECORDS}; default {DAILY_RECORDS})")
    m.add_argument("--no-list", action="store_true",
                   help="refuse GET-Request-NormalList (ERROR-Response 'service not supported')")
    m.add_argument("--max-frame", type=int, metavar="BYTES",
                   help="split longer replies into link segments (分帧) of at most BYTES per frame")
    m.add_argument("--preamble", type=int, default=4, metavar="N", help="FE wake-up bytes before each reply")
    m.add_argument("--freeze", action="store_true",
                   help=f"live registers stay at their values at meter time {FROZEN_AT:%Y-%m-%d %H:%M} "
                        "(the clock runs on)")
    m.add_argument("--wire-time", type=int, metavar="BAUD",
                   help="delay each reply by its transaction's true wire time at BAUD (11-bit characters + Td)")
    add_line_arguments(m)
    m.set_defaults(sim_run=run)


def run(args: argparse.Namespace) -> int:
    addresses = args.address or ["000000000001"]
    for a in addresses:
        if not re.fullmatch(r"\d{12}", a):
            print(f"meterlink simulate: {a!r} is not a 12-digit DL/T 698.45 address", file=sys.stderr)
            return 2
    try:
        faults = [parse_fault(f) for f in args.fault]
        late = parse_duration(args.late_delay)
        drift_text = args.clock_drift.lstrip("-")
        drift = parse_duration(drift_text) if drift_text not in ("0", "0s") else 0.0
        drift = -drift if args.clock_drift.startswith("-") else drift
        if args.timezone is not None:
            check_zone(args.timezone)
    except ValueError as exc:
        print(f"meterlink simulate: {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.tariffs <= 63:
        print(f"meterlink simulate: --tariffs {args.tariffs}: a meter has 1-63 tariffs", file=sys.stderr)
        return 2
    if not 1 <= args.history <= DAILY_RECORDS:
        print(f"meterlink simulate: --history {args.history}: 1-{DAILY_RECORDS} daily freezes", file=sys.stderr)
        return 2
    if args.max_frame is not None and not 48 <= args.max_frame <= 16383:
        print("meterlink simulate: --max-frame must be 48-16383 bytes", file=sys.stderr)
        return 2
    if not 0 <= args.preamble <= 16:
        print("meterlink simulate: --preamble must be 0-16", file=sys.stderr)
        return 2
    meters = make_meters(addresses, tariffs=args.tariffs, drift=drift, frozen=args.freeze,
                         normal_list=not args.no_list, history=args.history)
    return asyncio.run(_serve(args, meters, FaultPlan(faults), late))


async def _serve(args: argparse.Namespace, meters: list[Dlt698Meter], faults: FaultPlan, late: float) -> int:
    from meterlink.simulators.serve import serve_until_signal, with_line_quirks

    zone = args.timezone

    def now() -> dt.datetime:  # true time as the meters' zone shows it
        return meterclock.wall_clock(dt.datetime.now(dt.UTC), zone)

    def factory() -> Dlt698Handler:
        bus = Dlt698Bus(meters, preamble=args.preamble, max_frame=args.max_frame)
        return Dlt698Handler(bus, clock=now, faults=faults, late_delay=late, wire_baud=args.wire_time)

    quirky = with_line_quirks(factory, args)

    return await serve_until_signal(f"dlt698 meters {','.join(m.address for m in meters)}", quirky, pty=args.pty,
                                    link=args.link, tcp=args.tcp)
