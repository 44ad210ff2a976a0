"""The mobile VPN node's config (nodes/daemons/mobile_vpn_node.py), read into objects.

    {nesting, mn: {mobile_node config}, client: {vpn_client config}}
    rfc5265 also: access_mode (cvc or fvc), detect_window (s), inner: {the i-MIP layer's mobile
    node config without iface and colocated: its link is the VPN tunnel}

Each layer's mapping is read by that layer's own rules (nodes/runtime/mip/config.py for `mn` and
`inner`, the VPN client's `Client` for `client`) when the node is made, so a bad key is refused at
start, not when the layer first runs. Every refusal is the one ConfigError
(nodes/config_schema.py): `<file>: <key>: expected <what>, got <found>`, the layers' keys named
`mn.<key>`, `client.<key>` and `inner.<key>`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from nodes.config_schema import ConfigError, Reader, load_json
from nodes.daemons.vpn_client import Client
from nodes.mip.mn import MobileNodeConfig
from nodes.mip.rfc5265_location import DEFAULT_WINDOW
from nodes.runtime.ipsec.config import Cfg
from nodes.runtime.mip import config as mip_config

NESTINGS = ("mip-inside-ipsec", "ipsec-inside-mip", "rfc5265")
ACCESS_MODES = ("cvc", "fvc")  # RFC 5265 outside modes: x-MIP co-located or through a foreign agent
KEYS = ("nesting", "mn", "client")
RFC5265_KEYS = ("access_mode", "inner", "detect_window")
LAYERS = {"mn": "mn", "client": "client", "inner": "i-MIP"}  # key -> the layer's name in messages
CLIENT_DEFAULTS = {"wait": 0, "tunnel": "split"}  # the layering keeps its own routes
INNER_DEFAULTS = {"reverse_tunnel": True, "tun": "mip1"}  # RFC 5265 section 4: T SHOULD be set for i-MIP


class ClientCfg(Cfg):
    """The VPN client's config read as the `client` mapping of the node's file: refusals name
    `client.<key>`."""

    def fail(self, key: str, expected: str, got=None):
        return ConfigError(self.source, f"client.{key}", expected, got)


@dataclass
class MobileVpnConfig:
    file: str
    nesting: str
    mn: MobileNodeConfig  # the MN layer (x-MIP with rfc5265): the mobile node daemon's config
    mn_extra: dict
    client: Cfg  # the VPN client's
    access_mode: str | None = None
    detect_window: float = DEFAULT_WINDOW
    inner: MobileNodeConfig | None = None  # rfc5265: the i-MIP layer's
    inner_extra: dict | None = None

    @property
    def gateway(self) -> str:
        return str(self.client.data.get("gateway"))

    @property
    def home(self) -> str:
        return str(self.mn.home_address)

    @property
    def home_agent(self) -> str:
        return str(self.mn.home_agent)

    @property
    def mip_tun(self) -> str:
        return str(self.mn_extra["tun"])

    @property
    def vpn_tun(self) -> str:
        return str(self.client.data.get("tun", "vpn0"))

    @property
    def vpn_mtu(self) -> int:
        return int(self.client.data.get("mtu", 1400))

    @property
    def inner_tun(self) -> str | None:
        return None if self.inner_extra is None else str(self.inner_extra["tun"])

    def x_mip_copy(self) -> MobileNodeConfig:
        """The x-MIP layer's config for a request of the node's own (the x-HA deregistration),
        apart from the one its core holds."""
        return copy.deepcopy(self.mn)


def load(path: Path | str) -> MobileVpnConfig:
    return read(load_json(path), path)


def read(data: dict, file: Path | str) -> MobileVpnConfig:
    Reader(file, data).mapping()
    nesting = data.get("nesting")
    if nesting not in NESTINGS:
        raise ConfigError(file, "nesting", f"one of {', '.join(NESTINGS)}", nesting)
    rfc5265 = nesting == "rfc5265"
    known = KEYS + (RFC5265_KEYS if rfc5265 else ())
    unknown = sorted(set(data) - set(known))
    if unknown:
        also = f" (also unknown: {', '.join(unknown[1:])})" if unknown[1:] else ""
        raise ConfigError(file, unknown[0], f"one of the keys {', '.join(known)} for nesting {nesting}", unknown[0],
                          hint=f"remove or rename it{also}" + ("" if rfc5265 else
                                                               f"; {', '.join(RFC5265_KEYS)} are for nesting rfc5265"))
    for key in ("mn", "client") + (("inner",) if rfc5265 else ()):
        if not isinstance(data.get(key), dict):
            raise ConfigError(file, key, f"the {LAYERS[key]} layer's config as a mapping", data.get(key))
    mn, mn_extra = mip_config.mobile_node(mip_config.Fields(data["mn"], file, "mn."))
    client = ClientCfg({**CLIENT_DEFAULTS, **data["client"]}, str(file))
    Client(client, lambda *a, **k: None)  # the client's own checks, now rather than at its first run
    cfg = MobileVpnConfig(str(file), nesting, mn, mn_extra, client)
    if rfc5265:
        cfg.access_mode = data.get("access_mode", "cvc")
        if cfg.access_mode not in ACCESS_MODES:
            raise ConfigError(file, "access_mode", f"one of {', '.join(ACCESS_MODES)} (the outside mode; inside, "
                              "c or f follow from the link)", cfg.access_mode)
        window = Reader(file, data.get("detect_window", DEFAULT_WINDOW), "detect_window")
        cfg.detect_window = float(window.convert("num", "a positive number of seconds"))
        if cfg.detect_window <= 0:
            raise window.fail("a positive number of seconds", cfg.detect_window)
        for key in ("iface", "colocated"):
            if key in data["inner"]:
                raise ConfigError(file, f"inner.{key}", f"no {key}: the i-MIP layer's link is the VPN tunnel "
                                  f"({cfg.vpn_tun})", data["inner"][key], hint="remove the key")
        inner = {**INNER_DEFAULTS, **data["inner"], "iface": cfg.vpn_tun}
        cfg.inner, cfg.inner_extra = mip_config.mobile_node(mip_config.Fields(inner, file, "inner."))
    return cfg
