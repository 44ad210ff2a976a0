"""Reading the IPsec roles' config (the scenario's role config as JSON) with clear refusals:
a bad value names the key and what was expected (DESIGN.md principle 6)."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(SystemExit):
    pass


class Cfg:
    def __init__(self, data: dict, source: str):
        self.data, self.source = data, source

    def fail(self, key: str, expected: str, got=None):
        return ConfigError(f"{self.source}: key {key!r}: expected {expected}" +
                           ("" if got is None else f", got {got!r}"))

    def get(self, key: str, default=..., choices=None):
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, "a value (the key is required)")
            return default
        value = self.data[key]
        if choices is not None and value not in choices:
            raise self.fail(key, "one of " + ", ".join(map(str, choices)), value)
        return value

    def number(self, key: str, default: float | None) -> float | None:
        v = self.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise self.fail(key, "a non-negative number", v)
        return v

    def network(self, key: str, default=...) -> IPv4Network:
        v = self.get(key, default)
        try:
            return IPv4Network(str(v), strict=False)
        except ValueError:
            raise self.fail(key, "an IPv4 prefix like 10.1.3.0/24", v) from None

    def addresses(self, key: str, default=()) -> list[str]:
        v = self.get(key, list(default))
        items = v if isinstance(v, list) else [v]
        try:
            return [str(IPv4Address(str(a))) for a in items]
        except ValueError:
            raise self.fail(key, "an IPv4 address or a list of them", v) from None

    def prefixes(self, key: str, value) -> list[str]:
        items = value if isinstance(value, list) else [value]
        try:
            return [str(IPv4Network(str(p), strict=False)) for p in items]
        except ValueError:
            raise self.fail(key, "a list of IPv4 prefixes", value) from None

    def port_range(self, key: str, default: str) -> tuple[int, int]:
        v = str(self.get(key, default))
        try:
            lo, hi = (int(x) for x in v.split("-"))
            if not 0 < lo <= hi <= 65535:
                raise ValueError
            return lo, hi
        except ValueError:
            raise self.fail(key, "a port range like 61000-65535", v) from None


def read_password(cfg: Cfg, env: str = "TESTBED_VPN_PASSWORD") -> str | None:
    import os
    if cfg.get("password", None) is not None:
        return str(cfg.get("password"))
    if os.environ.get(env):
        return os.environ[env]
    path = cfg.get("password_file", None)
    if path is None:
        return None
    p = Path(path)
    if not p.is_absolute():
        p = REPO_ROOT / p
    try:
        return p.read_text().strip()
    except OSError as exc:
        raise cfg.fail("password_file", "a readable file", f"{p}: {exc.strerror}") from None
