"""Mobile Node core (RFC 5944 agent discovery, movement detection and registration; RFC 3519).

Follows nodes/core.py. Inputs: `link_up` / `link_down` (from the runtime's link monitor),
`set_care_of_address` (a co-located care-of address, None when lost), `receive_icmp` (agent
advertisements), `receive_datagram` (registration replies), `receive_arp` (an ARP answer to one of
the movement probes), `dhcp_bound` / `dhcp_failed` (the outcome of a `StartDhcp`), `handle_timer`.
Outputs: `drain_actions()` and `status(now)`. Movement detection beyond agent advertisements (ARP
probes, DHCP, the link configuration to apply) is nodes/mip/movement.py. Identifications are NTP
timestamps whose low bits, below the clock's resolution, come from the injected random source
(RFC 5944 5.7).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.actions import AddTunnel, GratuitousArp, Log, RemoveTunnel, SendIcmp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.common import ENCAPSULATIONS, Counters, Snapshot, addr
from nodes.mip.mn_messages import (
    Agent, Attempt, Identifications, Registration, check_reply, keepalive_packet, request_for,
    requested_encapsulation,
)
from nodes.mip.movement import CoLocatedNetwork, Movement
from nodes.wire.errors import DecodeError
from nodes.wire.mip import (
    ENCAP_IPIP, EXT_TRUSTED_NETWORKS, EXT_UDP_TUNNEL_REPLY, ICMP_ROUTER_ADVERTISEMENT, MIP_PORT, AgentAdvertisement,
    AgentFlags, AgentSolicitation, RegistrationReply, ReplyCode, TunnelData, agent_rebooted, find_extension,
    is_accepted,
)

ALL_ROUTERS = IPv4Address("224.0.0.2")
RETRY_AFTER_DENIAL = {66, 78, 80, 81, 82, 88, 130}  # transient: try again after a backoff
# RFC 5944 2.4.2: "the mobile node MUST NOT register more frequently than once per second on
# average": a token bucket, one request a second, bursts of at most two, on one attachment: what
# advertisements (agents heard in turn, reboots) and retransmissions can trigger. A link-layer
# attachment (link up) refills it: a move to another link is registered at once, however soon after
# the last one (cases/mobility/test_disruption.py moves every 0.2 s and allows 0.5 s of outage)
MIN_REQUEST_INTERVAL = 1.0
REQUEST_BURST = 2.0
SOLICIT_JITTER = (0.02, 0.05)  # solicitation intervals: nominal * (1 + U(these)), RFC 5944 2.4


class MnState(StrEnum):
    """Where the node's registration stands (its status' `state`, the member's value)."""

    DETACHED = "detached"  # no link
    DISCOVERING = "discovering"  # on a link, no agent or network known yet (RFC 5944 2.4)
    REGISTERING = "registering"  # a request in flight (3.6)
    REGISTERED = "registered"  # a binding accepted and not yet expired
    DENIED = "denied"  # the last reply was a denial
    HOME = "home"  # at home with no binding (3.6.1.2: deregistered)


class Location(StrEnum):
    """Where the node believes it is (its status' `location`)."""

    UNKNOWN = "unknown"
    HOME = "home"
    FOREIGN = "foreign"


