"""Config files of the Mobile IP daemons (JSON, usually a scenario role's `config` mapping), read into
the cores' config dataclasses. A bad file is refused at start with a message that names the file,
the key and what was expected (testbed principle 6, docs/principles.md).

Addresses as dotted quads, keys as hex strings, e.g.

    ha: {address: 10.1.1.2, home_network: 10.1.1.0/24, max_lifetime: 1800,
         mobile_nodes: [{home_address: 10.1.1.100, spi: 1000, key: "6d6e2d..."}],
         advertise: true, adv_interval: 1.0}      # H-bit advertisements on the home network
    fa: {address: 192.0.2.1, iface: ar1-fn1, adv_interval: 1.0, encapsulations: [ipip, minimal, gre]}
    mn: {home_address: 10.1.1.100, home_agent: 10.1.1.2, home_network: 10.1.1.0/24, spi: 1000,
         key: "6d6e...", iface: r-eth0, home_router: 10.1.1.1, encapsulation: gre,   # or ipip, minimal
         colocated: {fn3: {address: 10.77.0.100/24, router: 10.77.0.1}}}   # static
    mn: {..., colocated: {fn3: dhcp}, dhcp_after: 0.3, dhcp_timeout: 4.0}   # by DHCP (nodes/runtime/host/dhcp.py)
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from nodes.config_schema import KINDS, MISSING_HINT, ConfigError, Reader, load_json
from nodes.mip.advertiser import advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.mip.common import supported_encapsulations
from nodes.mip.fa import ForeignAgentConfig
from nodes.mip.ha import HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNodeConfig
from nodes.mip.movement import CoLocatedNetwork


BadConfig = ConfigError  # the name this module used before the one ConfigError (nodes/config_schema.py)


class Fields:
    """Typed access to one mapping of a config file (through nodes/config_schema.Reader); every
    refusal is a ConfigError naming the file and the key."""

    def __init__(self, data: dict, file: Path | str | None, prefix: str = ""):
        self.data = Reader(file, data, prefix.rstrip(".")).mapping()
        self.file, self.prefix = file, prefix
        self.used: set[str] = set()

    def fail(self, key: str, expected: str, got=None, hint: str = "") -> ConfigError:
        return ConfigError(self.file, f"{self.prefix}{key}", expected, got, hint)

    def refused(self, key: str | None, exc: ValueError) -> ConfigError:
        """A value a core's config refused (its ValueError says why); `key` None: the key the
        message starts with, if it is one of this mapping's."""
        if key is None:
            word = str(exc).split(" ", 1)[0]
            key = word if word in self.data else "(top level)"
        return self.fail(key, "a value the daemon accepts", self.data.get(key), hint=str(exc))

    def get(self, key: str, kind: str, default=..., expected: str | None = None):
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise self.fail(key, expected or KINDS[kind][1], hint=MISSING_HINT)
            return default
        value = Reader(self.file, self.data[key], f"{self.prefix}{key}").convert(kind, expected)
        return float(value) if kind == "num" else value

    def child(self, key: str, value, index=None) -> "Fields":
        name = f"{self.prefix}{key}" + (f"[{index}]" if index is not None else "")
        return Fields(value, self.file, name + ".")

    def sa(self, spi_key: str = "spi", key_key: str = "key") -> SecurityAssociation:
        spi = self.get(spi_key, "int", expected="an SPI of 256 or more")
        key = self.get(key_key, "hexkey", expected="the key as a hex string")
        try:
            return SecurityAssociation(spi, key)
        except ValueError as exc:
            raise self.fail(spi_key, "a valid security association", spi, hint=str(exc)) from None

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            more = f" (also unknown: {', '.join(self.prefix + k for k in unknown[1:])})" if unknown[1:] else ""
            raise self.fail(unknown[0], f"one of the keys {sorted(self.used)}", unknown[0],
                            hint=f"remove or rename it{more}")


def load(path: Path | None, parse):
    """Read the JSON file at `path` and parse it with `parse(Fields)`. A bad file raises ConfigError,
    a SystemExit: the daemon exits with its message."""
    return parse(Fields({} if path is None else load_json(path), path))


