"""The home agent core against the deviations the coverage parts (cases/conformance/mip/
test_ha_coverage.py) found: one test per fix, each naming its part and the RFC sentence. The core is
driven in memory (tests/fakelink.py's `feed`), with requests built and signed here."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

import pytest

from nodes.core import Addr
from nodes.mip.actions import AddTunnel, DeliverIp, SendIcmp, SendIp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.wire.ipv4 import ICMP, PROTO_ICMP, IPv4, checksum, ipv4_udp
from nodes.wire.mip import (
    EXT_UDP_TUNNEL_REPLY, RegistrationReply, RegistrationRequest, RequestFlags, TunnelData, UdpTunnelRequest,
    encode_extension, find_extension, ntp_now,
)
from nodes.wire.tunnels import encapsulate

from fakelink import feed, udp_from

HA_ADDR = A("10.1.1.2")
HOME = A("10.1.1.100")
COA = A("192.0.2.100")
NAT_INSIDE = A("10.77.0.10")  # the care-of address behind the NAT
NAT = A("203.0.113.10")  # the NAT's public address
CN = A("10.1.2.10")
ROUTER = A("192.0.2.1")  # inside the tunnel
SA = SecurityAssociation(1000, b"0123456789abcdef")
NOW = 1_700_000_000.0


def _ha() -> HomeAgent:
    return HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0"))


def _register(ha: HomeAgent, coa=COA, src=None, sport: int = 434, flags: int = int(RequestFlags.D), before=(),
              now: float = NOW) -> RegistrationReply:
    req = RegistrationRequest(flags, 300, HOME, HA_ADDR, coa, ntp_now(now), list(before)).encode()
    out = feed(ha, "receive_datagram", SA.sign(req), udp_from(src or coa, sport, HA_ADDR), now=now)
    (reply,) = [a for a in out if isinstance(a, SendUdp) and a.dst == (src or coa)]
    reply = RegistrationReply.decode(reply.payload)
    assert reply.code in (0, 1), reply
    return reply


def _to_home(size: int = 64, df: bool = True) -> bytes:
    return IPv4(CN, HOME, 17, bytes(8) + bytes(size), flags=0x2 if df else 0).encode()


def _keepalive(src=HOME, dst=HA_ADDR) -> bytes:
    echo = ICMP(8, 0, struct.pack("!HH", 0x3519, 1), b"keepalive").encode()
    return TunnelData(4, IPv4(src, dst, PROTO_ICMP, echo).encode()).encode()


def _icmp(icmp_type: int, code: int, quoted: bytes, rest: bytes = bytes(4)) -> bytes:
    body = bytes([icmp_type, code, 0, 0]) + rest + quoted[:548]
    return body[:2] + checksum(body).to_bytes(2, "big") + body[4:]


def _icmps(actions) -> list[tuple[int, int, int, A]]:
    """(type, code, next-hop MTU field, destination) of the ICMP messages sent."""
    return [(a.payload[0], a.payload[1], int.from_bytes(a.payload[6:8], "big"), a.dst)
            for a in actions if isinstance(a, SendIcmp)]


# ---- RFC 3519 4.6: the 'R' flag --------------------------------------------------------------------

def _r_flag_binding() -> HomeAgent:
    ha = _ha()
    reply = _register(ha, coa=NAT_INSIDE, src=NAT, sport=434, before=[UdpTunnelRequest(via_fa=True)])
    ext = find_extension(reply.extensions, EXT_UDP_TUNNEL_REPLY)
    assert ext is not None and ext.code < 64, "an assenting UDP Tunnel Reply (4.6: SHOULD)"
    return ha


def test_cov_1_r_flag_nothing_tunnelled_before_the_first_keepalive():
    """MIP.HA.COV.1, RFC 3519 4.6: "In order to direct tunnelled traffic correctly to the mobile
    node, the home agent MUST wait for the first keepalive packet from the mobile node to arrive,
    before it can send traffic back to the correct NAT port"."""
    ha = _r_flag_binding()
    out = feed(ha, "encapsulate", _to_home(), now=NOW + 1)
    assert not [a for a in out if isinstance(a, (SendUdp, SendIp))], f"tunnelled before any keepalive: {out}"


