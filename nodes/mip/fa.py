"""Foreign Agent core (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 when behind a NAT).

Follows nodes/core.py. Inputs: `start` (after boot: first advertisement, sequence 0),
`receive_icmp` (solicitations), `receive_datagram` (UDP 434: requests from visitors with their
link-layer address and TTL in the `Addr`, replies and RFC 3519 tunnel data from home agents),
`relay_error` (an ICMP error about a request we relayed: the pending visitor gets code 80, 81, 82
or 88 at once), `receive_tunnelled` (IP-in-IP from a home agent), `receive_from_visitor` (a packet
a visitor sent on the foreign link), `handle_timer`. The runtime feeds packets from the visitor
link whose source is a visitor's home address to `receive_from_visitor`, and IP-in-IP addressed to
the FA to `receive_tunnelled`. Outputs: `drain_actions()` and `status(now)`.

The core holds the state and dispatches; its parts, by concern: nodes/mip/fa_visitors.py (the
visitor list and the pending requests, RFC 5944 3.7.1), nodes/mip/fa_requests.py (requests checked
and relayed, 3.7.2), nodes/mip/fa_replies.py (replies relayed, 3.7.3, and the agent's own denials,
3.7.2.3), nodes/mip/fa_relay_errors.py (ICMP errors about relayed requests: codes 80-88),
nodes/mip/fa_tunnels.py (delivery from the home agents' tunnels and reverse tunnelling, RFC 3024 5,
RFC 3519 3.2) and nodes/mip/fa_advertisement.py (what it advertises, 2.1.1; sent by
nodes/mip/advertiser.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from nodes.mip.advertiser import ALL_SYSTEMS, KEYS as ADVERTISER_KEYS, Advertiser, advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.common import ENCAPSULATIONS, Counters, Deadlines, Snapshot, addr, supported_encapsulations
from nodes.mip.fa_advertisement import foreign_agent_advertisement
from nodes.mip.fa_relay_errors import on_relay_error, relay_error_code
from nodes.mip.fa_replies import deny_pending, fa_ha_applies, relay_reply
from nodes.mip.fa_requests import RequestRelay
from nodes.mip.fa_tunnels import VisitorTunnels
from nodes.mip.fa_visitors import Pending, Visitor, VisitorList
from nodes.wire.mip import TYPE_REPLY, TYPE_REQUEST, TYPE_TUNNEL_DATA, AgentAdvertisement, ReplyCode, message_type

# what other modules import from here
__all__ = ["ALL_SYSTEMS", "ForeignAgent", "ForeignAgentConfig", "ForeignAgentStatus", "Pending", "Visitor",
           "fa_ha_applies", "relay_error_code"]


@dataclass
class ForeignAgentConfig:
    address: IPv4Address  # on the visitor link; source of advertisements and relayed requests
    iface: str | None = None  # the visitor link
    care_of_addresses: list[IPv4Address] = field(default_factory=list)  # default: [address]
    prefix_length: int = 24
    adv_interval: float = 1.0
    adv_lifetime: int = 3  # ICMP lifetime of an advertisement, seconds
    adv_destination: IPv4Address = ALL_SYSTEMS  # of every advertisement, solicited or not (5944 2.1)
    solicited_min_interval: float = 0.05  # solicited answers reach the whole link: at most one per this
    max_lifetime: int = 1800  # advertised registration lifetime; longer requests get 69
    registration_required: bool = True
    busy: bool = False
    reverse_tunnelling: bool = True
    reverse_tunnel_required: bool = False
    behind_nat: bool = False  # sets U and asks home agents for RFC 3519 UDP tunnelling
    # tunnels from home agents this agent decapsulates, advertised with M and G; a request for
    # another gets 72 (IP-in-IP is always among them)
    encapsulations: tuple[str, ...] = ENCAPSULATIONS
    max_pending: int = 64
    pending_timeout: float = 7.0
    ha_associations: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)  # FA-HA
    mn_associations: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)  # MN-FA
    # this node's other addresses (any interface): a request naming one as its home agent gets 194
    local_addresses: list[IPv4Address] = field(default_factory=list)
    too_distant_interval: float = 1.0  # code-76 denials: at most one per this (RFC 3024 4.2.1)

    def __post_init__(self):
        self.address = addr(self.address)
        self.adv_destination = advertisement_destination(self.adv_destination)
        self.encapsulations = supported_encapsulations(self.encapsulations)
        self.care_of_addresses = [addr(a) for a in self.care_of_addresses] or [self.address]
        self.ha_associations = {addr(k): v for k, v in self.ha_associations.items()}
        self.mn_associations = {addr(k): v for k, v in self.mn_associations.items()}
        self.local_addresses = [addr(a) for a in self.local_addresses]

    def own(self, address: IPv4Address) -> bool:
        """Whether `address` is one of this node's (RFC 5944 3.7.2: never relay a request to it)."""
        return address == self.address or address in self.care_of_addresses or address in self.local_addresses


@dataclass(frozen=True)
class ForeignAgentStatus(Snapshot):
    role = "fa"
    address: str
    sequence: int
    visitors: tuple
    pending: int
    counters: dict
    drops: dict