# ---- home agent ----------------------------------------------------------------------------------
def home_agent(f: Fields) -> tuple[HomeAgentConfig, dict]:
    nodes = []
    for i, entry in enumerate(f.get("mobile_nodes", "list", expected="a list of {home_address, spi, key}")):
        e = f.child("mobile_nodes", entry, i)
        nodes.append(MobileNodeEntry(e.get("home_address", "addr"), e.sa(), e.get("max_lifetime", "int", None)))
        e.check_unknown()
    fa_sas = {}
    for i, entry in enumerate(f.get("fa_associations", "list", [])):
        e = f.child("fa_associations", entry, i)
        fa_sas[e.get("address", "addr")] = e.sa()
        e.check_unknown()
    cfg = HomeAgentConfig(
        address=f.get("address", "addr"), nodes=nodes, home_iface=f.get("home_iface", "str", None),
        max_lifetime=f.get("max_lifetime", "int", 1800), max_bindings=f.get("max_bindings", "int", 100_000),
        replay_tolerance=f.get("replay_tolerance", "num", 7.0),
        reverse_tunnelling=f.get("reverse_tunnelling", "bool", True),
        reverse_tunnel_required=f.get("reverse_tunnel_required", "bool", False),
        udp_tunnelling=f.get("udp_tunnelling", "bool", True), udp_keepalive=f.get("udp_keepalive", "int", 110),
        trusted_networks=[IPv4Network(n) for n in f.get("trusted_networks", "list", [])],
        drop_untrusted=f.get("drop_untrusted", "bool", False), fa_associations=fa_sas,
    )
    cfg.encapsulations = _encapsulations(f, cfg.encapsulations)
    extra = {"home_network": f.get("home_network", "net", None), "tun": f.get("tun", "str", "mip0"),
             "batch_host_changes": f.get("batch_host_changes", "bool", True)}
    _advertising(f, cfg, extra["home_network"])
    f.check_unknown()
    return cfg, extra


def _advertising(f: Fields, cfg: HomeAgentConfig, home_network: IPv4Network | None) -> None:
    """Agent advertisements on the home network (RFC 5944 2.1): on by default when the home agent's
    address is on its home network (as it is when home_network is not given)."""
    on_home = home_network is None or cfg.address in home_network
    cfg.advertise = f.get("advertise", "bool", on_home)
    if cfg.advertise and not on_home:
        raise f.fail("advertise", f"false: the home agent's address {cfg.address} is not on its home network "
                     f"{home_network}", True, hint="advertise there only from an address on it, or set advertise: false")
    for key, kind in (("adv_interval", "num"), ("adv_lifetime", "int"), ("solicited_min_interval", "num")):
        value = f.get(key, kind, None)
        if value is not None:
            setattr(cfg, key, value)
    destination = f.get("adv_destination", "addr", None)
    if destination is not None:
        try:
            cfg.adv_destination = advertisement_destination(destination)
        except ValueError as exc:
            raise f.refused("adv_destination", exc) from None
    cfg.prefix_length = home_network.prefixlen if home_network is not None else None


def _encapsulations(f: Fields, default: tuple) -> tuple:
    """An agent's `encapsulations`: a list of ipip, minimal and gre (ipip among them)."""
    value = f.get("encapsulations", "list", list(default), expected="a list of ipip, minimal and gre")
    try:
        return supported_encapsulations(value)
    except ValueError as exc:
        raise f.refused("encapsulations", exc) from None


# ---- foreign agent -------------------------------------------------------------------------------
def foreign_agent(f: Fields) -> tuple[ForeignAgentConfig, dict]:
    ha_sas, mn_sas = {}, {}
    for i, entry in enumerate(f.get("ha_associations", "list", [])):
        e = f.child("ha_associations", entry, i)
        ha_sas[e.get("address", "addr")] = e.sa()
        e.check_unknown()
    for i, entry in enumerate(f.get("mn_associations", "list", [])):
        e = f.child("mn_associations", entry, i)
        mn_sas[e.get("home_address", "addr")] = e.sa()
        e.check_unknown()
    kw = {}
    for key, kind in (("prefix_length", "int"), ("adv_interval", "num"), ("adv_lifetime", "int"),
                      ("max_lifetime", "int"), ("registration_required", "bool"), ("busy", "bool"),
                      ("reverse_tunnelling", "bool"), ("reverse_tunnel_required", "bool"), ("behind_nat", "bool"),
                      ("max_pending", "int"), ("pending_timeout", "num"), ("adv_destination", "addr"),
                      ("solicited_min_interval", "num")):
        value = f.get(key, kind, None)
        if value is not None:
            kw[key] = value
    try:
        cfg = ForeignAgentConfig(
            address=f.get("address", "addr"), iface=f.get("iface", "str", expected="the visitor link's interface"),
            care_of_addresses=[IPv4Address(a) for a in f.get("care_of_addresses", "list", [])],
            ha_associations=ha_sas, mn_associations=mn_sas, **kw,
        )
    except ConfigError:
        raise
    except ValueError as exc:
        raise f.refused(None, exc) from None
    cfg.encapsulations = _encapsulations(f, cfg.encapsulations)
    extra = {"tun": f.get("tun", "str", "mip0"), "prefix_given": "prefix_length" in kw}
    f.check_unknown()
    return cfg, extra


