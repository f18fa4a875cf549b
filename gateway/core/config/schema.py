"""The configuration file's shape: pydantic models (what it resolves to: :mod:`meterlink.core.config.resolved`).

Only what every protocol shares lives here: links, sinks, the gateway, and
the generic parts of a meter, a point and a profile.  Each protocol's own keys
(a Modbus register, a DL/T 645 DI, a DLMS key file) are in its package's
``schema.py``, as subclasses of :class:`MeterBase`, :class:`PointBase` and
:class:`ProfileBase`; :func:`file_model` joins them into one model of the
whole file through the plug-in registry, discriminated by ``protocol``.
"""

from __future__ import annotations

import re
import warnings
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from meterlink.core.durations import brief, parse_duration
from meterlink.core.meterclock import check_zone
from meterlink.core.reading import OBIS_RE

Duration = Annotated[float, BeforeValidator(parse_duration)]

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
UNITS = ("Wh", "kWh", "MWh", "varh", "kvarh", "Mvarh", "VAh", "kVAh", "W", "kW", "MW", "var", "kvar",
         "Mvar", "VA", "kVA", "MVA", "V", "kV", "A", "Hz", "", "°", "s", "%")

warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _obis(value: object) -> str:
    if not isinstance(value, str) or not OBIS_RE.match(value):
        raise ValueError(f"{brief(value)} is not an OBIS code (six dotted groups A.B.C.D.E.F, e.g. 1.0.1.8.0.255)")
    if any(int(g) > 255 for g in value.split(".")):
        raise ValueError(f"{value!r} is not an OBIS code (each group is 0-255)")
    return value


def to_decimal(value: object) -> Decimal:
    """An exact decimal from a YAML number or text, refused with one line if it is none."""
    if isinstance(value, bool):
        raise ValueError(f"{brief(value)} is not a number")
    try:
        d = Decimal(str(value)) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite():
        raise ValueError(f"{brief(value)} is not a number")
    return d


def check_unit(v: Any) -> Any:
    if isinstance(v, str) and v not in UNITS:
        known = " ".join(u or '""' for u in UNITS)
        raise ValueError(f"{brief(v)} is not a known unit ({known})")
    return v


Obis = Annotated[str, BeforeValidator(_obis)]
Scale = Annotated[Decimal, BeforeValidator(to_decimal)]
Unit = Annotated[str, BeforeValidator(check_unit)]


# --- meters, points, profiles: the generic part of every protocol's models -------------------


class PointBase(_Model):
    """A point as written in a meter's ``points`` or a profile's group: what every protocol's point has."""

    obis: Obis
    name: str | None = None
    unit: Unit | None = None
    interval: Duration | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"{brief(v)} is not a snake_case name")
        return v


class DefaultsBase(_Model):
    """What a profile's ``defaults`` may give all its points (a protocol adds its own keys)."""

    unit: Unit | None = None
    interval: Duration | None = None


class TimeSyncConfig(_Model):
    enabled: bool = False
    tolerance: Duration = 30.0
    broadcast: bool = False  # set every meter on the bus at once, where the protocol has a broadcast time sync


class MeterBase(_Model):
    """A meter as written in ``meters``: the keys of every protocol."""

    link: str
    protocol: str
    address: int | str | dict[str, int | str]
    profile: str | None = None
    interval: Duration = 60.0
    enabled: bool = True
    points: list[PointBase] = Field(default_factory=list)
    # commands that change the meter are off unless enabled here (time sync)
    time_sync: TimeSyncConfig | None = None
    # IANA zone of a meter clock that carries no zone (default: the gateway's own zone)
    timezone: Annotated[str, BeforeValidator(check_zone)] | None = None
    # line settings of this meter where they differ from its link's (a mixed bus)
    baudrate: int | None = Field(default=None, ge=300, le=921600)
    parity: Literal["N", "E", "O"] | None = None
    bytesize: Literal[7, 8] | None = None
    stopbits: Literal[1, 2] | None = None
    # silence kept before this meter's requests where its transceiver needs more than the link's pause
    pause: Duration | None = None


class ProfileGroup(_Model):
    interval: Duration | None = None
    points: list[PointBase]


class ProfileBase(_Model):
    """A device profile file (``config/profiles/README.md``): the keys of every protocol."""

    name: str
    protocol: str
    manufacturer: str | None = None
    model: str | None = None
    source: str | None = None
    defaults: DefaultsBase = Field(default_factory=DefaultsBase)
    groups: list[ProfileGroup]


