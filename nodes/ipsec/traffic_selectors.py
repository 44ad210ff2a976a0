"""Traffic selectors (RFC 7296 2.9): building them from subnets, and the responder's narrowing."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, summarize_address_range

from nodes.wire.ikev2 import TrafficSelector


def from_subnet(text: str | IPv4Network, protocol: int = 0) -> TrafficSelector:
    """'10.1.0.0/16' (or a bare address, or '0.0.0.0/0') -> an address-range selector, all ports."""
    net = IPv4Network(text, strict=False)
    return TrafficSelector(net.network_address, net.broadcast_address, protocol)


def host(address: str | IPv4Address) -> TrafficSelector:
    addr = IPv4Address(address)
    return TrafficSelector(addr, addr)


ANY = from_subnet("0.0.0.0/0")


def intersect(a: TrafficSelector, b: TrafficSelector) -> TrafficSelector | None:
    if a.protocol and b.protocol and a.protocol != b.protocol:
        return None
    start, end = max(a.start, b.start), min(a.end, b.end)
    sport, eport = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if start > end or sport > eport:
        return None
    return TrafficSelector(start, end, a.protocol or b.protocol, sport, eport)


def narrow(requested: list[TrafficSelector], allowed: list[TrafficSelector]) -> list[TrafficSelector]:
    """Every non-empty intersection of a requested with an allowed selector, without duplicates.
    An empty result means TS_UNACCEPTABLE."""
    out: list[TrafficSelector] = []
    for r in requested:
        for a in allowed:
            ts = intersect(r, a)
            if ts is not None and ts not in out:
                out.append(ts)
    return out


def is_subset(inner: list[TrafficSelector], outer: list[TrafficSelector]) -> bool:
    """Each selector of `inner` lies inside one of `outer` (an initiator checks the narrowed reply)."""
    return all(any(intersect(i, o) == i for o in outer) for i in inner)


def networks(ts: TrafficSelector) -> list[IPv4Network]:
    return list(summarize_address_range(ts.start, ts.end))


def describe(selectors: list[TrafficSelector]) -> list[str]:
    out = []
    for ts in selectors:
        nets = ",".join(str(n) for n in networks(ts))
        ports = "" if (ts.start_port, ts.end_port) == (0, 65535) else f"[{ts.start_port}-{ts.end_port}]"
        proto = f"/{ts.protocol}" if ts.protocol else ""
        out.append(nets + proto + ports)
    return out
