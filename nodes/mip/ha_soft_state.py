"""The home agent's tunnel soft state (RFC 2003 4 and 5): ICMP errors from within its tunnels, and
what they do to the datagrams that go into a tunnel next. Sans-I/O, part of nodes/mip/ha.py.

A Datagram Too Big sets the tunnel MTU (aged out after `pmtu_timeout`); it is relayed through that
soft state (5.1): a later DF datagram above it is refused with a Datagram Too Big carrying the
tunnel MTU minus the encapsulation's overhead (as a Linux tunnel does). Time Exceeded (code 0) and
Destination Unreachable (but for Port Unreachable and Source Route Failed) are relayed as Host
Unreachable and counted: that many of the next datagrams into the tunnel (within
`tunnel_error_window`) draw a Host Unreachable to their sender, and are tunnelled all the same.
Redirects, Port Unreachable, Source Route Failed, Source Quench and Parameter Problem are not relayed.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from nodes.mip.actions import Log, SendIcmp
from nodes.mip.common import Counters, ipv4_dst
from nodes.mip.ha_registration import Binding
from nodes.wire.ipv4 import PROTO_ICMP, PROTO_IPIP, PROTO_UDP, checksum
from nodes.wire.mip import MIP_PORT
from nodes.wire.tunnels import KINDS

LIMITED_BROADCAST = IPv4Address("255.255.255.255")
# bytes a tunnel adds to a datagram: outer IPv4 header, GRE header (no checksum), minimal forwarding
# header with the original source (the HA is never the original sender), UDP + MIP tunnel header
TUNNEL_OVERHEAD = {"ipip": 20, "gre": 24, "minimal": 12, "udp": 32}
ICMP_UNREACHABLE, ICMP_TIME_EXCEEDED = 3, 11
UNREACH_HOST, UNREACH_PORT, UNREACH_TOO_BIG, UNREACH_SOURCE_ROUTE = 1, 3, 4, 5
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})  # never an ICMP error about one of these (RFC 1122 3.2.2)
ICMP_QUOTE = 548  # an ICMP error's quote: at most 576 bytes in all (RFC 1812 4.3.2.3)
MIN_MTU = 68  # RFC 791
# RFC 1191 7: the MTU plateaus, for a Datagram Too Big without a next-hop MTU (an old router)
MTU_PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)
MAX_PATHS = 4096  # tunnel soft state kept for at most this many far ends


@dataclass
class PathState:
    """RFC 2003 5: soft state about the path to a tunnel's far end, from ICMP errors from within."""

    mtu: int | None = None  # the tunnel MTU learnt from a Datagram Too Big
    mtu_until: float = 0.0
    errors: int = 0  # reachability errors not yet reported to a sender
    errors_until: float = 0.0


