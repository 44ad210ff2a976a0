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

RFC 3519 4.6, the 'R' flag (a registration relayed by a foreign agent behind a NAT): the binding's UDP
tunnel has no destination port until the mobile node's first keepalive (an ICMP echo request from
its home address to the HA, tunnelled in UDP) arrives from the registration's source address; its
outer source address and port then become the tunnel's destination. Nothing is tunnelled before.

Reverse tunnels (RFC 3024 4.3.2, 3.4): in the encapsulation negotiated for the forward tunnel, or
IP-in-IP (which every agent and our own mobile nodes and foreign agents use); anything else, or from
another outer source than the care-of address, is discarded.

RFC 2003 4 and 5, ICMP errors from within a tunnel: the soft state of the path to each tunnel's far
end. A Datagram Too Big sets the tunnel MTU (aged out after `pmtu_timeout`); it is relayed through
that soft state (5.1): a later DF datagram above it is refused with a Datagram Too Big carrying the
tunnel MTU minus the encapsulation's overhead (as a Linux tunnel does). Time Exceeded (code 0)
and Destination Unreachable (but for Port Unreachable and Source Route Failed) are relayed as Host
Unreachable and counted: that many of the next datagrams into the tunnel (within
`tunnel_error_window`) draw a Host Unreachable to their sender, and are tunnelled all the same.
Redirects, Port Unreachable, Source Route Failed, Source Quench and Parameter Problem are not relayed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network

from nodes.mip.actions import (
    AddTunnel, DeliverIp, GratuitousArp, Log, ProxyArp, RemoveTunnel, SendIcmp, SendIp, SendUdp,
)
from nodes.mip.advertiser import ALL_SYSTEMS, KEYS as ADVERTISER_KEYS, Advertiser, advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.common import (
    ENCAPSULATIONS, Counters, Deadlines, Snapshot, addr, ipv4_dst, parse_registration, requested_encapsulation,
    supported_encapsulations,
)
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP, PROTO_IPIP, PROTO_UDP, IPv4, checksum
from nodes.wire.tunnels import KINDS, NotEncapsulable, decapsulate, encapsulate
from nodes.wire.mip import (
    ENCAP_GRE, ENCAP_IPIP, ENCAP_MINIMAL, EXT_FA_HA_AUTH, MIN_SPI, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REQUEST,
    INFINITE_LIFETIME, MIP_PORT,
    TYPE_REQUEST, TYPE_TUNNEL_DATA, AgentAdvertisement, AgentFlags, RegistrationReply, RegistrationRequest,
    ReplyCode, RequestFlags,
    TrustedNetworksConfigured, TunnelData, UdpTunnelReply,
    ident_for_mismatch, message_type, ntp_to_unix,
)

NOT_A_DEFAULT_ROUTER = -0x80000000  # RFC 1256 preference 0x80000000
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
UDP_TUNNEL_DECLINED = 64  # RFC 3519 3.2.1: "tunnelling declined, reason unspecified"
ENCAP_NUMBERS = {"ipip": ENCAP_IPIP, "minimal": ENCAP_MINIMAL, "gre": ENCAP_GRE}  # RFC 3519 3.1.4
# bytes a tunnel adds to a datagram: outer IPv4 header, GRE header (no checksum), minimal forwarding
# header with the original source (the HA is never the original sender), UDP + MIP tunnel header
TUNNEL_OVERHEAD = {"ipip": 20, "gre": 24, "minimal": 12, "udp": 32}
ICMP_ECHO_REQUEST = 8
ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED = 3, 11
UNREACH_HOST, UNREACH_PORT, UNREACH_TOO_BIG, UNREACH_SOURCE_ROUTE = 1, 3, 4, 5
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})  # never an ICMP error about one of these (RFC 1122 3.2.2)
ICMP_QUOTE = 548  # an ICMP error's quote: at most 576 bytes in all (RFC 1812 4.3.2.3)
MIN_MTU = 68  # RFC 791
# RFC 1191 7: the MTU plateaus, for a Datagram Too Big without a next-hop MTU (an old router)
MTU_PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)
MAX_PATHS = 4096  # tunnel soft state kept for at most this many far ends


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


