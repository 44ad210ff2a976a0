"""HA, FA and MN cores wired together by tests/fakelink.py (virtual time, no I/O)."""
from __future__ import annotations

import random
from ipaddress import IPv4Address as A, IPv4Network

import pytest

from nodes.mip.actions import (
    AddHostRoute, AddTunnel, DeliverIp, GratuitousArp, ProxyArp, RemoveHostRoute, RemoveTunnel, SendIcmp,
    Log, SendIp, SendUdp,
)
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ALL_SYSTEMS, ForeignAgent, ForeignAgentConfig
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.wire.ipv4 import ip_in_ip, ipv4_udp
from nodes.wire.mip import (
    EXT_TRUSTED_NETWORKS, EXT_UDP_TUNNEL_REPLY, AgentAdvertisement, AgentFlags, RegistrationReply,
    RegistrationRequest, RequestFlags, TunnelData, UdpTunnelRequest, find_extension, ntp_now,
)
from fakelink import FakeNet, Nat, Packet, attach, feed, replies_to_mn, udp_from

HA_ADDR = A("10.1.0.1")
HOME = A("10.1.0.50")
HOME_NET = IPv4Network("10.1.0.0/24")
FA1 = A("198.51.100.1")
FA2 = A("203.0.113.1")
KEY = b"0123456789abcdef"
SA = SecurityAssociation(1000, KEY)


def make_world(ha: dict | None = None, fa: dict | None = None, mn: dict | None = None, **net_kw) -> FakeNet:
    net = FakeNet(**net_kw)
    ha_cfg = HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0", **(ha or {}))
    net.add("ha", HomeAgent(ha_cfg), [HA_ADDR], link="home")
    for name, address in (("fa1", FA1), ("fa2", FA2)):
        cfg = ForeignAgentConfig(address, iface=f"{name}-eth0", **(fa or {}))
        net.add(name, ForeignAgent(cfg), [address], link=name)
        net.call(name, "start")
    mn_cfg = MobileNodeConfig(HOME, HA_ADDR, HOME_NET, (mn or {}).pop("sa", SA), iface="mn0", **(mn or {}))
    net.add("mn", MobileNode(mn_cfg), [HOME], link="home", lladdr="02:aa:00:00:00:50")
    return net


def core(net: FakeNet, name: str):
    return net.nodes[name].core


def home_advertisement(net: FakeNet, seq: int = 0) -> None:
    adv = AgentAdvertisement(seq, 1800, int(AgentFlags.H), [], lifetime=3, routers=[(HA_ADDR, 0)],
                             prefix_lengths=[24])
    net.execute("ha", [SendIcmp(ALL_SYSTEMS, adv.encode(), src=HA_ADDR)])


# --- successful registrations -------------------------------------------------------------------

def test_registration_via_fa_installs_binding_route_and_proxy_arp():
    net = make_world()
    attach(net, "fa1")
    mn, ha, fa = core(net, "mn"), core(net, "ha"), core(net, "fa1")
    assert mn.status().state == "registered"
    assert mn.status().care_of_address == str(FA1) and mn.status().mode == "fa"
    binding = ha.bindings[HOME]
    assert (binding.care_of_address, binding.kind, binding.lifetime) == (FA1, "ipip", 1800)
    assert AddTunnel(HOME, HA_ADDR, FA1, "ipip") in net.actions_of("ha", AddTunnel)
    assert ProxyArp(HOME, True, "home0") in net.actions_of("ha", ProxyArp)
    assert net.actions_of("ha", GratuitousArp) == [GratuitousArp(HOME, "home0", proxy=True)]
    assert net.actions_of("fa1", AddHostRoute) == [AddHostRoute(HOME, "fa1-eth0", "02:aa:00:00:00:50")]
    assert fa.status().visitors[0]["home_address"] == str(HOME)
    # the request reached the FA with TTL 255 and the reply came back on the link to the MN's lladdr
    assert replies_to_mn(net)[-1].code == 0


