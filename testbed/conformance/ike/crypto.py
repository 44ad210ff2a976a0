"""Key exchange, PRFs and key derivation of IKEv2, with the `cryptography` package.

* Diffie-Hellman (RFC 7296 section 3.4, 2.14): group 14 (2048-bit MODP, RFC 3526: public value and
  shared secret left-padded to the 256-byte prime length), group 19 (256-bit random ECP, RFC 5903:
  KE data is x|y, the shared secret is x), group 31 (Curve25519, RFC 8031: 32-byte u coordinates).
* PRF_HMAC_SHA2_256 (RFC 4868) and PRF_HMAC_SHA1 (RFC 2104); prf+ (RFC 7296 section 2.13).
* SKEYSEED and SK_d/ai/ar/ei/er/pi/pr (RFC 7296 section 2.14), SKEYSEED of a rekeyed IKE SA
  (section 2.18), the AUTH value of a shared key (section 2.15) and child SA KEYMAT (section 2.17)
  with and without PFS.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from . import constants as c

MODP2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)

PSK_PAD = b"Key Pad for IKEv2"  # RFC 7296 section 2.15


class CryptoError(ValueError):
    """A peer's key exchange value or a key length that cannot be used."""


# ----------------------------------------------------------------------------- Diffie-Hellman

class DhKey:
    """One side's ephemeral DH key: `public` is the KE payload's Key Exchange Data (RFC 7296 3.4)."""

    group: int
    public: bytes

    def shared(self, peer_public: bytes) -> bytes:
        raise NotImplementedError


class ModpKey(DhKey):
    """Group 14 (RFC 3526 section 3): g = 2, values are 256 bytes, left-padded with zeros (RFC 7296 3.4)."""

    def __init__(self, group: int = c.MODP2048, private: int | None = None):
        self.group, self.p, self.size = group, MODP2048_P, 256
        self.private = private if private is not None else int.from_bytes(os.urandom(32), "big") | 1 << 255
        self.public = pow(2, self.private, self.p).to_bytes(self.size, "big")

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self.size:
            raise CryptoError(f"MODP group {self.group} public value of {len(peer_public)} bytes, not {self.size}")
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < self.p - 1:
            raise CryptoError("MODP public value out of range")
        return pow(y, self.private, self.p).to_bytes(self.size, "big")


class EcpKey(DhKey):
    """Group 19 (RFC 5903): KE data is x|y (32 bytes each), the shared secret the x coordinate."""

    def __init__(self, group: int = c.ECP256, private: ec.EllipticCurvePrivateKey | None = None):
        self.group = group
        self.key = private or ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        self.public = nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 64:
            raise CryptoError(f"ECP-256 public value of {len(peer_public)} bytes, not 64")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + peer_public)
            return self.key.exchange(ec.ECDH(), peer)
        except ValueError as exc:
            raise CryptoError(f"ECP-256 public value not on the curve: {exc}") from exc


class X25519Key(DhKey):
    """Group 31 (RFC 8031): 32-byte public values and shared secret."""

    def __init__(self, group: int = c.CURVE25519, private: x25519.X25519PrivateKey | None = None):
        self.group = group
        self.key = private or x25519.X25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes_raw()

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 32:
            raise CryptoError(f"Curve25519 public value of {len(peer_public)} bytes, not 32")
        try:
            return self.key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:
            raise CryptoError(f"Curve25519 exchange failed: {exc}") from exc


DH_GROUPS = {c.MODP2048: ModpKey, c.ECP256: EcpKey, c.CURVE25519: X25519Key}
DH_PUBLIC_LEN = {c.MODP2048: 256, c.ECP256: 64, c.CURVE25519: 32}


def dh_key(group: int) -> DhKey:
    """A fresh private key of `group` (14, 19 or 31)."""
    if group not in DH_GROUPS:
        raise CryptoError(f"DH group {group} not implemented")
    return DH_GROUPS[group](group)


# ----------------------------------------------------------------------------- PRF

PRF_HASHES = {c.PRF_HMAC_SHA2_256: hashlib.sha256, c.PRF_HMAC_SHA1: hashlib.sha1}
INTEG_HASHES = {c.AUTH_HMAC_SHA2_256_128: (hashlib.sha256, 32, 16), c.AUTH_HMAC_SHA1_96: (hashlib.sha1, 20, 12)}


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """prf(K, S) of RFC 7296 section 2.13: HMAC with the transform's hash (RFC 4868 / RFC 2104)."""
    return hmac.new(key, data, PRF_HASHES[prf_id]).digest()