@dataclass
class Binding:
    home_address: IPv4Address
    care_of_address: IPv4Address
    lifetime: int
    expires: float
    identification: int
    kind: str  # the forward tunnel: "ipip", "minimal", "gre" or "udp" (RFC 3519, IP-in-IP inside)
    remote: IPv4Address  # tunnel endpoint: the care-of address or the NAT's observed address
    remote_port: int | None
    reverse: bool
    registered_at: float
    # RFC 3519 4.6: R set in the UDP Tunnel Request: the tunnel's destination is the outer source
    # address and port of the node's first keepalive; until it comes, remote_port is None
    awaiting_keepalive: bool = False

    def to_json(self) -> dict:
        """Addresses as strings; an infinite lifetime's expiry as None (strict JSON has no inf)."""
        return {k: (str(v) if isinstance(v, IPv4Address) else None if v == float("inf") else v)
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class HomeAgentStatus(Snapshot):
    role = "ha"
    address: str
    bindings: tuple
    counters: dict
    drops: dict


@dataclass
class PathState:
    """RFC 2003 5: soft state about the path to a tunnel's far end, from ICMP errors from within."""

    mtu: int | None = None  # the tunnel MTU learnt from a Datagram Too Big
    mtu_until: float = 0.0
    errors: int = 0  # reachability errors not yet reported to a sender
    errors_until: float = 0.0


class _Denied(Exception):
    def __init__(self, code: int, reason: str):
        self.code, self.reason = code, reason


class _Discarded(Exception):
    """The request is dropped without a reply (RFC 5944 3.8.2.1 a and d)."""

    def __init__(self, reason: str):
        self.reason = reason


def is_deregistration(req: RegistrationRequest) -> bool:
    """RFC 5944 3.5.4: a request is a deregistration unless it asks for a nonzero lifetime for a
    care-of address other than the home address."""
    return req.lifetime == 0 or req.care_of_address == req.home_address


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
        self._paths: dict[IPv4Address, PathState] = {}  # RFC 2003 5 soft state, by tunnel far end
        self._icmp_tokens, self._icmp_at = config.icmp_error_rate, None  # ICMP errors we send: a bucket
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
            self._out.extend(self._on_udp_tunnel(data, addr.src, addr.sport))
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
        path = self._path(binding.remote, now)
        if path is not None:
            refused = self._check_soft_state(path, binding, packet, now)
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
        self._out.extend(self._on_icmp_error(bytes(data), now))

    def _on_icmp_error(self, data: bytes, now: float) -> list:
        if len(data) < 8 + 20 or data[0] not in ICMP_ERROR_TYPES:
            self.counters.drop("icmp-error-short-or-not-an-error")
            return []
        icmp_type, code, quoted = data[0], data[1], data[8:]
        ihl = (quoted[0] & 0x0F) * 4
        if quoted[0] >> 4 != 4 or ihl < 20 or len(quoted) < ihl:
            self.counters.drop("icmp-error-bad-quote")
            return []
        proto, src, dst = quoted[9], IPv4Address(quoted[12:16]), IPv4Address(quoted[16:20])
        if src != self.config.address:
            self.counters.drop("icmp-error-not-about-our-packet")
            return []
        bindings = [b for b in self.bindings.values() if b.remote == dst and _carries(b, proto, quoted[ihl:])]
        if not bindings:
            self.counters.drop("icmp-error-not-about-a-tunnel")
            return []
        inner = _quoted_inner(bindings[0].kind, proto, quoted[ihl:])
        about = next((b for b in bindings if inner is not None and ipv4_dst(inner) == b.home_address), None)
        binding = about or bindings[0]
        self.counters[f"tunnel-icmp-error:{icmp_type}-{code}"] += 1
        path = self._paths.get(dst) or self._new_path(dst)
        if icmp_type == ICMP_UNREACHABLE and code == UNREACH_TOO_BIG:
            length = int.from_bytes(quoted[2:4], "big")
            mtu = _reported_mtu(int.from_bytes(data[6:8], "big"), length)
            if path.mtu is None or path.mtu_until <= now or mtu < path.mtu:
                path.mtu = mtu
            path.mtu_until = now + self.config.pmtu_timeout
            self.counters["tunnel-mtu-learnt"] += 1
            # RFC 2003 4.1 (MUST relay) through the soft state (5, 5.1): the sender's next DF datagram
            # above the tunnel MTU gets a Datagram Too Big with that MTU minus the encapsulation's
            # overhead, as a Linux tunnel does. Not at once as well: the sender's stack would then
            # refuse its own retransmission locally (EMSGSIZE) and a second report would be redundant.
            return [Log("tunnel-mtu", {"remote": str(dst), "mtu": path.mtu, "kind": binding.kind, "at": now})]
        if icmp_type == ICMP_UNREACHABLE and code not in (UNREACH_PORT, UNREACH_SOURCE_ROUTE) \
                or icmp_type == ICMP_TIME_EXCEEDED and code == 0:
            # RFC 2003 4.1 (codes 0, 1, 2: the home address is on our network, so Host Unreachable)
            # and 4.4 (Time Exceeded: MUST be reported as Host Unreachable); soft state (5): the
            # next datagrams into this tunnel draw one too
            if path.errors_until <= now:
                path.errors = 0
            path.errors += 1
            path.errors_until = now + self.config.tunnel_error_window
            if about is None:
                return []
            return self._icmp_error(ICMP_UNREACHABLE, UNREACH_HOST, bytes(4), inner, now)
        # Port Unreachable, Source Route Failed (4.1: MUST NOT relay), Redirect (4.3), Source Quench
        # (4.2: SHOULD NOT), Parameter Problem about our own header (4.5), Time Exceeded in reassembly
        self.counters[f"tunnel-icmp-error-not-relayed:{icmp_type}-{code}"] += 1
        return []

    def _new_path(self, remote: IPv4Address) -> PathState:
        if len(self._paths) >= MAX_PATHS:
            self._paths.pop(next(iter(self._paths)))  # the oldest
        path = self._paths[remote] = PathState()
        return path

    def _path(self, remote: IPv4Address, now: float) -> PathState | None:
        """The soft state of the tunnel to `remote` that still holds, or None."""
        path = self._paths.get(remote)
        if path is None:
            return None
        if path.mtu is not None and path.mtu_until <= now:
            path.mtu = None
        if path.errors and path.errors_until <= now:
            path.errors = 0
        if path.mtu is None and not path.errors:
            del self._paths[remote]
            return None
        return path

    def _check_soft_state(self, path: PathState, binding: Binding, packet: bytes, now: float) -> bool:
        """RFC 2003 5 and 5.1, a datagram about to go into the tunnel: True when it is refused (DF
        and too big for the tunnel MTU: a Datagram Too Big to its sender); a reachability error not
        yet reported draws a Host Unreachable, the datagram tunnelled all the same."""
        overhead = TUNNEL_OVERHEAD[binding.kind]
        if path.mtu is not None and len(packet) + overhead > path.mtu and _dont_fragment(packet):
            self.counters.drop("too-big-for-tunnel-mtu")
            self._out.extend(self._icmp_error(ICMP_UNREACHABLE, UNREACH_TOO_BIG, _mtu_field(path.mtu - overhead),
                                              packet, now))
            return True
        if path.errors:
            path.errors -= 1
            self.counters["tunnel-soft-state-reported"] += 1
            self._out.extend(self._icmp_error(ICMP_UNREACHABLE, UNREACH_HOST, bytes(4), packet, now))
        return False

    def _icmp_error(self, icmp_type: int, code: int, rest: bytes, about: bytes, now: float) -> list:
        """An ICMP error from the HA to the sender of `about` (an original, unencapsulated datagram),
        quoting it; none about an ICMP error, a non-initial fragment or a packet from no one in
        particular (RFC 1122 3.2.2, RFC 1812 4.3.2.7), nor above the rate limit (4.3.2.8)."""
        if len(about) < 20:
            return []
        sender = IPv4Address(about[12:16])
        ihl = (about[0] & 0x0F) * 4
        if (sender.is_unspecified or sender.is_multicast or sender.is_loopback or sender == LIMITED_BROADCAST
                or int.from_bytes(about[6:8], "big") & 0x1FFF
                or about[9] == PROTO_ICMP and about[ihl:ihl + 1] and about[ihl] in ICMP_ERROR_TYPES):
            self.counters["icmp-error-not-sent"] += 1
            return []
        if not self._icmp_allowed(now):
            self.counters.drop("icmp-error-rate-limited")
            return []
        body = bytes([icmp_type, code, 0, 0]) + rest + about[:ICMP_QUOTE]
        body = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        self.counters[f"icmp-error-sent:{icmp_type}-{code}"] += 1
        return [SendIcmp(sender, body, src=self.config.address, ttl=64)]

    def _icmp_allowed(self, now: float) -> bool:
        rate = self.config.icmp_error_rate
        if self._icmp_at is not None:
            self._icmp_tokens = min(rate, self._icmp_tokens + max(0.0, now - self._icmp_at) * rate)
        self._icmp_at = now
        if self._icmp_tokens < 1:
            return False
        self._icmp_tokens -= 1
        return True

    def reset(self, now: float) -> None:
        """Back to the state of a fresh start, at once: every binding dropped (its tunnel, host
        route and proxy-ARP entry removed, no reply sent: RFC 5944 3.8), the replay state and the
        counters cleared, advertising started over at sequence 0 (2.3.2) where it is on. What a
        restart does, without the restart (a conformance tester between its test parts)."""
        dropped = len(self.bindings)
        for home in list(self.bindings):
            self._out.extend(self._remove_binding(home))
        self._last_ident.clear()
        self._paths.clear()
        self._icmp_tokens, self._icmp_at = self.config.icmp_error_rate, None
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
            return [self._reply(fixed, self.nodes.get(fixed.home_address), ReplyCode.HA_POORLY_FORMED_REQUEST,
                                0, fixed.identification, [], src, sport, fa_sa)]
        node = self.nodes.get(req.home_address)
        try:
            self._authenticate(req, raw, node, fa_sa)
            self._check_identification(req, now)
            actions, code, lifetime, exts = self._register(req, src, sport, now, trusted, _destination(dst))
        except _Discarded as discard:
            self.counters.drop(discard.reason)
            n = self.counters[f"drop:{discard.reason}"]
            # a security exception, logged (SHOULD, 3.8.2.1 d) with a backoff: a flood must not flood the log
            return [Log("request-discarded", {"home": str(req.home_address), "source": str(src),
                                              "reason": discard.reason, "drops": n, "at": now})] \
                if n & (n - 1) == 0 else []
        except _Denied as denial:
            self.counters[f"denied:{denial.code}"] += 1
            ident = req.identification
            if denial.code == ReplyCode.HA_IDENTIFICATION_MISMATCH:
                ident = ident_for_mismatch(now, req.identification)
            log = Log("registration", {"home": str(req.home_address), "coa": str(req.care_of_address),
                                       "code": denial.code, "reason": denial.reason, "at": now})
            return [self._reply(req, node, denial.code, 0, ident, [], src, sport, fa_sa), log]
        self.counters[f"accepted:{code}"] += 1
        return actions + [self._reply(req, node, code, lifetime, req.identification, exts, src, sport, fa_sa)]

    def _on_udp_tunnel(self, payload: bytes, src, sport: int) -> list:
        """RFC 3519 tunnel data from a node behind a NAT (also its keepalives)."""
        src = addr(src)
        try:
            data = TunnelData.decode(payload)
            packet = data.payload
            inner = IPv4.decode(packet)
        except DecodeError as e:
            self.counters.drop(f"tunnel:{e.reason}")
            return []
        if data.next_header != ENCAP_IPIP:
            # RFC 3519 3.3: the Next Header must match the binding's tunnelling mode (every UDP
            # binding here carries IP-in-IP); a discrepancy: dropped
            self.counters.drop("tunnel:next-header-mismatch")
            return []
        binding = self.bindings.get(inner.src)
        if binding is None:
            self.counters.drop("reverse-src-not-bound")
            return []
        if binding.kind == "udp" and binding.awaiting_keepalive:
            return self._first_keepalive(binding, inner, packet, src, sport)
        if binding.kind != "udp" or (binding.remote, binding.remote_port) != (src, sport):
            self.counters.drop("reverse-outer-mismatch")
            return []
        self.counters["reverse-tunnelled"] += 1
        return [DeliverIp(packet)]

    def _first_keepalive(self, binding: Binding, inner: IPv4, packet: bytes, src: IPv4Address, sport: int) -> list:
        """RFC 3519 4.6, R set: the first keepalive sets the tunnel's destination. Its outer source
        address (not its port) must be the registration request's; its inner packet an ICMP echo
        request from the home address (the binding's, by lookup) to the HA. Anything else from the
        node before it is discarded (no port to check it against)."""
        if src != binding.remote:
            self.counters.drop("keepalive-outer-address-mismatch")
            return []
        if inner.dst != self.config.address or inner.proto != PROTO_ICMP or inner.payload[:1] != bytes([ICMP_ECHO_REQUEST]):
            self.counters.drop("udp-awaiting-first-keepalive")
            return []
        binding.remote_port, binding.awaiting_keepalive = sport, False
        self.counters["udp-keepalive-destination"] += 1
        # the echo request goes to the stack, whose echo reply comes back through the tunnel (3.1)
        return [AddTunnel(binding.home_address, self.config.address, src, "udp", sport, self.config.udp_keepalive),
                Log("udp-tunnel-destination", {"home": str(binding.home_address), "remote": str(src), "port": sport}),
                DeliverIp(packet)]

    def _authenticate(self, req: RegistrationRequest, raw: bytes, node, fa_sa) -> None:
        """RFC 5944 3.8.2.1 a, c and d. No security association with the node, or no
        authorization-enabling extension: discarded silently (a); an FA-HA from an FA we share no
        SA with: discarded (d); a bad MN-HA: 131; with an FA we share an SA with, a registration
        (not a deregistration, 3.5.4) needs exactly one valid FA-HA, else 132 (c)."""
        if node is None:
            raise _Discarded("unknown-home-address")
        mn_ha = [e for e in req.extensions if e.type == EXT_MN_HA_AUTH]
        if not mn_ha:
            raise _Discarded("missing-mn-ha-auth")
        fa_ha = [e for e in req.extensions if e.type == EXT_FA_HA_AUTH]
        if fa_ha and fa_sa is None:
            raise _Discarded("fa-ha-without-sa")
        if len(mn_ha) > 1:  # RFC 5944 3.8.2.1: exactly one authorization-enabling extension
            raise _Denied(ReplyCode.HA_MN_AUTH_FAILED, "two-mn-ha-auth")
        if mn_ha[0].spi < MIN_SPI:
            raise _Denied(ReplyCode.HA_MN_AUTH_FAILED, "reserved-spi")
        if not node.sa.verifies(raw, mn_ha[0]):
            raise _Denied(ReplyCode.HA_MN_AUTH_FAILED, "bad-mn-ha-auth")
        if fa_sa is None or is_deregistration(req):  # 3.5.4: FA-HA is not applied to deregistrations
            return
        if not fa_ha:
            raise _Denied(ReplyCode.HA_FA_AUTH_FAILED, "missing-fa-ha-auth")
        if len(fa_ha) > 1:
            raise _Denied(ReplyCode.HA_FA_AUTH_FAILED, "two-fa-ha-auth")
        if not fa_sa.verifies(raw, fa_ha[0]):
            raise _Denied(ReplyCode.HA_FA_AUTH_FAILED, "bad-fa-ha-auth")

    def _check_identification(self, req: RegistrationRequest, now: float) -> None:
        """Timestamp replay protection: close to our clock and above the last accepted one."""
        if abs(ntp_to_unix(req.identification) - now) > self.config.replay_tolerance:
            raise _Denied(ReplyCode.HA_IDENTIFICATION_MISMATCH, "timestamp-out-of-tolerance")
        if req.identification <= self._last_ident.get(req.home_address, -1):
            raise _Denied(ReplyCode.HA_IDENTIFICATION_MISMATCH, "identification-not-increasing")

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
            raise _Denied(ReplyCode.HA_UNKNOWN_HA_ADDRESS, "sent-to-broadcast")
        if req.home_agent != cfg.address:
            raise _Denied(ReplyCode.HA_UNKNOWN_HA_ADDRESS, "home-agent-address-not-ours")
        if home.is_unspecified or (req.lifetime and (coa.is_unspecified or coa.is_multicast)):
            raise _Denied(ReplyCode.HA_POORLY_FORMED_REQUEST, "bad-address")
        encapsulation = requested_encapsulation(req.flags)
        if encapsulation not in cfg.encapsulations:
            raise _Denied(ReplyCode.HA_ENCAPSULATION_UNAVAILABLE, f"{encapsulation or 'both-m-and-g'}-unavailable")
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
            return actions, ReplyCode.ACCEPTED, 0, self._trust_exts(trusted)
        if req.has(RequestFlags.T) and not cfg.reverse_tunnelling:
            raise _Denied(ReplyCode.HA_REVERSE_TUNNEL_UNAVAILABLE, "reverse-tunnelling-off")
        if cfg.reverse_tunnel_required and not req.has(RequestFlags.T):
            raise _Denied(ReplyCode.HA_REVERSE_TUNNEL_MANDATORY, "t-bit-missing")
        kind, remote, remote_port, exts = self._tunnel_choice(req, src, sport, encapsulation)
        awaiting = kind == "udp" and remote_port is None
        if home not in self.bindings and len(self.bindings) >= cfg.max_bindings:
            raise _Denied(ReplyCode.HA_INSUFFICIENT_RESOURCES, "binding-table-full")
        self._last_ident[home] = req.identification  # every check passed: the request is accepted
        node = self.nodes[home]
        granted = min(req.lifetime, node.max_lifetime or cfg.max_lifetime)
        binding = Binding(home, coa, granted, now + granted if granted != INFINITE_LIFETIME else float("inf"),
                          req.identification, kind, remote, remote_port, req.has(RequestFlags.T), now, awaiting)
        actions = self._install(binding)
        code = ReplyCode.ACCEPTED_NO_SIMULTANEOUS if req.has(RequestFlags.S) else ReplyCode.ACCEPTED
        actions.append(Log("registration", {"home": str(home), "coa": str(coa), "code": int(code),
                                            "lifetime": granted, "tunnel": kind, "at": now}))
        return actions, code, granted, exts + self._trust_exts(trusted)

    def _tunnel_choice(self, req: RegistrationRequest, src: IPv4Address, sport: int, encapsulation: str):
        """The requested `encapsulation`, unless RFC 3519 UDP tunnelling is asked for and a NAT is
        detected (the request's source differs from the care-of address) or it is forced: then UDP
        carrying IP-in-IP, the one inner encapsulation offered there. With R (via a foreign agent
        behind a NAT, 4.6) the destination port is not the request's: None, until the first keepalive."""
        udp_req = self._udp_tunnel_request(req)
        nat = src != req.care_of_address
        if udp_req is None:
            if nat:
                self.counters["nat-without-udp-request"] += 1
            return encapsulation, req.care_of_address, None, []
        if not (nat or udp_req.force or udp_req.via_fa):
            # RFC 3519 4.6: no NAT seen and F clear: a declining UDP Tunnel Reply; the tunnel is the
            # one the M and G bits ask for
            self.counters["udp-declined-no-nat"] += 1
            return encapsulation, req.care_of_address, None, [UdpTunnelReply(UDP_TUNNEL_DECLINED, False, 0)]
        inner = udp_req.encapsulation or ENCAP_NUMBERS[encapsulation]  # 0: as M and G ask (3.1.4)
        if inner != ENCAP_IPIP:
            # RFC 3519 4.1: tunnelling indicated, the requested encapsulation unavailable: 142
            raise _Denied(ReplyCode.HA_UDP_ENCAPSULATION_UNAVAILABLE, f"udp-encapsulation-{inner}-unavailable")
        if not self.config.udp_tunnelling:
            raise _Denied(ReplyCode.HA_UDP_ENCAPSULATION_UNAVAILABLE, "udp-tunnelling-off")
        self.counters["nat-detected" if nat else "udp-forced"] += 1
        reply_ext = UdpTunnelReply(0, udp_req.force, self.config.udp_keepalive)
        if udp_req.via_fa:
            # RFC 3519 4.6: the request's source port may be the foreign agent's NAT mapping, not
            # the node's: the HA waits for the first keepalive (from this source address)
            self.counters["udp-r-flag"] += 1
            return "udp", src, None, [reply_ext]
        return "udp", src, sport, [reply_ext]

    def _udp_tunnel_request(self, req: RegistrationRequest):
        """The request's UDP Tunnel Request, or None. One with a non-zero Reserved 3 is handled as
        not understood and silently skipped (RFC 3519 3.1, 3.1.3 MUST; 4.6.1 suggests 134 instead,
        but a refusal would defeat what 3.1.3 gives Reserved 3 for: a later version's extension
        that an older home agent skips while the registration goes on). RFC 3519 4.6.1's other
        errors get 134 (SHOULD): placed by the node (before the MN-HA authentication) with D clear,
        or by a foreign agent (after it) with D set (3.1.5: a node asking for UDP tunnelling
        decapsulates itself)."""
        placed_by_node = True
        for ext in req.extensions:
            if ext.type == EXT_MN_HA_AUTH:
                placed_by_node = False
            if ext.type != EXT_UDP_TUNNEL_REQUEST:
                continue
            if not ext.understood:
                self.counters["udp-tunnel-request-skipped"] += 1
                continue
            if placed_by_node != req.has(RequestFlags.D):
                raise _Denied(ReplyCode.HA_POORLY_FORMED_REQUEST,
                              "udp-tunnel-request-without-d" if placed_by_node else "fa-udp-tunnel-request-with-d")
            return ext
        return None

    @staticmethod
    def _trust_exts(trusted: bool) -> list:
        return [TrustedNetworksConfigured()] if trusted else []

    def _reply(self, req, node, code: int, lifetime: int, ident: int, exts: list, dst, dport,
               fa_sa: SecurityAssociation | None = None) -> SendUdp:
        """The reply, MN-HA signed; to an FA we share an SA with, an FA-HA after it, last (RFC 5944
        3.8.1, 3.8.3.3 c and e), except in answer to a deregistration (3.5.4: MUST NOT)."""
        reply = RegistrationReply(code, lifetime, req.home_address, self.config.address, ident, exts)
        data = reply.encode()
        if node is not None:
            data = node.sa.sign(data)
        if fa_sa is not None and not is_deregistration(req):
            data = fa_sa.sign(data, EXT_FA_HA_AUTH)
        return SendUdp(dst, dport, data, src=self.config.address)

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


def _carries(binding: Binding, proto: int, after_header: bytes) -> bool:
    """Whether a packet of IP protocol `proto` (what followed its header: `after_header`) from the HA
    to the binding's far end is one of the binding's tunnel packets."""
    if binding.kind == "udp":
        if proto != PROTO_UDP or binding.remote_port is None:
            return False
        return len(after_header) < 4 or (int.from_bytes(after_header[0:2], "big"),
                                         int.from_bytes(after_header[2:4], "big")) == (MIP_PORT, binding.remote_port)
    # a fragment that minimal encapsulation could not carry went in IP-in-IP (RFC 2004 3)
    return proto == KINDS[binding.kind] or proto == PROTO_IPIP and binding.kind == "minimal"


def _quoted_inner(kind: str, proto: int, after_header: bytes) -> bytes | None:
    """The original datagram (as far as quoted) inside a quoted tunnel packet, None when the quote
    does not reach its header (minimal encapsulation rewrote it: never recoverable from a quote)."""
    if proto == PROTO_IPIP:
        inner = after_header
    elif kind == "gre":
        inner = after_header[8:] if after_header[:1] and after_header[0] & 0x80 else after_header[4:]
    elif kind == "udp":
        inner = after_header[8 + 4:]  # UDP header, MIP tunnel data header
    else:
        return None
    return inner if len(inner) >= 20 and inner[0] >> 4 == 4 else None


def _dont_fragment(packet: bytes) -> bool:
    return len(packet) >= 8 and bool(packet[6] & 0x40)


def _reported_mtu(mtu: int, length: int) -> int:
    """The tunnel MTU a Datagram Too Big reports: its next-hop MTU, or (an old router's 0, RFC 1191
    5) the plateau below the quoted packet's length; never below 68."""
    if mtu < MIN_MTU or (length and mtu >= length > MIN_MTU):
        mtu = next((p for p in MTU_PLATEAUS if p < length), MIN_MTU) if length else MIN_MTU
    return max(mtu, MIN_MTU)


def _mtu_field(mtu: int) -> bytes:
    """The second word of a Datagram Too Big: unused, next-hop MTU (RFC 1191 4)."""
    return bytes(2) + max(mtu, MIN_MTU).to_bytes(2, "big")


def _inner_dst(packet: bytes) -> IPv4Address | None:
    """The inner destination of an IP-in-IP packet, None when it is too short to have one."""
    inner = packet[(packet[0] & 0x0F) * 4:]
    return ipv4_dst(inner)
