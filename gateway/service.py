"""``meterlink run``: the gateway in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from gateway import logs
from gateway.config import Config
from gateway.runtime import Gateway


async def run_gateway(config: Config) -> int:
    """Run until a signal; on SIGTERM everything acquired is committed before exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gw = Gateway(config)
    await gw.start()
    try:
        await stop.wait()
        logs.info("stopping", gateway=gw.id)
    finally:
        await gw.stop()
    return 0
