"""UDP datagrams (RFC 768) with a right, zero ("not computed"), or deliberately wrong checksum."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from .ipv4 import PROTO_UDP, build_ipv4, internet_checksum, ip, parse_ipv4
from .result import Decoded, Malformed, need, safely

MIP_PORT = 434


def udp_checksum(src, dst, segment: bytes) -> int:
    """The checksum over the pseudo-header and `segment` (whose checksum field must be zero)."""
    pseudo = ip(src).packed + ip(dst).packed + struct.pack("!BBH", 0, PROTO_UDP, len(segment))
    value = internet_checksum(pseudo + segment)
    return value or 0xFFFF  # a computed zero is sent as all ones (RFC 768)


def build_udp(src, dst, sport: int, dport: int, payload: bytes, checksum: str | int = "right",
              length: int | None = None) -> bytes:
    """The UDP header and payload. checksum: "right", "zero" (none), "wrong" (right one plus one), or an int."""
    ulen = 8 + len(payload) if length is None else length
    segment = struct.pack("!HHHH", sport, dport, ulen & 0xFFFF, 0) + payload
    if checksum == "zero":
        value = 0
    elif checksum in ("right", "wrong"):
        value = udp_checksum(src, dst, segment)
        if checksum == "wrong":
            value = (value % 0xFFFF) + 1  # always differs from the right one (and is never 0)
    elif isinstance(checksum, int):
        value = checksum
    else:
        raise ValueError(f"checksum must be right, zero, wrong or an int, not {checksum!r}")
    return segment[:6] + struct.pack("!H", value & 0xFFFF) + segment[8:]


def ipv4_udp(src, dst, sport: int, dport: int, payload: bytes, checksum: str | int = "right",
             **ip_fields) -> bytes:
    """A whole IPv4/UDP packet (ip_fields: ttl=, tos=, flags_fragment=, identification=...)."""
    return build_ipv4(src, dst, PROTO_UDP, build_udp(src, dst, sport, dport, payload, checksum), **ip_fields)


@dataclass(frozen=True)
class UdpDatagram:
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    payload: bytes
    checksum: int
    checksum_state: str  # "right", "zero" or "wrong"
    ttl: int | None = None


def _parse_udp_segment(src, dst, segment: bytes, ttl=None) -> UdpDatagram:
    need(segment, 8, "udp header")
    sport, dport, length, checksum = struct.unpack_from("!HHHH", segment)
    if length < 8 or length > len(segment):
        raise Malformed(f"udp: length {length} with {len(segment)} bytes")
    segment = segment[:length]
    if checksum == 0:
        state = "zero"
    else:
        state = "right" if udp_checksum(src, dst, segment[:6] + b"\0\0" + segment[8:]) == checksum else "wrong"
    return UdpDatagram(ip(src), ip(dst), sport, dport, segment[8:], checksum, state, ttl)


def parse_udp_segment(src, dst, segment: bytes) -> Decoded:
    return safely(_parse_udp_segment, src, dst, segment)


def _parse_ipv4_udp(packet: bytes) -> UdpDatagram:
    decoded = parse_ipv4(packet)
    if not decoded.ok:
        raise Malformed(decoded.error)
    p = decoded.value
    if p.protocol != PROTO_UDP:
        raise Malformed(f"ipv4: protocol {p.protocol}, not udp")
    return _parse_udp_segment(p.src, p.dst, p.payload, p.ttl)


def parse_ipv4_udp(packet: bytes) -> Decoded:
    """Decoded(UdpDatagram) from a whole IPv4 packet."""
    return safely(_parse_ipv4_udp, packet)
