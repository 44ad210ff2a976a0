"""The home agent core against the deviations the conformance parts (cases/conformance/mip/) found:
one test per fix, each naming its part and the RFC sentence. The core is driven in memory
(tests/fakelink.py's `feed`), with requests built and signed here."""
from __future__ import annotations

from ipaddress import IPv4Address as A

from nodes.mip.actions import DeliverIp, SendIp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.wire.ipv4 import ip_in_ip, ipv4_udp
from nodes.wire.mip import (
    EXT_FA_HA_AUTH, EXT_MN_HA_AUTH, EXT_UDP_TUNNEL_REPLY, RegistrationReply, RegistrationRequest, RequestFlags,
    TunnelData, UdpTunnelRequest, encode_extension, find_extension, ntp_now,
)

from fakelink import feed, udp_from

HA_ADDR = A("10.1.1.2")
HOME = A("10.1.1.100")
COA = A("192.0.2.10")
FA = A("192.0.2.1")  # shares an FA-HA security association with the HA
FA2 = A("192.0.2.129")  # shares none
NAT = A("203.0.113.200")
CN = A("10.9.9.9")
SA = SecurityAssociation(1000, b"0123456789abcdef")
FA_SA = SecurityAssociation(2000, b"fa-ha-key-testbe")
NOW = 1_700_000_000.0


def _ha(**kw) -> HomeAgent:
    cfg = dict(home_iface="home0", fa_associations={FA: FA_SA})
    cfg.update(kw)
    return HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], **cfg))


def _request(now: float, coa=COA, lifetime: int = 300, flags: int = int(RequestFlags.D), before=(), after=(),
             home=HOME, sign: bool = True, fa_ha: int = 0, fa_sa: SecurityAssociation = FA_SA) -> bytes:
    """A request: `before` the MN-HA (the mobile node's extensions), `after` it (a relaying FA's),
    then `fa_ha` FA-HA extensions, each over everything before it."""
    data = RegistrationRequest(flags, lifetime, home, HA_ADDR, A(coa), ntp_now(now), list(before)).encode()
    if sign:
        data = SA.sign(data)
    data += b"".join(encode_extension(e) for e in after)
    for _ in range(fa_ha):
        data = fa_sa.sign(data, EXT_FA_HA_AUTH)
    return data


def _send(ha: HomeAgent, data: bytes, src=COA, sport: int = 434, dst=HA_ADDR, now: float = NOW) -> list:
    return feed(ha, "receive_datagram", data, udp_from(src, sport, dst), now=now)


def _replies(actions) -> list[SendUdp]:
    return [a for a in actions if isinstance(a, SendUdp)]


def _code(actions) -> int:
    (reply,) = _replies(actions)
    return RegistrationReply.decode(reply.payload).code


def _bound(ha: HomeAgent, now: float = NOW, coa=COA, src=None, **kw) -> None:
    assert _code(_send(ha, _request(now, coa=coa, **kw), src=src or coa, now=now)) == 0
    assert HOME in ha.bindings


# --- RFC 5944 3.8.2.1 (a): no security association / no authorization-enabling extension ---------

def test_request_without_mn_ha_is_discarded_silently():
    """MIP.HA.AUTH.5: 'If the home agent receives a Registration Request without any
    authorization-enabling extension, the home agent MUST silently discard' it."""
    ha = _ha()
    actions = _send(ha, _request(NOW, sign=False))
    assert _replies(actions) == [] and ha.bindings == {}
    assert ha.counters["drop:missing-mn-ha-auth"] == 1


def test_request_for_a_home_address_without_security_association_is_discarded_silently():
    """MIP.HA.AUTH.6: 'from a mobile node with which it does not have any security association,
    the home agent MUST silently discard the Registration Request'."""
    ha = _ha()
    actions = _send(ha, _request(NOW, home=A("10.1.1.150")))
    assert _replies(actions) == [] and ha.bindings == {}
    assert ha.counters["drop:unknown-home-address"] == 1


# --- RFC 5944 3.8.2.1: requests sent to the subnet-directed broadcast -----------------------------

