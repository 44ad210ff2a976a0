"""Agent Advertisements and Agent Solicitations (RFC 5944 2.1-2.2 on ICMP Router Discovery, RFC 1256).

An advertisement is an ICMP Router Advertisement (type 9, code 0 or 16) followed by the Mobility
Agent Advertisement extension (16: sequence number, registration lifetime, flags R B H F M G r T U
X I, care-of addresses), optionally the Prefix-Lengths extension (19) and One-byte Padding (0).
The ICMP checksum is computed, or `checksum=` sends any value ("wrong" sends a wrong one).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .ipv4 import internet_checksum, ip
from .result import Decoded, Malformed, need, safely

ICMP_ROUTER_ADVERTISEMENT = 9
ICMP_ROUTER_SOLICITATION = 10
CODE_ROUTES_COMMON_TRAFFIC = 0
CODE_MOBILITY_ONLY = 16
EXT_MOBILITY_AGENT = 16
EXT_PREFIX_LENGTHS = 19
EXT_PAD = 0
ALL_SYSTEMS = IPv4Address("224.0.0.1")
ALL_ROUTERS = IPv4Address("224.0.0.2")
BROADCAST = IPv4Address("255.255.255.255")

AGENT_FLAGS = {"R": 0x8000, "B": 0x4000, "H": 0x2000, "F": 0x1000, "M": 0x0800, "G": 0x0400, "r": 0x0200,
               "T": 0x0100, "U": 0x0080, "X": 0x0040, "I": 0x0020}


def agent_flags(letters: str) -> int:
    """Flags from letters, e.g. "RFT" (case matters: r is the reserved bit)."""
    value = 0
    for letter in letters:
        if letter not in AGENT_FLAGS:
            raise ValueError(f"unknown agent flag {letter!r}; known: {''.join(AGENT_FLAGS)}")
        value |= AGENT_FLAGS[letter]
    return value


def agent_flag_letters(flags: int) -> str:
    return "".join(k for k, v in AGENT_FLAGS.items() if flags & v)


def next_sequence(seq: int) -> int:
    """RFC 5944 2.3.2: after 0xffff the sequence goes on at 256 (0-255 mean a reboot)."""
    return 256 if seq >= 0xFFFF else seq + 1


def _checksummed(body: bytes, checksum) -> bytes:
    if checksum is None or checksum == "right":
        value = internet_checksum(body)
    elif checksum == "wrong":
        value = internet_checksum(body) ^ 0x0001 or 0xFFFF
    else:
        value = int(checksum)
    return body[:2] + struct.pack("!H", value & 0xFFFF) + body[4:]


@dataclass
class AgentAdvertisement:
    """Every field can be overridden; None means "as it should be"."""

    sequence: int = 0
    registration_lifetime: int = 1800
    flags: int = 0x1000  # F
    care_of_addresses: list = field(default_factory=list)
    routers: list = field(default_factory=list)  # [(address, preference)]
    lifetime: int = 9  # ICMP advertisement lifetime, seconds
    prefix_lengths: list | None = None  # None: no Prefix-Lengths extension
    padding: bool = False  # append a One-byte Padding extension
    code: int = CODE_MOBILITY_ONLY
    checksum: int | str | None = None  # None/"right", "wrong" or an int
    num_addrs: int | None = None
    addr_entry_size: int = 2
    agent_ext_length: int | None = None
    extra: bytes = b""  # raw extensions appended after the others
    type: int = ICMP_ROUTER_ADVERTISEMENT

    def has(self, letters: str) -> bool:
        wanted = agent_flags(letters)
        return self.flags & wanted == wanted

    def encode(self) -> bytes:
        num = len(self.routers) if self.num_addrs is None else self.num_addrs
        body = bytearray(struct.pack("!BBHBBH", self.type, self.code, 0, num & 0xFF, self.addr_entry_size,
                                     self.lifetime & 0xFFFF))
        for address, preference in self.routers:
            body += ip(address).packed + struct.pack("!i", preference)
        coas = b"".join(ip(a).packed for a in self.care_of_addresses)
        length = 6 + len(coas) if self.agent_ext_length is None else self.agent_ext_length
        body += struct.pack("!BBHHH", EXT_MOBILITY_AGENT, length & 0xFF, self.sequence & 0xFFFF,
                            self.registration_lifetime & 0xFFFF, self.flags & 0xFFFF) + coas
        if self.prefix_lengths is not None:
            body += bytes((EXT_PREFIX_LENGTHS, len(self.prefix_lengths))) + bytes(self.prefix_lengths)
        body += self.extra
        if self.padding:
            body += b"\0"
        return _checksummed(bytes(body), self.checksum)


@dataclass(frozen=True)
class ParsedAdvertisement:
    code: int
    lifetime: int
    routers: tuple
    sequence: int
    registration_lifetime: int
    flags: int
    care_of_addresses: tuple
    prefix_lengths: tuple | None
    padding: int
    other_extensions: tuple  # (type, data) of extensions we do not know
    checksum_ok: bool

    def has(self, letters: str) -> bool:
        wanted = agent_flags(letters)
        return self.flags & wanted == wanted

    @property
    def flag_letters(self) -> str:
        return agent_flag_letters(self.flags)


def _parse_advertisement(data: bytes, require_checksum: bool) -> ParsedAdvertisement:
    need(data, 8, "icmp router advertisement")
    t, code, _, num, size, lifetime = struct.unpack_from("!BBHBBH", data)
    if t != ICMP_ROUTER_ADVERTISEMENT:
        raise Malformed(f"icmp type {t}, not a router advertisement")
    checksum_ok = internet_checksum(data) == 0
    if require_checksum and not checksum_ok:
        raise Malformed("icmp checksum wrong")
    if size < 2:
        raise Malformed(f"address entry size {size} < 2")
    end = 8 + num * size * 4
    need(data, end, f"router advertisement with {num} addresses")
    routers = tuple((IPv4Address(data[i:i + 4]), struct.unpack_from("!i", data, i + 4)[0])
                    for i in range(8, end, size * 4))
    agent, prefixes, padding, others, i = None, None, 0, [], end
    while i < len(data):
        ext_type = data[i]
        if ext_type == EXT_PAD:
            padding += 1
            i += 1
            continue
        if i + 2 > len(data):
            raise Malformed(f"extension {ext_type} at offset {i}: no length byte")
        length = data[i + 1]
        body = data[i + 2:i + 2 + length]
        if len(body) < length:
            raise Malformed(f"extension {ext_type} at offset {i}: length {length} runs past the end")
        if ext_type == EXT_MOBILITY_AGENT:
            if agent is not None:
                raise Malformed("two mobility agent advertisement extensions")
            if length < 6 or (length - 6) % 4:
                raise Malformed(f"mobility agent extension length {length} is not 6 + 4*N")
            seq, reg_life, flags = struct.unpack_from("!HHH", body)
            coas = tuple(IPv4Address(body[j:j + 4]) for j in range(6, length, 4))
            agent = (seq, reg_life, flags, coas)
        elif ext_type == EXT_PREFIX_LENGTHS:
            if agent is None:
                raise Malformed("prefix-lengths extension before the mobility agent extension")
            prefixes = tuple(body)
        else:
            others.append((ext_type, body))
        i += 2 + length
    if agent is None:
        raise Malformed("no mobility agent advertisement extension (a plain router advertisement)")
    return ParsedAdvertisement(code, lifetime, routers, *agent, prefixes, padding, tuple(others), checksum_ok)


def parse_advertisement(data: bytes, require_checksum: bool = True) -> Decoded:
    """Decoded(ParsedAdvertisement) from ICMP bytes (no IP header), or an error."""
    return safely(_parse_advertisement, data, require_checksum)


@dataclass
class AgentSolicitation:
    """ICMP Router Solicitation (type 10, code 0, reserved 0)."""

    code: int = 0
    reserved: int = 0
    checksum: int | str | None = None
    extra: bytes = b""
    type: int = ICMP_ROUTER_SOLICITATION

    def encode(self) -> bytes:
        body = struct.pack("!BBHI", self.type, self.code, 0, self.reserved) + self.extra
        return _checksummed(body, self.checksum)


@dataclass(frozen=True)
class ParsedSolicitation:
    code: int
    reserved: int
    checksum_ok: bool


def _parse_solicitation(data: bytes, require_checksum: bool) -> ParsedSolicitation:
    need(data, 8, "icmp router solicitation")
    t, code, _, reserved = struct.unpack_from("!BBHI", data)
    if t != ICMP_ROUTER_SOLICITATION:
        raise Malformed(f"icmp type {t}, not a router solicitation")
    ok = internet_checksum(data) == 0
    if require_checksum and not ok:
        raise Malformed("icmp checksum wrong")
    return ParsedSolicitation(code, reserved, ok)


def parse_solicitation(data: bytes, require_checksum: bool = True) -> Decoded:
    return safely(_parse_solicitation, data, require_checksum)
