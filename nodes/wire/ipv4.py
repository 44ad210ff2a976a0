"""IPv4, UDP and ICMP headers: just what the userspace data plane needs to build and check packets.

Addresses are kept as `ipaddress.IPv4Address`; payloads as bytes. `decode` functions raise
DecodeError with a reason; `encode` functions compute lengths and checksums.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from nodes.wire.errors import DecodeError, need

PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ESP = 50
PROTO_MINENC = 55


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of `data` (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class IPv4:
    src: IPv4Address
    dst: IPv4Address
    proto: int
    payload: bytes = b""
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0x2  # DF
    frag_offset: int = 0
    options: bytes = b""

    def encode(self) -> bytes:
        if len(self.options) % 4:
            raise ValueError("IPv4 options must be a multiple of 4 bytes")
        ihl = 5 + len(self.options) // 4
        total = ihl * 4 + len(self.payload)
        hdr = struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            self.tos,
            total,
            self.ident,
            (self.flags << 13) | self.frag_offset,
            self.ttl,
            self.proto,
            0,
            IPv4Address(self.src).packed,
            IPv4Address(self.dst).packed,
        ) + self.options
        csum = checksum(hdr)
        return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + self.payload

    @classmethod
    def decode(cls, data: bytes, verify_checksum: bool = True) -> "IPv4":
        need(data, 20, "IPv4 header")
        vihl, tos, total, ident, fl, ttl, proto, _csum, src, dst = struct.unpack(
            "!BBHHHBBH4s4s", data[:20]
        )
        if vihl >> 4 != 4:
            raise DecodeError("bad-version", f"IP version {vihl >> 4}, expected 4")
        ihl = (vihl & 0xF) * 4
        if ihl < 20:
            raise DecodeError("bad-ihl", f"header length {ihl} below 20")
        if total < ihl or total > len(data):
            raise DecodeError("bad-length", f"total length {total} with header {ihl} and {len(data)} bytes")
        if verify_checksum and checksum(data[:ihl]) != 0:
            raise DecodeError("bad-checksum", "IPv4 header checksum does not verify")
        return cls(
            src=IPv4Address(src),
            dst=IPv4Address(dst),
            proto=proto,
            payload=bytes(data[ihl:total]),
            ttl=ttl,
            tos=tos,
            ident=ident,
            flags=fl >> 13,
            frag_offset=fl & 0x1FFF,
            options=bytes(data[20:ihl]),
        )


def _pseudo_header(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> bytes:
    return IPv4Address(src).packed + IPv4Address(dst).packed + struct.pack("!BBH", 0, proto, length)


@dataclass
class UDP:
    sport: int
    dport: int
    payload: bytes = b""

    def encode(self, src: IPv4Address, dst: IPv4Address) -> bytes:
        length = 8 + len(self.payload)
        body = struct.pack("!HHHH", self.sport, self.dport, length, 0) + self.payload
        csum = checksum(_pseudo_header(src, dst, PROTO_UDP, length) + body) or 0xFFFF
        return body[:6] + struct.pack("!H", csum) + body[8:]

    @classmethod
    def decode(cls, data: bytes, src: IPv4Address | None = None, dst: IPv4Address | None = None) -> "UDP":
        """Decode; with src and dst given, a non-zero checksum is verified."""
        need(data, 8, "UDP header")
        sport, dport, length, csum = struct.unpack("!HHHH", data[:8])
        if length < 8 or length > len(data):
            raise DecodeError("bad-length", f"UDP length {length} with {len(data)} bytes")
        if csum and src is not None and dst is not None:
            if checksum(_pseudo_header(src, dst, PROTO_UDP, length) + data[:length]) != 0:
                raise DecodeError("bad-checksum", "UDP checksum does not verify")
        return cls(sport, dport, bytes(data[8:length]))


@dataclass
class ICMP:
    type: int
    code: int
    rest: bytes = field(default=b"\0\0\0\0")  # the 4 bytes after the checksum
    payload: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack("!BBH", self.type, self.code, 0) + self.rest + self.payload
        return body[:2] + struct.pack("!H", checksum(body)) + body[4:]

    @classmethod
    def decode(cls, data: bytes) -> "ICMP":
        need(data, 8, "ICMP header")
        if checksum(data) != 0:
            raise DecodeError("bad-checksum", "ICMP checksum does not verify")
        return cls(data[0], data[1], bytes(data[4:8]), bytes(data[8:]))


def ipv4_udp(src, dst, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    """A whole IPv4/UDP datagram."""
    src, dst = IPv4Address(src), IPv4Address(dst)
    return IPv4(src, dst, PROTO_UDP, UDP(sport, dport, payload).encode(src, dst), ttl=ttl).encode()


def ip_in_ip(outer_src, outer_dst, inner: bytes, ttl: int = 64) -> bytes:
    """RFC 2003 IP-in-IP: `inner` (a whole IPv4 packet) inside a new IPv4 header, protocol 4."""
    inner_tos = inner[1] if len(inner) > 1 else 0
    return IPv4(IPv4Address(outer_src), IPv4Address(outer_dst), PROTO_IPIP, inner, ttl=ttl, tos=inner_tos).encode()
