"""The configuration file (CONTRACT section 3), validated before anything touches a wire.

Validation runs in two passes.  pydantic checks the shape: unknown keys, types,
durations, OBIS syntax.  Then :func:`_check_semantics` checks what only the
whole file can tell: a meter's link exists, its address fits its protocol, two
meters on one link do not share an address, its profile exists, every point is
complete for its protocol.  Each problem is one :class:`ConfigError` naming its
key path, so ``meterlink check`` can print them all at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import types
import typing
import warnings
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.durations import brief, format_duration, parse_duration
from gateway.errors import ConfigError
from gateway.meterclock import check_zone

Duration = Annotated[float, BeforeValidator(parse_duration)]
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A configuration is written by hand: a megabyte is already thousands of meters.  The node bound
# stops an alias bomb (&a [*b, *b, ...] nine levels deep) before anything walks the expanded tree.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 1_000_000
MAX_LINK_TIMEOUT = 60.0  # a meter answers within a second or two; more is a unit mistake (500 meant 500ms)
DURATION_KEYS = frozenset({"timeout", "interval", "tolerance", "backfill", "max_age", "flush_interval"})

OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
UNITS = ("Wh", "kWh", "MWh", "varh", "kvarh", "Mvarh", "VAh", "kVAh", "W", "kW", "MW", "var", "kvar",
         "Mvar", "VA", "kVA", "MVA", "V", "kV", "A", "Hz", "", "°", "s", "%")
PROTOCOLS = ("modbus", "dlms", "dlt645", "dlt698")


def supported_protocols() -> tuple[str, ...]:
    """The protocols whose driver this build ships (``drivers/<protocol>/driver.py``)."""
    import importlib.util

    return tuple(p for p in PROTOCOLS if importlib.util.find_spec(f"drivers.{p}.driver") is not None)


def _protocol_checks(m: MeterConfig, link: SerialLinkConfig | TcpLinkConfig) -> list[tuple[str, str]]:
    """Checks only the protocol's package knows (``drivers/<protocol>/checks.py``), as (key suffix, message)."""
    import importlib
    import importlib.util

    name = f"drivers.{m.protocol}.checks"
    if importlib.util.find_spec(name) is None:
        return []
    return list(importlib.import_module(name).check_meter(m, link))

REGISTER_WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
                  "int64": 4, "uint64": 4, "float64": 4}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _obis(value: object) -> str:
    if not isinstance(value, str) or not OBIS_RE.match(value):
        raise ValueError(f"{brief(value)} is not an OBIS code (six dotted groups A.B.C.D.E.F, e.g. 1.0.1.8.0.255)")
    if any(int(g) > 255 for g in value.split(".")):
        raise ValueError(f"{value!r} is not an OBIS code (each group is 0-255)")
    return value


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{brief(value)} is not a number")
    try:
        d = Decimal(str(value)) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        d = None
    if d is None or not d.is_finite():
        raise ValueError(f"{brief(value)} is not a number")
    return d


Obis = Annotated[str, BeforeValidator(_obis)]
Scale = Annotated[Decimal, BeforeValidator(_decimal)]


warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class PointConfig(_Model):
    """A point as written in a meter's ``points`` or a profile's group; protocol keys are all optional here."""

    obis: Obis
    name: str | None = None
    unit: str | None = None
    interval: Duration | None = None
    # modbus
    register: int | None = Field(default=None, ge=0, le=65535)
    function: Literal["input", "holding"] | None = None
    type: Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"] | None = None
    word_order: Literal["big", "little"] | None = None
    scale: Scale | None = None
    # dlt645
    di: str | None = None
    # dlt698: the OAD; without an obis key the OBIS code comes from drivers/dlt698/oads.py
    oad: str | None = None
    # dlms
    class_id: int | None = Field(default=None, ge=0, le=65535)
    attribute: int | None = Field(default=None, ge=1, le=127)

    @model_validator(mode="before")
    @classmethod
    def _obis_from_oad(cls, data: Any) -> Any:
        if isinstance(data, dict) and "obis" not in data and data.get("oad") is not None:
            from drivers.dlt698.points import default_obis

            return {**data, "obis": default_obis(data["oad"])}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(f"{brief(v)} is not a snake_case name")
        return v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        if v is not None and v not in UNITS:
            known = " ".join(u or '""' for u in UNITS)
            raise ValueError(f"{brief(v)} is not a known unit ({known})")
        return v


class ProfileDefaults(_Model):
    """What a profile's ``defaults`` may give all its points: the point keys that are not one point's own."""

    unit: str | None = None
    interval: Duration | None = None
    function: Literal["input", "holding"] | None = None
    type: Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"] | None = None
    word_order: Literal["big", "little"] | None = None
    scale: Scale | None = None
    class_id: int | None = Field(default=None, ge=0, le=65535)
    attribute: int | None = Field(default=None, ge=1, le=127)

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        return PointConfig._unit(v)


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
    framing: Literal["socket", "rtu"] = "socket"
    pause: Duration = 0.0  # silence kept after a reply before the next request
    connect_pause: Duration = 0.0  # wait after connecting, for device servers that drop the first request
    echo: bool = False  # an RS-485 device server that passes its own transmission back