def test_request_sent_to_the_home_subnet_broadcast_is_denied_136():
    """MIP.HA.HAADDR.4: 'home agents MUST deny Registration Requests that are sent to the
    subnet-directed broadcast address of the home network ... SHOULD return ... 136'; the reply
    carries, and comes from, the HA's unicast address."""
    for kw in ({"prefix_length": 24}, {"home_broadcast": "10.1.1.255"}):
        ha = _ha(**kw)
        actions = _send(ha, _request(NOW), src=HOME, dst="10.1.1.255")
        (reply,) = _replies(actions)
        decoded = RegistrationReply.decode(reply.payload)
        assert (decoded.code, decoded.home_agent, reply.src) == (136, HA_ADDR, HA_ADDR)
        assert ha.bindings == {}
    ha = _ha(prefix_length=24)
    assert _code(_send(ha, _request(NOW), dst="255.255.255.255")) == 136
    assert _code(_send(ha, _request(NOW + 1), dst=HA_ADDR, now=NOW + 1)) == 0  # unicast: accepted


# --- RFC 5944 3.8.2.2: lifetime 0 for another care-of address ---------------------------------------

def test_deregistering_a_care_of_address_never_registered_keeps_the_binding():
    """MIP.HA.DEREG.5: 'If the Lifetime is zero and the Care-of Address does not equal the mobile
    node's home address, the home agent deletes only the entry containing the specified Care-of
    Address ... Any other active entries ... will remain active.'"""
    ha = _ha()
    _bound(ha)
    assert _code(_send(ha, _request(NOW + 1, coa="192.0.2.99", lifetime=0), now=NOW + 1)) == 0
    assert ha.bindings[HOME].care_of_address == COA
    assert _code(_send(ha, _request(NOW + 2, lifetime=0), now=NOW + 2)) == 0  # the bound one: removed
    assert ha.bindings == {}


# --- FA-HA (RFC 5944 3.5.4, 3.8.1, 3.8.2.1 c/d, 3.8.3.3) -------------------------------------------

def test_reply_to_an_fa_with_a_security_association_carries_a_valid_fa_ha_last():
    """MIP.HA.FA.1/2: 'when sending a Registration Reply to a foreign agent, if the home agent
    shares a Mobility Security Association with the foreign agent, the home agent MUST include a
    Foreign-Home Authentication Extension' (3.8.1), after the MN-HA (3.8.3.3 c, e)."""
    ha = _ha()
    actions = _send(ha, _request(NOW, coa=FA, flags=0, fa_ha=1), src=FA)
    (reply,) = _replies(actions)
    decoded = RegistrationReply.decode(reply.payload)
    assert decoded.code == 0 and reply.dst == FA
    types = [e.type for e in decoded.extensions]
    assert types[-1] == EXT_FA_HA_AUTH and types.index(EXT_MN_HA_AUTH) < len(types) - 1
    assert FA_SA.verifies(reply.payload, decoded.extensions[-1])
    assert SA.verifies(reply.payload, find_extension(decoded.extensions, EXT_MN_HA_AUTH))
    # a denial relayed by that FA carries one too (here 132: the request had none)
    denied = _replies(_send(ha, _request(NOW + 1, coa=FA, flags=0), src=FA, now=NOW + 1))[0]
    decoded = RegistrationReply.decode(denied.payload)
    assert decoded.code == 132 and FA_SA.verifies(denied.payload, decoded.extensions[-1])
    # no FA-HA towards an FA without an SA
    plain = _replies(_send(ha, _request(NOW + 2, coa=FA2, flags=0), src=FA2, now=NOW + 2))[0]
    assert find_extension(RegistrationReply.decode(plain.payload).extensions, EXT_FA_HA_AUTH) is None


def test_two_fa_ha_extensions_are_refused_132():
    """MIP.HA.FA.5: 'Exactly one Foreign-Home Authentication Extension MUST be present ... if more
    than one ... is found, ... the home agent MUST reject ... and SHOULD send ... 132' (3.8.2.1 c)."""
    ha = _ha()
    assert _code(_send(ha, _request(NOW, coa=FA, flags=0, fa_ha=2), src=FA)) == 132
    assert ha.bindings == {}


