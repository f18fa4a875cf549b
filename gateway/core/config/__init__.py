"""The configuration: its file's shape (``schema``), reading it (``yamlfile``), its problems (``problems``), and
what it resolves to (``resolve``).  These names are the package's public interface."""

from meterlink.core.config.problems import ConfigProblems, pydantic_problems
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
from meterlink.core.config.schema import (
    OBIS_RE,
    UNITS,
    Config,
    DefaultsBase,
    Duration,
    GatewayConfig,
    HttpConfig,
    InfluxConfig,
    JournalConfig,
    Line,
    Link,
    Meter,
    MeterBase,
    MqttConfig,
    Obis,
    Point,
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

__all__ = [
    "MAX_YAML_BYTES", "MAX_YAML_NODES", "OBIS_RE", "UNITS",
    "Config", "ConfigProblems", "DefaultsBase", "Duration", "GatewayConfig", "HttpConfig", "InfluxConfig",
    "JournalConfig", "Line", "Link", "Meter", "MeterBase", "MqttConfig", "Obis", "Point", "PointBase",
    "ProfileBase", "Scale", "SerialLinkConfig", "SinksConfig", "TcpLinkConfig", "TimeSyncConfig", "TlsConfig",
    "check_config", "check_files", "file_model", "load_config", "load_yaml", "parse_config", "profile_points",
    "protocol_models", "pydantic_problems", "read_text_file", "referenced_files", "resolve_points", "to_decimal",
    "validated",
]