LinkConfig = Annotated[SerialLinkConfig | TcpLinkConfig, Field(discriminator="type")]


class TimeSyncConfig(_Model):
    enabled: bool = False
    tolerance: Duration = 30.0
    broadcast: bool = False  # dlt645: broadcast 08H to the bus instead of addressing the meter


class MeterConfig(_Model):
    link: str
    protocol: Literal["modbus", "dlms", "dlt645", "dlt698"]
    address: int | str | dict[str, int | str]
    profile: str | None = None
    interval: Duration = 60.0
    enabled: bool = True
    points: list[PointConfig] = Field(default_factory=list)
    # modbus request planning (the largest block a meter answers, the gap worth bridging)
    max_registers: int | None = Field(default=None, ge=1, le=125)
    max_gap: int | None = Field(default=None, ge=0, le=124)
    # commands that change the meter are off unless enabled here (time sync)
    time_sync: TimeSyncConfig | None = None
    # dlt645: collect the daily frozen data of the last N days after midnight (0: off)
    daily_frozen_days: int = Field(default=0, ge=0, le=62)
    # dlt645: the edition, "2007" (default) or "1997" (checked in drivers/dlt645/checks.py)
    standard: int | str | None = None
    # any protocol: IANA zone of a meter clock that carries no zone (default: the gateway's own zone)
    timezone: Annotated[str, BeforeValidator(check_zone)] | None = None
    # dlms (keys and passwords from files or environment variables, never inline)
    transport: Literal["hdlc", "wrapper", "push"] | None = None
    auth: Literal["none", "lls", "hls-gmac"] | None = None
    password_file: str | None = None
    password_env: str | None = None
    auth_key_file: str | None = None
    auth_key_env: str | None = None
    enc_key_file: str | None = None
    enc_key_env: str | None = None
    broadcast_key_file: str | None = None    # push: the broadcast key, for security control with bit 6 (0x40) set
    broadcast_key_env: str | None = None
    client_system_title: str | None = None   # 8 bytes as 16 hex digits
    serial: str | None = None
    backfill: Duration | None = None         # how far back a profile's first read reaches (default 1d)


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
    queue_bytes: int = Field(default=4 << 20, ge=1 << 12)  # readings waiting in memory while the disk fails


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


class ProfileGroup(_Model):
    interval: Duration | None = None
    points: list[PointConfig]


class ForbiddenRange(_Model):
    """Registers a meter refuses to read (exception 02): block reads must not bridge over them."""

    function: Literal["input", "holding"]
    first: int = Field(ge=0, le=65535)
    last: int = Field(ge=0, le=65535)


class ProfileConfig(_Model):
    """A device profile file (``config/profiles/README.md``)."""

    name: str
    protocol: Literal["modbus", "dlms", "dlt645", "dlt698"]
    manufacturer: str | None = None
    model: str | None = None
    source: str | None = None
    standard: int | str | None = None  # dlt645: the edition of the profile's identifiers ("1997": 4 digits)
    defaults: ProfileDefaults = Field(default_factory=ProfileDefaults)
    max_registers: int | None = Field(default=None, ge=1, le=125)
    max_gap: int | None = Field(default=None, ge=0, le=124)
    forbidden: list[ForbiddenRange] = Field(default_factory=list)
    groups: list[ProfileGroup]


class FileConfig(_Model):
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    links: dict[str, LinkConfig]
    meters: dict[str, MeterConfig]
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    http: HttpConfig | None = None


