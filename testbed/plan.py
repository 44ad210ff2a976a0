"""The world's address plan (fixtures/world.yaml), loaded and checked for consistency."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from testbed import FIXTURES
from testbed.naming import bridge_name, bridge_port, check_node_name, host_ifname, station_ifname, station_port
from testbed.schema import ConfigError, Reader, load_yaml

PLAN_FILE = FIXTURES / "world.yaml"
ZONES = ("internet", "foreign", "dmz", "intranet")


@dataclass(frozen=True)
class Segment:
    name: str
    prefix: IPv4Network
    zone: str
    about: str

    @property
    def bridge(self) -> str:
        return bridge_name(self.name)


@dataclass(frozen=True)
class Interface:
    node: str
    name: str
    address: IPv4Address
    prefix: IPv4Network
    segment: str | None  # None for a point-to-point link
    link: str | None  # the link's name for a point-to-point link

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix.prefixlen}"


@dataclass(frozen=True)
class Link:
    name: str
    prefix: IPv4Network
    ends: tuple[tuple[str, IPv4Address], tuple[str, IPv4Address]]


@dataclass(frozen=True)
class Attachment:
    segment: str
    address: IPv4Address
    router: IPv4Address


@dataclass
class NodeSpec:
    name: str
    about: str
    router: bool = False
    station: bool = False
    interfaces: list[Interface] = field(default_factory=list)
    routes: dict[str, IPv4Address] = field(default_factory=dict)  # destination prefix or 'default' -> gateway
    firewall: str | None = None
    nat: dict[str, str] | None = None  # {'outside': link or segment, 'inside': segment}
    dhcp: dict[str, tuple[IPv4Address, IPv4Address]] = field(default_factory=dict)  # segment -> lease range
    loopback: list[IPv4Address] = field(default_factory=list)  # /32 addresses on lo (a variant's public address)

    def interface_on(self, segment_or_link: str) -> Interface:
        for intf in self.interfaces:
            if segment_or_link in (intf.segment, intf.link):
                return intf
        raise KeyError(f"node {self.name} has no interface on {segment_or_link}")


@dataclass(frozen=True)
class Variant:
    """A named change to the plan: extra routes per node, firewalls replaced (None: none), DHCP
    servers (node -> segment -> lease range; the node's address there is the router handed out),
    addresses on a node's loopback (node -> [address]: a public address routed to a host inside)."""
    name: str
    about: str
    routes: dict[str, dict[str, IPv4Address]]
    firewalls: dict[str, str | None]
    dhcp: dict[str, dict[str, tuple[IPv4Address, IPv4Address]]] = field(default_factory=dict)
    loopback: dict[str, list[IPv4Address]] = field(default_factory=dict)


@dataclass
class Plan:
    file: Path
    segments: dict[str, Segment]
    links: dict[str, Link]
    nodes: dict[str, NodeSpec]
    attachments: dict[str, Attachment]
    firewalls: dict[str, str]
    variants: dict[str, Variant] = field(default_factory=dict)

    def with_variants(self, names) -> "Plan":
        """A copy of the plan with the named variants applied, in order."""
        nodes = {n: NodeSpec(s.name, s.about, s.router, s.station, list(s.interfaces), dict(s.routes), s.firewall, s.nat,
                             dict(s.dhcp), list(s.loopback))
                 for n, s in self.nodes.items()}
        for name in names:
            v = self.variants[name]
            for node, routes in v.routes.items():
                nodes[node].routes.update(routes)
            for node, fw in v.firewalls.items():
                nodes[node].firewall = fw
            for node, ranges in v.dhcp.items():
                nodes[node].dhcp.update(ranges)
            for node, addresses in v.loopback.items():
                nodes[node].loopback += addresses
        plan = Plan(self.file, self.segments, self.links, nodes, self.attachments, self.firewalls, self.variants)
        check_plan(plan)
        return plan

    def address(self, node: str, where: str | None = None) -> IPv4Address:
        """A node's address on a segment or link (its first interface's when `where` is None)."""
        spec = self.nodes[node]
        if where is None:
            if not spec.interfaces:
                raise KeyError(f"node {node} has no fixed address (a station: see attachments)")
            return spec.interfaces[0].address
        return spec.interface_on(where).address

    def zone_of(self, address: IPv4Address) -> str | None:
        for seg in self.segments.values():
            if address in seg.prefix:
                return seg.zone
        return None

    def stations(self) -> list[str]:
        return [n for n, s in self.nodes.items() if s.station]


def load_plan(path: Path = PLAN_FILE) -> Plan:
    top = Reader(path, load_yaml(path))
    top.only_keys(["segments", "links", "nodes", "attachments", "firewalls", "variants"])
    segments = {}
    for name, r in top.child("segments").items():
        r.only_keys(["prefix", "zone", "about"])
        segments[name] = Segment(name, r.child("prefix").network(), r.child("zone").str(ZONES), r.child("about", "").str())
        _check_name(r, lambda: bridge_name(name))
    links = {}
    for name, r in top.child("links").items():
        r.only_keys(["prefix", "ends"])
        ends = tuple((node, a.address()) for node, a in r.child("ends").items())
        if len(ends) != 2:
            raise r.child("ends").fail("exactly two ends", len(ends))
        links[name] = Link(name, r.child("prefix").network(), ends)
    firewalls = {name: fr.str() for name, fr in top.child("firewalls", {}).items()}
    nodes = {}
    for name, r in top.child("nodes").items():
        nodes[name] = _load_node(name, r, segments, links, firewalls)
    for link in links.values():
        for node, addr in link.ends:
            if node not in nodes:
                raise ConfigError(path, f"links.{link.name}.ends.{node}", f"a node of {sorted(nodes)}", node)
            other = link.ends[1][0] if link.ends[0][0] == node else link.ends[0][0]
            nodes[node].interfaces.append(
                Interface(node, host_ifname(node, other), addr, link.prefix, None, link.name)
            )
    attachments = {}
    for seg, r in top.child("attachments").items():
        if seg not in segments:
            raise ConfigError(path, f"attachments.{seg}", f"a segment of {sorted(segments)}", seg)
        r.only_keys(["address", "router"])
        attachments[seg] = Attachment(seg, r.child("address").address(), r.child("router").address())
    variants = {name: _load_variant(name, r, nodes, firewalls) for name, r in top.child("variants", {}).items()}
    plan = Plan(path, segments, links, nodes, attachments, firewalls, variants)
    check_plan(plan)
    return plan


def _load_variant(name: str, r: Reader, nodes, firewalls) -> Variant:
    r.only_keys(["about", "routes", "firewalls", "dhcp", "loopback"])
    routes = {}
    for node, rr in r.child("routes", {}).items():
        if node not in nodes:
            raise rr.fail(f"a node of {sorted(nodes)}", node)
        routes[node] = {dest: (Reader(g.file, dest, g.key).network(), g.address())[1] for dest, g in rr.items()}
    fws = {}
    for node, fr in r.child("firewalls", {}).items():
        if node not in nodes:
            raise fr.fail(f"a node of {sorted(nodes)}", node)
        fws[node] = None if fr.data is None else fr.str(firewalls)
    dhcp = {}
    for node, dr in r.child("dhcp", {}).items():
        if node not in nodes:
            raise dr.fail(f"a node of {sorted(nodes)}", node)
        dhcp[node] = {}
        for seg, rng in dr.items():
            on = [i.segment for i in nodes[node].interfaces if i.segment]
            if seg not in on:
                raise rng.fail(f"a segment node {node} is on {on}", seg)
            pair = rng.list()
            if len(pair) != 2:
                raise rng.fail("[first, last] addresses of the lease range", rng.data)
            dhcp[node][seg] = (pair[0].address(), pair[1].address())
    loopback = {}
    for node, lr in r.child("loopback", {}).items():
        if node not in nodes:
            raise lr.fail(f"a node of {sorted(nodes)}", node)
        loopback[node] = [a.address() for a in lr.list()]
    return Variant(name, r.child("about", "").str(), routes, fws, dhcp, loopback)


def _check_name(r: Reader, make) -> None:
    try:
        make()
    except ValueError as exc:
        raise r.fail(f"a name that makes valid interface names ({exc})") from None


def _load_node(name: str, r: Reader, segments, links, firewalls) -> NodeSpec:
    r.only_keys(["about", "router", "station", "addresses", "routes", "firewall", "nat"])
    _check_name(r, lambda: check_node_name(name))
    spec = NodeSpec(name, r.child("about", "").str(), r.child("router", False).bool(), r.child("station", False).bool())
    for seg, a in r.child("addresses", {}).items():
        if seg not in segments:
            raise a.fail(f"a segment of {sorted(segments)}", seg)
        _check_name(a, lambda: (host_ifname(name, seg), bridge_port(seg, name)))
        spec.interfaces.append(Interface(name, host_ifname(name, seg), a.address(), segments[seg].prefix, seg, None))
    for dest, g in r.child("routes", {}).items():
        if dest != "default":
            Reader(g.file, dest, g.key).network()
        spec.routes[dest] = g.address()
    if "firewall" in r.mapping():
        spec.firewall = r.child("firewall").str(firewalls)
    if "nat" in r.mapping():
        n = r.child("nat")
        n.only_keys(["outside", "inside"])
        spec.nat = {"outside": n.child("outside").str(list(links) + list(segments)), "inside": n.child("inside").str(segments)}
    if spec.station:
        _check_name(r, lambda: (station_ifname(name), station_port(name)))
        if spec.interfaces:
            raise r.child("addresses").fail("no fixed interfaces on a station (it attaches through 'attachments')")
    return spec


def check_plan(plan: Plan) -> None:
    """Addresses inside their prefixes and unique; gateways on a connected network; names valid."""
    seen: dict[IPv4Address, str] = {}
    for node in plan.nodes.values():
        for intf in node.interfaces:
            where = f"nodes.{node.name}" if intf.segment else f"links.{intf.link}"
            if intf.address not in intf.prefix or intf.address in (intf.prefix.network_address, intf.prefix.broadcast_address):
                raise ConfigError(plan.file, where, f"a host address inside {intf.prefix}", str(intf.address))
            if intf.address in seen:
                raise ConfigError(plan.file, where, f"an address not used elsewhere (also on {seen[intf.address]})", str(intf.address))
            seen[intf.address] = node.name
        for address in node.loopback:
            if address in seen:
                raise ConfigError(plan.file, f"variants: loopback of {node.name}", "an address not used elsewhere "
                                  f"(also on {seen[address]})", str(address))
            seen[address] = node.name
        for dest, gw in node.routes.items():
            if not any(gw in i.prefix for i in node.interfaces) and not node.station:
                raise ConfigError(plan.file, f"nodes.{node.name}.routes.{dest}", "a gateway on a network the node is on", str(gw))
        for seg, (lo, hi) in node.dhcp.items():
            prefix = plan.segments[seg].prefix
            if lo not in prefix or hi not in prefix or lo > hi:
                raise ConfigError(plan.file, f"dhcp.{node.name}.{seg}", f"a range [first, last] inside {prefix}",
                                  f"{lo}, {hi}")
    for att in plan.attachments.values():
        prefix = plan.segments[att.segment].prefix
        if att.address not in prefix or att.router not in prefix:
            raise ConfigError(plan.file, f"attachments.{att.segment}", f"addresses inside {prefix}", f"{att.address}, {att.router}")
        if att.address in seen:
            raise ConfigError(plan.file, f"attachments.{att.segment}.address", "an address no node has", str(att.address))


@lru_cache(maxsize=1)
def default_plan() -> Plan:
    return load_plan(PLAN_FILE)
