"""An in-memory network for sans-I/O Mobile IP cores: virtual clock, links, loss, reordering, NAT.

Each node is a core (HA, FA, MN) with addresses, a link and a link-layer address. The network
executes the actions the cores drain (nodes/core.py): datagrams are queued with a latency (plus
seeded random jitter, which reorders), filtered by loss rules, translated by a NAT, and delivered
to `receive_datagram`, `receive_icmp` or `receive_tunnelled`; timers fire through `handle_timer`;
every action is recorded per node for the test to inspect.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Callable

from nodes.core import Addr
from nodes.mip.actions import SendIcmp, SendIp, SendUdp
from nodes.wire.ipv4 import IPv4

START = 1_700_000_000.0


@dataclass(frozen=True)
class Packet:
    kind: str  # "udp", "icmp" or "ip"
    src: IPv4Address
    dst: IPv4Address
    payload: bytes
    sender: str
    sport: int = 0
    dport: int = 0
    ttl: int = 64
    to_lladdr: str | None = None


@dataclass
class Node:
    name: str
    core: object
    addresses: set
    link: str | None
    lladdr: str
    actions: list = field(default_factory=list)
    received: list = field(default_factory=list)


@dataclass
class Nat:
    """Address-and-port translation for packets leaving `inside` addresses towards the rest."""

    public: IPv4Address
    inside: set
    next_port: int = 40000
    out: dict = field(default_factory=dict)  # (addr, port) -> public port
    back: dict = field(default_factory=dict)  # public port -> (addr, port)

    def outbound(self, pkt: Packet) -> Packet:
        if pkt.src not in self.inside or pkt.dst in self.inside or pkt.kind != "udp":
            return pkt
        key = (pkt.src, pkt.sport)
        if key not in self.out:
            self.out[key], self.back[self.next_port] = self.next_port, key
            self.next_port += 1
        return replace(pkt, src=self.public, sport=self.out[key])

    def inbound(self, pkt: Packet) -> Packet | None:
        if pkt.dst != self.public:
            return pkt
        if pkt.kind != "udp" or pkt.dport not in self.back:
            return None  # no mapping: the NAT drops it
        addr, port = self.back[pkt.dport]
        return replace(pkt, dst=addr, dport=port)


class FakeNet:
    def __init__(self, start: float = START, latency: float = 0.001, jitter: float = 0.0, seed: int = 1):
        self.now = start
        self.latency, self.jitter = latency, jitter
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self.nat: Nat | None = None
        self.loss_rules: list[Callable[[Packet], bool]] = []
        self.trace: list[tuple[float, Packet]] = []  # delivered packets
        self.dropped: list[Packet] = []
        self._queue: list = []
        self._seq = itertools.count()

    # --- building -------------------------------------------------------------------------------

    def add(self, name: str, core, addresses=(), link: str | None = None, lladdr: str | None = None) -> Node:
        node = Node(name, core, {IPv4Address(a) for a in addresses}, link,
                    lladdr or f"02:00:00:00:00:{len(self.nodes) + 1:02x}")
        self.nodes[name] = node
        return node

    def move(self, name: str, link: str | None) -> None:
        self.nodes[name].link = link

    def assign(self, name: str, address) -> None:
        self.nodes[name].addresses.add(IPv4Address(address))

    def unassign(self, name: str, address) -> None:
        self.nodes[name].addresses.discard(IPv4Address(address))

    # --- loss and reordering helpers ------------------------------------------------------------

    def drop_when(self, match: Callable[[Packet], bool], count: int | None = None) -> None:
        """Drop packets that `match`; only the next `count` of them when count is given."""
        left = [count]

        def rule(pkt: Packet) -> bool:
            if not match(pkt) or left[0] == 0:
                return False
            if left[0] is not None:
                left[0] -= 1
            return True

        self.loss_rules.append(rule)

    def drop_random(self, rate: float) -> None:
        self.loss_rules.append(lambda pkt: self.rng.random() < rate)

    def clear_loss(self) -> None:
        self.loss_rules.clear()

    # --- running --------------------------------------------------------------------------------

    def call(self, name: str, method: str, *args, **kwargs) -> list:
        """Call a core input with the current time and execute (and return) what it drains."""
        actions = feed(self.nodes[name].core, method, *args, now=self.now, **kwargs)
        self.execute(name, actions)
        return actions

    def inject(self, pkt: Packet) -> None:
        """Put a packet on the wire as if `pkt.sender` had sent it."""
        self._send(pkt)

    def execute(self, name: str, actions: list) -> None:
        node = self.nodes[name]
        for action in actions:
            node.actions.append((self.now, action))
            if isinstance(action, SendUdp):
                self._send(Packet("udp", IPv4Address(action.src or min(node.addresses)), IPv4Address(action.dst),
                                  action.payload, name, action.sport, action.dport, action.ttl, action.lladdr))
            elif isinstance(action, SendIcmp):
                self._send(Packet("icmp", IPv4Address(action.src or min(node.addresses)), IPv4Address(action.dst),
                                  action.payload, name, ttl=action.ttl))
            elif isinstance(action, SendIp):
                outer = IPv4.decode(action.packet)
                self._send(Packet("ip", outer.src, outer.dst, action.packet, name))

    def _send(self, pkt: Packet) -> None:
        if self.nat is not None:
            pkt = self.nat.outbound(pkt)
        if any(rule(pkt) for rule in list(self.loss_rules)):
            self.dropped.append(pkt)
            return
        at = self.now + self.latency + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
        heapq.heappush(self._queue, (at, next(self._seq), pkt))

    def _receivers(self, pkt: Packet) -> list[Node]:
        sender = self.nodes[pkt.sender]
        if pkt.to_lladdr is not None:
            return [n for n in self.nodes.values() if n.lladdr == pkt.to_lladdr and n.link == sender.link]
        if pkt.dst.is_multicast or pkt.dst == IPv4Address("255.255.255.255"):
            return [n for n in self.nodes.values() if n is not sender and n.link is not None
                    and n.link == sender.link]
        return [n for n in self.nodes.values() if pkt.dst in n.addresses][:1]

    def _deliver(self, pkt: Packet) -> None:
        if self.nat is not None:
            pkt = self.nat.inbound(pkt)
            if pkt is None:
                return
        sender_lladdr = self.nodes[pkt.sender].lladdr
        for node in self._receivers(pkt):
            self.trace.append((self.now, pkt))
            node.received.append((self.now, pkt))
            core = node.core
            if pkt.kind == "udp":
                core.receive_datagram(pkt.payload, Addr(str(pkt.src), pkt.sport, str(pkt.dst), pkt.dport,
                                                        ttl=pkt.ttl, lladdr=sender_lladdr), self.now)
            elif pkt.kind == "icmp" and hasattr(core, "receive_icmp"):
                core.receive_icmp(pkt.payload, Addr(str(pkt.src), 0, str(pkt.dst), 0, lladdr=sender_lladdr), self.now)
            elif pkt.kind == "ip" and hasattr(core, "receive_tunnelled"):
                core.receive_tunnelled(pkt.payload, self.now)
            else:
                continue
            self.execute(node.name, core.drain_actions())

    def run(self, seconds: float) -> None:
        """Advance the virtual clock by `seconds`, delivering packets and firing core timers."""
        until = self.now + seconds
        for _ in range(1_000_000):
            next_packet = self._queue[0][0] if self._queue else None
            deadlines = [(d, n) for n in self.nodes.values()
                         if (d := n.core.next_deadline()) is not None]
            next_timer = min(deadlines, key=lambda x: x[0], default=(None, None))
            candidates = [t for t in (next_packet, next_timer[0]) if t is not None and t <= until]
            if not candidates:
                break
            self.now = max(self.now, min(candidates))
            if next_packet is not None and next_packet <= self.now:
                _, _, pkt = heapq.heappop(self._queue)
                self._deliver(pkt)
                continue
            for deadline, node in deadlines:
                if deadline <= self.now:
                    self.execute(node.name, feed(node.core, "handle_timer", now=self.now))
        else:
            raise RuntimeError("fake network did not settle (a timer that never advances?)")
        self.now = until

    # --- inspection -----------------------------------------------------------------------------

    def actions_of(self, name: str, kind: type) -> list:
        return [a for _, a in self.nodes[name].actions if isinstance(a, kind)]

    def delivered(self, kind: str, to: str | None = None) -> list[Packet]:
        return [p for _, p in self.trace if p.kind == kind and (to is None or p.dst in self.nodes[to].addresses)]


__all__ = ["FakeNet", "Nat", "Packet", "Recorder", "START", "feed", "udp_from"]


class Recorder:
    """Stands in for a module or object of the runtime (netlink, the executor): every call is
    recorded in `calls` as (name, args, kwargs) instead of being performed."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a, **kw: self.calls.append((name, a, kw))


def feed(core, method: str, *args, now: float, **kwargs) -> list:
    """Call one input of a core (nodes/core.py) and return the actions it drains."""
    assert getattr(core, method)(*args, now=now, **kwargs) is None, f"{method} must return None"
    return core.drain_actions()


def udp_from(src, sport: int = 434, dst="0.0.0.0", dport: int = 434, **kw) -> Addr:
    """The Addr of a UDP datagram from src:sport (ttl=, lladdr= as the link told)."""
    return Addr(str(src), sport, str(dst), dport, **kw)


def attach(net: FakeNet, link: str, coa=None, settle: float = 3.0) -> None:
    """Move the mobile node "mn" onto `link` (with a co-located care-of address when given), report
    link-up to its core and let the network run for `settle` seconds."""
    net.move("mn", link)
    if coa is not None:
        net.assign("mn", coa)
    net.call("mn", "link_up", care_of_address=coa)
    net.run(settle)


def replies_to_mn(net: FakeNet) -> list:
    """The Registration Replies the mobile node "mn" has received."""
    from nodes.wire.mip import RegistrationReply

    return [RegistrationReply.decode(p.payload) for _, p in net.nodes["mn"].received
            if p.kind == "udp" and p.payload[:1] == b"\x03"]
