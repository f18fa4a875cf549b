"""Modbus RTU and TCP as a plug-in (the ``meterlink.protocols`` entry point): 9600 8E1 by default, both framings."""

from __future__ import annotations

from meterlink.core.registry import Protocol
from meterlink.drivers.modbus import schema

PROTOCOL = Protocol(
    name="modbus", title="Modbus RTU / Modbus TCP",
    meter_model=schema.ModbusMeterConfig, profile_model=schema.ModbusProfileConfig,
    make_point=schema.make_point, address=schema.address, example_address=1,
    baudrate=9600, parity="E", framings=("socket", "rtu"), meter_options=schema.meter_options,
    driver="meterlink.drivers.modbus.driver:ModbusDriver", scan="meterlink.drivers.modbus.scan:scan", scan_order=50,
    simulator="meterlink.simulators.modbus_cli:add_parser",
)
