"""I/O for the tester: a `Transport` sends and receives, and logs every item with its time.

`SocketTransport` works on sockets the caller already created (inside the right network namespace):
a UDP socket on port 434, a raw ICMP socket, raw IP sockets per tunnel protocol (4, 47, 55) and
optionally an AF_PACKET socket. `FakeTransport` is the in-memory stand-in for unit tests: what is
sent is recorded, what the test `inject`s is received. Either way `log` is the message ladder.
"""
from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Callable

from .ipv4 import parse_ipv4

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL_CMSG = getattr(socket, "IP_TTL", 2)
IP_HDRINCL = getattr(socket, "IP_HDRINCL", 3)
IP_MULTICAST_TTL = getattr(socket, "IP_MULTICAST_TTL", 33)


@dataclass(frozen=True)
class Received:
    """One received item. kind: "udp" (data = UDP payload), "icmp" (data = ICMP message),
    "ip" (data = the whole IPv4 packet of a tunnel protocol), "frame" (a link-layer frame)."""

    time: float
    kind: str
    data: bytes
    src: str | None = None
    sport: int | None = None
    dst: str | None = None
    dport: int | None = None
    ttl: int | None = None
    protocol: int | None = None


@dataclass(frozen=True)
class LogEntry:
    time: float
    direction: str  # "sent" or "received"
    kind: str
    src: str | None
    dst: str | None
    data: bytes
    sport: int | None = None
    dport: int | None = None
    ttl: int | None = None

    def ladder_line(self, describe: Callable[[str, bytes], str] | None = None) -> str:
        arrow = "->" if self.direction == "sent" else "<-"
        what = describe(self.kind, self.data) if describe else f"{self.kind} {len(self.data)} bytes"
        peer = self.dst if self.direction == "sent" else self.src
        return f"{self.time:.6f} {arrow} {peer}: {what}"


