"""Authenticators of Mobile IP registration messages (RFC 5944 3.5.1, 5.1), computed from scratch.

- HMAC-MD5 (RFC 2104), the default algorithm;
- keyed MD5 in "prefix+suffix" mode: MD5(key || protected data || key), for older implementations.

The protected data is the UDP payload from the first byte of the message up to and including the
Type, Length and SPI of the authentication extension itself (all earlier extensions included).
`Authenticate` is the extension *specification* a message builder turns into bytes at its place
in the extension list; its knobs produce the negative cases (wrong key or SPI, truncated or
corrupted authenticator, a lying Length field).
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

EXT_MN_HA_AUTH = 32
EXT_MN_FA_AUTH = 33
EXT_FA_HA_AUTH = 34
AUTH_TYPES = (EXT_MN_HA_AUTH, EXT_MN_FA_AUTH, EXT_FA_HA_AUTH)

HMAC_MD5 = "hmac-md5"
PREFIX_SUFFIX_MD5 = "prefix-suffix-md5"
ALGORITHMS = (HMAC_MD5, PREFIX_SUFFIX_MD5)


def hmac_md5(key: bytes, data: bytes) -> bytes:
    """HMAC-MD5 as RFC 2104 defines it: MD5((K ^ opad) || MD5((K ^ ipad) || data)), 64-byte blocks."""
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.md5(bytes(k ^ 0x36 for k in key) + data).digest()
    return hashlib.md5(bytes(k ^ 0x5C for k in key) + inner).digest()


def prefix_suffix_md5(key: bytes, data: bytes) -> bytes:
    """Keyed MD5 in prefix+suffix mode: MD5(key || data || key)."""
    return hashlib.md5(key + data + key).digest()


def compute_authenticator(algorithm: str, key: bytes, data: bytes) -> bytes:
    if algorithm == HMAC_MD5:
        return hmac_md5(key, data)
    if algorithm == PREFIX_SUFFIX_MD5:
        return prefix_suffix_md5(key, data)
    raise ValueError(f"unknown authentication algorithm {algorithm!r} (one of {ALGORITHMS})")


@dataclass(frozen=True)
class SecurityAssociation:
    """A mobility security association: SPI, key, algorithm, replay protection style."""

    spi: int
    key: bytes
    algorithm: str = HMAC_MD5
    replay: str = "timestamp"  # or "nonce" (RFC 5944 5.7)
    tolerance: float = 7.0  # seconds, for timestamps

    def authenticate(self, ext_type: int = EXT_MN_HA_AUTH, **overrides) -> "Authenticate":
        """The extension spec signing with this SA (overrides: spi=, key=, truncate=, ...)."""
        fields = dict(ext_type=ext_type, spi=self.spi, key=self.key, algorithm=self.algorithm)
        fields.update(overrides)
        return Authenticate(**fields)


@dataclass(frozen=True)
class Authenticate:
    """An authentication extension to compute at its place in a message.

    truncate: keep only this many authenticator bytes (Length follows unless `length` is given);
    length: the Length byte as sent, whatever the content; authenticator: send these bytes instead
    of the computed ones; corrupt: flip the last bit of the computed authenticator."""

    ext_type: int = EXT_MN_HA_AUTH
    spi: int = 256
    key: bytes = b""
    algorithm: str = HMAC_MD5
    truncate: int | None = None
    length: int | None = None
    authenticator: bytes | None = None
    corrupt: bool = False

    def encode_after(self, preceding: bytes) -> bytes:
        """The extension's bytes when `preceding` (the message so far) comes before it."""
        if self.authenticator is not None:
            value = self.authenticator
        else:
            # the protected data carries the Length as sent, so compute after choosing it
            full_len = 16 if self.truncate is None else self.truncate
            length = self.length if self.length is not None else 4 + full_len
            head = bytes((self.ext_type, length & 0xFF)) + struct.pack("!I", self.spi & 0xFFFFFFFF)
            value = compute_authenticator(self.algorithm, self.key, preceding + head)
            if self.corrupt:
                value = value[:-1] + bytes((value[-1] ^ 1,))
            value = value[:full_len]
            return head + value
        length = self.length if self.length is not None else 4 + len(value)
        return bytes((self.ext_type, length & 0xFF)) + struct.pack("!I", self.spi & 0xFFFFFFFF) + value


def protected_bytes(raw: bytes, ext_offset: int) -> bytes:
    """What an authentication extension at `ext_offset` of `raw` protects (RFC 5944 3.5.1)."""
    return raw[:ext_offset + 6]


def verify_authenticator(raw: bytes, ext_offset: int, authenticator: bytes, key: bytes,
                         algorithm: str = HMAC_MD5) -> bool:
    """True when `authenticator` (of the extension at `ext_offset` in `raw`) is right for `key`."""
    expected = compute_authenticator(algorithm, key, protected_bytes(raw, ext_offset))
    return hmac.compare_digest(expected, authenticator)