def test_cov_2_r_flag_first_keepalive_sets_the_tunnel_destination():
    """MIP.HA.COV.2, RFC 3519 4.6: "the home agent MUST check that the outer source address (but not
    the port) of this keepalive packet is identical with the source address of the corresponding
    registration request. [...] If all this holds, the outer source address and port of this
    keepalive packet SHALL be used by the HA as the outer destination address and port of the MIP
    UDP tunnel when forwarding traffic to the mobile node." """
    ha = _r_flag_binding()
    # from another address: ignored (the tunnel still waits)
    assert not [a for a in feed(ha, "receive_datagram", _keepalive(), udp_from(COA, 434, HA_ADDR), now=NOW + 1)
                if isinstance(a, AddTunnel)]
    # inner source not the home address: ignored
    feed(ha, "receive_datagram", _keepalive(src=A("10.1.1.101")), udp_from(NAT, 40000, HA_ADDR), now=NOW + 1)
    assert ha.bindings[HOME].remote_port is None
    out = feed(ha, "receive_datagram", _keepalive(), udp_from(NAT, 40000, HA_ADDR), now=NOW + 1)
    assert [a for a in out if isinstance(a, DeliverIp)], "the keepalive goes on to the stack (two-way keepalive)"
    assert [(a.remote, a.remote_port) for a in out if isinstance(a, AddTunnel)] == [(NAT, 40000)]
    sent = [a for a in feed(ha, "encapsulate", _to_home(), now=NOW + 2) if isinstance(a, SendUdp)]
    assert [(a.dst, a.dport) for a in sent] == [(NAT, 40000)], "to the keepalive's address and port"


# ---- RFC 3024 3.4, 4.3.1: reverse tunnels in the negotiated encapsulation ------------------------

@pytest.mark.parametrize("flag,kind", [(RequestFlags.G, "gre"), (RequestFlags.M, "minimal")])
def test_cov_8_9_reverse_tunnel_in_the_negotiated_encapsulation_is_decapsulated(flag, kind):
    """MIP.HA.COV.8 / COV.9, RFC 3024 3.4: "Forward and reverse tunnels are symmetric, that is, both
    are able to use the same tunneling options negotiated at registration." and 4.3.2: "a home
    agent MUST process each valid reverse tunneled packet [...] by decapsulating it"."""
    ha = _ha()
    _register(ha, flags=int(RequestFlags.D | RequestFlags.T | flag))
    assert ha.bindings[HOME].kind == kind
    inner = ipv4_udp(HOME, CN, 7777, 7777, b"reverse")
    out = feed(ha, "receive_tunnelled", encapsulate(kind, COA, HA_ADDR, inner), now=NOW + 1)
    (delivered,) = [a for a in out if isinstance(a, DeliverIp)]
    assert IPv4.decode(delivered.packet).payload == IPv4.decode(inner).payload
    assert IPv4.decode(delivered.packet).src == HOME and IPv4.decode(delivered.packet).dst == CN
    # an encapsulation not negotiated is still discarded (4.3.2)
    other = "minimal" if kind == "gre" else "gre"
    assert not feed(ha, "receive_tunnelled", encapsulate(other, COA, HA_ADDR, inner), now=NOW + 1)


# ---- RFC 2003 4 and 5: ICMP errors from within the tunnel -----------------------------------------

def _tunnel_packet(ha: HomeAgent, packet: bytes) -> bytes:
    (sent,) = [a for a in feed(ha, "encapsulate", packet, now=NOW + 1) if isinstance(a, SendIp)]
    return sent.packet


