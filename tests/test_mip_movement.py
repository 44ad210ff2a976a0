"""Movement detection in the Mobile Node core (nodes/mip/movement.py through nodes/mip/mn.py): ARP
probes name the network, DHCP is asked for when nothing does, the link configuration follows the
node (home, a foreign agent, a co-located network). Sans-I/O: inputs in, actions out."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Interface as I, IPv4Network

from nodes.core import Addr
from nodes.mip.actions import ArpProbe, ConfigureLink, GratuitousArp, Log, SendIcmp, SendUdp, StartDhcp, StopDhcp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.mip.movement import CoLocatedNetwork
from nodes.wire.mip import AgentAdvertisement, AgentFlags, RegistrationReply, RegistrationRequest
from fakelink import feed

HOME, HA, HOME_ROUTER = A("10.1.1.100"), A("10.1.1.2"), A("10.1.1.1")
SA = SecurityAssociation(1000, b"0123456789abcdef")
FN5 = CoLocatedNetwork(I("10.78.0.100/24"), A("10.78.0.1"))
T0 = 1_700_000_000.0


def node(**kw) -> MobileNode:
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA, iface="r-eth0", home_router=HOME_ROUTER,
                           networks={"fn5": FN5, "fn3": CoLocatedNetwork(dhcp=True)}, **kw)
    return MobileNode(cfg)


def of(actions, kind) -> list:
    return [a for a in actions if isinstance(a, kind)]


def test_link_up_probes_the_known_routers_with_backoff():
    mn = node()
    out = feed(mn, "link_up", now=T0)
    assert of(out, ArpProbe) == [ArpProbe(HOME, HOME_ROUTER, "r-eth0"),
                                 ArpProbe(A("10.78.0.100"), A("10.78.0.1"), "r-eth0")]
    assert of(out, SendIcmp), "the node solicits agents too"
    times = []
    while len(times) < 7:
        t = mn.movement.probe_at
        if of(feed(mn, "handle_timer", now=t), ArpProbe):
            times.append(round(t - T0, 3))
    assert times == [0.05, 0.15, 0.35, 0.75, 1.55, 2.55, 3.55]  # 50 ms, doubled up to 1 s


def test_an_answer_from_the_home_router_configures_home():
    mn = node()
    feed(mn, "link_up", now=T0)
    out = feed(mn, "receive_arp", HOME_ROUTER, HOME, now=T0 + 0.01)
    assert of(out, ConfigureLink) == [ConfigureLink("home", "r-eth0", HOME, HOME_ROUTER, IPv4Network("10.1.1.0/24"))]
    assert of(out, GratuitousArp) and mn.status().location == "home" and mn.status().network == "home"
    assert mn.movement.probe_at is None and mn.movement.dhcp_at is None, "identified: no more probes, no DHCP"
    assert mn.status().as_dict()["attachment"] == {"kind": "home", "detail": None}


def test_an_answer_from_a_colocated_router_configures_it_before_registering_from_it():
    mn = node()
    feed(mn, "link_up", now=T0)
    out = feed(mn, "receive_arp", A("10.78.0.1"), A("10.78.0.100"), now=T0 + 0.01)
    configure = ConfigureLink("colocated", "r-eth0", HOME, A("10.78.0.1"), address=I("10.78.0.100/24"))
    kinds = [type(a) for a in out if isinstance(a, (ConfigureLink, SendUdp))]
    assert kinds == [ConfigureLink, SendUdp] and of(out, ConfigureLink) == [configure]
    request = RegistrationRequest.decode(of(out, SendUdp)[0].payload)
    assert request.care_of_address == A("10.78.0.100") and of(out, SendUdp)[0].src == A("10.78.0.100")
    # an answer for another probe later changes nothing: the network is known
    assert feed(mn, "receive_arp", HOME_ROUTER, HOME, now=T0 + 0.02) == []


def test_unknown_network_asks_for_dhcp_and_registers_from_the_lease():
    mn = node()
    feed(mn, "link_up", now=T0)
    assert mn.status().dhcp["state"] == "waiting"
    out = feed(mn, "handle_timer", now=T0 + 0.3)
    (start,) = of(out, StartDhcp)
    assert start.iface == "r-eth0" and mn.status().dhcp["state"] == "running"
    out = feed(mn, "dhcp_bound", start.attempt, "10.77.0.120/24", "10.77.0.1", 0.5, server="10.77.0.1",
               lease_time=3600, now=T0 + 0.8)
    assert of(out, ConfigureLink) == [ConfigureLink("colocated", "r-eth0", HOME, A("10.77.0.1"),
                                                    address=I("10.77.0.120/24"))]
    request = RegistrationRequest.decode(of(out, SendUdp)[0].payload)
    assert request.care_of_address == A("10.77.0.120")
    status = mn.status().as_dict()
    assert status["dhcp"]["state"] == "bound" and status["network"] == "fn3"
    assert status["dhcp"]["lease"] == {"network": "fn3", "address": "10.77.0.120/24", "router": "10.77.0.1",
                                       "server": "10.77.0.1", "lease_time": 3600, "reason": "BOUND",
                                       "seconds": 0.5, "after_link_up": 0.8}
    # the accepted registration's log line carries the DHCP timing
    reply = SA.sign(RegistrationReply(0, 600, HOME, HA, request.identification).encode())
    out = feed(mn, "receive_datagram", reply, Addr(str(HA), 434, "10.77.0.120", 434), now=T0 + 0.9)
    (log,) = [a for a in of(out, Log) if a.event == "registration"]
    assert log.fields["dhcp"] == {"network": "fn3", "address": "10.77.0.120/24", "server": "10.77.0.1",
                                  "seconds": 0.5, "after_link_up": 0.8}


def test_dhcp_failure_is_retried_and_a_stale_lease_is_ignored():
    mn = node(dhcp_retry=2.0)
    feed(mn, "link_up", now=T0)
    (start,) = of(feed(mn, "handle_timer", now=T0 + 0.3), StartDhcp)
    feed(mn, "dhcp_failed", start.attempt, "no offer", now=T0 + 1.0)
    assert mn.status().dhcp["state"] == "failed" and mn.movement.dhcp_at == T0 + 3.0
    (again,) = of(feed(mn, "handle_timer", now=T0 + 3.0), StartDhcp)
    assert again.attempt != start.attempt
    # the link changes while DHCP runs: the client is stopped and its late lease discarded
    assert of(feed(mn, "link_down", now=T0 + 3.1), StopDhcp) == [StopDhcp("r-eth0")]
    feed(mn, "link_up", now=T0 + 3.2)
    out = feed(mn, "dhcp_bound", again.attempt, "10.77.0.120/24", "10.77.0.1", 0.5, now=T0 + 3.3)
    assert not of(out, ConfigureLink) and [a.event for a in of(out, Log)] == ["dhcp-discarded"]


def test_a_lease_without_router_is_a_failure():
    mn = node()
    feed(mn, "link_up", now=T0)
    (start,) = of(feed(mn, "handle_timer", now=T0 + 0.3), StartDhcp)
    out = feed(mn, "dhcp_bound", start.attempt, "10.77.0.120/24", None, 0.5, now=T0 + 0.5)
    assert not of(out, ConfigureLink) and mn.status().dhcp["state"] == "failed"
    assert mn.status().counters["dhcp-no-router"] == 1


def test_a_foreign_agent_takes_over_after_the_request_went_out():
    mn = node()
    feed(mn, "link_up", now=T0)
    fa = A("192.0.2.1")
    adv = AgentAdvertisement(0, 1800, int(AgentFlags.F | AgentFlags.R), [fa], 3, routers=[(fa, 0)],
                             prefix_lengths=[25])
    out = feed(mn, "receive_icmp", adv.encode(), Addr(str(fa), 0, "224.0.0.1", 0, lladdr="02:00:00:00:00:01"),
               now=T0 + 0.02)
    kinds = [type(a) for a in out if isinstance(a, (ConfigureLink, SendUdp))]
    assert kinds == [SendUdp, ConfigureLink]
    assert of(out, ConfigureLink) == [ConfigureLink("fa", "r-eth0", HOME, fa)]
    # with an agent, the probes stop and DHCP is not started
    assert not of(feed(mn, "handle_timer", now=T0 + 0.05), ArpProbe)
    assert not of(feed(mn, "handle_timer", now=T0 + 0.3), StartDhcp)
    assert mn.status().dhcp["state"] == "idle"
