"""NAPT for the gateway's internal presence (draft-gupta Appendix A), sans-I/O.

Packets that remote hosts send through their tunnels (after ESP decryption) leave G with their
source rewritten to G_i (or one address of a range) and a port of G's choosing (`outbound`);
H's answers to G_i are rewritten back and handed to the runtime together with the peer they
belong to (`inbound`), so the runtime encrypts them with that peer's SA. TCP and UDP are keyed
by port, ICMP echo by identifier; ICMP errors about a translated flow are translated too (the
embedded packet included, RFC 5508), so path MTU discovery keeps working.

A mapping is keyed on the inside by (protocol, peer, inner address, inner port): two remote
hosts behind different NATs may use the same inner address and still get separate mappings.
Mapping is endpoint-independent (RFC 4787 REQ-1); filtering is endpoint-independent by default
(replies from another address of a multi-homed H get through, draft-gupta Appendix C) or
address-dependent. A peer keeps one external address (paired pooling, RFC 4787 REQ-2); the
inner port is kept when it is free (port preservation).

Timeouts per protocol and TCP state (`NaptTimeouts`): a TCP mapping is transitory until packets
went both ways, established then, transitory again after FINs both ways and short after a RST.
Redirection rules (`RedirectRule`) make static mappings for connections from the inside, e.g.
G_i:2222/tcp -> remote host X:22. Every drop is counted by reason in `drops`.

Checksums are patched incrementally (RFC 1624) by one helper, `_translate`, for all of IP,
TCP, UDP (a zero UDP checksum stays zero) and ICMP.

The NAPT follows nodes/core.py's contract. `outbound` and `inbound` are its role-specific inputs
and, being the per-packet path, return the translated packet (or None) instead of queueing an
action; `receive_datagram` is `inbound` with the result queued as a `Translated` action.
`handle_timer(now)` removes the idle mappings whose timeout fell (`next_deadline()`, a scan of the
table: call it from a timer, not per packet); `status(now)` is a `NaptStatus`. It uses no randomness.
"""
from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal, Union

from nodes.core import Addr
from nodes.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, checksum

Buffer = Union[bytes, bytearray, memoryview]

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}
PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})  # unreachable, source quench, redirect, time exceeded, parameter problem
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10
SRC, DST = 12, 16  # offsets of the addresses in the IPv4 header


@dataclass(frozen=True)
class NaptTimeouts:
    """Idle timeouts in seconds."""

    tcp_established: float = 7440.0  # RFC 5382 REQ-5: at least 2 h 4 min
    tcp_transitory: float = 240.0  # before both directions were seen, after FINs both ways
    tcp_closed: float = 10.0  # after a RST
    udp: float = 300.0  # RFC 4787 REQ-5: at least 2 min, 5 recommended
    icmp: float = 60.0  # RFC 5508 REQ-1


@dataclass(frozen=True)
class _L4Layout:
    min_len: int  # header bytes that must be present
    csum_at: int  # offset of the checksum in the L4 header
    pseudo_header: bool  # whether the checksum covers the IP addresses
    zero_is_none: bool  # UDP: a zero checksum means "not computed"

    def port_at(self, side: int) -> int:
        if not self.pseudo_header:  # ICMP query: the identifier, the same field both ways
            return 4
        return 0 if side == SRC else 2


_L4 = {
    PROTO_TCP: _L4Layout(20, 16, True, False),
    PROTO_UDP: _L4Layout(8, 6, True, True),
    PROTO_ICMP: _L4Layout(8, 2, False, False),
}


# -- checksum-preserving rewrites --------------------------------------------------------------

