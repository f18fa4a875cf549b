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
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meterlink.core.config import parse_config, profile_points
from meterlink.core.reading import Quality, Reading
from meterlink.engine.gateway import Gateway
from meterlink.simulators.dlms import start_wrapper_meter
from meterlink.simulators.dlt645 import Dlt645Handler, Dlt645Meter
from meterlink.simulators.dlt698 import Dlt698Bus, Dlt698Handler, Dlt698Meter
from meterlink.simulators.modbus import ModbusHandler, ModbusUnit
from meterlink.simulators.model import MeterModel, address_seed
from meterlink.simulators.serve import PtyServer, SharedBus, serve_tcp, tcp_port

DLT645_BUS = ("000000000101", "000000000102")
DLT645_FAST = [("1.0.32.7.0.255", "02010100"), ("1.0.31.7.0.255", "02020100"), ("1.0.16.7.0.255", "02030000"),
               ("1.0.14.7.0.255", "02800002"), ("1.0.1.8.0.255", "00010000"), ("1.0.2.8.0.255", "00020000")]
DLT698_METER = "000000000201"
DLT698_FAST = [("1.0.32.7.0.255", "20000201"), ("1.0.31.7.0.255", "20010201"), ("1.0.16.7.0.255", "20040201"),
               ("1.0.14.7.0.255", "200F0200"), ("1.0.1.8.0.255", "00100201"), ("1.0.2.8.0.255", "00200201")]
DLMS_FAST = ("1.0.32.7.0.255", "1.0.31.7.0.255", "1.0.1.7.0.255", "1.0.14.7.0.255", "1.0.1.8.0.255",
             "1.0.2.8.0.255")
FIRST_POLL_WAIT = 15.0  # s: the first frame waits this long at most for every meter's first poll
# A reading whose meter time stamp is older than its acquisition by more than this is history (a
# load-profile record, a frozen value), not the register's value now; the slack covers a meter
# clock a few seconds behind on a live value that carries one (a push notification).
HISTORY_SLACK = timedelta(seconds=10)

# value multiples of the units the columns show (CONTRACT section 4), as (base unit, power of ten)
_MULTIPLES = {"W": ("W", 0), "kW": ("W", 3), "MW": ("W", 6), "Wh": ("Wh", 0), "kWh": ("Wh", 3),
              "MWh": ("Wh", 6), "V": ("V", 0), "kV": ("V", 3), "A": ("A", 0), "mA": ("A", -3), "Hz": ("Hz", 0)}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: one quantity, always in ``unit`` with ``places`` decimals."""

    obis: tuple[str, ...]  # the live OBIS codes it shows, the first one a meter has wins
    label: str
    unit: str
    places: int

    @property
    def header(self) -> str:
        return f"{self.label} {self.unit}"


COLUMNS = (Column(("1.0.32.7.0.255",), "U L1", "V", 1), Column(("1.0.31.7.0.255",), "I L1", "A", 2),
           Column(("1.0.16.7.0.255", "1.0.1.7.0.255"), "P", "kW", 3), Column(("1.0.14.7.0.255",), "f", "Hz", 2),
           Column(("1.0.1.8.0.255",), "import", "kWh", 2), Column(("1.0.2.8.0.255",), "export", "kWh", 2))
NARROW = (0, 1, 2, 4)  # the columns kept under 100 characters: voltage, current, power, import


def is_live(r: Reading) -> bool:
    """Whether a reading is the register's value now, not a value from the meter's history.

    Historical values come two ways: with their own OBIS identity (value group
    F other than 255, e.g. a daily freeze as ``1.0.1.8.0.126``), or under the
    live code with ``meter_ts`` set to when the meter captured them (a load
    profile record, a freeze from before F = 126).  Either way they are not
    what the meter measures now, and showing midnight's register as the
    current import would be a wrong value reported as good.
    """
    if r.obis.rsplit(".", 1)[-1] != "255":
        return False
    return r.meter_ts is None or r.meter_ts >= r.ts - HISTORY_SLACK


def cell(r: Reading | None, col: Column) -> Text:
    """A reading in its column's unit and decimals; a bad value says so instead of showing a number."""
    if r is None:
        return Text("")
    if r.quality is not Quality.GOOD or r.value is None:
        return Text(str(r.quality), "red")
    have, want = _MULTIPLES.get(r.unit), _MULTIPLES[col.unit]
    if have is None or have[0] != want[0]:
        return Text(f"in {r.unit or 'no unit'}?", "red")  # the point names another quantity: not shown as one
    value = r.value.scaleb(have[1] - want[1])
    return Text(f"{value:,.{col.places}f}")