def protocol_models(name: str, *, point: type[PointBase], defaults: type[DefaultsBase] = DefaultsBase,
                    meter_fields: dict[str, Any] | None = None, meter_base: type[MeterBase] = MeterBase,
                    profile_fields: dict[str, Any] | None = None) -> tuple[type[MeterBase], type[ProfileBase]]:
    """A protocol's meter and profile models: the generic ones, typed with its point model and keys.

    ``meter_fields`` and ``profile_fields`` are pydantic field definitions, ``{key: (type, default)}``.
    """
    title = name.capitalize()
    group = create_model(f"{title}ProfileGroup", __base__=ProfileGroup, points=(list[point], ...))
    meter = create_model(f"{title}MeterConfig", __base__=meter_base, protocol=(Literal[name], ...),  # type: ignore[valid-type]
                         points=(list[point], Field(default_factory=list)), **(meter_fields or {}))
    profile = create_model(f"{title}ProfileConfig", __base__=ProfileBase, protocol=(Literal[name], ...),  # type: ignore[valid-type]
                           defaults=(defaults, Field(default_factory=defaults)), groups=(list[group], ...),
                           **(profile_fields or {}))
    return meter, profile


# --- links, sinks, the gateway ------------------------------------------------------------------


class SerialLinkConfig(_Model):
    type: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: int | None = Field(default=None, ge=300, le=921600)
    parity: Literal["N", "E", "O"] | None = None
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout: Duration = 1.0
    retries: int = Field(default=1, ge=0, le=5)
    pause: Duration = 0.0  # silence kept after a reply before the next request (slow transceivers)
    echo: bool = False  # the adapter hears its own transmission: read it back and drop it


class TcpLinkConfig(_Model):
    type: Literal["tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    timeout: Duration = 1.0
    retries: int = Field(default=1, ge=0, le=5)
    framing: Literal["socket", "rtu"] = "socket"  # rtu: a serial device server passes the bus's frames through
    pause: Duration = 0.0  # silence kept after a reply before the next request
    connect_pause: Duration = 0.0  # wait after connecting, for device servers that drop the first request
    echo: bool = False  # an RS-485 device server that passes its own transmission back


LinkConfig = Annotated[SerialLinkConfig | TcpLinkConfig, Field(discriminator="type")]


class GatewayConfig(_Model):
    id: str = "gw-01"
    data_dir: str = "./data"

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError(f"{brief(v)} may only hold letters, digits, '_' and '-' (it appears in topics and tags)")
        return v


class JournalConfig(_Model):
    max_bytes: int = Field(default=1 << 30, ge=1 << 18)  # an empty journal takes ~60 KiB
    max_age: Duration = 30 * 86400.0
    # readings waiting in memory for the journal; None: sized to the configuration (engine.journal.queue_bound)
    queue_bytes: int | None = Field(default=None, ge=1 << 12)


class TlsConfig(_Model):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


class MqttConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: str = "meterlink"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None   # name of an environment variable holding the password
    client_id: str | None = None      # default: meterlink-{gateway id}
    tls: TlsConfig | None = None
    commands: bool = False            # remote control over MQTT: off unless asked for
    keepalive: int = Field(default=30, ge=5, le=3600)
    homeassistant: bool = False


class InfluxConfig(_Model):
    url: str
    # v2: /api/v2/write (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics); v1: /write?db= (InfluxDB 1.x before 1.8)
    api: Literal["v2", "v1"] = "v2"
    token: str | None = Field(default=None, repr=False)
    token_file: str | None = None
    token_env: str | None = None      # name of an environment variable holding the token
    org: str = ""
    bucket: str = "meters"
    measurement: str = "meter"
    precision: Literal["s", "ms", "us", "ns"] = "ms"
    batch_size: int = Field(default=5000, ge=1, le=100000)
    flush_interval: Duration = 1.0
    timeout: Duration = 10.0
    # v1 only
    database: str | None = None
    retention_policy: str | None = None   # default: the database's default policy
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None


class SinksConfig(_Model):
    mqtt: MqttConfig | None = None
    influxdb: InfluxConfig | None = None


class HttpConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=1, le=65535)


@cache
def file_model(names: tuple[str, ...] | None = None) -> type[BaseModel]:
    """The model of a whole configuration file, with the meter models of ``names`` (None: every installed protocol).

    A configuration is validated with the protocols it names only, so a Modbus
    gateway never imports the other protocols' packages.
    """
    from meterlink.core.registry import protocol, protocol_names

    models = tuple(protocol(n).meter_model for n in (protocol_names() if names is None else names))
    if not models:
        meter: Any = MeterBase
    elif len(models) == 1:
        meter = models[0]
    else:
        meter = Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007 - a runtime tuple
    return create_model("FileConfig", __base__=_Model,
                        gateway=(GatewayConfig, Field(default_factory=GatewayConfig)),
                        journal=(JournalConfig, Field(default_factory=JournalConfig)),
                        links=(dict[str, LinkConfig], ...), meters=(dict[str, meter], ...),
                        sinks=(SinksConfig, Field(default_factory=SinksConfig)), http=(HttpConfig | None, None))
