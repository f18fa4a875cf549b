"""Durations as users write them: ``500ms``, ``10s``, ``15m``, ``1h``, ``1d`` (CONTRACT section 3)."""

from __future__ import annotations

import re
import reprlib

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxtuple = _BRIEF.maxset = 4
_BRIEF.maxlevel = 2


def brief(value: object) -> str:
    """``repr(value)`` cut to a line's worth: a message quotes what was written, never megabytes of it."""
    return _BRIEF.repr(value)


def parse_duration(value: object) -> float:
    """Seconds from a duration string; a bare number is taken as seconds (``meterlink check`` warns)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (write e.g. 500ms, 10s, 15m, 1h, 1d)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _RE.match(value)
        if not m:
            raise ValueError(f"{brief(value)} is not a duration (write e.g. 500ms, 10s, 15m, 1h, 1d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError(f"{brief(value)} is not a duration (write e.g. 500ms, 10s, 15m, 1h, 1d)")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a duration (write e.g. 500ms, 10s, 15m, 1h, 1d)")
    if seconds <= 0:
        raise ValueError(f"{brief(value)} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        n = seconds / _UNITS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{round(seconds * 1000)}ms"
