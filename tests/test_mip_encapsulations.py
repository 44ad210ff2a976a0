"""Minimal encapsulation (RFC 2004) and GRE (RFC 2784) beside IP-in-IP in the Mobile IP cores:
requested with M or G (RFC 5944 3.3), advertised by the foreign agent (2.1.1), granted or refused
with 139 by the home agent and 72 by the foreign agent; cores wired by tests/fakelink.py."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Network

import pytest

from nodes.core import Addr
from nodes.mip.actions import DeliverIp, SendIp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.wire.ipv4 import PROTO_UDP, IPv4, ip_in_ip, ipv4_udp
from nodes.wire.mip import AgentAdvertisement, AgentFlags, RegistrationRequest, RequestFlags, ntp_now
from nodes.wire.tunnels import KINDS, decapsulate
from core_contract import CoreCase, check_contract
from fakelink import FakeNet, attach, feed, replies_to_mn, udp_from

HA_ADDR, HOME, FA1, COA, CN = A("10.1.0.1"), A("10.1.0.50"), A("198.51.100.1"), A("192.0.2.10"), A("10.1.2.10")
HOME_NET = IPv4Network("10.1.0.0/24")
SA = SecurityAssociation(1000, b"0123456789abcdef")
TO_HOME = ipv4_udp(CN, HOME, 9000, 9000, b"to the home address")


def make_world(encapsulation="ipip", ha=None, fa=None) -> FakeNet:
    net = FakeNet()
    ha_cfg = HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0", **(ha or {}))
    net.add("ha", HomeAgent(ha_cfg), [HA_ADDR], link="home")
    net.add("fa1", ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0", **(fa or {}))), [FA1], link="fa1")
    net.call("fa1", "start")
    mn_cfg = MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, iface="mn0", encapsulation=encapsulation,
                              udp_tunnel="never")
    net.add("mn", MobileNode(mn_cfg), [HOME], link="home", lladdr="02:aa:00:00:00:50")
    return net


def core(net, name):
    return net.nodes[name].core


def tunnelled_to_home(net: FakeNet) -> bytes:
    """What the home agent sends for a packet to the home address: the whole outer packet."""
    actions = feed(core(net, "ha"), "encapsulate", TO_HOME, now=net.now)
    assert len(actions) == 1 and isinstance(actions[0], SendIp)
    return actions[0].packet


@pytest.mark.parametrize("kind", list(KINDS))
def test_registration_via_fa_with_each_encapsulation_and_the_fa_delivers(kind):
    net = make_world(kind)
    attach(net, "fa1")
    request = RegistrationRequest.decode([p for _, p in net.nodes["fa1"].received if p.kind == "udp"][0].payload)
    assert request.has(RequestFlags.M) == (kind == "minimal") and request.has(RequestFlags.G) == (kind == "gre")
    assert core(net, "ha").bindings[HOME].kind == kind
    assert core(net, "mn").status().tunnel == kind and replies_to_mn(net)[-1].code == 0
    packet = tunnelled_to_home(net)
    assert IPv4.decode(packet).proto == KINDS[kind] and IPv4.decode(packet).dst == FA1
    actions = feed(core(net, "fa1"), "receive_tunnelled", packet, now=net.now)
    assert actions == [DeliverIp(TO_HOME, "fa1-eth0", "02:aa:00:00:00:50")]
    assert core(net, "fa1").counters[f"decapsulated-{kind}"] == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_colocated_registration_with_each_encapsulation(kind):
    net = make_world(kind)
    attach(net, "fn3", coa=str(COA))
    assert core(net, "ha").bindings[HOME].kind == kind and core(net, "mn").status().tunnel == kind
    got = decapsulate(tunnelled_to_home(net))
    assert (got.kind, got.outer.src, got.outer.dst, got.inner) == (kind, HA_ADDR, COA, TO_HOME)


def test_the_foreign_agent_advertises_m_and_g_as_configured():
    both = ForeignAgent(ForeignAgentConfig(FA1, iface="fa0")).advertisement(0)
    assert both.has(AgentFlags.M) and both.has(AgentFlags.G)
    ipip_only = ForeignAgent(ForeignAgentConfig(FA1, iface="fa0", encapsulations=["ipip"])).advertisement(0)
    assert not ipip_only.has(AgentFlags.M) and not ipip_only.has(AgentFlags.G)
    assert AgentAdvertisement.decode(ipip_only.encode()).flags == ipip_only.flags


def test_home_agent_without_minimal_answers_139_to_a_colocated_node():
    net = make_world("minimal", ha={"encapsulations": ("ipip", "gre")})
    attach(net, "fn3", coa=str(COA))
    assert {r.code for r in replies_to_mn(net)} == {139}
    assert HOME not in core(net, "ha").bindings and core(net, "mn").status().state == "denied"
    assert core(net, "ha").counters["denied:139"] == 1  # not retried: the node's choice is refused


def test_foreign_agent_without_gre_answers_72_itself():
    net = make_world("gre", fa={"encapsulations": ("ipip",)})
    attach(net, "fa1")
    # a node asks an agent only for what it advertises (RFC 5944 3.6.1.2): IP-in-IP here, accepted
    assert {r.code for r in replies_to_mn(net)} == {0}
    # asked for GRE anyway, the agent answers 72 itself and the HA hears nothing of it
    requests_before = core(net, "ha").counters["requests"]
    req = RegistrationRequest(RequestFlags.G, 100, HOME, HA_ADDR, FA1, ntp_now(net.now))
    actions = feed(core(net, "fa1"), "receive_datagram", SA.sign(req.encode()),
                   udp_from(HOME, 434, FA1, 434, ttl=255, lladdr="02:aa:00:00:00:50"), now=net.now)
    codes = [a.payload[1] for a in actions if getattr(a, "payload", b"")[:1] == b"\x03"]
    assert codes == [72], actions
    assert core(net, "ha").counters["requests"] == requests_before


def test_via_a_capable_fa_a_home_agent_without_gre_answers_139():
    net = make_world("gre", ha={"encapsulations": ("ipip",)})
    attach(net, "fa1")
    assert {r.code for r in replies_to_mn(net)} == {139}
    assert core(net, "fa1").counters["relayed-replies:139"] == 1


def test_m_and_g_together_are_refused():
    net = make_world()
    req = RegistrationRequest(RequestFlags.M | RequestFlags.G, 100, HOME, HA_ADDR, COA, ntp_now(net.now))
    actions = feed(core(net, "ha"), "receive_datagram", SA.sign(req.encode()), udp_from(COA, 434, HA_ADDR),
                   now=net.now)
    assert core(net, "ha").counters["denied:139"] == 1 and len(actions) == 2


def test_a_fragment_goes_as_ip_in_ip_on_a_minimal_binding():
    net = make_world("minimal")
    attach(net, "fn3", coa=str(COA))
    fragment = IPv4(CN, HOME, PROTO_UDP, b"\0" * 24, flags=0x1).encode()
    actions = feed(core(net, "ha"), "encapsulate", fragment, now=net.now)
    assert decapsulate(actions[0].packet).kind == "ipip" and core(net, "ha").counters["fragment-as-ipip"] == 1


def test_reverse_tunnel_stays_ip_in_ip_on_a_gre_binding():
    net = make_world("gre")
    attach(net, "fn3", coa=str(COA))
    from_home = ipv4_udp(HOME, CN, 9000, 9000, b"from the home address")
    actions = feed(core(net, "ha"), "receive_tunnelled", ip_in_ip(COA, HA_ADDR, from_home), now=net.now)
    assert actions == [DeliverIp(from_home)]


def test_foreign_agent_drops_an_encapsulation_it_does_not_support():
    net = make_world(fa={"encapsulations": ("ipip",)})
    attach(net, "fa1")
    from nodes.wire.tunnels import encapsulate
    packet = encapsulate("gre", HA_ADDR, FA1, TO_HOME)
    assert feed(core(net, "fa1"), "receive_tunnelled", packet, now=net.now) == []
    assert core(net, "fa1").status().drops == {"gre-unsupported": 1}


@pytest.mark.parametrize("make", [
    lambda: HomeAgentConfig(HA_ADDR, [], encapsulations=("gre",)),
    lambda: ForeignAgentConfig(FA1, encapsulations=("ipip", "udp")),
    lambda: MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, encapsulation="gre-key"),
])
def test_configurations_name_what_is_wrong(make):
    with pytest.raises(ValueError, match="ipip"):
        make()


GRE_MN = CoreCase(
    name="mobile node asking for GRE",
    make=lambda rnd: MobileNode(MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, iface="mn0", encapsulation="gre"),
                                random=rnd),
    start=lambda core, now: core.link_up(now, care_of_address=COA),
)

ENCAPSULATING_FA = CoreCase(
    name="foreign agent with minimal and GRE",
    make=lambda rnd: ForeignAgent(ForeignAgentConfig(FA1, iface="fa0"), random=rnd),
    start=lambda core, now: core.start(now),
    valid=lambda core: [(SA.sign(RegistrationRequest(RequestFlags.G, 100, HOME, HA_ADDR, FA1, ntp_now(1000.0))
                                 .encode()), Addr(str(HOME), 434, str(FA1), 434, ttl=255, lladdr="02:aa:00:00:00:50"))],
)


@pytest.mark.parametrize("case", [GRE_MN, ENCAPSULATING_FA], ids=lambda c: c.name)
def test_cores_with_encapsulations_follow_the_core_contract(case):
    check_contract(case)
