"""Validation of data files (world plan, scenarios, requirements, the conformance catalogue and
statements, a profile's case data): errors name the file, the key and what was expected.

The reader and the error are the project's one config schema, nodes/config_schema.py, shared with
the daemons' config readers; this module adds the YAML files."""
from __future__ import annotations

from pathlib import Path

import yaml

from nodes.config_schema import ConfigError, Reader, load_json

__all__ = ["ConfigError", "Reader", "load_json", "load_yaml"]


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping; a missing file or a syntax error becomes a ConfigError."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "an existing file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(path, where, "valid YAML", str(getattr(exc, "problem", exc))) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "a mapping", type(data).__name__)
    return data
