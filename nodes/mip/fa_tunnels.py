"""The foreign agent's data plane: the home agents' tunnels delivered to the visitors, and the
visitors' packets reverse-tunnelled (RFC 5944 4.2.2, RFC 3024 5, RFC 3519 3.2). Sans-I/O, part of
nodes/mip/fa.py.

A tunnel from a home agent (IP-in-IP RFC 2003, minimal RFC 2004, GRE RFC 2784, as the agent
supports; or RFC 3519 UDP tunnel data when it is behind a NAT) is decapsulated and its inner packet
delivered on the visitor link, if it is for a visitor and comes from that visitor's home agent
(RFC 2003 3.1: an inner TTL of 0 is discarded). A visitor registered with T has its packets
reverse-tunnelled to its home agent from its care-of address (RFC 3024 5.2), in UDP when the home
agent tunnels to us in UDP (RFC 3519 3.2); with the Encapsulating Delivery Style only what it
tunnels to us is (RFC 3024 5.2.1), its plain packets are routed (5.4).
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import DeliverIp, SendIp, SendUdp
from nodes.mip.common import Counters, ipv4_dst
from nodes.mip.fa_visitors import Visitor
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import ip_in_ip
from nodes.wire.mip import ENCAP_IPIP, MIP_PORT, TunnelData
from nodes.wire.tunnels import decapsulate


class VisitorTunnels:
    """Tunnelled packets in, and the visitors' packets out. `visitors` is the visitor list's
    mapping (home address -> Visitor), `config` the foreign agent's (iface, encapsulations)."""

    def __init__(self, config, counters: Counters, visitors: dict[IPv4Address, Visitor]):
        self.config, self.counters, self.visitors = config, counters, visitors

    def _drop(self, reason: str) -> list:
        self.counters.drop(reason)
        return []

    def on_tunnel_data(self, payload: bytes, src: IPv4Address) -> list:
        """RFC 3519 3.2 tunnel data (UDP 434) from a home agent: its IP-in-IP payload delivered."""
        try:
            packet = TunnelData.decode(payload).payload
        except DecodeError as e:
            return self._drop(f"tunnel:{e.reason}")
        return self.deliver(packet, src)

    def on_tunnelled(self, packet: bytes) -> list:
        """A tunnelled packet addressed to the agent: from a home agent, or from a visitor that
        uses the Encapsulating Delivery Style."""
        try:
            tunnel = decapsulate(packet)
        except DecodeError as e:
            return self._drop(f"tunnel:{e.reason}")
        if tunnel.kind not in self.config.encapsulations:
            return self._drop(f"{tunnel.kind}-unsupported")
        self.counters[f"decapsulated-{tunnel.kind}"] += 1
        sender = self.visitors.get(tunnel.outer.src)
        if sender is not None:  # a visitor's own tunnel to us (RFC 3024 5.2, Encapsulating Delivery)
            return self._from_encapsulating_visitor(sender, tunnel.inner)
        return self.deliver(tunnel.inner, tunnel.outer.src)

    def _from_encapsulating_visitor(self, visitor: Visitor, inner: bytes) -> list:
        """RFC 3024 5.2.1: a visitor registered with the Encapsulating Delivery Style tunnels its
        packets to us; we decapsulate them and reverse-tunnel them to its home agent."""
        if not (visitor.reverse and visitor.encapsulating):
            return self._drop("visitor-tunnel-without-encapsulating-delivery")
        if len(inner) < 20 or IPv4Address(inner[12:16]) != visitor.home_address:
            return self._drop("visitor-tunnel-not-from-home-address")
        if inner[8] == 0:
            return self._drop("inner-ttl-zero")
        return self._reverse_tunnel(visitor, inner)

    def deliver(self, inner: bytes, outer_src: IPv4Address) -> list:
        """A decapsulated packet onto the visitor link, to the visitor it is for."""
        if len(inner) >= 20 and inner[8] == 0:  # RFC 2003 3.1: an inner TTL of 0 is discarded
            return self._drop("inner-ttl-zero")
        visitor = self.visitors.get(ipv4_dst(inner))
        if visitor is None:
            return self._drop("not-a-visitor")
        if outer_src != visitor.home_agent:
            return self._drop("tunnel-not-from-home-agent")
        self.counters["delivered"] += 1
        return [DeliverIp(inner, self.config.iface, visitor.lladdr)]

    def on_visitor_packet(self, packet: bytes) -> list:
        """A packet a visitor sent on the link: reverse-tunnelled when it registered with T."""
        src = IPv4Address(packet[12:16]) if len(packet) >= 20 else None
        visitor = self.visitors.get(src)
        if visitor is None:
            return self._drop("not-a-visitor")
        if not visitor.reverse:
            return [DeliverIp(packet)]
        if visitor.encapsulating:
            # RFC 3024 5.2.1: an un-encapsulated packet from a node that asked for the Encapsulating
            # Delivery Style MUST NOT be reverse-tunnelled but forwarded by standard IP routing
            # (5.4: processed as regular traffic); only what it tunnels to us is reverse-tunnelled
            self.counters["visitor-direct-routed"] += 1
            return [DeliverIp(packet)]
        return self._reverse_tunnel(visitor, packet)

    def _reverse_tunnel(self, visitor: Visitor, packet: bytes) -> list:
        self.counters["reverse-tunnelled"] += 1
        if visitor.udp:
            data = TunnelData(ENCAP_IPIP, packet).encode()
            return [SendUdp(visitor.home_agent, MIP_PORT, data, src=visitor.care_of_address)]
        return [SendIp(ip_in_ip(visitor.care_of_address, visitor.home_agent, packet))]
