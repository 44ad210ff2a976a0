"""One way to read configuration, for the whole project: the testbed's data files (world plan,
scenarios, profiles' statements and case data, through testbed/schema.py) and the daemons' JSON
configs (the file by nodes/runtime/daemon.py, its keys by nodes/runtime/ipsec/config.py,
nodes/runtime/mip/config.py and the gateway's sites by nodes/ipsec/sites.py) raise the one
`ConfigError`, which names `file: key`, what was expected, what was found and, where it helps,
what to do (testbed principle 6, docs/principles.md).

It sits below the runtime (pure Python, no I/O but reading a file) so that both the daemons and the
harness can import it; nodes/ never imports testbed/.
"""
from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Iterable


class ConfigError(ValueError, SystemExit):
    """A configuration is wrong. The message says which file, which key, what was expected, what was
    found and (hint) what to do: `<file>: <key>: expected <expected>, got <found>; <hint>`.

    It is also a SystemExit: a daemon that meets one while reading its config exits with status 1
    and this message (no traceback), as a command-line program should; code that reads config
    catches it as ConfigError (or ValueError)."""

    def __init__(self, file: Path | str, key: str, expected: str, got: Any = None, hint: str = ""):
        self.file, self.key, self.expected, self.got, self.hint = str(file), key, expected, got, hint
        found = "" if got is None else f", got {got!r}"
        message = f"{file}: {key}: expected {expected}{found}" + (f"; {hint}" if hint else "")
        ValueError.__init__(self, message)
        self.code = message  # SystemExit's: printed to stderr, exit status 1

    def __reduce__(self):  # picklable (xdist workers, multiprocessing), with all its parts
        return (type(self), (self.file, self.key, self.expected, self.got, self.hint))


MISSING_HINT = "add this required key"


def load_json(path: Path | str) -> dict:
    """Read a JSON object; a missing file, a syntax error or another top level becomes a ConfigError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "an existing file", hint="check the --config path") from None
    except OSError as exc:  # a directory, no permission to read it...
        raise ConfigError(path, "(file)", "a readable file", exc.strerror, hint="check the --config path") from None
    except ValueError as exc:
        raise ConfigError(path, f"line {getattr(exc, 'lineno', '?')}", "valid JSON", str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(path, "(top level)", "a JSON object", type(data).__name__)
    return data


# -- conversions by kind: one table for the whole project ------------------------------------------
def _bool(v):
    if isinstance(v, bool):
        return v
    raise ValueError(v)


def _int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(v)
    return v


def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(v)
    return v


def _str(v):
    if not isinstance(v, str):
        raise ValueError(v)
    return v


def _hexkey(v):
    if not isinstance(v, str) or not v:
        raise ValueError(v)
    return bytes.fromhex(v)


def _typed(kind):
    def check(v):
        if not isinstance(v, kind):
            raise ValueError(v)
        return v
    return check


def _address(v):
    return IPv4Address(str(v))


def _network(v):
    return IPv4Network(str(v))


def _interface(v):
    return IPv4Interface(str(v))


KINDS = {  # kind -> (conversion, what a user is told was expected)
    "addr": (_address, "an IPv4 address"),
    "net": (_network, "an IPv4 prefix such as 10.1.0.0/24"),
    "iface": (_interface, "an address with prefix length such as 10.77.0.100/24"),
    "int": (_int, "an integer"),
    "num": (_num, "a number"),
    "bool": (_bool, "true or false"),
    "str": (_str, "a string"),
    "hexkey": (_hexkey, "a hex string"),
    "list": (_typed(list), "a list"),
    "map": (_typed(dict), "a mapping"),
}


class Reader:
    """Walks a parsed mapping, remembering the key path for error messages."""

    def __init__(self, file: Path | str, data: Any, key: str = ""):
        self.file, self.data, self.key = file, data, key

    def fail(self, expected: str, got: Any = None, key: str | None = None, hint: str = "") -> ConfigError:
        return ConfigError(self.file, key or self.key or "(top level)", expected, got, hint)

    def _sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else str(name)

    def convert(self, kind: str, expected: str | None = None):
        """The value as `kind` (a key of KINDS); a ConfigError saying what was expected otherwise."""
        conv, describe = KINDS[kind]
        try:
            return conv(self.data)
        except (ValueError, TypeError):
            raise self.fail(expected or describe, self.data) from None

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
            raise ConfigError(self.file, self._sub(name), "this key to be present", hint=MISSING_HINT)
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
        return self.convert("bool")

    def number(self, low: float | None = None, high: float | None = None) -> float:
        value = self.convert("num")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(f"a number in [{low}, {high}]", value)
        return value

    def address(self) -> IPv4Address:
        return self.convert("addr")

    def network(self) -> IPv4Network:
        return self.convert("net")

    def list(self) -> list["Reader"]:
        if not isinstance(self.data, list):
            raise self.fail("a list", self.data)
        return [Reader(self.file, v, f"{self.key}[{i}]") for i, v in enumerate(self.data)]
