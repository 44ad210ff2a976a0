"""Thin I/O for the tester: a `Transport` sends IKE messages and ESP packets and receives what comes
back, logging both directions with times (a message ladder).

* `UdpTransport`: built from sockets the caller already created (inside a network namespace): a UDP
  socket bound to port 500, one bound to 4500, and optionally a raw IPv4 socket for protocol 50.
  On 4500 IKE messages get the non-ESP marker (RFC 3948 2.2) and ESP goes bare (2.1).
* `FakeTransport`: in memory, for unit tests: `inject()` queues datagrams as if received, and
  `on_send` (a callback) sees every datagram sent.

`send(data, dst_addr, dst_port, src_port)` takes an IKE message without marker (kind='ike'),
or with kind='esp' an ESP packet (UDP-encapsulated when src_port is 4500, else through the raw
IP protocol 50 socket), or kind='raw' for exact UDP payload bytes. `recv(timeout)` returns a `Received` or None.
"""
from __future__ import annotations

import select
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from . import constants as c
from .esp import classify_udp4500


@dataclass
class Received:
    """One datagram: `data` is the IKE message without non-ESP marker, or the ESP packet, or b'' for a
    keepalive; `raw` is the exact UDP payload (or IP payload for raw ESP)."""
    data: bytes
    src: str
    sport: int
    dport: int
    t: float
    kind: str  # 'ike' | 'esp' | 'keepalive' | 'invalid'
    raw: bytes = b""


@dataclass
class LogEntry:
    direction: str  # 'sent' | 'received'
    t: float
    kind: str
    local_port: int
    addr: str
    port: int
    data: bytes


def classify(raw: bytes, dport: int) -> tuple[str, bytes]:
    """What a datagram received on `dport` is (RFC 3948 2.1-2.3 on 4500; always IKE on 500)."""
    if dport == c.NAT_T_PORT:
        return classify_udp4500(raw)
    return "ike", raw


def wire_bytes(data: bytes, src_port: int, kind: str) -> bytes:
    """The UDP payload for `data`: the non-ESP marker before IKE on 4500 (RFC 3948 2.2)."""
    if kind == "ike" and src_port == c.NAT_T_PORT:
        return c.NON_ESP_MARKER + data
    return data


class Transport:
    """Common part: the log and the ladder."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.log: list[LogEntry] = []

    def send(self, data: bytes, dst_addr: str, dst_port: int, src_port: int = c.IKE_PORT,
             kind: str = "ike") -> None:
        raise NotImplementedError

    def recv(self, timeout: float = 1.0) -> Received | None:
        raise NotImplementedError

    def recv_ike(self, timeout: float = 1.0) -> Received | None:
        """The next IKE message, skipping (but logging) ESP and keepalives."""
        deadline = self.clock() + timeout
        for _ in range(100000):
            r = self.recv(max(deadline - self.clock(), 0.0))
            if r is None or r.kind == "ike":
                return r
        return None

    def ladder(self, describe: Callable[[bytes], str] | None = None) -> list[str]:
        """One line per logged datagram: time, direction, ports, kind and a description."""
        t0 = self.log[0].t if self.log else 0.0
        lines = []
        for e in self.log:
            arrow = "->" if e.direction == "sent" else "<-"
            what = describe(e.data) if describe and e.kind == "ike" else f"{len(e.data)} bytes"
            lines.append(f"{e.t - t0:8.3f} {e.local_port} {arrow} {e.addr}:{e.port} {e.kind} {what}")
        return lines


class UdpTransport(Transport):
    """Sockets created by the caller: `sock500`, `sock4500` (UDP, bound), `esp_raw` (raw IPv4 socket,
    protocol 50, optional)."""

    def __init__(self, sock500: socket.socket, sock4500: socket.socket | None = None,
                 esp_raw: socket.socket | None = None, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.socks = {c.IKE_PORT: sock500}
        if sock4500 is not None:
            self.socks[c.NAT_T_PORT] = sock4500
        self.esp_raw = esp_raw

    def send(self, data: bytes, dst_addr: str, dst_port: int, src_port: int = c.IKE_PORT,
             kind: str = "ike") -> None:
        if kind == "esp" and src_port != c.NAT_T_PORT:
            if self.esp_raw is None:
                raise ValueError("no raw ESP socket")
            self.esp_raw.sendto(data, (dst_addr, 0))
        else:
            self.socks[src_port].sendto(wire_bytes(data, src_port, kind), (dst_addr, dst_port))
        self.log.append(LogEntry("sent", self.clock(), kind, src_port, dst_addr, dst_port, data))

    def recv(self, timeout: float = 1.0) -> Received | None:
        socks = list(self.socks.items()) + ([(0, self.esp_raw)] if self.esp_raw else [])
        ready, _, _ = select.select([s for _, s in socks], [], [], max(timeout, 0.0))
        if not ready:
            return None
        port = next(p for p, s in socks if s is ready[0])
        return self._read(port, ready[0])

    def _read(self, port: int, s: socket.socket) -> Received:
        raw, addr = s.recvfrom(65535)
        t = self.clock()
        if port == 0:  # raw IPv4 socket: the IP header comes with the data
            ihl = (raw[0] & 0x0F) * 4
            r = Received(raw[ihl:], addr[0], 0, 0, t, "esp", raw)
        else:
            kind, data = classify(raw, port)
            r = Received(data, addr[0], addr[1], port, t, kind, raw)
        self.log.append(LogEntry("received", t, r.kind, port, r.src, r.sport, r.data))
        return r



class FakeTransport(Transport):
    """In memory: `inject(raw, src, sport, dport)` queues a datagram (exact UDP payload, marker
    included on 4500); `on_send(raw_udp_payload, dst, dport, sport, kind)` is called for each send;
    `outbox` keeps what was sent. The clock is a plain attribute `now` unless one is given."""

    def __init__(self, local_addr: str = "192.0.2.1", clock: Callable[[], float] | None = None,
                 on_send: Callable[[bytes, str, int, int, str], None] | None = None):
        self.now = 0.0
        super().__init__(clock or (lambda: self.now))
        self.local_addr = local_addr
        self.inbox: deque[Received] = deque()
        self.outbox: list[tuple[bytes, str, int, int, str]] = []
        self.on_send = on_send

    def inject(self, raw: bytes, src: str, sport: int, dport: int = c.IKE_PORT) -> None:
        kind, data = classify(raw, dport)
        self.inbox.append(Received(data, src, sport, dport, self.clock(), kind, raw))

    def send(self, data: bytes, dst_addr: str, dst_port: int, src_port: int = c.IKE_PORT,
             kind: str = "ike") -> None:
        raw = wire_bytes(data, src_port, kind)
        self.log.append(LogEntry("sent", self.clock(), kind, src_port, dst_addr, dst_port, data))
        self.outbox.append((raw, dst_addr, dst_port, src_port, kind))
        if self.on_send:
            self.on_send(raw, dst_addr, dst_port, src_port, kind)

    def recv(self, timeout: float = 1.0) -> Received | None:
        if not self.inbox:
            return None
        r = self.inbox.popleft()
        r.t = self.clock()
        self.log.append(LogEntry("received", r.t, r.kind, r.dport, r.src, r.sport, r.data))
        return r