class TunnelSoftState:
    """The soft state of the paths to the tunnels' far ends. `config` is the home agent's
    (address, pmtu_timeout, tunnel_error_window, icmp_error_rate), `counters` its counters."""

    def __init__(self, config, counters: Counters):
        self.config, self.counters = config, counters
        self._paths: dict[IPv4Address, PathState] = {}  # by tunnel far end
        self.reset()

    def reset(self) -> None:
        self._paths.clear()
        self._icmp_tokens, self._icmp_at = self.config.icmp_error_rate, None  # ICMP errors we send: a bucket

    def on_icmp_error(self, data: bytes, bindings: dict, now: float) -> list:
        """An ICMP error addressed to the HA (the ICMP bytes): the actions it leads to."""
        if len(data) < 8 + 20 or data[0] not in ICMP_ERROR_TYPES:
            self.counters.drop("icmp-error-short-or-not-an-error")
            return []
        icmp_type, code, quoted = data[0], data[1], data[8:]
        ihl = (quoted[0] & 0x0F) * 4
        if quoted[0] >> 4 != 4 or ihl < 20 or len(quoted) < ihl:
            self.counters.drop("icmp-error-bad-quote")
            return []
        proto, src, dst = quoted[9], IPv4Address(quoted[12:16]), IPv4Address(quoted[16:20])
        if src != self.config.address:
            self.counters.drop("icmp-error-not-about-our-packet")
            return []
        about_tunnel = [b for b in bindings.values() if b.remote == dst and _carries(b, proto, quoted[ihl:])]
        if not about_tunnel:
            self.counters.drop("icmp-error-not-about-a-tunnel")
            return []
        inner = _quoted_inner(about_tunnel[0].kind, proto, quoted[ihl:])
        about = next((b for b in about_tunnel if inner is not None and ipv4_dst(inner) == b.home_address), None)
        binding = about or about_tunnel[0]
        self.counters[f"tunnel-icmp-error:{icmp_type}-{code}"] += 1
        path = self._paths.get(dst) or self._new_path(dst)
        if icmp_type == ICMP_UNREACHABLE and code == UNREACH_TOO_BIG:
            length = int.from_bytes(quoted[2:4], "big")
            mtu = _reported_mtu(int.from_bytes(data[6:8], "big"), length)
            if path.mtu is None or path.mtu_until <= now or mtu < path.mtu:
                path.mtu = mtu
            path.mtu_until = now + self.config.pmtu_timeout
            self.counters["tunnel-mtu-learnt"] += 1
            # RFC 2003 4.1 (MUST relay) through the soft state (5, 5.1): the sender's next DF datagram
            # above the tunnel MTU gets a Datagram Too Big with that MTU minus the encapsulation's
            # overhead, as a Linux tunnel does. Not at once as well: the sender's stack would then
            # refuse its own retransmission locally (EMSGSIZE) and a second report would be redundant.
            return [Log("tunnel-mtu", {"remote": str(dst), "mtu": path.mtu, "kind": binding.kind, "at": now})]
        if icmp_type == ICMP_UNREACHABLE and code not in (UNREACH_PORT, UNREACH_SOURCE_ROUTE) \
                or icmp_type == ICMP_TIME_EXCEEDED and code == 0:
            # RFC 2003 4.1 (codes 0, 1, 2: the home address is on our network, so Host Unreachable)
            # and 4.4 (Time Exceeded: MUST be reported as Host Unreachable); soft state (5): the
            # next datagrams into this tunnel draw one too
            if path.errors_until <= now:
                path.errors = 0
            path.errors += 1
            path.errors_until = now + self.config.tunnel_error_window
            if about is None:
                return []
            return self._icmp_error(ICMP_UNREACHABLE, UNREACH_HOST, bytes(4), inner, now)
        # Port Unreachable, Source Route Failed (4.1: MUST NOT relay), Redirect (4.3), Source Quench
        # (4.2: SHOULD NOT), Parameter Problem about our own header (4.5), Time Exceeded in reassembly
        self.counters[f"tunnel-icmp-error-not-relayed:{icmp_type}-{code}"] += 1
        return []

    def _new_path(self, remote: IPv4Address) -> PathState:
        if len(self._paths) >= MAX_PATHS:
            self._paths.pop(next(iter(self._paths)))  # the oldest
        path = self._paths[remote] = PathState()
        return path

    def _path(self, remote: IPv4Address, now: float) -> PathState | None:
        """The soft state of the tunnel to `remote` that still holds, or None."""
        path = self._paths.get(remote)
        if path is None:
            return None
        if path.mtu is not None and path.mtu_until <= now:
            path.mtu = None
        if path.errors and path.errors_until <= now:
            path.errors = 0
        if path.mtu is None and not path.errors:
            del self._paths[remote]
            return None
        return path

    def check(self, binding: Binding, packet: bytes, now: float) -> tuple[bool, list]:
        """RFC 2003 5 and 5.1, a datagram about to go into the binding's tunnel: (refused, the ICMP
        errors to send). Refused: DF and too big for the tunnel MTU (a Datagram Too Big to its
        sender); a reachability error not yet reported draws a Host Unreachable, the datagram
        tunnelled all the same."""
        path = self._path(binding.remote, now)
        if path is None:
            return False, []
        overhead = TUNNEL_OVERHEAD[binding.kind]
        if path.mtu is not None and len(packet) + overhead > path.mtu and _dont_fragment(packet):
            self.counters.drop("too-big-for-tunnel-mtu")
            return True, self._icmp_error(ICMP_UNREACHABLE, UNREACH_TOO_BIG, _mtu_field(path.mtu - overhead),
                                          packet, now)
        if path.errors:
            path.errors -= 1
            self.counters["tunnel-soft-state-reported"] += 1
            return False, self._icmp_error(ICMP_UNREACHABLE, UNREACH_HOST, bytes(4), packet, now)
        return False, []

    def _icmp_error(self, icmp_type: int, code: int, rest: bytes, about: bytes, now: float) -> list:
        """An ICMP error from the HA to the sender of `about` (an original, unencapsulated datagram),
        quoting it; none about an ICMP error, a non-initial fragment or a packet from no one in
        particular (RFC 1122 3.2.2, RFC 1812 4.3.2.7), nor above the rate limit (4.3.2.8)."""
        if len(about) < 20:
            return []
        sender = IPv4Address(about[12:16])
        ihl = (about[0] & 0x0F) * 4
        if (sender.is_unspecified or sender.is_multicast or sender.is_loopback or sender == LIMITED_BROADCAST
                or int.from_bytes(about[6:8], "big") & 0x1FFF
                or about[9] == PROTO_ICMP and about[ihl:ihl + 1] and about[ihl] in ICMP_ERROR_TYPES):
            self.counters["icmp-error-not-sent"] += 1
            return []
        if not self._icmp_allowed(now):
            self.counters.drop("icmp-error-rate-limited")
            return []
        body = bytes([icmp_type, code, 0, 0]) + rest + about[:ICMP_QUOTE]
        body = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
        self.counters[f"icmp-error-sent:{icmp_type}-{code}"] += 1
        return [SendIcmp(sender, body, src=self.config.address, ttl=64)]

    def _icmp_allowed(self, now: float) -> bool:
        rate = self.config.icmp_error_rate
        if self._icmp_at is not None:
            self._icmp_tokens = min(rate, self._icmp_tokens + max(0.0, now - self._icmp_at) * rate)
        self._icmp_at = now
        if self._icmp_tokens < 1:
            return False
        self._icmp_tokens -= 1
        return True


