"""Device profiles: the register maps of meter models (``config/profiles/README.md``).

Built-in profiles ship in ``config/profiles`` (installed as the package
``meterlink_profiles``); a meter may also name a profile file by path.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from gateway.config import (
    ConfigProblems,
    MeterConfig,
    Point,
    ProfileConfig,
    _pydantic_problems,
    load_yaml,
    resolve_points,
)
from gateway.errors import MeterlinkError


class ProfileError(MeterlinkError):
    """A profile that cannot be found or does not validate."""


def builtin_dir() -> Path:
    return Path(str(resources.files("meterlink_profiles")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def load_profile(name: str, *, base: Path | None = None) -> ProfileConfig:
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
def _load(path: Path, shown: str) -> ProfileConfig:
    if not path.exists():
        raise ProfileError(f"{shown}: no such profile file")
    try:
        raw = load_yaml(path, shown)
    except ConfigProblems as exc:
        first = exc.problems[0]
        raise ProfileError(f"{shown}: {first}" if first.key_path else str(first)) from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{shown}: a profile holds a mapping (name, protocol, defaults, groups)")
    try:
        return ProfileConfig.model_validate(raw)
    except ValidationError as exc:
        first = _pydantic_problems(exc, root=ProfileConfig)[0]
        raise ProfileError(f"{shown}: {first}") from None


def profile_points(name: str, *, base: Path | None = None) -> list[Point]:
    """The resolved points of a profile, as a meter naming it would read them."""
    profile = load_profile(name, base=base)
    address: object = {"modbus": 1, "dlt645": "000000000001"}.get(profile.protocol, {"logical": 1})
    meter = MeterConfig(link="-", protocol=profile.protocol, address=address, profile=name,  # type: ignore[arg-type]
                        standard=profile.standard)
    points, problems = resolve_points(meter, profile, f"profile {name}")
    if problems:
        raise ProfileError(str(problems[0]))
    return points
