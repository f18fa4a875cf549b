"""Simulated DLMS/COSEM meters: HDLC on a pty or TCP, the IEC 62056-47 wrapper on TCP, push frames on a pty.

The pieces: :mod:`meterlink.simulators.dlms_meter` (COSEM objects, clock, profiles),
:mod:`meterlink.simulators.dlms_server` (association, GET, HDLC and wrapper link
layers), :mod:`meterlink.simulators.dlms_acse` (AARQ reading, AARE building),
:mod:`meterlink.simulators.dlms_push` (DataNotification frames), and ``meterlink
simulate dlms`` in :mod:`meterlink.simulators.dlms_cli`.  This module builds meters and
starts servers; :func:`start_wrapper_meter` is what ``meterlink demo`` uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from meterlink.core.config import Point, profile_points
from meterlink.simulators.dlms_meter import SimClock, SimMeter
from meterlink.simulators.dlms_server import HdlcServer, WrapperServer
from meterlink.simulators.faults import FaultPlan
from meterlink.simulators.model import MeterModel
from meterlink.simulators.serve import serve_tcp, tcp_port

DEFAULT_PROFILE = "dlms-generic-3phase"

__all__ = ["DEFAULT_PROFILE", "HdlcServer", "SimClock", "SimMeter", "WrapperServer", "make_meter",
           "start_wrapper_meter"]


def make_meter(*, profile: str = DEFAULT_PROFILE, points: Sequence[Point] | None = None, seed: int = 1,
               phases: int = 3, frozen: bool = False, clock: SimClock | None = None, **settings: object) -> SimMeter:
    """A simulated meter serving the points of ``profile`` (values from :class:`MeterModel` with ``seed``).

    ``settings`` are :class:`SimMeter` fields: ``auth``, ``password``, ``encryption_key``,
    ``authentication_key``, ``system_title``, ``logical``, ``physical``, ``serial``, ``utc_offset``, ``zone``,
    ``max_pdu``, ``with_list``, ``drop_after``, ``missing``, ``days``.
    """
    pts = list(points) if points is not None else profile_points(profile)
    model = MeterModel(seed=seed, phases=phases, frozen=frozen)
    return SimMeter(points=pts, model=model, clock=clock or SimClock(frozen=frozen), **settings)  # type: ignore[arg-type]


async def start_wrapper_meter(*, profile: str = DEFAULT_PROFILE, seed: int = 1, host: str = "127.0.0.1",
                              port: int = 0, auth: str = "none", faults: FaultPlan | None = None,
                              **settings: object) -> tuple[asyncio.Server, int]:
    """Start a simulated DLMS meter on TCP (``port`` 0: any free port) speaking the wrapper; ``(server, port)``.

    The meter is logical device 1; the public client (SAP 16) associates
    without security, the management client (SAP 1) with ``auth``.  Close it
    with ``server.close(); await server.wait_closed()``.
    """
    meter = make_meter(profile=profile, seed=seed, auth=auth, **settings)
    server = await serve_tcp(lambda: WrapperServer(meter, faults=faults), host, port)
    return server, tcp_port(server)