@dataclass
class MobileNodeConfig:
    home_address: IPv4Address
    home_agent: IPv4Address
    home_network: IPv4Network
    sa: SecurityAssociation  # MN-HA
    iface: str | None = None
    lifetime: int = 1800  # requested
    reverse_tunnel: bool = False  # T bit
    udp_tunnel: str = "auto"  # RFC 3519 ext 144: "auto" when co-located, "always", "never"
    force_udp: bool = False  # F bit of ext 144
    encapsulation: str = "ipip"  # the forward tunnel asked for: "minimal" sets M, "gre" sets G (RFC 5944 3.3)
    # with a co-located care-of address on a link whose foreign agent advertises R: True, register
    # that address through the agent (RFC 5944 3.2, RFC 3519 4.4: the mobile node daemon); False,
    # register the agent's own care-of address instead (also registration via the agent). False by
    # default: the RFC 5265 mobile VPN node's inside detection reads an agent attachment of its
    # x-MIP layer as access mode f (an FA care-of address for i-MIP, RFC 5265 2.2)
    colocated_through_agent: bool = False
    solicit_interval: float = 1.0
    solicit_burst: int = 3  # at most this many at solicit_interval, then exponential backoff
    solicit_max_interval: float = 60.0
    retransmit_initial: float = 1.0
    retransmit_max: float = 32.0
    reregister_fraction: float = 0.8  # re-register after this part of the granted lifetime
    # movement detection (nodes/mip/movement.py): without a home router and networks, only agent
    # advertisements and set_care_of_address() tell the node where it is
    home_router: IPv4Address | None = None
    networks: dict[str, CoLocatedNetwork] = field(default_factory=dict)
    probe_interval: float = 0.05  # ARP probes: first interval, doubled up to probe_max_interval
    probe_max_interval: float = 1.0
    dhcp_after: float = 0.3  # seconds after link up with the network still unknown
    dhcp_retry: float = 1.0

    def __post_init__(self):
        self.home_address, self.home_agent = addr(self.home_address), addr(self.home_agent)
        self.home_network = IPv4Network(self.home_network)
        self.home_router = addr(self.home_router) if self.home_router is not None else None
        if self.udp_tunnel not in ("auto", "always", "never"):
            raise ValueError(f"udp_tunnel must be auto, always or never, not {self.udp_tunnel!r}")
        if self.encapsulation not in ENCAPSULATIONS:
            raise ValueError(f"encapsulation must be one of {', '.join(ENCAPSULATIONS)}, not {self.encapsulation!r}")


@dataclass(frozen=True)
class MobileNodeStatus(Snapshot):
    role = "mn"
    home_address: str
    location: Location
    state: MnState
    mode: str | None
    care_of_address: str | None
    registered_until: float | None
    tunnel: str | None
    trusted_network: bool
    agent: dict | None
    last_code: int | None
    attachment: dict | None
    network: str | None
    dhcp: dict
    link_up: bool
    counters: dict
    drops: dict


