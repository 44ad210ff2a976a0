"""An in-memory link between two sans-I/O IKE cores, with a virtual clock, loss, reordering and an
optional NAPT in front of side A (source address and ports rewritten, like a home router)."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable

from nodes.core import Addr
from nodes.ipsec.ike import IkeCore, SendIke


@dataclass
class Packet:
    to: str  # "a" or "b"
    data: bytes
    src: str
    sport: int
    dst: str
    dport: int
    n: int = 0  # sequence number over the whole run


@dataclass
class FakeLink:
    a: IkeCore
    a_addr: str
    b: IkeCore
    b_addr: str
    nat_addr: str | None = None  # public address of a NAPT in front of A
    now: float = 0.0
    drop: Callable[[Packet], bool] | None = None
    hold: Callable[[Packet], bool] | None = None  # held packets are delivered after the next one (reorder)
    queue: list[Packet] = field(default_factory=list)
    sent: list[Packet] = field(default_factory=list)
    events: dict[str, list] = field(default_factory=lambda: {"a": [], "b": []})
    dead: set[str] = field(default_factory=set)  # sides that no longer answer
    _held: list[Packet] = field(default_factory=list)

    def core(self, side: str) -> IkeCore:
        return self.a if side == "a" else self.b

    def nat_port(self, port: int) -> int:
        return port + 10000

    def feed(self, side: str, actions: list) -> None:
        for act in actions:
            if not isinstance(act, SendIke):
                self.events[side].append(act)
                continue
            if side == "a":
                src, sport = (self.nat_addr, self.nat_port(act.sport)) if self.nat_addr else (self.a_addr, act.sport)
                pkt = Packet("b", act.data, src, sport, act.dst, act.dport)
            else:
                dst, dport = act.dst, act.dport
                if self.nat_addr and dst == self.nat_addr:
                    dst, dport = self.a_addr, dport - 10000
                pkt = Packet("a", act.data, self.b_addr, act.sport, dst, dport)
            pkt.n = len(self.sent)
            self.sent.append(pkt)
            if self.drop and self.drop(pkt):
                continue
            if self.hold and self.hold(pkt):
                self._held.append(pkt)
                continue
            self.queue.append(pkt)

    def call(self, side: str, method: str, *args, **kwargs) -> list:
        """An input of side's core, `now` passed as the keyword; returns (and delivers) its actions."""
        getattr(self.core(side), method)(*args, now=self.now, **kwargs)
        return self.flush(side)

    def deliver(self, side: str, data: bytes, src: str, sport: int, dst: str, dport: int) -> list:
        """Hand side's core a datagram directly (not through the queue); returns its actions."""
        self.core(side).receive_datagram(data, Addr(src, sport, dst, dport), self.now)
        return self.flush(side)

    def flush(self, side: str) -> list:
        actions = self.core(side).drain_actions()
        self.feed(side, actions)
        return actions

    def run(self, until: float | None = None, max_steps: int = 10000) -> None:
        """Deliver packets and fire timers until nothing is pending (or the clock passes `until`)."""
        for _ in range(max_steps):
            if self.queue:
                pkt = self.queue.pop(0)
                if self._held:
                    self.queue.extend(self._held)
                    self._held.clear()
                if pkt.to in self.dead:
                    continue
                self.deliver(pkt.to, pkt.data, pkt.src, pkt.sport, pkt.dst, pkt.dport)
                continue
            if self._held:
                self.queue.extend(self._held)
                self._held.clear()
                continue
            deadlines = [(d, s) for s in ("a", "b") if s not in self.dead
                         for d in [self.core(s).next_deadline()] if d is not None]
            if not deadlines:
                return
            at, side = min(deadlines)
            if until is not None and at > until:
                self.now = until
                return
            self.now = max(self.now, at)
            self.core(side).handle_timer(self.now)
            self.flush(side)
        raise AssertionError("fake link did not settle")

    def of_type(self, side: str, cls: type) -> list:
        return [e for e in self.events[side] if isinstance(e, cls)]


class Pool:
    """An address allocator for the gateway core: hands out the given addresses in order."""

    def __init__(self, *addresses: str):
        self.free = list(addresses)
        self.released: list[str] = []

    def allocate(self, peer_id: str):
        return IPv4Address(self.free.pop(0)) if self.free else None

    def release(self, peer_id: str, address: str) -> None:
        self.released.append(address)
        self.free.append(address)
