"""The plug-in registry: every protocol Meterlink speaks, found through the ``meterlink.protocols`` entry points.

A protocol is a package under ``drivers/`` that exports one :class:`Protocol`
description and names it in one line of its distribution's metadata::

    [project.entry-points."meterlink.protocols"]
    modbus = "meterlink.drivers.modbus.protocol:PROTOCOL"

The description lives in the package's ``protocol`` module, not its
``__init__``: it names the schema (pydantic), and a running gateway imports
the package for its driver alone (``create_driver`` takes the driver's name
from the resolved link).

The core names no protocol: the configuration schema, the engine and the apps
learn each protocol's point keys, meter keys, address rules, line defaults,
driver, scan and simulator from its description.  So the next protocol is a
folder and one registration line, and a third-party distribution can add one
without touching Meterlink (``tests/toyproto`` proves it).  The heavy parts
(driver, scan, simulator) are named as ``module:attribute`` and imported only
when used, so a gateway imports only the protocols it polls.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from meterlink.core.errors import MeterlinkError

GROUP = "meterlink.protocols"


class UnknownProtocol(MeterlinkError):
    """A meter, link or command names a protocol no installed plug-in provides."""


def _no_problems(*_args: Any) -> Sequence[tuple[str, str]]:
    return ()


def _nothing(*_args: Any) -> Sequence[Any]:
    return ()


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """What the core needs to know of one protocol; everything else stays in its package.

    The callables take the protocol's own validated meter configuration (an
    instance of ``meter_model``); problems are ``(key suffix, message)`` pairs,
    the suffix relative to the meter (``address``, ``points[2].di``).
    """

    name: str  # the value of a meter's ``protocol:`` key
    title: str  # for help texts and documentation
    meter_model: type  # pydantic model of a meter of this protocol (core.config.schema.MeterBase subclass)
    profile_model: type  # pydantic model of a profile of this protocol (core.config.schema.ProfileBase subclass)
    make_point: Callable[..., Any]  # (meter config, common keys, the point's keys) -> Point; ConfigError(key, ...)
    address: Callable[..., Any]  # (meter config, link config) -> normalized address; ValueError(message)
    example_address: Any  # what resolving a profile on its own uses
    baudrate: int = 9600  # serial line defaults where neither the meter nor the link sets them
    parity: str = "N"
    framings: tuple[str, ...] = ("socket",)  # on a TCP link: socket (native) and/or rtu (device server)
    line_defaults: Callable[..., tuple[int, str] | None] | None = None  # (meter configs) -> (baud, parity)
    checks: Callable[..., Sequence[tuple[str, str]]] = _no_problems  # (meter config, link config)
    meter_options: Callable[..., dict[str, Any]] = lambda _m, _profile: {}  # -> the Meter's ``options``
    extra_points: Callable[..., Sequence[Any]] = _nothing  # (meter config) -> points the protocol adds
    files: Callable[..., Sequence[tuple[str, str | None, str]]] = _nothing  # (meter config) -> (key, path, kind)
    profile_meter_keys: Callable[..., dict[str, Any]] = lambda _profile: {}  # meter keys a profile implies
    check_profile: Callable[..., Sequence[tuple[str, str]]] = _no_problems  # (meter config, profile): it fits?
    driver: str  # "module:Class" taking (link, store, *, transport=None)
    scan: str | None = None  # "module:function": (link, *, id_range, addresses_file, timeout, progress, note)
    scan_order: int = 100  # with no --protocol, cheaper scans go first
    simulator: str | None = None  # "module:add_parser" for ``meterlink simulate <name>``


def load(target: str) -> Any:
    """The object a ``module:attribute`` target names, imported now."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def _entry_points() -> dict[str, Any]:
    import importlib.metadata  # here: a running gateway makes its drivers from its links (create_driver) alone

    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the same distribution seen twice on sys.path: the first wins
    return dict(sorted(found.items()))


def protocol_names() -> tuple[str, ...]:
    """Every installed protocol's name, from the entry points alone: no protocol package is imported."""
    return tuple(_entry_points())


_loaded: dict[str, Protocol] = {}


def protocol(name: str) -> Protocol:
    """One protocol's description; its package is imported on first use."""
    proto = _loaded.get(name)
    if proto is not None:
        return proto
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownProtocol(f"{name!r} is not a protocol of this installation (known: "
                              f"{', '.join(protocol_names()) or 'none'})")
    proto = ep.load()
    if not isinstance(proto, Protocol) or proto.name != ep.name:
        raise MeterlinkError(f"entry point {ep.value} ({GROUP}) is not a Protocol named {ep.name!r}")
    _loaded[name] = proto
    return proto


class _Protocols(Mapping[str, Protocol]):
    """Every installed protocol by name, each package imported only when its entry is looked up.

    A gateway polling Modbus meters never imports the DLMS or DL/T packages
    (issue 14: a configuration pays only for what it uses); iterating the
    values, as the documentation and ``scan`` with no ``--protocol`` do, loads them all.
    """

    def __getitem__(self, name: str) -> Protocol:
        if name not in _entry_points():
            raise KeyError(name)
        return protocol(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_entry_points())

    def __len__(self) -> int:
        return len(_entry_points())


_PROTOCOLS = _Protocols()


def protocols() -> Mapping[str, Protocol]:
    """Every installed protocol, by name (a lazy mapping: see :class:`_Protocols`)."""
    return _PROTOCOLS


BUS = "meterlink.drivers.bus:Bus"  # the driver of a link whose meters speak several protocols or lines


def create_driver(link: Any, store: Any = None) -> Any:
    """The driver of ``link``: its protocol's, or a bus of several where the link is mixed.

    A resolved link names its drivers (``Link.drivers``, taken from this
    registry when the configuration was resolved), so a running gateway,
    which received its configuration validated (``meterlink.core.config.child``),
    imports neither the entry points' metadata nor a protocol's description and schema.
    """
    targets = dict(link.drivers) or {name: protocol(name).driver for name in link.protocols or (link.protocol,)}
    if len(targets) == 1 and not link.mixed:
        return load(next(iter(targets.values())))(link, store)
    return load(BUS)(link, store, {name: load(target) for name, target in targets.items()})