class Transport:
    """The I/O interface the peers use. Subclasses implement `_send` and `_recv`."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.log: list[LogEntry] = []

    # sending -----------------------------------------------------------------------------------
    def send_udp(self, dst, payload: bytes, dport: int = 434, src=None, sport: int | None = None,
                 ttl: int | None = None) -> None:
        self._log("sent", "udp", src, dst, payload, sport, dport, ttl)
        self._send("udp", payload, dst=str(dst), dport=dport, src=src and str(src), sport=sport, ttl=ttl)

    def send_icmp(self, dst, message: bytes, ttl: int = 1, src=None) -> None:
        self._log("sent", "icmp", src, dst, message, ttl=ttl)
        self._send("icmp", message, dst=str(dst), ttl=ttl, src=src and str(src))

    def send_ip(self, packet: bytes) -> None:
        """A whole IPv4 packet (tunnelled data) sent as it is."""
        p = parse_ipv4(packet, strict_length=False)
        src, dst, ttl = (str(p.src), str(p.dst), p.ttl) if p.ok else (None, None, None)
        self._log("sent", "ip", src, dst, packet, ttl=ttl)
        self._send("ip", packet, dst=dst, protocol=p.protocol if p.ok else None)

    def send_frame(self, frame: bytes) -> None:
        self._log("sent", "frame", None, None, frame)
        self._send("frame", frame)

    # receiving ---------------------------------------------------------------------------------
    def recv(self, timeout: float = 0.0, kinds: tuple | None = None) -> list[Received]:
        """What arrived within `timeout` seconds (returns as soon as something arrived)."""
        items = self._recv(timeout)
        for item in items:
            self._log("received", item.kind, item.src, item.dst, item.data, item.sport, item.dport, item.ttl,
                      at=item.time)
        return [i for i in items if kinds is None or i.kind in kinds]

    def wait_for(self, match: Callable[[Received], bool], timeout: float) -> Received | None:
        """The first received item that `match`es within `timeout` (others are logged and dropped)."""
        deadline = self.clock() + timeout
        while True:
            left = deadline - self.clock()
            for item in self.recv(max(left, 0.0)):
                if match(item):
                    return item
            if left <= 0:
                return None

    def _log(self, direction, kind, src, dst, data, sport=None, dport=None, ttl=None, at=None) -> None:
        self.log.append(LogEntry(self.clock() if at is None else at, direction, kind,
                                 src and str(src), dst and str(dst), bytes(data), sport, dport, ttl))

    def ladder(self, describe=None) -> str:
        """One line per logged item: time, direction, peer and what it was (see `describe`)."""
        return "\n".join(e.ladder_line(describe or globals()["describe"]) for e in self.log)

    def _send(self, kind: str, data: bytes, **meta) -> None:
        raise NotImplementedError

    def _recv(self, timeout: float) -> list[Received]:
        raise NotImplementedError


class FakeTransport(Transport):
    """In memory: `sent` holds (kind, data, meta) tuples, `inject` queues items for `recv`. The clock
    is a virtual one the test moves with `advance` (unless a clock is given)."""

    def __init__(self, clock: Callable[[], float] | None = None, start: float = 1_700_000_000.0):
        self.now = start
        super().__init__(clock or (lambda: self.now))
        self.sent: list[tuple] = []
        self.inbox: list[Received] = []
        self.responder: Callable[[str, bytes, dict], list[Received]] | None = None

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def inject(self, kind: str, data: bytes, **meta) -> None:
        self.inbox.append(Received(meta.pop("time", self.clock()), kind, data, **meta))

    def _send(self, kind: str, data: bytes, **meta) -> None:
        self.sent.append((kind, data, meta))
        if self.responder is not None:
            self.inbox.extend(self.responder(kind, data, meta) or [])

    def _recv(self, timeout: float) -> list[Received]:
        if not self.inbox:
            self.advance(timeout)
            return []
        items, self.inbox = self.inbox, []
        return items


class SocketTransport(Transport):
    """Over sockets created by the caller (in the namespace of the tester's node).

    udp: AF_INET/SOCK_DGRAM bound to port 434 (SO_BROADCAST is switched on, destination and TTL of
    received datagrams are asked for); icmp: AF_INET/SOCK_RAW/IPPROTO_ICMP; tunnels: {4|47|55:
    AF_INET/SOCK_RAW/proto} (with IP_HDRINCL set the packet is sent whole, else its header is
    stripped and its TTL set on the socket); packet: AF_PACKET/SOCK_RAW bound to an interface."""

    def __init__(self, udp: socket.socket | None = None, icmp: socket.socket | None = None,
                 tunnels: dict | None = None, packet: socket.socket | None = None,
                 clock: Callable[[], float] = time.time):
        super().__init__(clock)
        self.udp, self.icmp, self.tunnels, self.packet = udp, icmp, dict(tunnels or {}), packet
        if udp is not None:
            for level, opt in ((socket.SOL_SOCKET, socket.SO_BROADCAST), (socket.IPPROTO_IP, IP_PKTINFO),
                               (socket.IPPROTO_IP, IP_RECVTTL)):
                try:
                    udp.setsockopt(level, opt, 1)
                except OSError:
                    pass
        if icmp is not None:
            try:
                icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            except OSError:
                pass

    def _sockets(self) -> dict:
        socks = {}
        if self.udp is not None:
            socks[self.udp] = "udp"
        if self.icmp is not None:
            socks[self.icmp] = "icmp"
        for sock in self.tunnels.values():
            socks[sock] = "ip"
        if self.packet is not None:
            socks[self.packet] = "frame"
        return socks

    @staticmethod
    def _set_ttl(sock: socket.socket, dst: str, ttl: int | None) -> None:
        if ttl is None:
            return
        multicast = IPv4Address(dst).is_multicast
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_TTL if multicast else socket.IP_TTL, ttl)

    def _send(self, kind: str, data: bytes, **meta) -> None:
        if kind == "udp":
            if self.udp is None:
                raise RuntimeError("no UDP socket")
            self._set_ttl(self.udp, meta["dst"], meta.get("ttl"))
            self.udp.sendto(data, (meta["dst"], meta["dport"]))
        elif kind == "icmp":
            if self.icmp is None:
                raise RuntimeError("no ICMP socket")
            self._set_ttl(self.icmp, meta["dst"], meta.get("ttl"))
            self.icmp.sendto(data, (meta["dst"], 0))
        elif kind == "ip":
            sock = self.tunnels.get(meta.get("protocol"))
            if sock is None:
                raise RuntimeError(f"no raw socket for protocol {meta.get('protocol')}")
            if sock.getsockopt(socket.IPPROTO_IP, IP_HDRINCL):
                sock.sendto(data, (meta["dst"], 0))
            else:
                p = parse_ipv4(data).value
                self._set_ttl(sock, meta["dst"], p.ttl)
                sock.sendto(p.payload, (meta["dst"], 0))
        elif kind == "frame":
            if self.packet is None:
                raise RuntimeError("no AF_PACKET socket")
            self.packet.send(data)

    def _recv(self, timeout: float) -> list[Received]:
        socks = self._sockets()
        if not socks:
            return []
        ready, _, _ = select.select(list(socks), [], [], max(timeout, 0.0))
        items = []
        for sock in ready:
            now = self.clock()
            kind = socks[sock]
            try:
                if kind == "udp":
                    items.append(self._recv_udp(sock, now))
                elif kind == "frame":
                    items.append(Received(now, "frame", sock.recv(65535)))
                else:
                    packet, _ = sock.recvfrom(65535)
                    p = parse_ipv4(packet, strict_length=False)
                    if not p.ok:
                        items.append(Received(now, kind, packet))
                    elif kind == "icmp":
                        items.append(Received(now, "icmp", p.payload, str(p.src), None, str(p.dst), None, p.ttl, 1))
                    else:
                        items.append(Received(now, "ip", packet, str(p.src), None, str(p.dst), None, p.ttl,
                                              p.protocol))
            except (BlockingIOError, InterruptedError):
                continue
        return items

    @staticmethod
    def _recv_udp(sock: socket.socket, now: float) -> Received:
        data, ancillary, _, (src, sport) = sock.recvmsg(65535, 256)
        dst, ttl = None, None
        for level, ctype, cdata in ancillary:
            if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                dst = str(IPv4Address(cdata[8:12]))  # struct in_pktinfo: ifindex, spec_dst, addr
            elif level == socket.IPPROTO_IP and ctype == IP_TTL_CMSG and len(cdata) >= 4:
                ttl = struct.unpack("=i", cdata[:4])[0]
        dport = sock.getsockname()[1]
        return Received(now, "udp", data, src, sport, dst, dport, ttl, 17)


def describe(kind: str, data: bytes) -> str:
    """A short name of a logged item for the ladder, e.g. "Registration Reply code 133"."""
    from .advertisements import parse_advertisement, parse_solicitation
    from .messages import parse_message

    if kind == "udp":
        m = parse_message(data)
        if not m.ok:
            return f"udp {len(data)} bytes ({m.error})"
        name = type(m.value).__name__
        if hasattr(m.value, "code") and data[:1] == b"\x03":
            return f"{name} code {m.value.code} lifetime {m.value.lifetime}"
        if hasattr(m.value, "care_of_address"):
            return f"{name} coa {m.value.care_of_address} lifetime {m.value.lifetime} id {m.value.identification:#x}"
        return name
    if kind == "icmp":
        adv = parse_advertisement(data, require_checksum=False)
        if adv.ok:
            return f"Agent Advertisement seq {adv.sequence} flags {adv.flag_letters}"
        if parse_solicitation(data, require_checksum=False).ok:
            return "Agent Solicitation"
        return f"icmp type {data[0] if data else '?'}"
    return f"{kind} {len(data)} bytes"
