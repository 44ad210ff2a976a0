"""Mobile IPv4 messages (RFC 5944, RFC 3024, RFC 3519, RFC 5265), byte-exact.

* Agent Advertisement (ICMP 9 + extensions 16, 19, padding 0) and Agent Solicitation (ICMP 10):
  `encode()` returns whole ICMP messages (checksum included), `decode()` takes them.
* Registration Request (type 1) and Reply (type 3): UDP 434 payloads with extensions.
* RFC 3519 tunnel data message (type 4).
* HMAC-MD5 authenticators (RFC 5944 3.5.1) and NTP-format identifications.

Extensions: types 0-127 that are not understood make the whole message undecodable
(DecodeError 'unknown-extension', RFC 5944 1.9); types 128-255 not understood are kept as
`UnknownExtension` and re-encoded unchanged. Decoders check lengths and reserved fields, except
those the RFCs say to ignore on reception (the request flags r and x, the advertisement flags r and
reserved, the UDP Tunnel Reply's and the tunnel data's Reserved, the UDP Tunnel Request's Reserved 1
and 2; its Reserved 3 is kept for the receiver, who skips a non-zero one as not understood, RFC 3519
3.1.3); an SPI in the reserved range 0-255 is decoded and fails
authentication at the receiver (code 131 at a home agent), it is not a malformed message.
"""
from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address
from typing import Callable, Union

from nodes.wire.errors import DecodeError, need
from nodes.wire.ipv4 import ICMP

MIP_PORT = 434

TYPE_REQUEST = 1
TYPE_REPLY = 3
TYPE_TUNNEL_DATA = 4
ICMP_ROUTER_ADVERTISEMENT = 9
ICMP_ROUTER_SOLICITATION = 10

# extension types
EXT_PAD = 0
EXT_MN_HA_AUTH = 32
EXT_MN_FA_AUTH = 33
EXT_FA_HA_AUTH = 34
EXT_UDP_TUNNEL_REPLY = 44
EXT_MOBILITY_AGENT_ADV = 16
EXT_PREFIX_LENGTHS = 19
EXT_ENCAPSULATING_DELIVERY = 130
EXT_UDP_TUNNEL_REQUEST = 144
EXT_TRUSTED_NETWORKS = 149

AUTH_EXTENSION_TYPES = (EXT_MN_HA_AUTH, EXT_MN_FA_AUTH, EXT_FA_HA_AUTH)
MIN_SPI = 256
HMAC_MD5_LEN = 16

ENCAP_IPIP = 4
ENCAP_GRE = 47
ENCAP_MINIMAL = 55
TUNNEL_NEXT_HEADERS = (ENCAP_IPIP, ENCAP_GRE, ENCAP_MINIMAL)

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
INFINITE_LIFETIME = 0xFFFF


class RequestFlags(IntFlag):
    """Flags byte of a Registration Request (RFC 5944 3.3, RFC 3024)."""

    S = 0x80  # simultaneous bindings
    B = 0x40  # broadcast datagrams
    D = 0x20  # decapsulation by the mobile node (co-located care-of address)
    M = 0x10  # minimal encapsulation
    G = 0x08  # GRE
    r = 0x04  # reserved, zero
    T = 0x02  # reverse tunnelling
    x = 0x01  # reserved, zero




class AgentFlags(IntFlag):
    """Flags of the Mobility Agent Advertisement extension (16 bits)."""

    R = 0x8000  # registration required
    B = 0x4000  # busy
    H = 0x2000  # home agent
    F = 0x1000  # foreign agent
    M = 0x0800
    G = 0x0400
    r = 0x0200  # reserved, zero
    T = 0x0100  # reverse tunnelling
    U = 0x0080  # UDP tunnelling (RFC 3519)
    X = 0x0040  # revocation support
    I = 0x0020  # I bit (RFC 5944)  # noqa: E741


AGENT_RESERVED_FLAGS = 0x0200 | 0x001F


