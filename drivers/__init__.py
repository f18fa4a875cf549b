"""Protocol drivers: one package per protocol, each a sans-io codec plus a thin transport.

Each protocol package provides ``driver.py`` with a driver class taking
``(link, store)`` and may provide ``checks.py`` with
``check_meter(meter, link) -> list[tuple[str, str]]`` (key suffix, message) for
configuration checks only that protocol knows.
"""

from __future__ import annotations

import importlib

from gateway.config import Link
from gateway.driver import Driver, Store

_DRIVERS = {"modbus": "drivers.modbus.driver:ModbusDriver", "dlt645": "drivers.dlt645.driver:Dlt645Driver",
            "dlms": "drivers.dlms.driver:DlmsDriver", "dlt698": "drivers.dlt698.driver:Dlt698Driver"}


def create_driver(link: Link, store: Store | None = None) -> Driver:
    """The driver for the protocol ``link`` carries (one protocol per link, checked by the config)."""
    target = _DRIVERS.get(link.protocol)
    if target is None:
        raise ValueError(f"no driver for protocol {link.protocol!r}")
    module, _, cls = target.partition(":")
    driver_cls = getattr(importlib.import_module(module), cls)
    return driver_cls(link, store)  # type: ignore[no-any-return]
