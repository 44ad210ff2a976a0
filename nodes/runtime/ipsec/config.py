"""Reading the IPsec roles' config (the scenario's role config as JSON) with clear refusals:
a bad value raises the project's one ConfigError (nodes/config_schema.py), naming the file, the
key, what was expected and what was found (testbed principle 6, docs/principles.md)."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from nodes.config_schema import ConfigError, Reader

__all__ = ["ConfigError", "Cfg", "esp_lifetime", "users", "soft_rekey_delay", "password_source", "ask_password",
           "read_password", "Redirect", "redirects"]

REPO_ROOT = Path(__file__).resolve().parents[3]


class Cfg:
    """A role's config mapping read key by key; `fail` builds the ConfigError (a profile that reads
    a scenario's role config with these rules overrides it to name `roles.<role>.config.<key>`)."""

    def __init__(self, data: dict, source: str):
        self.data, self.source = data, source

    def fail(self, key: str, expected: str, got=None):
        return ConfigError(self.source, key, expected, got)

    def get(self, key: str, default=..., choices=None):
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, "a value (the key is required)")
            return default
        value = self.data[key]
        if choices is not None and value not in choices:
            raise self.fail(key, "one of " + ", ".join(map(str, choices)), value)
        return value

    def _read(self, key: str, value, kind: str, expected: str):
        """`value` of `key` as `kind` (nodes/config_schema.KINDS), refused through fail()."""
        try:
            return Reader(self.source, value, key).convert(kind, expected)
        except ConfigError as exc:
            raise self.fail(key, exc.expected, exc.got) from None

    def number(self, key: str, default: float | None) -> float | None:
        v = self.get(key, default)
        if v is None:
            return None
        v = self._read(key, v, "num", "a non-negative number")
        if v < 0:
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
        return [str(self._read(key, a, "addr", "an IPv4 address or a list of them")) for a in items]

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


def esp_lifetime(cfg: Cfg, key: str = "esp_lifetime"):
    """The child SAs' ESP lifetimes from `key` ({soft_bytes, hard_bytes, soft_seconds, hard_seconds},
    each optional), as nodes/ipsec/esp_sa.Lifetime; None when the key is absent."""
    from nodes.ipsec.esp_sa import Lifetime
    v = cfg.get(key, None)
    if v is None:
        return None
    fields = ("soft_bytes", "hard_bytes", "soft_seconds", "hard_seconds")
    expected = "a mapping of " + ", ".join(fields) + " (positive numbers; soft <= hard)"
    if not isinstance(v, dict) or set(v) - set(fields):
        raise cfg.fail(key, expected, v)
    values = {}
    for f in fields:
        x = v.get(f)
        if x is None:
            continue
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0:
            raise cfg.fail(f"{key}.{f}", "a positive number", x)
        values[f] = int(x) if f.endswith("bytes") else float(x)
    try:
        return Lifetime(**values)
    except ValueError as exc:
        raise cfg.fail(key, expected, f"{v} ({exc})") from None


def users(cfg: Cfg, key: str = "users") -> dict[str, dict]:
    """The gateway's `users: {id: {psk, password, subnets}}` as user id -> {"psk", "password" (None
    when absent), "subnets" (prefixes; default 0.0.0.0/0)}. Every user needs a psk: G authenticates
    itself with it, also toward a user who authenticates with a password (EAP)."""
    v = cfg.get(key)
    if not isinstance(v, dict) or not v:
        raise cfg.fail(key, "a mapping of user id -> {psk, password, subnets}", v)
    out = {}
    for uid, u in v.items():
        if not isinstance(u, dict):
            raise cfg.fail(f"{key}.{uid}", "a mapping with psk, password and subnets", u)
        subnets = cfg.prefixes(f"{key}.{uid}.subnets", u.get("subnets", ["0.0.0.0/0"]))
        if u.get("psk") is None:
            raise cfg.fail(f"{key}.{uid}.psk", "a pre-shared key (G authenticates itself with it)")
        out[str(uid)] = {"psk": str(u["psk"]), "password": None if u.get("password") is None else str(u["password"]),
                         "subnets": subnets}
    return out


def soft_rekey_delay(cfg: Cfg, default: list[float], key: str = "esp_soft_rekey_delay") -> tuple[float, float]:
    """[lo, hi] seconds (0 <= lo <= hi) to wait, drawn at random, before a soft ESP expiry's rekey."""
    delay = cfg.get(key, default)
    if (not isinstance(delay, list) or len(delay) != 2 or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in delay)
            or delay[0] > delay[1]):
        raise cfg.fail(key, "[lo, hi] seconds (0 <= lo <= hi)", delay)
    return float(delay[0]), float(delay[1])


PASSWORD_ENV = "TESTBED_VPN_PASSWORD"
NO_TTY = ("run the client by hand from a terminal, or give the password in password_file or in the "
          "environment variable " + PASSWORD_ENV)
PROMPT_KEY = "password (--ask-password or password: prompt)"


def password_source(cfg: Cfg, ask: bool = False, environ=None, env: str = PASSWORD_ENV) -> str | None:
    """Where the password comes from: "prompt" (--ask-password or `password: prompt`; asked for
    explicitly, it wins), "config" (`password`), "env" (the environment variable), "file"
    (`password_file`), or None."""
    import os
    environ = os.environ if environ is None else environ
    pw = cfg.get("password", None)
    if ask or pw == "prompt":
        return "prompt"
    if pw is not None:
        return "config"
    if environ.get(env):
        return "env"
    if cfg.get("password_file", None) is not None:
        return "file"
    return None


