"""Secrets (MQTT password, InfluxDB token, meter keys) from the config, a file, or the environment.

A secret is read when a sink or driver starts, never stored in a config object
that could be logged, and errors name the key and the file, never the value.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from meterlink.core import logs
from meterlink.core.errors import ConfigError

MAX_SECRET_BYTES = 64 << 10


def read_secret(key: str, *, value: str | None = None, file: str | None = None, env: str | None = None,
                base: Path | None = None) -> str | None:
    """The secret given inline, in ``file`` (first line, surrounding blanks stripped), or in ``env``."""
    if value is not None:
        return value
    if env is not None:
        got = os.environ.get(env)
        if got is None:
            raise ConfigError(key.replace("_file", "_env"), f"environment variable {env} is not set")
        return got
    if file is None:
        return None
    path = Path(file)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        mode = path.stat().st_mode
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)  # /dev/zero given by mistake must not fill the memory
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(key, f"{path} is larger than {MAX_SECRET_BYTES >> 10} KiB: not a secret file "
                               "(one line: the password, token or key)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text: a secret file holds one line of text "
                               "(write a binary key as hex)") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH) and mode & stat.S_IROTH:
        logs.warning("secret file is readable by others", key=key, file=str(path), mode=oct(mode & 0o777))
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ConfigError(key, f"{path} is empty")
    return secret
