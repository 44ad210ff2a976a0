"""Mobility security associations (SPI + key, HMAC-MD5) as the cores use them."""
from __future__ import annotations

from dataclasses import dataclass

from nodes.wire.mip import EXT_MN_HA_AUTH, MIN_SPI, AuthExtension, append_auth, verify_auth


@dataclass(frozen=True)
class SecurityAssociation:
    """One mobility security association: an SPI (>= 256) and an HMAC-MD5 key."""

    spi: int
    key: bytes

    def __post_init__(self):
        if self.spi < MIN_SPI:
            raise ValueError(f"SPI {self.spi} is reserved (0-255)")
        if not self.key:
            raise ValueError("empty authentication key")

    def sign(self, message: bytes, ext_type: int = EXT_MN_HA_AUTH) -> bytes:
        """`message` with an authentication extension of `ext_type` appended."""
        return append_auth(message, ext_type, self.spi, self.key)

    def verifies(self, raw: bytes, ext: AuthExtension | None) -> bool:
        """True when `ext` (decoded from `raw`) carries our SPI and a correct authenticator."""
        return ext is not None and ext.spi == self.spi and verify_auth(raw, ext, self.key)
