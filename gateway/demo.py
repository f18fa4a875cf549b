"""``meterlink demo``: simulated meters of every supported protocol, the gateway, a live table.

Everything runs in one process: the simulators serve a real pty and a real
TCP socket, and the gateway reads them through its real serial and socket
code, journaling under ``--data-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway.config import parse_config
from gateway.profiles import profile_points
from gateway.reading import decimal_text
from gateway.runtime import Gateway
from simulators.dlms import start_wrapper_meter
from simulators.dlt645 import Dlt645Handler, Dlt645Meter
from simulators.modbus import ModbusHandler, ModbusUnit
from simulators.model import MeterModel
from simulators.serve import PtyServer, serve_tcp, tcp_port

DLT645_BUS = ("000000000101", "000000000102")
DLT645_FAST = [("1.0.32.7.0.255", "02010100"), ("1.0.31.7.0.255", "02020100"), ("1.0.16.7.0.255", "02030000"),
               ("1.0.14.7.0.255", "02800002"), ("1.0.1.8.0.255", "00010000"), ("1.0.2.8.0.255", "00020000")]
DLMS_FAST = ("1.0.32.7.0.255", "1.0.31.7.0.255", "1.0.1.7.0.255", "1.0.14.7.0.255", "1.0.1.8.0.255",
             "1.0.2.8.0.255")
SHOWN = [("1.0.32.7.0.255", "U L1"), ("1.0.31.7.0.255", "I L1"), ("1.0.16.7.0.255", "P"),
         ("1.0.14.7.0.255", "f"), ("1.0.1.8.0.255", "import"), ("1.0.2.8.0.255", "export")]


def _table(gw: Gateway, width: int) -> Group:
    """The latest readings; narrow terminals lose the least important columns first."""
    shown = SHOWN if width >= 100 else SHOWN[:3] + SHOWN[4:5]
    t = Table(title=f"Meterlink demo: gateway {gw.id}", box=box.SIMPLE_HEAD, padding=(0, 1))
    t.add_column("meter", no_wrap=True)
    t.add_column("state", no_wrap=True)
    for _, label in shown:
        t.add_column(label, justify="right", no_wrap=True)
    t.add_column("seq", justify="right")
    if width >= 100:
        t.add_column("last read", no_wrap=True)
    status = gw.status()
    meters = status["meters"]
    assert isinstance(meters, dict)
    for mid, st in meters.items():
        latest = gw.latest.get(mid, {})
        cells = []
        for obis, _ in shown:
            r = latest.get(obis) or (latest.get("1.0.1.7.0.255") if obis == "1.0.16.7.0.255" else None)
            cells.append("" if r is None or r.value is None else f"{decimal_text(r.value)} {r.unit}")
        state = {True: "[green]online", False: "[red]offline", None: "[yellow]starting"}[st["online"]]
        extra = [str(st["last_ok"] or "")[11:23]] if width >= 100 else []
        t.add_row(mid, state, *cells, str(gw.journal.last_seq(mid)), *extra)
    links = status["links"]
    assert isinstance(links, dict)
    foot = Table.grid(padding=(0, 2))
    for lid, ls in links.items():
        foot.add_row(f"link {lid}", f"utilization {ls['utilization']:.1%}", f"transactions {ls['transactions']}",
                     f"errors {ls['errors']}")
    mqtt = next((sk for sk in gw.sinks if sk.name == "mqtt"), None)
    where = (f"MQTT {mqtt.cfg.host}:{mqtt.cfg.port} ({'connected' if mqtt.counters.connected else 'not connected'}"
             f", topics {mqtt.prefix}/#)") if mqtt else "MQTT off (no broker answered)"
    return Group(t, foot, f"journal {gw.journal.path}; {where}; Ctrl-C to stop")


async def _demo(args: argparse.Namespace) -> int:
    sdm630 = {1: ModbusUnit(1, profile_points("eastron-sdm630"), MeterModel(seed=11))}
    dtsu = {1: ModbusUnit(1, profile_points("chint-dtsu666"), MeterModel(seed=12))}
    pty = PtyServer(lambda: ModbusHandler(sdm630, framing="rtu"))
    pty.start()
    dlt_meters = {a: Dlt645Meter(a, MeterModel(seed=20 + i)) for i, a in enumerate(DLT645_BUS)}
    dlt_pty = PtyServer(lambda: Dlt645Handler(dlt_meters))
    dlt_pty.start()
    server = await serve_tcp(lambda: ModbusHandler(dtsu, framing="socket"))
    dlms_server, dlms_port = await start_wrapper_meter(seed=13)
    raw = {
        "gateway": {"id": "demo", "data_dir": str(Path(args.data_dir))},
        "links": {
            "rs485-1": {"type": "serial", "port": pty.path, "baudrate": 9600, "parity": "N", "timeout": "500ms"},
            "tcp-dtsu": {"type": "tcp", "host": "127.0.0.1", "port": tcp_port(server), "timeout": "500ms"},
            "rs485-2": {"type": "serial", "port": dlt_pty.path, "baudrate": 2400, "parity": "N", "timeout": "500ms"},
            "dlms-tcp": {"type": "tcp", "host": "127.0.0.1", "port": dlms_port, "timeout": "1s"},
        },
        "meters": {
            "sdm630-1": {"link": "rs485-1", "protocol": "modbus", "address": 1, "profile": "eastron-sdm630",
                         "points": [{"obis": "1.0.1.8.0.255", "interval": "10s"},
                                    {"obis": "1.0.2.8.0.255", "interval": "10s"}]},
            "dtsu666-1": {"link": "tcp-dtsu", "protocol": "modbus", "address": 1, "profile": "chint-dtsu666",
                          "points": [{"obis": "1.0.1.8.0.255", "interval": "10s"},
                                     {"obis": "1.0.2.8.0.255", "interval": "10s"}]},
            **{f"dlt645-{a[-4:]}": {"link": "rs485-2", "protocol": "dlt645", "address": a,
                                    "profile": "dlt645-generic-3phase", "interval": "10s", "daily_frozen_days": 3,
                                    "points": [{"obis": o, "di": di, "interval": "10s"} for o, di in DLT645_FAST]}
               for a in DLT645_BUS},
            "dlms-1": {"link": "dlms-tcp", "protocol": "dlms", "address": {"client": 16, "logical": 1},
                       "transport": "wrapper", "auth": "none", "profile": "dlms-generic-3phase", "interval": "10s",
                       "points": [{"obis": o, "interval": "10s"} for o in DLMS_FAST]},
        },
    }
    broker = _broker(args.mqtt)
    if broker is not None:
        raw["sinks"] = {"mqtt": {"host": broker[0], "port": broker[1]}}
    cfg = parse_config(raw)
    gw = Gateway(cfg, keep_latest=True)
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    console = Console()
    try:
        with Live(_table(gw, console.width), console=console, refresh_per_second=2, screen=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                live.update(_table(gw, console.width))
                if deadline is not None and time.monotonic() > deadline:
                    break
    finally:
        await gw.stop()
        pty.close()
        dlt_pty.close()
        server.close()
        dlms_server.close()
    return 0


def _broker(spec: str) -> tuple[str, int] | None:
    """``host:port`` if a broker accepts TCP connections there, else None (the demo runs without MQTT)."""
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "1883")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
            return (host or "127.0.0.1", int(port))
    except (OSError, ValueError):
        return None


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args))
