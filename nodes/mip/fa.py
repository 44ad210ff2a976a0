"""Foreign Agent core (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 when behind a NAT).

Follows nodes/core.py. Inputs: `start` (after boot: first advertisement, sequence 0),
`receive_icmp` (solicitations), `receive_datagram` (UDP 434: requests from visitors with their
link-layer address and TTL in the `Addr`, replies and RFC 3519 tunnel data from home agents),
`relay_error` (an ICMP error about a request we relayed: the pending visitor gets code 80, 81, 82
or 88 at once), `receive_tunnelled` (IP-in-IP from a home agent), `receive_from_visitor` (a packet
a visitor sent on the foreign link), `handle_timer`. The runtime feeds packets from the visitor
link whose source is a visitor's home address to `receive_from_visitor`, and IP-in-IP addressed to
the FA to `receive_tunnelled`. Outputs: `drain_actions()` and `status(now)`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address

from nodes.mip.actions import AddHostRoute, DeliverIp, Log, RemoveHostRoute, SendIp, SendUdp
from nodes.mip.advertiser import ALL_SYSTEMS, KEYS as ADVERTISER_KEYS, Advertiser, advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.common import (
    ENCAPSULATIONS, Counters, Deadlines, Snapshot, addr, ipv4_dst, parse_registration, requested_encapsulation,
    supported_encapsulations,
)
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import ip_in_ip
from nodes.wire.tunnels import decapsulate
from nodes.wire.mip import (
    ENCAP_IPIP, EXT_ENCAPSULATING_DELIVERY, EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REPLY,
    EXT_UDP_TUNNEL_REQUEST, MIP_PORT, TYPE_REPLY, TYPE_REQUEST, TYPE_TUNNEL_DATA, AgentAdvertisement,
    AgentFlags, RegistrationReply, RegistrationRequest, ReplyCode, RequestFlags, TunnelData, UdpTunnelRequest,
    cut_after, encode_extension, find_extension, is_accepted, message_type,
)


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


ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED = 3, 11
ICMP_FRAGMENTATION_NEEDED = 4  # a path MTU report, not unreachability: the kernel handles it

# destination unreachable codes (RFC 792, 1122, 1812) -> the FA's denial (RFC 5944 codes 80-88):
# the network kinds (0 net, 6 net unknown, 11 net for TOS) give 80, the host kinds (1, 7, 12) 81,
# port unreachable 82; every other unreachable code (protocol, source route failed, isolated,
# administratively prohibited, precedence...) 88 "other ICMP error received"
_UNREACHABLE_CODES = {0: ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 6: ReplyCode.FA_HOME_NETWORK_UNREACHABLE,
                      11: ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 1: ReplyCode.FA_HA_HOST_UNREACHABLE,
                      7: ReplyCode.FA_HA_HOST_UNREACHABLE, 12: ReplyCode.FA_HA_HOST_UNREACHABLE,
                      3: ReplyCode.FA_HA_PORT_UNREACHABLE}


def relay_error_code(icmp_type: int, icmp_code: int) -> int | None:
    """The registration denial code for an ICMP error about a relayed request, or None when the
    message says nothing about the home agent's reachability (it is then ignored)."""
    if icmp_type == ICMP_DEST_UNREACHABLE:
        if icmp_code == ICMP_FRAGMENTATION_NEEDED:
            return None
        return int(_UNREACHABLE_CODES.get(icmp_code, ReplyCode.FA_HA_UNREACHABLE))
    if icmp_type == ICMP_TIME_EXCEEDED and icmp_code == 0:  # TTL ran out in transit: a routing loop
        return int(ReplyCode.FA_HA_UNREACHABLE)
    return None


@dataclass(frozen=True)
class ForeignAgentStatus(Snapshot):
    role = "fa"
    address: str
    sequence: int
    visitors: tuple
    pending: int
    counters: dict
    drops: dict


def _covered_count(extensions) -> int:
    """How many of a message's extensions its (last) MN-HA extension covers, itself included; 0
    without one."""
    return max((i + 1 for i, e in enumerate(extensions) if e.type == EXT_MN_HA_AUTH), default=0)


def _covered(raw: bytes, message, fixed_size: int) -> bytes:
    """`raw` through its (last) MN-HA extension, the authorization-enabling one: what a foreign agent
    relays unchanged. The extensions after it are processed and removed (RFC 5944 3.7.2.2 and
    3.7.3.2: MN-FA, Encapsulating Delivery Style, an FA-HA, anything the MN-HA does not cover);
    without MN-HA nothing is covered but the fixed part."""
    count = _covered_count(message.extensions)
    return cut_after(raw, message.extensions[count - 1]) if count else raw[:fixed_size]


