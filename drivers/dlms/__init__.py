"""DLMS/COSEM meters (IEC 62056): HDLC and wrapper links, association, GET, profiles, push listening.

Modules: ``hdlc`` and ``wrapper`` (frames), ``axdr`` (values, date-time),
``apdu`` (xDLMS APDUs dlms-cosem lacks), ``session`` (association and GET),
``link`` (asyncio byte links and channels), ``driver`` (the polled driver),
``push`` (the push listener), ``checks`` (configuration), ``units`` and
``address``.

dlms-cosem is pinned at 21.3.2, its last MIT release (24.x and later are BSL 1.1,
which a vendor cannot ship).  It logs through the standard ``logging`` module
under ``dlms_cosem``; an AARQ event there could carry an LLS password, so only
its warnings are let through.
"""

from __future__ import annotations

import logging

logging.getLogger("dlms_cosem").setLevel(logging.WARNING)
