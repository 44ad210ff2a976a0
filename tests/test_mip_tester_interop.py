"""The tester library (testbed/conformance/mip) against this project's own sans-I/O Mobile IP cores
(nodes/mip): each side only sees the other's bytes. The library itself imports nothing of nodes."""
from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address as A, IPv4Network

from nodes.core import Addr
from nodes.mip.actions import SendIcmp, SendUdp
from nodes.mip.auth import SecurityAssociation as NodesSA
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from testbed.conformance.mip import (
    SecurityAssociation, TesterAgentAdvertiser, TesterFA, TesterHA, TesterMN, UdpTunnelReply, parse_advertisement,
    parse_reply, parse_request,
)

HA_ADDR, HOME, COA, FA1 = A("10.1.0.1"), A("10.1.0.50"), A("192.0.2.10"), A("198.51.100.1")
HOME_NET = IPv4Network("10.1.0.0/24")
KEY = b"0123456789abcdef"
SPI = 1000
NOW = 1_700_000_000.0
MN_LLADDR = "02:aa:00:00:00:50"


def feed(core, method, *args, now, **kw):
    getattr(core, method)(*args, now=now, **kw)
    return core.drain_actions()


def udp_sends(actions):
    return [a for a in actions if isinstance(a, SendUdp)]


def nodes_ha(**kw) -> HomeAgent:
    return HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, NodesSA(SPI, KEY))], home_iface="home0", **kw))


def make_mn(**kw) -> TesterMN:
    return TesterMN(HOME, HA_ADDR, SecurityAssociation(SPI, KEY), **kw)