def _carries(binding: Binding, proto: int, after_header: bytes) -> bool:
    """Whether a packet of IP protocol `proto` (what followed its header: `after_header`) from the HA
    to the binding's far end is one of the binding's tunnel packets."""
    if binding.kind == "udp":
        if proto != PROTO_UDP or binding.remote_port is None:
            return False
        return len(after_header) < 4 or (int.from_bytes(after_header[0:2], "big"),
                                         int.from_bytes(after_header[2:4], "big")) == (MIP_PORT, binding.remote_port)
    # a fragment that minimal encapsulation could not carry went in IP-in-IP (RFC 2004 3)
    return proto == KINDS[binding.kind] or proto == PROTO_IPIP and binding.kind == "minimal"


def _quoted_inner(kind: str, proto: int, after_header: bytes) -> bytes | None:
    """The original datagram (as far as quoted) inside a quoted tunnel packet, None when the quote
    does not reach its header (minimal encapsulation rewrote it: never recoverable from a quote)."""
    if proto == PROTO_IPIP:
        inner = after_header
    elif kind == "gre":
        inner = after_header[8:] if after_header[:1] and after_header[0] & 0x80 else after_header[4:]
    elif kind == "udp":
        inner = after_header[8 + 4:]  # UDP header, MIP tunnel data header
    else:
        return None
    return inner if len(inner) >= 20 and inner[0] >> 4 == 4 else None


def _dont_fragment(packet: bytes) -> bool:
    return len(packet) >= 8 and bool(packet[6] & 0x40)


def _reported_mtu(mtu: int, length: int) -> int:
    """The tunnel MTU a Datagram Too Big reports: its next-hop MTU, or (an old router's 0, RFC 1191
    5) the plateau below the quoted packet's length; never below 68."""
    if mtu < MIN_MTU or (length and mtu >= length > MIN_MTU):
        mtu = next((p for p in MTU_PLATEAUS if p < length), MIN_MTU) if length else MIN_MTU
    return max(mtu, MIN_MTU)


def _mtu_field(mtu: int) -> bytes:
    """The second word of a Datagram Too Big: unused, next-hop MTU (RFC 1191 4)."""
    return bytes(2) + max(mtu, MIN_MTU).to_bytes(2, "big")
