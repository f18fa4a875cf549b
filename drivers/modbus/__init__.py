"""Modbus RTU (serial, or through a serial device server) and Modbus TCP meters.

Modules: ``codec`` (frames and register values, sans-io), ``plan`` (the block
reads of a poll), ``driver`` (RTU on the one transport, TCP through pymodbus),
``scan`` (which unit ids answer), ``schema`` (the configuration's keys).
"""

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
