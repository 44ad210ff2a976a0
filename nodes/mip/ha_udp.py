"""The home agent's RFC 3519 UDP tunnelling: whether a registration gets a UDP tunnel (a NAT
between the care-of address and the request's source, or forced), and the tunnel data it receives.
Sans-I/O, part of nodes/mip/ha.py.

RFC 3519 4.6, the 'R' flag (a registration relayed by a foreign agent behind a NAT): the binding's
UDP tunnel has no destination port until the mobile node's first keepalive (an ICMP echo request
from its home address to the HA, tunnelled in UDP) arrives from the registration's source address;
its outer source address and port then become the tunnel's destination. Nothing is tunnelled before.
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import AddTunnel, DeliverIp, Log
from nodes.mip.common import Counters, addr
from nodes.mip.ha_registration import Binding, Denied
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP, IPv4
from nodes.wire.mip import (
    ENCAP_GRE, ENCAP_IPIP, ENCAP_MINIMAL, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REQUEST, RegistrationRequest, ReplyCode,
    RequestFlags, TunnelData, UdpTunnelReply,
)

UDP_TUNNEL_DECLINED = 64  # RFC 3519 3.2.1: "tunnelling declined, reason unspecified"
ENCAP_NUMBERS = {"ipip": ENCAP_IPIP, "minimal": ENCAP_MINIMAL, "gre": ENCAP_GRE}  # RFC 3519 3.1.4
ICMP_ECHO_REQUEST = 8


def tunnel_choice(config, counters: Counters, req: RegistrationRequest, src: IPv4Address, sport: int,
                  encapsulation: str):
    """(kind, remote, remote port, reply extensions) of the binding's tunnel: the requested
    `encapsulation`, unless RFC 3519 UDP tunnelling is asked for and a NAT is detected (the
    request's source differs from the care-of address) or it is forced: then UDP carrying IP-in-IP,
    the one inner encapsulation offered there. With R (via a foreign agent behind a NAT, 4.6) the
    destination port is not the request's: None, until the first keepalive."""
    udp_req = udp_tunnel_request(counters, req)
    nat = src != req.care_of_address
    if udp_req is None:
        if nat:
            counters["nat-without-udp-request"] += 1
        return encapsulation, req.care_of_address, None, []
    if not (nat or udp_req.force or udp_req.via_fa):
        # RFC 3519 4.6: no NAT seen and F clear: a declining UDP Tunnel Reply; the tunnel is the
        # one the M and G bits ask for
        counters["udp-declined-no-nat"] += 1
        return encapsulation, req.care_of_address, None, [UdpTunnelReply(UDP_TUNNEL_DECLINED, False, 0)]
    inner = udp_req.encapsulation or ENCAP_NUMBERS[encapsulation]  # 0: as M and G ask (3.1.4)
    if inner != ENCAP_IPIP:
        # RFC 3519 4.1: tunnelling indicated, the requested encapsulation unavailable: 142
        raise Denied(ReplyCode.HA_UDP_ENCAPSULATION_UNAVAILABLE, f"udp-encapsulation-{inner}-unavailable")
    if not config.udp_tunnelling:
        raise Denied(ReplyCode.HA_UDP_ENCAPSULATION_UNAVAILABLE, "udp-tunnelling-off")
    counters["nat-detected" if nat else "udp-forced"] += 1
    reply_ext = UdpTunnelReply(0, udp_req.force, config.udp_keepalive)
    if udp_req.via_fa:
        # RFC 3519 4.6: the request's source port may be the foreign agent's NAT mapping, not
        # the node's: the HA waits for the first keepalive (from this source address)
        counters["udp-r-flag"] += 1
        return "udp", src, None, [reply_ext]
    return "udp", src, sport, [reply_ext]


def udp_tunnel_request(counters: Counters, req: RegistrationRequest):
    """The request's UDP Tunnel Request, or None. One with a non-zero Reserved 3 is handled as
    not understood and silently skipped (RFC 3519 3.1, 3.1.3 MUST; 4.6.1 suggests 134 instead,
    but a refusal would defeat what 3.1.3 gives Reserved 3 for: a later version's extension
    that an older home agent skips while the registration goes on). RFC 3519 4.6.1's other
    errors get 134 (SHOULD): placed by the node (before the MN-HA authentication) with D clear,
    or by a foreign agent (after it) with D set (3.1.5: a node asking for UDP tunnelling
    decapsulates itself)."""
    placed_by_node = True
    for ext in req.extensions:
        if ext.type == EXT_MN_HA_AUTH:
            placed_by_node = False
        if ext.type != EXT_UDP_TUNNEL_REQUEST:
            continue
        if not ext.understood:
            counters["udp-tunnel-request-skipped"] += 1
            continue
        if placed_by_node != req.has(RequestFlags.D):
            raise Denied(ReplyCode.HA_POORLY_FORMED_REQUEST,
                         "udp-tunnel-request-without-d" if placed_by_node else "fa-udp-tunnel-request-with-d")
        return ext
    return None


def on_udp_tunnel(config, counters: Counters, bindings: dict, payload: bytes, src, sport: int) -> list:
    """RFC 3519 tunnel data from a node behind a NAT (also its keepalives): the actions."""
    src = addr(src)
    try:
        data = TunnelData.decode(payload)
        packet = data.payload
        inner = IPv4.decode(packet)
    except DecodeError as e:
        counters.drop(f"tunnel:{e.reason}")
        return []
    if data.next_header != ENCAP_IPIP:
        # RFC 3519 3.3: the Next Header must match the binding's tunnelling mode (every UDP
        # binding here carries IP-in-IP); a discrepancy: dropped
        counters.drop("tunnel:next-header-mismatch")
        return []
    binding = bindings.get(inner.src)
    if binding is None:
        counters.drop("reverse-src-not-bound")
        return []
    if binding.kind == "udp" and binding.awaiting_keepalive:
        return _first_keepalive(config, counters, binding, inner, packet, src, sport)
    if binding.kind != "udp" or (binding.remote, binding.remote_port) != (src, sport):
        counters.drop("reverse-outer-mismatch")
        return []
    counters["reverse-tunnelled"] += 1
    return [DeliverIp(packet)]


def _first_keepalive(config, counters: Counters, binding: Binding, inner: IPv4, packet: bytes, src: IPv4Address,
                     sport: int) -> list:
    """RFC 3519 4.6, R set: the first keepalive sets the tunnel's destination. Its outer source
    address (not its port) must be the registration request's; its inner packet an ICMP echo
    request from the home address (the binding's, by lookup) to the HA. Anything else from the
    node before it is discarded (no port to check it against)."""
    if src != binding.remote:
        counters.drop("keepalive-outer-address-mismatch")
        return []
    if inner.dst != config.address or inner.proto != PROTO_ICMP or inner.payload[:1] != bytes([ICMP_ECHO_REQUEST]):
        counters.drop("udp-awaiting-first-keepalive")
        return []
    binding.remote_port, binding.awaiting_keepalive = sport, False
    counters["udp-keepalive-destination"] += 1
    # the echo request goes to the stack, whose echo reply comes back through the tunnel (3.1)
    return [AddTunnel(binding.home_address, config.address, src, "udp", sport, config.udp_keepalive),
            Log("udp-tunnel-destination", {"home": str(binding.home_address), "remote": str(src), "port": sport}),
            DeliverIp(packet)]