def test_fa_ha_from_an_fa_without_security_association_is_discarded():
    """MIP.HA.FA.6: 'If the home agent and the foreign agent do not share a Mobility Security
    Association, and the Registration contains a Foreign-Home Authentication Extension, the home
    agent MUST discard the Request' (3.8.2.1 d)."""
    ha = _ha()
    stranger = SecurityAssociation(2000, b"\x44" * 16)
    actions = _send(ha, _request(NOW, coa=FA2, flags=0, fa_ha=1, fa_sa=stranger), src=FA2)
    assert _replies(actions) == [] and ha.bindings == {}
    assert ha.counters["drop:fa-ha-without-sa"] == 1


def test_relayed_deregistration_without_fa_ha_is_accepted_and_answered_without_fa_ha():
    """MIP.HA.FA.7/8: 'when the home agent (HA) receives a deregistration request that does not
    contain a Foreign-Home Authentication Extension, it MUST NOT for this reason discard the
    request'; 'The Foreign-Home Authentication extension MUST NOT be applied to deregistration
    messages' (3.5.4)."""
    ha = _ha()
    _bound(ha, coa=FA, flags=0, fa_ha=1)
    actions = _send(ha, _request(NOW + 1, coa=FA, flags=0, lifetime=0), src=FA, now=NOW + 1)
    (reply,) = _replies(actions)
    decoded = RegistrationReply.decode(reply.payload)
    assert decoded.code == 0 and ha.bindings == {}
    assert find_extension(decoded.extensions, EXT_FA_HA_AUTH) is None


# --- RFC 3519 -----------------------------------------------------------------------------------------

def test_udp_tunnel_request_with_reserved_3_set_is_skipped():
    """MIP.HA.NAT.9: Reserved 3 non-zero: the extension 'MUST be handled as not understood and
    silently skipped' (RFC 3519 3.1.3; 4.6.1's SHOULD 134 would refuse the whole registration,
    which 3.1.3's co-existence with later versions rules out): registered, no UDP tunnel."""
    ha = _ha()
    actions = _send(ha, _request(NOW, before=[UdpTunnelRequest(reserved3=1)]), src=NAT, sport=40000)
    (reply,) = _replies(actions)
    decoded = RegistrationReply.decode(reply.payload)
    assert decoded.code == 0 and ha.bindings[HOME].kind != "udp"
    assert find_extension(decoded.extensions, EXT_UDP_TUNNEL_REPLY) is None
    assert ha.counters["udp-tunnel-request-skipped"] == 1


def test_udp_tunnel_request_placed_by_the_mobile_node_without_d_gets_134():
    """MIP.HA.NAT.14: 'UDP Tunnel Request extension sent by the mobile node (placed before the
    MN-HA authentication extension), but 'D' bit in registration request header not set: The home
    agent SHOULD send a Registration Reply with the Code field set to 134' (RFC 3519 4.6.1)."""
    ha = _ha()
    assert _code(_send(ha, _request(NOW, flags=0, before=[UdpTunnelRequest()]), src=NAT, sport=40000)) == 134
    assert ha.bindings == {}
    _bound(ha, now=NOW + 1, src=NAT, before=[UdpTunnelRequest()])  # D set: accepted, in UDP
    assert ha.bindings[HOME].kind == "udp"


def test_udp_tunnel_request_placed_by_a_foreign_agent_with_d_gets_134():
    """'UDP Tunnel Request extension sent by the foreign agent (placed after the MN-HA
    authentication extension), but 'D' bit is set: The home agent SHOULD send a Registration Reply
    with the Code field set to 134' (RFC 3519 4.6.1); with D clear it is the FA's, accepted."""
    ha = _ha()
    request = _request(NOW, coa=FA2, after=[UdpTunnelRequest()])
    assert _code(_send(ha, request, src=NAT, sport=40000)) == 134
    _bound(ha, now=NOW + 1, coa=FA2, src=NAT, flags=0, after=[UdpTunnelRequest()])
    assert ha.bindings[HOME].kind == "udp"


def test_udp_tunnel_request_decodes_reserved_3():
    """The codec keeps Reserved 3 for the receiver (Reserved 1 and 2 stay ignored)."""
    raw = SA.sign(RegistrationRequest(int(RequestFlags.D), 300, HOME, HA_ADDR, COA, 1, []).encode()[:24]
                  + bytes([144, 6, 0, 0xFF, 0x3F, 4, 0x00, 0x01]))
    (ext, _mn_ha) = RegistrationRequest.decode(raw).extensions
    assert ext.reserved3 == 1 and not ext.understood and ext == UdpTunnelRequest()
    assert encode_extension(UdpTunnelRequest(reserved3=1))[-2:] == b"\x00\x01"