class MobileNode:
    def __init__(self, config: MobileNodeConfig, random: RandomSource = system_random):
        self.config = config
        self.random = random
        self._out = ActionQueue()
        self.counters = Counters()
        self.link_is_up = False
        self.location = Location.UNKNOWN
        self.agent: Agent | None = None
        self.colocated: IPv4Address | None = None
        self.attempt: Attempt | None = None
        self.registration: Registration | None = None
        self.state = MnState.DETACHED
        self.last_code: int | None = None
        self.identifications = Identifications(random)
        self._away = False  # a binding may exist at the HA
        self._solicits = 0
        self._next_solicit: float | None = None
        self._retry_at: float | None = None
        self._tokens, self._tokens_at = REQUEST_BURST, None  # the registration rate's token bucket
        self._candidate: Agent | None = None  # another agent heard while the current one still advertises
        self._keepalives = 0  # keepalives sent at registration (their ICMP sequence numbers)
        self.movement = Movement(config, self.counters)

    # --- link events ----------------------------------------------------------------------------

    def link_up(self, now: float, *, care_of_address=None) -> None:
        """Attached to a link: forget the old agent, solicit (RFC 5944 2.4.1), probe the known
        networks' routers."""
        self._out.extend(self.movement.link_up(now))
        self._done(self._link_up(now, care_of_address), now)

    def link_down(self, now: float) -> None:
        self._out.extend(self.movement.link_down(now))
        self._done(self._link_down(now), now)

    def set_care_of_address(self, care_of_address, now: float) -> None:
        """A co-located care-of address from static config (None: lost it)."""
        self._done(self._set_care_of_address(care_of_address, now), now)

    def receive_icmp(self, data: bytes, addr: Addr, now: float) -> None:
        """An ICMP message on the link: agent advertisements are heard."""
        self._done(self._on_icmp(data, addr.src, now), now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """UDP 434: registration replies."""
        self._done(self._on_udp(data, now), now)

    def receive_arp(self, sender, target, now: float) -> None:
        """An ARP answer from `sender` to our address `target`: it may name the network."""
        if not self.link_is_up or self.movement.network is not None or self._with_fa():
            return
        name = self.movement.arp_match(addr(sender), addr(target))
        self._done(self._identified(name, now, "arp") if name else [], now)

    def dhcp_bound(self, attempt: int, address, router, seconds: float, now: float, *, server=None,
                   lease_time: int | None = None, reason: str = "BOUND") -> None:
        """The lease the DHCP client of `attempt` got (address with its prefix, router...)."""
        lease = {"address": address, "router": router, "server": server, "lease_time": lease_time, "reason": reason}
        actions, name = self.movement.dhcp_bound(attempt, lease, seconds, now, self._unidentified())
        self._done(actions + (self._identified(name, now, "dhcp") if name else []), now)

    def dhcp_failed(self, attempt: int, reason: str, now: float) -> None:
        self._done(self.movement.dhcp_failed(attempt, reason, now, self._unidentified()), now)

    def handle_timer(self, now: float) -> None:
        self._done(self._tick(now), now)

    def _done(self, actions: list, now: float) -> None:
        """After every input: its actions, then the link configuration follows the node onto a
        foreign agent's link (the request to the agent goes out first, as a frame to its MAC; the
        routes follow while it travels), then the movement probes and DHCP that are due."""
        self._out.extend(actions)
        if self._with_fa() and self.agent is not None:
            self._out.extend(self.movement.configure("fa", self.agent.address))
        self._out.extend(self.movement.due(now, self._with_fa(), self._unidentified()))

    def _with_fa(self) -> bool:
        a, reg = self.attempt, self.registration
        mode = a.mode if a else reg.mode if reg else None
        return self.location == Location.FOREIGN and mode == "fa"

    def _unidentified(self) -> bool:
        """Nothing has told the node where it is yet (the condition for DHCP)."""
        return (self.link_is_up and self.movement.network is None and not self._with_fa()
                and self.location != Location.HOME)

    def _identified(self, name: str, now: float, by: str) -> list:
        actions, care_of_address = self.movement.identify(name, now, by)
        return actions + self._set_care_of_address(care_of_address, now)

    def drain_actions(self) -> list:
        return self._out.drain()

    def _drop(self, reason: str) -> list:
        self.counters.drop(reason)
        return []

    def _link_up(self, now: float, care_of_address=None) -> list:
        self.link_is_up, self.agent, self.attempt, self.location = True, None, None, Location.UNKNOWN
        self._candidate = None
        self._tokens, self._tokens_at = REQUEST_BURST, now  # a new attachment: see REQUEST_BURST
        self.state = MnState.DISCOVERING
        self.colocated = addr(care_of_address) if care_of_address else None
        self._solicits, self._next_solicit, self._retry_at = 0, now, None
        actions = self._solicit(now)
        if self.colocated:
            actions += self._decide(now)
        return actions

    def _link_down(self, now: float) -> list:
        self.link_is_up, self.agent, self.attempt, self.colocated = False, None, None, None
        self._candidate = None
        self._next_solicit = self._retry_at = None
        self.state, self.location = MnState.DETACHED, Location.UNKNOWN
        self.counters["link-down"] += 1
        return []

    def _set_care_of_address(self, care_of_address, now: float) -> list:
        self.colocated = addr(care_of_address) if care_of_address else None
        return self._decide(now) if self.link_is_up else []

    # --- agent discovery and movement detection -------------------------------------------------

    def _on_icmp(self, payload: bytes, src, now: float) -> list:
        if not payload or payload[0] != ICMP_ROUTER_ADVERTISEMENT:
            return self._drop("icmp-not-advertisement")
        try:
            adv = AgentAdvertisement.decode(payload)
        except DecodeError as e:
            return self._drop(f"advertisement:{e.reason}")
        if not self.link_is_up:
            return self._drop("link-down")
        self.counters["advertisements"] += 1
        heard = Agent.heard(adv, addr(src), now)
        if self._keeps_current_agent(heard, now):
            # RFC 5944 2.4.2.1 / 3.6: another agent while ours still advertises is no move; it is
            # kept in mind for when ours falls silent
            self._candidate = heard
            self._next_solicit = None
            self.counters["other-agent-ignored"] += 1
            return []
        old, self.agent = self.agent, heard
        moved = old is None or old.address != self.agent.address or old.prefix != self.agent.prefix
        rebooted = not moved and agent_rebooted(old.sequence, adv.sequence)
        self._next_solicit = None  # heard an agent: stop soliciting
        if rebooted:
            self.counters["agent-rebooted"] += 1
            self.registration = None  # the FA lost its visitor list
        if moved:
            self.counters["movements"] += 1
        if self._from_home_agent(self.agent) and self.movement.network != "home":
            # RFC 5944 4.2 / 3.6: an advertisement of our home agent says we are home: the link is
            # configured for home and the binding is cancelled now, no ARP probe awaited
            return self._identified("home", now, "advertisement")
        return self._decide(now) if (moved or rebooted) else []

    def _keeps_current_agent(self, heard: Agent, now: float) -> bool:
        """Whether an advertisement from `heard`, another agent than the one in use, leaves the node
        with its agent: yes while the current agent's advertisement lifetime runs (move detection by
        lifetime, RFC 5944 2.4.2.1), unless both advertise prefix lengths and the prefixes differ
        (2.4.2.2) or the current agent is of no use (denied us, or neither foreign nor our home
        agent)."""
        cur = self.agent
        if cur is None or cur.address == heard.address or cur.expires <= now or self.state == MnState.DENIED:
            return False
        if not (cur.is_foreign or self._from_home_agent(cur)):
            return False
        return not (cur.prefix_known and heard.prefix_known and cur.prefix != heard.prefix)

    def answers_arp_for_home(self, sender, broadcast: bool) -> bool:
        """RFC 5944 4.6: away from home the node "MUST NOT reply to ARP Requests in which the target
        IP address is its own home address unless the ARP Request is unicast by a foreign agent with
        which the mobile node is attempting to register or ... has an unexpired registration" (then
        with a unicast reply). At home it answers."""
        if self.location == Location.HOME:
            return True
        a, reg = self.attempt, self.registration
        fa = (a is not None and a.mode == "fa") or (reg is not None and reg.mode == "fa")
        return (not broadcast and fa and self.agent is not None and self.agent.address == addr(sender))

    def _from_home_agent(self, agent: Agent | None) -> bool:
        """An advertisement with H from our home agent (or another home agent on our home network)."""
        return agent is not None and agent.is_home and (agent.address == self.config.home_agent
                                                         or agent.address in self.config.home_network)

    def _at_home(self) -> bool:
        net = self.config.home_network
        if self.colocated is not None and self.colocated in net:
            return True
        return self._from_home_agent(self.agent)

    def _decide(self, now: float) -> list:
        """Where are we, and what registration does that need."""
        if self._at_home():
            return self._return_home(now)
        fa = self.agent if self.agent is not None and self.agent.is_foreign else None
        if fa is not None and (self.colocated is None or
                               (fa.flags & AgentFlags.R and not self.config.colocated_through_agent)):
            self.location = Location.FOREIGN
            return self._start(now, "fa")
        if self.colocated is not None:
            # through a foreign agent that advertises R (RFC 5944 3.2), else directly (_start)
            self.location = Location.FOREIGN
            return self._start(now, "colocated")
        return []

    def _requiring_agent(self, now: float) -> Agent | None:
        """The foreign agent a co-located care-of address is registered through: one heard on this
        link, within its advertisement lifetime, with R set. RFC 5944 3.2: "If a mobile node is
        using a co-located care-of address, and receives an Agent Advertisement from a foreign
        agent on the link on which it is using this care-of address, the mobile node SHOULD
        register via that foreign agent ... if the 'R' bit is set"; otherwise it "MUST register
        directly with its home agent"."""
        a = self.agent
        if not self.config.colocated_through_agent or a is None or not a.is_foreign or not a.flags & AgentFlags.R \
                or a.expires <= now:
            return None
        return a

    def _return_home(self, now: float) -> list:
        if self.location == Location.HOME and (self.state == MnState.HOME or (self.attempt and self.attempt.mode == "home")):
            return []  # home already (told by ARP, then by the home agent's advertisement): nothing new
        self.location = Location.HOME
        actions: list = [GratuitousArp(self.config.home_address, self.config.iface)]
        if self.registration and self.registration.mode == "colocated":
            actions.append(RemoveTunnel(self.config.home_address))
        self.registration = None
        if not self._away:
            self.state, self.attempt = MnState.HOME, None
            return actions
        return actions + self._start(now, "home")

    def _solicit(self, now: float) -> list:
        cfg = self.config
        self._solicits += 1
        n = self._solicits
        delay = cfg.solicit_interval if n < cfg.solicit_burst else cfg.solicit_interval * 2 ** (n - cfg.solicit_burst + 1)
        # RFC 5944 2.4: "Mobile nodes MUST randomize their solicitation times around these nominal
        # values"; only upwards, never above the maximum rate of one a second
        low, high = SOLICIT_JITTER
        jitter = low + (high - low) * int.from_bytes(self.random(2), "big") / 0xFFFF
        self._next_solicit = now + min(delay, cfg.solicit_max_interval) * (1 + jitter)
        self.counters["solicitations"] += 1
        src = self.colocated or cfg.home_address
        return [SendIcmp(ALL_ROUTERS, AgentSolicitation().encode(), src=src, ttl=1, iface=cfg.iface)]

    # --- registration ---------------------------------------------------------------------------

    def _start(self, now: float, mode: str, lifetime: int | None = None) -> list:
        cfg = self.config
        home = cfg.home_address
        if self._refill(now) < 1:
            # RFC 5944 2.4.2: no more than one registration a second on average: the registration
            # is decided again when the bucket has a token
            self.attempt, self.state = None, MnState.REGISTERING
            self._retry_at = now + (1 - self._tokens) * MIN_REQUEST_INTERVAL
            self.counters["registration-deferred"] += 1
            return []
        if mode == "home":
            attempt = Attempt(mode, 0, home, cfg.home_agent, home)
        elif mode == "fa":
            wanted = cfg.lifetime if lifetime is None else lifetime
            if self.agent.max_lifetime:
                # RFC 5944 3.6.1.2: SHOULD NOT exceed the agent's advertised Registration Lifetime
                wanted = min(wanted, self.agent.max_lifetime)
            attempt = Attempt(mode, wanted, self.agent.care_of_addresses[0], self.agent.address, home,
                              agent_flags=self.agent.flags)
        elif (via := self._requiring_agent(now)) is not None:
            # the co-located care-of address in the request, sent to the agent (its link-layer
            # address learnt from the advertisement), which relays it (RFC 5944 3.6.1.1, 3.7.2)
            wanted = cfg.lifetime if lifetime is None else lifetime
            if via.max_lifetime:
                wanted = min(wanted, via.max_lifetime)  # 3.6.1.2, as through the agent's own address
            attempt = Attempt(mode, wanted, self.colocated, via.address, self.colocated, agent_flags=via.flags,
                              via_fa=True)
        else:
            attempt = Attempt(mode, cfg.lifetime if lifetime is None else lifetime, self.colocated,
                              cfg.home_agent, self.colocated)
        attempt.first_sent_at, attempt.timeout = now, cfg.retransmit_initial
        self.attempt, self.state, self._retry_at = attempt, MnState.REGISTERING, None
        return self._send(now)

    def _refill(self, now: float) -> float:
        if self._tokens_at is not None:
            self._tokens = min(REQUEST_BURST, self._tokens + max(0.0, now - self._tokens_at) / MIN_REQUEST_INTERVAL)
        self._tokens_at = now
        return self._tokens

    def _send(self, now: float) -> list:
        """(Re)send the attempt with a fresh identification; arm the retransmission."""
        a = self.attempt
        a.identification = self.identifications.next(now)
        a.sent_at = now
        self._tokens = max(0.0, self._refill(now) - 1)  # every request counts, retransmissions too
        a.retransmit_at = now + a.timeout
        self.counters["requests"] += 1
        self._away = self._away or a.mode != "home"
        ttl = 255 if a.through_agent else 64  # RFC 3024 3.2: the foreign agent checks 255
        return [SendUdp(a.dst, MIP_PORT, request_for(self.config, a), src=a.src, ttl=ttl, iface=self.config.iface)]

    def _on_udp(self, payload: bytes, now: float) -> list:
        reply, dropped = check_reply(self.config, self.attempt, payload)
        if reply is None:
            return self._drop(dropped)
        self.last_code = reply.code
        self.counters[f"reply:{reply.code}"] += 1
        if is_accepted(reply.code):
            return self._accepted(reply, now)
        return self._denied(reply, now)

    def _accepted(self, reply: RegistrationReply, now: float) -> list:
        a, cfg = self.attempt, self.config
        self.attempt = None
        log = self._log("registration", {"mode": a.mode, "coa": str(a.care_of_address), "code": reply.code,
                                         "lifetime": reply.lifetime, "elapsed": round(now - a.first_sent_at, 6),
                                         "at": now, **({"via": str(a.dst)} if a.via_fa else {})})
        if a.mode == "home":
            self._away, self.state, self.registration = False, MnState.HOME, None
            return [log]
        udp = find_extension(reply.extensions, EXT_UDP_TUNNEL_REPLY)
        tunnel = "udp" if udp is not None and udp.code < 64 else requested_encapsulation(cfg, a)
        self.registration = Registration(
            a.mode, a.care_of_address, reply.lifetime, a.sent_at + reply.lifetime,
            a.sent_at + reply.lifetime * cfg.reregister_fraction, tunnel,
            find_extension(reply.extensions, EXT_TRUSTED_NETWORKS) is not None,
        )
        self.state = MnState.REGISTERED
        if a.mode == "colocated":
            self._next_solicit = None  # a co-located care-of address in use: no more soliciting (2.4)
            tunnel_action = AddTunnel(cfg.home_address, a.care_of_address, cfg.home_agent, tunnel,
                                      MIP_PORT if tunnel == "udp" else None, udp.keepalive if udp else None)
            if a.via_fa and tunnel == "udp":
                # RFC 3519 4.4: registered through a foreign agent with R in the UDP Tunnel Request,
                # "the mobile node also MUST send a keepalive as soon as its registration has been
                # accepted": the home agent learns the tunnel's port from it (4.11)
                return [tunnel_action, self._keepalive(a), log]
        else:
            tunnel_action = RemoveTunnel(cfg.home_address)
        return [tunnel_action, log]

    def _keepalive(self, a: Attempt) -> SendUdp:
        """A keepalive in the UDP tunnel, from the port of the registration (RFC 3519 4.4)."""
        cfg = self.config
        self._keepalives += 1
        self.counters["keepalives-at-registration"] += 1
        data = TunnelData(ENCAP_IPIP, keepalive_packet(cfg.home_address, cfg.home_agent, self._keepalives))
        return SendUdp(cfg.home_agent, MIP_PORT, data.encode(), src=a.care_of_address, sport=MIP_PORT,
                       iface=cfg.iface)

    def _denied(self, reply: RegistrationReply, now: float) -> list:
        a = self.attempt
        if reply.code == ReplyCode.HA_IDENTIFICATION_MISMATCH and not a.resynced:
            self.identifications.resync(reply.identification, now)
            self.counters["clock-resync"] += 1
            a.resynced = True
            return self._send(now)
        if reply.code == ReplyCode.FA_LIFETIME_TOO_LONG and 0 < reply.lifetime < a.lifetime:
            a.lifetime = reply.lifetime
            return self._send(now)
        self.attempt, self.state = None, MnState.DENIED
        if reply.code in RETRY_AFTER_DENIAL:
            self._retry_at = now + a.timeout
        return [self._log("registration-denied", {"mode": a.mode, "code": reply.code, "at": now})]

    def _log(self, event: str, fields: dict) -> Log:
        """A registration log line; a co-located one on a leased address notes the DHCP timing."""
        note = self.movement.dhcp_note(fields["mode"])
        return Log(event, {**fields, "dhcp": note} if note else fields)

    # --- timers and status ----------------------------------------------------------------------

    def _tick(self, now: float) -> list:
        actions: list = []
        if self.agent is not None and self.agent.expires <= now:
            self.counters["agent-expired"] += 1
            self.agent, candidate, self._candidate = None, self._candidate, None
            if candidate is not None and candidate.expires > now:
                # RFC 5944 2.4.2.1: another agent heard within its lifetime: register with it now
                self.agent = candidate
                self.counters["movements"] += 1
                actions += self._decide(now)
            elif self.colocated is None:
                self.location, self.state = Location.UNKNOWN, MnState.DISCOVERING
                self._solicits, self._next_solicit = 0, now
        if self._next_solicit is not None and self._next_solicit <= now and self.link_is_up:
            actions += self._solicit(now)
        a = self.attempt
        if a is not None and a.retransmit_at <= now:
            a.timeout = min(a.timeout * 2, self.config.retransmit_max)
            self.counters["retransmissions"] += 1
            actions += self._send(now)
        reg = self.registration
        if a is None and reg is not None and reg.renew_at <= now and self.link_is_up:
            self.counters["reregistrations"] += 1
            actions += self._renew(now)
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = None
            actions += self._decide(now)
        return actions

    def _renew(self, now: float) -> list:
        reg = self.registration
        reg.renew_at = float("inf")
        if (reg.mode == "fa" and self.agent is None) or (reg.mode == "colocated" and self.colocated is None):
            return []  # attachment lost: movement detection decides what comes next
        return self._start(now, reg.mode)

    def next_deadline(self) -> float | None:
        candidates = [*self.movement.deadlines(), self._next_solicit, self._retry_at,
                      self.agent.expires if self.agent else None,
                      self.attempt.retransmit_at if self.attempt else None,
                      self.registration.renew_at if self.registration and not self.attempt and self.link_is_up
                      else None]
        finite = [c for c in candidates if c is not None and c != float("inf")]
        return min(finite) if finite else None

    def status(self, now: float | None = None) -> MobileNodeStatus:
        reg, agent = self.registration, self.agent
        return MobileNodeStatus(
            str(self.config.home_address), self.location, self.state,
            reg.mode if reg else None, str(reg.care_of_address) if reg else None,
            reg.expires if reg else None, reg.tunnel if reg else None,
            reg.trusted_network if reg else False,
            None if agent is None else agent.to_json(),
            self.last_code, **self.movement.status(), link_up=self.link_is_up,
            counters=self.counters.as_dict(), drops=self.counters.drops())
