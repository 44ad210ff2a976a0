"""The foreign agent core against the deviation the coverage parts (cases/conformance/mip_fa/
test_fa_coverage.py) found, one test per fix, naming its part and the RFC sentence. The core is
driven in memory (tests/fakelink.py's `feed`)."""
from __future__ import annotations

from ipaddress import IPv4Address as A

from nodes.mip.actions import AddHostRoute, DeliverIp, SendIp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.wire.ipv4 import IPv4, ip_in_ip, ipv4_udp
from nodes.wire.mip import (
    EXT_FA_HA_AUTH, EncapsulatingDeliveryStyle, RegistrationReply, RegistrationRequest, RequestFlags,
    encode_extension, ntp_now,
)

from fakelink import feed, udp_from

T0 = 1_700_000_000.0
FA = A("192.0.2.1")
HA = A("10.1.1.2")
HOME = A("10.1.1.100")
CN = A("10.1.2.10")
MN_HA = SecurityAssociation(1000, b"0123456789abcdef")
FA_HA = SecurityAssociation(2000, b"fa-ha-shared-key")
MAC = "02:4d:4e:00:00:01"


def _encapsulating_visitor() -> tuple[ForeignAgent, list]:
    """A visitor registered with T and the Encapsulating Delivery Style (extension 130); the
    actions of the accepting reply."""
    fa = ForeignAgent(ForeignAgentConfig(FA, iface="fn1", ha_associations={HA: FA_HA}))
    req = RegistrationRequest(int(RequestFlags.T), 300, HOME, HA, FA, ntp_now(T0), [])
    data = MN_HA.sign(req.encode()) + encode_extension(EncapsulatingDeliveryStyle())
    out = feed(fa, "receive_datagram", data, udp_from(HOME, 434, FA, ttl=255, lladdr=MAC), now=T0)
    (relayed,) = [a for a in out if isinstance(a, SendUdp) and a.dst == HA]
    ident = RegistrationRequest.decode(relayed.payload).identification
    reply = FA_HA.sign(MN_HA.sign(RegistrationReply(0, 300, HOME, HA, ident).encode()), EXT_FA_HA_AUTH)
    actions = feed(fa, "receive_datagram", reply, udp_from(HA, 434, FA), now=T0 + 0.1)
    assert fa.visitors[HOME].reverse and fa.visitors[HOME].encapsulating
    return fa, actions


def test_cov_3_encapsulating_visitor_direct_datagrams_are_not_reverse_tunnelled():
    """MIP.FA.COV.3, RFC 3024 5.2.1: "If a foreign agent receives an un-encapsulated packet from a
    mobile node which had explicitly requested the Encapsulated Delivery Style, then the foreign
    agent MUST NOT reverse tunnel such a packet and rather MUST forward it using standard, IP
    routing mechanisms." (5.4: "they MAY be forwarded but MUST NOT be reverse tunneled")."""
    fa, actions = _encapsulating_visitor()
    # the visitor's own packets are not steered to the core for reverse tunnelling: the kernel routes them
    (route,) = [a for a in actions if isinstance(a, AddHostRoute)]
    assert route.addr == HOME and not route.reverse_tunnel
    direct = ipv4_udp(HOME, CN, 7777, 7777, b"direct delivery")
    out = feed(fa, "receive_from_visitor", direct, now=T0 + 1)
    assert not [a for a in out if isinstance(a, (SendIp, SendUdp))], f"reverse-tunnelled: {out}"
    assert out == [DeliverIp(direct)], "forwarded by standard IP routing (through the stack)"
    # what it encapsulates to us is still reverse-tunnelled (5.2.1, 5.4)
    inner = ipv4_udp(HOME, CN, 7777, 7777, b"encapsulated")
    out = feed(fa, "receive_tunnelled", ip_in_ip(HOME, FA, inner), now=T0 + 1)
    (sent,) = [a for a in out if isinstance(a, SendIp)]
    assert IPv4.decode(sent.packet).dst == HA and IPv4.decode(sent.packet).payload == inner
