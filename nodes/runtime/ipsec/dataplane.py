"""The ESP data path of the IPsec daemons, without sockets: child SAs grouped by IKE SA (a
`Tunnel`), the inbound lookup by SPI, selector checks both ways, and the counters.

    dp = DataPlane()
    child = dp.install(install_child_sa_action, now)        # from the IKE core
    got = dp.open(esp_bytes, src, sport, encap, now)         # -> (inner IPv4 packet, tunnel) or None
    esp = dp.seal(tunnel, inner, now)                        # -> ESP bytes for tunnel.peer, or None

Everything refused is counted by reason in `dp.drops` (unknown-spi, bad-icv, replay, truncated,
bad-padding, ..., spoofed-source: the inner source is outside the SA's remote selectors,
outside-selectors: the inner destination (in) or a selector (out) does not match, no-sa).
A tunnel follows its peer's NAT mapping: an authenticated UDP-encapsulated packet from a new
address or port moves the tunnel there (RFC 3948).

Lifetimes: `DataPlane(lifetime)` gives every child SA it installs that esp_sa.Lifetime (both
directions). The SAs' soft/hard expiry actions (esp_sa.SAEvent) are gathered into `dp.events` as
(child, event) pairs, from the per-packet path and from `dp.poll(now)` (the time limits); the
runtime takes them with `dp.pop_events()` and acts (rekey, delete).
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from ipaddress import IPv4Address

from nodes.ipsec import traffic_selectors as tsel
from nodes.ipsec.esp_sa import ESPDrop, InboundSA, Lifetime, OutboundSA, SAEvent, make_sa
from nodes.wire.errors import DecodeError


def esp_algorithm(ike_name: str) -> str:
    """The IKE core's suite name (aes-cbc-128+hmac-sha256-128) as esp_sa spells it."""
    return ike_name.replace("+", "-")


def ranges(selectors) -> tuple[tuple[int, int], ...]:
    return tuple((int(ts.start), int(ts.end)) for ts in selectors)


def inside(addr: int, rs: tuple[tuple[int, int], ...]) -> bool:
    for lo, hi in rs:
        if lo <= addr <= hi:
            return True
    return False


class Tunnel:
    """The data-path state of one IKE SA: its peer and its child SAs (a packet goes out through the
    newest one whose selectors cover it)."""

    def __init__(self, name: str, peer_addr: str, peer_port: int, encap: bool):
        self.name = name
        self.peer_id: str | None = None
        self.peer_addr, self.peer_port, self.encap = peer_addr, peer_port, encap
        self.virtual_ip: str | None = None
        self.children: dict[int, Child] = {}
        self.out: Child | None = None
        self.last_in = 0.0
        self.packets_in = self.packets_out = 0
        self.nat_local = self.nat_remote = False  # the IKE core's NAT detection, from each InstallChildSa

    def __str__(self) -> str:
        return f"{self.peer_id or '?'}@{self.peer_addr}:{self.peer_port}"

    __repr__ = __str__

    def status(self) -> dict:
        return {"ike_sa": self.name, "peer_id": self.peer_id, "peer": f"{self.peer_addr}:{self.peer_port}",
                "encap": self.encap, "nat_local": self.nat_local, "nat_remote": self.nat_remote,
                "virtual_ip": self.virtual_ip, "packets_in": self.packets_in,
                "packets_out": self.packets_out,
                "out_spi": None if self.out is None else f"{self.out.spi_out:08x}"}


