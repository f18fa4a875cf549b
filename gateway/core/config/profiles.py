"""Device profiles: the register maps of meter models (``config/profiles/README.md``).

Built-in profiles ship in ``config/profiles`` (installed as the package
``meterlink.profiles``); a meter may also name a profile file by path.  A
profile is validated by its protocol's own profile model (the plug-in
registry), so its points carry that protocol's keys.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meterlink.core.config.problems import ConfigProblems, pydantic_problems
from meterlink.core.config.schema import ProfileBase
from meterlink.core.config.yamlfile import load_yaml
from meterlink.core.errors import MeterlinkError
from meterlink.core.registry import protocols


class ProfileError(MeterlinkError):
    """A profile that cannot be found or does not validate."""


def builtin_dir() -> Path:
    return Path(str(resources.files("meterlink.profiles")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def load_profile(name: str, *, base: Path | None = None) -> Any:
    """A built-in profile by name, or a profile file by path (relative to ``base``, the config's folder).

    Every problem is one :class:`ProfileError` line naming the profile as written and the key in it.
    """
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_absolute() and base is not None:
            path = base / path
    else:
        path = builtin_dir() / f"{name}.yaml"
        if not path.exists():
            raise ProfileError(f"{name!r} is not a built-in profile ({', '.join(builtin_names())}) "
                               "nor a path to a profile file")
    return _load(path.resolve(), name)


@functools.cache
def _load(path: Path, shown: str) -> Any:
    if not path.exists():
        raise ProfileError(f"{shown}: no such profile file")
    try:
        raw = load_yaml(path, shown)
    except ConfigProblems as exc:
        first = exc.problems[0]
        raise ProfileError(f"{shown}: {first}" if first.key_path else str(first)) from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{shown}: a profile holds a mapping (name, protocol, defaults, groups)")
    known = protocols()
    plugin = known.get(str(raw.get("protocol")))
    if plugin is None:
        raise ProfileError(f"{shown}: protocol: must be one of {', '.join(known)}")
    model = plugin.profile_model
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = pydantic_problems(exc, root=model)[0]
        raise ProfileError(f"{shown}: {first}") from None


__all__ = ["ProfileBase", "ProfileError", "builtin_dir", "builtin_names", "load_profile"]
