"""Reading YAML files given by users, with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcm.errors import ConfigError


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The non-empty mapping at the top of YAML file ``path``; ``what`` names the file in errors ("config file")."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{p} must hold a mapping of settings, got {type(raw).__name__}")
    return raw