def prf_len(prf_id: int) -> int:
    """The PRF's output (and preferred key) length (RFC 7296 section 2.14: SK_d, SK_pi, SK_pr)."""
    return PRF_HASHES[prf_id]().digest_size


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+ (RFC 7296 section 2.13): T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n); at most 255 blocks."""
    out, t, n = b"", b"", 1
    while len(out) < length:
        if n > 255:
            raise CryptoError("prf+ asked for more than 255 blocks")
        t = prf(prf_id, key, t + seed + bytes([n]))
        out += t
        n += 1
    return out[:length]


# ----------------------------------------------------------------------------- IKE SA keys

def encr_key_len(encr_id: int, key_bits: int) -> int:
    """Key material an encryption transform takes: AES-GCM adds a 4-byte salt (RFC 5282 section 7.1,
    RFC 4106 section 8.1)."""
    return key_bits // 8 + (4 if encr_id == c.ENCR_AES_GCM_16 else 0)


def integ_key_len(integ_id: int | None) -> int:
    return INTEG_HASHES[integ_id][1] if integ_id else 0


@dataclass
class IkeKeys:
    """The seven keys of RFC 7296 section 2.14, plus SKEYSEED."""
    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def as_dict(self) -> dict[str, str]:
        return {k: v.hex() for k, v in vars(self).items()}


def skeyseed(prf_id: int, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 section 2.14)."""
    return prf(prf_id, ni + nr, g_ir)


def skeyseed_rekey(prf_id: int, old_sk_d: bytes, g_ir: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) of a rekeyed IKE SA (RFC 7296 section 2.18)."""
    return prf(prf_id, old_sk_d, g_ir + ni + nr)


def derive_ike_keys(prf_id: int, seed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes,
                    encr_id: int, key_bits: int, integ_id: int | None) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    (RFC 7296 section 2.14); SK_d/pi/pr have the PRF's preferred key length."""
    lp, la, le = prf_len(prf_id), integ_key_len(integ_id), encr_key_len(encr_id, key_bits)
    km = prf_plus(prf_id, seed, ni + nr + spi_i + spi_r, 3 * lp + 2 * la + 2 * le)
    parts, pos = [], 0
    for n in (lp, la, la, le, le, lp, lp):
        parts.append(km[pos:pos + n])
        pos += n
    return IkeKeys(seed, *parts)


# ----------------------------------------------------------------------------- AUTH (shared key)

def signed_octets(message: bytes, peer_nonce: bytes, prf_id: int, sk_p: bytes, id_body: bytes) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets (RFC 7296 section 2.15):
    RealMessage | NonceData of the peer | prf(SK_px, RestOfIDPayload), where RestOfIDPayload is the ID
    payload without its 4-byte generic header (ID Type, RESERVED, data)."""
    return message + peer_nonce + prf(prf_id, sk_p, id_body)


def psk_auth(prf_id: int, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (RFC 7296 section 2.15)."""
    return prf(prf_id, prf(prf_id, secret, PSK_PAD), octets)


# ----------------------------------------------------------------------------- child SA keys

@dataclass
class ChildKeys:
    """KEYMAT split per RFC 7296 section 2.17: initiator->responder encryption key then integrity key,
    then the same for responder->initiator. AES-GCM keys include the 4-byte salt (RFC 4106 8.1)."""
    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes


def child_keymat(prf_id: int, sk_d: bytes, ni: bytes, nr: bytes, encr_id: int, key_bits: int,
                 integ_id: int | None, g_ir: bytes | None = None) -> ChildKeys:
    """KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS (RFC 7296 2.17)."""
    le, la = encr_key_len(encr_id, key_bits), integ_key_len(integ_id)
    km = prf_plus(prf_id, sk_d, (g_ir or b"") + ni + nr, 2 * (le + la))
    return ChildKeys(km[:le], km[le:le + la], km[le + la:2 * le + la], km[2 * le + la:])


# ----------------------------------------------------------------------------- NAT detection

def nat_detection_hash(spi_i: bytes, spi_r: bytes, addr: str, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port) of NAT_DETECTION_*_IP (RFC 7296 section 2.23); SPIr is zero in
    the IKE_SA_INIT request."""
    import ipaddress
    return hashlib.sha1(spi_i + spi_r + ipaddress.ip_address(addr).packed + port.to_bytes(2, "big")).digest()
