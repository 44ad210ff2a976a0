"""Site-to-site peers of the gateway: a remote access router whose traffic selectors are its site's
subnets, not one pool address (the problem statement's "trusted FA", section 4.2, Figure 10: the FA's
network joined to the intranet by a VPN between its access router and G).

A site authenticates with a pre-shared key like a user; the IKE core admits its TSi inside the
site's `site_subnets` (UserPolicy.remote_ts) and asks no configuration payload of it. The gateway
routes the site subnets into its TUN; this table says which tunnel carries a destination (longest
prefix first) while the site's IKE SA lives. Pure data: no I/O, no clock.

Config (the gateway's `sites` key): {id: {psk, subnets (what the site may reach; default
0.0.0.0/0), site_subnets (the site's own networks)}}; `parse_sites` refuses what cannot work with the
project's one ConfigError (nodes/config_schema.py): the file, the key to change, what was expected
there and what was found.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from nodes.config_schema import ConfigError


@dataclass(frozen=True)
class Site:
    identity: str
    psk: str
    subnets: tuple[IPv4Network, ...]  # the intranet side it may reach
    site_subnets: tuple[IPv4Network, ...]  # its own networks: its TSi, routed into G's tunnel


GATEWAY_CONFIG = "the gateway's config"  # the file named when the caller does not say which


def parse_sites(raw, users: set[str], pool: IPv4Network | None, key: str = "sites",
                source: str = GATEWAY_CONFIG) -> dict[str, Site]:
    """The `sites` mapping -> id -> Site. `users`: the user ids (a site may not reuse one); `pool`:
    the address pool of internal_presence pool (None: another presence, which sites cannot use);
    `source`: the config file, named in the errors."""
    if raw is None:
        return {}

    def fail(at: str, expected: str, got=None, hint: str = "") -> ConfigError:
        return ConfigError(source, at, expected, got, hint)

    if pool is None:
        raise fail("internal_presence", "pool when sites are configured (a site's subnets are routed into the "
                   "tunnel, not translated)", hint="set internal_presence: pool with a pool, or remove the sites")
    if not isinstance(raw, dict) or not raw:
        raise fail(key, "a mapping of site id -> {psk, subnets, site_subnets}", raw)
    sites: dict[str, Site] = {}
    for sid, entry in raw.items():
        at = f"{key}.{sid}"
        if str(sid) in users:
            raise fail(at, "an id no user has (sites and users share the IKE identities)", sid,
                       hint="rename the site or the user")
        if not isinstance(entry, dict):
            raise fail(at, "a mapping with psk, subnets and site_subnets", entry)
        unknown = sorted(set(entry) - {"psk", "subnets", "site_subnets"})
        if unknown:
            raise fail(f"{at}.{unknown[0]}", "one of psk, subnets, site_subnets", unknown[0], hint="remove this key")
        if not entry.get("psk"):
            raise fail(f"{at}.psk", "a pre-shared key", entry.get("psk"), hint="add the site's pre-shared key")
        own = _networks(entry.get("site_subnets"), f"{at}.site_subnets", fail)
        if not own:
            raise fail(f"{at}.site_subnets", "the site's own networks (a non-empty list of prefixes)", own)
        for net in own:
            if net.overlaps(pool):
                raise fail(f"{at}.site_subnets", f"networks outside the pool {pool}", str(net))
            for other in sites.values():
                if any(net.overlaps(o) for o in other.site_subnets):
                    raise fail(f"{at}.site_subnets", f"networks no other site has (site {other.identity})", str(net))
        reach = _networks(entry.get("subnets", ["0.0.0.0/0"]), f"{at}.subnets", fail)
        sites[str(sid)] = Site(str(sid), str(entry["psk"]), tuple(reach), tuple(own))
    return sites


def _networks(value, key: str, fail) -> list[IPv4Network]:
    if not isinstance(value, list):
        raise fail(key, "a list of prefixes", value)
    try:
        return [IPv4Network(str(v)) for v in value]
    except ValueError as exc:
        raise fail(key, f"prefixes ({exc})", value) from None


class SiteTable:
    """Which tunnel carries a destination inside a site's subnets (the site's live IKE SA)."""

    def __init__(self, sites: dict[str, Site]):
        self.sites = sites
        self._routes = sorted(((int(n.network_address), int(n.netmask), n.prefixlen, s.identity)
                               for s in sites.values() for n in s.site_subnets), key=lambda r: -r[2])
        self._tunnels: dict[str, object] = {}

    def bind(self, identity: str, tunnel) -> bool:
        """The site `identity` is up on `tunnel` (a newer SA replaces an older one); False: no such site."""
        if identity not in self.sites:
            return False
        self._tunnels[identity] = tunnel
        return True

    def unbind(self, tunnel) -> None:
        for identity in [i for i, t in self._tunnels.items() if t is tunnel]:
            del self._tunnels[identity]

    def lookup(self, dst: int):
        """The tunnel toward destination `dst` (an IPv4 address as int), or None."""
        for net, mask, _len, identity in self._routes:
            if dst & mask == net:
                return self._tunnels.get(identity)
        return None

    def status(self) -> dict:
        return {sid: {"site_subnets": [str(n) for n in s.site_subnets], "subnets": [str(n) for n in s.subnets],
                      "up": sid in self._tunnels} for sid, s in self.sites.items()}
