"""The byte channel of the drivers written before ``drivers.transport``; being folded into it."""

from __future__ import annotations

from typing import Any

from drivers.transport import Transport, endpoint_for
from gateway.config import Link


def Channel(link: Link) -> Transport[Any]:
    return Transport(endpoint_for(link))
