"""Mobile IPv4 control messages on UDP 434 laid out from the RFC texts.

RFC 5944 3.3/3.4: Registration Request (type 1) and Reply (type 3), flags S B D M G r T x; the
extensions: One-byte Padding (0), MN-HA (32), MN-FA (33), FA-HA (34) authentication; RFC 2794
Mobile Node NAI (131); RFC 3012 generalized MN-AAA authentication (36, long format, subtype 1);
RFC 3024 Encapsulating Delivery Style (130); RFC 3519 UDP Tunnel Request (144), UDP Tunnel Reply
(44) and the MIP Tunnel Data message (type 4); RFC 5265 Trusted Networks Configured (149);
RFC 3543 Revocation Support (137), Registration Revocation (7) and Revocation Acknowledgment (15).

Build: every dataclass field can be set to anything (wrong type, reserved bits, odd lengths), the
extension list is encoded in the given order (so duplicates, missing or misplaced extensions are
just lists), and an `Authenticate` (auth.py) in the list is computed over all bytes before it.
Parse: `parse_request`, `parse_reply`, `parse_message`... return `Decoded` (result.py) with the
message (extensions carry their `offset` in the message) or a reason in `.error`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from .auth import (
    AUTH_TYPES, EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, HMAC_MD5, Authenticate, compute_authenticator,
    verify_authenticator,
)
from .ipv4 import ip
from .result import Decoded, Malformed, need, safely

MIP_PORT = 434
TYPE_REQUEST = 1
TYPE_REPLY = 3
TYPE_TUNNEL_DATA = 4
TYPE_REVOCATION = 7
TYPE_REVOCATION_ACK = 15

EXT_PAD = 0
EXT_MN_AAA_AUTH = 36  # RFC 3012 generalized authentication (long format), subtype 1 = MN-AAA
MN_AAA_SUBTYPE = 1
EXT_CVSE = 38  # RFC 3115 critical vendor/organization specific (long format)
EXT_UDP_TUNNEL_REPLY = 44
EXT_ENCAPSULATING_DELIVERY = 130
EXT_NAI = 131
EXT_REVOCATION_SUPPORT = 137
EXT_UDP_TUNNEL_REQUEST = 144
EXT_TRUSTED_NETWORKS = 149
LONG_FORMAT_TYPES = (EXT_MN_AAA_AUTH, EXT_CVSE)

# request flags (second byte of a Registration Request)
S, B, D, M, G, r, T, x = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
REQUEST_FLAGS = {"S": S, "B": B, "D": D, "M": M, "G": G, "r": r, "T": T, "x": x}
INFINITE_LIFETIME = 0xFFFF
NTP_UNIX_OFFSET = 2_208_988_800

REPLY_CODES = {
    0: "registration accepted", 1: "accepted, simultaneous mobility bindings unsupported",
    64: "FA: reason unspecified", 65: "FA: administratively prohibited", 66: "FA: insufficient resources",
    67: "FA: mobile node failed authentication", 68: "FA: home agent failed authentication",
    69: "FA: requested lifetime too long", 70: "FA: poorly formed request", 71: "FA: poorly formed reply",
    72: "FA: requested encapsulation unavailable", 73: "FA: reserved and unavailable",
    74: "FA: requested reverse tunnel unavailable", 75: "FA: reverse tunnel is mandatory and T bit not set",
    76: "FA: mobile node too distant", 77: "FA: invalid care-of address", 78: "FA: registration timeout",
    79: "FA: delivery style not supported", 80: "FA: home network unreachable",
    81: "FA: home agent host unreachable", 82: "FA: home agent port unreachable",
    88: "FA: home agent unreachable", 128: "HA: reason unspecified", 129: "HA: administratively prohibited",
    130: "HA: insufficient resources", 131: "HA: mobile node failed authentication",
    132: "HA: foreign agent failed authentication", 133: "HA: registration identification mismatch",
    134: "HA: poorly formed request", 135: "HA: too many simultaneous mobility bindings",
    136: "HA: unknown home agent address", 137: "HA: requested reverse tunnel unavailable",
    138: "HA: reverse tunnel is mandatory and T bit not set", 139: "HA: requested encapsulation unavailable",
    142: "HA: requested UDP tunnel encapsulation unavailable", 194: "invalid home agent address",
}


def flags_from(letters: str) -> int:
    """Request flags from letters, e.g. "DT" -> D|T (case matters: r and x are the reserved bits)."""
    value = 0
    for letter in letters:
        if letter not in REQUEST_FLAGS:
            raise ValueError(f"unknown request flag {letter!r}; known: {''.join(REQUEST_FLAGS)}")
        value |= REQUEST_FLAGS[letter]
    return value


def flag_letters(flags: int) -> str:
    return "".join(k for k, v in REQUEST_FLAGS.items() if flags & v)


def is_accepted(code: int) -> bool:
    return code in (0, 1)


# --- identifications (RFC 5944 5.7) ---------------------------------------------------------------

def ntp_identification(unix_time: float, low_random: int = 0, random_bits: int = 0) -> int:
    """A 64-bit NTP timestamp; the lowest `random_bits` fraction bits replaced by `low_random`."""
    seconds = int(unix_time) + NTP_UNIX_OFFSET
    fraction = int((unix_time - int(unix_time)) * (1 << 32)) & 0xFFFFFFFF
    value = ((seconds & 0xFFFFFFFF) << 32) | fraction
    if random_bits:
        mask = (1 << random_bits) - 1
        value = (value & ~mask) | (low_random & mask)
    return value


def identification_time(identification: int) -> float:
    """The Unix time an NTP-style identification carries."""
    return (identification >> 32) - NTP_UNIX_OFFSET + (identification & 0xFFFFFFFF) / (1 << 32)


def nonce_identification(ha_nonce: int, mn_nonce: int) -> int:
    """Nonce style: the HA's nonce high, the mobile node's own low."""
    return ((ha_nonce & 0xFFFFFFFF) << 32) | (mn_nonce & 0xFFFFFFFF)


# --- extensions -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Extension:
    """Any Type-Length-Value extension as it is on the wire (`length` overrides the Length byte)."""

    type: int
    data: bytes = b""
    length: int | None = None
    offset: int = field(default=-1, compare=False)

    def encode(self) -> bytes:
        length = len(self.data) if self.length is None else self.length
        return bytes((self.type & 0xFF, length & 0xFF)) + self.data


@dataclass(frozen=True)
class Padding:
    """The One-byte Padding extension (type 0, no Length)."""

    offset: int = field(default=-1, compare=False)
    type: int = EXT_PAD

    def encode(self) -> bytes:
        return b"\0"


@dataclass(frozen=True)
class AuthExtension:
    """MN-HA (32), MN-FA (33) or FA-HA (34) authentication as received (or to send verbatim)."""

    type: int
    spi: int
    authenticator: bytes
    length: int | None = None
    offset: int = field(default=-1, compare=False)

    def encode(self) -> bytes:
        length = 4 + len(self.authenticator) if self.length is None else self.length
        return bytes((self.type, length & 0xFF)) + struct.pack("!I", self.spi) + self.authenticator

    def verifies(self, raw: bytes, key: bytes, algorithm: str = HMAC_MD5) -> bool:
        """True when this extension, decoded from `raw`, carries the right authenticator for `key`."""
        if self.offset < 0:
            raise ValueError("the extension was not decoded from a message")
        return verify_authenticator(raw, self.offset, self.authenticator, key, algorithm)


@dataclass(frozen=True)
class MnAaaAuthExtension:
    """RFC 3012 generalized authentication (type 36, long format: Type, Subtype, 16-bit Length), SPI
    and authenticator. Subtype 1 is MN-AAA."""

    spi: int
    authenticator: bytes
    subtype: int = MN_AAA_SUBTYPE
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_MN_AAA_AUTH

    def encode(self) -> bytes:
        length = 4 + len(self.authenticator) if self.length is None else self.length
        return struct.pack("!BBHI", self.type, self.subtype, length & 0xFFFF, self.spi) + self.authenticator

    def verifies(self, raw: bytes, key: bytes, algorithm: str = HMAC_MD5) -> bool:
        if self.offset < 0:
            raise ValueError("the extension was not decoded from a message")
        expected = compute_authenticator(algorithm, key, raw[:self.offset + 8])
        return expected == self.authenticator


@dataclass(frozen=True)
class MnAaaAuthenticate:
    """Compute an MN-AAA extension over everything before it plus its own Type, Subtype, Length and
    SPI (the RFC 3012 layout; its RADIUS-challenge based default algorithm is not reproduced here:
    the chosen `algorithm` of auth.py is used)."""

    spi: int
    key: bytes
    algorithm: str = HMAC_MD5
    subtype: int = MN_AAA_SUBTYPE

    def encode_after(self, preceding: bytes) -> bytes:
        head = struct.pack("!BBHI", EXT_MN_AAA_AUTH, self.subtype, 4 + 16, self.spi)
        return head + compute_authenticator(self.algorithm, self.key, preceding + head)


@dataclass(frozen=True)
class NaiExtension:
    """RFC 2794 Mobile Node NAI (131): the NAI bytes, e.g. b"mn1@example.net"."""

    nai: bytes
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_NAI

    def encode(self) -> bytes:
        return Extension(self.type, self.nai, self.length).encode()


@dataclass(frozen=True)
class EncapsulatingDeliveryStyle:
    """RFC 3024 3.3 (type 130, length 0)."""

    length: int | None = None
    data: bytes = b""
    offset: int = field(default=-1, compare=False)
    type: int = EXT_ENCAPSULATING_DELIVERY

    def encode(self) -> bytes:
        return Extension(self.type, self.data, self.length).encode()


@dataclass(frozen=True)
class UdpTunnelRequest:
    """RFC 3519 3.1 (type 144, short format, length 6): F (force), R (registration through FA
    required), Encapsulation (next header of the tunnelled data, 4 by default)."""

    force: bool = False
    registration_via_fa: bool = False
    encapsulation: int = 4
    subtype: int = 0
    reserved1: int = 0
    reserved2: int = 0  # the 6 low bits after F and R
    reserved3: int = 0  # MUST be 0, else the receiver skips the extension
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_UDP_TUNNEL_REQUEST

    def encode(self) -> bytes:
        flags = (0x80 if self.force else 0) | (0x40 if self.registration_via_fa else 0) | (self.reserved2 & 0x3F)
        body = struct.pack("!BBBBH", self.subtype, self.reserved1, flags, self.encapsulation, self.reserved3)
        return Extension(self.type, body, self.length).encode()


@dataclass(frozen=True)
class UdpTunnelReply:
    """RFC 3519 3.2 (type 44, length 6): reply code (0-63 assent), F, keepalive interval."""

    code: int = 0
    force: bool = False
    keepalive: int = 110
    subtype: int = 0
    reserved: int = 0  # 15 bits after F
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_UDP_TUNNEL_REPLY

    def encode(self) -> bytes:
        word = (0x8000 if self.force else 0) | (self.reserved & 0x7FFF)
        body = struct.pack("!BBHH", self.subtype, self.code, word, self.keepalive)
        return Extension(self.type, body, self.length).encode()


@dataclass(frozen=True)
class TrustedNetworksConfigured:
    """RFC 5265 3.4 (type 149, short format, length 2): subtype 0, reserved."""

    subtype: int = 0
    reserved: int = 0
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_TRUSTED_NETWORKS

    def encode(self) -> bytes:
        return Extension(self.type, bytes((self.subtype, self.reserved)), self.length).encode()


@dataclass(frozen=True)
class RevocationSupport:
    """RFC 3543 3.1 (type 137, length 6): I bit, reserved, timestamp."""

    timestamp: int
    inform: bool = False
    reserved: int = 0
    length: int | None = None
    offset: int = field(default=-1, compare=False)
    type: int = EXT_REVOCATION_SUPPORT

    def encode(self) -> bytes:
        word = (0x8000 if self.inform else 0) | (self.reserved & 0x7FFF)
        return Extension(self.type, struct.pack("!HI", word, self.timestamp), self.length).encode()


def encode_extensions(preceding: bytes, extensions) -> bytes:
    """`preceding` followed by each extension in order; `Authenticate` specs are computed over all
    bytes before them; plain bytes are appended as they are."""
    out = bytearray(preceding)
    for ext in extensions:
        if isinstance(ext, (bytes, bytearray)):
            out += ext
        elif hasattr(ext, "encode_after"):
            out += ext.encode_after(bytes(out))
        else:
            out += ext.encode()
    return bytes(out)


def _exact(body: bytes, length: int, name: str) -> None:
    if len(body) != length:
        raise Malformed(f"{name}: length {len(body)}, must be {length}")


def _typed(ext_type: int, body: bytes, offset: int):
    if ext_type in AUTH_TYPES:
        if len(body) < 4:
            raise Malformed(f"authentication extension {ext_type}: length {len(body)} < 4 (no room for the SPI)")
        return AuthExtension(ext_type, struct.unpack_from("!I", body)[0], body[4:], offset=offset)
    if ext_type == EXT_NAI:
        return NaiExtension(body, offset=offset)
    if ext_type == EXT_ENCAPSULATING_DELIVERY:
        _exact(body, 0, "encapsulating delivery style")
        return EncapsulatingDeliveryStyle(offset=offset)
    if ext_type == EXT_UDP_TUNNEL_REQUEST:
        _exact(body, 6, "udp tunnel request")
        sub, res1, flags, encap, res3 = struct.unpack("!BBBBH", body)
        return UdpTunnelRequest(bool(flags & 0x80), bool(flags & 0x40), encap, sub, res1, flags & 0x3F, res3,
                                offset=offset)
    if ext_type == EXT_UDP_TUNNEL_REPLY:
        _exact(body, 6, "udp tunnel reply")
        sub, code, word, keepalive = struct.unpack("!BBHH", body)
        return UdpTunnelReply(code, bool(word & 0x8000), keepalive, sub, word & 0x7FFF, offset=offset)
    if ext_type == EXT_TRUSTED_NETWORKS:
        _exact(body, 2, "trusted networks configured")
        return TrustedNetworksConfigured(body[0], body[1], offset=offset)
    if ext_type == EXT_REVOCATION_SUPPORT:
        _exact(body, 6, "revocation support")
        word, stamp = struct.unpack("!HI", body)
        return RevocationSupport(stamp, bool(word & 0x8000), word & 0x7FFF, offset=offset)
    return Extension(ext_type, body, offset=offset)


def _parse_extensions(data: bytes, start: int) -> tuple:
    exts, i = [], start
    while i < len(data):
        ext_type = data[i]
        if ext_type == EXT_PAD:
            exts.append(Padding(offset=i))
            i += 1
            continue
        if ext_type in LONG_FORMAT_TYPES:
            need(data[i:], 4, f"long extension {ext_type} at offset {i}")
            subtype, length = struct.unpack_from("!BH", data, i + 1)
            end = i + 4 + length
            if end > len(data):
                raise Malformed(f"extension {ext_type} at offset {i}: length {length} runs past the end")
            body = data[i + 4:end]
            if ext_type == EXT_MN_AAA_AUTH:
                if length < 4:
                    raise Malformed(f"mn-aaa extension at offset {i}: length {length} < 4")
                exts.append(MnAaaAuthExtension(struct.unpack_from("!I", body)[0], body[4:], subtype, offset=i))
            else:
                exts.append(Extension(ext_type, bytes((subtype,)) + body, offset=i))
            i = end
            continue
        if i + 2 > len(data):
            raise Malformed(f"extension {ext_type} at offset {i}: no length byte")
        length = data[i + 1]
        end = i + 2 + length
        if end > len(data):
            raise Malformed(f"extension {ext_type} at offset {i}: length {length} runs past the end")
        exts.append(_typed(ext_type, data[i + 2:end], i))
        i = end
    return tuple(exts)


class _WithExtensions:
    def find(self, ext_type: int):
        """The first extension of `ext_type`, or None."""
        return next((e for e in self.extensions if getattr(e, "type", None) == ext_type), None)

    def find_all(self, ext_type: int) -> list:
        return [e for e in self.extensions if getattr(e, "type", None) == ext_type]

    def verify(self, raw: bytes, key: bytes, ext_type: int = EXT_MN_HA_AUTH, spi: int | None = None,
               algorithm: str = HMAC_MD5) -> bool:
        """True when exactly one `ext_type` extension is present, has `spi` (when given) and verifies."""
        found = self.find_all(ext_type)
        if len(found) != 1 or not isinstance(found[0], (AuthExtension, MnAaaAuthExtension)):
            return False
        if spi is not None and found[0].spi != spi:
            return False
        return found[0].verifies(raw, key, algorithm)


_REQUEST = struct.Struct("!BBH4s4s4sQ")
_REPLY = struct.Struct("!BBH4s4sQ")


@dataclass
class RegistrationRequest(_WithExtensions):
    """RFC 5944 3.3. `extensions` may mix extension objects, `Authenticate` specs and raw bytes."""

    flags: int = 0
    lifetime: int = 1800
    home_address: IPv4Address = IPv4Address("0.0.0.0")
    home_agent: IPv4Address = IPv4Address("0.0.0.0")
    care_of_address: IPv4Address = IPv4Address("0.0.0.0")
    identification: int = 0
    extensions: list = field(default_factory=list)
    type: int = TYPE_REQUEST

    def fixed(self) -> bytes:
        return _REQUEST.pack(self.type & 0xFF, self.flags & 0xFF, self.lifetime & 0xFFFF, ip(self.home_address).packed,
                             ip(self.home_agent).packed, ip(self.care_of_address).packed,
                             self.identification & 0xFFFFFFFFFFFFFFFF)

    def encode(self) -> bytes:
        return encode_extensions(self.fixed(), self.extensions)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


@dataclass
class RegistrationReply(_WithExtensions):
    """RFC 5944 3.4."""

    code: int = 0
    lifetime: int = 0
    home_address: IPv4Address = IPv4Address("0.0.0.0")
    home_agent: IPv4Address = IPv4Address("0.0.0.0")
    identification: int = 0
    extensions: list = field(default_factory=list)
    type: int = TYPE_REPLY

    def fixed(self) -> bytes:
        return _REPLY.pack(self.type & 0xFF, self.code & 0xFF, self.lifetime & 0xFFFF, ip(self.home_address).packed,
                           ip(self.home_agent).packed, self.identification & 0xFFFFFFFFFFFFFFFF)

    def encode(self) -> bytes:
        return encode_extensions(self.fixed(), self.extensions)

    @property
    def accepted(self) -> bool:
        return is_accepted(self.code)


def _parse_request(data: bytes, check_type: bool) -> RegistrationRequest:
    need(data, _REQUEST.size, "registration request")
    t, flags, life, home, ha, coa, ident = _REQUEST.unpack_from(data)
    if check_type and t != TYPE_REQUEST:
        raise Malformed(f"type {t}, not a registration request ({TYPE_REQUEST})")
    return RegistrationRequest(flags, life, IPv4Address(home), IPv4Address(ha), IPv4Address(coa), ident,
                               list(_parse_extensions(data, _REQUEST.size)), t)


def _parse_reply(data: bytes, check_type: bool) -> RegistrationReply:
    need(data, _REPLY.size, "registration reply")
    t, code, life, home, ha, ident = _REPLY.unpack_from(data)
    if check_type and t != TYPE_REPLY:
        raise Malformed(f"type {t}, not a registration reply ({TYPE_REPLY})")
    return RegistrationReply(code, life, IPv4Address(home), IPv4Address(ha), ident,
                             list(_parse_extensions(data, _REPLY.size)), t)


def parse_request(data: bytes, check_type: bool = True) -> Decoded:
    """Decoded(RegistrationRequest) or an error (short, bad type, an extension running past the end...)."""
    return safely(_parse_request, data, check_type)


def parse_reply(data: bytes, check_type: bool = True) -> Decoded:
    return safely(_parse_reply, data, check_type)


def parse_extensions(data: bytes, start: int = 0) -> Decoded:
    """Decoded(tuple of extensions) of data[start:] (offsets relative to `data`)."""
    return safely(_parse_extensions, data, start)


# --- RFC 3519 tunnel data ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TunnelData:
    """RFC 3519 3.3 MIP Tunnel Data message: type 4, next header, reserved, then the tunnelled data."""

    next_header: int
    payload: bytes
    reserved: int = 0
    type: int = TYPE_TUNNEL_DATA

    def encode(self) -> bytes:
        return struct.pack("!BBH", self.type, self.next_header, self.reserved) + self.payload


def _parse_tunnel_data(data: bytes) -> TunnelData:
    need(data, 4, "mip tunnel data header")
    t, nh, res = struct.unpack_from("!BBH", data)
    if t != TYPE_TUNNEL_DATA:
        raise Malformed(f"type {t}, not tunnel data ({TYPE_TUNNEL_DATA})")
    return TunnelData(nh, data[4:], res)


def parse_tunnel_data(data: bytes) -> Decoded:
    return safely(_parse_tunnel_data, data)


# --- RFC 3543 registration revocation ------------------------------------------------------------------

_REVOCATION = struct.Struct("!BBH4s4s4sI")
_REVOCATION_ACK = struct.Struct("!BBH4sI")


@dataclass
class RegistrationRevocation(_WithExtensions):
    """RFC 3543 3.2 (type 7): A (sent by the HA) and I bits, addresses, revocation identifier; the
    extensions end with an authentication extension (an `Authenticate`)."""

    home_address: IPv4Address = IPv4Address("0.0.0.0")
    home_domain_address: IPv4Address = IPv4Address("0.0.0.0")
    foreign_domain_address: IPv4Address = IPv4Address("0.0.0.0")
    revocation_id: int = 0
    agent: bool = True
    inform: bool = False
    reserved: int = 0
    extensions: list = field(default_factory=list)
    type: int = TYPE_REVOCATION

    def encode(self) -> bytes:
        word = (0x8000 if self.agent else 0) | (0x4000 if self.inform else 0)
        fixed = _REVOCATION.pack(self.type, self.reserved, word, ip(self.home_address).packed,
                                 ip(self.home_domain_address).packed, ip(self.foreign_domain_address).packed,
                                 self.revocation_id)
        return encode_extensions(fixed, self.extensions)


@dataclass
class RevocationAck(_WithExtensions):
    """RFC 3543 3.3 (type 15)."""

    home_address: IPv4Address = IPv4Address("0.0.0.0")
    revocation_id: int = 0
    inform: bool = False
    reserved: int = 0
    extensions: list = field(default_factory=list)
    type: int = TYPE_REVOCATION_ACK

    def encode(self) -> bytes:
        fixed = _REVOCATION_ACK.pack(self.type, self.reserved, 0x8000 if self.inform else 0,
                                     ip(self.home_address).packed, self.revocation_id)
        return encode_extensions(fixed, self.extensions)


def _parse_revocation(data: bytes) -> RegistrationRevocation:
    need(data, _REVOCATION.size, "registration revocation")
    t, res, word, home, hda, fda, rid = _REVOCATION.unpack_from(data)
    if t != TYPE_REVOCATION:
        raise Malformed(f"type {t}, not a registration revocation")
    return RegistrationRevocation(IPv4Address(home), IPv4Address(hda), IPv4Address(fda), rid, bool(word & 0x8000),
                                  bool(word & 0x4000), res, list(_parse_extensions(data, _REVOCATION.size)), t)


def _parse_revocation_ack(data: bytes) -> RevocationAck:
    need(data, _REVOCATION_ACK.size, "revocation acknowledgment")
    t, res, word, home, rid = _REVOCATION_ACK.unpack_from(data)
    if t != TYPE_REVOCATION_ACK:
        raise Malformed(f"type {t}, not a revocation acknowledgment")
    return RevocationAck(IPv4Address(home), rid, bool(word & 0x8000), res,
                         list(_parse_extensions(data, _REVOCATION_ACK.size)), t)


def parse_revocation(data: bytes) -> Decoded:
    return safely(_parse_revocation, data)


def parse_revocation_ack(data: bytes) -> Decoded:
    return safely(_parse_revocation_ack, data)


def parse_message(data: bytes) -> Decoded:
    """Any UDP 434 message by its type byte."""
    if not data:
        return Decoded(error="empty message")
    parser = {TYPE_REQUEST: parse_request, TYPE_REPLY: parse_reply, TYPE_TUNNEL_DATA: parse_tunnel_data,
              TYPE_REVOCATION: parse_revocation, TYPE_REVOCATION_ACK: parse_revocation_ack}.get(data[0])
    if parser is None:
        return Decoded(error=f"unknown mobile ip message type {data[0]}")
    return parser(data)


__all__ = [name for name in dir() if not name.startswith("_")] + ["Authenticate"]
