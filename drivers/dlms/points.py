"""What a dlms point resolves to: what the driver reads.

Apart from ``schema`` (the configuration's pydantic models) so that the
running gateway, which receives its configuration resolved
(``meterlink.core.config.child``), imports no pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterlink.core.config.resolved import Point


@dataclass(frozen=True, slots=True, kw_only=True)
class DlmsPoint(Point):
    """A resolved dlms point, what the driver reads (apart from ``schema``: the running gateway imports no pydantic)."""

    class_id: int = 3
    attribute: int = 2
