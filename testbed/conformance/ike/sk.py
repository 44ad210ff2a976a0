"""The Encrypted payload (SK {...}) of RFC 7296 section 3.14, raw bytes (scapy has no cipher for it).

Body of the SK payload = IV | Ciphertext | Integrity Checksum Data, where the plaintext is
inner payloads | Padding | Pad Length (1 byte).

* ENCR_AES_CBC (128/256) with AUTH_HMAC_SHA2_256_128 (RFC 7296 3.14, RFC 4868): 16-byte random IV,
  plaintext padded to the 16-byte block; ICV = first 16 bytes of HMAC-SHA-256(SK_a, the whole message
  from the IKE header through the ciphertext).
* ENCR_AES_GCM_16 (128/256, RFC 5282): the key material ends with a 4-byte salt; nonce = salt | 8-byte
  explicit IV; AAD = the message from the IKE header through the SK payload's generic header
  (RFC 5282 section 5.1); 16-byte ICV is the GCM tag; no alignment is needed.

`SkOptions` breaks things on purpose: a chosen IV, the number and content of padding bytes, a Pad
Length value that lies, a flipped ICV bit or a truncated/replaced ICV.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import constants as c
from .crypto import INTEG_HASHES


class SkError(ValueError):
    """An SK payload that cannot be opened: `reason` says why (e.g. 'icv', 'padding', 'short')."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SkOptions:
    """Overrides of one SK payload. None: the correct value."""
    iv: bytes | None = None  # explicit IV (16 bytes CBC, 8 bytes GCM); None: random
    pad_len: int | None = None  # number of padding bytes (CBC: must keep block alignment)
    pad_bytes: bytes | None = None  # the padding content (len must equal pad_len); None: zeros
    pad_length_field: int | None = None  # the Pad Length octet actually written (a lie if != pad_len)
    break_icv: bool = False  # flip the last bit of the ICV
    icv: bytes | None = None  # replace the ICV entirely (any length)


@dataclass(frozen=True)
class SkCipher:
    """One direction's SK keys: encr_id (12 CBC or 20 GCM), the encryption key (GCM: with the salt),
    and for CBC the integrity transform and key."""
    encr_id: int
    encr_key: bytes
    integ_id: int | None = None
    integ_key: bytes = b""

    @property
    def gcm(self) -> bool:
        return self.encr_id == c.ENCR_AES_GCM_16

    @property
    def iv_len(self) -> int:
        return 8 if self.gcm else 16

    @property
    def icv_len(self) -> int:
        return 16 if self.gcm else INTEG_HASHES[self.integ_id][2]

    @property
    def block(self) -> int:
        return 1 if self.gcm else 16

    def default_pad_len(self, inner_len: int) -> int:
        return (-(inner_len + 1)) % self.block

    def body_len(self, inner_len: int, opts: SkOptions | None = None) -> int:
        """Length of IV | ciphertext | ICV for `inner_len` bytes of inner payloads."""
        opts = opts or SkOptions()
        pad = self.default_pad_len(inner_len) if opts.pad_len is None else opts.pad_len
        icv = self.icv_len if opts.icv is None else len(opts.icv)
        return self.iv_len + inner_len + pad + 1 + icv

    def seal(self, prefix: bytes, inner: bytes, opts: SkOptions | None = None) -> bytes:
        """IV | ciphertext | ICV for the inner payload bytes. `prefix` is the message from the IKE header
        through the SK generic header, with the final lengths already in it (header Length covers
        everything, RFC 7296 3.1)."""
        opts = opts or SkOptions()
        pad_len = self.default_pad_len(len(inner)) if opts.pad_len is None else opts.pad_len
        pad = opts.pad_bytes if opts.pad_bytes is not None else bytes(pad_len)
        if len(pad) != pad_len:
            raise ValueError("pad_bytes must be pad_len bytes long")
        field = pad_len if opts.pad_length_field is None else opts.pad_length_field
        plain = inner + pad + bytes([field & 0xFF])
        iv = opts.iv if opts.iv is not None else os.urandom(self.iv_len)
        if self.gcm:
            sealed = AESGCM(self.encr_key[:-4]).encrypt(self.encr_key[-4:] + iv, plain, prefix)
            ct, icv = sealed[:-16], sealed[-16:]
        else:
            if len(plain) % 16:
                raise ValueError("AES-CBC plaintext not block aligned: choose pad_len accordingly")
            enc = Cipher(algorithms.AES(self.encr_key), modes.CBC(iv)).encryptor()
            ct = enc.update(plain) + enc.finalize()
            icv = self._mac(prefix + iv + ct)
        if opts.icv is not None:
            icv = opts.icv
        elif opts.break_icv:
            icv = icv[:-1] + bytes([icv[-1] ^ 0x01])
        return iv + ct + icv

    def _mac(self, data: bytes) -> bytes:
        digest, _, trunc = INTEG_HASHES[self.integ_id]
        return hmac.new(self.integ_key, data, digest).digest()[:trunc]

    def open(self, prefix: bytes, body: bytes) -> tuple[bytes, int, bytes]:
        """Check and decrypt an SK body; returns (inner payload bytes, pad length, padding bytes).
        Raises SkError with the reason when the ICV does not verify or the padding is inconsistent."""
        if len(body) < self.iv_len + self.icv_len + (1 if self.gcm else 16):
            raise SkError("short")
        iv, ct, icv = body[:self.iv_len], body[self.iv_len:-self.icv_len], body[-self.icv_len:]
        if self.gcm:
            try:
                plain = AESGCM(self.encr_key[:-4]).decrypt(self.encr_key[-4:] + iv, ct + icv, prefix)
            except InvalidTag as exc:
                raise SkError("icv") from exc
        else:
            if not hmac.compare_digest(self._mac(prefix + iv + ct), icv):
                raise SkError("icv")
            if len(ct) % 16:
                raise SkError("ciphertext not block aligned")
            dec = Cipher(algorithms.AES(self.encr_key), modes.CBC(iv)).decryptor()
            plain = dec.update(ct) + dec.finalize()
        if not plain:
            raise SkError("empty plaintext")
        pad_len = plain[-1]
        if pad_len + 1 > len(plain):
            raise SkError("padding")
        return plain[:-1 - pad_len], pad_len, plain[-1 - pad_len:-1]
