"""DL/T 698.45 as a plug-in (the ``meterlink.protocols`` entry point): 2400 8E1, frozen records as extra points."""

from __future__ import annotations

from meterlink.core.registry import Protocol
from meterlink.drivers.dlt698 import schema

PROTOCOL = Protocol(
    name="dlt698", title="DL/T 698.45",
    meter_model=schema.Dlt698MeterConfig, profile_model=schema.Dlt698ProfileConfig,
    make_point=schema.make_point, address=schema.address, example_address="000000000001",
    baudrate=2400, parity="E", extra_points=schema.extra_points,
    driver="meterlink.drivers.dlt698.driver:Dlt698Driver", scan="meterlink.drivers.dlt698.scan:scan", scan_order=20,
    simulator="meterlink.simulators.dlt698_cli:add_parser",
)