def test_library_does_not_import_nodes():
    code = ("import sys, testbed.conformance.mip, testbed.conformance.mip.tshark;"
            "print(sorted(m for m in sys.modules if m == 'nodes' or m.startswith('nodes.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- tester MN -> nodes HA ---------------------------------------------------------------------------

def test_tester_mn_registers_with_nodes_ha_and_verifies_its_reply():
    ha, mn = nodes_ha(), make_mn()
    raw = mn.request(NOW, COA, flags="D", lifetime=600)
    (reply,) = udp_sends(feed(ha, "receive_datagram", raw, Addr(str(COA), 434, str(HA_ADDR), 434), now=NOW))
    assert (reply.dst, reply.dport) == (COA, 434)
    check = mn.check_reply(reply.payload, NOW)
    assert check.accepted and check.code == 0 and check.authentic and check.exact_match
    assert check.reply.lifetime == 600
    assert ha.bindings[HOME].care_of_address == COA
    # and deregisters
    (bye,) = udp_sends(feed(ha, "receive_datagram", mn.deregistration(NOW + 1, COA),
                            Addr(str(COA), 434, str(HA_ADDR), 434), now=NOW + 1))
    assert mn.check_reply(bye.payload, NOW + 1).accepted and HOME not in ha.bindings


def test_nodes_ha_rejects_bad_authenticators_with_131():
    cases = {"wrong key": dict(auth={"key": b"not the key"}), "wrong spi": dict(auth={"spi": 999}),
             "truncated": dict(auth={"truncate": 8}), "corrupted": dict(auth={"corrupt": True}),
             "prefix+suffix instead of hmac": dict(auth={"algorithm": "prefix-suffix-md5"})}
    for i, (name, kw) in enumerate(cases.items()):
        ha, mn = nodes_ha(), make_mn()
        raw = mn.request(NOW + i, COA, flags="D", **kw)
        (reply,) = udp_sends(feed(ha, "receive_datagram", raw, Addr(str(COA), 434, str(HA_ADDR), 434), now=NOW + i))
        check = mn.check_reply(reply.payload, NOW + i)
        assert check.code == 131, name
        assert check.authentic  # the HA still signs its denial with the right key
        assert HOME not in ha.bindings
    # no MN-HA at all: silently discarded (RFC 5944 3.8.2.1), no reply
    ha, mn = nodes_ha(), make_mn()
    raw = mn.request(NOW, COA, flags="D", include_auth=False)
    assert udp_sends(feed(ha, "receive_datagram", raw, Addr(str(COA), 434, str(HA_ADDR), 434), now=NOW)) == []
    assert HOME not in ha.bindings
    # duplicate MN-HA extension: exactly one is allowed (RFC 5944 3.8.2.1)
    ha, mn = nodes_ha(), make_mn()
    sa = SecurityAssociation(SPI, KEY)
    raw = mn.request(NOW, COA, flags="D", extensions_after=[sa.authenticate()])
    (reply,) = udp_sends(feed(ha, "receive_datagram", raw, Addr(str(COA), 434, str(HA_ADDR), 434), now=NOW))
    assert parse_reply(reply.payload).code == 131


def test_tester_mn_resynchronises_after_133_from_nodes_ha():
    ha, mn = nodes_ha(), make_mn(clock_offset=-3600.0)
    addr = Addr(str(COA), 434, str(HA_ADDR), 434)
    (first,) = udp_sends(feed(ha, "receive_datagram", mn.request(NOW, COA, flags="D"), addr, now=NOW))
    check = mn.check_reply(first.payload, NOW)
    assert check.code == 133 and check.matches and check.resynchronised
    assert abs(mn.clock_offset) < 1.0
    (second,) = udp_sends(feed(ha, "receive_datagram", mn.request(NOW + 0.5, COA, flags="D"), addr, now=NOW + 0.5))
    assert mn.check_reply(second.payload, NOW + 0.5).accepted


def test_tester_mn_udp_tunnel_request_behind_a_nat():
    ha, mn = nodes_ha(), make_mn()
    from testbed.conformance.mip import UdpTunnelRequest

    raw = mn.request(NOW, "192.168.1.10", flags="D", extensions_before=[UdpTunnelRequest()])
    (reply,) = udp_sends(feed(ha, "receive_datagram", raw, Addr("203.0.113.200", 40000, str(HA_ADDR), 434), now=NOW))
    check = mn.check_reply(reply.payload, NOW)
    assert check.accepted and (reply.dst, reply.dport) == (A("203.0.113.200"), 40000)
    udp_reply = check.reply.find(44)
    assert isinstance(udp_reply, UdpTunnelReply) and udp_reply.code == 0 and udp_reply.keepalive == 110


# --- tester HA <- nodes MN -------------------------------------------------------------------------------

def nodes_mn(**kw) -> MobileNode:
    return MobileNode(MobileNodeConfig(HOME, HA_ADDR, HOME_NET, NodesSA(SPI, KEY), iface="mn0", **kw))


def test_tester_ha_answers_nodes_mn_and_the_mn_accepts():
    mn = nodes_mn()
    (request,) = udp_sends(feed(mn, "link_up", care_of_address=str(COA), now=NOW))
    assert (request.dst, request.dport) == (HA_ADDR, 434)
    ha = TesterHA(HA_ADDR, {HOME: SecurityAssociation(SPI, KEY)})
    seen = ha.inspect(request.payload, now=NOW)
    assert seen["mn_ha_ok"] and seen["mn_ha_count"] == 1 and seen["identification_fresh"]
    req = seen["request"]
    assert req.care_of_address == COA and req.has(0x20)  # D bit: co-located
    reply = ha.answer(request.payload, lifetime=300, extensions_before=[UdpTunnelReply(code=64)])
    feed(mn, "receive_datagram", reply, Addr(str(HA_ADDR), 434, str(COA), 434), now=NOW + 0.01)
    status = mn.status()
    assert status.state == "registered" and status.registered_until == NOW + 300


def test_nodes_mn_drops_a_forged_reply_and_resyncs_on_133():
    mn = nodes_mn()
    (request,) = udp_sends(feed(mn, "link_up", care_of_address=str(COA), now=NOW))
    ha = TesterHA(HA_ADDR, {HOME: SecurityAssociation(SPI, KEY)})
    forged = ha.answer(request.payload, auth={"key": b"forger"})
    feed(mn, "receive_datagram", forged, Addr(str(HA_ADDR), 434, str(COA), 434), now=NOW)
    assert mn.status().state == "registering" and mn.counters["drop:reply-bad-auth"] == 1
    mismatch = ha.answer(request.payload, code=133, now=NOW + 3600)
    (again,) = udp_sends(feed(mn, "receive_datagram", mismatch, Addr(str(HA_ADDR), 434, str(COA), 434), now=NOW))
    assert mn.counters["clock-resync"] == 1
    assert abs((parse_request(again.payload).identification >> 32) - (parse_reply(mismatch).identification >> 32)) <= 1


def test_tester_advertiser_is_heard_by_nodes_mn_which_registers_via_the_fa():
    mn = nodes_mn()
    feed(mn, "link_up", now=NOW)
    adv = TesterAgentAdvertiser(FA1, "RFT", registration_lifetime=900).advertisement()
    actions = feed(mn, "receive_icmp", adv, Addr(str(FA1), 0, "224.0.0.1", 0), now=NOW + 0.1)
    (request,) = udp_sends(actions)
    assert request.dst == FA1 and request.ttl == 255
    req = parse_request(request.payload)
    assert req.ok and req.care_of_address == FA1 and req.home_agent == HA_ADDR and not req.has(0x20)
    # the tester FA relays it (adding FA-HA) to a tester HA, and the reply back
    fa_ha = SecurityAssociation(4000, b"fa-ha-secret")
    fa = TesterFA(FA1, fa_ha=fa_ha)
    ha = TesterHA(HA_ADDR, {HOME: SecurityAssociation(SPI, KEY)}, {FA1: fa_ha})
    relayed, ha_addr = fa.relay_request(request.payload, src=HOME).value
    assert ha_addr == HA_ADDR and ha.inspect(relayed, src=FA1)["fa_ha_ok"]
    to_mn, dst, _, fa_ha_ok = fa.relay_reply(ha.answer(relayed, lifetime=900, fa_ha=True)).value
    assert fa_ha_ok and dst == HOME
    feed(mn, "receive_datagram", to_mn, Addr(str(FA1), 434, str(HOME), 434), now=NOW + 0.2)
    assert mn.status().state == "registered" and mn.status().mode == "fa"


# --- tester MN -> nodes FA -> nodes HA ------------------------------------------------------------------

def test_tester_mn_registers_through_nodes_fa():
    fa = ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0"))
    ha = nodes_ha()
    adverts = [a for a in feed(fa, "start", now=NOW) if isinstance(a, SendIcmp)]
    adv = parse_advertisement(adverts[0].payload)
    assert adv.ok and adv.has("F") and adv.sequence == 0
    coa = adv.care_of_addresses[0]
    mn = make_mn()
    raw = mn.request(NOW, coa, lifetime=min(600, adv.registration_lifetime))
    (to_ha,) = udp_sends(feed(fa, "receive_datagram", raw,
                              Addr(str(HOME), 434, str(FA1), 434, ttl=255, lladdr=MN_LLADDR), now=NOW))
    assert to_ha.dst == HA_ADDR
    (reply,) = udp_sends(feed(ha, "receive_datagram", to_ha.payload, Addr(str(FA1), 434, str(HA_ADDR), 434),
                              now=NOW + 0.01))
    (to_mn,) = udp_sends(feed(fa, "receive_datagram", reply.payload, Addr(str(HA_ADDR), 434, str(FA1), 434),
                              now=NOW + 0.02))
    assert to_mn.dst == HOME and to_mn.lladdr == MN_LLADDR
    check = mn.check_reply(to_mn.payload, NOW + 0.02)
    assert check.accepted and check.reply.lifetime == 600
    assert HOME in fa.visitors and ha.bindings[HOME].care_of_address == coa


def test_nodes_fa_denies_tester_mn_requests():
    fa = ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0", max_lifetime=300, reverse_tunnelling=False))
    mn = make_mn()
    at = Addr(str(HOME), 434, str(FA1), 434, ttl=255, lladdr=MN_LLADDR)
    for kw, code in ((dict(lifetime=1000), 69), (dict(lifetime=100, flags="T"), 74),
                     (dict(lifetime=100, care_of_address="192.0.2.99"), 77)):
        coa = kw.pop("care_of_address", FA1)
        (reply,) = udp_sends(feed(fa, "receive_datagram", mn.request(NOW, coa, **kw), at, now=NOW))
        check = mn.check_reply(reply.payload, NOW)
        assert check.code == code and check.authentic is None  # an FA denial carries no MN-HA
    (reply,) = udp_sends(feed(fa, "receive_datagram", mn.request(NOW, FA1, lifetime=100)[:-3], at, now=NOW))
    assert parse_reply(reply.payload).code == 70  # truncated authenticator extension: poorly formed
