"""``meterlink run``: the gateway in the foreground until SIGTERM or SIGINT.

Under systemd (``systemd/meterlink.service``, ``Type=notify``) it tells the
service manager where it is: ``READY=1`` once the configuration is valid, the
journal open and the http listener up; ``WATCHDOG=1`` every half
``WatchdogSec=`` while the event loop runs and no link is hung (see
:class:`meterlink.engine.health.Liveness`), so a hung gateway is restarted;
``STOPPING=1`` when a signal arrives.  Outside systemd none of this happens.

A journal on a full disk at start is waited for, not given up on: the start
timeout is extended (``EXTEND_TIMEOUT_USEC``) and ``STATUS=`` says why, so the
service neither exits nor is killed for a condition that clears by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import stat
from typing import Any

from meterlink.apps.sdnotify import Notifier, watchdog_interval
from meterlink.core import logs
from meterlink.core.config import Config
from meterlink.engine.gateway import Gateway
from meterlink.engine.health import Liveness

START_EXTEND = 30.0  # seconds each "still waiting for the journal" asks systemd to add to the start timeout


def warn_readable_secrets(config: Config) -> None:
    """Warn when the configuration file holds a secret inline and other users can read it.

    Secret files get the same check when they are read (:mod:`meterlink.core.secrets`);
    an inline ``password`` or ``token`` makes the configuration file itself one.
    """
    if config.path is None:
        return
    inline = [key for key, value in (("sinks.mqtt.password", config.sinks.mqtt and config.sinks.mqtt.password),
                                     ("sinks.influxdb.token", config.sinks.influxdb and config.sinks.influxdb.token))
              if value]
    if not inline:
        return
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        logs.warning("configuration file holds secrets and is readable by others", file=str(config.path),
                     keys=",".join(inline), mode=oct(mode & 0o777),
                     fix="chmod o-r the file, or move the secret to password_file/token_file")


async def _watchdog(notifier: Notifier, liveness: Liveness, interval: float) -> None:
    """Feed systemd's watchdog while the gateway makes progress; stop feeding (and say why) when it does not."""
    reported: list[str] = []
    while True:
        problems = liveness.check()
        if not problems:
            notifier.watchdog()
            if reported:
                logs.info("watchdog: gateway alive again")
        elif problems != reported:
            logs.error("watchdog: gateway not alive, not feeding the systemd watchdog", problems="; ".join(problems))
        reported = problems
        await asyncio.sleep(interval / 2)


def _settle_gc() -> None:
    """After start-up: the cyclic collector stops re-scanning start-up objects, and runs less often.

    Everything built while starting (modules, the configuration, the drivers'
    plans) lives until exit: ``gc.freeze`` takes it out of the collector's
    view.  A busy gateway makes a few thousand short-lived objects a second
    (readings, their results), almost all freed by reference counting;
    collecting young objects every 700 allocations cost ~2 % of the CPU on
    the peer load (issue 14), every 10,000 is plenty.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(10_000, gen1, gen2)


async def run_gateway(config: Config) -> int:
    """Run until a signal; on SIGTERM everything acquired is committed before exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    warn_readable_secrets(config)
    notifier = Notifier.from_env()
    gw = Gateway(config)

    def waiting(why: str) -> None:
        notifier.notify(f"STATUS=waiting: {why}"[:400], f"EXTEND_TIMEOUT_USEC={int(START_EXTEND * 1e6)}")

    if not await gw.start(waiting=waiting, stop=stop):
        logs.info("stopped while waiting for the journal", gateway=gw.id)
        notifier.close()
        return 0
    _settle_gc()
    liveness = Liveness(gw)
    http: Any = None
    watchdog: asyncio.Task[None] | None = None
    try:
        if config.http is not None:
            # prometheus-client and the HTTP server are imported only when the configuration has http (RSS)
            from meterlink.apps.http import HttpServer

            http = HttpServer(gw, config.http, liveness)
            await http.start()
        interval = watchdog_interval()
        if interval is not None and notifier.enabled:
            watchdog = asyncio.create_task(_watchdog(notifier, liveness, interval), name="meterlink.watchdog")
        notifier.ready(f"reading {len(config.meters)} meters on {len(gw.schedulers)} links")
        await stop.wait()
        logs.info("stopping", gateway=gw.id)
    finally:
        notifier.stopping("flushing the journal")
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if http is not None:
            await http.close()
        await gw.stop()
        notifier.close()
    return 0
