"""DL/T 645-2007 and -1997 as a plug-in (the ``meterlink.protocols`` entry point): 2400 8E1, scanned first."""

from __future__ import annotations

from meterlink.core.registry import Protocol
from meterlink.drivers.dlt645 import schema

PROTOCOL = Protocol(
    name="dlt645", title="DL/T 645-2007 / DL/T 645-1997",
    meter_model=schema.Dlt645MeterConfig, profile_model=schema.Dlt645ProfileConfig,
    make_point=schema.make_point, address=schema.address, example_address="000000000001",
    baudrate=2400, parity="E", line_defaults=schema.line_defaults, checks=schema.checks,
    extra_points=schema.extra_points, profile_meter_keys=schema.profile_meter_keys,
    check_profile=schema.check_profile,
    driver="meterlink.drivers.dlt645.driver:Dlt645Driver", scan="meterlink.drivers.dlt645.scan:scan", scan_order=10,
    simulator="meterlink.simulators.dlt645_cli:add_parser",
)
