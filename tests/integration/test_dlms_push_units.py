"""A captured Kamstrup HAN list on a real pty, through the DLMS push driver into readings.

The frame is the amsreader-firmware capture of ``tests/drivers/dlms/vectors/hdlc.toml``
(``ui_frame_push_kamstrup``: Kamstrup Omnipower, Norway, list 1).  It carries
no scaler-unit; amsreader-firmware's own reading of this very frame
(``Samples/Kamstrup/obisdata.md``) gives current L1 564 -> 5.64 A, active
power 1468 W, voltage L1 232 V.  Its date-time 2017-10-20 03:43:30 has
deviation "not specified": Norwegian wall time, 01:43:30 UTC (CEST).
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from meterlink.core.config import parse_config
from meterlink.core.reading import Quality
from meterlink.core.registry import create_driver
from meterlink.engine.scheduler import to_readings
from meterlink.simulators.dlms_cli import PushPty

VECTORS = Path(__file__).parents[1] / "drivers/dlms/vectors/hdlc.toml"


def _kamstrup_frame() -> bytes:
    v = next(f for f in tomllib.loads(VECTORS.read_text())["frame"] if f["name"] == "ui_frame_push_kamstrup")
    return bytes.fromhex(v["hex"].replace("\\", " "))


def test_kamstrup_list_values_in_kamstrups_units() -> None:
    frame = _kamstrup_frame()

    async def scenario() -> list:  # type: ignore[type-arg]
        pty = PushPty()
        pty.start()

        async def push() -> None:
            while True:
                pty._write(frame)
                await asyncio.sleep(0.2)

        pusher = asyncio.create_task(push())
        cfg = parse_config({"links": {"han": {"type": "serial", "port": pty.path, "baudrate": 2400, "parity": "N",
                                              "timeout": "2s"}},
                            "meters": {"home": {"link": "han", "protocol": "dlms", "transport": "push",
                                                "address": {"client": 16}, "timezone": "Europe/Oslo", "points": [
                                                    {"obis": "1.1.31.7.0.255", "name": "current_l1", "unit": "A"},
                                                    {"obis": "1.1.1.7.0.255", "name": "power", "unit": "kW"},
                                                    {"obis": "1.1.32.7.0.255", "name": "voltage_l1"},
                                                    {"obis": "1.1.71.7.0.255", "name": "wrong", "unit": "V"}]}}})
        driver = create_driver(cfg.links["han"])
        meter = cfg.meters["home"]
        try:
            await driver.open()
            results = await driver.read(meter, meter.points)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await driver.close()
            pty.close()
        return to_readings("gw", meter, datetime.now(UTC), results)

    readings = asyncio.run(scenario())
    got = {r.name: r for r in readings}  # the newest notification's values (each one sends the same)
    assert (got["current_l1"].value, got["current_l1"].unit) == (Decimal("5.64"), "A")
    assert (got["power"].value, got["power"].unit) == (Decimal("1.468"), "kW")
    assert (got["voltage_l1"].value, got["voltage_l1"].unit) == (Decimal(232), "V")  # the meter's unit
    assert all(got[n].quality is Quality.GOOD for n in ("current_l1", "power", "voltage_l1"))
    # a point whose unit is no multiple of what the meter sends is never a good value
    assert got["wrong"].quality is Quality.INVALID and got["wrong"].value is None
    assert "the meter reports A" in (got["wrong"].error or "")
    assert {r.meter_ts for r in readings} == {datetime(2017, 10, 20, 1, 43, 30, tzinfo=UTC)}