class ForeignAgent:
    """The Foreign Agent core: its state (the visitor list, the timers, the counters) and the
    contract's inputs, each handed to the part that owns the concern."""

    def __init__(self, config: ForeignAgentConfig, random: RandomSource = system_random):
        self.config = config
        self.random = random  # the contract's random source; the foreign agent draws nothing yet
        self._out = ActionQueue()
        self.counters = Counters()
        self._deadlines = Deadlines()  # pending requests, visitors and the advertiser's timers
        self.visitor_list = VisitorList(config, self.counters, self._deadlines)
        self.visitors: dict[IPv4Address, Visitor] = self.visitor_list.visitors
        self.pending: dict[tuple, Pending] = self.visitor_list.pending
        self.requests = RequestRelay(config, self.counters, self.visitor_list)
        self.tunnels = VisitorTunnels(config, self.counters, self.visitors)
        self.advertiser = Advertiser(config, self.counters, self._deadlines, self.advertisement, config.iface)

    # --- agent advertisement (nodes/mip/advertiser.py, nodes/mip/fa_advertisement.py) ----------

    def start(self, now: float) -> None:
        """Boot: advertise at once, then every adv_interval."""
        self._out.extend(self.advertiser.start(now))

    def receive_icmp(self, data: bytes, addr: Addr, now: float) -> None:
        """An ICMP message on the visitor link; agent solicitations are answered."""
        self._out.extend(self.advertiser.solicited(data, now))

    @property
    def sequence(self) -> int:
        return self.advertiser.sequence

    def advertisement(self, sequence: int | None = None) -> AgentAdvertisement:
        """This agent's advertisement (with the next sequence number unless one is given)."""
        return foreign_agent_advertisement(self.config, self.sequence if sequence is None else sequence)

    # --- registration relay (nodes/mip/fa_requests.py, fa_replies.py, fa_relay_errors.py) -------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """UDP 434: requests from visitors (with their link-layer source and IP TTL when known),
        replies and tunnel data from home agents."""
        self._out.extend(self._on_udp(data, addr.src, addr.sport, now, addr.lladdr, addr.ttl))

    def _on_udp(self, payload: bytes, src, sport: int, now: float, lladdr, ttl) -> list:
        kind = message_type(payload)
        if kind == TYPE_REQUEST:
            return self.requests.on_request(payload, addr(src), sport, now, lladdr, ttl)
        if kind == TYPE_REPLY:
            return relay_reply(self.config, self.counters, self.visitor_list, payload, addr(src), now)
        if kind == TYPE_TUNNEL_DATA:
            return self.tunnels.on_tunnel_data(payload, addr(src))
        self.counters.drop(f"unexpected-type-{kind}")
        return []

    def relay_error(self, ha_address, ha_port: int, icmp_type: int, icmp_code: int, now: float,
                    *, quoted: bytes = b"", reporter=None) -> None:
        """An ICMP error about a datagram we sent to `ha_address`:`ha_port`, with the quoted UDP
        payload as far as the error carried it (nodes/mip/fa_relay_errors.py)."""
        self._out.extend(on_relay_error(self.config, self.counters, self.visitor_list, ha_address, ha_port,
                                        icmp_type, icmp_code, now, quoted, reporter))

    def _remove_visitor(self, home: IPv4Address) -> list:
        """The visitor of `home` removed with its host route (the daemon's reset uses it)."""
        return self.visitor_list.remove(home)

    def _forget(self, home: IPv4Address, ident: int) -> None:
        """The pending request of `home` and `ident` dropped with its timer (the daemon's reset)."""
        self.visitor_list.forget(home, ident)

    # --- data plane (nodes/mip/fa_tunnels.py) ----------------------------------------------------

    def receive_tunnelled(self, packet: bytes, now: float) -> None:
        """A tunnelled packet from a home agent (IP-in-IP, minimal or GRE, as this agent supports):
        decapsulate and deliver to the visitor on its link."""
        self._out.extend(self.tunnels.on_tunnelled(packet))

    def receive_from_visitor(self, packet: bytes, now: float) -> None:
        """A packet a visitor sent: reverse-tunnelled to its HA when it registered with T."""
        self._out.extend(self.tunnels.on_visitor_packet(packet))

    # --- timers and status ----------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        for key in self._deadlines.pop_due(now):
            if key in ADVERTISER_KEYS:
                self._out.extend(self.advertiser.due(key, now))
            elif key[0] == "pending":
                pending = self.pending.pop(key)
                self.counters["pending-timeouts"] += 1
                self._out.extend(deny_pending(self.config, self.counters, pending,
                                              ReplyCode.FA_REGISTRATION_TIMEOUT, "home-agent-silent"))
            elif key[0] == "visitor":
                self.counters["visitors-expired"] += 1
                self._out.extend(self.visitor_list.remove(key[1]))

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    def drain_actions(self) -> list:
        return self._out.drain()

    def status(self, now: float | None = None) -> ForeignAgentStatus:
        return ForeignAgentStatus(str(self.config.address), self.sequence,
                                  tuple(v.to_json() for v in self.visitors.values()), len(self.pending),
                                  self.counters.as_dict(), self.counters.drops())
