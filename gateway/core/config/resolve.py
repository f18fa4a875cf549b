"""From a validated file to what the gateway runs: links, meters with their points, the sinks.

Validation runs in two passes.  pydantic checks the shape (:func:`file_model`):
unknown keys, types, durations, OBIS syntax, each protocol's own keys.  Then
:func:`_check_semantics` checks what only the whole file can tell: a meter's link
exists, its address fits its protocol, two meters on one link do not share an
address, its profile exists, every point is complete for its protocol.  Each
protocol answers for its own part through its plug-in description
(:mod:`meterlink.core.registry`); this module names no protocol.  Each problem is
one :class:`ConfigError` naming its key path, so ``meterlink check`` prints them
all at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from meterlink.core.config.problems import ConfigProblems, pydantic_problems
from meterlink.core.config.profiles import ProfileError, load_profile
from meterlink.core.config.resolved import Config, Line, Link, Meter, Point
from meterlink.core.config.schema import (
    ID_RE,
    MeterBase,
    ProfileBase,
    SerialLinkConfig,
    SinksConfig,
    TcpLinkConfig,
    file_model,
)
from meterlink.core.config.yamlfile import load_yaml, read_text_file
from meterlink.core.durations import brief, format_duration, parse_duration
from meterlink.core.errors import ConfigError
from meterlink.core.registry import Protocol, protocol_names, protocols
from meterlink.core.secrets import read_secret

MAX_LINK_TIMEOUT = 60.0  # a meter answers within a second or two; more is a unit mistake (500 meant 500ms)
DURATION_KEYS = frozenset({"timeout", "interval", "tolerance", "backfill", "max_age", "flush_interval", "pause",
                           "connect_pause"})


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a configuration file; raises :class:`ConfigProblems` listing every problem."""
    p = Path(path)
    raw = load_yaml(p)
    return parse_config(raw, base=p.parent, path=p)


