"""EAP (RFC 3748) packets and the MD5-Challenge method (type 4), as strongSwan's eap-md5 plugin runs it.

Response value = MD5(identifier | password | challenge). EAP-MD5 derives no MSK, so the IKE AUTH
payloads after it are computed with SK_p (see ike_crypto.psk_auth).
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from nodes.core import RandomSource, system_random
from nodes.wire.errors import DecodeError, need

CODE_REQUEST = 1
CODE_RESPONSE = 2
CODE_SUCCESS = 3
CODE_FAILURE = 4
TYPE_IDENTITY = 1
TYPE_NAK = 3
TYPE_MD5 = 4


@dataclass
class EapPacket:
    code: int
    identifier: int
    type: int | None = None  # only requests and responses have a type
    data: bytes = b""

    def encode(self) -> bytes:
        if self.code in (CODE_SUCCESS, CODE_FAILURE):
            return struct.pack("!BBH", self.code, self.identifier, 4)
        return struct.pack("!BBHB", self.code, self.identifier, 5 + len(self.data), self.type) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> EapPacket:
        need(raw, 4, "EAP packet")
        code, ident, length = struct.unpack_from("!BBH", raw)
        if length != len(raw):
            raise DecodeError("bad_payload", f"EAP length field {length} but packet holds {len(raw)}")
        if code in (CODE_SUCCESS, CODE_FAILURE):
            if length != 4:
                raise DecodeError("bad_payload", "EAP Success/Failure carries data")
            return cls(code, ident)
        if code not in (CODE_REQUEST, CODE_RESPONSE):
            raise DecodeError("bad_payload", f"EAP code {code} unknown")
        need(raw, 5, "EAP type")
        return cls(code, ident, raw[4], raw[5:])


def md5_value(identifier: int, password: bytes, challenge: bytes) -> bytes:
    return hashlib.md5(bytes([identifier]) + password + challenge).digest()


def md5_challenge(identifier: int, random: RandomSource = system_random,
                  name: bytes = b"") -> tuple[EapPacket, bytes]:
    challenge = random(16)
    return EapPacket(CODE_REQUEST, identifier, TYPE_MD5, bytes([16]) + challenge + name), challenge


def parse_md5_value(packet: EapPacket) -> bytes:
    if packet.type != TYPE_MD5 or not packet.data or packet.data[0] + 1 > len(packet.data) or packet.data[0] == 0:
        raise DecodeError("bad_payload", "EAP-MD5: value-size field inconsistent")
    return packet.data[1:1 + packet.data[0]]


def peer_respond(request: EapPacket, identity: bytes, password: bytes) -> EapPacket:
    """The peer's answer to an EAP request: Identity, MD5-Challenge, or a Nak proposing MD5."""
    if request.type == TYPE_IDENTITY:
        return EapPacket(CODE_RESPONSE, request.identifier, TYPE_IDENTITY, identity)
    if request.type == TYPE_MD5:
        challenge = parse_md5_value(request)
        value = md5_value(request.identifier, password, challenge)
        return EapPacket(CODE_RESPONSE, request.identifier, TYPE_MD5, bytes([16]) + value)
    return EapPacket(CODE_RESPONSE, request.identifier, TYPE_NAK, bytes([TYPE_MD5]))


def server_verify(response: EapPacket, identifier: int, challenge: bytes, password: bytes) -> bool:
    if response.code != CODE_RESPONSE or response.identifier != identifier or response.type != TYPE_MD5:
        return False
    try:
        value = parse_md5_value(response)
    except DecodeError:
        return False
    return hmac.compare_digest(value, md5_value(identifier, password, challenge))
