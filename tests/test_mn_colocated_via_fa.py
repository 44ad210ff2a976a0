"""A co-located care-of address registered through a foreign agent that advertises R (RFC 5944 2.1.1,
2.4.1, 3.1, 3.6.1.1; RFC 3519 3.1.2, 4.4, 4.11), in the Mobile Node core (nodes/mip/mn.py) in memory:
the request goes to the agent (TTL 255) with the co-located address as care-of address and IP
source, D set; a UDP Tunnel Request with R only when the agent advertises U; a keepalive as soon as
the registration with R is accepted; without R, or once the agent is gone, directly to the HA."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Interface as I, IPv4Network

from nodes.core import Addr, seeded_random
from nodes.mip.actions import AddTunnel, ConfigureLink, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.mip.movement import CoLocatedNetwork
from nodes.wire.ipv4 import IPv4
from nodes.wire.mip import (
    EXT_UDP_TUNNEL_REQUEST, AgentAdvertisement, AgentFlags, RegistrationReply, RegistrationRequest, RequestFlags,
    TunnelData, UdpTunnelReply, find_extension,
)
from fakelink import feed

HOME, HA, HOME_ROUTER = A("10.1.1.100"), A("10.1.1.2"), A("10.1.1.1")
FA, COA = A("192.0.2.1"), A("192.0.2.100")
FN1 = CoLocatedNetwork(I("192.0.2.100/25"), FA)
SA = SecurityAssociation(1000, b"0123456789abcdef")
T0 = 1_700_000_000.0


def node(**kw) -> MobileNode:
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA, iface="r-eth0", home_router=HOME_ROUTER,
                           networks={"fn1": FN1}, reverse_tunnel=True, **{"colocated_through_agent": True, **kw})
    return MobileNode(cfg, random=seeded_random(7))


def on_fn1(mn) -> list:
    """Link up on fn1, the router's ARP answer names it: co-located there, a request to the HA."""
    feed(mn, "link_up", now=T0)
    return feed(mn, "receive_arp", FA, COA, now=T0 + 0.01)


def advert(flags: str, lifetime: int = 9, reg_lifetime: int = 300) -> bytes:
    bits = 0
    for letter in flags:
        bits |= AgentFlags[letter]
    return AgentAdvertisement(0, reg_lifetime, bits, [FA], lifetime=lifetime, routers=[(FA, 0)],
                              prefix_lengths=[25]).encode()


def hear(mn, flags: str, now: float, **kw) -> list:
    return feed(mn, "receive_icmp", advert(flags, **kw), Addr(str(FA), 0, "224.0.0.1", 0, lladdr="02:00:00:00:00:01"),
                now=now)


def sends(actions) -> list:
    return [a for a in actions if isinstance(a, SendUdp)]


def accept(mn, now: float, extensions=()) -> list:
    a = mn.attempt
    reply = RegistrationReply(0, 300, HOME, HA, a.identification, list(extensions))
    return feed(mn, "receive_datagram", SA.sign(reply.encode()), Addr(str(a.dst), 434, str(COA), 434), now=now)


def test_without_r_the_colocated_node_registers_directly_with_its_home_agent():
    (direct,) = sends(on_fn1(node()))
    assert (direct.dst, direct.src) == (HA, COA)
    mn = node()
    on_fn1(mn)
    assert all(s.dst == HA and s.ttl == 64 for s in sends(hear(mn, "F", T0 + 0.1))), \
        "an agent without R: requests, if any, directly to the home agent"


def test_with_r_the_colocated_address_is_registered_through_the_agent():
    mn = node()
    on_fn1(mn)
    out = hear(mn, "RF", T0 + 0.1)
    (send,) = sends(out)
    req = RegistrationRequest.decode(send.payload)
    assert (send.dst, send.src, send.ttl, send.iface) == (FA, COA, 255, "r-eth0")
    assert (req.care_of_address, req.home_agent, req.home_address) == (COA, HA, HOME)
    assert req.flags & RequestFlags.D and req.flags & RequestFlags.T
    assert req.lifetime == 300, "no longer than the agent advertises (RFC 5944 3.6.1.2)"
    assert find_extension(req.extensions, EXT_UDP_TUNNEL_REQUEST) is None, "no U: no UDP Tunnel Request"
    assert not [a for a in out if isinstance(a, ConfigureLink)], "the link stays configured co-located"
    accept(mn, T0 + 0.2)
    s = mn.status()
    assert (s.mode, s.care_of_address, s.state) == ("colocated", str(COA), "registered")


