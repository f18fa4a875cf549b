"""Validating a configuration in a short-lived child process: how ``meterlink run`` loads its file.

Why: pydantic, its validators and PyYAML cost a gateway ~15 MB of memory once
loaded, and a gateway runs for weeks reading a configuration it validated in
its first second (issue 14: 40 MB in all on the peer load).  So the child
(``python -m meterlink.core.config.child``) does all of :func:`check_config`,
every file the configuration names read, and hands back the resolved
:class:`Config` pickled on its stdout: plain dataclasses and
:class:`Settings`, which need no pydantic to unpickle.  Problems come back as
``(key path, message)`` pairs, so the parent prints exactly what
``meterlink check`` prints, and exits 2 the same way.

The pipe runs between two processes of the same installation, started by
this module: the pickle is trusted for that reason only.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from meterlink.core import logs
from meterlink.core.config.resolved import Config
from meterlink.core.errors import ConfigError, ConfigProblems, MeterlinkError

TIMEOUT = 600.0  # seconds: 2,000 meters validate in a few; a child still busy after this is stuck


def load_validated(path: str | os.PathLike[str], *, strict: bool = True) -> Config:
    """The configuration at ``path``, validated by a child process; raises as :func:`check_config` would."""
    argv = [sys.executable, "-P", "-m", __name__, str(path)] + (["--strict"] if strict else [])
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MeterlinkError(f"validating {path} took over {TIMEOUT:.0f} s: the validating process was stopped; "
                             f"run `meterlink check -c {path}` to see where it hangs") from None
    if proc.stderr:
        sys.stderr.buffer.write(proc.stderr)  # the child's own warnings, as if validated here
        sys.stderr.flush()
    try:
        kind, value = pickle.loads(proc.stdout) if proc.stdout else ("", None)
    except Exception:
        kind, value = "", None
    if kind == "config" and isinstance(value, Config):
        logs.info("configuration validated", file=str(path), process="child",
                  ms=round(1000 * (time.monotonic() - started)),
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1))
        return value
    if kind == "problems":
        raise ConfigProblems([ConfigError(key, message) for key, message in value])
    if kind == "error":
        raise MeterlinkError(str(value))
    last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise MeterlinkError(f"validating {path} failed in its child process (exit {proc.returncode}): {last[0]}")


def _validate(path: str, strict: bool) -> tuple[str, Any]:
    from meterlink.core.config.resolve import check_config, load_config

    try:
        return "config", check_config(path) if strict else load_config(path)
    except ConfigProblems as exc:
        return "problems", [(p.key_path, p.message) for p in exc.problems]
    except ConfigError as exc:
        return "problems", [(exc.key_path, exc.message)]
    except MeterlinkError as exc:
        return "error", str(exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meterlink.core.config.child",
                                description="validate a configuration, print it resolved, pickled (for meterlink run)")
    p.add_argument("path", type=Path)
    p.add_argument("--strict", action="store_true", help="also read every file it names, as `meterlink check`")
    args = p.parse_args(argv)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed while validating must not corrupt the pickle
    kind, value = _validate(str(args.path), args.strict)
    out.write(pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
