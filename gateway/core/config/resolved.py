"""What a validated configuration resolves to: what the scheduler, the drivers and the sinks work with.

This module imports no pydantic, and nothing that does.  pydantic checks the
file (:mod:`meterlink.core.config.schema`) and costs a gateway ~15 MB of
memory for its validators once a model exists (issue 14: the peer load's
goal is 40 MB in all).  A running gateway only reads its configuration, so
``meterlink run`` validates in a short-lived child process
(:mod:`meterlink.core.config.child`) and receives these plain objects: every
section of the file as :class:`Settings`, every meter and point as frozen
dataclasses.  A pydantic model handed to :class:`Link`, :class:`Meter` or
:class:`Config` (tests, the demo, which validate in-process) becomes
:class:`Settings` the same way, so every gateway sees one kind of object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class Settings:
    """One validated section of the configuration (a link, a sink, a meter's keys), as read-only attributes.

    It has the attributes of the pydantic model it was taken from
    (``settings.timeout``, ``settings.tls.ca_file``); nested models are
    Settings too.  Fields the model keeps out of its repr (passwords,
    tokens) stay out of this one, so a logged or printed section shows no secret.
    """

    __slots__ = ("__dict__", "_hidden", "_kind")

    def __init__(self, kind: str, values: dict[str, Any], hidden: frozenset[str] = frozenset()) -> None:
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_hidden", hidden)
        self.__dict__.update(values)

    @classmethod
    def of(cls, value: Any) -> Any:
        """``value`` with every pydantic model in it (also in lists and dicts) turned into Settings.

        Duck-typed on ``model_fields`` so that this module needs no pydantic.
        """
        fields = getattr(type(value), "model_fields", None)
        if isinstance(fields, dict):
            return cls(type(value).__name__, {name: cls.of(getattr(value, name)) for name in fields},
                       frozenset(name for name, f in fields.items() if not getattr(f, "repr", True)))
        if isinstance(value, list):
            return [cls.of(v) for v in value]
        if isinstance(value, dict):
            return {k: cls.of(v) for k, v in value.items()}
        return value

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``: what ``model_copy(update=...)`` was for the model."""
        unknown = set(changes) - set(self.__dict__)
        if unknown:
            raise AttributeError(f"{self._kind} has no {', '.join(sorted(unknown))}")
        return Settings(self._kind, {**self.__dict__, **changes}, self._hidden)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is read-only: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self._kind} is read-only: {name} cannot be deleted")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Settings, (self._kind, dict(self.__dict__), self._hidden))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._kind == other._kind and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((self._kind, _hashable(self.__dict__)))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k not in self._hidden)
        return f"{self._kind}({shown})"


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class Line:
    """A serial line's settings: what ``9600 8N1`` says."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A point with every default applied (profile defaults, meter interval).

    Each protocol resolves its points to a subclass carrying where the value
    lives on the meter (a register, a DI, an OAD, an object); ``signed`` says
    whether the value may be negative, so an energy of it may fall.
    """

    obis: str
    name: str
    unit: str
    interval: float
    signed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Meter:
    id: str
    link: str
    protocol: str
    address: Any
    points: tuple[Point, ...]
    config: Any  # the meter's keys as written (Settings of its protocol's meter model), points left out
    line: Line | None = None  # on a serial link: the line this meter speaks
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # the protocol's resolved extras

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", Settings.of(self.config))


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    id: str
    config: Any  # the link's keys (Settings of a serial or tcp link model): ``config.type`` says which
    protocol: str  # the protocol of its first meter
    baudrate: int = 9600
    parity: str = "N"
    protocols: tuple[str, ...] = ()  # every protocol its meters speak (a mixed bus has several)
    mixed: bool = False  # several protocols, or meters with their own line settings, share the port
    # (protocol, "module:Class") of each protocol's driver, from the registry when the configuration was
    # resolved: the running gateway makes its drivers without loading the protocols' descriptions
    drivers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", Settings.of(self.config))

    @property
    def serial(self) -> bool:
        """An RS-485 port of this box (not a TCP endpoint, which may still carry RTU frames)."""
        return bool(self.config.type == "serial")

    @property
    def timeout(self) -> float:
        return float(self.config.timeout)

    @property
    def tries(self) -> int:
        return 1 + int(self.config.retries)

    @property
    def line(self) -> Line:
        c = self.config
        if self.serial:
            return Line(self.baudrate, c.bytesize, self.parity, c.stopbits)
        return Line(self.baudrate, 8, self.parity, 1)

    def for_probing(self, timeout: float) -> Link:
        """This link with a probe's short timeout and no retry: what a scan sends its probes over."""
        return replace(self, config=self.config.replace(timeout=timeout, retries=0))

    def describe(self) -> str:
        c = self.config
        if self.serial:
            return f"{c.port} {self.line}"
        return f"{c.host}:{c.port}" + (" (rtu framing)" if c.framing == "rtu" else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    gateway: Any  # Settings of each section: gateway, journal, sinks, http (None: no http)
    journal: Any
    links: dict[str, Link]
    meters: dict[str, Meter]
    sinks: Any
    http: Any
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("gateway", "journal", "sinks", "http"):
            object.__setattr__(self, name, Settings.of(getattr(self, name)))

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
