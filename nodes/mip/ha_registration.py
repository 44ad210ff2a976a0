"""The home agent's registration checks that need no binding table, its replies, and the binding a
registration makes (RFC 5944 3.8). Sans-I/O, part of nodes/mip/ha.py.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import IPv4Address

from nodes.mip.actions import SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.wire.mip import (
    EXT_FA_HA_AUTH, EXT_MN_HA_AUTH, MIN_SPI, RegistrationReply, RegistrationRequest, ReplyCode,
    TrustedNetworksConfigured, ntp_to_unix,
)


@dataclass
class Binding:
    home_address: IPv4Address
    care_of_address: IPv4Address
    lifetime: int
    expires: float
    identification: int
    kind: str  # the forward tunnel: "ipip", "minimal", "gre" or "udp" (RFC 3519, IP-in-IP inside)
    remote: IPv4Address  # tunnel endpoint: the care-of address or the NAT's observed address
    remote_port: int | None
    reverse: bool
    registered_at: float
    # RFC 3519 4.6: R set in the UDP Tunnel Request: the tunnel's destination is the outer source
    # address and port of the node's first keepalive; until it comes, remote_port is None
    awaiting_keepalive: bool = False

    def to_json(self) -> dict:
        """Addresses as strings; an infinite lifetime's expiry as None (strict JSON has no inf)."""
        return {k: (str(v) if isinstance(v, IPv4Address) else None if v == float("inf") else v)
                for k, v in asdict(self).items()}


class Denied(Exception):
    """The request is denied: a reply with `code`."""

    def __init__(self, code: int, reason: str):
        self.code, self.reason = code, reason


class Discarded(Exception):
    """The request is dropped without a reply (RFC 5944 3.8.2.1 a and d)."""

    def __init__(self, reason: str):
        self.reason = reason


def is_deregistration(req: RegistrationRequest) -> bool:
    """RFC 5944 3.5.4: a request is a deregistration unless it asks for a nonzero lifetime for a
    care-of address other than the home address."""
    return req.lifetime == 0 or req.care_of_address == req.home_address


def authenticate(req: RegistrationRequest, raw: bytes, node, fa_sa: SecurityAssociation | None) -> None:
    """RFC 5944 3.8.2.1 a, c and d. No security association with the node, or no
    authorization-enabling extension: discarded silently (a); an FA-HA from an FA we share no
    SA with: discarded (d); a bad MN-HA: 131; with an FA we share an SA with, a registration
    (not a deregistration, 3.5.4) needs exactly one valid FA-HA, else 132 (c)."""
    if node is None:
        raise Discarded("unknown-home-address")
    mn_ha = [e for e in req.extensions if e.type == EXT_MN_HA_AUTH]
    if not mn_ha:
        raise Discarded("missing-mn-ha-auth")
    fa_ha = [e for e in req.extensions if e.type == EXT_FA_HA_AUTH]
    if fa_ha and fa_sa is None:
        raise Discarded("fa-ha-without-sa")
    if len(mn_ha) > 1:  # RFC 5944 3.8.2.1: exactly one authorization-enabling extension
        raise Denied(ReplyCode.HA_MN_AUTH_FAILED, "two-mn-ha-auth")
    if mn_ha[0].spi < MIN_SPI:
        raise Denied(ReplyCode.HA_MN_AUTH_FAILED, "reserved-spi")
    if not node.sa.verifies(raw, mn_ha[0]):
        raise Denied(ReplyCode.HA_MN_AUTH_FAILED, "bad-mn-ha-auth")
    if fa_sa is None or is_deregistration(req):  # 3.5.4: FA-HA is not applied to deregistrations
        return
    if not fa_ha:
        raise Denied(ReplyCode.HA_FA_AUTH_FAILED, "missing-fa-ha-auth")
    if len(fa_ha) > 1:
        raise Denied(ReplyCode.HA_FA_AUTH_FAILED, "two-fa-ha-auth")
    if not fa_sa.verifies(raw, fa_ha[0]):
        raise Denied(ReplyCode.HA_FA_AUTH_FAILED, "bad-fa-ha-auth")


def check_identification(req: RegistrationRequest, last: int, tolerance: float, now: float) -> None:
    """Timestamp replay protection: within `tolerance` seconds of our clock and above the last
    accepted identification (`last`, -1 when there is none)."""
    if abs(ntp_to_unix(req.identification) - now) > tolerance:
        raise Denied(ReplyCode.HA_IDENTIFICATION_MISMATCH, "timestamp-out-of-tolerance")
    if req.identification <= last:
        raise Denied(ReplyCode.HA_IDENTIFICATION_MISMATCH, "identification-not-increasing")


def trust_exts(trusted: bool) -> list:
    return [TrustedNetworksConfigured()] if trusted else []


def reply(ha_address: IPv4Address, req, node, code: int, lifetime: int, ident: int, exts: list, dst, dport,
          fa_sa: SecurityAssociation | None = None) -> SendUdp:
    """The reply, MN-HA signed; to an FA we share an SA with, an FA-HA after it, last (RFC 5944
    3.8.1, 3.8.3.3 c and e), except in answer to a deregistration (3.5.4: MUST NOT)."""
    data = RegistrationReply(code, lifetime, req.home_address, ha_address, ident, exts).encode()
    if node is not None:
        data = node.sa.sign(data)
    if fa_sa is not None and not is_deregistration(req):
        data = fa_sa.sign(data, EXT_FA_HA_AUTH)
    return SendUdp(dst, dport, data, src=ha_address)
