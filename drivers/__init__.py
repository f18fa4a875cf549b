"""Protocol drivers: one package per protocol, each a sans-io codec plus a thin transport."""

from __future__ import annotations

from gateway.config import Link
from gateway.driver import Driver


def create_driver(link: Link) -> Driver:
    """The driver for the protocol ``link`` carries (one protocol per link, checked by the config)."""
    if link.protocol == "modbus":
        from drivers.modbus.driver import ModbusDriver

        return ModbusDriver(link)
    raise ValueError(f"no driver for protocol {link.protocol!r}")