def test_colocated_registration_without_nat_uses_ipip():
    net = make_world()
    attach(net, "fn3", coa="192.0.2.10")
    mn, ha = core(net, "mn"), core(net, "ha")
    assert ha.bindings[HOME].care_of_address == A("192.0.2.10")
    assert ha.bindings[HOME].kind == "ipip"
    assert mn.status().mode == "colocated" and mn.status().tunnel == "ipip"
    # the HA declines UDP tunnelling without a NAT (RFC 3519 4.6, a UDP Tunnel Reply with code 64);
    # the MN copies that reply's keepalive into the IP-in-IP tunnel, where it means nothing
    (tunnel,) = net.actions_of("mn", AddTunnel)
    assert (tunnel.home, tunnel.local, tunnel.remote, tunnel.kind, tunnel.remote_port) == \
        (HOME, A("192.0.2.10"), HA_ADDR, "ipip", None)


def test_handoff_fa1_to_fa2_moves_the_binding():
    net = make_world()
    attach(net, "fa1")
    attach(net, "fa2")
    assert core(net, "ha").bindings[HOME].care_of_address == FA2
    assert core(net, "mn").status().agent["address"] == str(FA2)
    # the old FA keeps the visitor until its lifetime runs out (no binding update to old FA)
    assert HOME in core(net, "fa1").visitors


def test_registration_survives_loss_and_reordering():
    net = make_world(jitter=0.5, seed=7)
    net.drop_random(0.2)
    attach(net, "fa1", settle=60.0)
    assert core(net, "mn").status().state == "registered"
    assert core(net, "ha").bindings[HOME].care_of_address == FA1
    assert net.dropped and core(net, "mn").counters["retransmissions"] >= 1


def test_reregistration_before_expiry_and_ha_expiry_when_silent():
    net = make_world(ha={"max_lifetime": 20})
    attach(net, "fn3", coa="192.0.2.10")
    assert core(net, "mn").registration.lifetime == 20
    net.run(20)
    assert core(net, "mn").counters["reregistrations"] >= 1
    assert HOME in core(net, "ha").bindings
    net.call("mn", "link_down")
    net.run(25)
    assert HOME not in core(net, "ha").bindings
    assert core(net, "ha").counters["expired"] == 1
    assert RemoveTunnel(HOME) in net.actions_of("ha", RemoveTunnel)


# --- negatives ----------------------------------------------------------------------------------

def test_wrong_key_gives_131_relayed_by_fa():
    net = make_world(mn={"sa": SecurityAssociation(1000, b"wrong key 123456")})
    attach(net, "fa1")
    assert core(net, "ha").counters["denied:131"] >= 1
    assert core(net, "fa1").counters["relayed-replies:131"] >= 1
    assert {r.code for r in replies_to_mn(net)} == {131}
    assert HOME not in core(net, "ha").bindings
    # the MN cannot verify the HA's authenticator with its wrong key: it discards the reply
    assert core(net, "mn").counters["drop:reply-bad-auth"] >= 1


def test_stale_identification_gives_133_with_ha_time_and_mn_resyncs():
    net = make_world()
    core(net, "mn").identifications.offset = -3600.0  # the MN's clock is an hour late
    started = net.now
    attach(net, "fn3", coa="192.0.2.10")
    first = replies_to_mn(net)[0]
    assert first.code == 133
    assert abs((first.identification >> 32) - (ntp_now(started) >> 32)) <= 1  # the HA's time
    request = RegistrationRequest.decode([p for _, p in net.nodes["ha"].received][0].payload)
    assert first.identification & 0xFFFFFFFF == request.identification & 0xFFFFFFFF
    assert core(net, "mn").status().state == "registered"
    assert core(net, "mn").counters["clock-resync"] == 1


def test_replayed_request_gives_133_and_keeps_binding():
    net = make_world()
    attach(net, "fn3", coa="192.0.2.10")
    ha = core(net, "ha")
    accepted = [p for _, p in net.nodes["ha"].received if p.kind == "udp"][-1]
    before = dict(ha.bindings)
    actions = feed(ha, "receive_datagram", accepted.payload, udp_from(accepted.src, accepted.sport, HA_ADDR),
                   now=net.now + 1)
    reply = RegistrationReply.decode(actions[0].payload)
    assert reply.code == 133
    assert reply.identification >> 32 == ntp_now(net.now + 1) >> 32
    assert ha.bindings == before


