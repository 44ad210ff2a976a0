"""Which network the mobile node is on, when agent advertisements do not say (sans-I/O; part of the
Mobile Node core, nodes/mip/mn.py, which owns one `Movement` and asks it at each input).

On link up the node probes the routers of the networks it knows with ARP: the home router from the
home address, and each statically configured co-located network's router from the node's address
there. An answer names the network. A network configured for DHCP is tried when nothing has named
the network `dhcp_after` seconds after link up (no advertisement, no home router answer): the core
asks its runtime to run a DHCP client (`StartDhcp`), and the lease becomes the co-located care-of
address (retried every `dhcp_retry` seconds while the network stays unknown). Where the node is
becomes a `ConfigureLink` action each time it changes: home, a foreign agent, or a co-located
network. The registration log line of a co-located registration on a leased address carries the
DHCP timing (`dhcp_note`).
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from nodes.mip.actions import ArpProbe, ConfigureLink, Log, StartDhcp, StopDhcp


@dataclass(frozen=True)
class CoLocatedNetwork:
    """A foreign network where the node takes a co-located care-of address: static (`address`
    with its prefix, and `router`) or from DHCP (`dhcp`)."""

    address: IPv4Interface | None = None
    router: IPv4Address | None = None
    dhcp: bool = False

    def __post_init__(self):
        if not self.dhcp and (self.address is None or self.router is None):
            raise ValueError("a static co-located network needs an address and a router")


class Movement:
    def __init__(self, config, counters):
        self.config, self.counters = config, counters
        self.network: str | None = None  # what the probes (or a lease) named
        self.attachment: tuple | None = None  # ("home", None) / ("fa", agent) / ("colocated", name)
        self.lease: dict | None = None  # the DHCP lease in use
        self.dhcp_state = "idle"  # idle, waiting, running, bound, failed
        self.dhcp_networks = [n for n, c in config.networks.items() if c.dhcp]
        self.probe_at: float | None = None
        self.dhcp_at: float | None = None
        self._probe_delay = 0.0
        self._link_up_at: float | None = None
        self._attempts = 0
        self._dhcp_live: int | None = None  # the DHCP attempt running for the current link

    # --- link changes ---------------------------------------------------------------------------
    def link_up(self, now: float) -> list:
        actions = self._stop_dhcp()
        self._link_up_at, self.network, self._probe_delay = now, None, 0.0
        self.probe_at = now if self._probes() else None
        if self.dhcp_networks:
            self.dhcp_state, self.dhcp_at = "waiting", now + self.config.dhcp_after
        return actions

    def link_down(self, now: float) -> list:
        self.probe_at = None
        return self._stop_dhcp()

    def _stop_dhcp(self) -> list:
        self.dhcp_at = None
        if self.dhcp_state != "bound":
            self.dhcp_state = "idle"
        if self._dhcp_live is None:
            return []
        self._dhcp_live = None
        return [StopDhcp(self.config.iface)]

    # --- timers ---------------------------------------------------------------------------------
    def deadlines(self) -> list:
        return [self.probe_at, self.dhcp_at]

    def due(self, now: float, with_fa: bool, unidentified: bool) -> list:
        actions: list = []
        if self.probe_at is not None and self.probe_at <= now:
            if self.network is not None or with_fa:
                self.probe_at = None
            else:
                actions += self._send_probes(now)
        if self.dhcp_at is not None and self.dhcp_at <= now:
            self.dhcp_at = None
            actions += self._start_dhcp(now, unidentified)
        return actions

    # --- ARP probes -----------------------------------------------------------------------------
    def _probes(self) -> list[tuple[str, IPv4Address, IPv4Address]]:
        """(network, our address there, its router) for every network an ARP answer can name."""
        cfg = self.config
        found = [("home", cfg.home_address, cfg.home_router)] if cfg.home_router is not None else []
        return found + [(name, c.address.ip, c.router) for name, c in cfg.networks.items() if not c.dhcp]

    def _send_probes(self, now: float) -> list:
        cfg = self.config
        self.counters["arp-probes"] += 1
        self._probe_delay = min(max(cfg.probe_interval, self._probe_delay * 2), cfg.probe_max_interval)
        self.probe_at = now + self._probe_delay
        return [ArpProbe(ours, router, cfg.iface) for _name, ours, router in self._probes()]

    def arp_match(self, sender, target) -> str | None:
        """The network an ARP answer from `sender` to our `target` address names, if any."""
        for name, ours, router in self._probes():
            if sender == router and target == ours:
                return name
        return None

    # --- DHCP -----------------------------------------------------------------------------------
    def _start_dhcp(self, now: float, unidentified: bool) -> list:
        if not unidentified or self._dhcp_live is not None:
            if self.dhcp_state == "waiting":
                self.dhcp_state = "idle"
            return []
        self._attempts += 1
        self._dhcp_live, self.dhcp_state = self._attempts, "running"
        return [Log("dhcp-start", {"iface": self.config.iface, "networks": self.dhcp_networks,
                                   "after_link_up": self._since_link_up(now)}),
                StartDhcp(self._attempts, self.config.iface)]

    def dhcp_failed(self, attempt: int, reason: str, now: float, unidentified: bool) -> list:
        self.counters["dhcp-failed"] += 1
        actions = [Log("dhcp-failed", {"iface": self.config.iface, "reason": reason})]
        if attempt == self._dhcp_live:
            self._dhcp_live = None
            self._retry_dhcp(now, unidentified)
        return actions

    def _retry_dhcp(self, now: float, unidentified: bool) -> None:
        if unidentified:
            self.dhcp_state, self.dhcp_at = "failed", now + self.config.dhcp_retry
        else:
            self.dhcp_state = "idle"

    def dhcp_bound(self, attempt: int, lease: dict, seconds: float, now: float, unidentified: bool):
        """A lease ({address with its prefix, router, server, lease_time, reason}) for `attempt`.
        Returns (actions, the network it names or None)."""
        lease = {**lease, "address": IPv4Interface(lease["address"]),
                 **{k: IPv4Address(lease[k]) if lease.get(k) else None for k in ("router", "server")}}
        if attempt != self._dhcp_live or not unidentified:
            if attempt == self._dhcp_live:
                self._dhcp_live, self.dhcp_state = None, "idle"
            return [Log("dhcp-discarded", {"address": str(lease["address"]),
                                           "reason": "the link changed or the network is known"})], None
        self._dhcp_live = None
        if lease.get("router") is None:
            self.counters["dhcp-no-router"] += 1
            self._retry_dhcp(now, unidentified)
            return [Log("dhcp-failed", {"iface": self.config.iface,
                                        "reason": f"the lease of {lease['address']} names no router"})], None
        self.counters["dhcp-leases"] += 1
        name = self.dhcp_networks[0]
        self.lease = {"network": name, **{k: v for k, v in lease.items()},
                      "seconds": round(seconds, 6), "after_link_up": self._since_link_up(now)}
        self.dhcp_state, self.attachment = "bound", None  # a new lease may carry a new address
        return [Log("dhcp-lease", self.lease_summary())], name

    def lease_summary(self) -> dict | None:
        """The lease in use, JSON-able (addresses as strings)."""
        if self.lease is None:
            return None
        return {k: (str(v) if isinstance(v, (IPv4Address, IPv4Interface)) else v) for k, v in self.lease.items()}

    def dhcp_note(self, mode: str) -> dict | None:
        """What a co-located registration's log line says about the lease it uses."""
        if mode != "colocated" or self.lease is None or self.attachment != ("colocated", self.lease["network"]):
            return None
        lease = self.lease_summary()
        return {k: lease[k] for k in ("network", "address", "server", "seconds", "after_link_up")}

    # --- where the node is ----------------------------------------------------------------------
    def identify(self, name: str, now: float, by: str) -> tuple[list, IPv4Address]:
        """The network is `name`, as `by` told ("arp", "dhcp", or "advertisement": the home agent's):
        configure the link for it. Returns (actions, the address the node has there: the home
        address at home, else the co-located care-of address)."""
        self.probe_at = self.dhcp_at = None
        self.network = name
        self.counters[f"identified-by:{by}"] += 1
        actions = [Log("network", {"name": name, "by": by, "after": self._since_link_up(now)})]
        if name == "home":
            return actions + self.configure("home", None), self.config.home_address
        actions += self.configure("colocated", name)
        return actions, self._colocated(name)[0].ip

    def _colocated(self, name: str) -> tuple[IPv4Interface, IPv4Address]:
        c = self.config.networks[name]
        if not c.dhcp:
            return c.address, c.router
        if self.lease is None or self.lease["network"] != name:
            raise RuntimeError(f"no DHCP lease for network {name}")
        return self.lease["address"], self.lease["router"]

    def configure(self, kind: str, detail) -> list:
        """A ConfigureLink when the attachment changes (kind home, fa with the agent, colocated with
        the network's name)."""
        if (kind, detail) == self.attachment:
            return []
        cfg = self.config
        if kind == "home":
            action = ConfigureLink("home", cfg.iface, cfg.home_address, cfg.home_router, cfg.home_network)
        elif kind == "fa":
            action = ConfigureLink("fa", cfg.iface, cfg.home_address, detail)
        else:
            address, router = self._colocated(detail)
            action = ConfigureLink("colocated", cfg.iface, cfg.home_address, router, address=address)
        self.attachment = (kind, detail)
        return [action, Log("attachment", {"kind": kind, "detail": None if detail is None else str(detail)})]

    def _since_link_up(self, now: float) -> float | None:
        return round(now - self._link_up_at, 6) if self._link_up_at is not None else None

    def status(self) -> dict:
        a = self.attachment
        return {"attachment": None if a is None else {"kind": a[0], "detail": None if a[1] is None else str(a[1])},
                "network": self.network, "dhcp": {"state": self.dhcp_state, "lease": self.lease_summary()}}
