"""The ``meterlink`` command (CONTRACT section 2).

Bad input of any kind ends in one plain line on stderr and a non-zero exit,
never a traceback: 2 for a bad command line or configuration, 1 when a meter
or link failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from gateway import __version__, logs
from gateway.config import Config, ConfigProblems, load_config
from gateway.errors import MeterlinkError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"meterlink: {message} (see meterlink {self.prog.split()[-1]} --help)\n")


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigProblems as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(cfg.summary())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from gateway.service import run_gateway

    return asyncio.run(run_gateway(cfg))


def cmd_read(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    unknown = [m for m in args.meter or [] if m not in cfg.meters]
    if unknown:
        print(f"meterlink read: no meter named {', '.join(unknown)} in {args.config} "
              f"(meters: {', '.join(cfg.meters)})", file=sys.stderr)
        return 2
    from gateway.oneshot import read_once

    return asyncio.run(read_once(cfg, args.meter or list(cfg.meters), args.format, args.point))


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.cli import run_simulator

    return run_simulator(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(args)


def cmd_scan(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.link not in cfg.links:
        print(f"meterlink scan: no link named {args.link!r} (links: {', '.join(cfg.links)})", file=sys.stderr)
        return 2
    from gateway.scan import scan_link

    return asyncio.run(scan_link(cfg, args.link, args.range))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="meterlink", description="Meterlink: read electricity meters, deliver every reading.")
    p.add_argument("--version", action="version", version=f"meterlink {__version__}")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("run", help="run the gateway until SIGTERM/SIGINT")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("read", help="read meters once, now, and exit")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--meter", action="append", help="meter id (repeatable; default: all meters)")
    s.add_argument("--point", action="append", help="OBIS code (repeatable; default: all points)")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_read)

    s = sub.add_parser("check", help="validate a configuration file")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("scan", help="find the meters answering on a link")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--link", required=True)
    s.add_argument("--range", default="1-247", help="modbus unit ids to try, e.g. 1-32 (default 1-247)")
    s.set_defaults(func=cmd_scan)

    s = sub.add_parser("simulate", help="run simulated meters")
    from simulators.cli import add_arguments

    add_arguments(s)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("demo", help="simulated meters, the gateway, and a live table (what `make demo` runs)")
    s.add_argument("--data-dir", default="./data")
    s.add_argument("--mqtt", default="127.0.0.1:1883", help="broker to publish to if one answers there")
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except MeterlinkError as exc:
        print(f"meterlink: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
