"""IKEv2 messages (RFC 7296): header, payloads, the SK payload (RFC 7296 3.14, RFC 5282) and the
UDP/4500 demultiplexing of RFC 3948 (non-ESP marker, NAT keepalive).

Every payload is a dataclass with `encode_body()` and `decode_body(body)`; `Message` holds the
header fields and the payload list. A message whose payloads travel inside SK is encoded with
`Message.encode(cipher)` and decoded with `decode_message(data, cipher)`; `decode_header(data)`
reads only the fixed header, so a receiver can find the IKE SA (and its keys) first.

Decoders raise only `DecodeError`. Reasons: truncated, bad_version, bad_length, bad_payload,
unsupported_critical_payload, no_keys, integrity_check_failed, bad_padding, not_ike.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import ClassVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nodes.wire.errors import DecodeError, UnsupportedCriticalPayload, need

IKE_PORT = 500
NAT_T_PORT = 4500
HEADER_LEN = 28
NON_ESP_MARKER = b"\0\0\0\0"
NAT_KEEPALIVE = b"\xff"

# exchange types
IKE_SA_INIT = 34
IKE_AUTH = 35
CREATE_CHILD_SA = 36
INFORMATIONAL = 37

# header flags
FLAG_INITIATOR = 0x08
FLAG_VERSION = 0x10
FLAG_RESPONSE = 0x20

# payload types
PT_NONE = 0
PT_SA = 33
PT_KE = 34
PT_IDI = 35
PT_IDR = 36
PT_CERT = 37
PT_CERTREQ = 38
PT_AUTH = 39
PT_NONCE = 40
PT_NOTIFY = 41
PT_DELETE = 42
PT_VENDOR_ID = 43
PT_TSI = 44
PT_TSR = 45
PT_SK = 46
PT_CP = 47
PT_EAP = 48

# protocol ids (proposals, notify, delete)
PROTO_IKE = 1
PROTO_AH = 2
PROTO_ESP = 3

# transform types and ids
TT_ENCR = 1
TT_PRF = 2
TT_INTEG = 3
TT_DH = 4
TT_ESN = 5
ENCR_AES_CBC = 12
ENCR_AES_GCM_16 = 20
PRF_HMAC_SHA1 = 2
PRF_HMAC_SHA2_256 = 5
PRF_HMAC_SHA2_384 = 6
PRF_HMAC_SHA2_512 = 7
INTEG_NONE = 0
INTEG_HMAC_SHA2_256_128 = 12
ATTR_KEY_LENGTH = 14

# identification types
ID_IPV4_ADDR = 1
ID_FQDN = 2
ID_RFC822_ADDR = 3
ID_KEY_ID = 11

AUTH_SHARED_KEY = 2

# notify types
N_UNSUPPORTED_CRITICAL_PAYLOAD = 1
N_INVALID_IKE_SPI = 4
N_INVALID_MAJOR_VERSION = 5
N_INVALID_SYNTAX = 7
N_INVALID_MESSAGE_ID = 9
N_INVALID_SPI = 11
N_NO_PROPOSAL_CHOSEN = 14
N_INVALID_KE_PAYLOAD = 17
N_AUTHENTICATION_FAILED = 24
N_SINGLE_PAIR_REQUIRED = 34
N_NO_ADDITIONAL_SAS = 35
N_INTERNAL_ADDRESS_FAILURE = 36
N_FAILED_CP_REQUIRED = 37
N_TS_UNACCEPTABLE = 38
N_TEMPORARY_FAILURE = 43
N_CHILD_SA_NOT_FOUND = 44
N_INITIAL_CONTACT = 16384
N_NAT_DETECTION_SOURCE_IP = 16388
N_NAT_DETECTION_DESTINATION_IP = 16389
N_COOKIE = 16390
N_USE_TRANSPORT_MODE = 16391
N_REKEY_SA = 16393
N_ESP_TFC_PADDING_NOT_SUPPORTED = 16394
N_NON_FIRST_FRAGMENTS_ALSO = 16395
N_MOBIKE_SUPPORTED = 16396
ERROR_NOTIFY_MAX = 16383  # types below 16384 are errors

# configuration payload
CFG_REQUEST = 1
CFG_REPLY = 2
CFG_SET = 3
CFG_ACK = 4
INTERNAL_IP4_ADDRESS = 1
INTERNAL_IP4_NETMASK = 2
INTERNAL_IP4_DNS = 3
INTERNAL_IP4_NBNS = 4
INTERNAL_IP4_SUBNET = 13
SUPPORTED_ATTRIBUTES = 14

TS_IPV4_ADDR_RANGE = 7


# --------------------------------------------------------------------------- payloads


@dataclass
class Transform:
    type: int
    id: int
    key_length: int | None = None  # bits, the only attribute IKEv2 defines
    unknown_attributes: bool = field(default=False, compare=False)  # RFC 7296 3.3.6: then unacceptable

    def encode(self, last: bool) -> bytes:
        attrs = b""
        if self.key_length is not None:
            attrs = struct.pack("!HH", 0x8000 | ATTR_KEY_LENGTH, self.key_length)
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), self.type, 0, self.id) + attrs

    @classmethod
    def decode(cls, data: bytes) -> Transform:
        _, _, _, ttype, _, tid = struct.unpack_from("!BBHBBH", data)
        key_length = None
        unknown = False
        attrs = data[8:]
        while attrs:
            need(attrs, 4, "transform attribute")
            atype, aval = struct.unpack_from("!HH", attrs)
            if atype & 0x8000:  # TV
                attrs = attrs[4:]
                value = aval
            else:  # TLV: IKEv2 defines none, skip it
                need(attrs, 4 + aval, "transform attribute value")
                attrs = attrs[4 + aval:]
                value = None
            if atype & 0x7FFF == ATTR_KEY_LENGTH:
                if value is None:
                    raise DecodeError("bad_payload", "key length attribute must be TV format")
                key_length = value
            else:
                unknown = True
        return cls(ttype, tid, key_length, unknown)


@dataclass
class Proposal:
    num: int
    protocol: int
    spi: bytes
    transforms: list[Transform]

    def encode(self, last: bool) -> bytes:
        body = b"".join(t.encode(i == len(self.transforms) - 1) for i, t in enumerate(self.transforms))
        hdr = struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(self.spi) + len(body), self.num,
                          self.protocol, len(self.spi), len(self.transforms))
        return hdr + self.spi + body

    def get(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]


@dataclass
class SecurityAssociation:
    TYPE: ClassVar[int] = PT_SA
    proposals: list[Proposal]

    def encode_body(self) -> bytes:
        return b"".join(p.encode(i == len(self.proposals) - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, body: bytes) -> SecurityAssociation:
        proposals = []
        last = 2
        while body:
            if last == 0:
                raise DecodeError("bad_payload", "SA: data after the last proposal")
            need(body, 8, "SA proposal")
            last, _, plen, num, proto, spi_size, ntrans = struct.unpack_from("!BBHBBBB", body)
            if last not in (0, 2):
                raise DecodeError("bad_payload", f"SA: proposal 'last' field {last} is not 0 or 2")
            if plen < 8 + spi_size or plen > len(body):
                raise DecodeError("bad_payload", f"SA: proposal length {plen} is inconsistent")
            spi = body[8:8 + spi_size]
            tdata = body[8 + spi_size:plen]
            transforms = []
            tlast = 3
            while tdata:
                if tlast == 0:
                    raise DecodeError("bad_payload", "SA: data after the last transform")
                need(tdata, 8, "SA transform")
                tlast, _, tlen = struct.unpack_from("!BBH", tdata)
                if tlast not in (0, 3):
                    raise DecodeError("bad_payload", f"SA: transform 'last' field {tlast} is not 0 or 3")
                if tlen < 8 or tlen > len(tdata):
                    raise DecodeError("bad_payload", f"SA: transform length {tlen} is inconsistent")
                transforms.append(Transform.decode(tdata[:tlen]))
                tdata = tdata[tlen:]
            if len(transforms) != ntrans:
                raise DecodeError("bad_payload", f"SA: proposal announces {ntrans} transforms, holds {len(transforms)}")
            proposals.append(Proposal(num, proto, spi, transforms))
            body = body[plen:]
        if not proposals or last != 0:
            raise DecodeError("bad_payload", "SA: no proposal or last proposal not marked last")
        return cls(proposals)


@dataclass
class KeyExchange:
    TYPE: ClassVar[int] = PT_KE
    group: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!HH", self.group, 0) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> KeyExchange:
        need(body, 4, "KE payload")
        (group,) = struct.unpack_from("!H", body)
        if len(body) == 4:
            raise DecodeError("bad_payload", "KE: empty key exchange data")
        return cls(group, body[4:])


@dataclass
class Nonce:
    TYPE: ClassVar[int] = PT_NONCE
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Nonce:
        if not 16 <= len(body) <= 256:
            raise DecodeError("bad_payload", f"Nonce: length {len(body)} outside 16..256")
        return cls(body)


@dataclass
class Identification:
    TYPE: ClassVar[int] = PT_IDI
    id_type: int
    data: bytes
    reserved: bytes = field(default=b"\0\0\0", compare=False)  # as received (sent as zero)

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.id_type) + self.data

    @classmethod
    def decode_body(cls, body: bytes):
        need(body, 5, "ID payload")
        if body[0] == ID_IPV4_ADDR and len(body) != 8:
            raise DecodeError("bad_payload", "ID: ID_IPV4_ADDR must hold 4 bytes")
        return cls(body[0], body[4:], body[1:4])

    def id_prime(self) -> bytes:
        """IDx' of RFC 7296 2.15: the payload body the AUTH computation covers, RESERVED octets as
        they were on the wire (3.5: ignored on receipt, but covered by the AUTH)."""
        return bytes([self.id_type]) + self.reserved + self.data

    def text(self) -> str:
        if self.id_type == ID_IPV4_ADDR and len(self.data) == 4:
            return str(IPv4Address(self.data))
        return self.data.decode("utf-8", "replace")


class IDi(Identification):
    TYPE: ClassVar[int] = PT_IDI


class IDr(Identification):
    TYPE: ClassVar[int] = PT_IDR


@dataclass
class Authentication:
    TYPE: ClassVar[int] = PT_AUTH
    method: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.method) + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Authentication:
        need(body, 5, "AUTH payload")
        return cls(body[0], body[4:])


@dataclass
class Notify:
    TYPE: ClassVar[int] = PT_NOTIFY
    type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    def encode_body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, len(self.spi), self.type) + self.spi + self.data

    @classmethod
    def decode_body(cls, body: bytes) -> Notify:
        need(body, 4, "Notify payload")
        proto, spi_size, ntype = struct.unpack_from("!BBH", body)
        need(body, 4 + spi_size, "Notify SPI")
        return cls(ntype, body[4 + spi_size:], proto, body[4:4 + spi_size])

    @property
    def is_error(self) -> bool:
        return self.type <= ERROR_NOTIFY_MAX


@dataclass
class Delete:
    TYPE: ClassVar[int] = PT_DELETE
    protocol: int
    spis: list[bytes] = field(default_factory=list)

    def encode_body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return struct.pack("!BBH", self.protocol, size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, body: bytes) -> Delete:
        need(body, 4, "Delete payload")
        proto, size, count = struct.unpack_from("!BBH", body)
        if proto == PROTO_IKE and (size or count):
            raise DecodeError("bad_payload", "Delete: an IKE SA delete carries no SPI")
        if proto in (PROTO_AH, PROTO_ESP) and size != 4:
            raise DecodeError("bad_payload", f"Delete: ESP/AH SPI size must be 4, got {size}")
        if len(body) != 4 + size * count:
            raise DecodeError("bad_payload", f"Delete: {count} SPIs of {size} bytes do not fill {len(body) - 4} bytes")
        return cls(proto, [body[4 + i * size:4 + (i + 1) * size] for i in range(count)])


@dataclass(frozen=True)
class TrafficSelector:
    start: IPv4Address
    end: IPv4Address
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    def encode(self) -> bytes:
        return struct.pack("!BBHHH4s4s", TS_IPV4_ADDR_RANGE, self.protocol, 16, self.start_port, self.end_port,
                           self.start.packed, self.end.packed)


@dataclass
class TrafficSelectors:
    TYPE: ClassVar[int] = PT_TSI
    selectors: list[TrafficSelector]

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", len(self.selectors)) + b"".join(s.encode() for s in self.selectors)

    @classmethod
    def decode_body(cls, body: bytes):
        need(body, 4, "TS payload")
        count = body[0]
        if count == 0:
            raise DecodeError("bad_payload", "TS: zero traffic selectors")
        rest = body[4:]
        selectors = []
        for _ in range(count):
            need(rest, 4, "traffic selector")
            ts_type, proto, length = struct.unpack_from("!BBH", rest)
            if length < 8 or length > len(rest):
                raise DecodeError("bad_payload", f"TS: selector length {length} is inconsistent")
            if ts_type == TS_IPV4_ADDR_RANGE:
                if length != 16:
                    raise DecodeError("bad_payload", f"TS: IPv4 range selector length {length} is not 16")
                _, _, _, sp, ep, sa, ea = struct.unpack_from("!BBHHH4s4s", rest)
                if sp > ep or sa > ea:
                    raise DecodeError("bad_payload", "TS: selector start above its end")
                selectors.append(TrafficSelector(IPv4Address(sa), IPv4Address(ea), proto, sp, ep))
            # other selector types (IPv6, FC) are skipped: this codebase is IPv4 only
            rest = rest[length:]
        if rest:
            raise DecodeError("bad_payload", f"TS: {len(rest)} bytes after the last selector")
        return cls(selectors)


class TSi(TrafficSelectors):
    TYPE: ClassVar[int] = PT_TSI


class TSr(TrafficSelectors):
    TYPE: ClassVar[int] = PT_TSR


@dataclass
class ConfigAttribute:
    type: int
    value: bytes = b""


@dataclass
class Configuration:
    TYPE: ClassVar[int] = PT_CP
    cfg_type: int
    attributes: list[ConfigAttribute] = field(default_factory=list)

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.cfg_type) + b"".join(
            struct.pack("!HH", a.type & 0x7FFF, len(a.value)) + a.value for a in self.attributes)

    @classmethod
    def decode_body(cls, body: bytes) -> Configuration:
        need(body, 4, "CP payload")
        if body[0] not in (CFG_REQUEST, CFG_REPLY, CFG_SET, CFG_ACK):
            raise DecodeError("bad_payload", f"CP: unknown configuration type {body[0]}")
        attrs = []
        rest = body[4:]
        while rest:
            need(rest, 4, "CP attribute")
            atype, alen = struct.unpack_from("!HH", rest)
            need(rest, 4 + alen, "CP attribute value")
            value = rest[4:4 + alen]
            if atype & 0x7FFF in (INTERNAL_IP4_ADDRESS, INTERNAL_IP4_NETMASK, INTERNAL_IP4_DNS,
                                  INTERNAL_IP4_NBNS) and alen not in (0, 4):
                raise DecodeError("bad_payload", f"CP: attribute {atype & 0x7FFF} length {alen} is not 0 or 4")
            if atype & 0x7FFF == INTERNAL_IP4_SUBNET and alen not in (0, 8):
                raise DecodeError("bad_payload", f"CP: INTERNAL_IP4_SUBNET length {alen} is not 0 or 8")
            attrs.append(ConfigAttribute(atype & 0x7FFF, value))
            rest = rest[4 + alen:]
        return cls(body[0], attrs)

    def values(self, atype: int) -> list[bytes]:
        return [a.value for a in self.attributes if a.type == atype]


@dataclass
class EAP:
    TYPE: ClassVar[int] = PT_EAP
    message: bytes  # a whole EAP packet (RFC 3748), decoded by nodes.ipsec.eap_md5

    def encode_body(self) -> bytes:
        return self.message

    @classmethod
    def decode_body(cls, body: bytes) -> EAP:
        need(body, 4, "EAP payload")
        (length,) = struct.unpack_from("!H", body, 2)
        if length != len(body):
            raise DecodeError("bad_payload", f"EAP: length field {length} but payload holds {len(body)}")
        return cls(body)


@dataclass
class VendorID:
    TYPE: ClassVar[int] = PT_VENDOR_ID
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: bytes) -> VendorID:
        return cls(body)


@dataclass
class Certificate:
    """CERT and CERTREQ: kept (encoding + data) but not interpreted."""
    TYPE: ClassVar[int] = PT_CERT
    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        return bytes([self.encoding]) + self.data

    @classmethod
    def decode_body(cls, body: bytes):
        need(body, 1, "CERT/CERTREQ payload")
        return cls(body[0], body[1:])


class CertificateRequest(Certificate):
    TYPE: ClassVar[int] = PT_CERTREQ


@dataclass
class UnknownPayload:
    """A non-critical payload of a type this codec does not know: kept so re-encoding is lossless."""
    type: int
    body: bytes

    @property
    def TYPE(self) -> int:  # noqa: N802 - same interface as the known payloads
        return self.type

    def encode_body(self) -> bytes:
        return self.body


Payload = (SecurityAssociation | KeyExchange | Nonce | Identification | Authentication | Notify | Delete
           | TrafficSelectors | Configuration | EAP | VendorID | Certificate | UnknownPayload)

PAYLOAD_CLASSES: dict[int, type] = {
    cls.TYPE: cls for cls in (SecurityAssociation, KeyExchange, Nonce, IDi, IDr, Authentication, Notify, Delete,
                              TSi, TSr, Configuration, EAP, VendorID, Certificate, CertificateRequest)
}


# --------------------------------------------------------------------------- SK protection


class SkCipher:
    """One direction of SK payload protection: AES-GCM-16 (RFC 5282) or AES-CBC + HMAC-SHA-256-128.

    `key` is SK_e (for GCM: key followed by the 4-byte salt); `integ_key` is SK_a (empty for GCM).
    """

    def __init__(self, encr_id: int, key: bytes, integ_id: int = INTEG_NONE, integ_key: bytes = b"",
                 random=os.urandom):
        self.encr_id = encr_id
        self.random = random  # n -> n bytes, for the IVs
        if encr_id == ENCR_AES_GCM_16:
            self.aead = AESGCM(key[:-4])
            self.salt = key[-4:]
            self.iv_len, self.icv_len, self.block = 8, 16, 4  # we pad to 4; peers may not (strongSwan: 1)
        elif encr_id == ENCR_AES_CBC:
            if integ_id != INTEG_HMAC_SHA2_256_128:
                raise ValueError(f"unsupported integrity algorithm {integ_id}")
            self.key = key
            self.integ_key = integ_key
            self.iv_len, self.icv_len, self.block = 16, 16, 16
        else:
            raise ValueError(f"unsupported encryption algorithm {encr_id}")

    def body_length(self, plain_len: int) -> int:
        """Length of IV | ciphertext | ICV for `plain_len` bytes of inner payloads."""
        padded = (plain_len + 1 + self.block - 1) // self.block * self.block
        return self.iv_len + padded + self.icv_len

    def protect(self, prefix: bytes, plain: bytes) -> bytes:
        """`prefix` is the IKE header plus the SK generic header, with their final lengths."""
        padded_len = self.body_length(len(plain)) - self.iv_len - self.icv_len
        pad = padded_len - len(plain) - 1
        data = plain + bytes(pad) + bytes([pad])
        iv = self.random(self.iv_len)
        if self.encr_id == ENCR_AES_GCM_16:
            return iv + self.aead.encrypt(self.salt + iv, data, prefix)
        enc = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        ct = enc.update(data) + enc.finalize()
        icv = hmac.new(self.integ_key, prefix + iv + ct, hashlib.sha256).digest()[:16]
        return iv + ct + icv

    def unprotect(self, prefix: bytes, body: bytes) -> bytes:
        if len(body) < self.iv_len + self.icv_len + 1:  # at least the pad length byte
            raise DecodeError("bad_payload", f"SK: {len(body)} bytes is too short")
        iv, ct, icv = body[:self.iv_len], body[self.iv_len:-self.icv_len], body[-self.icv_len:]
        if self.encr_id == ENCR_AES_CBC and len(ct) % self.block:
            raise DecodeError("bad_padding", f"SK: ciphertext length {len(ct)} not a multiple of {self.block}")
        if self.encr_id == ENCR_AES_GCM_16:
            try:
                data = self.aead.decrypt(self.salt + iv, ct + icv, prefix)
            except Exception as exc:  # cryptography raises InvalidTag
                raise DecodeError("integrity_check_failed", "SK: AES-GCM tag mismatch") from exc
        else:
            want = hmac.new(self.integ_key, prefix + iv + ct, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(want, icv):
                raise DecodeError("integrity_check_failed", "SK: HMAC-SHA-256-128 mismatch")
            dec = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
            data = dec.update(ct) + dec.finalize()
        pad = data[-1]
        if pad + 1 > len(data):
            raise DecodeError("bad_padding", f"SK: pad length {pad} exceeds the plaintext")
        return data[:-1 - pad]


# --------------------------------------------------------------------------- header and message


@dataclass
class Header:
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & FLAG_INITIATOR)


def decode_header(data: bytes) -> Header:
    need(data, HEADER_LEN, "IKE header")
    spi_i, spi_r, nxt, version, exchange, flags, mid, length = struct.unpack_from("!8s8sBBBBII", data)
    if version >> 4 != 2:
        raise DecodeError("bad_version", f"IKE major version {version >> 4}, expected 2")
    if length != len(data):
        raise DecodeError("bad_length", f"IKE header length {length} but datagram holds {len(data)}")
    if spi_i == bytes(8):
        raise DecodeError("bad_payload", "IKE header: initiator SPI is zero")
    return Header(spi_i, spi_r, nxt, exchange, flags, mid, length)


def _encode_chain(payloads: list, trailing_type: int = PT_NONE) -> tuple[int, bytes]:
    """Payload chain -> (type of the first payload, bytes)."""
    out = b""
    for i in range(len(payloads) - 1, -1, -1):
        p = payloads[i]
        body = p.encode_body()
        out = struct.pack("!BBH", trailing_type, 0, 4 + len(body)) + body + out
        trailing_type = p.TYPE
    return trailing_type, out


def _decode_chain(first: int, data: bytes, allow_sk: bool) -> tuple[list, tuple[int, int, bytes] | None]:
    """Decode a payload chain. Returns the payloads and, if an SK payload was met (it must be last),
    (offset of SK generic header, first inner payload type, SK body)."""
    payloads: list = []
    nxt = first
    offset = 0
    while nxt != PT_NONE:
        need(data[offset:], 4, f"payload {nxt} header")
        this_type = nxt
        nxt, flags, plen = struct.unpack_from("!BBH", data, offset)
        if plen < 4 or offset + plen > len(data):
            raise DecodeError("bad_length", f"payload {this_type} length {plen} exceeds the message")
        body = data[offset + 4:offset + plen]
        if this_type == PT_SK:
            if not allow_sk:
                raise DecodeError("bad_payload", "SK payload inside SK")
            if offset + plen != len(data):
                raise DecodeError("bad_payload", "SK payload is not the last payload")
            return payloads, (offset, nxt, body)
        cls = PAYLOAD_CLASSES.get(this_type)
        if cls is not None:
            payloads.append(cls.decode_body(body))
        elif flags & 0x80:
            raise UnsupportedCriticalPayload(this_type)
        else:
            payloads.append(UnknownPayload(this_type, body))
        offset += plen
    if offset != len(data):
        raise DecodeError("bad_length", f"{len(data) - offset} bytes after the last payload")
    return payloads, None


@dataclass
class Message:
    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int
    payloads: list = field(default_factory=list)
    response: bool = False
    initiator: bool = False  # sender is the original initiator of the IKE SA
    encrypted: bool = False  # set by decode_message when the payloads came inside SK

    @property
    def flags(self) -> int:
        return (FLAG_RESPONSE if self.response else 0) | (FLAG_INITIATOR if self.initiator else 0)

    def encode(self, cipher: SkCipher | None = None) -> bytes:
        if cipher is None:
            first, chain = _encode_chain(self.payloads)
            return self._header(first, HEADER_LEN + len(chain)) + chain
        inner_first, plain = _encode_chain(self.payloads)
        sk_len = 4 + cipher.body_length(len(plain))
        prefix = self._header(PT_SK, HEADER_LEN + sk_len) + struct.pack("!BBH", inner_first, 0, sk_len)
        return prefix + cipher.protect(prefix, plain)

    def _header(self, first: int, length: int) -> bytes:
        return struct.pack("!8s8sBBBBII", self.spi_i, self.spi_r, first, 0x20, self.exchange, self.flags,
                           self.message_id, length)

    # convenience accessors
    def get(self, cls: type):
        return next((p for p in self.payloads if type(p) is cls), None)

    def notify(self, ntype: int) -> Notify | None:
        return next((p for p in self.payloads if isinstance(p, Notify) and p.type == ntype), None)

    def errors(self) -> list[Notify]:
        return [p for p in self.payloads if isinstance(p, Notify) and p.is_error]


def decode_message(data: bytes, cipher: SkCipher | None = None) -> Message:
    """Decode a whole IKE message; an SK payload is verified and opened with `cipher`."""
    hdr = decode_header(data)
    payloads, sk = _decode_chain(hdr.next_payload, data[HEADER_LEN:], allow_sk=True)
    encrypted = False
    if sk is not None:
        offset, inner_first, body = sk
        if cipher is None:
            raise DecodeError("no_keys", "SK payload but no keys for this IKE SA")
        prefix = data[:HEADER_LEN + offset + 4]
        plain = cipher.unprotect(prefix, body)
        try:
            inner, _ = _decode_chain(inner_first, plain, allow_sk=False)
        except DecodeError as exc:  # the sender is authenticated: it may be told (RFC 7296 2.21.3)
            exc.authenticated = True
            raise
        payloads += inner
        encrypted = True
    return Message(hdr.spi_i, hdr.spi_r, hdr.exchange, hdr.message_id, payloads,
                   response=hdr.is_response, initiator=hdr.from_initiator, encrypted=encrypted)


# --------------------------------------------------------------------------- UDP 4500 demux (RFC 3948)

KIND_IKE = "ike"
KIND_KEEPALIVE = "keepalive"
KIND_ESP = "esp"


def classify_udp4500(payload: bytes) -> tuple[str, bytes]:
    """Sort a UDP/4500 payload: ('ike', message without marker), ('keepalive', b'') or ('esp', payload)."""
    if payload == NAT_KEEPALIVE:
        return KIND_KEEPALIVE, b""
    need(payload, 4, "UDP/4500 payload")
    if payload[:4] == NON_ESP_MARKER:
        return KIND_IKE, payload[4:]
    if len(payload) < 8:
        raise DecodeError("truncated", f"ESP in UDP needs 8 bytes, got {len(payload)}")
    return KIND_ESP, payload


def add_non_esp_marker(ike: bytes) -> bytes:
    return NON_ESP_MARKER + ike
