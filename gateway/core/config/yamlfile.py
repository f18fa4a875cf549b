"""Reading a configuration or profile file: a small regular UTF-8 file, YAML without bombs or duplicate keys."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from meterlink.core.config.problems import ConfigProblems
from meterlink.core.errors import ConfigError

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A configuration is written by hand: a megabyte is already thousands of meters.  The node bound
# stops an alias bomb (&a [*b, *b, ...] nine levels deep) before anything walks the expanded tree.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 1_000_000


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
