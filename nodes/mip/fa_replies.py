"""What the foreign agent sends a mobile node: the home agent's reply relayed (RFC 5944 3.7.3) and
the agent's own denials (3.7.2.3). Sans-I/O, part of nodes/mip/fa.py.

A reply is matched to its pending request on home address and identification; a malformed one gets
the node a 71 (poorly formed reply), one whose FA-HA authentication fails a 67 (3.7.3.1; demanded
only where FA-HA applies, 3.5.4). The relayed reply is the received one through its MN-HA extension,
what that does not cover removed (3.7.3.2), an MN-FA authentication appended when the agent shares
an association with the node (3.5.3). The same cut applies to the requests the agent relays
(3.7.2.2), so it lives here too.
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import Log, SendUdp
from nodes.mip.common import Counters, parse_registration
from nodes.mip.fa_visitors import Pending, VisitorList
from nodes.wire.mip import (
    EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH, RegistrationReply, RegistrationRequest, ReplyCode, cut_after,
)


def covered_count(extensions) -> int:
    """How many of a message's extensions its (last) MN-HA extension covers, itself included; 0
    without one."""
    return max((i + 1 for i, e in enumerate(extensions) if e.type == EXT_MN_HA_AUTH), default=0)


def covered(raw: bytes, message, fixed_size: int) -> bytes:
    """`raw` through its (last) MN-HA extension, the authorization-enabling one: what a foreign agent
    relays unchanged. The extensions after it are processed and removed (RFC 5944 3.7.2.2 and
    3.7.3.2: MN-FA, Encapsulating Delivery Style, an FA-HA, anything the MN-HA does not cover);
    without MN-HA nothing is covered but the fixed part."""
    count = covered_count(message.extensions)
    return cut_after(raw, message.extensions[count - 1]) if count else raw[:fixed_size]


def fa_ha_applies(req: RegistrationRequest, care_of_addresses) -> bool:
    """Whether FA-HA authentication goes on this relayed request (and is demanded of its reply):
    not for a deregistration (lifetime 0, or care-of address = home address), nor when the care-of
    address is not one this agent advertises (RFC 5944 3.5.4)."""
    return bool(req.lifetime) and req.care_of_address != req.home_address and req.care_of_address in care_of_addresses


def to_mobile_node(config, dst, dport, lladdr, data: bytes) -> SendUdp:
    """A datagram to a mobile node on the visitor link, from the agent's address there, to the
    link-layer address its request came from."""
    return SendUdp(dst, dport, data, src=config.address, iface=config.iface, lladdr=lladdr)


def deny(config, counters: Counters, req, src, sport, lladdr, code: int, reason: str,
         lifetime: int | None = None) -> list:
    """A denial from the FA itself, sent straight to the mobile node; its lifetime is the
    request's unless given (RFC 5944 3.7.2.3)."""
    counters[f"denied:{code}"] += 1
    lifetime = req.lifetime if lifetime is None else lifetime
    reply = RegistrationReply(code, lifetime, req.home_address, req.home_agent, req.identification)
    data = reply.encode()
    mn_fa = config.mn_associations.get(req.home_address)
    if mn_fa is not None:
        data = mn_fa.sign(data, EXT_MN_FA_AUTH)
    log = Log("registration", {"home": str(req.home_address), "code": code, "reason": reason})
    return [to_mobile_node(config, src, sport, lladdr, data), log]


def deny_pending(config, counters: Counters, pending: Pending, code: int, reason: str) -> list:
    """A denial of a request the agent relayed (no reply, an ICMP error, a reply it refuses)."""
    return deny(config, counters, pending.request, pending.src, pending.sport, pending.lladdr, code, reason)


def relay_reply(config, counters: Counters, visitors: VisitorList, raw: bytes, src: IPv4Address, now: float) -> list:
    """A registration reply from a home agent (RFC 5944 3.7.3): checked, the visitor list updated,
    relayed to the mobile node that sent the request."""
    reply, malformed = parse_registration(RegistrationReply, raw)
    fixed = reply or (malformed[0] if malformed else None)
    pending = visitors.pending_for(fixed.home_address, fixed.identification) if fixed else None
    if pending is None:
        counters.drop(f"decode:{malformed[1].reason}" if malformed else "unmatched-reply")
        return []
    visitors.forget(fixed.home_address, fixed.identification)
    req = pending.request
    if malformed:
        counters.drop(f"decode:{malformed[1].reason}")
        return deny_pending(config, counters, pending, ReplyCode.FA_POORLY_FORMED_REPLY, malformed[1].reason)
    sa = config.ha_associations.get(src)
    if sa is not None and fa_ha_applies(req, config.care_of_addresses):
        # exactly one FA-HA, and it verifies (3.7.3.1); none is demanded where none may be
        # applied (3.5.4: deregistrations, care-of addresses we do not advertise)
        fa_ha = [e for e in reply.extensions if e.type == EXT_FA_HA_AUTH]
        if len(fa_ha) != 1 or not sa.verifies(raw, fa_ha[0]):
            reason = "more-than-one-fa-ha-auth" if len(fa_ha) > 1 else "bad-fa-ha-auth"
            return deny_pending(config, counters, pending, ReplyCode.FA_HA_AUTH_FAILED, reason)
    actions = visitors.admit(req, reply, pending, now)
    # unchanged through MN-HA, what it does not cover removed (3.7.3.2), MN-FA appended when we
    # share an association with the node
    data = covered(raw, reply, 20)
    mn_fa = config.mn_associations.get(req.home_address)
    if mn_fa is not None:
        data = mn_fa.sign(data, EXT_MN_FA_AUTH)
    counters[f"relayed-replies:{reply.code}"] += 1
    actions.append(to_mobile_node(config, pending.src, pending.sport, pending.lladdr, data))
    actions.append(Log("registration", {"home": str(req.home_address), "coa": str(req.care_of_address),
                                        "code": reply.code, "lifetime": reply.lifetime,
                                        "rtt": round(now - pending.sent_at, 6), "at": now}))
    return actions
