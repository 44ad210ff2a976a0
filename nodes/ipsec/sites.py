"""Site-to-site peers of the gateway: a remote access router whose traffic selectors are its site's
subnets, not one pool address (the problem statement's "trusted FA", section 4.2, Figure 10: the FA's
network joined to the intranet by a VPN between its access router and G).

A site authenticates with a pre-shared key like a user; the IKE core admits its TSi inside the
site's `site_subnets` (UserPolicy.remote_ts) and asks no configuration payload of it. The gateway
routes the site subnets into its TUN; this table says which tunnel carries a destination (longest
prefix first) while the site's IKE SA lives. Pure data: no I/O, no clock.

Config (the gateway's `sites` key): {id: {psk, subnets (what the site may reach; default
0.0.0.0/0), site_subnets (the site's own networks)}}; `check_sites` refuses what cannot work, with
the key to change.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network


@dataclass(frozen=True)
class Site:
    identity: str
    psk: str
    subnets: tuple[IPv4Network, ...]  # the intranet side it may reach
    site_subnets: tuple[IPv4Network, ...]  # its own networks: its TSi, routed into G's tunnel


class SiteConfigError(ValueError):
    """A bad `sites` entry: `key` (e.g. sites.ar1.site_subnets) and what was expected there."""

    def __init__(self, key: str, expected: str, got=None):
        super().__init__(f"{key}: expected {expected}" + ("" if got is None else f", got {got!r}"))
        self.key, self.expected, self.got = key, expected, got


def parse_sites(raw, users: set[str], pool: IPv4Network | None, key: str = "sites") -> dict[str, Site]:
    """The `sites` mapping -> id -> Site. `users`: the user ids (a site may not reuse one); `pool`:
    the address pool of internal_presence pool (None: another presence, which sites cannot use)."""
    if raw is None:
        return {}
    if pool is None:
        raise SiteConfigError("internal_presence", "pool when sites are configured (a site's subnets are routed "
                              "into the tunnel, not translated)")
    if not isinstance(raw, dict) or not raw:
        raise SiteConfigError(key, "a mapping of site id -> {psk, subnets, site_subnets}", raw)
    sites: dict[str, Site] = {}
    for sid, entry in raw.items():
        at = f"{key}.{sid}"
        if str(sid) in users:
            raise SiteConfigError(at, "an id no user has (sites and users share the IKE identities)", sid)
        if not isinstance(entry, dict):
            raise SiteConfigError(at, "a mapping with psk, subnets and site_subnets", entry)
        unknown = set(entry) - {"psk", "subnets", "site_subnets"}
        if unknown:
            raise SiteConfigError(f"{at}.{sorted(unknown)[0]}", "one of psk, subnets, site_subnets")
        if not entry.get("psk"):
            raise SiteConfigError(f"{at}.psk", "a pre-shared key")
        own = _networks(entry.get("site_subnets"), f"{at}.site_subnets")
        if not own:
            raise SiteConfigError(f"{at}.site_subnets", "the site's own networks (a non-empty list of prefixes)")
        for net in own:
            if net.overlaps(pool):
                raise SiteConfigError(f"{at}.site_subnets", f"networks outside the pool {pool}", str(net))
            for other in sites.values():
                if any(net.overlaps(o) for o in other.site_subnets):
                    raise SiteConfigError(f"{at}.site_subnets", f"networks no other site has (site {other.identity})",
                                          str(net))
        reach = _networks(entry.get("subnets", ["0.0.0.0/0"]), f"{at}.subnets")
        sites[str(sid)] = Site(str(sid), str(entry["psk"]), tuple(reach), tuple(own))
    return sites


def _networks(value, key: str) -> list[IPv4Network]:
    if not isinstance(value, list):
        raise SiteConfigError(key, "a list of prefixes", value)
    try:
        return [IPv4Network(str(v)) for v in value]
    except ValueError as exc:
        raise SiteConfigError(key, f"prefixes ({exc})", value) from None


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
