"""``meterlink simulate PROTOCOL ...``: simulated meters on a pty or a TCP port (CONTRACT section 8).

Each protocol's simulator brings its own command line in ``simulators/<protocol>_cli.py``
(``add_parser(sub)`` registering a parser whose ``sim_run`` default runs it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

PROTOCOLS = ("modbus", "dlt645", "dlms", "dlt698")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="protocol", required=True, parser_class=type(p))
    for proto in PROTOCOLS:
        name = f"simulators.{proto}_cli"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_parser(sub)


def run_simulator(args: argparse.Namespace) -> int:
    return int(args.sim_run(args))
