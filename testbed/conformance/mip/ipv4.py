"""A minimal IPv4 header of our own (RFC 791), enough for the tester's tunnels and raw sockets.

Built and parsed with struct so that every field (TTL, DF, ID, checksum) is under the tester's control.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from .result import Decoded, Malformed, need, safely

PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_MINIMAL = 55

FLAG_DF = 0x4000
FLAG_MF = 0x2000

_HEADER = struct.Struct("!BBHHHBBH4s4s")


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's complement sum of 16-bit words (odd length padded with a zero byte)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip(a) -> IPv4Address:
    return a if isinstance(a, IPv4Address) else IPv4Address(a)


@dataclass(frozen=True)
class IPv4Header:
    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    tos: int = 0
    identification: int = 0
    flags_fragment: int = 0  # the 16-bit flags + fragment offset word (FLAG_DF, FLAG_MF)
    total_length: int | None = None  # None: computed
    checksum: int | None = None  # None: computed; an int is sent as it is
    options: bytes = b""
    version: int = 4
    ihl: int | None = None  # None: from the options

    @property
    def df(self) -> bool:
        return bool(self.flags_fragment & FLAG_DF)

    @property
    def header_length(self) -> int:
        return (self.ihl if self.ihl is not None else 5 + len(self.options) // 4) * 4

    def encode(self, payload_length: int = 0) -> bytes:
        ihl = self.ihl if self.ihl is not None else 5 + (len(self.options) + 3) // 4
        options = self.options + b"\0" * (-len(self.options) % 4)
        total = self.total_length if self.total_length is not None else ihl * 4 + payload_length
        header = _HEADER.pack((self.version << 4) | (ihl & 0xF), self.tos, total & 0xFFFF, self.identification,
                              self.flags_fragment, self.ttl, self.protocol, 0, ip(self.src).packed,
                              ip(self.dst).packed) + options
        checksum = internet_checksum(header) if self.checksum is None else self.checksum
        return header[:10] + struct.pack("!H", checksum) + header[12:]


@dataclass(frozen=True)
class IPv4Packet:
    header: IPv4Header
    payload: bytes
    checksum_ok: bool = True

    @property
    def src(self) -> IPv4Address:
        return self.header.src

    @property
    def dst(self) -> IPv4Address:
        return self.header.dst

    @property
    def protocol(self) -> int:
        return self.header.protocol

    @property
    def ttl(self) -> int:
        return self.header.ttl


def build_ipv4(src, dst, protocol: int, payload: bytes, **fields) -> bytes:
    """A whole IPv4 packet; any header field can be overridden (ttl=, checksum=, total_length=...)."""
    header = IPv4Header(ip(src), ip(dst), protocol, **fields)
    return header.encode(len(payload)) + payload


def _parse_ipv4(data: bytes, strict_length: bool) -> IPv4Packet:
    need(data, 20, "ipv4 header")
    vihl, tos, total, ident, frag, ttl, proto, checksum, src, dst = _HEADER.unpack_from(data)
    if vihl >> 4 != 4:
        raise Malformed(f"ipv4: version {vihl >> 4}")
    ihl = vihl & 0xF
    if ihl < 5:
        raise Malformed(f"ipv4: header length {ihl * 4} < 20")
    need(data, ihl * 4, "ipv4 header with options")
    if total < ihl * 4:
        raise Malformed(f"ipv4: total length {total} shorter than the header")
    if strict_length and total > len(data):
        raise Malformed(f"ipv4: total length {total} but {len(data)} bytes")
    end = min(total, len(data))
    header = IPv4Header(IPv4Address(src), IPv4Address(dst), proto, ttl, tos, ident, frag, total, checksum,
                        data[20:ihl * 4], 4, ihl)
    return IPv4Packet(header, data[ihl * 4:end], internet_checksum(data[:ihl * 4]) == 0)


def parse_ipv4(data: bytes, strict_length: bool = True) -> Decoded:
    """Decoded(IPv4Packet) or Decoded(error=...)."""
    return safely(_parse_ipv4, data, strict_length)


def with_ttl(header: IPv4Header, ttl: int) -> IPv4Header:
    return replace(header, ttl=ttl, checksum=None, total_length=None)
