"""The documentation in docs/ and the configuration's JSON Schema say what the code does.

``docs/configuration.md`` is the generator's output verbatim, so it cannot
drift from gateway/config.py; the schema an editor completes from accepts the
shipped example configuration and rejects the mistakes ``meterlink check``
rejects.  ``jsonschema`` is not a dependency: when it is not installed the
schema is checked by the small validator below (the keywords the schema uses).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterlink.apps.schema import REGENERATE, config_schema, configuration_markdown, undocumented
from meterlink.core.config import file_model

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def test_configuration_reference_is_the_generators_output() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert text == configuration_markdown(), f"docs/configuration.md is stale: run {REGENERATE}"
    assert REGENERATE in text


def test_every_configuration_key_is_documented() -> None:
    assert undocumented() == [], "add a line to meterlink.apps.schema.DESCRIPTIONS for each"
    text = configuration_markdown()
    for name, model in _models().items():
        for key in model.model_fields:
            assert f"| `{key}` |" in text, f"{name}.{key} missing from the reference"


def _models() -> dict[str, Any]:
    from meterlink.apps.schema import _models as models

    return models(file_model())


# --------------------------------------------------------------------------- the schema


class Invalid(Exception):
    pass


def _check(root: dict[str, Any], node: dict[str, Any], value: object, where: str) -> None:
    """The JSON Schema keywords config_schema() uses, enough to tell a valid file from a wrong one."""
    if "$ref" in node:
        _check(root, root["$defs"][node["$ref"].rsplit("/", 1)[-1]], value, where)
    if "anyOf" in node and not any(_ok(root, b, value, where) for b in node["anyOf"]):
        raise Invalid(f"{where}: {value!r} matches no alternative")
    if "oneOf" in node and sum(_ok(root, b, value, where) for b in node["oneOf"]) != 1:
        raise Invalid(f"{where}: {value!r} does not match exactly one alternative")
    types = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list,
             "null": type(None)}
    t = node.get("type")
    numeric = t in ("integer", "number")
    if t is not None and (not isinstance(value, types[t]) or (numeric and isinstance(value, bool))):
        raise Invalid(f"{where}: {value!r} is not {t}")
    if "enum" in node and value not in node["enum"]:
        raise Invalid(f"{where}: {value!r} not in {node['enum']}")
    if "const" in node and value != node["const"]:
        raise Invalid(f"{where}: {value!r} is not {node['const']!r}")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            raise Invalid(f"{where}: {value!r} does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0):
            raise Invalid(f"{where}: too short")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < node.get("minimum", value) or value > node.get("maximum", value):
            raise Invalid(f"{where}: {value} out of range")
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            raise Invalid(f"{where}: {value} out of range")
    if isinstance(value, dict):
        props = node.get("properties", {})
        for key in node.get("required", []):
            if key not in value:
                raise Invalid(f"{where}.{key}: required")
        extra = node.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                _check(root, props[key], v, f"{where}.{key}")
            elif extra is False:
                raise Invalid(f"{where}.{key}: unknown key")
            elif isinstance(extra, dict):
                _check(root, extra, v, f"{where}.{key}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(value):
            _check(root, node["items"], v, f"{where}[{i}]")


def _ok(root: dict[str, Any], node: dict[str, Any], value: object, where: str) -> bool:
    try:
        _check(root, node, value, where)
    except Invalid:
        return False
    return True


def _validate(schema: dict[str, Any], doc: object) -> None:
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        _check(schema, schema, doc, "")
        return
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as exc:
        raise Invalid(str(exc).splitlines()[0]) from None


def _example() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "config" / "example.yaml").read_text(encoding="utf-8")))


def test_schema_accepts_the_example_configuration() -> None:
    doc = _example()
    file_model().model_validate(doc)  # what `meterlink check` accepts ...
    _validate(config_schema(), doc)  # ... the editor accepts too: durations as 500ms, hex registers, OBIS codes


@pytest.mark.parametrize(("path", "value"), [
    (("links", "rs485-1", "timeout"), "fast"),       # not a duration
    (("links", "rs485-1", "parity"), "X"),
    (("links", "rs485-1", "type"), "usb"),
    (("meters", "sdm630-main", "protocol"), "mbus"),
    (("meters", "sdm630-main", "adress"), 1),        # a misspelt key
    (("sinks", "mqtt", "port"), 70000),
    (("meters", "heat-pump", "points", 0, "obis"), "1.0.1.8.0"),
    (("meters", "heat-pump", "points", 0, "scale"), "a lot"),
])
def test_schema_rejects_what_check_rejects(path: tuple[str | int, ...], value: object) -> None:
    doc = _example()
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(Invalid):
        _validate(config_schema(), doc)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        file_model().model_validate(doc)


def test_schema_is_pydantics_schema_plus_descriptions() -> None:
    """Round trip: the schema is plain JSON and has every model and key of the models' own schema."""
    ours, theirs = config_schema(), file_model().model_json_schema()
    assert json.loads(json.dumps(ours)) == ours
    assert set(ours["$defs"]) == set(theirs["$defs"])
    for name, d in theirs["$defs"].items():
        assert set(ours["$defs"][name]["properties"]) == set(d["properties"]), name
        assert ours["$defs"][name].get("required") == d.get("required"), name
        assert ours["$defs"][name].get("additionalProperties") is False, name  # unknown keys flagged
        assert all(p.get("description") for p in ours["$defs"][name]["properties"].values()), name
    assert set(ours["properties"]) == set(theirs["properties"]) and ours["additionalProperties"] is False
    assert ours["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert copy.deepcopy(ours) == config_schema()  # stable: the same output every time


def test_schema_command_prints_the_schema() -> None:
    r = subprocess.run([sys.executable, "-m", "meterlink.apps.schema"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == config_schema()


# --------------------------------------------------------------------------- the pages


def test_readme_points_into_docs_not_into_an_internal_contract() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "CONTRACT" not in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).is_file(), target
    for page in ("configuration.md", "mqtt.md", "influxdb.md", "homeassistant.md"):
        assert f"docs/{page}" in readme, page
        assert (DOCS / page).is_file(), page


def test_readme_calls_the_command_one_way() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    # `meterlink ...` throughout; the one note on a source checkout names .venv/bin/meterlink
    assert readme.count(".venv/bin/meterlink") == 1, re.findall(r".*\.venv/bin/meterlink.*", readme)


def test_readme_poll_intervals_match_the_profiles() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "Instantaneous values every 10 s, energy registers every 15 min." not in readme
    assert "the DL/T 645 and DL/T 698 ones every 1 min" in readme
    for path in sorted((REPO / "config" / "profiles").glob("*.yaml")):
        profile = yaml.safe_load(path.read_text(encoding="utf-8"))
        intervals = [g.get("interval") for g in profile["groups"]]
        expected = "1m" if profile["protocol"] in ("dlt645", "dlt698") else "10s"
        assert intervals[0] == expected and "15m" in intervals, (path.name, intervals)