def _tty_available() -> bool:
    import os
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def ask_password(prompt: str = "VPN password: ", tty_available=_tty_available, getpass_fn=None,
                 source: str = "the client's config") -> str:
    """Ask on the controlling terminal (getpass, no echo); ConfigError saying what to do when
    there is none (getpass would fall back to stdin and echo)."""
    if not tty_available():
        raise ConfigError(source, PROMPT_KEY, "a controlling terminal to type the password at",
                          "no controlling terminal in this process", hint=NO_TTY)
    if getpass_fn is None:
        import getpass
        getpass_fn = getpass.getpass
    try:
        pw = getpass_fn(prompt)
    except (EOFError, KeyboardInterrupt):
        raise ConfigError(source, PROMPT_KEY, "a password typed at the prompt", "end of input",
                          hint="type the password, or give it in password_file") from None
    if not pw:
        raise ConfigError(source, PROMPT_KEY, "a password typed at the prompt", "an empty line",
                          hint="type the password, or give it in password_file")
    return pw


def read_password(cfg: Cfg, env: str = PASSWORD_ENV, ask: bool = False, environ=None,
                  tty_available=_tty_available, getpass_fn=None) -> str | None:
    import os
    environ = os.environ if environ is None else environ
    source = password_source(cfg, ask, environ, env)
    if source == "prompt":
        return ask_password(f"password for {cfg.get('identity', 'the VPN')}: ", tty_available, getpass_fn, cfg.source)
    if source == "config":
        return str(cfg.get("password"))
    if source == "env":
        return environ[env]
    if source is None:
        return None
    p = Path(cfg.get("password_file"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    try:
        return p.read_text().strip()
    except OSError as exc:
        raise cfg.fail("password_file", "a readable file", f"{p}: {exc.strerror}") from None


# -- the gateway's redirection rules (draft-gupta Appendix C) ---------------------------------------
REDIRECT_KEYS = ("proto", "port", "user", "to_port")


class Redirect:
    """One configured redirection rule: connections from the intranet to G_i:`port`/`proto` go to
    user `user`'s tunnel-inner address, port `to_port`, while that user's tunnel is up."""

    __slots__ = REDIRECT_KEYS

    def __init__(self, proto: str, port: int, user: str, to_port: int):
        self.proto, self.port, self.user, self.to_port = proto, port, user, to_port

    def __eq__(self, other) -> bool:
        return isinstance(other, Redirect) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Redirect({self.proto} G_i:{self.port} -> {self.user}:{self.to_port})"

    def as_dict(self) -> dict:
        return {"proto": self.proto, "port": self.port, "user": self.user, "to_port": self.to_port}


def _port(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65535


def redirects(cfg: Cfg, users, napt_ports: tuple[int, int] | None, key: str = "redirects") -> list[Redirect]:
    """The gateway's `redirects: [{proto: tcp|udp, port, user, to_port}]`. `users`: the configured
    user ids; `napt_ports`: the dynamic NAPT range (a rule's port must lie outside it, else a
    dynamic mapping could hold it), None when the gateway does not run NAPT (then rules are refused:
    a pool address is reachable from the intranet as it is)."""
    v = cfg.get(key, [])
    if not isinstance(v, list):
        raise cfg.fail(key, "a list of {proto: tcp|udp, port, user, to_port}", v)
    if v and napt_ports is None:
        raise cfg.fail(key, "no rules unless internal_presence is napt (a pool address needs no redirection)", v)
    out: list[Redirect] = []
    seen: dict[tuple[str, int], int] = {}
    for i, r in enumerate(v):
        k = f"{key}[{i}]"
        if not isinstance(r, dict):
            raise cfg.fail(k, "a mapping {proto: tcp|udp, port, user, to_port}", r)
        unknown = sorted(set(map(str, r)) - set(REDIRECT_KEYS))
        if unknown:
            raise cfg.fail(f"{k}.{unknown[0]}", "no such key (proto, port, user, to_port)", r[unknown[0]])
        for f in REDIRECT_KEYS:
            if r.get(f) is None:
                raise cfg.fail(f"{k}.{f}", "a value (the key is required)")
        proto = r["proto"]
        if proto not in ("tcp", "udp"):
            raise cfg.fail(f"{k}.proto", "tcp or udp", proto)
        for f in ("port", "to_port"):
            if not _port(r[f]):
                raise cfg.fail(f"{k}.{f}", "a port number 1..65535", r[f])
        if napt_ports is not None and napt_ports[0] <= r["port"] <= napt_ports[1]:
            raise cfg.fail(f"{k}.port", f"a port outside napt_ports {napt_ports[0]}-{napt_ports[1]}", r["port"])
        user = str(r["user"])
        if user not in users:
            raise cfg.fail(f"{k}.user", "one of the configured users (" + ", ".join(sorted(map(str, users))) + ")",
                           r["user"])
        if (proto, r["port"]) in seen:
            raise cfg.fail(f"{k}.port", f"a {proto} port no other rule uses (redirects[{seen[(proto, r['port'])]}] has it)",
                           r["port"])
        seen[(proto, r["port"])] = i
        out.append(Redirect(proto, r["port"], user, r["to_port"]))
    return out
