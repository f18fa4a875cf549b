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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from meterlink import __version__
from meterlink.core import logs
from meterlink.core.errors import ConfigError, ConfigProblems, MeterlinkError
from meterlink.core.registry import load, protocol_names, protocols

if TYPE_CHECKING:
    from meterlink.core.config import Config


class _InstalledProtocols:
    """The installed protocols' names for ``--protocol``, read from the entry points when argparse first asks.

    Building the parser for ``meterlink run`` never asks, so a running gateway
    does not load the packaging metadata (importlib.metadata, email: ~2 MB; issue 14).
    """

    def __contains__(self, name: object) -> bool:
        return name in protocol_names()

    def __iter__(self) -> Iterator[str]:
        return iter(protocol_names())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"meterlink: {message} (see meterlink {self.prog.split()[-1]} --help)\n")


def _load(path: str, *, strict: bool = False, child: bool = False) -> Config:
    """The configuration, or exit 2 with one line per problem; ``strict`` also reads every file it names.

    ``child``: validated in a short-lived child process (``meterlink run``: see
    :mod:`meterlink.core.config.child`), so the gateway never holds pydantic.
    """
    try:
        if child:
            from meterlink.core.config.child import load_validated

            return load_validated(path, strict=strict)
        from meterlink.core.config.resolve import check_config, load_config

        return check_config(path) if strict else load_config(path)
    except ConfigProblems as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config, strict=True)
    for note in cfg.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print(cfg.summary())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config, strict=True, child=True)
    for note in cfg.warnings:
        logs.warning(f"config: {note}")
    from meterlink.apps.run import run_gateway

    return asyncio.run(run_gateway(cfg))


def cmd_read(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    unknown = [m for m in args.meter or [] if m not in cfg.meters]
    if unknown:
        print(f"meterlink read: no meter named {', '.join(unknown)} in {args.config} "
              f"(meters: {', '.join(cfg.meters)})", file=sys.stderr)
        return 2
    from meterlink.apps.read import read_once

    return asyncio.run(read_once(cfg, args.meter or list(cfg.meters), args.format, args.point))


def cmd_sync_time(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    unknown = [m for m in args.meter if m not in cfg.meters]
    if unknown:
        print(f"meterlink sync-time: no meter named {', '.join(unknown)} in {args.config}", file=sys.stderr)
        return 2
    from meterlink.apps.read import sync_once

    return asyncio.run(sync_once(cfg, args.meter))


def cmd_simulate(args: argparse.Namespace) -> int:
    return int(args.sim_run(args))


def _simulators(p: argparse.ArgumentParser) -> None:
    """``meterlink simulate PROTOCOL``: each protocol's simulator command line, named by its plug-in."""
    sub = p.add_subparsers(dest="protocol", required=True, parser_class=type(p))
    for proto in protocols().values():
        if proto.simulator:
            load(proto.simulator)(sub)


def cmd_demo(args: argparse.Namespace) -> int:
    from meterlink.apps.demo import run_demo

    return run_demo(args)


def cmd_schema(args: argparse.Namespace) -> int:
    from meterlink.apps.schema import run_schema

    return run_schema(args)


def cmd_scan(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if args.link not in cfg.links:
        print(f"meterlink scan: no link named {args.link!r} (links: {', '.join(cfg.links)})", file=sys.stderr)
        return 2
    from meterlink.apps.scan import scan_link

    return asyncio.run(scan_link(cfg, args.link, args.range, args.addresses, protocol=args.protocol,
                                 timeout=args.timeout))


def cmd_top(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from meterlink.apps.top import run_top

    return run_top(cfg, args)


def cmd_watch(args: argparse.Namespace) -> int:
    from meterlink.apps.watch import run_watch

    return run_watch(args)


def build_parser(*, simulate: bool = True) -> argparse.ArgumentParser:
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

    s = sub.add_parser("sync-time", help="correct meter clocks that drifted (guarded; see README)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--meter", action="append", required=True, help="meter id (repeatable)")
    s.set_defaults(func=cmd_sync_time)

    s = sub.add_parser("check", help="validate a configuration file")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("schema", help="print the configuration's JSON Schema (editor completion; docs/configuration.md)")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("scan", help="find the meters answering on a link")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--link", required=True)
    s.add_argument("--range", help="addresses to try: modbus unit ids like 1-32 (default 1-247); dlt645 "
                                   "addresses like 000000000001-000000000032")
    s.add_argument("--addresses", help="dlt645: a file with one 12-digit address per line to try")
    s.add_argument("--protocol", choices=_InstalledProtocols(), metavar="PROTOCOL",
                   help="what to probe for: %(choices)s (default: DL/T 645's read-address broadcast first, "
                        "then Modbus ids)")
    s.add_argument("--timeout", help="wait per probe, e.g. 200ms (default: a few reply times at the link's baud rate)")
    s.set_defaults(func=cmd_scan)

    s = sub.add_parser("simulate", help="run simulated meters")
    if simulate:  # the simulators' parsers import every protocol's codec: only for `meterlink simulate`
        _simulators(s)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("demo", help="simulated meters, the gateway, and a live table (what `make demo` runs)")
    s.add_argument("--data-dir", default="./data")
    s.add_argument("--mqtt", default="127.0.0.1:1883", help="broker to publish to if one answers there")
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("top", help="live view of a running gateway (reads its http /status)")
    s.add_argument("-c", "--config", required=True, help="the running gateway's configuration (for http host/port)")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    s.add_argument("--once", action="store_true", help="print one snapshot and exit (1 if the gateway does not answer)")
    s.set_defaults(func=cmd_top)

    s = sub.add_parser("watch", help="live load of every gateway's meters, from MQTT")
    s.add_argument("--mqtt", required=True, metavar="HOST[:PORT]", help="broker to subscribe to (port default 1883)")
    s.add_argument("--prefix", default="meterlink", help="topic prefix of the gateways (default meterlink)")
    s.add_argument("--username")
    s.add_argument("--password-file", help="file holding the broker password (first line)")
    s.add_argument("--tls", action="store_true", help="connect with TLS (system CA store)")
    s.add_argument("--ca-file", help="CA certificate for TLS")
    s.add_argument("--stale", default="60s", help="data older than this marks a meter stale (default 60s)")
    s.add_argument("--csv", metavar="FILE", help="append every reading seen to FILE as CSV")
    s.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    s.set_defaults(func=cmd_watch)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(simulate="simulate" in argv).parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # found late (a secret read when a sink starts): still a configuration error
        print(str(exc), file=sys.stderr)
        return 2
    except MeterlinkError as exc:
        print(f"meterlink: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