def parse_config(raw: Any, *, base: Path | None = None, path: Path | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigProblems([ConfigError("", "the file must hold a mapping with 'links' and 'meters'")])
    model = file_model(_named_protocols(raw))
    try:
        fc: Any = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigProblems(pydantic_problems(exc, root=model)) from None
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


def _named_protocols(raw: dict[str, Any]) -> tuple[str, ...] | None:
    """The protocols the meters name, when every meter names an installed one; else None (all, for the errors)."""
    meters = raw.get("meters")
    if not isinstance(meters, dict) or not meters:
        return None
    named = {m.get("protocol") if isinstance(m, dict) else None for m in meters.values()}
    installed = set(protocol_names())
    if not all(isinstance(n, str) and n in installed for n in named):
        return None
    return tuple(sorted(named))  # type: ignore[arg-type]


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


def _check_timeouts(fc: Any, bare: dict[str, float]) -> list[ConfigError]:
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


def _check_semantics(fc: Any, base: Path, path: Path | None) -> Config:
    problems: list[ConfigError] = []
    known = protocols()

    # which protocols each link carries: a serial bus may carry several, a TCP endpoint one
    on_link: dict[str, list[Any]] = {}
    for mid, m in fc.meters.items():
        if m.link not in fc.links:
            names = ", ".join(sorted(fc.links)) or "none"
            problems.append(ConfigError(f"meters.{mid}.link", f"no link named {m.link!r} (links: {names})"))
            continue
        on_link.setdefault(m.link, []).append(m)
    for lid in fc.links:
        if not ID_RE.match(lid):
            problems.append(ConfigError(f"links.{lid}", "a link id may only hold letters, digits, '_' and '-'"))

    links: dict[str, Link] = {}
    for lid, lc in fc.links.items():
        mine = on_link.get(lid, [])
        carried = tuple(dict.fromkeys(m.protocol for m in mine))
        first = known[carried[0]] if carried else None
        baud, parity = (first.baudrate, first.parity) if first else (9600, "N")
        if isinstance(lc, TcpLinkConfig) and len(carried) > 1:
            problems.append(ConfigError(f"links.{lid}", f"a TCP link reaches one device and carries one protocol; "
                                                        f"its meters speak {', '.join(carried)}"))
        if first is not None:
            if first.line_defaults is not None:
                try:
                    found = first.line_defaults(mine)
                except ValueError as exc:  # the meters' defaults differ: the link must say what they share
                    if isinstance(lc, SerialLinkConfig) and lc.baudrate is None:
                        problems.append(ConfigError(f"links.{lid}.baudrate", str(exc)))
                    found = None
                if found:
                    baud, parity = found
            if isinstance(lc, TcpLinkConfig):
                for proto in carried:
                    if lc.framing not in known[proto].framings:
                        problems.append(ConfigError(f"links.{lid}.framing",
                                                    f"{proto} does not use framing {lc.framing}"))
        if isinstance(lc, SerialLinkConfig):
            baud = lc.baudrate or baud
            parity = lc.parity or parity
        links[lid] = Link(id=lid, config=lc, protocol=carried[0] if carried else "", baudrate=baud, parity=parity,
                          protocols=carried, drivers=tuple((p, known[p].driver) for p in carried))

    meters: dict[str, Meter] = {}
    interned: dict[Point, Point] = {}
    addresses: dict[tuple[str, str], str] = {}
    for mid, m in fc.meters.items():
        key = f"meters.{mid}"
        if not ID_RE.match(mid):
            problems.append(ConfigError(key, "a meter id may only hold letters, digits, '_' and '-'"))
        plugin = known[m.protocol]
        lc = fc.links.get(m.link)
        if lc is not None:
            for suffix, message in plugin.checks(m, lc):
                problems.append(ConfigError(f"{key}.{suffix}" if suffix else key, message))
            if isinstance(lc, TcpLinkConfig):
                for k in ("baudrate", "parity", "bytesize", "stopbits"):
                    if getattr(m, k) is not None:
                        problems.append(ConfigError(f"{key}.{k}", "only a meter on a serial link has line settings"))
        try:
            norm = plugin.address(m, lc)
        except ValueError as exc:
            problems.append(ConfigError(f"{key}.address", str(exc)))
            norm = None
        if norm is not None and lc is not None:
            prev = addresses.get((m.link, str(norm)))
            if prev is not None:
                problems.append(ConfigError(f"{key}.address",
                                            f"{norm} is already the address of meter {prev} on link {m.link!r}"))
            else:
                addresses[(m.link, str(norm))] = mid

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
            misfits = plugin.check_profile(m, profile)
            if misfits:
                problems.extend(ConfigError(f"{key}.{suffix}" if suffix else key, msg) for suffix, msg in misfits)
                continue
        points, point_problems = resolve_points(m, profile, key)
        problems.extend(point_problems)
        points.extend(plugin.extra_points(m))
        if not points and not point_problems:
            problems.append(ConfigError(f"{key}.points", "the meter has no points (name a profile or list points)"))
        try:
            options = plugin.meter_options(m, profile)
        except ConfigError as exc:
            problems.append(ConfigError(f"{key}.{exc.key_path}" if exc.key_path else key, exc.message))
            continue
        # thousands of meters of one model share their Point objects; the raw point list is not kept
        shared = tuple(interned.setdefault(p, p) for p in points)
        # key and password files named relative to the configuration file are found from anywhere
        files = {k.rpartition(".")[2]: str(base / v) for k, v, _kind in plugin.files(m)
                 if v is not None and not Path(v).is_absolute()}
        line = None
        link = links.get(m.link)
        if link is not None and link.serial:
            line = Line(m.baudrate or link.config.baudrate or plugin.baudrate if len(link.protocols) > 1
                        else m.baudrate or link.baudrate,
                        m.bytesize or link.config.bytesize,
                        m.parity or link.config.parity or plugin.parity if len(link.protocols) > 1
                        else m.parity or link.parity,
                        m.stopbits or link.config.stopbits)
        meters[mid] = Meter(id=mid, link=m.link, protocol=m.protocol, address=norm, points=shared,
                            config=m.model_copy(update={"points": [], **files}), line=line, options=options)

    for lid, link in links.items():
        mine = [m for m in meters.values() if m.link == lid]
        lines = {m.line for m in mine}
        if len(link.protocols) > 1 or lines - {None, link.line} or any(m.config.pause is not None for m in mine):
            links[lid] = dataclasses.replace(link, mixed=True)
    _check_sinks(fc, problems)
    if problems:
        raise ConfigProblems(problems)
    enabled = {k: v for k, v in meters.items() if v.config.enabled}
    return Config(gateway=fc.gateway, journal=fc.journal, links=links, meters=enabled,
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
    registry = protocols()
    for mid, m in cfg.meters.items():
        for key, value, kind in registry[m.protocol].files(m.config):
            add(f"meters.{mid}.{key}", value, kind)
    return found


def check_files(cfg: Config) -> list[ConfigError]:
    """Read every file the configuration names, now, so a missing CA or password file fails ``check``.

    Without this a typo in ``password_file`` passes ``meterlink check`` and shows up only when the
    gateway starts (or for a meter's key, at its first read).  Secrets are read and dropped; a
    message names the key and the file, never the content.
    """
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
             if link.serial and not os.path.exists(link.config.port)]
    return dataclasses.replace(cfg, warnings=cfg.warnings + tuple(notes))


def resolve_points(m: MeterBase, profile: ProfileBase | None, key: str) -> tuple[list[Point], list[ConfigError]]:
    """Merge profile and meter points (a meter point replaces the profile's point with its OBIS code)."""
    plugin: Protocol = protocols()[m.protocol]
    merged: dict[str, tuple[str, dict[str, Any]]] = {}
    defaults = profile.defaults.model_dump(exclude_none=True) if profile is not None else {}
    if profile is not None:
        for gi, group in enumerate(profile.groups):
            for pi, pc in enumerate(group.points):
                d = dict(defaults)
                d.update(pc.model_dump(exclude_none=True))
                d.setdefault("interval", group.interval)
                merged[pc.obis] = (f"profile {profile.name}: groups[{gi}].points[{pi}]", d)
    seen: set[str] = set()
    for pi, pc in enumerate(m.points):
        where = f"{key}.points[{pi}]"
        if pc.obis in seen:
            return [], [ConfigError(f"{where}.obis", f"{pc.obis} is listed twice for this meter")]
        seen.add(pc.obis)
        d = dict(defaults)
        if pc.obis in merged:
            d.update(merged[pc.obis][1])
        d.update(pc.model_dump(exclude_none=True))
        merged[pc.obis] = (where, d)

    points: list[Point] = []
    problems: list[ConfigError] = []
    names: dict[str, str] = {}
    for obis, (where, d) in merged.items():
        interval = d.pop("interval", None) or m.interval
        if isinstance(interval, str):
            interval = parse_duration(interval)
        common = {"obis": obis, "name": d.pop("name", None) or "obis_" + obis.replace(".", "_"),
                  "unit": d.get("unit", ""), "interval": float(interval)}
        d.pop("obis", None)
        try:
            point = plugin.make_point(m, common, d)
        except ConfigError as exc:
            problems.append(ConfigError(f"{where}.{exc.key_path}" if exc.key_path else where, exc.message))
            continue
        if point.name in names:
            problems.append(ConfigError(f"{where}.name", f"{point.name!r} is also the name of {names[point.name]}"))
            continue
        names[point.name] = obis
        points.append(point)
    return points, problems


def validated(model: type[BaseModel], raw: Any, where: tuple[str, ...]) -> Any:
    """``raw`` validated by ``model``; problems named from ``where`` (for a protocol's own sub-models)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigProblems(pydantic_problems(exc, where, root=model)) from None


def _check_sinks(fc: Any, problems: list[ConfigError]) -> None:
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


def profile_points(name: str, *, base: Path | None = None) -> list[Point]:
    """The resolved points of a profile, as a meter naming it would read them."""
    profile = load_profile(name, base=base)
    plugin = protocols()[profile.protocol]
    meter = plugin.meter_model.model_validate({"link": "-", "protocol": profile.protocol,
                                               "address": plugin.example_address, "profile": name,
                                               **plugin.profile_meter_keys(profile)})
    points, problems = resolve_points(meter, profile, f"profile {name}")
    if problems:
        raise ProfileError(str(problems[0]))
    return points
