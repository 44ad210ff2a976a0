"""Mobile Node core (RFC 5944 agent discovery, movement detection and registration; RFC 3519).

Follows nodes/core.py. Inputs: `link_up` / `link_down` (from the runtime's link monitor),
`set_care_of_address` (a co-located care-of address, None when lost), `receive_icmp` (agent
advertisements), `receive_datagram` (registration replies), `receive_arp` (an ARP answer to one of
the movement probes), `dhcp_bound` / `dhcp_failed` (the outcome of a `StartDhcp`), `handle_timer`.
Outputs: `drain_actions()` and `status(now)`. The node decides where it is and what to register
there; its parts do the rest: nodes/mip/mn_discovery.py (the agents heard, solicitations),
nodes/mip/mn_registration.py (requests, retransmissions, replies, the binding) and
nodes/mip/movement.py (movement detection beyond agent advertisements: ARP probes, DHCP, the link
configuration to apply). Identifications are NTP timestamps whose low bits, below the clock's
resolution, come from the injected random source (RFC 5944 5.7).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from nodes.core import Addr, ActionQueue, RandomSource, system_random
from nodes.mip.actions import GratuitousArp, RemoveTunnel
from nodes.mip.auth import SecurityAssociation
from nodes.mip.common import ENCAPSULATIONS, Counters, Snapshot, addr
from nodes.mip.mn_discovery import AgentDiscovery
from nodes.mip.mn_messages import Agent, Attempt, Identifications, Registration
from nodes.mip.mn_registration import MnState, Registrar
from nodes.mip.movement import CoLocatedNetwork, Movement
from nodes.wire.errors import DecodeError
from nodes.wire.mip import ICMP_ROUTER_ADVERTISEMENT, AgentAdvertisement, AgentFlags, agent_rebooted

__all__ = ["Location", "MnState", "MobileNode", "MobileNodeConfig", "MobileNodeStatus"]


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
    # that address through the agent (RFC 5944 2.4.1, 3.1; RFC 3519 4.4: the mobile node daemon); False,
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
        self.colocated: IPv4Address | None = None
        self.movement = Movement(config, self.counters)
        self.discovery = AgentDiscovery(config, self.counters, random)
        self.registrar = Registrar(config, self.counters, random, self.movement)

    # --- the parts' state, as the node's -----------------------------------------------------------
    @property
    def agent(self) -> Agent | None:
        return self.discovery.agent

    @property
    def attempt(self) -> Attempt | None:
        return self.registrar.attempt

    @property
    def registration(self) -> Registration | None:
        return self.registrar.registration

    @property
    def identifications(self) -> Identifications:
        return self.registrar.identifications

    @property
    def last_code(self) -> int | None:
        return self.registrar.last_code

    @property
    def state(self) -> MnState:
        return self.registrar.state

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
        actions, accepted = self.registrar.on_reply(data, now)
        if accepted and self.registration is not None and self.registration.mode == "colocated":
            self.discovery.next_solicit = None  # a co-located care-of address in use: no more soliciting (2.4)
        self._done(actions, now)

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
        self.link_is_up, self.location = True, Location.UNKNOWN
        self.discovery.attached(now)
        self.registrar.attached(now)
        self.colocated = addr(care_of_address) if care_of_address else None
        actions = self._solicit(now)
        if self.colocated:
            actions += self._decide(now)
        return actions

    def _link_down(self, now: float) -> list:
        self.link_is_up, self.colocated, self.location = False, None, Location.UNKNOWN
        self.discovery.detached()
        self.registrar.detached()
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
        heard, d = Agent.heard(adv, addr(src), now), self.discovery
        d.next_solicit = None  # heard an agent: stop soliciting
        if d.keeps_current(heard, now, denied=self.state == MnState.DENIED):
            # RFC 5944 2.4.2.1 / 3.6: another agent while ours still advertises is no move; it is
            # kept in mind for when ours falls silent
            d.candidate = heard
            self.counters["other-agent-ignored"] += 1
            return []
        old, d.agent = d.agent, heard
        moved = old is None or old.address != heard.address or old.prefix != heard.prefix
        rebooted = not moved and agent_rebooted(old.sequence, adv.sequence)
        if rebooted:
            self.counters["agent-rebooted"] += 1
            self.registrar.registration = None  # the FA lost its visitor list
        if moved:
            self.counters["movements"] += 1
        if d.from_home_agent(heard) and self.movement.network != "home":
            # RFC 5944 4.2 / 3.6: an advertisement of our home agent says we are home: the link is
            # configured for home and the binding is cancelled now, no ARP probe awaited
            return self._identified("home", now, "advertisement")
        return self._decide(now) if (moved or rebooted) else []

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

    def _at_home(self) -> bool:
        net = self.config.home_network
        if self.colocated is not None and self.colocated in net:
            return True
        return self.discovery.from_home_agent(self.agent)

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
            self.location = Location.FOREIGN
            return self._start(now, "colocated")
        return []

    def _return_home(self, now: float) -> list:
        r = self.registrar
        if self.location == Location.HOME and (r.state == MnState.HOME or (r.attempt and r.attempt.mode == "home")):
            return []  # home already (told by ARP, then by the home agent's advertisement): nothing new
        self.location = Location.HOME
        actions: list = [GratuitousArp(self.config.home_address, self.config.iface)]
        if r.registration and r.registration.mode == "colocated":
            actions.append(RemoveTunnel(self.config.home_address))
        r.registration = None
        if not r.away:
            r.state, r.attempt = MnState.HOME, None
            return actions
        return actions + self._start(now, "home")

    def _solicit(self, now: float) -> list:
        return self.discovery.solicit(now, self.colocated or self.config.home_address)

    # --- registration ---------------------------------------------------------------------------

    def _start(self, now: float, mode: str) -> list:
        """Register in `mode` where the node is: through its foreign agent (mode fa), or with its
        co-located care-of address, through a foreign agent that requires it (R, RFC 5944 3.1) or
        directly."""
        via = self.discovery.requiring_agent(now) if mode == "colocated" else None
        return self.registrar.start(now, mode, agent=self.agent, colocated=self.colocated, via=via)

    # --- timers and status ----------------------------------------------------------------------

    def _tick(self, now: float) -> list:
        actions: list = []
        expired, candidate = self.discovery.expired(now)
        if candidate is not None:
            actions += self._decide(now)  # RFC 5944 2.4.2.1: another agent heard within its lifetime
        elif expired and self.colocated is None:
            self.location, self.registrar.state = Location.UNKNOWN, MnState.DISCOVERING
            self.discovery.restart_soliciting(now)
        if self.discovery.solicitation_due(now) and self.link_is_up:
            actions += self._solicit(now)
        actions += self.registrar.retransmit(now)
        if self.registrar.renewal_due(now, self.link_is_up):
            actions += self._renew(now)
        if self.registrar.retry_due(now):
            actions += self._decide(now)
        return actions

    def _renew(self, now: float) -> list:
        reg = self.registration
        if (reg.mode == "fa" and self.agent is None) or (reg.mode == "colocated" and self.colocated is None):
            return []  # attachment lost: movement detection decides what comes next
        return self._start(now, reg.mode)

    def next_deadline(self) -> float | None:
        candidates = [*self.movement.deadlines(), *self.discovery.deadlines(),
                      *self.registrar.deadlines(self.link_is_up)]
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