def test_cov_10_16_time_exceeded_and_unreachable_reported_as_host_unreachable():
    """MIP.HA.COV.10, RFC 2003 4.4: "Reception of Time Exceeded messages by the encapsulator MUST be
    reported to the sender of the original unencapsulated datagram as Host Unreachable (Type 3,
    Code 1)."; 5: "When subsequent datagrams arrive that would transit the tunnel, the encapsulator
    checks the soft state for the tunnel. [...] sends an ICMP error message back to the sender of
    the original datagram, but also encapsulates the datagram and forwards it into the tunnel."
    MIP.HA.COV.16, 4.1: Network / Protocol Unreachable SHOULD be returned, code 0 or 1."""
    ha = _ha()
    _register(ha)
    tunnel = _tunnel_packet(ha, _to_home())
    out = feed(ha, "receive_icmp_error", _icmp(11, 0, tunnel), Addr(str(ROUTER), 0, str(HA_ADDR), 0), now=NOW + 2)
    assert [(t, c, d) for t, c, _m, d in _icmps(out)] == [(3, 1, CN)]
    out = feed(ha, "encapsulate", _to_home(), now=NOW + 3)
    assert [(t, c, d) for t, c, _m, d in _icmps(out)] == [(3, 1, CN)], "the soft state reported to the next sender"
    assert [a for a in out if isinstance(a, SendIp)], "and the datagram tunnelled all the same"
    assert not _icmps(feed(ha, "encapsulate", _to_home(), now=NOW + 4)), "one report per error"
    for code in (0, 2):  # Network, Protocol Unreachable: Host Unreachable (the home network is ours)
        out = feed(ha, "receive_icmp_error", _icmp(3, code, tunnel), Addr(str(ROUTER), 0, str(HA_ADDR), 0),
                   now=NOW + 5)
        assert [(t, c) for t, c, _m, _d in _icmps(out)] == [(3, 1)]
    # Port Unreachable, Source Route Failed: never relayed (4.1)
    fresh = _ha()
    _register(fresh)
    tunnel = _tunnel_packet(fresh, _to_home())
    for code in (3, 5):
        assert not _icmps(feed(fresh, "receive_icmp_error", _icmp(3, code, tunnel),
                               Addr(str(ROUTER), 0, str(HA_ADDR), 0), now=NOW + 2))
    assert not _icmps(feed(fresh, "encapsulate", _to_home(), now=NOW + 3))


def test_cov_11_12_datagram_too_big_sets_the_tunnel_mtu_and_is_relayed():
    """MIP.HA.COV.11, RFC 2003 4.1: "The encapsulator MUST relay ICMP Datagram Too Big messages to
    the sender of the original unencapsulated datagram."; MIP.HA.COV.12, 5.1: "all encapsulator
    implementations MUST support Path MTU Discovery soft state within their tunnels [...] the MTU
    that is conveyed to the original sender by the encapsulator SHOULD be the MTU of the tunnel
    minus the size of the encapsulating IP header." """
    ha = _ha()
    _register(ha)
    tunnel = bytearray(_tunnel_packet(ha, _to_home()))
    tunnel[2:4] = (1400).to_bytes(2, "big")  # the quoted tunnel packet was 1400 bytes long
    feed(ha, "receive_icmp_error", _icmp(3, 4, bytes(tunnel), struct.pack("!HH", 0, 1300)),
         Addr(str(ROUTER), 0, str(HA_ADDR), 0), now=NOW + 2)
    out = feed(ha, "encapsulate", _to_home(size=1300), now=NOW + 3)  # 1328 bytes, DF: 1348 tunnelled
    assert _icmps(out) == [(3, 4, 1300 - 20, CN)]
    assert not [a for a in out if isinstance(a, SendIp)], "a DF datagram above the tunnel MTU is not sent"
    # what fits still goes; without DF it goes too (the tunnel may fragment it)
    assert [a for a in feed(ha, "encapsulate", _to_home(size=1200), now=NOW + 3) if isinstance(a, SendIp)]
    assert [a for a in feed(ha, "encapsulate", _to_home(size=1300, df=False), now=NOW + 3) if isinstance(a, SendIp)]
    # soft state: forgotten after pmtu_timeout
    out = feed(ha, "encapsulate", _to_home(size=1300), now=NOW + 3 + ha.config.pmtu_timeout)
    assert not _icmps(out) and [a for a in out if isinstance(a, SendIp)]
