"""IKEv2 key material (RFC 7296 2.13-2.18, 2.15, 2.23) and the Diffie-Hellman groups 14, 19 and 31.

Pure functions of their inputs: no randomness except in `DhGroup.generate`.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from nodes.core import RandomSource, system_random
from nodes.wire import ikev2 as w

PRF_HASHES = {
    w.PRF_HMAC_SHA1: hashlib.sha1,
    w.PRF_HMAC_SHA2_256: hashlib.sha256,
    w.PRF_HMAC_SHA2_384: hashlib.sha384,
    w.PRF_HMAC_SHA2_512: hashlib.sha512,
}
INTEG_KEY_BYTES = {w.INTEG_NONE: 0, w.INTEG_HMAC_SHA2_256_128: 32}
KEY_PAD = b"Key Pad for IKEv2"


class DhError(ValueError):
    """The peer's public value is invalid (wrong length, not on the curve, degenerate)."""


def prf(alg: int, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, PRF_HASHES[alg]).digest()


def prf_plus(alg: int, key: bytes, seed: bytes, length: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = prf(alg, key, t + seed + bytes([i]))
        out += t
        i += 1
        if i > 256:
            raise ValueError("prf+ asked for more than 255 blocks")
    return out[:length]


def encr_key_bytes(encr_id: int, key_bits: int) -> int:
    """Keying material of an encryption transform: the key, plus the 4-byte salt for AES-GCM."""
    return key_bits // 8 + (4 if encr_id == w.ENCR_AES_GCM_16 else 0)


# --------------------------------------------------------------------------- Diffie-Hellman

MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


SECP256R1_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class DhGroup:
    """generate(random) -> (private, public bytes), the private value drawn from `random` (a
    nodes.core.RandomSource); shared(private, peer public bytes) -> g^ir bytes."""
    number: int

    def generate(self, random: RandomSource = system_random):
        raise NotImplementedError

    def shared(self, private, peer_public: bytes) -> bytes:
        raise NotImplementedError


class Modp2048(DhGroup):
    number = 14
    size = 256

    def generate(self, random: RandomSource = system_random):
        x = int.from_bytes(random(32), "big") | (1 << 255)  # 256-bit exponent, as strongSwan uses
        return x, pow(2, x, MODP_2048_P).to_bytes(self.size, "big")

    def shared(self, private, peer_public: bytes) -> bytes:
        if len(peer_public) != self.size:
            raise DhError(f"MODP-2048 public value has {len(peer_public)} bytes, expected {self.size}")
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < MODP_2048_P - 1:
            raise DhError("MODP-2048 public value out of range")
        return pow(y, private, MODP_2048_P).to_bytes(self.size, "big")


class Ecp256(DhGroup):
    number = 19

    def generate(self, random: RandomSource = system_random):
        # a scalar in 1..n-1 (the bias of the reduction is below 2^-32)
        scalar = int.from_bytes(random(40), "big") % (SECP256R1_ORDER - 1) + 1
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        nums = key.public_key().public_numbers()
        return key, nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")

    def shared(self, private, peer_public: bytes) -> bytes:
        if len(peer_public) != 64:
            raise DhError(f"ECP-256 public value has {len(peer_public)} bytes, expected 64")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + peer_public)
        except ValueError as exc:
            raise DhError("ECP-256 point not on the curve") from exc
        return private.exchange(ec.ECDH(), peer)


class Curve25519(DhGroup):
    number = 31

    def generate(self, random: RandomSource = system_random):
        key = x25519.X25519PrivateKey.from_private_bytes(random(32))  # clamped by the library
        return key, key.public_key().public_bytes_raw()

    def shared(self, private, peer_public: bytes) -> bytes:
        if len(peer_public) != 32:
            raise DhError(f"Curve25519 public value has {len(peer_public)} bytes, expected 32")
        try:
            secret = private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:  # all-zero result
            raise DhError("Curve25519 shared secret is zero") from exc
        return secret


DH_GROUPS: dict[int, DhGroup] = {g.number: g for g in (Modp2048(), Ecp256(), Curve25519())}


# --------------------------------------------------------------------------- IKE SA keys


@dataclass
class IkeKeys:
    prf_alg: int
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def as_dict(self) -> dict:
        return {k: getattr(self, k).hex() for k in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")}


def derive_ike_keys(prf_alg: int, encr_id: int, key_bits: int, integ_id: int, skeyseed: bytes,
                    nonce_i: bytes, nonce_r: bytes, spi_i: bytes, spi_r: bytes) -> IkeKeys:
    prf_len = PRF_HASHES[prf_alg]().digest_size
    e_len = encr_key_bytes(encr_id, key_bits)
    a_len = INTEG_KEY_BYTES[integ_id]
    lengths = [prf_len, a_len, a_len, e_len, e_len, prf_len, prf_len]
    stream = prf_plus(prf_alg, skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(lengths))
    parts, pos = [], 0
    for n in lengths:
        parts.append(stream[pos:pos + n])
        pos += n
    return IkeKeys(prf_alg, *parts)


def skeyseed_initial(prf_alg: int, nonce_i: bytes, nonce_r: bytes, g_ir: bytes) -> bytes:
    return prf(prf_alg, nonce_i + nonce_r, g_ir)


def skeyseed_rekey(prf_alg: int, old_sk_d: bytes, g_ir: bytes, nonce_i: bytes, nonce_r: bytes) -> bytes:
    return prf(prf_alg, old_sk_d, g_ir + nonce_i + nonce_r)


def psk_auth(prf_alg: int, secret: bytes, signed_message: bytes, peer_nonce: bytes, sk_p: bytes,
             id_prime: bytes) -> bytes:
    """AUTH for shared-key MIC (method 2): prf(prf(secret, pad), message | nonce | prf(SK_p, IDx')).

    For EAP methods without an MSK (EAP-MD5) strongSwan passes SK_p itself as `secret`.
    """
    octets = signed_message + peer_nonce + prf(prf_alg, sk_p, id_prime)
    return prf(prf_alg, prf(prf_alg, secret, KEY_PAD), octets)


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    from ipaddress import IPv4Address
    return hashlib.sha1(spi_i + spi_r + IPv4Address(address).packed + port.to_bytes(2, "big")).digest()


# --------------------------------------------------------------------------- child SA keys


@dataclass
class ChildKeys:
    """Keys of one child SA pair, named by direction relative to the exchange: i = initiator to responder."""
    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes


def derive_child_keys(prf_alg: int, sk_d: bytes, encr_id: int, key_bits: int, integ_id: int,
                      nonce_i: bytes, nonce_r: bytes, g_ir: bytes = b"") -> ChildKeys:
    """RFC 7296 2.17: KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr); initiator-to-responder keys first,
    encryption before integrity in each direction."""
    e_len = encr_key_bytes(encr_id, key_bits)
    a_len = INTEG_KEY_BYTES[integ_id]
    km = prf_plus(prf_alg, sk_d, g_ir + nonce_i + nonce_r, 2 * (e_len + a_len))
    return ChildKeys(km[:e_len], km[e_len:e_len + a_len], km[e_len + a_len:2 * e_len + a_len],
                     km[2 * e_len + a_len:])
