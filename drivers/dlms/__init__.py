"""DLMS/COSEM meters (IEC 62056): HDLC and wrapper links, association, GET, profiles, push listening.

Modules: ``hdlc`` and ``wrapper`` (frames), ``axdr`` (values, date-time),
``apdu`` (xDLMS APDUs dlms-cosem lacks), ``session`` (association and GET),
``link`` (asyncio byte links and channels), ``driver`` (the polled driver),
``push`` (the push listener), ``checks`` (configuration), ``units`` and
``address``.

dlms-cosem logs through structlog, which prints every event to stdout when
nobody configured it; stdout carries ``meterlink read --format json``, and an
AARQ event would carry an LLS password.  Unless the process configured
structlog itself, only its warnings reach stderr.
"""

from __future__ import annotations

import logging
import sys

import structlog

if not structlog.is_configured():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