def test_udp_tunnel_request_for_gre_behind_a_nat_gets_142():
    """MIP.HA.NAT.10: 'If tunnelling is indicated, the request MUST either be accepted using the
    requested encapsulation, or rejected with the error code ERROR_HA_UDP_ENCAP_UNAVAIL' (142,
    RFC 3519 4.1)."""
    ha = _ha()
    assert _code(_send(ha, _request(NOW, before=[UdpTunnelRequest(encapsulation=47)]), src=NAT, sport=40000)) == 142
    # Encapsulation 0 follows M and G (3.1.4): IP-in-IP here, accepted in UDP
    _bound(ha, now=NOW + 1, src=NAT, before=[UdpTunnelRequest(encapsulation=0)])
    assert ha.bindings[HOME].kind == "udp"


def test_tunnel_data_whose_next_header_does_not_match_the_binding_is_dropped():
    """MIP.HA.NAT.12: 'The receiver of a tunnelled packet MUST check that the Next Header value
    matches the tunnelling mode established for the mobility binding ... If a discrepancy is
    detected, the packet MUST be dropped' (RFC 3519 3.3)."""
    ha = _ha()
    assert _code(_send(ha, _request(NOW, before=[UdpTunnelRequest()]), src=NAT, sport=40000)) == 0
    inner = ipv4_udp(HOME, CN, 6000, 5000, b"up")
    assert _send(ha, TunnelData(55, inner).encode(), src=NAT, sport=40000) == []
    assert ha.counters["drop:tunnel:next-header-mismatch"] == 1
    assert _send(ha, TunnelData(4, inner).encode(), src=NAT, sport=40000) == [DeliverIp(inner)]


def test_no_nat_and_no_force_gets_a_declining_udp_tunnel_reply():
    """MIP.HA.NAT.6: 'with matching source IP address and co-located care-of address which
    contains a MIP UDP Tunnel Request Extension, the home agent SHOULD respond with ... a declining
    UDP Tunnel Reply' (RFC 3519 4.6)."""
    ha = _ha()
    (reply,) = _replies(_send(ha, _request(NOW, before=[UdpTunnelRequest()])))
    decoded = RegistrationReply.decode(reply.payload)
    ext = find_extension(decoded.extensions, EXT_UDP_TUNNEL_REPLY)
    assert decoded.code == 0 and ext is not None and ext.code >= 64
    assert ha.bindings[HOME].kind == "ipip"


# --- forwarding (RFC 2003 3.2, RFC 5944 4.2.3) -------------------------------------------------------

def test_datagram_whose_source_is_the_care_of_address_is_not_tunnelled():
    """MIP.HA.TUN.7: 'If the IP Source Address of the datagram matches the IP address of the tunnel
    destination ..., the router MUST NOT tunnel the datagram' (RFC 2003 3.2)."""
    ha = _ha()
    _bound(ha)
    assert feed(ha, "encapsulate", ipv4_udp(COA, HOME, 1, 2, b"x"), now=NOW) == []
    assert ha.counters["drop:source-is-tunnel-exit"] == 1
    packet = ipv4_udp(CN, HOME, 1, 2, b"x")
    assert feed(ha, "encapsulate", packet, now=NOW) == [SendIp(ip_in_ip(HA_ADDR, COA, packet))]


def test_encapsulated_datagram_from_the_care_of_address_is_discarded():
    """MIP.HA.TUN.10: 'If this outer Source Address is the same as the mobile node's current
    care-of address, the home agent MUST silently discard that datagram' (RFC 5944 4.2.3); from
    elsewhere it is tunnelled on."""
    ha = _ha()
    _bound(ha)
    inner = ipv4_udp(CN, HOME, 1, 2, b"x")
    assert feed(ha, "encapsulate", ip_in_ip(COA, HOME, inner), now=NOW) == []
    assert ha.counters["drop:encapsulated-from-care-of-address"] == 1
    elsewhere = ip_in_ip(CN, HOME, inner)
    assert feed(ha, "encapsulate", elsewhere, now=NOW) == [SendIp(ip_in_ip(HA_ADDR, COA, elsewhere))]
