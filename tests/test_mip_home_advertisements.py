"""The home agent's Agent Advertisements on its home network (RFC 5944 2.1, H bit) and the mobile
node that learns from them it is home (4.2, 3.6): cores wired by tests/fakelink.py, and the home
agent with `advertise` against the core contract."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Network

from nodes.core import Addr
from nodes.mip.actions import ConfigureLink, SendIcmp
from nodes.mip.advertiser import ALL_SYSTEMS
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.wire.mip import AgentAdvertisement, AgentFlags, AgentSolicitation, RegistrationRequest, ntp_now
from core_contract import CoreCase, check_contract
from fakelink import FakeNet, attach

HA_ADDR, HOME, FA1 = A("10.1.0.1"), A("10.1.0.50"), A("198.51.100.1")
HOME_NET = IPv4Network("10.1.0.0/24")
SA = SecurityAssociation(1000, b"0123456789abcdef")


def ha_config(**kw) -> HomeAgentConfig:
    return HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0", **kw)


def make_world(advertise: bool) -> FakeNet:
    net = FakeNet()
    net.add("ha", HomeAgent(ha_config(advertise=advertise, prefix_length=24)), [HA_ADDR], link="home")
    net.call("ha", "start")
    net.add("fa1", ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0")), [FA1], link="fa1")
    net.call("fa1", "start")
    # no home router: ARP cannot tell the node it is home, only an advertisement can
    net.add("mn", MobileNode(MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, iface="mn0")), [HOME], link="home")
    return net


def adverts_of(net: FakeNet) -> list[tuple[float, AgentAdvertisement]]:
    return [(t, AgentAdvertisement.decode(a.payload)) for t, a in net.nodes["ha"].actions if isinstance(a, SendIcmp)]


def test_home_agent_advertises_with_h_periodically_from_start():
    net = make_world(advertise=True)
    net.run(2.5)
    sent = [a for _, a in net.nodes["ha"].actions if isinstance(a, SendIcmp)]
    assert len(sent) == 3  # at start, then every second
    assert all((a.dst, a.src, a.ttl, a.iface) == (ALL_SYSTEMS, HA_ADDR, 1, "home0") for a in sent)
    adv = AgentAdvertisement.decode(sent[0].payload)
    assert adv.flags == AgentFlags.H and adv.care_of_addresses == [] and adv.code == 16
    assert adv.routers == [(HA_ADDR, -0x80000000)] and adv.prefix_lengths == [24]
    assert [a.sequence for _, a in adverts_of(net)] == [0, 1, 2]


def test_home_agent_answers_a_solicitation_at_once():
    net = make_world(advertise=True)
    net.run(0.3)
    ha = net.nodes["ha"].core
    ha.receive_icmp(AgentSolicitation().encode(), Addr(str(HOME), 0, "224.0.0.2", 0), net.now)
    answer = ha.drain_actions()
    assert len(answer) == 1 and AgentAdvertisement.decode(answer[0].payload).has(AgentFlags.H)
    assert answer[0].dst == ALL_SYSTEMS and ha.counters["solicitations"] == 1


def test_home_agent_without_advertise_is_silent_and_drops_solicitations():
    net = make_world(advertise=False)
    net.run(2.5)
    assert adverts_of(net) == []
    ha = net.nodes["ha"].core
    ha.receive_icmp(AgentSolicitation().encode(), Addr(str(HOME), 0, "224.0.0.2", 0), net.now)
    assert ha.drain_actions() == [] and ha.status().drops == {"icmp-not-advertising": 1}


def _came_home(net: FakeNet) -> tuple:
    attach(net, "fa1")
    assert HOME in net.nodes["ha"].core.bindings
    net.nodes["mn"].actions.clear()
    back = net.now
    net.move("mn", "home")
    net.call("mn", "link_up")
    net.run(0.2)
    return net.nodes["mn"].core, net.nodes["ha"].core, back


def test_node_coming_home_learns_it_from_the_solicited_advertisement_and_deregisters():
    net = make_world(advertise=True)
    mn, ha, back = _came_home(net)
    assert mn.status().location == "home" and mn.status().state == "home"
    assert HOME not in ha.bindings
    assert mn.counters["identified-by:advertisement"] == 1
    assert [a.kind for a in net.actions_of("mn", ConfigureLink)] == ["home"]
    deregistration = [RegistrationRequest.decode(p.payload) for t, p in net.nodes["ha"].received
                      if p.kind == "udp" and t >= back]
    assert [r.lifetime for r in deregistration] == [0]
    assert deregistration and max(t for t, p in net.nodes["ha"].received if p.kind == "udp") - back < 0.05


def test_without_advertisements_a_node_without_arp_detection_never_learns_it_is_home():
    net = make_world(advertise=False)
    mn, ha, _ = _came_home(net)
    assert mn.status().location != "home" and HOME in ha.bindings


def test_an_h_advertisement_of_another_home_network_is_not_home():
    net = make_world(advertise=False)
    mn = net.nodes["mn"].core
    net.call("mn", "link_up")
    other = AgentAdvertisement(0, 1800, int(AgentFlags.H), [], 3, routers=[(A("10.9.0.1"), 0)], code=16)
    net.call("mn", "receive_icmp", other.encode(), Addr("10.9.0.1", 0, "224.0.0.1", 0))
    assert mn.status().location != "home" and mn.counters["identified-by:advertisement"] == 0


ADVERTISING_HA = CoreCase(
    name="advertising home agent",
    make=lambda rnd: HomeAgent(ha_config(advertise=True, prefix_length=24), random=rnd),
    start=lambda core, now: core.start(now),
    valid=lambda core: [(SA.sign(RegistrationRequest(0, 1800, HOME, HA_ADDR, FA1, ntp_now(1000.0)).encode()),
                         Addr(str(FA1), 434, str(HA_ADDR), 434))],
)


def test_advertising_home_agent_follows_the_core_contract():
    check_contract(ADVERTISING_HA)


def test_an_advertisement_after_arp_said_home_does_not_start_a_second_deregistration():
    net = FakeNet()
    net.add("ha", HomeAgent(ha_config(advertise=True, prefix_length=24)), [HA_ADDR], link="home")
    net.add("fa1", ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0")), [FA1], link="fa1")
    net.call("fa1", "start")
    router = A("10.1.0.254")
    net.add("mn", MobileNode(MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, iface="mn0", home_router=router)),
            [HOME], link="home")
    attach(net, "fa1")
    net.move("mn", "home")
    net.call("mn", "link_up")
    net.call("mn", "receive_arp", router, HOME)  # the home router answers first: home by ARP
    net.call("ha", "start")  # then the home agent's advertisement arrives
    net.run(1.5)
    mn = net.nodes["mn"].core
    requests = [RegistrationRequest.decode(p.payload) for _, p in net.nodes["ha"].received if p.kind == "udp"]
    assert [r.lifetime for r in requests] == [1800, 0], "one deregistration, not one per way of learning it"
    assert mn.status().state == "home" and mn.counters["identified-by:arp"] == 1
    assert mn.counters.get("drop:unmatched-reply", 0) == 0
