"""The configuration: its file's shape (``schema``), reading it (``yamlfile``), its problems (``problems``),
what it resolves to (``resolve``, ``resolved``) and validating it in a child process (``child``).

These names are the package's public interface.  Each is imported from its
module on first use (PEP 562): a running gateway needs only ``resolved``, which
imports no pydantic (see :mod:`meterlink.core.config.resolved` for why).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ConfigProblems": "meterlink.core.errors", "pydantic_problems": "problems",
    **dict.fromkeys(("check_config", "check_files", "load_config", "parse_config", "profile_points",
                     "referenced_files", "resolve_points", "validated"), "resolve"),
    **dict.fromkeys(("Config", "Line", "Link", "Meter", "Point", "Settings"), "resolved"),
    **dict.fromkeys(("OBIS_RE", "UNITS", "DefaultsBase", "Duration", "GatewayConfig", "HttpConfig", "InfluxConfig",
                     "JournalConfig", "MeterBase", "MqttConfig", "Obis", "PointBase", "ProfileBase", "Scale",
                     "SerialLinkConfig", "SinksConfig", "TcpLinkConfig", "TimeSyncConfig", "TlsConfig", "file_model",
                     "protocol_models", "to_decimal"), "schema"),
    **dict.fromkeys(("MAX_YAML_BYTES", "MAX_YAML_NODES", "load_yaml", "read_text_file"), "yamlfile"),
    "load_validated": "child",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from meterlink.core.config.child import load_validated
    from meterlink.core.config.problems import pydantic_problems
    from meterlink.core.config.resolve import (
        check_config,
        check_files,
        load_config,
        parse_config,
        profile_points,
        referenced_files,
        resolve_points,
        validated,
    )
    from meterlink.core.config.resolved import Config, Line, Link, Meter, Point, Settings
    from meterlink.core.config.schema import (
        OBIS_RE,
        UNITS,
        DefaultsBase,
        Duration,
        GatewayConfig,
        HttpConfig,
        InfluxConfig,
        JournalConfig,
        MeterBase,
        MqttConfig,
        Obis,
        PointBase,
        ProfileBase,
        Scale,
        SerialLinkConfig,
        SinksConfig,
        TcpLinkConfig,
        TimeSyncConfig,
        TlsConfig,
        file_model,
        protocol_models,
        to_decimal,
    )
    from meterlink.core.config.yamlfile import MAX_YAML_BYTES, MAX_YAML_NODES, load_yaml, read_text_file
    from meterlink.core.errors import ConfigProblems
