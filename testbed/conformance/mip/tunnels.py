"""Tunnels built and taken apart by the tester itself.

- IP-in-IP (RFC 2003, protocol 4): outer TOS and DF copied from the inner header, outer TTL as
  chosen, the inner TTL decremented by one when the encapsulator forwards (`forwarding=True`).
- Minimal encapsulation (RFC 2004, protocol 55): the original header modified in place, the 8-byte
  (S=0) or 12-byte (S=1) forwarding header with its own checksum; the TTL is left alone.
- GRE (RFC 2784, protocol 47): C bit with optional checksum, version 0, protocol type 0x0800.
- RFC 3519 UDP tunnel: the MIP Tunnel Data header (type 4, next header) in UDP port 434.
Decapsulators return `Decoded` with a `Decapsulated` (outer header, inner packet) or an error.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from .ipv4 import (
    FLAG_DF, FLAG_MF, PROTO_GRE, PROTO_IPIP, PROTO_MINIMAL, IPv4Header, build_ipv4, internet_checksum, ip,
    parse_ipv4,
)
from .messages import MIP_PORT, TunnelData, parse_tunnel_data
from .result import Decoded, Malformed, need, safely
from .udp import ipv4_udp, parse_ipv4_udp

ETHERTYPE_IPV4 = 0x0800


def _inner(packet: bytes):
    decoded = parse_ipv4(packet)
    if not decoded.ok:
        raise ValueError(f"inner packet: {decoded.error}")
    return decoded.value


def decrement_ttl(packet: bytes, by: int = 1) -> bytes:
    """The packet with its TTL lowered by `by` and the header checksum recomputed."""
    inner = _inner(packet)
    header = replace(inner.header, ttl=max(inner.ttl - by, 0), checksum=None)
    return header.encode(len(inner.payload)) + inner.payload


# --- IP in IP ---------------------------------------------------------------------------------------

def ipip_encapsulate(inner: bytes, src, dst, ttl: int = 64, forwarding: bool = True, copy_df: bool = True,
                     identification: int = 0, **outer_fields) -> bytes:
    """RFC 2003 3.1: an outer header (protocol 4) in front of `inner`."""
    parsed = _inner(inner)
    if forwarding:
        inner = decrement_ttl(inner)
    flags = FLAG_DF if (copy_df and parsed.header.df) else 0
    fields = dict(ttl=ttl, tos=parsed.header.tos, flags_fragment=flags, identification=identification)
    fields.update(outer_fields)
    return build_ipv4(src, dst, PROTO_IPIP, inner, **fields)


@dataclass(frozen=True)
class Decapsulated:
    outer: IPv4Header
    inner: bytes  # the whole inner IPv4 packet
    kind: str  # "ipip", "minimal", "gre" or "udp"
    details: dict


def _expect_outer(packet: bytes, protocol: int):
    decoded = parse_ipv4(packet)
    if not decoded.ok:
        raise Malformed(f"outer {decoded.error}")
    outer = decoded.value
    if outer.protocol != protocol:
        raise Malformed(f"outer protocol {outer.protocol}, expected {protocol}")
    return outer


def _ipip_decapsulate(packet: bytes) -> Decapsulated:
    outer = _expect_outer(packet, PROTO_IPIP)
    inner = parse_ipv4(outer.payload)
    if not inner.ok:
        raise Malformed(f"inner {inner.error}")
    return Decapsulated(outer.header, outer.payload, "ipip", {"inner_checksum_ok": inner.value.checksum_ok})


def ipip_decapsulate(packet: bytes) -> Decoded:
    return safely(_ipip_decapsulate, packet)


# --- minimal encapsulation ------------------------------------------------------------------------------

def minimal_header(protocol: int, original_dst, original_src=None, checksum: int | str | None = None,
                   reserved: int = 0) -> bytes:
    """The minimal forwarding header: 8 bytes, or 12 with the original source (S bit)."""
    s_bit = 0x80 if original_src is not None else 0
    body = struct.pack("!BBH4s", protocol, s_bit | (reserved & 0x7F), 0, ip(original_dst).packed)
    if original_src is not None:
        body += ip(original_src).packed
    if checksum is None or checksum == "right":
        value = internet_checksum(body)
    elif checksum == "wrong":
        value = internet_checksum(body) ^ 0x0101
    else:
        value = int(checksum)
    return body[:2] + struct.pack("!H", value & 0xFFFF) + body[4:]


def minimal_encapsulate(inner: bytes, src, dst, checksum: int | str | None = None) -> bytes:
    """RFC 2004 3: rewrite the original header (protocol 55, tunnel exit as destination, the
    encapsulator `src` as source unless it is the original source) and insert the forwarding header."""
    parsed = _inner(inner)
    h = parsed.header
    if h.flags_fragment & (FLAG_MF | 0x1FFF):
        raise ValueError("minimal encapsulation must not carry a fragment (RFC 2004 3)")
    original_src = None if ip(src) == h.src else h.src
    fwd = minimal_header(h.protocol, h.dst, original_src, checksum)
    header = replace(h, protocol=PROTO_MINIMAL, dst=ip(dst), src=ip(src), total_length=None, checksum=None)
    return header.encode(len(fwd) + len(parsed.payload)) + fwd + parsed.payload


def _minimal_decapsulate(packet: bytes) -> Decapsulated:
    outer = _expect_outer(packet, PROTO_MINIMAL)
    body = outer.payload
    need(body, 8, "minimal forwarding header")
    s_bit = bool(body[1] & 0x80)
    size = 12 if s_bit else 8
    need(body, size, "minimal forwarding header with original source")
    if internet_checksum(body[:size]) != 0:
        raise Malformed("minimal forwarding header checksum wrong")
    protocol, original_dst = body[0], body[4:8]
    original_src = body[8:12] if s_bit else outer.src.packed
    header = replace(outer.header, protocol=protocol, src=ip(bytes(original_src)), dst=ip(bytes(original_dst)),
                     total_length=None, checksum=None)
    inner = header.encode(len(body) - size) + body[size:]
    return Decapsulated(outer.header, inner, "minimal", {"s_bit": s_bit, "header_length": size})


def minimal_decapsulate(packet: bytes) -> Decoded:
    return safely(_minimal_decapsulate, packet)


# --- GRE --------------------------------------------------------------------------------------------------

def gre_header(payload: bytes, checksum: bool = False, protocol_type: int = ETHERTYPE_IPV4, version: int = 0,
               reserved0: int = 0, wrong_checksum: bool = False) -> bytes:
    """RFC 2784 2: C, Reserved0, Ver, Protocol Type [, Checksum, Reserved1]."""
    word = (0x8000 if checksum else 0) | ((reserved0 & 0xFFF) << 3) | (version & 0x7)
    head = struct.pack("!HH", word, protocol_type)
    if not checksum:
        return head
    value = internet_checksum(head + b"\0\0\0\0" + payload)
    if wrong_checksum:
        value ^= 0x0101
    return head + struct.pack("!HH", value, 0)


def gre_encapsulate(inner: bytes, src, dst, ttl: int = 64, checksum: bool = False, forwarding: bool = True,
                    **outer_fields) -> bytes:
    parsed = _inner(inner)
    if forwarding:
        inner = decrement_ttl(inner)
    fields = dict(ttl=ttl, tos=parsed.header.tos, flags_fragment=FLAG_DF if parsed.header.df else 0)
    fields.update(outer_fields)
    return build_ipv4(src, dst, PROTO_GRE, gre_header(inner, checksum) + inner, **fields)


def _gre_decapsulate(packet: bytes) -> Decapsulated:
    outer = _expect_outer(packet, PROTO_GRE)
    body = outer.payload
    need(body, 4, "gre header")
    word, proto = struct.unpack_from("!HH", body)
    version, c_bit, reserved0 = word & 0x7, bool(word & 0x8000), (word >> 3) & 0xFFF
    if version != 0:
        raise Malformed(f"gre version {version}")
    if proto != ETHERTYPE_IPV4:
        raise Malformed(f"gre protocol type {proto:#06x}, not ipv4")
    size = 8 if c_bit else 4
    need(body, size, "gre header with checksum")
    if c_bit and internet_checksum(body) != 0:
        raise Malformed("gre checksum wrong")
    inner = parse_ipv4(body[size:])
    if not inner.ok:
        raise Malformed(f"inner {inner.error}")
    return Decapsulated(outer.header, body[size:], "gre", {"checksum_present": c_bit, "reserved0": reserved0})


def gre_decapsulate(packet: bytes) -> Decoded:
    return safely(_gre_decapsulate, packet)


# --- RFC 3519 UDP tunnel -----------------------------------------------------------------------------------

def udp_tunnel_encapsulate(inner: bytes, src, dst, sport: int = MIP_PORT, dport: int = MIP_PORT,
                           next_header: int = PROTO_IPIP, ttl: int = 64, checksum: str | int = "right",
                           forwarding: bool = True) -> bytes:
    """IP/UDP/MIP-tunnel-data/inner: RFC 3519 3.3 with IP-in-IP inside (next header 4)."""
    if forwarding and next_header == PROTO_IPIP:
        inner = decrement_ttl(inner)
    return ipv4_udp(src, dst, sport, dport, TunnelData(next_header, inner).encode(), checksum, ttl=ttl)


def _udp_tunnel_decapsulate(packet: bytes) -> Decapsulated:
    udp = parse_ipv4_udp(packet)
    if not udp.ok:
        raise Malformed(udp.error)
    data = parse_tunnel_data(udp.payload)
    if not data.ok:
        raise Malformed(data.error)
    outer = parse_ipv4(packet).value.header
    if data.next_header == PROTO_IPIP:
        inner = parse_ipv4(data.payload)
        if not inner.ok:
            raise Malformed(f"inner {inner.error}")
    return Decapsulated(outer, data.payload, "udp", {"sport": udp.sport, "dport": udp.dport,
                                                      "next_header": data.next_header,
                                                      "udp_checksum": udp.checksum_state})


def udp_tunnel_decapsulate(packet: bytes) -> Decoded:
    return safely(_udp_tunnel_decapsulate, packet)


def decapsulate(packet: bytes) -> Decoded:
    """Any of the four by the outer protocol (UDP: port 434 tunnel data)."""
    outer = parse_ipv4(packet)
    if not outer.ok:
        return Decoded(error=f"outer {outer.error}")
    handler = {PROTO_IPIP: ipip_decapsulate, PROTO_MINIMAL: minimal_decapsulate, PROTO_GRE: gre_decapsulate,
               17: udp_tunnel_decapsulate}.get(outer.value.protocol)
    if handler is None:
        return Decoded(error=f"outer protocol {outer.value.protocol} is not a tunnel")
    return handler(packet)


def icmp_echo(src, dst, ident: int = 0x4D49, seq: int = 0, data: bytes = b"", ttl: int = 64) -> bytes:
    """An IPv4 ICMP echo request (the RFC 3519 4.9 keepalive, carried in tunnel data)."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    return build_ipv4(src, dst, 1, body, ttl=ttl)


def icmp_error(icmp_type: int, code: int, quoted: bytes, rest: bytes = b"\0\0\0\0") -> bytes:
    """An ICMP error message (RFC 792): type, code, checksum, the 4 bytes after it (`rest`: unused,
    or an MTU), then the offending datagram as far as 576 bytes allow (RFC 1812 4.3.2.3)."""
    body = struct.pack("!BBH", icmp_type, code, 0) + rest + quoted[:548]
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def udp_keepalive(mn_address, ha_address, sport: int = MIP_PORT, seq: int = 0, src=None) -> bytes:
    """RFC 3519 4.9: a UDP-encapsulated ICMP echo request to the home agent (outer source `src` or
    `mn_address`)."""
    inner = icmp_echo(mn_address, ha_address, seq=seq)
    return udp_tunnel_encapsulate(inner, src or mn_address, ha_address, sport, MIP_PORT, forwarding=False)