class ReplyCode(IntEnum):
    ACCEPTED = 0
    ACCEPTED_NO_SIMULTANEOUS = 1
    # denied by the foreign agent
    FA_UNSPECIFIED = 64
    FA_PROHIBITED = 65
    FA_INSUFFICIENT_RESOURCES = 66
    FA_MN_AUTH_FAILED = 67
    FA_HA_AUTH_FAILED = 68
    FA_LIFETIME_TOO_LONG = 69
    FA_POORLY_FORMED_REQUEST = 70
    FA_POORLY_FORMED_REPLY = 71
    FA_ENCAPSULATION_UNAVAILABLE = 72
    FA_REVERSE_TUNNEL_UNAVAILABLE = 74
    FA_REVERSE_TUNNEL_MANDATORY = 75
    FA_MN_TOO_DISTANT = 76
    FA_INVALID_CARE_OF_ADDRESS = 77
    FA_REGISTRATION_TIMEOUT = 78
    FA_DELIVERY_STYLE_UNSUPPORTED = 79
    FA_HOME_NETWORK_UNREACHABLE = 80
    FA_HA_HOST_UNREACHABLE = 81
    FA_HA_PORT_UNREACHABLE = 82
    FA_HA_UNREACHABLE = 88
    # denied by the home agent
    HA_UNSPECIFIED = 128
    HA_PROHIBITED = 129
    HA_INSUFFICIENT_RESOURCES = 130
    HA_MN_AUTH_FAILED = 131
    HA_FA_AUTH_FAILED = 132
    HA_IDENTIFICATION_MISMATCH = 133
    HA_POORLY_FORMED_REQUEST = 134
    HA_TOO_MANY_BINDINGS = 135
    HA_UNKNOWN_HA_ADDRESS = 136
    HA_REVERSE_TUNNEL_UNAVAILABLE = 137
    HA_REVERSE_TUNNEL_MANDATORY = 138
    HA_ENCAPSULATION_UNAVAILABLE = 139
    HA_UDP_ENCAPSULATION_UNAVAILABLE = 142
    FA_INVALID_HA_ADDRESS = 194


def is_accepted(code: int) -> bool:
    return code in (ReplyCode.ACCEPTED, ReplyCode.ACCEPTED_NO_SIMULTANEOUS)


# --- identification (NTP timestamps, RFC 5944 5.7) ---------------------------------------------

def ntp_now(now_unix: float) -> int:
    """64-bit NTP timestamp of a Unix time: seconds since 1900 in the high 32 bits, fraction low."""
    seconds = int(now_unix) + NTP_UNIX_OFFSET
    fraction = int((now_unix - int(now_unix)) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds & 0xFFFFFFFF) << 32) | fraction


def ntp_to_unix(ident: int) -> float:
    """Unix time of a 64-bit NTP timestamp."""
    return (ident >> 32) - NTP_UNIX_OFFSET + (ident & 0xFFFFFFFF) / (1 << 32)


def ident_for_mismatch(ha_now_unix: float, request_ident: int) -> int:
    """Identification of a code-133 reply: the HA's time high, the request's low 32 bits echoed."""
    return (ntp_now(ha_now_unix) & 0xFFFFFFFF_00000000) | (request_ident & 0xFFFFFFFF)


# --- extensions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuthExtension:
    """MN-HA (32), MN-FA (33) or FA-HA (34) authentication. `offset`: where it began when decoded."""

    type: int
    spi: int
    authenticator: bytes
    offset: int = field(default=-1, compare=False, repr=False)

    def body(self) -> bytes:
        return struct.pack("!I", self.spi) + self.authenticator


@dataclass(frozen=True)
class EncapsulatingDeliveryStyle:
    """RFC 3024 type 130, no data."""

    type: int = EXT_ENCAPSULATING_DELIVERY

    def body(self) -> bytes:
        return b""


@dataclass(frozen=True)
class UdpTunnelRequest:
    """RFC 3519 type 144: F forces UDP tunnelling, R asks for it via the FA."""

    force: bool = False
    via_fa: bool = False
    encapsulation: int = ENCAP_IPIP
    type: int = EXT_UDP_TUNNEL_REQUEST
    # Reserved 3 as received: non-zero makes the extension not understood, to be skipped (3.1.3)
    reserved3: int = field(default=0, compare=False)

    @property
    def understood(self) -> bool:
        """False when Reserved 3 is non-zero: RFC 3519 3.1.3, handled as not understood."""
        return self.reserved3 == 0

    def body(self) -> bytes:
        flags = (0x80 if self.force else 0) | (0x40 if self.via_fa else 0)
        return struct.pack("!BBBBH", 0, 0, flags, self.encapsulation, self.reserved3)


