"""DL/T 645-2007 and DL/T 645-1997 meters (the Chinese State Grid's multi-function meter protocol).

Modules: ``codec`` and ``codec1997`` (frames and values, sans-io), ``dis`` and
``dis1997`` (the data identifier tables with OBIS codes), ``driver`` (reading
on the one transport), ``scan``, ``checks`` and ``schema`` (the configuration).
"""

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