class Child:
    __slots__ = ("spi_in", "spi_out", "alg", "inbound", "outbound", "local", "remote", "tunnel",
                 "ts_local", "ts_remote", "created")

    def __init__(self, act, tunnel: Tunnel, now: float, lifetime: Lifetime | None = None):
        self.spi_in, self.spi_out = act.spi_in, act.spi_out
        self.alg = esp_algorithm(act.alg)
        self.inbound: InboundSA = make_sa(self.alg, act.encr_key_in, act.integ_key_in, act.spi_in, "in", now,
                                          lifetime)
        self.outbound: OutboundSA = make_sa(self.alg, act.encr_key_out, act.integ_key_out, act.spi_out, "out", now,
                                            lifetime)
        self.local, self.remote = ranges(act.ts_local), ranges(act.ts_remote)
        self.ts_local, self.ts_remote = tsel.describe(act.ts_local), tsel.describe(act.ts_remote)
        self.tunnel = tunnel
        self.created = now

    def status(self, now: float) -> dict:
        return {"spi_in": f"{self.spi_in:08x}", "spi_out": f"{self.spi_out:08x}", "alg": self.alg,
                "encr_key_in": self.inbound.enc_key.hex(), "integ_key_in": self.inbound.integ_key.hex(),
                "encr_key_out": self.outbound.enc_key.hex(), "integ_key_out": self.outbound.integ_key.hex(),
                "ts_local": self.ts_local, "ts_remote": self.ts_remote,
                "packets_in": self.inbound.packets, "bytes_in": self.inbound.bytes,
                "packets_out": self.outbound.packets, "bytes_out": self.outbound.bytes,
                "seq_out": self.outbound.seq, "highest_seq_in": self.inbound.window.top,
                "age": round(now - self.created, 3),
                "rekey_due": self.inbound.rekey_due or self.outbound.rekey_due,
                "expired": self.inbound.expired or self.outbound.expired}


