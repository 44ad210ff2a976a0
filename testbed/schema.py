"""Validation of data files (world plan, scenarios, requirements, the conformance catalogue and
statements, a profile's case data): errors name the file, the key and what was expected."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A data file is wrong. The message says which file, which key, what was expected and what was found."""

    def __init__(self, file: Path | str, key: str, expected: str, got: Any = None):
        self.file, self.key, self.expected, self.got = str(file), key, expected, got
        found = "" if got is None else f", got {got!r}"
        super().__init__(f"{file}: {key}: expected {expected}{found}")


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


class Reader:
    """Walks a parsed mapping, remembering the key path for error messages."""

    def __init__(self, file: Path | str, data: Any, key: str = ""):
        self.file, self.data, self.key = file, data, key

    def fail(self, expected: str, got: Any = None, key: str | None = None) -> ConfigError:
        return ConfigError(self.file, key or self.key or "(top level)", expected, got)

    def _sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else str(name)

    def mapping(self) -> dict:
        if not isinstance(self.data, dict):
            raise self.fail("a mapping", type(self.data).__name__)
        return self.data

    def only_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for name in self.mapping():
            if name not in allowed:
                raise ConfigError(self.file, self._sub(name), f"one of the keys {sorted(allowed)}", name)

    def child(self, name: str, default: Any = ..., required: bool = True) -> "Reader":
        data = self.mapping()
        if name not in data:
            if default is not ...:
                return Reader(self.file, default, self._sub(name))
            raise ConfigError(self.file, self._sub(name), "this key to be present")
        return Reader(self.file, data[name], self._sub(name))

    def items(self):
        for name, value in self.mapping().items():
            yield str(name), Reader(self.file, value, self._sub(str(name)))

    def str(self, choices: Iterable[str] | None = None) -> str:
        if not isinstance(self.data, str):
            raise self.fail("a string", self.data)
        if choices is not None and self.data not in choices:
            raise self.fail(f"one of {sorted(choices)}", self.data)
        return self.data

    def bool(self) -> bool:
        if not isinstance(self.data, bool):
            raise self.fail("true or false", self.data)
        return self.data

    def number(self, low: float | None = None, high: float | None = None) -> float:
        if isinstance(self.data, bool) or not isinstance(self.data, (int, float)):
            raise self.fail("a number", self.data)
        if (low is not None and self.data < low) or (high is not None and self.data > high):
            raise self.fail(f"a number in [{low}, {high}]", self.data)
        return self.data

    def address(self) -> IPv4Address:
        try:
            return IPv4Address(str(self.data))
        except ValueError:
            raise self.fail("an IPv4 address", self.data) from None

    def network(self) -> IPv4Network:
        try:
            return IPv4Network(str(self.data))
        except ValueError:
            raise self.fail("an IPv4 prefix such as 10.1.0.0/24", self.data) from None

    def list(self) -> list["Reader"]:
        if not isinstance(self.data, list):
            raise self.fail("a list", self.data)
        return [Reader(self.file, v, f"{self.key}[{i}]") for i, v in enumerate(self.data)]
