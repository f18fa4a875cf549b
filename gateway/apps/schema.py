"""The configuration's JSON Schema and its reference page, both generated from the pydantic models.

Why generated: ``docs/configuration.md`` and the schema an editor completes
from must say what :mod:`meterlink.config` accepts, key for key, and a page
written by hand drifts the first time a key is added.  Both come from
``file_model().model_json_schema()``; what pydantic cannot know is added here:

* a duration (``Duration``: ``500ms``, ``10s``, ``15m``, ``1h``, ``1d`` or a
  number of seconds) is a number to pydantic's schema, which would make an
  editor flag every ``timeout: 500ms``; it becomes "number or duration text";
* an OBIS code gets its pattern, a ``scale`` may be a decimal written as text;
* every key gets the one-line description of :data:`DESCRIPTIONS` (kept here,
  next to the generator, so a new key without one fails ``tests/test_docs.py``).

``meterlink schema`` prints the schema; ``python -m meterlink.apps.schema --markdown``
prints the reference page (``docs/configuration.md`` is its output, verbatim).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, BeforeValidator

from meterlink.core.config import UNITS, file_model
from meterlink.core.config import schema as config_models
from meterlink.core.config.schema import OBIS_RE
from meterlink.core.durations import format_duration, parse_duration

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"  # meterlink.core.durations._RE
DURATION = {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                      {"type": "string", "pattern": DURATION_PATTERN}]}
REGENERATE = "python -m meterlink.apps.schema --markdown > docs/configuration.md"

# One line per key, "Model.key": what it does, its unit, and what its absence means where that is not the default.
DESCRIPTIONS: dict[str, str] = {
    "FileConfig.gateway": "This gateway's identity and where its journal lives.",
    "FileConfig.journal": "Bounds of the durable journal (always on).",
    "FileConfig.links": "The channels to meters, by link id ([A-Za-z0-9_-]+). A link carries one transaction at "
                        "a time; all links run concurrently.",
    "FileConfig.meters": "The meters, by meter id ([A-Za-z0-9_-]+; it appears in topics and tags).",
    "FileConfig.sinks": "Where readings are delivered. A sink that is absent is off; the journal is always on.",
    "FileConfig.http": "The HTTP listener for /metrics, /healthz, /readyz and /status (`meterlink top`). Off when "
                       "absent.",
    "GatewayConfig.id": "The gateway id, [A-Za-z0-9_-]+; it appears in MQTT topics and InfluxDB tags.",
    "GatewayConfig.data_dir": "Directory of the journal (`journal.sqlite`); relative paths are taken from the "
                              "working directory. One gateway per directory.",
    "JournalConfig.max_bytes": "Largest journal size in bytes (default 1 GiB, least 256 KiB). When full, rows every "
                               "sink has delivered go first, then the oldest undelivered ones (counted as dropped).",
    "JournalConfig.max_age": "Rows older than this are dropped, delivered or not (default 30 days).",
    "JournalConfig.queue_bytes": "Readings held in memory on their way to the journal: a poll wave of every meter "
                                 "arrives faster than one commit, and the disk may refuse writes for a while. "
                                 "Default: two poll waves of this configuration (about 300 bytes per point), at "
                                 "least 4 MiB. Beyond it the oldest waiting poll is dropped and counted.",
    "SerialLinkConfig.type": "`serial`: an RS-485/RS-232 port.",
    "SerialLinkConfig.port": "The device path, e.g. /dev/ttyUSB0 or a stable /dev/serial/by-id/... name; any path "
                             "pyserial opens, a pty included.",
    "SerialLinkConfig.baudrate": "Line speed. Default by protocol: modbus 9600, dlt645 2400, dlms 9600.",
    "SerialLinkConfig.parity": "N, E or O. Default by protocol: modbus E, dlt645 E, dlms N.",
    "SerialLinkConfig.bytesize": "Data bits.",
    "SerialLinkConfig.stopbits": "Stop bits.",
    "SerialLinkConfig.timeout": "How long to wait for a meter's answer (at most 60 s).",
    "SerialLinkConfig.retries": "Repeats of a request that got no answer before the meter counts as failed.",
    "SerialLinkConfig.pause": "Silence kept after a reply before the next request (slow RS-485 transceivers).",
    "SerialLinkConfig.echo": "The adapter hears its own transmission: read it back and drop it.",
    "TcpLinkConfig.type": "`tcp`: a meter or a serial device server on a TCP port.",
    "TcpLinkConfig.host": "Host name or IP address.",
    "TcpLinkConfig.port": "TCP port (Modbus TCP 502, DLMS/COSEM 4059).",
    "TcpLinkConfig.timeout": "How long to wait for a meter's answer (at most 60 s).",
    "TcpLinkConfig.retries": "Repeats of a request that got no answer before the meter counts as failed.",
    "TcpLinkConfig.pause": "Silence kept after a reply before the next request.",
    "TcpLinkConfig.connect_pause": "Wait after connecting, for device servers that drop the first request.",
    "TcpLinkConfig.echo": "An RS-485 device server that passes its own transmission back: read it back and drop it.",
    "TcpLinkConfig.framing": "Modbus only: `socket` (Modbus TCP, MBAP header) or `rtu` (RTU frames through a "
                             "transparent serial device server).",
    "MeterConfig.link": "The id of the link the meter answers on.",
    "MeterConfig.protocol": "The meter's protocol (a serial link may carry meters of several protocols).",
    "MeterConfig.baudrate": "Line speed of this meter where it differs from its link's (a mixed bus); serial links only.",
    "MeterConfig.parity": "Parity of this meter where it differs from its link's (a mixed bus): N, E or O.",
    "MeterConfig.bytesize": "Data bits of this meter where they differ from its link's (7 or 8).",
    "MeterConfig.stopbits": "Stop bits of this meter where they differ from its link's (1 or 2).",
    "MeterConfig.pause": "Silence kept before this meter's requests, where its transceiver needs more time to turn "
                         "around than the link's `pause` gives (it then hears every request).",
    "MeterConfig.address": "modbus: the unit id 1-247. dlt645: the 12-digit address as printed on the nameplate, "
                           "quoted. dlms: `{client: 16, logical: 1, physical: 17}` (physical only on HDLC; "
                           "`physical: auto` computes it from `serial`).",
    "MeterConfig.standard": "dlt645: `\"2007\"` (default) or `\"1997\"`, quoted; 1997 data identifiers are 4 hex digits.",
    "MeterConfig.profile": "A built-in profile name (see config/profiles/) or the path of a profile file; its "
                           "points are read unless the meter's own `points` override them.",
    "MeterConfig.interval": "Polling interval of points that name none (neither the point nor its profile group).",
    "MeterConfig.enabled": "`false` keeps the meter in the file but does not poll it.",
    "MeterConfig.points": "Points added to the profile's, or overriding a profile point with the same OBIS code.",
    "MeterConfig.max_registers": "modbus: the most registers the meter answers in one request (default 125).",
    "MeterConfig.max_gap": "modbus: unread registers worth bridging to save a request (default: every gap cheaper "
                           "to read than a new request).",
    "MeterConfig.time_sync": "Clock setting (`meterlink sync-time`, MQTT `sync_time`); refused unless enabled here.",
    "MeterConfig.daily_frozen_days": "dlt645: collect the daily frozen data of the last N days (0: off, at most "
                                     "62), journaled once each under OBIS F = 126 with `meter_ts` = the freeze time.",
    "MeterConfig.timezone": "IANA zone of a meter clock that carries no zone (DL/T 645, DLMS with deviation \"not "
                            "specified\"); default: the gateway's own zone.",
    "MeterConfig.transport": "dlms: `hdlc` (default on serial links), `wrapper` (IEC 62056-47, default on TCP) or "
                             "`push` (listen for DataNotifications on a serial port).",
    "MeterConfig.auth": "dlms: `none` (default), `lls` (password) or `hls-gmac` (security suite 0 keys).",
    "MeterConfig.password_file": "dlms lls: file holding the password.",
    "MeterConfig.password_env": "dlms lls: environment variable holding the password.",
    "MeterConfig.auth_key_file": "dlms hls-gmac: file holding the authentication key (32 hex digits).",
    "MeterConfig.auth_key_env": "dlms hls-gmac: environment variable holding the authentication key.",
    "MeterConfig.enc_key_file": "dlms hls-gmac: file holding the global encryption key (32 hex digits).",
    "MeterConfig.enc_key_env": "dlms hls-gmac: environment variable holding the encryption key.",
    "MeterConfig.broadcast_key_file": "dlms push: file holding the broadcast key, for notifications whose "
                                      "security control has bit 6 (0x40) set.",
    "MeterConfig.broadcast_key_env": "dlms push: environment variable holding the broadcast key.",
    "MeterConfig.client_system_title": "dlms hls-gmac: this client's system title, 8 bytes as 16 hex digits.",
    "MeterConfig.serial": "dlms: the meter's serial number (for `physical: auto` on HDLC).",
    "Dlt698MeterConfig.backfill": "dlt698: how far back the first read of the 15-min curve (5002) reaches "
                                  "(default 1d); later reads continue from the last record journaled.",
    "MeterConfig.backfill": "dlms profiles (class 7): how far back the first read of a load profile reaches "
                            "(default 1d); later reads continue from the last record journaled.",
    "PointConfig.obis": "The point's OBIS code, six dotted groups A.B.C.D.E.F (IEC 62056-61), e.g. 1.0.1.8.0.255.",
    "PointConfig.name": "A short snake_case label (default: the profile's, else derived from the code).",
    "PointConfig.unit": "The unit readings are reported in: " + " ".join(u or '""' for u in UNITS) +
                        ". A meter reporting another multiple is converted (Wh to kWh).",
    "PointConfig.interval": "Polling interval of this point (overrides the profile group's and the meter's).",
    "PointConfig.register": "modbus: the 0-based register address (0x0156 or 342).",
    "PointConfig.function": "modbus: `input` (function 04) or `holding` (function 03) registers.",
    "PointConfig.type": "modbus: how the register(s) are read; 32- and 64-bit types span 2 and 4 registers.",
    "PointConfig.word_order": "modbus: order of the 16-bit words in 32/64-bit values.",
    "PointConfig.scale": "modbus: value = raw x scale, exactly (write 0.01, not 1e-2).",
    "PointConfig.di": "dlt645: the data identifier DI3..DI0 as printed in the standard, e.g. \"00010000\" "
                      "(2007) or \"9010\" (1997), quoted.",
    "PointConfig.class_id": "dlms: the interface class (3 register, 4 extended register, 7 profile, 8 clock, "
                            "1 data).",
    "PointConfig.attribute": "dlms: the attribute read (default 2, the value).",
    "PointConfig.oad": "dlt698: the object attribute descriptor: OI (4 hex digits), attribute (2), element index "
                       "(2, 00 = all), e.g. \"00100201\".",
    "TimeSyncConfig.enabled": "Allow setting this meter's clock. Off unless set.",
    "TimeSyncConfig.tolerance": "A clock off by no more than this is left alone.",
    "TimeSyncConfig.broadcast": "dlt645: broadcast the time (08H) to the whole bus instead of addressing the meter.",
    "SinksConfig.mqtt": "Publish readings and status to an MQTT broker (docs/mqtt.md).",
    "SinksConfig.influxdb": "Write readings to InfluxDB or VictoriaMetrics (docs/influxdb.md).",
    "MqttConfig.host": "Broker host name or IP address.",
    "MqttConfig.port": "Broker port (8883 is the usual TLS port).",
    "MqttConfig.prefix": "First topic level: topics are {prefix}/{gateway}/...",
    "MqttConfig.username": "Broker login; required when a password is given.",
    "MqttConfig.password": "Broker password written inline (the gateway warns: the file is readable by the "
                           "service user); prefer password_file or password_env.",
    "MqttConfig.password_file": "File holding the broker password (first line).",
    "MqttConfig.password_env": "Environment variable holding the broker password.",
    "MqttConfig.client_id": "MQTT client identifier (default meterlink-{gateway id}).",
    "MqttConfig.tls": "Connect with TLS.",
    "MqttConfig.commands": "Answer requests on {prefix}/{gateway}/cmd/+ (read, status, sync_time). Off unless set.",
    "MqttConfig.keepalive": "MQTT keepalive in seconds: the broker drops a connection silent for 1.5 x this and "
                            "publishes the gateway's will.",
    "MqttConfig.homeassistant": "Publish Home Assistant MQTT discovery: one sensor per point (docs/homeassistant.md).",
    "TlsConfig.ca_file": "CA certificate(s) to verify the broker with (default: the system's CA store).",
    "TlsConfig.cert_file": "Client certificate, with key_file, for brokers that require one.",
    "TlsConfig.key_file": "The client certificate's private key.",
    "TlsConfig.insecure": "Do not verify the broker's certificate or host name. Only if you must.",
    "InfluxConfig.url": "Base URL, e.g. http://127.0.0.1:8086 (InfluxDB) or http://127.0.0.1:8428 "
                        "(VictoriaMetrics).",
    "InfluxConfig.api": "`v2`: /api/v2/write (InfluxDB 1.8+, 2.x, 3.x, VictoriaMetrics). `v1`: /write of "
                        "InfluxDB 1.x (with database, username, password_file).",
    "InfluxConfig.token": "v2: API token written inline; prefer token_file or token_env.",
    "InfluxConfig.token_file": "v2: file holding the API token.",
    "InfluxConfig.token_env": "v2: environment variable holding the API token.",
    "InfluxConfig.org": "v2: the organization.",
    "InfluxConfig.bucket": "v2: the bucket written to.",
    "InfluxConfig.measurement": "The measurement of every point.",
    "InfluxConfig.precision": "Time stamp precision of the points written.",
    "InfluxConfig.batch_size": "Points per write request, at most.",
    "InfluxConfig.flush_interval": "Longest wait before fewer than batch_size points are written.",
    "InfluxConfig.timeout": "HTTP timeout of one write request.",
    "InfluxConfig.database": "v1: the database written to (required with api: v1).",
    "InfluxConfig.retention_policy": "v1: the retention policy (default: the database's default).",
    "InfluxConfig.username": "v1: login; required when a password is given.",
    "InfluxConfig.password_file": "v1: file holding the password.",
    "InfluxConfig.password_env": "v1: environment variable holding the password.",
    "HttpConfig.host": "Address to bind; 127.0.0.1 by default. No authentication: bind 0.0.0.0 only behind a "
                       "firewall.",
    "HttpConfig.port": "TCP port.",
}


# --------------------------------------------------------------------------- the models behind the schema


def _described(name: str, key: str) -> str | None:
    """A key's description: its model's own line, else the generic model's (``ModbusMeterConfig`` -> ``MeterConfig``)."""
    if f"{name}.{key}" in DESCRIPTIONS:
        return DESCRIPTIONS[f"{name}.{key}"]
    for generic in ("MeterConfig", "PointConfig", "ProfileGroup"):
        if name.endswith(generic):
            return DESCRIPTIONS.get(f"{generic}.{key}")
    return None


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``root``, by class name (the schema's ``$defs`` keys)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: object) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return found


def _source_comments(model: type[BaseModel]) -> dict[str, str]:
    """The trailing ``# comment`` of each field in the model's class body: a key added there with one is
    documented at once (:data:`DESCRIPTIONS` says more where it has a line)."""
    import inspect
    import io
    import re
    import tokenize

    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    field_re = re.compile(r"^    (\w+)\s*:")
    lines = source.splitlines()
    out: dict[str, str] = {}
    with contextlib.suppress(tokenize.TokenError, SyntaxError):
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                m = field_re.match(lines[tok.start[0] - 1])
                if m and m.group(1) in model.model_fields and tok.start[1] > 4:
                    text = tok.string.lstrip("#").strip()
                    out[m.group(1)] = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    return out


def _validated_by(annotation: object, metadata: list[Any], func: Callable[..., Any]) -> bool:
    """Whether a field's value passes through ``func`` first (``Duration``, ``Obis``, ``Scale`` are so made)."""
    def walk(tp: object) -> Iterator[object]:
        yield from getattr(tp, "__metadata__", ())
        for arg in typing.get_args(tp):
            yield from walk(arg)

    return any(isinstance(m, BeforeValidator) and m.func is func for m in (*metadata, *walk(annotation)))


def _replace_branch(prop: dict[str, Any], kind: str, new: dict[str, Any]) -> None:
    """Swap the ``{"type": kind}`` part of a property (itself, or its non-null anyOf branch) for ``new``."""
    if prop.get("type") == kind:
        for key in ("type", "minimum", "maximum"):
            prop.pop(key, None)
        prop.update(copy.deepcopy(new))
        return
    branches = prop.get("anyOf", [])
    for i, b in enumerate(branches):
        if b.get("type") == kind:
            branches[i] = copy.deepcopy(new)
            return


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a configuration file, for editors and ``meterlink schema``."""
    from meterlink.core.config.profiles import builtin_names

    root = file_model()
    schema = root.model_json_schema()
    models = _models(root)
    defs = schema.setdefault("$defs", {})
    for name, model in models.items():
        comments = _source_comments(model)
        target = schema if model is root else defs[name]
        doc = (model.__doc__ or "").strip().split("\n\n")[0] if model is not root else ""
        if doc and not doc.startswith(("!!!", "Usage docs")):  # a model without a docstring shows BaseModel's
            target["description"] = " ".join(doc.replace("``", "`").split())
        else:
            target.pop("description", None)
        for key, f in model.model_fields.items():
            prop = target["properties"][key]
            prop.pop("title", None)
            if _validated_by(f.annotation, f.metadata, parse_duration):
                _replace_branch(prop, "number", DURATION)
            if _validated_by(f.annotation, f.metadata, config_models._obis):
                _replace_branch(prop, "string", {"type": "string", "pattern": OBIS_RE.pattern})
            if _validated_by(f.annotation, f.metadata, config_models.to_decimal):
                _replace_branch(prop, "string", {"type": "string", "pattern": r"^\s*-?\d+(\.\d+)?\s*$"})
            described = _described(name, key) or f.description or comments.get(key)
            if described:
                prop["description"] = described
            if name.endswith("MeterConfig") and key == "profile":
                prop["examples"] = builtin_names()
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "$id": "https://meterlink.invalid/schema/config.json",
            "title": "Meterlink configuration",
            "description": "A Meterlink gateway configuration file (docs/configuration.md).", **schema}


def run_schema(_args: argparse.Namespace | None = None) -> int:
    """``meterlink schema``: the JSON Schema on stdout."""
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


# --------------------------------------------------------------------------- the reference page


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = node.get("$ref")
    if ref is None:
        return None, node
    name = ref.rsplit("/", 1)[-1]
    return name, schema["$defs"][name]


def _non_null(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in node.get("anyOf", [node]) if b.get("type") != "null"]


def _type_text(schema: dict[str, Any], node: dict[str, Any], where: dict[str, str]) -> str:
    if node.get("anyOf") == DURATION["anyOf"]:
        return "duration"
    if "$ref" in node:
        name, target = _resolve(schema, node)
        if name not in where:
            return "object"
        props = target.get("properties", {})
        tag = next(((k, props[k]["const"]) for k in ("type", "protocol") if "const" in props.get(k, {})), None)
        return f"section `{where[name]}`" + (f" (`{tag[0]}: {tag[1]}`)" if tag else "")
    if "anyOf" in node:
        parts = [_type_text(schema, b, where) for b in _non_null(node)]
        if parts == ["number", "string"] or parts == ["number", "decimal text"]:
            return "decimal"
        return " or ".join(parts)
    if "oneOf" in node:
        return " or ".join(dict.fromkeys(_type_text(schema, b, where) for b in node["oneOf"]))
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    t = node.get("type")
    if t == "array":
        return "list of " + _type_text(schema, node.get("items", {}), where)
    if t == "object":
        inner = node.get("additionalProperties")
        return "map of id to " + _type_text(schema, inner, where) if isinstance(inner, dict) else "object"
    if t == "string" and node.get("pattern") == OBIS_RE.pattern:
        return "OBIS code"
    if t == "string" and "pattern" in node:
        return "decimal text"
    if t == "integer" and ("minimum" in node or "maximum" in node):
        lo, hi = node.get("minimum"), node.get("maximum")
        return f"integer {lo}-{hi}" if lo is not None and hi is not None else \
            f"integer >= {lo}" if lo is not None else f"integer <= {hi}"
    return str(t or "any")


def _default_text(node: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        return "optional"
    d = node["default"]
    if d is None:
        return "none"
    if node.get("anyOf") == DURATION["anyOf"] or any(b.get("pattern") == DURATION_PATTERN
                                                      for b in node.get("anyOf", [])):
        return f"`{format_duration(float(d))}`" if d else "`0`"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if d == [] or d == {}:
        return "empty"
    return f"`{json.dumps(d) if isinstance(d, str) and d == '' else d}`"


def _sections(schema: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(key path, model name, model schema), from the top down, each model once at its first path."""
    out: list[tuple[str, str | None, dict[str, Any]]] = []
    seen: set[str] = set()

    def visit(path: str, name: str | None, node: dict[str, Any]) -> None:
        out.append((path, name, node))
        for key, prop in node.get("properties", {}).items():
            sub = f"{path}.{key}" if path else key
            for branch in _non_null(prop):
                for child_path, child in _children(sub, branch):
                    child_name, child_node = _resolve(schema, child)
                    if child_name is not None and child_name not in seen:
                        seen.add(child_name)
                        visit(child_path, child_name, child_node)

    visit("", None, schema)
    return out


def _children(path: str, node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    if "$ref" in node:
        yield path, node
    elif node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"]
    elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        inner = node["additionalProperties"]
        variants = inner.get("oneOf", [inner])
        for v in variants:
            yield f"{path}.<id>", v


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_markdown() -> str:
    """``docs/configuration.md``: one table per section, every key with its type, default and description."""
    schema = config_schema()
    sections = _sections(schema)
    where = {name: path for path, name, _ in sections if name is not None}
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from the pydantic models (gateway/core/config/schema.py and each drivers/*/schema.py)",
        "     by gateway/apps/schema.py; do not edit.",
        f"     Regenerate: {REGENERATE} -->",
        "",
        "A configuration is one YAML file, checked with `meterlink check -c FILE` (exit 2 and one line per",
        "problem naming its key path). Unknown keys are errors. Durations are written `500ms`, `10s`, `15m`,",
        "`1h`, `1d` (a bare number is seconds). `config/example.yaml` is a complete example.",
        "",
        "## Editor completion (JSON Schema)",
        "",
        "`meterlink schema` prints the JSON Schema of this file. Save it and point the YAML language server",
        "(VS Code's Red Hat YAML extension, Neovim's yamlls, JetBrains IDEs) at it with a first line:",
        "",
        "```sh",
        "meterlink schema > meterlink.schema.json",
        "```",
        "",
        "```yaml",
        "# yaml-language-server: $schema=./meterlink.schema.json",
        "gateway:",
        "  id: gw-01",
        "```",
        "",
        "The path is relative to the YAML file (an absolute path or an http(s) URL works too). The editor",
        "then completes keys, shows the descriptions below and flags unknown keys and wrong types; what only",
        "the whole file can tell (a meter's link exists, addresses are unique on a link, a profile exists) is",
        "left to `meterlink check`.",
    ]
    for path, name, node in sections:
        title = f"`{path}`" if path else "Top level"
        variant = next(((k, p.get("const")) for k, p in node.get("properties", {}).items()
                        if k in ("type", "protocol") and "const" in p), None)
        if variant is None and name and name.endswith(("PointConfig", "ProfileGroup", "Defaults")) and name[0].isupper():
            stem = name.removesuffix("PointConfig").removesuffix("ProfileGroup").removesuffix("Defaults")
            variant = ("protocol", stem.lower()) if stem else None
        lines += ["", f"## {title}" + (f" (`{variant[0]}: {variant[1]}`)" if variant else ""), ""]
        if name is not None and node.get("description"):
            lines += [_cell(node["description"]), ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        required = set(node.get("required", []))
        for key, prop in node.get("properties", {}).items():
            lines.append(f"| `{key}` | {_cell(_type_text(schema, prop, where))} | "
                         f"{_cell(_default_text(prop, key in required))} | {_cell(prop.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def undocumented() -> list[str]:
    """Keys of the configuration without a description (``tests/test_docs.py`` wants none)."""
    return [f"{name}.{key}" for name, model in _models(file_model()).items() for key in model.model_fields
            if not (_described(name, key) or model.model_fields[key].description
                    or _source_comments(model).get(key))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meterlink.apps.schema",
                                description="Print the configuration's JSON Schema, or its reference page.")
    p.add_argument("--markdown", action="store_true", help="print docs/configuration.md instead of the schema")
    args = p.parse_args(argv)
    if args.markdown:
        sys.stdout.write(configuration_markdown())
        return 0
    return run_schema(args)


if __name__ == "__main__":
    raise SystemExit(main())
