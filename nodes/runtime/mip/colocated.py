"""A co-located mobile node's own tunnel end (RFC 5944 4.1): the packets from its home address,
read from the TUN device, encapsulated towards the home agent (IP-in-IP, or RFC 3519 UDP from port
434 so a NAT keeps one mapping), held for a moment while a registration is under way, kept alive
through a NAT (RFC 3519 3.1), and the home agent's tunnelled packets decapsulated into the stack.
"""
from __future__ import annotations

from collections import Counter, deque
from ipaddress import IPv4Address

from nodes.mip.mn_messages import keepalive_packet
from nodes.runtime.clock import Clock
from nodes.runtime.host.rawip import RawSender, udp_packet
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import IPv4, ip_in_ip
from nodes.wire.mip import ENCAP_IPIP, MIP_PORT, TunnelData

HOLD_PACKETS, HOLD_SECONDS = 256, 1.0  # packets held while a co-located registration is under way


class ColocatedTunnel:
    """`tunnels` are the executor's (home -> AddTunnel); `deliver(packet)` writes into the stack."""

    def __init__(self, counters: Counter, clock: Clock, raw: RawSender, tunnels: dict, deliver):
        self.counters, self.clock, self.raw, self.tunnels, self.deliver = counters, clock, raw, tunnels, deliver
        self._last_out: dict[IPv4Address, float] = {}  # home -> last tunnelled send (keepalives)
        self._echo_seq = 0
        self._held: deque = deque()  # (monotonic time, packet) from the home address, no tunnel yet

    def up(self, home: IPv4Address) -> None:
        """The tunnel of `home` is (again) in place: its idle time (keepalives) starts now."""
        self._last_out[home] = self.clock.now()

    def send_held(self) -> None:
        """A tunnel came up: the packets held for at most HOLD_SECONDS go into their tunnel."""
        held, self._held = self._held, deque()
        for at, packet in held:
            if self.clock.now() - at <= HOLD_SECONDS:
                self.encapsulate_from_home(packet)

    def drop_held(self) -> None:
        self._held.clear()

    def encapsulate_from_home(self, packet: bytes) -> None:
        """A packet from the home address read from the TUN, into the tunnel."""
        if len(packet) < 20:
            self.counters["drop:tun-short"] += 1
            return
        t = self.tunnels.get(IPv4Address(packet[12:16]))
        if t is None:  # registration under way: hold a few packets, the tunnel is coming
            self._hold(packet)
            return
        if t.kind == "udp":
            data = TunnelData(ENCAP_IPIP, packet).encode()
            ok = self.raw.send(udp_packet(t.local, t.remote, MIP_PORT, t.remote_port or MIP_PORT, data))
        else:
            ok = self.raw.send(ip_in_ip(t.local, t.remote, packet))
        self.counters["tunnelled-out" if ok else "send-error-tunnel"] += 1
        self._last_out[t.home] = self.clock.now()

    def _hold(self, packet: bytes) -> None:
        now = self.clock.now()
        while self._held and now - self._held[0][0] > HOLD_SECONDS:
            self._held.popleft()
            self.counters["drop:held-too-long"] += 1
        if len(self._held) >= HOLD_PACKETS:
            self._held.popleft()
            self.counters["drop:hold-full"] += 1
        self._held.append((now, packet))
        self.counters["held"] += 1

    def keepalives(self) -> None:
        """RFC 3519 3.1: after `keepalive` seconds without tunnel traffic, send a tunnelled ICMP
        echo request to the home agent, so the NAT keeps the mapping."""
        now = self.clock.now()
        for home, t in list(self.tunnels.items()):
            if t.kind != "udp" or not t.keepalive or now - self._last_out.get(home, now) < t.keepalive:
                continue
            self._echo_seq = (self._echo_seq + 1) & 0xFFFF
            self.counters["keepalives"] += 1
            self.encapsulate_from_home(keepalive_packet(home, t.remote, self._echo_seq))

    def decapsulate_to_home(self, inner: bytes, outer_src, via: str) -> None:
        """A tunnelled packet from the HA (`via` 'ipip' or 'udp'), into the stack."""
        try:
            ip = IPv4.decode(inner)
        except DecodeError as e:
            self.counters[f"drop:decap:{e.reason}"] += 1
            return
        t = self.tunnels.get(ip.dst)
        if t is None or IPv4Address(outer_src) != t.remote:
            self.counters["drop:decap-unknown-tunnel"] += 1
            return
        self.counters[f"decapsulated-{via}"] += 1
        self.deliver(inner)