@dataclass(frozen=True)
class UdpTunnelReply:
    """RFC 3519 type 44: reply code (< 64 assent), F bit, keepalive interval in seconds."""

    code: int = 0
    force: bool = False
    keepalive: int = 110
    type: int = EXT_UDP_TUNNEL_REPLY

    def body(self) -> bytes:
        return struct.pack("!BBHH", 0, self.code, 0x8000 if self.force else 0, self.keepalive)


@dataclass(frozen=True)
class TrustedNetworksConfigured:
    """RFC 5265 type 149: sent by an internal HA to a node it sees inside the trusted networks."""

    type: int = EXT_TRUSTED_NETWORKS

    def body(self) -> bytes:
        return b"\0\0"


@dataclass(frozen=True)
class UnknownExtension:
    """A skippable (128-255) extension this code does not understand, kept as it came."""

    type: int
    data: bytes = b""

    def body(self) -> bytes:
        return self.data


Extension = Union[
    AuthExtension, EncapsulatingDeliveryStyle, UdpTunnelRequest, UdpTunnelReply,
    TrustedNetworksConfigured, UnknownExtension,
]


def encode_extension(ext) -> bytes:
    body = ext.body()
    if len(body) > 255:
        raise ValueError(f"extension {ext.type} body of {len(body)} bytes does not fit")
    return bytes((ext.type, len(body))) + body


def _zero(value: int, what: str) -> None:
    if value:
        raise DecodeError("reserved-bits", f"{what} is {value:#x}, must be zero")


def _exact_length(body: bytes, length: int, what: str) -> None:
    if len(body) != length:
        raise DecodeError("bad-length", f"{what} length {len(body)}, expected {length}")


def _subtype_zero(body: bytes, what: str) -> None:
    if body[0] != 0:
        raise DecodeError("bad-subtype", f"{what} sub-type {body[0]}, only 0 is defined")


def _parse_auth(ext_type: int, body: bytes, offset: int) -> AuthExtension:
    if len(body) < 4:
        raise DecodeError("bad-length", f"authentication extension {ext_type} length {len(body)} below 4")
    spi = struct.unpack("!I", body[:4])[0]  # a reserved SPI (0-255) is the receiver's authentication failure
    return AuthExtension(ext_type, spi, bytes(body[4:]), offset)


def _parse_delivery_style(ext_type: int, body: bytes, offset: int) -> EncapsulatingDeliveryStyle:
    _exact_length(body, 0, "encapsulating delivery style extension")
    return EncapsulatingDeliveryStyle()


def _parse_udp_request(ext_type: int, body: bytes, offset: int) -> UdpTunnelRequest:
    _exact_length(body, 6, "UDP tunnel request extension")
    _subtype_zero(body, "UDP tunnel request")
    # reserved 1 and the six low flag bits: sent as zero, ignored on reception (RFC 3519 3.1); reserved 3
    # is kept: non-zero, the receiver handles the extension as not understood (3.1.3, `understood`)
    _, _reserved1, flags, encapsulation, reserved3 = struct.unpack("!BBBBH", body)
    return UdpTunnelRequest(bool(flags & 0x80), bool(flags & 0x40), encapsulation, reserved3=reserved3)


def _parse_udp_reply(ext_type: int, body: bytes, offset: int) -> UdpTunnelReply:
    _exact_length(body, 6, "UDP tunnel reply extension")
    _subtype_zero(body, "UDP tunnel reply")
    _, code, flags, keepalive = struct.unpack("!BBHH", body)
    # the 15 reserved bits after F: sent as zero, ignored on reception (RFC 3519 3.2)
    return UdpTunnelReply(code, bool(flags & 0x8000), keepalive)


def _parse_tnc(ext_type: int, body: bytes, offset: int) -> TrustedNetworksConfigured:
    _exact_length(body, 2, "trusted networks configured extension")
    _subtype_zero(body, "trusted networks configured")
    _zero(body[1], "trusted networks configured reserved")
    return TrustedNetworksConfigured()


_REGISTRATION_PARSERS: dict[int, Callable[[int, bytes, int], Extension]] = {
    EXT_MN_HA_AUTH: _parse_auth,
    EXT_MN_FA_AUTH: _parse_auth,
    EXT_FA_HA_AUTH: _parse_auth,
    EXT_ENCAPSULATING_DELIVERY: _parse_delivery_style,
    EXT_UDP_TUNNEL_REQUEST: _parse_udp_request,
    EXT_UDP_TUNNEL_REPLY: _parse_udp_reply,
    EXT_TRUSTED_NETWORKS: _parse_tnc,
}


