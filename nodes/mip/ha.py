"""Home Agent core (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 UDP tunnels, RFC 5265 i-HA role).

Follows nodes/core.py. Inputs: `start` (boot: with `advertise`, the first agent advertisement on
the home network), `receive_icmp` (agent solicitations heard on the home network),
`receive_datagram` (UDP 434: requests and RFC 3519 tunnel data), `receive_tunnelled` (a received
IP-in-IP, GRE or minimal-encapsulation packet: reverse tunnels), `encapsulate` (a packet for a home
address, captured on the home link), `receive_icmp_error` (an ICMP error addressed to the HA: those
about its tunnel packets, RFC 2003 4 and 5), `handle_timer` (binding expiry, advertisements). Outputs: the actions of
`nodes.mip.actions` through `drain_actions()`, and `status(now)`. One binding per home address.

With `advertise`, the home agent sends Agent Advertisements on its home network (RFC 5944 2.1:
H bit, no care-of addresses, code 16 as it is not the network's router; periodic and solicited,
nodes/mip/advertiser.py), so a mobile node coming home learns it from them (4.2, 3.6).

Its parts: nodes/mip/ha_registration.py (the checks of a request that need no binding table, the
replies, the Binding), nodes/mip/ha_udp.py (RFC 3519 UDP tunnelling, with the 'R' flag of 4.6: no
destination port until the node's first keepalive) and nodes/mip/ha_soft_state.py (RFC 2003 4 and
5: ICMP errors from within the tunnels, the tunnels' soft state).

Reverse tunnels (RFC 3024 4.3.2, 3.4): in the encapsulation negotiated for the forward tunnel, or
IP-in-IP (which every agent and our own mobile nodes and foreign agents use); anything else, or from
another outer source than the care-of address, is discarded.

RFC 2003 4 and 5, ICMP errors from within a tunnel: a Datagram Too Big sets the tunnel MTU, relayed
through that soft state; reachability errors are relayed as Host Unreachable
(nodes/mip/ha_soft_state.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from nodes.mip.actions import AddTunnel, DeliverIp, GratuitousArp, Log, ProxyArp, RemoveTunnel, SendIp, SendUdp
from nodes.mip.advertiser import ALL_SYSTEMS, KEYS as ADVERTISER_KEYS, Advertiser, advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.common import (
    ENCAPSULATIONS, Counters, Deadlines, Snapshot, addr, ipv4_dst, parse_registration, requested_encapsulation,
    supported_encapsulations,
)
from nodes.mip.ha_registration import (
    Binding, Denied, Discarded, authenticate, check_identification, is_deregistration, reply, trust_exts,
)
from nodes.mip.ha_soft_state import LIMITED_BROADCAST, TunnelSoftState
from nodes.mip.ha_udp import on_udp_tunnel, tunnel_choice
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_IPIP, IPv4
from nodes.wire.tunnels import NotEncapsulable, decapsulate, encapsulate
from nodes.wire.mip import (
    ENCAP_IPIP, INFINITE_LIFETIME, TYPE_REQUEST, TYPE_TUNNEL_DATA, AgentAdvertisement, AgentFlags,
    RegistrationRequest, ReplyCode, RequestFlags, TunnelData, ident_for_mismatch, message_type,
)

NOT_A_DEFAULT_ROUTER = -0x80000000  # RFC 1256 preference 0x80000000


@dataclass(frozen=True)
class MobileNodeEntry:
    """A mobile node the HA serves: its home address and MN-HA security association."""

    home_address: IPv4Address
    sa: SecurityAssociation
    max_lifetime: int | None = None


@dataclass
class HomeAgentConfig:
    address: IPv4Address
    nodes: list[MobileNodeEntry]
    home_iface: str | None = None
    max_lifetime: int = 1800
    max_bindings: int = 100_000
    replay_tolerance: float = 7.0
    reverse_tunnelling: bool = True
    reverse_tunnel_required: bool = False
    udp_tunnelling: bool = True
    udp_keepalive: int = 110
    trusted_networks: list[IPv4Network] = field(default_factory=list)
    drop_untrusted: bool = False  # i-HA: silently drop requests from outside trusted_networks
    fa_associations: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    # forward tunnels a request may ask for (M: minimal, RFC 2004; G: GRE, RFC 2784); else 139
    encapsulations: tuple[str, ...] = ENCAPSULATIONS
    # agent advertisements on the home network (RFC 5944 2.1), from home_iface
    advertise: bool = False
    adv_interval: float = 1.0
    adv_lifetime: int = 3  # ICMP lifetime of an advertisement, seconds
    adv_destination: IPv4Address = ALL_SYSTEMS
    solicited_min_interval: float = 0.05
    prefix_length: int | None = None  # of the home network, in the prefix-lengths extension
    # the home network's subnet-directed broadcast (requests sent to it are denied, RFC 5944 3.8.2.1);
    # None: derived from prefix_length when that is known (the daemon fills it from the home link)
    home_broadcast: IPv4Address | None = None
    # RFC 2003 5: tunnel soft state. A learnt tunnel MTU is forgotten after pmtu_timeout (RFC 1191
    # 6.3: 10 minutes); a reachability error counts for the datagrams of the next
    # tunnel_error_window seconds; ICMP errors the HA sends about tunnelled traffic: at most
    # icmp_error_rate a second (RFC 1812 4.3.2.8)
    pmtu_timeout: float = 600.0
    tunnel_error_window: float = 30.0
    icmp_error_rate: float = 100.0

    def __post_init__(self):
        self.address = addr(self.address)
        self.adv_destination = advertisement_destination(self.adv_destination)
        self.encapsulations = supported_encapsulations(self.encapsulations)
        self.trusted_networks = [IPv4Network(n) for n in self.trusted_networks]
        self.fa_associations = {addr(k): v for k, v in self.fa_associations.items()}
        if self.home_broadcast is not None:
            self.home_broadcast = addr(self.home_broadcast)

    def broadcast_destinations(self) -> set[IPv4Address]:
        """The destinations a registration request must not have been sent to (RFC 5944 3.8.2.1):
        the home network's subnet-directed broadcast and 255.255.255.255 (which some routers turn
        the former into)."""
        out = {LIMITED_BROADCAST}
        if self.home_broadcast is not None:
            out.add(self.home_broadcast)
        elif self.prefix_length is not None and self.prefix_length < 31:
            out.add(IPv4Network(f"{self.address}/{self.prefix_length}", strict=False).broadcast_address)
        return out


@dataclass(frozen=True)
class HomeAgentStatus(Snapshot):
    role = "ha"
    address: str
    bindings: tuple
    counters: dict
    drops: dict


def _destination(dst) -> IPv4Address | None:
    try:
        return addr(dst) if dst else None
    except ValueError:
        return None


class HomeAgent:
    def __init__(self, config: HomeAgentConfig, random: RandomSource = system_random):
        self.config = config
        self.random = random  # the contract's random source; the home agent draws nothing yet
        self._out = ActionQueue()
        self.nodes = {addr(n.home_address): n for n in config.nodes}
        self.bindings: dict[IPv4Address, Binding] = {}
        self.counters = Counters()
        self._last_ident: dict[IPv4Address, int] = {}  # last accepted; survives deregistration (replay protection)
        self._expiry = Deadlines()  # binding expiries by home address, and the advertiser's timers
        self.soft_state = TunnelSoftState(config, self.counters)  # RFC 2003 5, by tunnel far end
        self.advertiser = Advertiser(config, self.counters, self._expiry, self.advertisement, config.home_iface)

    # --- agent advertisement on the home network (nodes/mip/advertiser.py) ----------------------

    def start(self, now: float) -> None:
        """Boot: with `advertise`, advertise at once, then every adv_interval."""
        if self.config.advertise:
            self._out.extend(self.advertiser.start(now))

    def receive_icmp(self, data: bytes, addr: Addr, now: float) -> None:
        """An ICMP message heard on the home network: agent solicitations are answered."""
        if not self.config.advertise:
            return self.counters.drop("icmp-not-advertising")
        self._out.extend(self.advertiser.solicited(data, now))

    def advertisement(self, sequence: int) -> AgentAdvertisement:
        """A home agent's advertisement (RFC 5944 2.1.1): H, no care-of address; code 16 and the
        lowest preference (RFC 1256: never a default router) as the home network has its own router."""
        cfg = self.config
        return AgentAdvertisement(sequence, min(cfg.max_lifetime, INFINITE_LIFETIME), int(AgentFlags.H), [],
                                  cfg.adv_lifetime, routers=[(cfg.address, NOT_A_DEFAULT_ROUTER)], code=16,
                                  prefix_lengths=None if cfg.prefix_length is None else [cfg.prefix_length])

    # --- inputs ---------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A UDP datagram received on port 434."""
        kind = message_type(data)
        if kind == TYPE_REQUEST:
            self._out.extend(self._on_request(data, addr.src, addr.sport, now, addr.dst))
        elif kind == TYPE_TUNNEL_DATA:
            self._out.extend(on_udp_tunnel(self.config, self.counters, self.bindings, data, addr.src, addr.sport))
        else:
            self.counters.drop(f"unexpected-type-{kind}")

    def receive_tunnelled(self, packet: bytes, now: float) -> None:
        """An IP-in-IP, GRE or minimal-encapsulation packet addressed to the HA: a reverse tunnel
        from a care-of address (RFC 3024 4.3.2). Forward and reverse tunnels are symmetric (3.4): the
        encapsulation negotiated for the binding is taken, and IP-in-IP (every agent's, RFC 5944 4.1;
        what foreign agents and co-located nodes reverse-tunnel in by default); another is discarded."""
        try:
            tunnel = decapsulate(packet)
            inner = IPv4.decode(tunnel.inner)
        except DecodeError as e:
            return self.counters.drop(f"tunnel:{e.reason}")
        binding = self.bindings.get(inner.src)
        if binding is None:
            return self.counters.drop("reverse-src-not-bound")
        if binding.kind == "udp" or tunnel.outer.src != binding.remote:
            return self.counters.drop("reverse-outer-mismatch")
        if tunnel.kind not in (binding.kind, "ipip"):
            # RFC 3024 4.3.2: an encapsulation that was not negotiated: silently discarded
            return self.counters.drop(f"reverse-{tunnel.kind}-not-negotiated")
        self.counters["reverse-tunnelled"] += 1
        if tunnel.kind != "ipip":
            self.counters[f"reverse-tunnelled-{tunnel.kind}"] += 1
        self._out.add(DeliverIp(tunnel.inner))

    def encapsulate(self, packet: bytes, now: float) -> None:
        """Tunnel a packet addressed to a home address towards its care-of address."""
        binding = self.bindings.get(ipv4_dst(packet))
        if binding is None:
            return self.counters.drop("no-binding")
        src = IPv4Address(packet[12:16])
        exits = (binding.remote, binding.care_of_address)
        if packet[9] == PROTO_IPIP and src in exits and _inner_dst(packet) == binding.home_address:
            # RFC 5944 4.2.3: already encapsulated, inner and outer destination the node, outer
            # source its care-of address: silently discarded (a likely routing loop)
            return self.counters.drop("encapsulated-from-care-of-address")
        if src in exits:
            # RFC 2003 3.2: the source is the tunnel's exit point: MUST NOT tunnel, SHOULD discard
            return self.counters.drop("source-is-tunnel-exit")
        if binding.kind == "udp" and binding.remote_port is None:
            # RFC 3519 4.6: R set: nothing is tunnelled before the node's first keepalive
            return self.counters.drop("udp-awaiting-first-keepalive")
        refused, errors = self.soft_state.check(binding, packet, now)
        self._out.extend(errors)
        if refused:
            return
        self.counters["tunnelled"] += 1
        if binding.kind == "udp":
            data = TunnelData(ENCAP_IPIP, packet).encode()
            self._out.add(SendUdp(binding.remote, binding.remote_port, data, src=self.config.address))
            return
        try:
            self._out.add(SendIp(encapsulate(binding.kind, self.config.address, binding.remote, packet)))
        except NotEncapsulable:  # a fragment cannot be minimal-encapsulated (RFC 2004 3): IP-in-IP
            self.counters["fragment-as-ipip"] += 1
            self._out.add(SendIp(encapsulate("ipip", self.config.address, binding.remote, packet)))
        except DecodeError as e:
            self.counters.drop(f"encapsulate:{e.reason}")

    # --- RFC 2003 4 and 5: ICMP errors from within the tunnels, the tunnels' soft state -----------

    def receive_icmp_error(self, data: bytes, addr: Addr, now: float) -> None:
        """An ICMP error message (the ICMP bytes; `addr.src` the router that sent it) addressed to
        the HA. Those about a packet of one of its tunnels (the quoted outer header from the HA to a
        binding's far end, in that binding's encapsulation) update the tunnel's soft state and are
        relayed to the original sender as RFC 2003 4 says; the others are counted and ignored."""
        self._out.extend(self.soft_state.on_icmp_error(bytes(data), self.bindings, now))

    def reset(self, now: float) -> None:
        """Back to the state of a fresh start, at once: every binding dropped (its tunnel, host
        route and proxy-ARP entry removed, no reply sent: RFC 5944 3.8), the replay state and the
        counters cleared, advertising started over at sequence 0 (2.3.2) where it is on. What a
        restart does, without the restart (a conformance tester between its test parts)."""
        dropped = len(self.bindings)
        for home in list(self.bindings):
            self._out.extend(self._remove_binding(home))
        self._last_ident.clear()
        self.soft_state.reset()
        for key in ADVERTISER_KEYS:
            self._expiry.cancel(key)
        self.counters.clear()
        self.advertiser = Advertiser(self.config, self.counters, self._expiry, self.advertisement,
                                     self.config.home_iface)
        self._out.add(Log("reset", {"bindings": dropped, "at": now}))
        self.start(now)

    def handle_timer(self, now: float) -> None:
        """Expire bindings whose lifetime ran out; advertise when due."""
        for home in self._expiry.pop_due(now):
            if home in ADVERTISER_KEYS:
                self._out.extend(self.advertiser.due(home, now))
                continue
            self.counters["expired"] += 1
            self._out.extend(self._remove_binding(home))
            self._out.add(Log("binding-expired", {"home": str(home)}))

    def next_deadline(self) -> float | None:
        return self._expiry.earliest()

    def drain_actions(self) -> list:
        return self._out.drain()

    def status(self, now: float | None = None) -> HomeAgentStatus:
        return HomeAgentStatus(str(self.config.address), tuple(b.to_json() for b in self.bindings.values()),
                               self.counters.as_dict(), self.counters.drops())

    # --- registration ---------------------------------------------------------------------------

    def _on_request(self, raw: bytes, src, sport: int, now: float, dst=None) -> list:
        cfg = self.config
        src = addr(src)
        fa_sa = cfg.fa_associations.get(src)  # the request came from (through) an FA we share an SA with
        trusted = any(src in net for net in cfg.trusted_networks)
        if cfg.drop_untrusted and not trusted:
            # RFC 5265: dropped silently, and logged (with a backoff: a flood must not flood the log)
            self.counters.drop("untrusted-source")
            n = self.counters["drop:untrusted-source"]
            return [Log("untrusted-source-dropped", {"source": str(src), "port": sport, "drops": n})] if n & (n - 1) == 0 else []
        self.counters["requests"] += 1
        req, malformed = parse_registration(RegistrationRequest, raw)
        if malformed:
            fixed, error = malformed
            self.counters.drop(f"decode:{error.reason}")
            if fixed is None:
                return []
            self.counters[f"denied:{ReplyCode.HA_POORLY_FORMED_REQUEST}"] += 1
            return [reply(cfg.address, fixed, self.nodes.get(fixed.home_address), ReplyCode.HA_POORLY_FORMED_REQUEST,
                          0, fixed.identification, [], src, sport, fa_sa)]
        node = self.nodes.get(req.home_address)
        try:
            authenticate(req, raw, node, fa_sa)
            check_identification(req, self._last_ident.get(req.home_address, -1), cfg.replay_tolerance, now)
            actions, code, lifetime, exts = self._register(req, src, sport, now, trusted, _destination(dst))
        except Discarded as discard:
            self.counters.drop(discard.reason)
            n = self.counters[f"drop:{discard.reason}"]
            # a security exception, logged (SHOULD, 3.8.2.1 d) with a backoff: a flood must not flood the log
            return [Log("request-discarded", {"home": str(req.home_address), "source": str(src),
                                              "reason": discard.reason, "drops": n, "at": now})] \
                if n & (n - 1) == 0 else []
        except Denied as denial:
            self.counters[f"denied:{denial.code}"] += 1
            ident = req.identification
            if denial.code == ReplyCode.HA_IDENTIFICATION_MISMATCH:
                ident = ident_for_mismatch(now, req.identification)
            log = Log("registration", {"home": str(req.home_address), "coa": str(req.care_of_address),
                                       "code": denial.code, "reason": denial.reason, "at": now})
            return [reply(cfg.address, req, node, denial.code, 0, ident, [], src, sport, fa_sa), log]
        self.counters[f"accepted:{code}"] += 1
        return actions + [reply(cfg.address, req, node, code, lifetime, req.identification, exts, src, sport, fa_sa)]

    def _register(self, req: RegistrationRequest, src, sport, now: float, trusted: bool,
                  dst: IPv4Address | None = None):
        """Checks that need an authenticated request, then the binding change. `dst`: the
        request's IP destination, when the runtime told it.

        Returns (actions, code, granted lifetime, reply extensions)."""
        cfg = self.config
        home, coa = req.home_address, req.care_of_address
        if dst is not None and dst in cfg.broadcast_destinations():
            # RFC 5944 3.8.2.1: a request sent to the home network's subnet-directed broadcast is
            # denied, 136 (the reply carries our unicast address)
            raise Denied(ReplyCode.HA_UNKNOWN_HA_ADDRESS, "sent-to-broadcast")
        if req.home_agent != cfg.address:
            raise Denied(ReplyCode.HA_UNKNOWN_HA_ADDRESS, "home-agent-address-not-ours")
        if home.is_unspecified or (req.lifetime and (coa.is_unspecified or coa.is_multicast)):
            raise Denied(ReplyCode.HA_POORLY_FORMED_REQUEST, "bad-address")
        encapsulation = requested_encapsulation(req.flags)
        if encapsulation not in cfg.encapsulations:
            raise Denied(ReplyCode.HA_ENCAPSULATION_UNAVAILABLE, f"{encapsulation or 'both-m-and-g'}-unavailable")
        if is_deregistration(req):
            self._last_ident[home] = req.identification  # replay protection: accepted ones only (5.7)
            binding = self.bindings.get(home)
            if coa == home or binding is None or binding.care_of_address == coa:
                actions = self._remove_binding(home)
            else:
                # RFC 5944 3.8.2.2: lifetime 0 for another care-of address deletes only that entry;
                # the registered one remains active
                self.counters["deregistration-other-coa"] += 1
                actions = []
            actions.append(Log("deregistration", {"home": str(home), "coa": str(coa), "removed": bool(actions),
                                                  "at": now}))
            return actions, ReplyCode.ACCEPTED, 0, trust_exts(trusted)
        if req.has(RequestFlags.T) and not cfg.reverse_tunnelling:
            raise Denied(ReplyCode.HA_REVERSE_TUNNEL_UNAVAILABLE, "reverse-tunnelling-off")
        if cfg.reverse_tunnel_required and not req.has(RequestFlags.T):
            raise Denied(ReplyCode.HA_REVERSE_TUNNEL_MANDATORY, "t-bit-missing")
        kind, remote, remote_port, exts = tunnel_choice(cfg, self.counters, req, src, sport, encapsulation)
        awaiting = kind == "udp" and remote_port is None
        if home not in self.bindings and len(self.bindings) >= cfg.max_bindings:
            raise Denied(ReplyCode.HA_INSUFFICIENT_RESOURCES, "binding-table-full")
        self._last_ident[home] = req.identification  # every check passed: the request is accepted
        node = self.nodes[home]
        granted = min(req.lifetime, node.max_lifetime or cfg.max_lifetime)
        binding = Binding(home, coa, granted, now + granted if granted != INFINITE_LIFETIME else float("inf"),
                          req.identification, kind, remote, remote_port, req.has(RequestFlags.T), now, awaiting)
        actions = self._install(binding)
        code = ReplyCode.ACCEPTED_NO_SIMULTANEOUS if req.has(RequestFlags.S) else ReplyCode.ACCEPTED
        actions.append(Log("registration", {"home": str(home), "coa": str(coa), "code": int(code),
                                            "lifetime": granted, "tunnel": kind, "at": now}))
        return actions, code, granted, exts + trust_exts(trusted)

    # --- bindings -------------------------------------------------------------------------------

    def _install(self, binding: Binding) -> list:
        home = binding.home_address
        first = home not in self.bindings
        self.bindings[home] = binding
        self._expiry.set(home, binding.expires)
        actions = [AddTunnel(home, self.config.address, binding.remote, binding.kind, binding.remote_port,
                             self.config.udp_keepalive if binding.kind == "udp" else None)]
        if first:
            iface = self.config.home_iface
            actions += [ProxyArp(home, True, iface), GratuitousArp(home, iface, proxy=True)]
        return actions

    def _remove_binding(self, home: IPv4Address) -> list:
        if self.bindings.pop(home, None) is None:
            return []
        self._expiry.cancel(home)
        return [RemoveTunnel(home), ProxyArp(home, False, self.config.home_iface)]


def _inner_dst(packet: bytes) -> IPv4Address | None:
    """The inner destination of an IP-in-IP packet, None when it is too short to have one."""
    inner = packet[(packet[0] & 0x0F) * 4:]
    return ipv4_dst(inner)
