"""Configuration problems, each one line naming its key path, and pydantic's errors turned into them.

A field technician reads these: ``links.rs485-1.baudrat: unknown key, did you mean
`baudrate`?`` says where and how to fix it; pydantic's own texts do not.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from meterlink.core.config.schema import file_model
from meterlink.core.durations import brief
from meterlink.core.errors import ConfigError, ConfigProblems

__all__ = ["ConfigProblems", "pydantic_problems"]


def _protocol_names() -> tuple[str, ...]:
    from meterlink.core.registry import protocol_names

    return protocol_names()



def _key_path(loc: tuple[int | str, ...], drop_tags: bool = True) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # discriminated unions put the tag into the location: links.rs485-1.serial.port,
        # meters.m-1.modbus.register
        if drop_tags and i == 2 and ((loc[0] == "links" and item in ("serial", "tcp"))
                                     or (loc[0] == "meters" and item in _protocol_names())):
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
            tagged = [m for m in models for key in ("type", "protocol") if key in m.model_fields
                      and tag in typing.get_args(m.model_fields[key].annotation)]
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


def pydantic_problems(exc: ValidationError, prefix: tuple[int | str, ...] = (),
                       root: Any = None) -> list[ConfigError]:
    """One line per problem; ``root`` is the model validated, for "did you mean" on unknown keys."""
    problems: list[ConfigError] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        path = _key_path(loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = _suggest(root or file_model(), tuple(err["loc"]))
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "literal_error":
            msg = f"{brief(err.get('input'))}: " + msg.replace("Input should be", "must be")
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            key = ctx.get("discriminator", "'type'").strip("'")
            tags = [t.strip() for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
            msg = f"{brief(ctx.get('tag'))}: must be " + (" or ".join([", ".join(tags[:-1]), tags[-1]]) if len(tags) > 1
                                                      else "".join(tags))
            path += f".{key}"
        elif err["type"] == "union_tag_not_found":
            key = err.get("ctx", {}).get("discriminator", "'type'").strip("'")
            msg = f"required key is missing ({'serial | tcp' if key == 'type' else ' | '.join(_protocol_names())})"
            path += f".{key}"
        else:
            msg = msg.replace("Input should be", "must be")
        if path in seen and err["type"] in ("int_type", "string_type", "dict_type", "int_parsing"):
            continue  # a union reports each alternative; one line is enough
        seen.add(path)
        problems.append(ConfigError(path, msg))
    return problems