def _adjust_checksum(buf: bytearray, at: int, old_words: tuple[int, ...], new_words: tuple[int, ...],
                     zero_is_none: bool = False) -> None:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for the checksum at `buf[at:at+2]` (per packet:
    the sum of the 16-bit words ~m is taken as 0xFFFF * len(m) - sum(m))."""
    if at + 2 > len(buf):  # checksum not present (truncated packet inside an ICMP error)
        return
    old_csum = (buf[at] << 8) | buf[at + 1]
    if zero_is_none and old_csum == 0:
        return
    total = (~old_csum & 0xFFFF) + 0xFFFF * len(old_words) - sum(old_words) + sum(new_words)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    csum = ~total & 0xFFFF
    if zero_is_none and csum == 0:
        csum = 0xFFFF
    buf[at], buf[at + 1] = csum >> 8, csum & 0xFF


def _translate(buf: bytearray, ip: int, proto: int, side: int, addr: int | None, port: int | None) -> None:
    """Overwrite the source (side=SRC) or destination (DST) address and/or port (ICMP query
    identifier) of the IPv4 packet starting at `buf[ip]`, patching the IP header checksum and the
    transport checksum. Used for whole packets and for the packets quoted in ICMP errors."""
    ihl = (buf[ip] & 0x0F) * 4
    layout = _L4[proto]
    l4_csum = ip + ihl + layout.csum_at
    if addr is not None:
        a = ip + side
        old = int.from_bytes(buf[a : a + 4], "big")
        words_old, words_new = (old >> 16, old & 0xFFFF), (addr >> 16, addr & 0xFFFF)
        _adjust_checksum(buf, ip + 10, words_old, words_new)
        if layout.pseudo_header:
            _adjust_checksum(buf, l4_csum, words_old, words_new, layout.zero_is_none)
        buf[a : a + 4] = addr.to_bytes(4, "big")
    if port is not None:
        p = ip + ihl + layout.port_at(side)
        old = (buf[p] << 8) | buf[p + 1]
        _adjust_checksum(buf, l4_csum, (old,), (port,), layout.zero_is_none)
        buf[p], buf[p + 1] = port >> 8, port & 0xFF


def _set_icmp_checksum(buf: bytearray, icmp: int) -> None:
    buf[icmp + 2 : icmp + 4] = b"\0\0"
    buf[icmp + 2 : icmp + 4] = checksum(bytes(buf[icmp:])).to_bytes(2, "big")


# -- the table ---------------------------------------------------------------------------------

@dataclass(eq=False)
class Mapping:
    proto: int
    peer: Hashable
    inner_addr: int
    inner_port: int
    ext_addr: int
    ext_port: int
    created: float
    last_seen: float
    static: bool = False  # made by a redirection rule: never times out
    tcp_state: str = "new"  # new, established, closing (FINs both ways), closed (RST)
    seen_out: bool = False
    seen_in: bool = False
    fin_out: bool = False
    fin_in: bool = False
    destinations: set[int] = field(default_factory=set)  # for address-dependent filtering

    def timeout(self, t: NaptTimeouts) -> float:
        if self.static:
            return float("inf")
        if self.proto == PROTO_UDP:
            return t.udp
        if self.proto == PROTO_ICMP:
            return t.icmp
        return {"established": t.tcp_established, "closed": t.tcp_closed}.get(self.tcp_state, t.tcp_transitory)

    def track_tcp(self, flags: int, outbound: bool) -> None:
        if flags & TCP_SYN and not flags & TCP_ACK and self.tcp_state in ("closing", "closed"):
            self.tcp_state, self.seen_out, self.seen_in, self.fin_out, self.fin_in = "new", False, False, False, False
        if outbound:
            self.seen_out, self.fin_out = True, self.fin_out or bool(flags & TCP_FIN)
        else:
            self.seen_in, self.fin_in = True, self.fin_in or bool(flags & TCP_FIN)
        if flags & TCP_RST:
            self.tcp_state = "closed"
        elif self.fin_out and self.fin_in:
            self.tcp_state = "closing"
        elif self.tcp_state == "new" and self.seen_out and self.seen_in:
            self.tcp_state = "established"

    def as_dict(self, now: float, timeouts: NaptTimeouts) -> dict:
        left = self.timeout(timeouts) - (now - self.last_seen)
        return {
            "proto": PROTO_NAMES[self.proto],
            "peer": str(self.peer),
            "inner": f"{IPv4Address(self.inner_addr)}:{self.inner_port}",
            "external": f"{IPv4Address(self.ext_addr)}:{self.ext_port}",
            "state": self.tcp_state if self.proto == PROTO_TCP else "",
            "static": self.static,
            "idle": round(now - self.last_seen, 3),
            "expires_in": None if self.static else round(left, 3),
        }


@dataclass(frozen=True)
class Translated:
    """Action of `receive_datagram`: the packet translated back, for the SA of `peer`."""

    packet: bytes
    peer: Hashable


@dataclass(frozen=True)
class NaptStatus:
    mappings: tuple[dict, ...]  # Mapping.as_dict rows, sorted by protocol and external end
    drops: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict:
        return {"mappings": list(self.mappings), "drops": dict(self.drops)}


@dataclass(frozen=True)
class RedirectRule:
    """Connections from the inside to `external_address`:`external_port` go to the remote host
    `peer` at its inner address `target`:`target_port` (e.g. G_i:2222/tcp -> X:22)."""

    proto: Literal["tcp", "udp"]
    external_port: int
    peer: Hashable
    target: IPv4Address | str
    target_port: int
    external_address: IPv4Address | str | None = None  # default: the first NAPT address


class Napt:
    def __init__(self, addresses: IPv4Address | IPv4Network | str | Iterable[IPv4Address | str],
                 ports: tuple[int, int] = (1024, 65535), timeouts: NaptTimeouts | None = None,
                 filtering: Literal["endpoint-independent", "address-dependent"] = "endpoint-independent"):
        """`addresses`: G_i, a network (all its host addresses) or a list; `ports`: the inclusive
        range handed out for TCP/UDP ports and ICMP identifiers."""
        self.addresses = _address_list(addresses)
        lo, hi = ports
        if not 0 < lo <= hi <= 65535:
            raise ValueError(f"port range {ports} must lie within 1..65535")
        if filtering not in ("endpoint-independent", "address-dependent"):
            raise ValueError(f"filtering {filtering!r}, expected endpoint-independent or address-dependent")
        self.ports = (lo, hi)
        self.timeouts = timeouts or NaptTimeouts()
        self.filtering = filtering
        self.drops: Counter[str] = Counter()
        self._address_set = set(self.addresses)
        self._by_inner: dict[tuple, Mapping] = {}
        self._by_ext: dict[tuple[int, int, int], Mapping] = {}
        self._used: Counter[tuple[int, int]] = Counter()  # (proto, ext_addr) -> ports in use
        self._cursor: dict[tuple[int, int], int] = {}
        self._peer_address: dict[Hashable, int] = {}
        self._next_address = 0
        self._actions: list[Translated] = []
        # when dynamic mappings may time out: (deadline, order, external key); an entry whose mapping
        # is gone or was used since is found stale when it comes up (its mapping re-queued at its
        # real deadline), so neither a packet nor the timer scans the table
        self._expiries: list[tuple[float, int, tuple[int, int, int]]] = []
        self._order = itertools.count()

    # -- the core contract ---------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """A packet from the intranet: `inbound`, the result queued as a Translated action."""
        got = self.inbound(data, now)
        if got is not None:
            self._actions.append(Translated(*got))

    def handle_timer(self, now: float) -> None:
        """The mappings idle past their timeout go (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1)."""
        while self._expiries and self._expiries[0][0] <= now:
            _, _, key = heapq.heappop(self._expiries)
            m = self._by_ext.get(key)
            if m is None or m.static:
                continue
            if now - m.last_seen >= m.timeout(self.timeouts):
                self._remove(m)
            else:
                self._schedule(m)

    def next_deadline(self) -> float | None:
        """The earliest time a mapping may time out (never later than the real one), or None."""
        while self._expiries and self._expiries[0][2] not in self._by_ext:  # its mapping already went
            heapq.heappop(self._expiries)
        return self._expiries[0][0] if self._expiries else None

    def _schedule(self, m: Mapping) -> None:
        heapq.heappush(self._expiries, (m.last_seen + m.timeout(self.timeouts), next(self._order),
                                        (m.proto, m.ext_addr, m.ext_port)))

    def _track_tcp(self, m: Mapping, flags: int, outbound: bool) -> None:
        """A TCP segment through `m`: its state, and an earlier deadline when the state shortens
        its timeout (a RST: tcp_closed)."""
        before = m.timeout(self.timeouts)
        m.track_tcp(flags, outbound)
        if m.timeout(self.timeouts) < before:
            self._schedule(m)

    def drain_actions(self) -> list[Translated]:
        actions, self._actions = self._actions, []
        return actions

    def status(self, now: float) -> NaptStatus:
        rows = sorted((m.as_dict(now, self.timeouts) for m in self._by_ext.values()),
                      key=lambda r: (r["proto"], r["external"]))
        return NaptStatus(tuple(rows), tuple(sorted(self.drops.items())))

    # -- data path ---------------------------------------------------------------------------
    def outbound(self, packet: Buffer, peer: Hashable, now: float) -> bytes | None:
        """A packet from remote host `peer` (tunnel inner) toward the intranet, translated to
        G_i, or None (counted in `drops`)."""
        buf = self._parse(packet)
        if buf is None:
            return None
        proto, l4 = buf[9], (buf[0] & 0x0F) * 4
        if proto == PROTO_ICMP and buf[l4] in ICMP_ERRORS:
            return self._icmp_error(buf, l4, peer, now)
        if not self._is_query(buf, proto, l4, ICMP_ECHO_REQUEST):
            return None
        src = int.from_bytes(buf[12:16], "big")
        sport = int.from_bytes(buf[l4 + _L4[proto].port_at(SRC) : l4 + _L4[proto].port_at(SRC) + 2], "big")
        m = self._live(self._by_inner.get((proto, peer, src, sport)), now)
        if m is None:
            m = self._create(proto, peer, src, sport, now)
            if m is None:
                return None
        m.last_seen = now
        if self.filtering == "address-dependent":
            m.destinations.add(int.from_bytes(buf[16:20], "big"))
        if proto == PROTO_TCP:
            self._track_tcp(m, buf[l4 + 13], outbound=True)
        _translate(buf, 0, proto, SRC, m.ext_addr, m.ext_port)
        return bytes(buf)

    def inbound(self, packet: Buffer, now: float) -> tuple[bytes, Hashable] | None:
        """A packet from the intranet to a NAPT address, translated back, with the peer whose
        SA must carry it; or None (counted in `drops`)."""
        buf = self._parse(packet)
        if buf is None:
            return None
        if int.from_bytes(buf[16:20], "big") not in self._address_set:
            self.drops["not-napt-address"] += 1
            return None
        proto, l4 = buf[9], (buf[0] & 0x0F) * 4
        if proto == PROTO_ICMP and buf[l4] in ICMP_ERRORS:
            return self._icmp_error(buf, l4, None, now)
        if not self._is_query(buf, proto, l4, ICMP_ECHO_REPLY):
            return None
        dport_at = l4 + _L4[proto].port_at(DST)
        key = (proto, int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[dport_at : dport_at + 2], "big"))
        m = self._live(self._by_ext.get(key), now)
        if m is None:
            self.drops["no-mapping"] += 1
            return None
        if (self.filtering == "address-dependent" and not m.static
                and int.from_bytes(buf[12:16], "big") not in m.destinations):
            self.drops["filtered"] += 1
            return None
        m.last_seen = now
        if proto == PROTO_TCP:
            self._track_tcp(m, buf[l4 + 13], outbound=False)
        _translate(buf, 0, proto, DST, m.inner_addr, m.inner_port)
        return bytes(buf), m.peer

    def _parse(self, packet: Buffer) -> bytearray | None:
        """A mutable copy of an unfragmented IPv4 packet (trimmed to its total length)."""
        n = len(packet)
        if n < 20:
            self.drops["truncated"] += 1
            return None
        ihl = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        if packet[0] >> 4 != 4 or ihl < 20 or total < ihl:
            self.drops["bad-packet"] += 1
            return None
        if total > n:
            self.drops["truncated"] += 1
            return None
        if int.from_bytes(packet[6:8], "big") & 0x3FFF:  # MF or a fragment offset
            self.drops["fragment"] += 1
            return None
        layout = _L4.get(packet[9])
        if layout is None:
            self.drops["unsupported-protocol"] += 1
            return None
        if total < ihl + layout.min_len:
            self.drops["truncated"] += 1
            return None
        return bytearray(packet[:total])

    def _is_query(self, buf: bytearray, proto: int, l4: int, echo_type: int) -> bool:
        if proto == PROTO_ICMP and buf[l4] != echo_type:
            self.drops["unsupported-icmp"] += 1
            return False
        return True

    def _icmp_error(self, buf: bytearray, l4: int, peer: Hashable | None, now: float):
        """Translate an ICMP error about a translated flow: from a remote host (`peer` given, the
        quoted packet went to its inner address) or from the intranet (quoted packet from G_i)."""
        quoted = l4 + 8
        if len(buf) < quoted + 20 or buf[quoted] >> 4 != 4:
            self.drops["truncated"] += 1
            return None
        q_ihl, q_proto = (buf[quoted] & 0x0F) * 4, buf[quoted + 9]
        layout = _L4.get(q_proto)
        if layout is None or len(buf) < quoted + q_ihl + 8 or q_ihl < 20:
            self.drops["unsupported-icmp" if layout is None else "truncated"] += 1
            return None
        q_side = DST if peer is not None else SRC  # the quoted packet's end that we translated
        a, p = quoted + q_side, quoted + q_ihl + layout.port_at(q_side)
        addr, port = int.from_bytes(buf[a : a + 4], "big"), int.from_bytes(buf[p : p + 2], "big")
        if peer is not None:
            m = self._live(self._by_inner.get((q_proto, peer, addr, port)), now)
        else:
            m = self._live(self._by_ext.get((q_proto, addr, port)), now)
        if m is None:
            self.drops["no-mapping"] += 1
            return None
        if peer is not None:
            _translate(buf, quoted, q_proto, DST, m.ext_addr, m.ext_port)
            _translate(buf, 0, PROTO_ICMP, SRC, m.ext_addr, None)
        else:
            _translate(buf, quoted, q_proto, SRC, m.inner_addr, m.inner_port)
            _translate(buf, 0, PROTO_ICMP, DST, m.inner_addr, None)
        _set_icmp_checksum(buf, l4)
        return bytes(buf) if peer is not None else (bytes(buf), m.peer)

    # -- the table ---------------------------------------------------------------------------
    def _live(self, m: Mapping | None, now: float) -> Mapping | None:
        if m is not None and now - m.last_seen >= m.timeout(self.timeouts):
            self._remove(m)
            return None
        return m

    def _create(self, proto: int, peer: Hashable, inner_addr: int, inner_port: int, now: float,
                ext_addr: int | None = None, ext_port: int | None = None, static: bool = False) -> Mapping | None:
        if ext_port is None:
            ext_addr, ext_port = self._allocate(proto, peer, inner_port)
            if ext_port is None and self._expire(now):  # idle mappings not yet collected
                ext_addr, ext_port = self._allocate(proto, peer, inner_port)
            if ext_port is None:
                self.drops["ports-exhausted"] += 1
                return None
        m = Mapping(proto, peer, inner_addr, inner_port, ext_addr, ext_port, now, now, static=static)
        self._by_inner[(proto, peer, inner_addr, inner_port)] = m
        self._by_ext[(proto, ext_addr, ext_port)] = m
        self._used[(proto, ext_addr)] += 1
        if not static:
            self._schedule(m)
        return m

    def _remove(self, m: Mapping) -> None:
        self._by_inner.pop((m.proto, m.peer, m.inner_addr, m.inner_port), None)
        self._by_ext.pop((m.proto, m.ext_addr, m.ext_port), None)
        self._used[(m.proto, m.ext_addr)] -= 1

    def _allocate(self, proto: int, peer: Hashable, inner_port: int) -> tuple[int, int | None]:
        """An external (address, port): the peer's paired address, the inner port if it is free,
        else the next free one; (address, None) when the range is used up."""
        addr = self._peer_address.get(peer)
        if addr is None:
            addr = self._peer_address[peer] = self.addresses[self._next_address % len(self.addresses)]
            self._next_address += 1
        lo, hi = self.ports
        size = hi - lo + 1
        if self._used[(proto, addr)] >= size:
            return addr, None
        if lo <= inner_port <= hi and (proto, addr, inner_port) not in self._by_ext:
            return addr, inner_port
        port = self._cursor.get((proto, addr), lo)
        for _ in range(size):
            if not lo <= port <= hi:
                port = lo
            if (proto, addr, port) not in self._by_ext:
                self._cursor[(proto, addr)] = port + 1
                return addr, port
            port += 1
        return addr, None  # everything taken (by static mappings outside the count)

    def add_redirect(self, rule: RedirectRule, now: float) -> Mapping:
        """Install a redirection rule as a static mapping; ValueError if its port is taken."""
        proto = PROTO_NUMBERS.get(rule.proto)
        if proto not in (PROTO_TCP, PROTO_UDP):
            raise ValueError(f"redirect protocol {rule.proto!r}, expected 'tcp' or 'udp'")
        ext_addr = int(IPv4Address(rule.external_address)) if rule.external_address else self.addresses[0]
        if ext_addr not in self._address_set:
            raise ValueError(f"redirect address {IPv4Address(ext_addr)} is not a NAPT address")
        if (proto, ext_addr, rule.external_port) in self._by_ext:
            raise ValueError(f"{rule.proto} port {IPv4Address(ext_addr)}:{rule.external_port} is in use")
        target = int(IPv4Address(rule.target))
        old = self._by_inner.get((proto, rule.peer, target, rule.target_port))
        if old is not None:
            self._remove(old)
        return self._create(proto, rule.peer, target, rule.target_port, now, ext_addr, rule.external_port, static=True)

    def remove_redirect(self, proto: Literal["tcp", "udp"], external_port: int,
                        external_address: IPv4Address | str | None = None) -> bool:
        ext_addr = int(IPv4Address(external_address)) if external_address else self.addresses[0]
        m = self._by_ext.get((PROTO_NUMBERS[proto], ext_addr, external_port))
        if m is None or not m.static:
            return False
        self._remove(m)
        return True

    def forget_peer(self, peer: Hashable, keep_static: bool = True) -> int:
        """Drop the dynamic mappings of a peer whose tunnel went down; returns how many."""
        gone = [m for m in self._by_ext.values() if m.peer == peer and not (keep_static and m.static)]
        for m in gone:
            self._remove(m)
        if not any(m.peer == peer for m in self._by_ext.values()):
            self._peer_address.pop(peer, None)
        return len(gone)

    def _expire(self, now: float) -> int:
        """Remove idle mappings; returns how many went."""
        gone = [m for m in self._by_ext.values() if now - m.last_seen >= m.timeout(self.timeouts)]
        for m in gone:
            self._remove(m)
        return len(gone)

    def __len__(self) -> int:
        return len(self._by_ext)


def _address_list(addresses) -> list[int]:
    if isinstance(addresses, (str, IPv4Address, IPv4Network)):
        addresses = [addresses]
    out: list[int] = []
    for a in addresses:
        if isinstance(a, IPv4Network) or (isinstance(a, str) and "/" in a):
            net = IPv4Network(a)
            out += [int(h) for h in (net.hosts() if net.prefixlen < 31 else net)]
        else:
            out.append(int(IPv4Address(a)))
    if not out:
        raise ValueError("NAPT needs at least one address")
    return out