def _walk_extensions(data: bytes, start: int, parsers: dict, pad_allowed: bool) -> tuple[list, int]:
    """Parse type-length-value extensions from `start` to the end; returns (extensions, pad count)."""
    extensions: list = []
    pads = 0
    pos = start
    while pos < len(data):
        ext_type = data[pos]
        if ext_type == EXT_PAD and pad_allowed:
            pads += 1
            pos += 1
            continue
        need(data[pos:], 2, f"extension header at offset {pos}")
        length = data[pos + 1]
        if pos + 2 + length > len(data):
            raise DecodeError("bad-length", f"extension {ext_type} at offset {pos} claims {length} bytes,"
                              f" {len(data) - pos - 2} left")
        body = bytes(data[pos + 2:pos + 2 + length])
        parser = parsers.get(ext_type)
        if parser is not None:
            extensions.append(parser(ext_type, body, pos))
        elif ext_type < 128:
            raise DecodeError("unknown-extension", f"extension type {ext_type} (0-127) is not understood")
        else:
            extensions.append(UnknownExtension(ext_type, body))
        pos += 2 + length
    return extensions, pads


def find_extension(extensions, ext_type: int):
    """First extension of `ext_type`, or None."""
    return next((e for e in extensions if e.type == ext_type), None)


# --- registration messages ----------------------------------------------------------------------

_REQUEST_FIXED = struct.Struct("!BBH4s4s4sQ")
_REPLY_FIXED = struct.Struct("!BBH4s4sQ")


@dataclass
class RegistrationRequest:
    flags: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    identification: int
    extensions: list = field(default_factory=list)

    def has(self, flag: RequestFlags) -> bool:
        return bool(self.flags & flag)

    def encode(self) -> bytes:
        fixed = _REQUEST_FIXED.pack(
            TYPE_REQUEST, self.flags, self.lifetime, IPv4Address(self.home_address).packed,
            IPv4Address(self.home_agent).packed, IPv4Address(self.care_of_address).packed,
            self.identification,
        )
        return fixed + b"".join(encode_extension(e) for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes) -> "RegistrationRequest":
        msg = cls.decode_fixed(data)  # reserved flags r and x: sent as zero, ignored on reception (5944 3.3)
        msg.extensions, _ = _walk_extensions(data, _REQUEST_FIXED.size, _REGISTRATION_PARSERS, False)
        return msg

    @classmethod
    def decode_fixed(cls, data: bytes) -> "RegistrationRequest":
        """Only the 24-byte fixed part (enough to answer a malformed request); no checks beyond it."""
        need(data, _REQUEST_FIXED.size, "registration request")
        mtype, flags, lifetime, home, ha, coa, ident = _REQUEST_FIXED.unpack_from(data)
        if mtype != TYPE_REQUEST:
            raise DecodeError("bad-type", f"message type {mtype}, expected {TYPE_REQUEST}")
        return cls(flags, lifetime, IPv4Address(home), IPv4Address(ha), IPv4Address(coa), ident)


@dataclass
class RegistrationReply:
    code: int
    lifetime: int
    home_address: IPv4Address
    home_agent: IPv4Address
    identification: int
    extensions: list = field(default_factory=list)

    def encode(self) -> bytes:
        fixed = _REPLY_FIXED.pack(
            TYPE_REPLY, self.code, self.lifetime, IPv4Address(self.home_address).packed,
            IPv4Address(self.home_agent).packed, self.identification,
        )
        return fixed + b"".join(encode_extension(e) for e in self.extensions)

    @classmethod
    def decode(cls, data: bytes) -> "RegistrationReply":
        msg = cls.decode_fixed(data)
        msg.extensions, _ = _walk_extensions(data, _REPLY_FIXED.size, _REGISTRATION_PARSERS, False)
        return msg

    @classmethod
    def decode_fixed(cls, data: bytes) -> "RegistrationReply":
        """Only the 20-byte fixed part (enough to match a malformed reply to its request)."""
        need(data, _REPLY_FIXED.size, "registration reply")
        mtype, code, lifetime, home, ha, ident = _REPLY_FIXED.unpack_from(data)
        if mtype != TYPE_REPLY:
            raise DecodeError("bad-type", f"message type {mtype}, expected {TYPE_REPLY}")
        return cls(code, lifetime, IPv4Address(home), IPv4Address(ha), ident)


