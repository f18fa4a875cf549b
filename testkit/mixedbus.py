"""A mixed bus on one pty for the tests: Modbus, DL/T 645-2007, DL/T 645-1997 and DL/T 698.45 meters.

``python -m testkit.mixedbus`` serves the bus and prints ``serving mixed bus on PATH``.
Every meter answers only its own protocol's frames (the simulators' handlers all
hear every byte), as on a real RS-485 pair.  A pty carries bytes whatever the
line settings, so the bus also reads, as an independent witness, the line
settings the port had when each request arrived (``termios`` on the pty's
device side, not the gateway's own idea of them), and on SIGTERM prints one
JSON line per answered request: ``{"protocol": ..., "baudrate": ..., "parity": ...}``.
The meters are the frozen models the tests compute their expected values from.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import termios
from decimal import Decimal
from typing import Any

from meterlink.core.config import profile_points
from meterlink.simulators.dlt645 import Dlt645Handler, Dlt645Meter
from meterlink.simulators.dlt698 import Dlt698Bus, Dlt698Handler, Dlt698Meter
from meterlink.simulators.dlt698_cli import FROZEN_AT
from meterlink.simulators.modbus import ModbusHandler, ModbusUnit
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import FrameHandler, PtyServer, Reply

MODBUS_UNIT, MODBUS_PROFILE = 5, "eastron-sdm120"
DLT645_2007, DLT645_1997, DLT698 = "000000000645", "000000000097", "000000000698"

_SPEEDS = {getattr(termios, f"B{b}"): b for b in (1200, 2400, 4800, 9600, 19200, 38400) if hasattr(termios, f"B{b}")}


def modbus_unit() -> ModbusUnit:
    return ModbusUnit(MODBUS_UNIT, profile_points(MODBUS_PROFILE), MeterModel(seed=11, frozen=True))


def dlt645_meters() -> dict[str, Dlt645Meter]:
    return {DLT645_2007: Dlt645Meter(DLT645_2007, MeterModel(seed=21, frozen=True)),
            DLT645_1997: Dlt645Meter(DLT645_1997, MeterModel(seed=22, frozen=True), standard="1997")}


def dlt698_meter() -> Dlt698Meter:
    return Dlt698Meter(address=DLT698, power_w=Decimal(1900), start_kwh=Decimal("5432.10"), frozen_at=FROZEN_AT)


class Witness:
    """Wraps a protocol's handler: notes the port's line settings whenever that handler answers."""

    def __init__(self, protocol: str, handler: FrameHandler, server: PtyServer | None, log: list[dict[str, Any]]):
        self.protocol, self.handler, self.server, self.log = protocol, handler, server, log

    def feed(self, data: bytes) -> list[Reply]:
        replies = self.handler.feed(data)
        if replies and self.server is not None:
            attrs = termios.tcgetattr(self.server._slave)
            parity = "N" if not attrs[2] & termios.PARENB else ("O" if attrs[2] & termios.PARODD else "E")
            self.log.append({"protocol": self.protocol, "baudrate": _SPEEDS.get(attrs[5]), "parity": parity})
        return replies


async def main() -> int:
    log: list[dict[str, Any]] = []
    holder: list[PtyServer] = []
    units = {MODBUS_UNIT: modbus_unit()}
    dlt645 = dlt645_meters()
    dlt698 = Dlt698Bus([dlt698_meter()])

    class Bus:
        def feed(self, data: bytes) -> list[Reply]:
            server = holder[0] if holder else None
            return [r for w in (Witness("modbus", modbus, server, log), Witness("dlt645", d645, server, log),
                                Witness("dlt698", d698, server, log)) for r in w.feed(data)]

    modbus = ModbusHandler(units, framing="rtu")
    d645 = Dlt645Handler(dlt645)
    d698 = Dlt698Handler(dlt698, clock=lambda: FROZEN_AT)
    server = PtyServer(Bus)
    holder.append(server)
    server.start()
    print(f"serving mixed bus on {server.path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for entry in log:
        print(json.dumps(entry))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