def test_lifetime_is_capped_by_ha():
    net = make_world(ha={"max_lifetime": 600}, mn={"lifetime": 1000})
    attach(net, "fn3", coa="192.0.2.10")
    assert core(net, "ha").bindings[HOME].lifetime == 600
    assert core(net, "mn").registration.lifetime == 600


def test_lifetime_asked_of_an_fa_is_within_its_advertised_one():
    """RFC 5944 3.6.1.2: the lifetime asked of a foreign agent SHOULD NOT exceed its advertised
    Registration Lifetime: no 69 (its denial of a longer one, 3.7.2.2: test_fa_validation_codes)."""
    net = make_world(fa={"max_lifetime": 300}, mn={"lifetime": 1000})
    attach(net, "fa1")
    assert [r.code for r in replies_to_mn(net)] == [0]
    assert core(net, "fa1").counters["denied:69"] == 0
    assert core(net, "mn").registration.lifetime == 300


def _signed_request(flags=0, lifetime=1800, coa="192.0.2.10", ident=None, exts=(), sa=SA, now=None) -> bytes:
    req = RegistrationRequest(flags, lifetime, HOME, HA_ADDR, A(coa), ident or ntp_now(now), list(exts))
    return sa.sign(req.encode())


def test_poorly_formed_request_gives_134_at_ha_and_70_at_fa():
    net = make_world()
    raw = _signed_request(now=net.now) + bytes([200, 10, 0, 0])  # a skippable extension running past the end
    actions = feed(core(net, "ha"), "receive_datagram", raw, udp_from(A("192.0.2.10"), 434, HA_ADDR), now=net.now)
    assert RegistrationReply.decode(actions[0].payload).code == 134
    truncated_ext = _signed_request(now=net.now)[:-3]
    actions = feed(core(net, "fa1"), "receive_datagram", truncated_ext,
                   udp_from(HOME, 434, FA1, lladdr="02:aa:00:00:00:50"), now=net.now)
    reply = actions[0]
    assert isinstance(reply, SendUdp) and reply.lladdr == "02:aa:00:00:00:50"
    assert RegistrationReply.decode(reply.payload).code == 70


@pytest.mark.parametrize("mutate, code", [
    (lambda: RegistrationRequest(RequestFlags.M, 100, HOME, HA_ADDR, FA1, 0), 72),  # an FA without minimal
    (lambda: RegistrationRequest(0, 100, HOME, HA_ADDR, A("192.0.2.99"), 0), 77),
    (lambda: RegistrationRequest(0, 1801, HOME, HA_ADDR, FA1, 0), 69),  # above the advertised 1800
])
def test_fa_validation_codes(mutate, code):
    net = make_world(fa={"encapsulations": ("ipip", "gre")})
    req = mutate()
    req.identification = ntp_now(net.now)
    actions = feed(core(net, "fa1"), "receive_datagram", SA.sign(req.encode()), udp_from(HOME, 434, FA1, lladdr="x"),
                   now=net.now)
    assert RegistrationReply.decode(actions[0].payload).code == code


def test_fa_pending_limit_gives_66():
    net = make_world(fa={"max_pending": 2})
    fa = core(net, "fa1")
    codes = []
    for i in range(3):
        raw = _signed_request(coa=str(FA1), ident=ntp_now(net.now) + i)
        actions = feed(fa, "receive_datagram", raw, udp_from(HOME, 434, FA1, lladdr="x"), now=net.now)
        codes.append(RegistrationReply.decode(actions[0].payload).code if actions[0].dst == HOME else None)
    assert codes == [None, None, 66]


def test_unreachable_ha_gives_78_from_fa_after_7_seconds():
    net = make_world(mn={"retransmit_initial": 10.0})
    net.drop_when(lambda p: p.dst == HA_ADDR)
    attach(net, "fa1", settle=9.0)
    relayed = [(t, a) for t, a in net.nodes["fa1"].actions if isinstance(a, SendUdp) and a.dst == HA_ADDR]
    denials = [(t, a) for t, a in net.nodes["fa1"].actions
               if isinstance(a, SendUdp) and a.dst == HOME and RegistrationReply.decode(a.payload).code == 78]
    assert denials and denials[0][0] - relayed[0][0] == pytest.approx(7.0)
    assert core(net, "mn").last_code == 78
    assert core(net, "fa1").status().pending == 0


