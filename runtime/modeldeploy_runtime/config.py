"""Read the runtime config file (its schema lives in `modeldeploy_contract.config`)."""

from __future__ import annotations

from pathlib import Path

from modeldeploy_contract.config import RuntimeConfig, describe
from pydantic import ValidationError

from modeldeploy_runtime.errors import ConfigError


def parse_config(text: str, origin: str = "<config>") -> RuntimeConfig:
    """Parse and validate the config JSON; errors name the key, the value and the fix."""
    try:
        return RuntimeConfig.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(f"invalid runtime config {origin}: {describe(error)}") from None


def load_config(path: str | Path) -> RuntimeConfig:
    """Read the config file at `path` (set with --config or MODELDEPLOY_CONFIG)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"cannot read runtime config {path}: {error.strerror}; "
            "pass --config PATH or set MODELDEPLOY_CONFIG"
        ) from None
    return parse_config(text, str(path))