# ---- mobile node ---------------------------------------------------------------------------------
def mobile_node(f: Fields) -> tuple[MobileNodeConfig, dict]:
    kw = {}
    for key, kind in (("lifetime", "int"), ("reverse_tunnel", "bool"), ("udp_tunnel", "str"), ("force_udp", "bool"),
                      ("encapsulation", "str"),
                      ("solicit_interval", "num"), ("solicit_burst", "int"), ("solicit_max_interval", "num"),
                      ("retransmit_initial", "num"), ("retransmit_max", "num"), ("reregister_fraction", "num")):
        value = f.get(key, kind, None)
        if value is not None:
            kw[key] = value
    home_network = f.get("home_network", "net")
    try:
        cfg = MobileNodeConfig(home_address=f.get("home_address", "addr"), home_agent=f.get("home_agent", "addr"),
                               home_network=home_network, sa=f.sa(), iface=f.get("iface", "str"), **kw)
    except ConfigError:
        raise
    except ValueError as exc:
        raise f.refused(None, exc) from None
    colocated = {}
    for name, entry in f.get("colocated", "map", {}).items():
        colocated[name] = _colocated_entry(f, name, entry)
    extra = {
        "home_router": f.get("home_router", "addr", next(home_network.hosts())),
        "colocated": colocated,
        "tun": f.get("tun", "str", "mip0"),
        "probe_interval": f.get("probe_interval", "num", 0.05),
        "dhcp_after": f.get("dhcp_after", "num", 0.3),
        "dhcp_timeout": f.get("dhcp_timeout", "num", 4.0),
        "dhcp_retry": f.get("dhcp_retry", "num", 1.0),
        "dhcp_client": f.get("dhcp_client", "str", "dhclient"),
        "dhcp_dir": f.get("dhcp_dir", "str", None),
    }
    for key in ("dhcp_after", "dhcp_timeout", "dhcp_retry"):
        if extra[key] <= 0:
            raise f.fail(key, "a positive number of seconds", extra[key])
    f.check_unknown()
    # movement detection is the core's (nodes/mip/movement.py): it gets the networks and timers
    cfg.home_router = extra["home_router"]
    cfg.networks = {name: CoLocatedNetwork(c.get("address"), c.get("router"), c["dhcp"])
                    for name, c in colocated.items()}
    cfg.probe_interval, cfg.dhcp_after = extra["probe_interval"], extra["dhcp_after"]
    cfg.dhcp_retry = extra["dhcp_retry"]
    return cfg, extra


def _colocated_entry(f: Fields, name: str, entry) -> dict:
    """One network of `colocated`: a static address and router, or `dhcp` (the address, prefix and
    router come from a DHCP lease on that network; the mapping form {dhcp: true} is the same)."""
    if entry == "dhcp":
        return {"dhcp": True}
    if not isinstance(entry, dict):
        raise f.fail(f"colocated.{name}", '"dhcp" or a mapping {address, router}', entry)
    e = f.child("colocated", entry)
    e.prefix = f"colocated.{name}."
    if e.get("dhcp", "bool", False):
        e.check_unknown()
        return {"dhcp": True}
    out = {"dhcp": False, "address": e.get("address", "iface", expected="an address with prefix, 10.77.0.100/24"),
           "router": e.get("router", "addr")}
    e.check_unknown()
    return out