def test_ha_refuses_reverse_tunnel_and_udp_when_not_allowed():
    net = make_world(ha={"reverse_tunnelling": False, "udp_tunnelling": False})
    ha = core(net, "ha")
    t_req = _signed_request(flags=RequestFlags.T | RequestFlags.D, now=net.now)
    actions = feed(ha, "receive_datagram", t_req, udp_from(A("192.0.2.10"), 434, HA_ADDR), now=net.now)
    assert RegistrationReply.decode(actions[0].payload).code == 137
    udp_req = _signed_request(flags=RequestFlags.D, exts=[UdpTunnelRequest()], now=net.now + 1)
    actions = feed(ha, "receive_datagram", udp_req, udp_from(A("203.0.113.200"), 40000, HA_ADDR), now=net.now + 1)
    assert RegistrationReply.decode(actions[0].payload).code == 142
    wrong_ha = RegistrationRequest(0, 100, HOME, A("10.1.0.2"), A("192.0.2.10"), ntp_now(net.now + 2))
    actions = feed(ha, "receive_datagram", SA.sign(wrong_ha.encode()), udp_from(A("192.0.2.10"), 434, HA_ADDR),
                   now=net.now + 2)
    assert RegistrationReply.decode(actions[0].payload).code == 136
    assert not ha.bindings


def test_flood_of_bad_requests_leaves_bindings_intact_and_ha_serving():
    net = make_world()
    attach(net, "fn3", coa="192.0.2.10")
    ha = core(net, "ha")
    binding = ha.bindings[HOME]
    rng = random.Random(4)
    good = _signed_request(coa="192.0.2.66", now=net.now)
    evil_sa = SecurityAssociation(1000, b"attacker key....")
    for i in range(600):
        choice = i % 6
        if choice == 0:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        elif choice == 1:
            raw = _signed_request(coa="192.0.2.66", sa=evil_sa, now=net.now)
        elif choice == 2:
            raw = good[:rng.randrange(len(good))]
        elif choice == 3:
            raw = bytearray(good)
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            raw = bytes(raw)
        elif choice == 4:
            raw = _signed_request(coa="192.0.2.66", ident=ntp_now(net.now - 3600))
        else:
            raw = _signed_request(coa="192.0.2.66", sa=SecurityAssociation(999, KEY), now=net.now)
        feed(ha, "receive_datagram", raw, udp_from(A("192.0.2.66"), 434, HA_ADDR), now=net.now)
    assert ha.bindings == {HOME: binding}
    assert sum(v for k, v in ha.counters.items() if k.startswith(("denied", "drop"))) >= 600
    net.run(2)
    valid = _signed_request(coa="192.0.2.10", now=net.now)
    actions = feed(ha, "receive_datagram", valid, udp_from(A("192.0.2.10"), 434, HA_ADDR), now=net.now)
    assert RegistrationReply.decode(actions[-1].payload).code == 0


# --- movement detection -------------------------------------------------------------------------

def test_sequence_drop_below_256_makes_mn_reregister():
    net = make_world()
    attach(net, "fa1")
    core(net, "fa1").advertiser.sequence = 1000
    net.run(2)
    requests_before = core(net, "mn").counters["requests"]
    rebooted = ForeignAgent(core(net, "fa1").config)  # reboot: new core, empty visitor list, seq 0
    net.nodes["fa1"].core = rebooted
    net.call("fa1", "start")
    net.run(2)
    mn = core(net, "mn")
    assert mn.counters["agent-rebooted"] == 1
    assert mn.counters["requests"] == requests_before + 1
    assert HOME in rebooted.visitors and mn.status().state == "registered"


def test_agent_lifetime_expiry_restarts_solicitation():
    net = make_world()
    attach(net, "fa1")
    net.move("fa1", None)  # the FA goes silent for the MN
    sent_before = core(net, "mn").counters["solicitations"]
    net.run(5)
    mn = core(net, "mn")
    assert mn.counters["agent-expired"] == 1
    assert mn.counters["solicitations"] > sent_before and mn.status().agent is None