def test_with_r_and_u_the_udp_tunnel_request_has_r_and_a_keepalive_follows_acceptance():
    mn = node()
    on_fn1(mn)
    (send,) = sends(hear(mn, "RFU", T0 + 0.1))
    ext = find_extension(RegistrationRequest.decode(send.payload).extensions, EXT_UDP_TUNNEL_REQUEST)
    assert ext is not None and ext.via_fa and not ext.force
    out = accept(mn, T0 + 0.2, [UdpTunnelReply(0, False, 110)])
    (tunnel,) = [a for a in out if isinstance(a, AddTunnel)]
    assert (tunnel.kind, tunnel.local, tunnel.remote, tunnel.keepalive) == ("udp", COA, HA, 110)
    (keepalive,) = sends(out)
    assert (keepalive.dst, keepalive.dport, keepalive.src, keepalive.sport) == (HA, 434, COA, 434)
    inner = IPv4.decode(TunnelData.decode(keepalive.payload).payload)
    assert (inner.src, inner.dst, inner.proto, inner.payload[0]) == (HOME, HA, 1, 8), "an ICMP echo to the HA"


def test_a_declined_udp_tunnel_gets_no_keepalive():
    mn = node()
    on_fn1(mn)
    hear(mn, "RFU", T0 + 0.1)
    out = accept(mn, T0 + 0.2, [UdpTunnelReply(64, False, 0)])
    assert sends(out) == [] and [a.kind for a in out if isinstance(a, AddTunnel)] == ["ipip"]


def test_a_direct_colocated_registration_with_udp_sends_no_keepalive_at_once():
    mn = node()
    on_fn1(mn)
    out = accept(mn, T0 + 0.2, [UdpTunnelReply(0, False, 110)])
    assert sends(out) == [], "the runtime's keepalive timer is enough without R"


def test_udp_tunnel_never_leaves_the_extension_out_through_the_agent_too():
    mn = node(udp_tunnel="never")
    on_fn1(mn)
    (send,) = sends(hear(mn, "RFU", T0 + 0.1))
    assert find_extension(RegistrationRequest.decode(send.payload).extensions, EXT_UDP_TUNNEL_REQUEST) is None


def test_without_the_option_the_agents_care_of_address_is_registered():
    mn = node(colocated_through_agent=False)
    on_fn1(mn)
    (send,) = sends(hear(mn, "RFU", T0 + 0.1))
    req = RegistrationRequest.decode(send.payload)
    assert (send.dst, req.care_of_address, mn.attempt.mode) == (FA, FA, "fa")
    assert find_extension(req.extensions, EXT_UDP_TUNNEL_REQUEST) is None


def test_once_the_agent_falls_silent_the_renewal_goes_directly_to_the_home_agent():
    mn = node()
    on_fn1(mn)
    hear(mn, "RF", T0 + 0.1, lifetime=3)
    accept(mn, T0 + 0.2)
    feed(mn, "handle_timer", now=T0 + 3.5)  # the agent's advertisement lifetime ran out
    renew_at = mn.registration.renew_at
    (renewal,) = sends(feed(mn, "handle_timer", now=renew_at))
    assert (renewal.dst, renewal.src, renewal.ttl) == (HA, COA, 64)


def test_no_udp_tunnel_request_with_a_foreign_agent_care_of_address_even_when_configured_always():
    """RFC 3519 4.4: the extension "SHALL NOT be used by the mobile node when it is registering with a
    foreign agent care-of address", so `udp_tunnel: always` gives it only to co-located registrations."""
    from nodes.mip.mn_messages import Attempt, udp_tunnel_requested
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA, iface="r-eth0", udp_tunnel="always")
    fa = Attempt(mode="fa", lifetime=60, care_of_address=FA, dst=FA, src=HOME)
    colocated = Attempt(mode="colocated", lifetime=60, care_of_address=COA, dst=HA, src=COA)
    assert not udp_tunnel_requested(cfg, fa)
    assert udp_tunnel_requested(cfg, colocated)
