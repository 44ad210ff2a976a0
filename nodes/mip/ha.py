"""Home Agent core (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 UDP tunnels, RFC 5265 i-HA role).

Follows nodes/core.py. Inputs: `start` (boot: with `advertise`, the first agent advertisement on
the home network), `receive_icmp` (agent solicitations heard on the home network),
`receive_datagram` (UDP 434: requests and RFC 3519 tunnel data), `receive_tunnelled` (a received
IP-in-IP packet: reverse tunnels), `encapsulate` (a packet for a home address, captured on the
home link), `handle_timer` (binding expiry, advertisements). Outputs: the actions of
`nodes.mip.actions` through `drain_actions()`, and `status(now)`. One binding per home address.

With `advertise`, the home agent sends Agent Advertisements on its home network (RFC 5944 2.1:
H bit, no care-of addresses, code 16 as it is not the network's router; periodic and solicited,
nodes/mip/advertiser.py), so a mobile node coming home learns it from them (4.2, 3.6).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network

from nodes.mip.actions import (
    AddTunnel, DeliverIp, GratuitousArp, Log, ProxyArp, RemoveTunnel, SendIp, SendUdp,
)
from nodes.mip.advertiser import ALL_SYSTEMS, KEYS as ADVERTISER_KEYS, Advertiser, advertisement_destination
from nodes.mip.auth import SecurityAssociation
from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.common import (
    ENCAPSULATIONS, Counters, Deadlines, Snapshot, addr, ipv4_dst, parse_registration, requested_encapsulation,
    supported_encapsulations,
)
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_IPIP, IPv4
from nodes.wire.tunnels import NotEncapsulable, encapsulate
from nodes.wire.mip import (
    ENCAP_GRE, ENCAP_IPIP, ENCAP_MINIMAL, EXT_FA_HA_AUTH, MIN_SPI, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REQUEST,
    INFINITE_LIFETIME,
    TYPE_REQUEST, TYPE_TUNNEL_DATA, AgentAdvertisement, AgentFlags, RegistrationReply, RegistrationRequest,
    ReplyCode, RequestFlags,
    TrustedNetworksConfigured, TunnelData, UdpTunnelReply,
    ident_for_mismatch, message_type, ntp_to_unix,
)

NOT_A_DEFAULT_ROUTER = -0x80000000  # RFC 1256 preference 0x80000000
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
UDP_TUNNEL_DECLINED = 64  # RFC 3519 3.2.1: "tunnelling declined, reason unspecified"
ENCAP_NUMBERS = {"ipip": ENCAP_IPIP, "minimal": ENCAP_MINIMAL, "gre": ENCAP_GRE}  # RFC 3519 3.1.4


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
        """An IP-in-IP packet addressed to the HA: a reverse tunnel from a care-of address."""
        try:
            outer = IPv4.decode(packet)
            if outer.proto != PROTO_IPIP:
                return self.counters.drop("not-ipip")
            inner = IPv4.decode(outer.payload)
        except DecodeError as e:
            return self.counters.drop(f"tunnel:{e.reason}")
        binding = self.bindings.get(inner.src)
        if binding is None:
            return self.counters.drop("reverse-src-not-bound")
        if binding.kind == "udp" or outer.src != binding.remote:  # reverse tunnels are IP-in-IP
            return self.counters.drop("reverse-outer-mismatch")
        self.counters["reverse-tunnelled"] += 1
        self._out.add(DeliverIp(outer.payload))

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

    def reset(self, now: float) -> None:
        """Back to the state of a fresh start, at once: every binding dropped (its tunnel, host
        route and proxy-ARP entry removed, no reply sent: RFC 5944 3.8), the replay state and the
        counters cleared, advertising started over at sequence 0 (2.3.2) where it is on. What a
        restart does, without the restart (a conformance tester between its test parts)."""
        dropped = len(self.bindings)
        for home in list(self.bindings):
            self._out.extend(self._remove_binding(home))
        self._last_ident.clear()
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
        if binding.kind != "udp" or (binding.remote, binding.remote_port) != (src, sport):
            self.counters.drop("reverse-outer-mismatch")
            return []
        self.counters["reverse-tunnelled"] += 1
        return [DeliverIp(packet)]

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
        if home not in self.bindings and len(self.bindings) >= cfg.max_bindings:
            raise _Denied(ReplyCode.HA_INSUFFICIENT_RESOURCES, "binding-table-full")
        self._last_ident[home] = req.identification  # every check passed: the request is accepted
        node = self.nodes[home]
        granted = min(req.lifetime, node.max_lifetime or cfg.max_lifetime)
        binding = Binding(home, coa, granted, now + granted if granted != INFINITE_LIFETIME else float("inf"),
                          req.identification, kind, remote, remote_port, req.has(RequestFlags.T), now)
        actions = self._install(binding)
        code = ReplyCode.ACCEPTED_NO_SIMULTANEOUS if req.has(RequestFlags.S) else ReplyCode.ACCEPTED
        actions.append(Log("registration", {"home": str(home), "coa": str(coa), "code": int(code),
                                            "lifetime": granted, "tunnel": kind, "at": now}))
        return actions, code, granted, exts + self._trust_exts(trusted)

    def _tunnel_choice(self, req: RegistrationRequest, src: IPv4Address, sport: int, encapsulation: str):
        """The requested `encapsulation`, unless RFC 3519 UDP tunnelling is asked for and a NAT is
        detected (the request's source differs from the care-of address) or it is forced: then UDP
        carrying IP-in-IP, the one inner encapsulation offered there."""
        udp_req = self._udp_tunnel_request(req)
        nat = src != req.care_of_address
        if udp_req is None:
            if nat:
                self.counters["nat-without-udp-request"] += 1
            return encapsulation, req.care_of_address, None, []
        if not (nat or udp_req.force):
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
        return "udp", src, sport, [reply_ext]

    def _udp_tunnel_request(self, req: RegistrationRequest):
        """The request's UDP Tunnel Request, or None. One with a non-zero Reserved 3 is handled as
        not understood and silently skipped (RFC 3519 3.1.3)."""
        for ext in req.extensions:
            if ext.type != EXT_UDP_TUNNEL_REQUEST:
                continue
            if not ext.understood:
                self.counters["udp-tunnel-request-skipped"] += 1
                continue
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


def _inner_dst(packet: bytes) -> IPv4Address | None:
    """The inner destination of an IP-in-IP packet, None when it is too short to have one."""
    inner = packet[(packet[0] & 0x0F) * 4:]
    return ipv4_dst(inner)
