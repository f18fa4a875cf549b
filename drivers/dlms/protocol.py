"""The dlms plug-in's description for the registry (the ``meterlink.protocols`` entry point names it).

Apart from the package so that the running gateway, which makes its drivers
from its resolved links, never imports the schema and pydantic it names.
"""

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