def test_solicitations_three_at_one_second_then_backoff():
    net = make_world()
    attach(net, "empty", settle=20.0)
    times = [t - net.nodes["mn"].actions[0][0] for t, a in net.nodes["mn"].actions if isinstance(a, SendIcmp)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # RFC 5944 2.4: at most one a second for the first three, then exponential back-off, and the
    # times randomised (stretched by a few percent, never shorter than the limit)
    assert len(times) == 6 and times[0] == 0
    for gap, nominal in zip(gaps, [1, 1, 2, 4, 8]):
        assert nominal <= gap <= nominal * 1.06, (gaps, nominal)


def test_solicitation_is_answered_by_fa():
    net = make_world(fa={"adv_interval": 100.0, "adv_lifetime": 300})
    net.move("mn", "fa1")
    net.call("mn", "link_up")
    net.run(0.5)
    assert core(net, "fa1").counters["solicitations"] == 1
    assert core(net, "mn").status().state == "registered"


def test_retransmission_backoff_with_new_identifications():
    net = make_world()
    net.drop_when(lambda p: p.dst == HA_ADDR)
    attach(net, "fn3", coa="192.0.2.10", settle=16.0)
    sent = [(t, a) for t, a in net.nodes["mn"].actions if isinstance(a, SendUdp)]
    start = sent[0][0]
    assert [round(t - start, 3) for t, _ in sent] == [0, 1, 3, 7, 15]
    idents = [RegistrationRequest.decode(a.payload).identification for _, a in sent]
    assert idents == sorted(set(idents))


def test_return_home_deregisters_and_stops_proxy_arp():
    net = make_world()
    attach(net, "fa1")
    net.move("mn", "home")
    net.call("mn", "link_up")
    home_advertisement(net)
    net.run(2)
    mn, ha = core(net, "mn"), core(net, "ha")
    assert HOME not in ha.bindings
    assert ProxyArp(HOME, False, "home0") in net.actions_of("ha", ProxyArp)
    assert RemoveTunnel(HOME) in net.actions_of("ha", RemoveTunnel)
    assert GratuitousArp(HOME, "mn0") in net.actions_of("mn", GratuitousArp)
    assert mn.status().location == "home" and mn.status().state == "home"
    assert ha.counters["accepted:0"] == 2  # registration, then deregistration


def test_colocated_return_home_by_address():
    net = make_world()
    attach(net, "fn3", coa="192.0.2.10")
    attach(net, "home", coa=str(HOME))
    assert HOME not in core(net, "ha").bindings
    assert RemoveTunnel(HOME) in net.actions_of("mn", RemoveTunnel)


# --- NAT traversal (RFC 3519), reverse tunnels, trusted networks ---------------------------------

def test_nat_detected_gives_udp_tunnel_to_observed_address_and_port():
    net = make_world()
    net.nat = Nat(A("203.0.113.200"), {A("192.168.1.10")})
    attach(net, "natted", coa="192.168.1.10")
    ha, mn = core(net, "ha"), core(net, "mn")
    binding = ha.bindings[HOME]
    assert (binding.kind, binding.remote, binding.remote_port) == ("udp", A("203.0.113.200"), 40000)
    assert ha.counters["nat-detected"] == 1
    accepted = replies_to_mn(net)[-1]
    assert find_extension(accepted.extensions, EXT_UDP_TUNNEL_REPLY).keepalive == 110
    assert mn.status().tunnel == "udp"
    assert AddTunnel(HOME, A("192.168.1.10"), HA_ADDR, "udp", 434, 110) in net.actions_of("mn", AddTunnel)
    # forward: HA -> NAT mapping; reverse: UDP tunnel data from the node is decapsulated
    packet = ipv4_udp("10.1.0.9", HOME, 5000, 6000, b"hello")
    assert feed(ha, "encapsulate", packet, now=net.now) == [
        SendUdp(A("203.0.113.200"), 40000, TunnelData(4, packet).encode(), src=HA_ADDR)]
    inner = ipv4_udp(HOME, "10.1.0.9", 6000, 5000, b"back")
    net.inject(Packet("udp", A("192.168.1.10"), HA_ADDR, TunnelData(4, inner).encode(), "mn", 434, 434))
    net.run(0.1)
    assert DeliverIp(inner) in net.actions_of("ha", DeliverIp)


def test_fa_behind_nat_advertises_u_and_gets_udp_tunnel():
    net = make_world(fa={"behind_nat": True})
    net.nat = Nat(A("203.0.113.250"), {FA1})
    attach(net, "fa1")
    assert AgentAdvertisement.decode(core(net, "fa1").advertisement().encode()).has(AgentFlags.U)
    assert core(net, "ha").bindings[HOME].kind == "udp"
    assert core(net, "fa1").visitors[HOME].udp


def test_reverse_tunnel_through_fa_with_source_checks():
    net = make_world(mn={"reverse_tunnel": True})
    attach(net, "fa1")
    fa, ha = core(net, "fa1"), core(net, "ha")
    assert fa.visitors[HOME].reverse and ha.bindings[HOME].reverse
    packet = ipv4_udp(HOME, "10.1.0.9", 6000, 5000, b"up")
    actions = feed(fa, "receive_from_visitor", packet, now=net.now)
    assert actions == [SendIp(ip_in_ip(FA1, HA_ADDR, packet))]
    assert feed(ha, "receive_tunnelled", actions[0].packet, now=net.now) == [DeliverIp(packet)]
    spoofed = ipv4_udp("10.1.0.77", "10.1.0.9", 1, 2, b"x")
    assert feed(ha, "receive_tunnelled", ip_in_ip(FA1, HA_ADDR, spoofed), now=net.now) == []
    assert feed(ha, "receive_tunnelled", ip_in_ip("192.0.2.200", HA_ADDR, packet), now=net.now) == []
    assert ha.counters["drop:reverse-src-not-bound"] == 1 and ha.counters["drop:reverse-outer-mismatch"] == 1
    # forward direction: HA encapsulates, FA decapsulates and hands it to the visitor's lladdr
    down = ipv4_udp("10.1.0.9", HOME, 5000, 6000, b"down")
    (outer,) = feed(ha, "encapsulate", down, now=net.now)
    assert feed(fa, "receive_tunnelled", outer.packet, now=net.now) == [
        DeliverIp(down, "fa1-eth0", "02:aa:00:00:00:50")]


def test_trusted_networks_extension_and_untrusted_drop():
    net = make_world(ha={"trusted_networks": ["10.0.0.0/8"], "drop_untrusted": True})
    attach(net, "outside", coa="192.0.2.10")
    assert core(net, "ha").counters["drop:untrusted-source"] >= 1
    assert not replies_to_mn(net)
    net.call("mn", "link_down")
    attach(net, "inside", coa="10.2.0.10")
    reply = replies_to_mn(net)[-1]
    assert reply.code == 0 and find_extension(reply.extensions, EXT_TRUSTED_NETWORKS) is not None
    assert core(net, "mn").status().trusted_network is True


def test_untrusted_drops_are_logged_with_backoff():
    """RFC 5265: the i-HA drops requests from untrusted sources silently and logs them; a flood
    logs the 1st, 2nd, 4th, 8th... drop, each line with the source and the count so far."""
    ha = HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0",
                                   trusted_networks=[IPv4Network("10.0.0.0/8")], drop_untrusted=True))
    logged = []
    for i in range(9):
        actions = feed(ha, "receive_datagram", _signed_request(now=100.0 + i), udp_from("192.0.2.10", 6000),
                       now=100.0 + i)
        assert all(isinstance(a, Log) for a in actions), f"an untrusted request got an answer: {actions}"
        logged += [a.fields for a in actions if a.event == "untrusted-source-dropped"]
    assert [f["drops"] for f in logged] == [1, 2, 4, 8]
    assert logged[0]["source"] == "192.0.2.10" and logged[0]["port"] == 6000
    assert ha.counters["drop:untrusted-source"] == 9


def test_status_is_json_serialisable():
    import json

    net = make_world()
    attach(net, "fa1")
    for name in ("ha", "fa1", "mn"):
        json.dumps(core(net, name).status().as_dict())


def test_fa_visitor_expires_and_host_route_is_removed():
    net = make_world(ha={"max_lifetime": 5})
    attach(net, "fa1")
    net.call("mn", "link_down")
    net.run(6)
    assert HOME not in core(net, "fa1").visitors
    assert net.actions_of("fa1", RemoveHostRoute) == [RemoveHostRoute(HOME, "fa1-eth0")]
    assert core(net, "fa1").counters["visitors-expired"] == 1
