"""ICMP errors about the requests the foreign agent relayed (RFC 5944 3.7.2.3, codes 80-88).
Sans-I/O, part of nodes/mip/fa.py.

An ICMP error naming a relayed request (home address and identification in its quote) answers the
pending visitor at once with 80, 81, 82 or 88 instead of the 78 of its timeout; a quote too short
to name one stands for every request pending at that home agent. Errors that say nothing about the
home agent's reachability (a path MTU report, anything but Destination Unreachable and Time
Exceeded in transit) are ignored.
"""
from __future__ import annotations

from nodes.mip.actions import Log
from nodes.mip.common import Counters, addr
from nodes.mip.fa_replies import deny_pending
from nodes.mip.fa_visitors import VisitorList, pending_key
from nodes.wire.errors import DecodeError
from nodes.wire.mip import MIP_PORT, TYPE_REQUEST, RegistrationRequest, ReplyCode

ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED = 3, 11
ICMP_FRAGMENTATION_NEEDED = 4  # a path MTU report, not unreachability: the kernel handles it

# destination unreachable codes (RFC 792, 1122, 1812) -> the FA's denial (RFC 5944 codes 80-88):
# the network kinds (0 net, 6 net unknown, 11 net for TOS) give 80, the host kinds (1, 7, 12) 81,
# port unreachable 82; every other unreachable code (protocol, source route failed, isolated,
# administratively prohibited, precedence...) 88 "other ICMP error received"
_UNREACHABLE_CODES = {0: ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 6: ReplyCode.FA_HOME_NETWORK_UNREACHABLE,
                      11: ReplyCode.FA_HOME_NETWORK_UNREACHABLE, 1: ReplyCode.FA_HA_HOST_UNREACHABLE,
                      7: ReplyCode.FA_HA_HOST_UNREACHABLE, 12: ReplyCode.FA_HA_HOST_UNREACHABLE,
                      3: ReplyCode.FA_HA_PORT_UNREACHABLE}


def relay_error_code(icmp_type: int, icmp_code: int) -> int | None:
    """The registration denial code for an ICMP error about a relayed request, or None when the
    message says nothing about the home agent's reachability (it is then ignored)."""
    if icmp_type == ICMP_DEST_UNREACHABLE:
        if icmp_code == ICMP_FRAGMENTATION_NEEDED:
            return None
        return int(_UNREACHABLE_CODES.get(icmp_code, ReplyCode.FA_HA_UNREACHABLE))
    if icmp_type == ICMP_TIME_EXCEEDED and icmp_code == 0:  # TTL ran out in transit: a routing loop
        return int(ReplyCode.FA_HA_UNREACHABLE)
    return None


def _matching(visitors: VisitorList, ha_address, quoted: bytes) -> list | str:
    """The keys of the pending requests the quote names, or the reason it names none."""
    if len(quoted) >= 24:
        try:
            fixed = RegistrationRequest.decode_fixed(quoted)
        except DecodeError:  # e.g. about a reply we sent to a visitor: not a relayed request
            return "relay-error-not-a-request"
        key = pending_key(fixed.home_address, fixed.identification)
        pending = visitors.pending.get(key)
        return [key] if pending is not None and pending.request.home_agent == ha_address \
            and pending.request.identification == fixed.identification else []
    if quoted[:1] not in (b"", bytes([TYPE_REQUEST])):
        return "relay-error-not-a-request"
    return [k for k, p in visitors.pending.items() if p.request.home_agent == ha_address]


def on_relay_error(config, counters: Counters, visitors: VisitorList, ha_address, ha_port: int, icmp_type: int,
                   icmp_code: int, now: float, quoted: bytes, reporter) -> list:
    """An ICMP error about a datagram we sent to `ha_address`:`ha_port` (the destination of the
    quoted packet) with the quoted UDP payload as far as the error carried it: the requests it
    names denied at once."""
    ha_address = addr(ha_address)
    counters["relay-errors"] += 1
    code = relay_error_code(icmp_type, icmp_code)
    if code is None:
        counters.drop(f"relay-error-icmp-{icmp_type}-{icmp_code}")
        return []
    if ha_port != MIP_PORT:
        counters.drop("relay-error-not-port-434")
        return []
    matches = _matching(visitors, ha_address, quoted)
    if isinstance(matches, str) or not matches:
        counters.drop(matches or "relay-error-unmatched")
        return []
    actions: list = []
    for key in matches:
        pending = visitors.take(key)
        req = pending.request
        counters[f"relay-errors:{code}"] += 1
        actions += deny_pending(config, counters, pending, code, f"icmp-{icmp_type}-{icmp_code}")
        actions.append(Log("relay-error", {"home": str(req.home_address), "home_agent": str(ha_address),
                                           "icmp_type": icmp_type, "icmp_code": icmp_code, "code": code,
                                           "reporter": str(reporter) if reporter is not None else None,
                                           "after": round(now - pending.sent_at, 6), "at": now}))
    return actions