class DataPlane:
    def __init__(self, lifetime: Lifetime | None = None) -> None:
        self.drops: Counter[str] = Counter()
        self.by_spi: dict[int, Child] = {}
        self.tunnels: dict[str, Tunnel] = {}
        self.lifetime = lifetime
        self.events: list[tuple[Child, SAEvent]] = []  # lifetime events not yet taken
        # children by their next time limit: (when, order, spi_in); an entry whose child is gone or
        # whose limit moved later is found stale when it comes up (no call scans every SA)
        self._limits: list[tuple[float, int, int]] = []
        self._order = itertools.count()

    # -- lifetimes --------------------------------------------------------------------------------
    def _collect(self, child: "Child", sa) -> None:
        for ev in sa.drain_actions():
            self.events.append((child, ev))

    def _schedule(self, child: "Child", after: float = -math.inf) -> None:
        times = [t for sa in (child.inbound, child.outbound) if (t := sa.next_deadline()) is not None and t > after]
        if times:
            heapq.heappush(self._limits, (min(times), next(self._order), child.spi_in))

    def poll(self, now: float) -> None:
        """Check the time limits of the SAs whose limit has come; events go to `self.events`."""
        while self._limits and self._limits[0][0] <= now:
            _, _, spi_in = heapq.heappop(self._limits)
            child = self.by_spi.get(spi_in)
            if child is None:
                continue
            for sa in (child.inbound, child.outbound):
                sa.handle_timer(now)
                if sa.has_actions:
                    self._collect(child, sa)
            self._schedule(child, after=now)

    def pop_events(self) -> list[tuple["Child", SAEvent]]:
        events, self.events = self.events, []
        return events

    def next_deadline(self) -> float | None:
        """The earliest time limit of any SA, or None."""
        while self._limits and self._limits[0][2] not in self.by_spi:
            heapq.heappop(self._limits)
        return self._limits[0][0] if self._limits else None

    # -- the database, driven by the IKE core's actions ------------------------------------------
    def install(self, act, now: float) -> Child:
        tunnel = self.tunnels.get(act.ike_sa)
        if tunnel is None:
            tunnel = self.tunnels[act.ike_sa] = Tunnel(act.ike_sa, act.peer_addr, act.peer_port, act.encap)
        else:
            tunnel.peer_addr, tunnel.peer_port, tunnel.encap = act.peer_addr, act.peer_port, act.encap
        tunnel.nat_local, tunnel.nat_remote = act.nat_local, act.nat_remote  # the IKE core's, as it decided
        child = Child(act, tunnel, now, self.lifetime)
        self.by_spi[child.spi_in] = child
        tunnel.children[child.spi_in] = child
        self._schedule(child)
        tunnel.out = child  # the newest child SA sends (RFC 7296 2.8: after a rekey, use the new one)
        return child

    def delete(self, spi_in: int) -> Child | None:
        child = self.by_spi.pop(spi_in, None)
        if child is None:
            return None
        tunnel = child.tunnel
        tunnel.children.pop(spi_in, None)
        if tunnel.out is child:
            tunnel.out = max(tunnel.children.values(), key=lambda c: c.created, default=None)
        return child

    def rename(self, old: str, new: str) -> None:
        """An IKE SA rekey: its child SAs now belong to the new IKE SA."""
        tunnel = self.tunnels.pop(old, None)
        if tunnel is not None:
            tunnel.name = new
            self.tunnels[new] = tunnel

    def close(self, name: str) -> Tunnel | None:
        tunnel = self.tunnels.pop(name, None)
        if tunnel is not None:
            for spi in list(tunnel.children):
                self.by_spi.pop(spi, None)
            tunnel.children.clear()
            tunnel.out = None
        return tunnel

    # -- per packet -------------------------------------------------------------------------------
    def open(self, esp: bytes, src: str, sport: int, encap: bool, now: float):
        """(inner packet, tunnel) for an ESP packet received from src:sport, or None (counted)."""
        if len(esp) < 8:
            self.drops["truncated"] += 1
            return None
        child = self.by_spi.get(int.from_bytes(esp[:4], "big"))
        if child is None:
            self.drops["unknown-spi"] += 1
            return None
        inbound = child.inbound
        try:
            inner = inbound.decrypt(esp, now)
        except DecodeError as exc:  # ESPDrop included
            self.drops[exc.reason] += 1
            if inbound.has_actions:
                self._collect(child, inbound)
            return None
        if inbound.has_actions:
            self._collect(child, inbound)
        if len(inner) < 20 or inner[0] >> 4 != 4:
            self.drops["bad-inner-packet"] += 1
            return None
        if not inside(int.from_bytes(inner[12:16], "big"), child.remote):
            self.drops["spoofed-source"] += 1
            return None
        if not inside(int.from_bytes(inner[16:20], "big"), child.local):
            self.drops["outside-selectors"] += 1
            return None
        tunnel = child.tunnel
        if encap and not tunnel.nat_local and (sport != tunnel.peer_port or src != tunnel.peer_addr):
            # follow the peer's NAT mapping, unless we are behind a NAT ourselves (RFC 7296 2.23)
            tunnel.peer_addr, tunnel.peer_port, tunnel.encap = src, sport, True
        tunnel.last_in = now
        tunnel.packets_in += 1
        return inner, tunnel

    @staticmethod
    def select(tunnel: Tunnel, src: int, dst: int) -> Child | None:
        """The child SA whose selectors cover src -> dst (an SPD lookup, RFC 4301 4.4.1), the newest
        of them when several do (after a rekey, RFC 7296 2.8); the newest SA overall is tried first."""
        child = tunnel.out
        if child is not None and inside(dst, child.remote) and inside(src, child.local):
            return child
        matching = [c for c in tunnel.children.values() if inside(dst, c.remote) and inside(src, c.local)]
        return max(matching, key=lambda c: c.created, default=None)

    def seal(self, tunnel: Tunnel, inner: bytes, now: float) -> bytes | None:
        if tunnel.out is None:
            self.drops["no-sa"] += 1
            return None
        child = self.select(tunnel, int.from_bytes(inner[12:16], "big"), int.from_bytes(inner[16:20], "big"))
        if child is None:
            self.drops["outside-selectors-out"] += 1
            return None
        outbound = child.outbound
        try:
            esp = outbound.encrypt(inner, now)
        except ESPDrop as exc:
            self.drops[exc.reason] += 1
            if outbound.has_actions:
                self._collect(child, outbound)
            return None
        if outbound.has_actions:
            self._collect(child, outbound)
        tunnel.packets_out += 1
        return esp

    def count(self, reason: str) -> None:
        self.drops[reason] += 1

    # -- status -----------------------------------------------------------------------------------
    def status(self, now: float) -> dict:
        return {
            "tunnels": [{**t.status(), "child_sas": [c.status(now) for c in t.children.values()]}
                        for t in self.tunnels.values()],
            "drops": dict(sorted(self.drops.items())),
        }


def host_int(addr: str) -> int:
    return int(IPv4Address(addr))
