"""The foreign agent's visitor list and its pending requests (RFC 5944 3.7.1). Sans-I/O, part of
nodes/mip/fa.py.

A request relayed to a home agent is kept pending until its reply, an ICMP error about it or its
timeout (RFC 5944 3.7.2.2: the FA remembers what it needs to relay the reply; 3.7.1: a pending
entry is never a visitor). An accepted reply makes the node a visitor for the granted lifetime
(3.7.3.2: the reply's, never more than requested nor the agent's maximum), with the host route that
delivers to it on the link; a reply of lifetime 0 (deregistration) removes it. The visitor records
whether it reverse-tunnels (RFC 3024 3.3, T bit), with the Encapsulating Delivery Style (RFC 3024
3.3.1, 5.2.1), and whether its home agent tunnels to us in UDP (RFC 3519 3.2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import IPv4Address

from nodes.mip.actions import AddHostRoute, RemoveHostRoute
from nodes.mip.common import Counters, Deadlines
from nodes.wire.mip import (
    EXT_ENCAPSULATING_DELIVERY, EXT_UDP_TUNNEL_REPLY, RegistrationReply, RegistrationRequest, RequestFlags,
    find_extension, is_accepted,
)


@dataclass
class Pending:
    """A request relayed to a home agent, waiting for its reply."""

    request: RegistrationRequest
    src: IPv4Address
    sport: int
    lladdr: str | None
    deadline: float
    sent_at: float


@dataclass
class Visitor:
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    lladdr: str | None
    reverse: bool
    udp: bool  # the home agent tunnels to us in UDP (we are behind a NAT)
    lifetime: int
    expires: float
    encapsulating: bool = False  # RFC 3024 Encapsulating Delivery Style: it tunnels its packets to us

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, IPv4Address) else v) for k, v in asdict(self).items()}


def pending_key(home: IPv4Address, ident: int) -> tuple:
    """Replies are matched on home address and the low 32 bits of the identification (the HA
    rewrites the high half in a code-133 reply, RFC 5944 5.7)."""
    return ("pending", home, ident & 0xFFFFFFFF)


class VisitorList:
    """The visitors by home address and the pending requests by `pending_key`, with their timers in
    the agent's `deadlines` (keys ("pending", home, ident) and ("visitor", home)). `config` is the
    foreign agent's (iface, max_lifetime, pending_timeout, max_pending)."""

    def __init__(self, config, counters: Counters, deadlines: Deadlines):
        self.config, self.counters, self._deadlines = config, counters, deadlines
        self.visitors: dict[IPv4Address, Visitor] = {}
        self.pending: dict[tuple, Pending] = {}

    # --- pending requests -----------------------------------------------------------------------

    def full(self) -> bool:
        """Whether no more requests may be pending (the request is then denied with 65)."""
        return len(self.pending) >= self.config.max_pending

    def hold(self, req: RegistrationRequest, src, sport: int, lladdr, now: float) -> None:
        """Keep a request relayed now until its reply or its timeout."""
        key = pending_key(req.home_address, req.identification)
        self.pending[key] = Pending(req, src, sport, lladdr, now + self.config.pending_timeout, now)
        self._deadlines.set(key, now + self.config.pending_timeout)

    def pending_for(self, home: IPv4Address, ident: int) -> Pending | None:
        return self.pending.get(pending_key(home, ident))

    def take(self, key: tuple) -> Pending:
        """The pending request under `key`, no longer pending (its timer cancelled)."""
        pending = self.pending.pop(key)
        self._deadlines.cancel(key)
        return pending

    def forget(self, home: IPv4Address, ident: int) -> None:
        """The pending request of `home` and `ident`, if any, dropped with its timer."""
        key = pending_key(home, ident)
        self.pending.pop(key, None)
        self._deadlines.cancel(key)

    # --- visitors -------------------------------------------------------------------------------

    def admit(self, req: RegistrationRequest, reply: RegistrationReply, pending: Pending, now: float) -> list:
        """The visitor list after a reply the agent relays (RFC 5944 3.7.3.2): an accepted
        registration adds or renews the visitor with its host route; an accepted deregistration
        removes it; a denial changes nothing."""
        home = req.home_address
        if not is_accepted(reply.code):
            return []
        # the reply's lifetime, never more than the request's (3.4) nor our maximum (3.7.3.2)
        lifetime = min(reply.lifetime, req.lifetime, self.config.max_lifetime)
        if lifetime == 0:
            return self.remove(home)
        udp_reply = find_extension(reply.extensions, EXT_UDP_TUNNEL_REPLY)
        reverse = req.has(RequestFlags.T)
        encapsulating = reverse and find_extension(req.extensions, EXT_ENCAPSULATING_DELIVERY) is not None
        visitor = Visitor(home, req.home_agent, req.care_of_address, pending.lladdr, reverse,
                          udp_reply is not None and udp_reply.code < 64, lifetime, now + lifetime, encapsulating)
        self.visitors[home] = visitor
        self._deadlines.set(("visitor", home), visitor.expires)
        # with the Encapsulating Delivery Style the visitor's own (unencapsulated) packets are not
        # steered to us for reverse tunnelling: the kernel routes them (RFC 3024 5.2.1, 5.4)
        return [AddHostRoute(home, self.config.iface, pending.lladdr, visitor.reverse and not visitor.encapsulating)]

    def remove(self, home: IPv4Address) -> list:
        """The visitor of `home` gone (deregistered, expired or reset), with its host route."""
        if self.visitors.pop(home, None) is None:
            return []
        self._deadlines.cancel(("visitor", home))
        return [RemoveHostRoute(home, self.config.iface)]
