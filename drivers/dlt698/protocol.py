"""The dlt698 plug-in's description for the registry (the ``meterlink.protocols`` entry point names it).

Apart from the package so that the running gateway, which makes its drivers
from its resolved links, never imports the schema and pydantic it names.
"""

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