def fa_ha_applies(req: RegistrationRequest, care_of_addresses) -> bool:
    """Whether FA-HA authentication goes on this relayed request (and is demanded of its reply):
    not for a deregistration (lifetime 0, or care-of address = home address), nor when the care-of
    address is not one this agent advertises (RFC 5944 3.5.4)."""
    return bool(req.lifetime) and req.care_of_address != req.home_address and req.care_of_address in care_of_addresses


def _pending_key(home: IPv4Address, ident: int) -> tuple:
    """Replies are matched on home address and the low 32 bits of the identification (the HA
    rewrites the high half in a code-133 reply)."""
    return ("pending", home, ident & 0xFFFFFFFF)


class ForeignAgent:
    def __init__(self, config: ForeignAgentConfig, random: RandomSource = system_random):
        self.config = config
        self.random = random  # the contract's random source; the foreign agent draws nothing yet
        self._out = ActionQueue()
        self.pending: dict[tuple, Pending] = {}
        self.visitors: dict[IPv4Address, Visitor] = {}
        self.counters = Counters()
        self._deadlines = Deadlines()
        self._last_too_distant: float | None = None  # when the last code-76 denial went out
        self.advertiser = Advertiser(config, self.counters, self._deadlines, self.advertisement, config.iface)

    # --- agent advertisement (nodes/mip/advertiser.py) -----------------------------------------

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
        cfg = self.config
        flags = AgentFlags.F
        for wanted, flag in ((cfg.registration_required, AgentFlags.R), (cfg.busy, AgentFlags.B),
                             (cfg.reverse_tunnelling, AgentFlags.T), (cfg.behind_nat, AgentFlags.U),
                             ("minimal" in cfg.encapsulations, AgentFlags.M), ("gre" in cfg.encapsulations, AgentFlags.G)):
            if wanted:
                flags |= flag
        return AgentAdvertisement(
            self.sequence if sequence is None else sequence, cfg.max_lifetime, int(flags),
            list(cfg.care_of_addresses), cfg.adv_lifetime, routers=[(cfg.address, 0)],
            prefix_lengths=[cfg.prefix_length],
        )

    def _drop(self, reason: str) -> list:
        self.counters.drop(reason)
        return []

    # --- registration relay ---------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """UDP 434: requests from visitors (with their link-layer source and IP TTL when known),
        replies and tunnel data from home agents."""
        self._out.extend(self._on_udp(data, addr.src, addr.sport, now, addr.lladdr, addr.ttl))

    def _on_udp(self, payload: bytes, src, sport: int, now: float, lladdr, ttl) -> list:
        kind = message_type(payload)
        if kind == TYPE_REQUEST:
            return self._on_request(payload, addr(src), sport, now, lladdr, ttl)
        if kind == TYPE_REPLY:
            return self._on_reply(payload, addr(src), now)
        if kind == TYPE_TUNNEL_DATA:
            try:
                packet = TunnelData.decode(payload).payload
            except DecodeError as e:
                return self._drop(f"tunnel:{e.reason}")
            return self._deliver_to_visitor(packet, addr(src))
        return self._drop(f"unexpected-type-{kind}")

    def _on_request(self, raw: bytes, src, sport, now, lladdr, ttl) -> list:
        cfg = self.config
        self.counters["requests"] += 1
        req, malformed = parse_registration(RegistrationRequest, raw)
        if malformed:
            fixed, error = malformed
            self.counters.drop(f"decode:{error.reason}")
            if fixed is None:
                return []
            return self._deny(fixed, src, sport, lladdr, ReplyCode.FA_POORLY_FORMED_REQUEST, error.reason)
        code, reason = self._check_request(req, raw, ttl)
        if code == ReplyCode.FA_MN_TOO_DISTANT:
            # RFC 3024 4.2.1: at most one such reply a second (the request is refused all the same)
            last = self._last_too_distant
            if last is not None and 0 <= now - last < cfg.too_distant_interval:
                self.counters["denied:76-not-sent"] += 1
                return self._drop("ttl-not-255-rate-limited")
            self._last_too_distant = now
        if code is not None:
            # 69 carries the longest lifetime we accept; every other denial the requested one (3.7.2.3)
            lifetime = cfg.max_lifetime if code == ReplyCode.FA_LIFETIME_TOO_LONG else req.lifetime
            return self._deny(req, src, sport, lladdr, code, reason, lifetime)
        key = _pending_key(req.home_address, req.identification)
        self.pending[key] = Pending(req, src, sport, lladdr, now + cfg.pending_timeout, now)
        self._deadlines.set(key, now + cfg.pending_timeout)
        self.counters["relayed-requests"] += 1
        return [SendUdp(req.home_agent, MIP_PORT, self._relayed(req, raw), src=self._source_for(req))]

    def _check_request(self, req: RegistrationRequest, raw: bytes, ttl) -> tuple:
        """(denial code, reason) or (None, None). RFC 5944 3.7.2.1, RFC 3024 3.3."""
        cfg = self.config
        mn_fa = self.config.mn_associations.get(req.home_address)
        mn_fa_exts = [e for e in req.extensions if e.type == EXT_MN_FA_AUTH]
        checks = (
            (find_extension(req.extensions, EXT_MN_HA_AUTH) is None,
             ReplyCode.FA_POORLY_FORMED_REQUEST, "missing-mn-ha-auth"),
            # exactly one MN-FA when we share an association with the node (3.7.2.1)
            (mn_fa is not None and len(mn_fa_exts) > 1, ReplyCode.FA_MN_AUTH_FAILED, "more-than-one-mn-fa-auth"),
            (mn_fa is not None and not mn_fa.verifies(raw, find_extension(req.extensions, EXT_MN_FA_AUTH)),
             ReplyCode.FA_MN_AUTH_FAILED, "bad-mn-fa-auth"),
            (req.home_agent.is_unspecified or req.home_agent.is_multicast,
             ReplyCode.FA_INVALID_HA_ADDRESS, "bad-home-agent-address"),
            # 3.7.2: never forward a request to ourselves; we are no home agent, so 194
            (cfg.own(req.home_agent), ReplyCode.FA_INVALID_HA_ADDRESS, "home-agent-is-this-foreign-agent"),
            (cfg.busy, ReplyCode.FA_INSUFFICIENT_RESOURCES, "busy"),
            (req.lifetime > cfg.max_lifetime, ReplyCode.FA_LIFETIME_TOO_LONG, "lifetime-too-long"),
            (requested_encapsulation(req.flags) not in cfg.encapsulations,
             ReplyCode.FA_ENCAPSULATION_UNAVAILABLE, f"{requested_encapsulation(req.flags) or 'both-m-and-g'}-unavailable"),
            (req.has(RequestFlags.T) and not cfg.reverse_tunnelling,
             ReplyCode.FA_REVERSE_TUNNEL_UNAVAILABLE, "reverse-tunnelling-off"),
            (cfg.reverse_tunnel_required and not req.has(RequestFlags.T),
             ReplyCode.FA_REVERSE_TUNNEL_MANDATORY, "t-bit-missing"),
            (req.has(RequestFlags.T) and ttl is not None and ttl != 255,
             ReplyCode.FA_MN_TOO_DISTANT, "ttl-not-255"),
            (req.lifetime and not req.has(RequestFlags.D) and req.care_of_address not in cfg.care_of_addresses,
             ReplyCode.FA_INVALID_CARE_OF_ADDRESS, "care-of-address-not-ours"),
            (len(self.pending) >= cfg.max_pending, ReplyCode.FA_INSUFFICIENT_RESOURCES, "too-many-pending"),
        )
        return next(((code, reason) for failed, code, reason in checks if failed), (None, None))

    def _relayed(self, req: RegistrationRequest, raw: bytes) -> bytes:
        """The request as sent to the HA (RFC 5944 3.7.2.2): unchanged through its MN-HA extension,
        the extensions after it processed and removed (MN-FA, RFC 3024 Encapsulating Delivery Style,
        unknown ones); then RFC 3519 ext 144 when we are behind a NAT, and FA-HA authentication when
        we share an association with the HA and it applies (3.5.4: not to deregistrations, not for a
        care-of address we do not advertise)."""
        data = _covered(raw, req, 24)
        covered = req.extensions[:_covered_count(req.extensions)]
        if self.config.behind_nat and find_extension(covered, EXT_UDP_TUNNEL_REQUEST) is None:
            data += encode_extension(UdpTunnelRequest(encapsulation=ENCAP_IPIP))
        sa = self.config.ha_associations.get(req.home_agent)
        if sa is not None and fa_ha_applies(req, self.config.care_of_addresses):
            return sa.sign(data, EXT_FA_HA_AUTH)
        return data

    def _source_for(self, req: RegistrationRequest) -> IPv4Address:
        coa = req.care_of_address
        return coa if coa in self.config.care_of_addresses else self.config.address

    def _on_reply(self, raw: bytes, src: IPv4Address, now: float) -> list:
        reply, malformed = parse_registration(RegistrationReply, raw)
        fixed = reply or (malformed[0] if malformed else None)
        pending = self.pending.get(_pending_key(fixed.home_address, fixed.identification)) if fixed else None
        if pending is None:
            reason = f"decode:{malformed[1].reason}" if malformed else "unmatched-reply"
            return self._drop(reason)
        self._forget(fixed.home_address, fixed.identification)
        req = pending.request
        if malformed:
            self.counters.drop(f"decode:{malformed[1].reason}")
            return self._deny(req, pending.src, pending.sport, pending.lladdr,
                              ReplyCode.FA_POORLY_FORMED_REPLY, malformed[1].reason)
        sa = self.config.ha_associations.get(src)
        if sa is not None and fa_ha_applies(req, self.config.care_of_addresses):
            # exactly one FA-HA, and it verifies (3.7.3.1); none is demanded where none may be
            # applied (3.5.4: deregistrations, care-of addresses we do not advertise)
            fa_ha = [e for e in reply.extensions if e.type == EXT_FA_HA_AUTH]
            if len(fa_ha) != 1 or not sa.verifies(raw, fa_ha[0]):
                reason = "more-than-one-fa-ha-auth" if len(fa_ha) > 1 else "bad-fa-ha-auth"
                return self._deny(req, pending.src, pending.sport, pending.lladdr, ReplyCode.FA_HA_AUTH_FAILED, reason)
        actions = self._update_visitor(req, reply, pending, now)
        # unchanged through MN-HA, what it does not cover removed (3.7.3.2), MN-FA appended when we
        # share an association with the node
        data = _covered(raw, reply, 20)
        mn_fa = self.config.mn_associations.get(req.home_address)
        if mn_fa is not None:
            data = mn_fa.sign(data, EXT_MN_FA_AUTH)
        self.counters[f"relayed-replies:{reply.code}"] += 1
        actions.append(self._to_mobile_node(pending.src, pending.sport, pending.lladdr, data))
        actions.append(Log("registration", {"home": str(req.home_address), "coa": str(req.care_of_address),
                                            "code": reply.code, "lifetime": reply.lifetime,
                                            "rtt": round(now - pending.sent_at, 6), "at": now}))
        return actions

    def relay_error(self, ha_address, ha_port: int, icmp_type: int, icmp_code: int, now: float,
                    *, quoted: bytes = b"", reporter=None) -> None:
        """An ICMP error about a datagram we sent (see `_on_relay_error`)."""
        self._out.extend(self._on_relay_error(ha_address, ha_port, icmp_type, icmp_code, now, quoted, reporter))

    def _on_relay_error(self, ha_address, ha_port: int, icmp_type: int, icmp_code: int, now: float,
                        quoted: bytes, reporter) -> list:
        """An ICMP error about a datagram we sent to `ha_address`:`ha_port` (the destination of the
        quoted packet) with the quoted UDP payload as far as the error carried it. A relayed
        request it names (home address and identification in the quote) is answered at once with
        80, 81, 82 or 88 instead of waiting for the 78 timeout; a quote too short to name one
        stands for every request pending at that home agent."""
        ha_address = addr(ha_address)
        self.counters["relay-errors"] += 1
        code = relay_error_code(icmp_type, icmp_code)
        if code is None:
            return self._drop(f"relay-error-icmp-{icmp_type}-{icmp_code}")
        if ha_port != MIP_PORT:
            return self._drop("relay-error-not-port-434")
        if len(quoted) >= 24:
            try:
                fixed = RegistrationRequest.decode_fixed(quoted)
            except DecodeError:  # e.g. about a reply we sent to a visitor: not a relayed request
                return self._drop("relay-error-not-a-request")
            key = _pending_key(fixed.home_address, fixed.identification)
            pending = self.pending.get(key)
            matches = [key] if pending is not None and pending.request.home_agent == ha_address \
                and pending.request.identification == fixed.identification else []
        elif quoted[:1] not in (b"", bytes([TYPE_REQUEST])):
            return self._drop("relay-error-not-a-request")
        else:
            matches = [k for k, p in self.pending.items() if p.request.home_agent == ha_address]
        if not matches:
            return self._drop("relay-error-unmatched")
        actions: list = []
        for key in matches:
            pending = self.pending.pop(key)
            self._deadlines.cancel(key)
            req = pending.request
            self.counters[f"relay-errors:{code}"] += 1
            actions += self._deny(req, pending.src, pending.sport, pending.lladdr, code,
                                  f"icmp-{icmp_type}-{icmp_code}")
            actions.append(Log("relay-error", {"home": str(req.home_address), "home_agent": str(ha_address),
                                               "icmp_type": icmp_type, "icmp_code": icmp_code, "code": code,
                                               "reporter": str(reporter) if reporter is not None else None,
                                               "after": round(now - pending.sent_at, 6), "at": now}))
        return actions

    def _update_visitor(self, req, reply: RegistrationReply, pending: Pending, now: float) -> list:
        home = req.home_address
        if not is_accepted(reply.code):
            return []
        # the reply's lifetime, never more than the request's (3.4) nor our maximum (3.7.3.2)
        lifetime = min(reply.lifetime, req.lifetime, self.config.max_lifetime)
        if lifetime == 0:
            return self._remove_visitor(home)
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

    def _remove_visitor(self, home: IPv4Address) -> list:
        if self.visitors.pop(home, None) is None:
            return []
        self._deadlines.cancel(("visitor", home))
        return [RemoveHostRoute(home, self.config.iface)]

    def _forget(self, home: IPv4Address, ident: int) -> None:
        key = _pending_key(home, ident)
        self.pending.pop(key, None)
        self._deadlines.cancel(key)

    def _deny(self, req, src, sport, lladdr, code: int, reason: str, lifetime: int | None = None) -> list:
        """A denial from the FA itself, sent straight to the mobile node; its lifetime is the
        request's unless given (RFC 5944 3.7.2.3)."""
        self.counters[f"denied:{code}"] += 1
        lifetime = req.lifetime if lifetime is None else lifetime
        reply = RegistrationReply(code, lifetime, req.home_address, req.home_agent, req.identification)
        data = reply.encode()
        mn_fa = self.config.mn_associations.get(req.home_address)
        if mn_fa is not None:
            data = mn_fa.sign(data, EXT_MN_FA_AUTH)
        log = Log("registration", {"home": str(req.home_address), "code": code, "reason": reason})
        return [self._to_mobile_node(src, sport, lladdr, data), log]

    def _to_mobile_node(self, dst, dport, lladdr, data: bytes) -> SendUdp:
        return SendUdp(dst, dport, data, src=self.config.address, iface=self.config.iface, lladdr=lladdr)

    # --- data plane -----------------------------------------------------------------------------

    def receive_tunnelled(self, packet: bytes, now: float) -> None:
        """A tunnelled packet from a home agent (IP-in-IP, minimal or GRE, as this agent supports):
        decapsulate and deliver to the visitor on its link."""
        self._out.extend(self._on_ip(packet))

    def _on_ip(self, packet: bytes) -> list:
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
        return self._deliver_to_visitor(tunnel.inner, tunnel.outer.src)

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

    def _deliver_to_visitor(self, inner: bytes, outer_src: IPv4Address) -> list:
        if len(inner) >= 20 and inner[8] == 0:  # RFC 2003 3.1: an inner TTL of 0 is discarded
            return self._drop("inner-ttl-zero")
        visitor = self.visitors.get(ipv4_dst(inner))
        if visitor is None:
            return self._drop("not-a-visitor")
        if outer_src != visitor.home_agent:
            return self._drop("tunnel-not-from-home-agent")
        self.counters["delivered"] += 1
        return [DeliverIp(inner, self.config.iface, visitor.lladdr)]

    def receive_from_visitor(self, packet: bytes, now: float) -> None:
        """A packet a visitor sent: reverse-tunnelled to its HA when it registered with T."""
        self._out.extend(self._on_visitor_packet(packet))

    def _on_visitor_packet(self, packet: bytes) -> list:
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

    # --- timers and status ----------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        for key in self._deadlines.pop_due(now):
            if key in ADVERTISER_KEYS:
                self._out.extend(self.advertiser.due(key, now))
            elif key[0] == "pending":
                pending = self.pending.pop(key)
                self.counters["pending-timeouts"] += 1
                self._out.extend(self._deny(pending.request, pending.src, pending.sport, pending.lladdr,
                                            ReplyCode.FA_REGISTRATION_TIMEOUT, "home-agent-silent"))
            elif key[0] == "visitor":
                self.counters["visitors-expired"] += 1
                self._out.extend(self._remove_visitor(key[1]))

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    def drain_actions(self) -> list:
        return self._out.drain()

    def status(self, now: float | None = None) -> ForeignAgentStatus:
        return ForeignAgentStatus(str(self.config.address), self.sequence,
                                  tuple(v.to_json() for v in self.visitors.values()), len(self.pending),
                                  self.counters.as_dict(), self.counters.drops())
