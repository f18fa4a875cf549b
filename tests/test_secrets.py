"""Secrets come from the config, a file or the environment, and errors never show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterlink.core.errors import ConfigError
from meterlink.core.secrets import read_secret


def test_file_env_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text("  s3cret \n")
    f.chmod(0o600)
    assert read_secret("k", file=str(f)) == "s3cret"
    monkeypatch.setenv("ML_TOKEN", "from-env")
    assert read_secret("k", env="ML_TOKEN") == "from-env"
    assert read_secret("k", value="inline") == "inline"
    assert read_secret("k") is None


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret("sinks.mqtt.password_file", file=str(tmp_path / "none"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_secret("sinks.mqtt.password_file", file=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="ML_NOPE is not set"):
        read_secret("sinks.influxdb.token_file", env="ML_NOPE")