# ---------------------------------------------------------------------------
# Resolved configuration: what the scheduler and the drivers work with.


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A point with every default applied (profile defaults, meter interval)."""

    obis: str
    name: str
    unit: str
    interval: float
    register: int | None = None
    function: str = "holding"
    type: str = "uint16"
    word_order: str = "big"
    scale: Decimal = Decimal(1)
    di: str | None = None
    oad: str | None = None
    class_id: int | None = None
    attribute: int = 2

    @property
    def words(self) -> int:
        return REGISTER_WORDS[self.type]


@dataclass(frozen=True, slots=True, kw_only=True)
class Meter:
    id: str
    link: str
    protocol: str
    address: Any
    points: tuple[Point, ...]
    config: MeterConfig
    max_registers: int = 125
    max_gap: int | None = None  # None: bridge every gap cheaper to read than a new request (drivers/modbus/plan.py)
    forbidden: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    id: str
    config: SerialLinkConfig | TcpLinkConfig
    protocol: str
    baudrate: int = 9600
    parity: str = "N"

    @property
    def timeout(self) -> float:
        return self.config.timeout

    @property
    def tries(self) -> int:
        return 1 + self.config.retries

    def describe(self) -> str:
        c = self.config
        if isinstance(c, SerialLinkConfig):
            return f"{c.port} {self.baudrate} {c.bytesize}{self.parity}{c.stopbits}"
        return f"{c.host}:{c.port}" + (" (rtu framing)" if c.framing == "rtu" else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    gateway: GatewayConfig
    journal: JournalConfig
    links: dict[str, Link]
    meters: dict[str, Meter]
    sinks: SinksConfig
    http: HttpConfig | None
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def data_dir(self) -> Path:
        p = Path(self.gateway.data_dir)
        if not p.is_absolute() and self.path is not None and self.gateway.data_dir.startswith(".."):
            return (self.path.parent / p).resolve()
        return p

    def reads_per_hour(self) -> float:
        return sum(3600.0 / p.interval for m in self.meters.values() for p in m.points)

    def summary(self) -> str:
        points = sum(len(m.points) for m in self.meters.values())
        return (f"{self.path or 'config'}: ok: gateway {self.gateway.id}, {len(self.links)} links, "
                f"{len(self.meters)} meters, {points} points, {self.reads_per_hour():,.0f} reads per hour")


class ConfigProblems(Exception):
    """Every problem found in one configuration file."""

    def __init__(self, problems: list[ConfigError]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# ---------------------------------------------------------------------------


def _key_path(loc: tuple[int | str, ...], drop_tags: bool = True) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # discriminated unions put the tag into the location: links.rs485-1.serial.port
        if drop_tags and i == 2 and loc[0] == "links" and item in ("serial", "tcp"):
            continue
        if drop_tags and isinstance(item, str) and (item.startswith("function-") or item in (
                "int", "str", "dict[str,union[int,str]]")):
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _unwrap(t: Any, tag: int | str | None) -> Any:
    """``X`` from ``Annotated[X, ...]``, ``X | None``, and the member of a tagged union named by ``tag``."""
    while True:
        origin = typing.get_origin(t)
        if origin is Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(t) if isinstance(a, type) and issubclass(a, BaseModel)]
            tagged = [m for m in models if "type" in m.model_fields
                      and tag in typing.get_args(m.model_fields["type"].annotation)]
            if tagged:
                return _UnionTag(tagged[0])
            if len(models) == 1:
                return models[0]
            return t
        else:
            return t


class _UnionTag:
    """Marks "the next location item is the union's tag": the model follows it."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model


def _suggest(root: Any, loc: tuple[int | str, ...]) -> str:
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"unknown key, did you mean `{close[0]}`?"
    return f"unknown key (known here: {', '.join(known)})"


