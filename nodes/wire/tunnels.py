"""The three tunnels of Mobile IPv4 (RFC 5944 3.3, 4.2.3): IP-in-IP (RFC 2003, protocol 4), minimal
encapsulation (RFC 2004, protocol 55) and GRE (RFC 2784, protocol 47), byte-exact and sans-I/O.

* `encapsulate(kind, outer_src, outer_dst, inner)` -> the whole outer IPv4 packet;
* `decapsulate(packet)` -> `Decapsulated(kind, outer, inner)`, or DecodeError with a reason.

Minimal encapsulation rewrites the original header instead of adding one: protocol 55, source the
encapsulator, destination the tunnel's far end, and a forwarding header of 8 bytes (12 with the
original source, S bit, when the encapsulator is not the original sender) that keeps the original
protocol and destination. A fragment cannot be carried so (RFC 2004 3: no room for the fragment
fields): `encapsulate` raises `NotEncapsulable` and the caller falls back to IP-in-IP.

GRE as RFC 2784 has it: the C bit with the optional checksum, version 0, protocol type 0x0800 for
an IPv4 payload. Bits 1-5 (RFC 1701's routing, key, sequence, strict source route, recursion)
make the packet rejected, as RFC 2784 2.3 asks of a receiver that does not implement RFC 1701;
bits 6-12 and Reserved1 are sent as zero and ignored on reception.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from nodes.wire.errors import DecodeError, need
from nodes.wire.ipv4 import PROTO_GRE, PROTO_IPIP, PROTO_MINENC, IPv4, checksum, ip_in_ip

KINDS = {"ipip": PROTO_IPIP, "minimal": PROTO_MINENC, "gre": PROTO_GRE}
KIND_OF_PROTO = {proto: kind for kind, proto in KINDS.items()}
ETHERTYPE_IPV4 = 0x0800

GRE_C = 0x8000
GRE_RFC1701_BITS = 0x7C00  # R, K, S, s, Recur
GRE_VERSION = 0x0007
MIN_S = 0x80  # the S bit of the minimal forwarding header: original source present


class NotEncapsulable(ValueError):
    """This packet cannot go into this tunnel (a fragment into minimal encapsulation)."""


# --- GRE (RFC 2784) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GreHeader:
    protocol: int = ETHERTYPE_IPV4
    with_checksum: bool = False

    def encode(self, payload: bytes) -> bytes:
        """The GRE header (checksum over header and payload when C is set) followed by `payload`."""
        if not self.with_checksum:
            return struct.pack("!HH", 0, self.protocol) + payload
        body = struct.pack("!HHHH", GRE_C, self.protocol, 0, 0) + payload
        return body[:4] + struct.pack("!H", checksum(body)) + body[6:]

    @classmethod
    def decode(cls, data: bytes) -> tuple["GreHeader", bytes]:
        """(header, payload) of a GRE packet (the IP payload of protocol 47)."""
        need(data, 4, "GRE header")
        flags, protocol = struct.unpack("!HH", data[:4])
        if flags & GRE_RFC1701_BITS:
            raise DecodeError("unsupported-flags", f"GRE flags {flags:#06x}: routing, key, sequence or recursion"
                              " bits (RFC 1701) are set; RFC 2784 receivers discard such packets")
        if flags & GRE_VERSION:
            raise DecodeError("bad-version", f"GRE version {flags & GRE_VERSION}, expected 0")
        if not flags & GRE_C:
            return cls(protocol, False), bytes(data[4:])
        need(data, 8, "GRE header with checksum")
        if checksum(data) != 0:
            raise DecodeError("bad-checksum", "GRE checksum does not verify")
        return cls(protocol, True), bytes(data[8:])


# --- minimal encapsulation (RFC 2004) -------------------------------------------------------------

@dataclass(frozen=True)
class MinimalForwardingHeader:
    protocol: int
    original_dst: IPv4Address
    original_src: IPv4Address | None = None  # present (S bit) when the encapsulator is not the sender

    def encode(self) -> bytes:
        src = self.original_src
        body = struct.pack("!BBH4s", self.protocol, MIN_S if src is not None else 0, 0,
                           IPv4Address(self.original_dst).packed)
        if src is not None:
            body += IPv4Address(src).packed
        return body[:2] + struct.pack("!H", checksum(body)) + body[4:]

    @classmethod
    def decode(cls, data: bytes) -> tuple["MinimalForwardingHeader", bytes]:
        """(forwarding header, the original payload after it)."""
        need(data, 8, "minimal forwarding header")
        protocol, flags = data[0], data[1]
        size = 12 if flags & MIN_S else 8
        need(data, size, "minimal forwarding header with the original source")
        if checksum(data[:size]) != 0:
            raise DecodeError("bad-checksum", "minimal forwarding header checksum does not verify")
        # the reserved bits after S are sent as zero and ignored on reception
        src = IPv4Address(data[8:12]) if size == 12 else None
        return cls(protocol, IPv4Address(data[4:8]), src), bytes(data[size:])


def minimal_encapsulate(outer_src, outer_dst, inner: bytes) -> bytes:
    """RFC 2004 3: the original datagram with its header rewritten and a forwarding header inserted."""
    original = IPv4.decode(inner)
    if original.frag_offset or original.flags & 0x1:
        raise NotEncapsulable("a fragment cannot be carried in minimal encapsulation (RFC 2004 3)")
    outer_src = IPv4Address(outer_src)
    forwarding = MinimalForwardingHeader(original.proto, original.dst,
                                         None if original.src == outer_src else original.src)
    return IPv4(outer_src, IPv4Address(outer_dst), PROTO_MINENC, forwarding.encode() + original.payload,
                ttl=original.ttl, tos=original.tos, ident=original.ident, flags=original.flags,
                options=original.options).encode()


def minimal_decapsulate(outer: IPv4) -> bytes:
    """The original datagram of a decoded protocol-55 packet (RFC 2004 3, the decapsulator's side)."""
    forwarding, payload = MinimalForwardingHeader.decode(outer.payload)
    return IPv4(forwarding.original_src or outer.src, forwarding.original_dst, forwarding.protocol, payload,
                ttl=outer.ttl, tos=outer.tos, ident=outer.ident, flags=outer.flags,
                options=outer.options).encode()


# --- one entry point for the three ----------------------------------------------------------------

def encapsulate(kind: str, outer_src, outer_dst, inner: bytes) -> bytes:
    """The outer packet carrying `inner` (a whole IPv4 packet) from outer_src to outer_dst."""
    if kind == "ipip":
        return ip_in_ip(outer_src, outer_dst, inner)
    if kind == "minimal":
        return minimal_encapsulate(outer_src, outer_dst, inner)
    if kind == "gre":
        inner_tos = inner[1] if len(inner) > 1 else 0
        return IPv4(IPv4Address(outer_src), IPv4Address(outer_dst), PROTO_GRE, GreHeader().encode(inner),
                    tos=inner_tos).encode()
    raise ValueError(f"unknown tunnel kind {kind!r}: one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Decapsulated:
    kind: str
    outer: IPv4  # its payload is the tunnel's (for minimal encapsulation, the rewritten datagram's)
    inner: bytes  # the whole inner IPv4 packet


def decapsulate(packet: bytes) -> Decapsulated:
    """The inner IPv4 packet of an IP-in-IP, minimal or GRE packet. DecodeError reasons: those of
    the outer IPv4 header, 'not-a-tunnel', the GRE and minimal header's, 'not-ipv4' (a GRE payload
    of another protocol type) and 'inner-<reason>' for an inner packet that is not IPv4."""
    outer = IPv4.decode(packet)
    kind = KIND_OF_PROTO.get(outer.proto)
    if kind is None:
        raise DecodeError("not-a-tunnel", f"IP protocol {outer.proto} is not 4, 47 or 55")
    if kind == "ipip":
        inner = outer.payload
    elif kind == "gre":
        gre, inner = GreHeader.decode(outer.payload)
        if gre.protocol != ETHERTYPE_IPV4:
            raise DecodeError("not-ipv4", f"GRE protocol type {gre.protocol:#06x}, expected 0x0800")
    else:
        inner = minimal_decapsulate(outer)
    try:
        IPv4.decode(inner)
    except DecodeError as e:
        raise DecodeError(f"inner-{e.reason}", e.detail) from None
    return Decapsulated(kind, outer, inner)
