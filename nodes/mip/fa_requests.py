"""The foreign agent's relay of registration requests (RFC 5944 3.7.2). Sans-I/O, part of
nodes/mip/fa.py.

A request from a visitor is checked (RFC 5944 3.7.2.1; RFC 3024 3.3 for reverse tunnelling and its
TTL check, 4.2.1 for the rate of its code-76 denials) and either denied by the agent itself
(3.7.2.3) or kept pending and relayed to its home agent (3.7.2.2): unchanged through its MN-HA
extension, what follows processed and removed, then RFC 3519 3.1's UDP Tunnel Request extension when
the agent is behind a NAT, and FA-HA authentication where it applies (3.5.4).
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import SendUdp
from nodes.mip.common import Counters, parse_registration, requested_encapsulation
from nodes.mip.fa_replies import covered, covered_count, deny, fa_ha_applies
from nodes.mip.fa_visitors import VisitorList
from nodes.wire.mip import (
    ENCAP_IPIP, EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REQUEST, MIP_PORT,
    RegistrationRequest, ReplyCode, RequestFlags, UdpTunnelRequest, encode_extension, find_extension,
)


def check_request(config, visitors: VisitorList, req: RegistrationRequest, raw: bytes, ttl) -> tuple:
    """(denial code, reason) or (None, None). RFC 5944 3.7.2.1, RFC 3024 3.3."""
    mn_fa = config.mn_associations.get(req.home_address)
    mn_fa_exts = [e for e in req.extensions if e.type == EXT_MN_FA_AUTH]
    checks = (
        (find_extension(req.extensions, EXT_MN_HA_AUTH) is None,
         ReplyCode.FA_POORLY_FORMED_REQUEST, "missing-mn-ha-auth"),
        # exactly one MN-FA when we share an association with the node (3.7.2.1)
        (mn_fa is not None and len(mn_fa_exts) > 1, ReplyCode.FA_MN_AUTH_FAILED, "more-than-one-mn-fa-auth"),
        (mn_fa is not None and not mn_fa.verifies(raw, find_extension(req.extensions, EXT_MN_FA_AUTH)),
         ReplyCode.FA_MN_AUTH_FAILED, "bad-mn-fa-auth"),
        (req.home_agent.is_unspecified or req.home_agent.is_multicast,
         ReplyCode.FA_INVALID_HA_ADDRESS, "bad-home-agent-address"),
        # 3.7.2: never forward a request to ourselves; we are no home agent, so 194
        (config.own(req.home_agent), ReplyCode.FA_INVALID_HA_ADDRESS, "home-agent-is-this-foreign-agent"),
        (config.busy, ReplyCode.FA_INSUFFICIENT_RESOURCES, "busy"),
        (req.lifetime > config.max_lifetime, ReplyCode.FA_LIFETIME_TOO_LONG, "lifetime-too-long"),
        (requested_encapsulation(req.flags) not in config.encapsulations,
         ReplyCode.FA_ENCAPSULATION_UNAVAILABLE, f"{requested_encapsulation(req.flags) or 'both-m-and-g'}-unavailable"),
        (req.has(RequestFlags.T) and not config.reverse_tunnelling,
         ReplyCode.FA_REVERSE_TUNNEL_UNAVAILABLE, "reverse-tunnelling-off"),
        (config.reverse_tunnel_required and not req.has(RequestFlags.T),
         ReplyCode.FA_REVERSE_TUNNEL_MANDATORY, "t-bit-missing"),
        (req.has(RequestFlags.T) and ttl is not None and ttl != 255,
         ReplyCode.FA_MN_TOO_DISTANT, "ttl-not-255"),
        (req.lifetime and not req.has(RequestFlags.D) and req.care_of_address not in config.care_of_addresses,
         ReplyCode.FA_INVALID_CARE_OF_ADDRESS, "care-of-address-not-ours"),
        (visitors.full(), ReplyCode.FA_INSUFFICIENT_RESOURCES, "too-many-pending"),
    )
    return next(((code, reason) for failed, code, reason in checks if failed), (None, None))


def relayed(config, req: RegistrationRequest, raw: bytes) -> bytes:
    """The request as sent to the HA (RFC 5944 3.7.2.2): unchanged through its MN-HA extension,
    the extensions after it processed and removed (MN-FA, RFC 3024 Encapsulating Delivery Style,
    unknown ones); then RFC 3519 ext 144 when we are behind a NAT, and FA-HA authentication when
    we share an association with the HA and it applies (3.5.4: not to deregistrations, not for a
    care-of address we do not advertise)."""
    data = covered(raw, req, 24)
    within = req.extensions[:covered_count(req.extensions)]
    if config.behind_nat and find_extension(within, EXT_UDP_TUNNEL_REQUEST) is None:
        data += encode_extension(UdpTunnelRequest(encapsulation=ENCAP_IPIP))
    sa = config.ha_associations.get(req.home_agent)
    if sa is not None and fa_ha_applies(req, config.care_of_addresses):
        return sa.sign(data, EXT_FA_HA_AUTH)
    return data


def relay_source(config, req: RegistrationRequest) -> IPv4Address:
    """The source of the relayed request: its care-of address when that is one of ours, else the
    agent's address on the visitor link."""
    coa = req.care_of_address
    return coa if coa in config.care_of_addresses else config.address


class RequestRelay:
    """Requests from visitors: checked, denied or relayed and kept pending in `visitors`. Its one
    state of its own: when the last code-76 denial went out (RFC 3024 4.2.1: at most one per
    `too_distant_interval`)."""

    def __init__(self, config, counters: Counters, visitors: VisitorList):
        self.config, self.counters, self.visitors = config, counters, visitors
        self._last_too_distant: float | None = None

    def on_request(self, raw: bytes, src, sport, now, lladdr, ttl) -> list:
        cfg, counters = self.config, self.counters
        counters["requests"] += 1
        req, malformed = parse_registration(RegistrationRequest, raw)
        if malformed:
            fixed, error = malformed
            counters.drop(f"decode:{error.reason}")
            if fixed is None:
                return []
            return deny(cfg, counters, fixed, src, sport, lladdr, ReplyCode.FA_POORLY_FORMED_REQUEST, error.reason)
        code, reason = check_request(cfg, self.visitors, req, raw, ttl)
        if code == ReplyCode.FA_MN_TOO_DISTANT and not self._may_send_too_distant(now):
            counters["denied:76-not-sent"] += 1
            counters.drop("ttl-not-255-rate-limited")
            return []
        if code is not None:
            # 69 carries the longest lifetime we accept; every other denial the requested one (3.7.2.3)
            lifetime = cfg.max_lifetime if code == ReplyCode.FA_LIFETIME_TOO_LONG else req.lifetime
            return deny(cfg, counters, req, src, sport, lladdr, code, reason, lifetime)
        self.visitors.hold(req, src, sport, lladdr, now)
        counters["relayed-requests"] += 1
        return [SendUdp(req.home_agent, MIP_PORT, relayed(cfg, req, raw), src=relay_source(cfg, req))]

    def _may_send_too_distant(self, now: float) -> bool:
        """RFC 3024 4.2.1: at most one code-76 reply a second (the request is refused all the same)."""
        last = self._last_too_distant
        if last is not None and 0 <= now - last < self.config.too_distant_interval:
            return False
        self._last_too_distant = now
        return True
