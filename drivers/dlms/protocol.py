"""DLMS/COSEM as a plug-in (the ``meterlink.protocols`` entry point): HDLC at 9600 8N1, or the TCP wrapper."""

from __future__ import annotations

from meterlink.core.registry import Protocol
from meterlink.drivers.dlms import schema

PROTOCOL = Protocol(
    name="dlms", title="DLMS/COSEM (HDLC, IEC 62056-47 wrapper, push)",
    meter_model=schema.DlmsMeterConfig, profile_model=schema.DlmsProfileConfig,
    make_point=schema.make_point, address=schema.address, example_address={"logical": 1},
    baudrate=9600, parity="N", checks=schema.checks, files=schema.files,
    driver="meterlink.drivers.dlms.driver:DlmsDriver", simulator="meterlink.simulators.dlms_cli:add_parser",
)
