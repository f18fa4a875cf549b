"""``meterlink simulate dlt645 ...``: a simulated DL/T 645-2007 (or -1997) bus on a pty or a TCP port."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from meterlink.core.durations import parse_duration
from meterlink.core.meterclock import check_zone
from meterlink.simulators.dlt645 import NO_REQUESTED_DATA, OTHER_ERROR, Dlt645Handler, Dlt645Meter
from meterlink.simulators.faults import FaultPlan, parse_fault
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import add_line_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    m = sub.add_parser("dlt645", help="DL/T 645-2007 / -1997 meters on one bus (pty or TCP, raw bytes)")
    m.add_argument("--address", action="append", help="12-digit nameplate address (repeatable; default 000000000001)")
    where = m.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (prints its path)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT (0: any free port)")
    m.add_argument("--link", help="with --pty: also make this symlink to the pty")
    m.add_argument("--fault", action="append", default=[], metavar="KIND[:P][@ADDRESS]",
                   help="inject a fault: silent|late|crc|exception|truncate|garbage, probability P, one meter")
    m.add_argument("--late-delay", default="2s")
    m.add_argument("--standard", action="append", default=[], metavar="EDITION[@ADDRESS]",
                   help="the DL/T 645 edition the meters speak: 2007 (default) or 1997; @ADDRESS for one meter "
                        "(repeatable, so both editions can share the bus)")
    m.add_argument("--clock-drift", default="0s", help="how far the meters' clocks run ahead, e.g. 90s (or -90s)")
    m.add_argument("--no-blocks", action="store_true", help="answer block identifiers with an error (--block-error)")
    m.add_argument("--block-error", choices=("no-data", "other"), default="no-data",
                   help="the ERR of a refused block: 'no requested data' (bit 1) or 'other error' (bit 0)")
    m.add_argument("--tariffs", type=int, default=4, metavar="N",
                   help="tariffs per energy block (1-63; default 4, 尖峰平谷); blocks hold total + N values")
    m.add_argument("--timezone", metavar="ZONE", help="IANA zone of the meters' wall clocks (default: this machine's)")
    m.add_argument("--history", type=int, default=62, metavar="DAYS",
                   help="daily frozen records the meters hold (1-62; default 62)")
    m.add_argument("--missing-records", choices=("error", "zeros", "ff"), default="error",
                   help="how a record beyond --history is answered: an error, or all zeros / all FF bytes")
    m.add_argument("--max-payload", type=int, default=200, help="longer replies are sent as follow-up frames")
    m.add_argument("--freeze", action="store_true", help="values and clocks do not change")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--wire-time", type=int, metavar="BAUD",
                   help="delay each reply by its transaction's true wire time at BAUD (11-bit characters + Td)")
    add_line_arguments(m)
    m.set_defaults(sim_run=run)


def run(args: argparse.Namespace) -> int:
    addresses = args.address or ["000000000001"]
    for a in addresses:
        if not re.fullmatch(r"\d{12}", a):
            print(f"meterlink simulate: {a!r} is not a 12-digit DL/T 645 address", file=sys.stderr)
            return 2
    try:
        faults = [parse_fault(f) for f in args.fault]
        late = parse_duration(args.late_delay)
        drift_text = args.clock_drift.lstrip("-")
        drift = parse_duration(drift_text) if drift_text not in ("0", "0s") else 0.0
        drift = -drift if args.clock_drift.startswith("-") else drift
    except ValueError as exc:
        print(f"meterlink simulate: {exc}", file=sys.stderr)
        return 2
    if not 16 <= args.max_payload <= 200:
        print("meterlink simulate: --max-payload must be 16-200", file=sys.stderr)
        return 2
    if not 1 <= args.tariffs <= 63:
        print(f"meterlink simulate: --tariffs {args.tariffs}: a DL/T 645 meter has 1-63 tariffs", file=sys.stderr)
        return 2
    if not 1 <= args.history <= 62:
        print(f"meterlink simulate: --history {args.history}: a meter keeps 1-62 daily freezes", file=sys.stderr)
        return 2
    try:
        standards = _standards(args.standard, addresses)
    except ValueError as exc:
        print(f"meterlink simulate: --standard {exc}", file=sys.stderr)
        return 2
    if any(standards[a] == "1997" for a in addresses) and args.tariffs > 14:
        print(f"meterlink simulate: --tariffs {args.tariffs}: a DL/T 645-1997 meter has 1-14 tariffs",
              file=sys.stderr)
        return 2
    if args.timezone is not None:
        try:
            check_zone(args.timezone)
        except ValueError as exc:
            print(f"meterlink simulate: --timezone {exc}", file=sys.stderr)
            return 2
    block_error = OTHER_ERROR if args.block_error == "other" else NO_REQUESTED_DATA
    meters = {a: Dlt645Meter(a, MeterModel(seed=args.seed + i, frozen=args.freeze), clock_offset=drift,
                             blocks=not args.no_blocks, tariffs=args.tariffs, timezone=args.timezone,
                             block_error=block_error, history=args.history, missing=args.missing_records,
                             standard=standards[a])
              for i, a in enumerate(addresses)}
    return asyncio.run(_serve(args, meters, FaultPlan(faults), late))


def _standards(specs: list[str], addresses: list[str]) -> dict[str, str]:
    """Each address's edition from ``--standard 1997`` (all meters) and ``--standard 1997@ADDRESS`` (one)."""
    out = dict.fromkeys(addresses, "2007")
    for spec in specs:
        edition, _, address = spec.partition("@")
        if edition not in ("2007", "1997"):
            raise ValueError(f"{spec!r}: the edition is 2007 or 1997")
        if address and address not in out:
            raise ValueError(f"{spec!r}: {address} is not one of the --address meters")
        for a in [address] if address else addresses:
            out[a] = edition
    return out


async def _serve(args: argparse.Namespace, meters: dict[str, Dlt645Meter], faults: FaultPlan, late: float) -> int:
    from meterlink.simulators.serve import serve_until_signal, with_line_quirks

    def factory() -> Dlt645Handler:
        return Dlt645Handler(meters, faults=faults, late_delay=late, max_payload=args.max_payload,
                             wire_baud=args.wire_time)

    quirky = with_line_quirks(factory, args)

    return await serve_until_signal(f"dlt645 meters {','.join(meters)}", quirky, pty=args.pty, link=args.link,
                                    tcp=args.tcp)
