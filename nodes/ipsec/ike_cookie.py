"""Stateless cookies of an IKE responder under a flood of IKE_SA_INIT requests (RFC 7296 section 2.6).

While the number of half-open IKE SAs is at or above `cookie_threshold`, a request without a valid
COOKIE gets an answer carrying only N(COOKIE) and creates no state; the initiator repeats its
request with that notify first and is served as usual. The cookie is

    Cookie = <VersionIDofSecret> | HMAC-SHA-256(<secret>, Ni | IPi | SPIi)[:16]

with a secret from the core's random source that is replaced every `rotate_every` seconds; cookies
made with the secret before it still verify, so an initiator caught by a rotation is not refused.
"""
from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address

from nodes.core import RandomSource

COOKIE_LEN = 1 + 16


class CookieJar:
    def __init__(self, random: RandomSource, now: float = 0.0, rotate_every: float = 60.0):
        self.random, self.rotate_every = random, rotate_every
        self.version = 0
        self.secrets = {0: random(32)}
        self.rotated_at = now

    def _rotate(self, now: float) -> None:
        """A new secret every `rotate_every` seconds; the one before stays valid until the next."""
        if now - self.rotated_at >= self.rotate_every:
            previous = self.version
            self.version = (previous + 1) % 256
            self.secrets = {previous: self.secrets[previous], self.version: self.random(32)}
            self.rotated_at = now

    @staticmethod
    def _mac(secret: bytes, nonce_i: bytes, ip: str, spi_i: bytes) -> bytes:
        return hmac.new(secret, nonce_i + IPv4Address(ip).packed + spi_i, hashlib.sha256).digest()[:16]

    def make(self, nonce_i: bytes, ip: str, spi_i: bytes, now: float) -> bytes:
        self._rotate(now)
        return bytes([self.version]) + self._mac(self.secrets[self.version], nonce_i, ip, spi_i)

    def valid(self, cookie: bytes, nonce_i: bytes, ip: str, spi_i: bytes, now: float) -> bool:
        self._rotate(now)
        if len(cookie) != COOKIE_LEN or cookie[0] not in self.secrets:
            return False
        return hmac.compare_digest(cookie[1:], self._mac(self.secrets[cookie[0]], nonce_i, ip, spi_i))
