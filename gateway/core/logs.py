"""Structured logs: one line per event, with the meter, link and point it concerns.

``text`` is logfmt-like for people at a console; ``json`` is for collectors.
Secrets never reach a log: nothing here logs a configuration object.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER = logging.getLogger("meterlink")


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [ts, record.levelname.lower(), record.getMessage()]
        for k, v in fields.items():
            text = str(v)
            parts.append(f"{k}={json.dumps(text) if (' ' in text or '=' in text or not text) else text}")
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        doc = {"ts": ts, "level": record.levelname.lower(), "event": record.getMessage()}
        doc.update({k: v if isinstance(v, int | float | bool | None) else str(v)
                    for k, v in getattr(record, "fields", {}).items()})
        return json.dumps(doc)


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


def event(level: int, message: str, **fields: Any) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def info(message: str, **fields: Any) -> None:
    event(logging.INFO, message, **fields)


def warning(message: str, **fields: Any) -> None:
    event(logging.WARNING, message, **fields)


def error(message: str, **fields: Any) -> None:
    event(logging.ERROR, message, **fields)


def debug(message: str, **fields: Any) -> None:
    event(logging.DEBUG, message, **fields)