def message_type(data: bytes) -> int | None:
    """Type byte of a UDP 434 payload (1 request, 3 reply, 4 tunnel data), None when empty."""
    return data[0] if data else None


# --- authenticators (RFC 5944 3.5.1, HMAC-MD5) --------------------------------------------------

def authenticator(key: bytes, covered: bytes) -> bytes:
    return hmac.new(key, covered, "md5").digest()


def append_auth(message: bytes, ext_type: int, spi: int, key: bytes) -> bytes:
    """`message` (with its earlier extensions) followed by an authentication extension over it."""
    header = bytes((ext_type, 4 + HMAC_MD5_LEN)) + struct.pack("!I", spi)
    return message + header + authenticator(key, message + header)


def verify_auth(raw: bytes, ext: AuthExtension, key: bytes) -> bool:
    """Check a decoded authentication extension against the raw message bytes it came in."""
    if ext.offset < 0:
        raise ValueError("extension was not decoded from raw bytes")
    covered = raw[:ext.offset + 6]  # everything before it, plus its type, length and SPI
    return hmac.compare_digest(authenticator(key, covered), ext.authenticator)


def extensions_before(extensions, ext) -> list:
    """The extensions that precede `ext` (those its authenticator covers)."""
    return extensions[:extensions.index(ext)]


def cut_after(raw: bytes, ext: AuthExtension) -> bytes:
    """`raw` up to the end of `ext` (drops what a relaying agent appended later)."""
    return raw[:ext.offset + 2 + 4 + len(ext.authenticator)]


# --- RFC 3519 tunnel data -----------------------------------------------------------------------

@dataclass
class TunnelData:
    next_header: int
    payload: bytes

    def encode(self) -> bytes:
        return struct.pack("!BBH", TYPE_TUNNEL_DATA, self.next_header, 0) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> "TunnelData":
        need(data, 4, "tunnel data header")
        mtype, next_header, reserved = struct.unpack("!BBH", data[:4])
        if mtype != TYPE_TUNNEL_DATA:
            raise DecodeError("bad-type", f"message type {mtype}, expected {TYPE_TUNNEL_DATA}")
        # reserved: sent as zero, ignored on reception (RFC 3519 3.3)
        if next_header not in TUNNEL_NEXT_HEADERS:
            raise DecodeError("bad-next-header", f"next header {next_header} is not 4, 47 or 55")
        return cls(next_header, bytes(data[4:]))


# --- agent discovery (RFC 5944 2.1, ICMP router discovery RFC 1256) -----------------------------

@dataclass(frozen=True)
class _MobilityAgentExt:
    type: int
    sequence: int
    registration_lifetime: int
    flags: int
    care_of_addresses: list


@dataclass(frozen=True)
class _PrefixLengthsExt:
    type: int
    lengths: list


def _parse_mobility_agent(ext_type: int, body: bytes, offset: int) -> _MobilityAgentExt:
    if len(body) < 6 or (len(body) - 6) % 4:
        raise DecodeError("bad-length", f"mobility agent extension length {len(body)} is not 6 + 4N")
    seq, reg_lifetime, flags = struct.unpack("!HHH", body[:6])
    # r and the reserved bits: sent as zero, ignored on reception (RFC 5944 2.1.1)
    coas = [IPv4Address(body[i:i + 4]) for i in range(6, len(body), 4)]
    return _MobilityAgentExt(ext_type, seq, reg_lifetime, flags, coas)


def _parse_prefix_lengths(ext_type: int, body: bytes, offset: int) -> _PrefixLengthsExt:
    bad = [p for p in body if p > 32]
    if bad:
        raise DecodeError("bad-prefix-length", f"prefix length {bad[0]} above 32")
    return _PrefixLengthsExt(ext_type, list(body))

_ADVERT_PARSERS = {EXT_MOBILITY_AGENT_ADV: _parse_mobility_agent, EXT_PREFIX_LENGTHS: _parse_prefix_lengths}