def _model_at(root: Any, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` (a pydantic error location), for "did you mean"."""
    t: Any = root
    items = list(loc)
    i = 0
    while i < len(items):
        item = items[i]
        t = _unwrap(t, item)
        if isinstance(t, _UnionTag):
            t = t.model
            i += 1  # the tag itself
            continue
        if isinstance(t, type) and issubclass(t, BaseModel):
            info = t.model_fields.get(str(item))
            if info is None:
                return None
            t = info.annotation
        elif typing.get_origin(t) is dict:
            t = typing.get_args(t)[1]
        elif typing.get_origin(t) is list:
            t = typing.get_args(t)[0]
        else:
            return None
        i += 1
    t = _unwrap(t, None)
    if isinstance(t, _UnionTag):
        t = t.model
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _pydantic_problems(exc: ValidationError, prefix: tuple[int | str, ...] = (),
                       root: Any = None) -> list[ConfigError]:
    """One line per problem; ``root`` is the model validated, for "did you mean" on unknown keys."""
    problems: list[ConfigError] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        path = _key_path(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = _suggest(root or FileConfig, tuple(err["loc"]))
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            msg = f"{brief(err.get('input'))}: " + msg.replace("Input should be", "must be")
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            msg = f"{tag!r}: must be 'serial' or 'tcp'"
            path += ".type"
        elif err["type"] == "union_tag_not_found":
            msg = "required key is missing (serial | tcp)"
            path += ".type"
        else:
            msg = msg.replace("Input should be", "must be")
        if path in seen and err["type"] in ("int_type", "string_type", "dict_type", "int_parsing"):
            continue  # a union reports each alternative; one line is enough
        seen.add(path)
        problems.append(ConfigError(path, msg))
    return problems


def read_text_file(path: Path, limit: int, shown: str | None = None) -> str:
    """A small UTF-8 text file, refused with one line if it is missing, not a file, too large or binary.

    ``/dev/zero`` or a FIFO given by mistake must not hang or eat the memory: the file must be a
    regular file and at most ``limit`` bytes are read.  Messages name the file as ``shown`` (as written).
    """
    name = shown or str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigProblems([ConfigError("", f"{name}: no such file")]) from None
    except OSError as exc:
        raise ConfigProblems([ConfigError("", f"{name}: cannot read: {exc.strerror}")]) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigProblems([ConfigError("", f"{name}: not a regular file")])
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigProblems([ConfigError("", f"{name}: cannot read: {exc.strerror}")]) from None
    if len(data) > limit:
        raise ConfigProblems([ConfigError("", f"{name}: larger than {limit >> 10} KiB; is it the right file?")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigProblems([ConfigError("", f"{name}: not UTF-8 text (byte {exc.start}); is it the right "
                                              "file?")]) from None


def load_yaml(path: Path, shown: str | None = None) -> Any:
    """The YAML document in ``path``, refusing what a SafeLoader alone lets through.

    Refused, each with one line: a file over :data:`MAX_YAML_BYTES`, aliases that expand to more
    than :data:`MAX_YAML_NODES` values (a "billion laughs" bomb would otherwise run pydantic out of
    memory), and a mapping key written twice (YAML keeps the last silently, so a pasted meter
    block would replace the first meter without a word).
    """
    name = shown or str(path)
    text = read_text_file(path, MAX_YAML_BYTES, name)
    loader = _YAML_LOADER(text)  # a SafeLoader, in C when libyaml is there
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _inspect_nodes(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigProblems([ConfigError("", f"{where}: YAML syntax error: {problem}")]) from None
    except RecursionError:
        raise ConfigProblems([ConfigError("", f"{name}: nested too deeply")]) from None
    except (ValueError, OverflowError) as exc:  # an integer of 5,000 digits: Python's int() refuses it
        reason = str(exc).split(":")[0][:100]
        raise ConfigProblems([ConfigError("", f"{name}: a value cannot be read ({reason})")]) from None
    finally:
        loader.dispose()


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _inspect_nodes(root: yaml.Node) -> None:
    """Count the values the document expands to and find keys written twice, before constructing it.

    Each node is visited once (aliases share nodes), so a bomb costs as little as its text.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    duplicates: list[ConfigError] = []

    def visit(node: yaml.Node, path: str) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigProblems([ConfigError(path, "an alias refers to the value that holds it (recursive "
                                                     "alias)")])
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for k, v in node.value:
                name = str(k.value)[:60] if isinstance(k, yaml.ScalarNode) else "?"
                child = f"{path}.{name}" if path else str(name)
                if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG:
                    line = k.start_mark.line + 1
                    prev = first.get((k.tag, k.value))
                    if prev is None:
                        first[(k.tag, k.value)] = line
                    else:
                        duplicates.append(ConfigError(child, f"defined twice (lines {prev} and {line})"))
                size = visit(v, child)
                if size > MAX_YAML_NODES:
                    raise _too_many(child)
                total += visit(k, child) + size
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                total += visit(v, f"{path}[{i}]")
        active.discard(key)
        sizes[key] = total
        return total

    if visit(root, "") > MAX_YAML_NODES:
        raise _too_many("")
    if duplicates:
        raise ConfigProblems(duplicates)


def _too_many(path: str) -> ConfigProblems:
    return ConfigProblems([ConfigError(path, f"the YAML aliases (*name) here expand to more than "
                                             f"{MAX_YAML_NODES:,} values; write the values out")])


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a configuration file; raises :class:`ConfigProblems` listing every problem."""
    p = Path(path)
    raw = load_yaml(p)
    return parse_config(raw, base=p.parent, path=p)


def parse_config(raw: Any, *, base: Path | None = None, path: Path | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigProblems([ConfigError("", "the file must hold a mapping with 'links' and 'meters'")])
    try:
        fc = FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigProblems(_pydantic_problems(exc)) from None
    bare = _bare_durations(raw)
    problems = _check_timeouts(fc, bare)
    try:
        cfg = _check_semantics(fc, base or Path.cwd(), path)
    except ConfigProblems as exc:
        raise ConfigProblems(problems + exc.problems) from None
    if problems:
        raise ConfigProblems(problems)
    notes = [f"{key}: a bare number is read as seconds ({value:g} s); write {_as_written(value)} to say so"
             for key, value in bare.items()]
    return dataclasses.replace(cfg, warnings=cfg.warnings + tuple(notes))


def _as_written(seconds: float) -> str:
    if seconds >= 1 and seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds * 1000:g}ms"


def _bare_durations(raw: Any, path: str = "") -> dict[str, float]:
    """Durations written as bare numbers (``timeout: 500``): legal, read as seconds, and worth a warning.

    ``timeout: 500`` meant 500 ms more often than 8 minutes; ``meterlink check`` says so.
    """
    found: dict[str, float] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            child = f"{path}.{k}" if path else str(k)
            if k in DURATION_KEYS and isinstance(v, int | float) and not isinstance(v, bool):
                found[child] = v
            elif isinstance(v, dict | list):
                found.update(_bare_durations(v, child))
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            found.update(_bare_durations(v, f"{path}[{i}]"))
    return found


def _check_timeouts(fc: FileConfig, bare: dict[str, float]) -> list[ConfigError]:
    """A reply timeout over a minute is a unit mistake (``timeout: 500`` for 500 ms), not a slow meter."""
    problems = []
    for lid, lc in fc.links.items():
        if lc.timeout <= MAX_LINK_TIMEOUT:
            continue
        key = f"links.{lid}.timeout"
        if key in bare:
            n = bare[key]
            problems.append(ConfigError(key, f"{n:g} s is too long for a reply timeout (at most 60 s); "
                                             f"write {n:g}ms or 5s"))
        else:
            problems.append(ConfigError(key, f"{format_duration(lc.timeout)} is too long for a reply timeout "
                                             "(at most 60s); meters answer within seconds"))
    return problems


# ---------------------------------------------------------------------------

_PROTOCOL_LINE_DEFAULTS = {"modbus": (9600, "E"), "dlt645": (2400, "E"), "dlms": (9600, "N"), "dlt698": (2400, "E")}


def _check_semantics(fc: FileConfig, base: Path, path: Path | None) -> Config:
    from gateway.profiles import ProfileError, load_profile  # profiles import this module

    problems: list[ConfigError] = []

    # which protocol each link carries: one per link
    link_protocol: dict[str, str] = {}
    for mid, m in fc.meters.items():
        if m.link not in fc.links:
            known = ", ".join(sorted(fc.links)) or "none"
            problems.append(ConfigError(f"meters.{mid}.link", f"no link named {m.link!r} (links: {known})"))
            continue
        other = link_protocol.setdefault(m.link, m.protocol)
        if other != m.protocol:
            problems.append(ConfigError(
                f"meters.{mid}.protocol",
                f"{m.protocol} on link {m.link!r}, which already carries {other}: one protocol per link"))
    for lid in fc.links:
        if not ID_RE.match(lid):
            problems.append(ConfigError(f"links.{lid}", "a link id may only hold letters, digits, '_' and '-'"))

    links: dict[str, Link] = {}
    for lid, lc in fc.links.items():
        proto = link_protocol.get(lid, "modbus")
        baud, parity = _PROTOCOL_LINE_DEFAULTS[proto]
        if proto == "dlt645":  # DL/T 645-1997 meters default to 1200 baud, 2007 ones to 2400 (both 8E1)
            from drivers.dlt645.checks import DEFAULT_BAUDRATE, standard_of

            editions = {standard_of(m) for m in fc.meters.values() if m.link == lid} & set(DEFAULT_BAUDRATE)
            if len(editions) == 1:
                baud = DEFAULT_BAUDRATE[next(iter(editions))]
            elif editions and isinstance(lc, SerialLinkConfig) and lc.baudrate is None:
                problems.append(ConfigError(f"links.{lid}.baudrate", "the link carries DL/T 645-2007 and -1997 "
                                            "meters, whose default rates differ (2400, 1200): set the rate they share"))
        if isinstance(lc, SerialLinkConfig):
            baud = lc.baudrate or baud
            parity = lc.parity or parity
        elif proto != "modbus" and lc.framing != "socket":
            problems.append(ConfigError(f"links.{lid}.framing", f"only modbus uses framing; this link carries {proto}"))
        links[lid] = Link(id=lid, config=lc, protocol=proto, baudrate=baud, parity=parity)

    meters: dict[str, Meter] = {}
    interned: dict[Point, Point] = {}
    addresses: dict[tuple[str, str], str] = {}
    for mid, m in fc.meters.items():
        key = f"meters.{mid}"
        if not ID_RE.match(mid):
            problems.append(ConfigError(key, "a meter id may only hold letters, digits, '_' and '-'"))
        supported = supported_protocols()
        if m.protocol not in supported:
            problems.append(ConfigError(f"{key}.protocol",
                                        f"{m.protocol} is not supported by this build yet (supported: "
                                        f"{', '.join(supported)})"))
            continue
        if m.link in fc.links:
            for suffix, message in _protocol_checks(m, fc.links[m.link]):
                problems.append(ConfigError(f"{key}.{suffix}" if suffix else key, message))
        addr_problem, norm = _check_address(m)
        if addr_problem:
            problems.append(ConfigError(f"{key}.address", addr_problem))
        elif m.link in fc.links:
            prev = addresses.get((m.link, str(norm)))
            if prev is not None:
                problems.append(ConfigError(f"{key}.address",
                                            f"{norm} is already the address of meter {prev} on link {m.link!r}"))
            else:
                addresses[(m.link, str(norm))] = mid
        if m.protocol == "modbus" and m.link in fc.links:
            lc = fc.links[m.link]
            if isinstance(lc, TcpLinkConfig) and lc.framing == "socket" and norm == 0:
                problems.append(ConfigError(f"{key}.address", "0 is the broadcast address, no meter answers it"))

        profile = None
        if m.profile is not None:
            try:
                profile = load_profile(m.profile, base=base)
            except ProfileError as exc:
                problems.append(ConfigError(f"{key}.profile", str(exc)))
                continue
            if profile.protocol != m.protocol:
                problems.append(ConfigError(f"{key}.profile",
                                            f"{m.profile} is a {profile.protocol} profile, the meter speaks {m.protocol}"))
                continue
            if m.protocol == "dlt645" and str(profile.standard or "2007") != str(m.standard or "2007"):
                problems.append(ConfigError(f"{key}.standard", f"{m.profile} is a DL/T 645-{profile.standard or 2007} "
                                            f"profile: set standard: \"{profile.standard or 2007}\" on the meter"))
                continue
        points, point_problems = resolve_points(m, profile, key)
        problems.extend(point_problems)
        if m.daily_frozen_days:
            if m.protocol not in ("dlt645", "dlt698"):
                problems.append(ConfigError(f"{key}.daily_frozen_days", "only dlt645 and dlt698 meters have daily "
                                                                        "frozen data"))
            else:
                points.append(Point(obis="1.0.98.1.0.255", name="daily_frozen", unit="kWh", interval=3600.0,
                                    **({"oad": "50040200"} if m.protocol == "dlt698" else {"di": "05060101"})))
        if not points and not point_problems:
            problems.append(ConfigError(f"{key}.points", "the meter has no points (name a profile or list points)"))
        max_regs = m.max_registers or (profile.max_registers if profile else None) or 125
        max_gap = m.max_gap if m.max_gap is not None else (profile.max_gap if profile else None)
        forbidden = tuple((f.function, f.first, f.last) for f in profile.forbidden) if profile else ()
        # thousands of meters of one model share their Point objects; the raw point list is not kept
        shared = tuple(interned.setdefault(p, p) for p in points)
        # key and password files named relative to the configuration file are found from anywhere
        files = {k: str(base / v) for k, v in m.model_dump(include={"password_file", "auth_key_file",
                                                                     "enc_key_file", "broadcast_key_file"}).items()
                 if v is not None and not Path(v).is_absolute()}
        meters[mid] = Meter(id=mid, link=m.link, protocol=m.protocol, address=norm, points=shared,
                            config=m.model_copy(update={"points": [], **files}), max_registers=max_regs,
                            max_gap=max_gap, forbidden=forbidden)

    _check_sinks(fc, problems)
    if problems:
        raise ConfigProblems(problems)
    enabled = {k: v for k, v in meters.items() if v.config.enabled}
    used_links = {k: v for k, v in links.items()}
    return Config(gateway=fc.gateway, journal=fc.journal, links=used_links, meters=enabled,
                  sinks=_sinks_files_from(fc.sinks, base), http=fc.http, path=path)


def _sinks_files_from(sinks: SinksConfig, base: Path) -> SinksConfig:
    """TLS files named relative to the configuration file are found from anywhere, like key files."""
    mq = sinks.mqtt
    if mq is None or mq.tls is None:
        return sinks
    files = {k: str(base / v) for k, v in mq.tls.model_dump(include={"ca_file", "cert_file", "key_file"}).items()
             if v is not None and not Path(v).is_absolute()}
    if not files:
        return sinks
    return sinks.model_copy(update={"mqtt": mq.model_copy(update={"tls": mq.tls.model_copy(update=files)})})


def referenced_files(cfg: Config) -> list[tuple[str, str, str]]:
    """Every file the configuration names, as (key path, path, kind): kind is ``secret``, ``key`` or ``pem``."""
    base = cfg.path.parent if cfg.path is not None else Path.cwd()
    found: list[tuple[str, str, str]] = []

    def add(key: str, value: str | None, kind: str, *, from_config_dir: bool = False) -> None:
        # sinks join their secret files to the config's folder when they start; meter and TLS files
        # were joined by _check_semantics already
        if value is not None:
            path = base / value if from_config_dir else Path(value)
            found.append((key, str(path.absolute()), kind))

    mq = cfg.sinks.mqtt
    if mq is not None:
        add("sinks.mqtt.password_file", mq.password_file, "secret", from_config_dir=True)
        if mq.tls is not None:
            for k in ("ca_file", "cert_file", "key_file"):
                add(f"sinks.mqtt.tls.{k}", getattr(mq.tls, k), "pem")
    ix = cfg.sinks.influxdb
    if ix is not None:
        add("sinks.influxdb.token_file", ix.token_file, "secret", from_config_dir=True)
        add("sinks.influxdb.password_file", getattr(ix, "password_file", None), "secret", from_config_dir=True)
    for mid, m in cfg.meters.items():
        add(f"meters.{mid}.password_file", m.config.password_file, "secret")
        add(f"meters.{mid}.auth_key_file", m.config.auth_key_file, "key")
        add(f"meters.{mid}.enc_key_file", m.config.enc_key_file, "key")
        add(f"meters.{mid}.broadcast_key_file", m.config.broadcast_key_file, "key")
    return found


def check_files(cfg: Config) -> list[ConfigError]:
    """Read every file the configuration names, now, so a missing CA or password file fails ``check``.

    Without this a typo in ``password_file`` passes ``meterlink check`` and shows up only when the
    gateway starts (or for a meter's key, at its first read).  Secrets are read and dropped; a
    message names the key and the file, never the content.
    """
    from gateway.secrets import read_secret

    problems: list[ConfigError] = []
    for key, file, kind in referenced_files(cfg):
        try:
            if kind == "pem":
                text = read_text_file(Path(file), 1 << 20)
                if "-----BEGIN " not in text:
                    problems.append(ConfigError(key, f"{file} holds no PEM block (-----BEGIN ...)"))
                continue
            secret = read_secret(key, file=file)
        except ConfigProblems as exc:
            problems.append(ConfigError(key, exc.problems[0].message))
            continue
        except ConfigError as exc:
            problems.append(exc)
            continue
        if kind == "key" and secret is not None:
            try:
                ok = len(bytes.fromhex(secret)) == 16
            except ValueError:
                ok = False
            if not ok:
                problems.append(ConfigError(key, f"{file} does not hold a key of 32 hex digits"))
    return problems


def check_config(path: str | os.PathLike[str]) -> Config:
    """What ``meterlink check`` (and ``run``, before it starts) validates: the file and every file it names.

    Problems raise :class:`ConfigProblems`; what is legal but likely wrong (a bare-number duration,
    a serial port that is not there now) comes back in ``Config.warnings``.
    """
    cfg = load_config(path)
    problems = check_files(cfg)
    if problems:
        raise ConfigProblems(problems)
    notes = [f"links.{lid}.port: {link.config.port} does not exist (yet?): plug the adapter in or fix the path"
             for lid, link in cfg.links.items()
             if isinstance(link.config, SerialLinkConfig) and not os.path.exists(link.config.port)]
    return dataclasses.replace(cfg, warnings=cfg.warnings + tuple(notes))


def _check_address(m: MeterConfig) -> tuple[str | None, Any]:
    a = m.address
    if m.protocol == "modbus":
        if isinstance(a, bool) or not isinstance(a, int):
            return f"{a!r} is not a unit id (1-247)", a
        if not 0 <= a <= 247:
            return f"{a} is not a unit id (1-247)", a
        return None, a
    if m.protocol == "dlt645":
        s = str(a)
        if not re.fullmatch(r"\d{12}", s):
            return f"{a!r} is not a DL/T 645 address (12 digits as on the nameplate, quoted)", a
        return None, s
    if m.protocol == "dlt698":
        s = str(a)
        if not re.fullmatch(r"\d{12}", s):
            return f"{a!r} is not a DL/T 698.45 server address (12 digits as on the nameplate, quoted)", a
        return None, s
    if not isinstance(a, dict):
        return f"{a!r} is not a DLMS address ({{client: 16, logical: 1, physical: 17}})", a
    return None, a


def resolve_points(m: MeterConfig, profile: ProfileConfig | None, key: str) -> tuple[list[Point], list[ConfigError]]:
    """Merge profile and meter points (a meter point replaces the profile's point with its OBIS code)."""
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    if profile is not None:
        for gi, group in enumerate(profile.groups):
            for pi, pc in enumerate(group.points):
                d = profile.defaults.model_dump(exclude_none=True)
                d.update(pc.model_dump(exclude_none=True))
                d.setdefault("interval", group.interval)
                merged[pc.obis] = (f"profile {profile.name}: groups[{gi}].points[{pi}]", d)
    seen: set[str] = set()
    for pi, pc in enumerate(m.points):
        where = f"{key}.points[{pi}]"
        if pc.obis in seen:
            return [], [ConfigError(f"{where}.obis", f"{pc.obis} is listed twice for this meter")]
        seen.add(pc.obis)
        base = profile.defaults.model_dump(exclude_none=True) if profile is not None else {}
        if pc.obis in merged:
            base.update(merged[pc.obis][1])
        base.update(pc.model_dump(exclude_none=True))
        merged[pc.obis] = (where, base)

    points: list[Point] = []
    problems: list[ConfigError] = []
    names: dict[str, str] = {}
    for obis, (where, d) in merged.items():
        try:
            point = _make_point(m, obis, d)
        except ConfigError as exc:
            problems.append(ConfigError(f"{where}.{exc.key_path}" if exc.key_path else where, exc.message))
            continue
        if point.name in names:
            problems.append(ConfigError(f"{where}.name", f"{point.name!r} is also the name of {names[point.name]}"))
            continue
        names[point.name] = obis
        points.append(point)
    return points, problems


def _make_point(m: MeterConfig, obis: str, d: dict[str, Any]) -> Point:
    interval = d.get("interval") or m.interval
    if isinstance(interval, str):
        interval = parse_duration(interval)
    name = d.get("name") or "obis_" + obis.replace(".", "_")
    unit = d.get("unit", "")
    common = {"obis": obis, "name": name, "unit": unit, "interval": float(interval)}
    if m.protocol == "modbus":
        for k in ("di", "oad", "class_id", "attribute"):
            if k in d:
                raise ConfigError(k, "is not a modbus key (register, function, type, word_order, scale)")
        if "register" not in d:
            raise ConfigError("register", "required for a modbus point")
        typ = d.get("type", "uint16")
        if typ not in REGISTER_WORDS:
            raise ConfigError("type", f"{typ!r} is not a register type ({' '.join(REGISTER_WORDS)})")
        word_order = d.get("word_order", "big")
        if REGISTER_WORDS[typ] == 1 and word_order != "big":
            raise ConfigError("word_order", f"{typ} is one register: it has no word order")
        reg = int(d["register"])
        if reg + REGISTER_WORDS[typ] > 65536:
            raise ConfigError("register", f"{reg:#06x} + {REGISTER_WORDS[typ]} registers runs past 0xFFFF")
        scale = d.get("scale", Decimal(1))
        scale = scale if isinstance(scale, Decimal) else _decimal(scale)
        if scale == 0:
            raise ConfigError("scale", "0 would turn every value into 0")
        return Point(**common, register=reg, function=d.get("function", "holding"), type=typ,
                     word_order=word_order, scale=scale)
    if m.protocol == "dlt645":
        from drivers.dlt645.checks import PointProblem, check_point, standard_of
        from drivers.dlt645.dis import lookup

        try:
            checked = check_point(standard_of(m), d.get("di"), d.get("unit"))
        except PointProblem as exc:
            raise ConfigError(exc.key, str(exc)) from None
        if checked is not None:  # a DL/T 645-1997 point (drivers/dlt645/dis1997.py)
            return Point(**(common | {"unit": checked[1]}), di=checked[0])
        di = d.get("di")
        if not di or not re.fullmatch(r"[0-9A-Fa-f]{8}", str(di)):
            raise ConfigError("di", f"{di!r} is not a data identifier (8 hex digits DI3..DI0, e.g. '00010000')")
        di = str(di).upper()
        try:
            item = lookup(di)
        except KeyError:
            raise ConfigError("di", f"{di} is not in Meterlink's DL/T 645-2007 table (drivers/dlt645/dis.py)") from None
        if item.is_block:
            raise ConfigError("di", f"{di} is a block; list its members ({', '.join(item.members[:3])}, ...): "
                                    "the driver reads blocks by itself")
        if di == "04000102":
            common["unit"] = "s"  # the clock point: value = drift in seconds, meter_ts = the meter's time
        elif item.obis is None:
            raise ConfigError("di", f"{di} ({item.name}) is not a measured value")
        elif "unit" in d and d["unit"] != item.unit:
            raise ConfigError("unit", f"{d['unit']!r}: {di} ({item.name}) is in {item.unit or 'no unit'}")
        else:
            common["unit"] = item.unit
        return Point(**common, di=di)
    if m.protocol == "dlt698":
        from drivers.dlt698.points import PointProblem, check_point

        try:
            oad, unit = check_point(d.get("oad"), d.get("unit"))
        except PointProblem as exc:
            raise ConfigError(exc.key, str(exc)) from None
        return Point(**(common | {"unit": unit}), oad=oad)
    class_id = d.get("class_id", 3)
    return Point(**common, class_id=class_id, attribute=d.get("attribute", 2))


def _check_sinks(fc: FileConfig, problems: list[ConfigError]) -> None:
    mq = fc.sinks.mqtt
    if mq is not None:
        if sum(x is not None for x in (mq.password, mq.password_file, mq.password_env)) > 1:
            problems.append(ConfigError("sinks.mqtt.password_file",
                                        "give one of password, password_file, password_env"))
        if (mq.password or mq.password_file or mq.password_env) is not None and mq.username is None:
            problems.append(ConfigError("sinks.mqtt.username", "required when a password is given"))
        if mq.tls is not None and (mq.tls.cert_file is None) != (mq.tls.key_file is None):
            problems.append(ConfigError("sinks.mqtt.tls", "cert_file and key_file go together"))
        if not re.fullmatch(r"[^#+\s]+", mq.prefix):
            problems.append(ConfigError("sinks.mqtt.prefix", f"{mq.prefix!r} may not hold '#', '+' or spaces"))
    ix = fc.sinks.influxdb
    if ix is not None:
        if sum(x is not None for x in (ix.token, ix.token_file, ix.token_env)) > 1:
            problems.append(ConfigError("sinks.influxdb.token_file", "give one of token, token_file, token_env"))
        if not re.match(r"^https?://", ix.url):
            problems.append(ConfigError("sinks.influxdb.url", f"{brief(ix.url)} is not an http:// or https:// URL"))
        if ix.api == "v1":
            if not ix.database:
                problems.append(ConfigError("sinks.influxdb.database", "required with api: v1 (the InfluxDB 1.x "
                                                                       "database to write to)"))
            if (ix.token or ix.token_file or ix.token_env) is not None:
                problems.append(ConfigError("sinks.influxdb.token_file", "api: v1 logs in with username and "
                                                                         "password_file, not a token"))
            if ix.password_file is not None and ix.password_env is not None:
                problems.append(ConfigError("sinks.influxdb.password_file", "give one of password_file, "
                                                                            "password_env"))
            if (ix.password_file or ix.password_env) is not None and ix.username is None:
                problems.append(ConfigError("sinks.influxdb.username", "required when a password is given"))
        else:
            for k in ("database", "retention_policy", "username", "password_file", "password_env"):
                if getattr(ix, k) is not None:
                    problems.append(ConfigError(f"sinks.influxdb.{k}", "only with api: v1 (InfluxDB 1.x); with "
                                                                       "api: v2 name the bucket and a token"))