class LiveReadings:
    """The newest live reading per meter and OBIS code, kept as the journal commits each poll."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Reading]] = {}

    def on_message(self, meter: str, _seq: int, readings: list[Reading]) -> None:
        mine = self.latest.setdefault(meter, {})
        for r in readings:
            if is_live(r) and (r.obis not in mine or r.ts >= mine[r.obis].ts):
                mine[r.obis] = r

    def get(self, meter: str, col: Column) -> Reading | None:
        mine = self.latest.get(meter, {})
        return next((mine[o] for o in col.obis if o in mine), None)


def first_poll_done(gw: Gateway, live: LiveReadings) -> bool:
    """Every meter answered its first poll with all the columns it reads, or failed it."""
    meters = gw.status()["meters"]
    assert isinstance(meters, dict)
    for mid, st in meters.items():
        if st["online"] is False:
            continue
        if st["online"] is None:
            return False
        has = {p.obis for p in gw.config.meters[mid].points}
        if any(live.get(mid, c) is None for c in COLUMNS if has.intersection(c.obis)):
            return False
    return True


def _table(gw: Gateway, live: LiveReadings, width: int) -> Group:
    """The latest live readings; narrow terminals lose the least important columns first."""
    shown = COLUMNS if width >= 100 else tuple(COLUMNS[i] for i in NARROW)
    t = Table(title=f"Meterlink demo: gateway {gw.id}", box=box.SIMPLE_HEAD, padding=(0, 1))
    t.add_column("meter", no_wrap=True)
    t.add_column("state", no_wrap=True)
    for col in shown:
        t.add_column(col.header, justify="right", no_wrap=True)
    t.add_column("seq", justify="right")
    if width >= 100:
        t.add_column("last read", no_wrap=True)
    status = gw.status()
    meters = status["meters"]
    assert isinstance(meters, dict)
    for mid, st in meters.items():
        if st["online"] is None:  # not polled yet: one clean row, no half-filled cells
            t.add_row(mid, Text("waiting", "yellow"), *[Text("…", "dim") for _ in shown], "",
                      *([""] if width >= 100 else []))
            continue
        state = Text("online", "green") if st["online"] else Text("offline", "red")
        extra = [str(st["last_ok"] or "")[11:23]] if width >= 100 else []
        t.add_row(mid, state, *[cell(live.get(mid, col), col) for col in shown], str(gw.journal.last_seq(mid)),
                  *extra)
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
    # each simulated meter is seeded from where it answers (link and address), so no two show the same values
    sdm630 = {1: ModbusUnit(1, profile_points("eastron-sdm630"), MeterModel.for_address("rs485-1/1"))}
    dtsu = {1: ModbusUnit(1, profile_points("chint-dtsu666"), MeterModel.for_address("tcp-dtsu/1"))}
    pty = PtyServer(lambda: ModbusHandler(sdm630, framing="rtu"))
    pty.start()
    dlt_meters = {a: Dlt645Meter(a, MeterModel.for_address(a)) for a in DLT645_BUS}
    seed = address_seed(DLT698_METER)
    dlt698 = Dlt698Bus([Dlt698Meter(DLT698_METER, power_w=Decimal(1800 + seed % 900),
                                    voltage=Decimal(225) + Decimal(seed % 90) / 10)])
    # one RS-485 pair, two generations of State Grid meters: DL/T 645-2007 and DL/T 698.45 side by side
    dlt_pty = PtyServer(lambda: SharedBus(Dlt645Handler(dlt_meters), Dlt698Handler(dlt698)))
    dlt_pty.start()
    server = await serve_tcp(lambda: ModbusHandler(dtsu, framing="socket"))
    dlms_server, dlms_port = await start_wrapper_meter(seed=address_seed("dlms-tcp/1"))
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
            "dlt698-0201": {"link": "rs485-2", "protocol": "dlt698", "address": DLT698_METER,
                            "profile": "dlt698-generic-3phase", "interval": "10s",
                            "points": [{"obis": o, "oad": oad, "interval": "10s"} for o, oad in DLT698_FAST]},
            "dlms-1": {"link": "dlms-tcp", "protocol": "dlms", "address": {"client": 16, "logical": 1},
                       "transport": "wrapper", "auth": "none", "profile": "dlms-generic-3phase", "interval": "10s",
                       "points": [{"obis": o, "interval": "10s"} for o in DLMS_FAST]},
        },
    }
    broker = _broker(args.mqtt)
    if broker is not None:
        raw["sinks"] = {"mqtt": {"host": broker[0], "port": broker[1]}}
    cfg = parse_config(raw)
    gw = Gateway(cfg)
    live_readings = LiveReadings()
    gw.batch_listeners.append(live_readings.on_message)
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    console = Console()
    try:
        # the first frame waits for every meter's first poll (or its failure): no half-filled table
        console.print(f"Meterlink demo: polling {len(cfg.meters)} simulated meters (Modbus RTU, Modbus TCP, "
                      "DL/T 645 and DL/T 698.45 on one bus, DLMS) for the first time…", highlight=False)
        first = time.monotonic() + FIRST_POLL_WAIT
        while not stop.is_set() and not first_poll_done(gw, live_readings) and time.monotonic() < first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        with Live(_table(gw, live_readings, console.width), console=console, refresh_per_second=2,
                  screen=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                live.update(_table(gw, live_readings, console.width))
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