@dataclass
class AgentAdvertisement:
    """ICMP router advertisement with the Mobility Agent Advertisement extension."""

    sequence: int
    registration_lifetime: int
    flags: int
    care_of_addresses: list = field(default_factory=list)
    lifetime: int = 9  # ICMP advertisement lifetime, seconds
    routers: list = field(default_factory=list)  # (address, preference)
    code: int = 0  # 0: also a router; 16: mobility agent only
    prefix_lengths: list | None = None
    extensions: list = field(default_factory=list)  # skippable extensions not understood
    padding: int = 0

    def has(self, flag: AgentFlags) -> bool:
        return bool(self.flags & flag)

    def encode(self) -> bytes:
        rest = struct.pack("!BBH", len(self.routers), 2, self.lifetime)
        routers = b"".join(IPv4Address(a).packed + struct.pack("!i", pref) for a, pref in self.routers)
        agent = struct.pack("!HHH", self.sequence, self.registration_lifetime, self.flags) + b"".join(
            IPv4Address(a).packed for a in self.care_of_addresses
        )
        exts = bytes((EXT_MOBILITY_AGENT_ADV, len(agent))) + agent
        if self.prefix_lengths is not None:
            exts += bytes((EXT_PREFIX_LENGTHS, len(self.prefix_lengths))) + bytes(self.prefix_lengths)
        exts += b"".join(encode_extension(e) for e in self.extensions) + b"\0" * self.padding
        return ICMP(ICMP_ROUTER_ADVERTISEMENT, self.code, rest, routers + exts).encode()

    @classmethod
    def decode(cls, data: bytes) -> "AgentAdvertisement":
        icmp = ICMP.decode(data)
        if icmp.type != ICMP_ROUTER_ADVERTISEMENT:
            raise DecodeError("bad-type", f"ICMP type {icmp.type}, expected {ICMP_ROUTER_ADVERTISEMENT}")
        if icmp.code not in (0, 16):
            raise DecodeError("bad-code", f"router advertisement code {icmp.code}, expected 0 or 16")
        count, entry_size, lifetime = struct.unpack("!BBH", icmp.rest)
        if entry_size != 2:
            raise DecodeError("bad-entry-size", f"address entry size {entry_size}, expected 2")
        need(icmp.payload, 8 * count, f"{count} router addresses")
        routers = [
            (IPv4Address(icmp.payload[i:i + 4]), struct.unpack("!i", icmp.payload[i + 4:i + 8])[0])
            for i in range(0, 8 * count, 8)
        ]
        found, pads = _walk_extensions(icmp.payload, 8 * count, _ADVERT_PARSERS, True)
        agents = [e for e in found if isinstance(e, _MobilityAgentExt)]
        prefixes = [e for e in found if isinstance(e, _PrefixLengthsExt)]
        if len(agents) != 1:
            raise DecodeError("missing-extension" if not agents else "duplicate-extension",
                              f"{len(agents)} mobility agent advertisement extensions, expected 1")
        if len(prefixes) > 1:
            raise DecodeError("duplicate-extension", "more than one prefix-lengths extension")
        agent = agents[0]
        prefix_lengths = prefixes[0].lengths if prefixes else None
        if prefix_lengths is not None and len(prefix_lengths) not in (0, count):
            raise DecodeError("bad-length", f"{len(prefix_lengths)} prefix lengths for {count} router addresses")
        others = [e for e in found if not isinstance(e, (_MobilityAgentExt, _PrefixLengthsExt))]
        return cls(agent.sequence, agent.registration_lifetime, agent.flags, agent.care_of_addresses,
                   lifetime, routers, icmp.code, prefix_lengths, others, pads)


@dataclass
class AgentSolicitation:
    """ICMP router solicitation (type 10, code 0, 4 reserved bytes)."""

    def encode(self) -> bytes:
        return ICMP(ICMP_ROUTER_SOLICITATION, 0).encode()

    @classmethod
    def decode(cls, data: bytes) -> "AgentSolicitation":
        icmp = ICMP.decode(data)
        if icmp.type != ICMP_ROUTER_SOLICITATION:
            raise DecodeError("bad-type", f"ICMP type {icmp.type}, expected {ICMP_ROUTER_SOLICITATION}")
        if icmp.code != 0:
            raise DecodeError("bad-code", f"router solicitation code {icmp.code}, expected 0")
        _zero(int.from_bytes(icmp.rest, "big"), "router solicitation reserved field")
        return cls()


def next_advertisement_sequence(seq: int) -> int:
    """0, 1, ..., 0xffff, then 256 (RFC 5944 2.3.2: values below 256 mean a reboot)."""
    return 256 if seq >= 0xFFFF else seq + 1


def agent_rebooted(previous: int, current: int) -> bool:
    """RFC 5944 2.4.2: a sequence number below 256 after a higher one means the agent rebooted."""
    return current < 256 and current < previous
