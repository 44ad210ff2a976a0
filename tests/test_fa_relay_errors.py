"""The FA answers a pending visitor at once when an ICMP error comes back for the request it relayed
(RFC 5944: 80 home network unreachable, 81 HA host unreachable, 82 HA port unreachable,
88 HA unreachable), instead of waiting for the 78 timeout. Cores wired by tests/fakelink.py."""
from __future__ import annotations

from ipaddress import IPv4Address as A, IPv4Network

import pytest

from nodes.mip.actions import Log, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig, relay_error_code
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.wire.mip import RegistrationReply, RegistrationRequest, ntp_now
from fakelink import FakeNet, Packet, attach, feed, replies_to_mn, udp_from

HA_ADDR = A("10.1.0.1")
HOME = A("10.1.0.50")
HOME_NET = IPv4Network("10.1.0.0/24")
FA1 = A("198.51.100.1")
SA = SecurityAssociation(1000, b"0123456789abcdef")
MN_MAC = "02:aa:00:00:00:50"
OTHER_HA = A("10.99.0.1")


def make_world(mn: dict | None = None) -> FakeNet:
    net = FakeNet()
    net.add("ha", HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(HOME, SA)], home_iface="home0")),
            [HA_ADDR], link="home")
    net.add("fa1", ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0")), [FA1], link="fa1")
    net.call("fa1", "start")
    mn_cfg = MobileNodeConfig(HOME, HA_ADDR, HOME_NET, SA, iface="mn0", **(mn or {}))
    net.add("mn", MobileNode(mn_cfg), [HOME], link="home", lladdr=MN_MAC)
    return net


def core(net: FakeNet, name: str):
    return net.nodes[name].core


@pytest.mark.parametrize("icmp_type, icmp_code, expected", [
    (3, 0, 80), (3, 6, 80), (3, 11, 80),  # network unreachable kinds
    (3, 1, 81), (3, 7, 81), (3, 12, 81),  # host unreachable kinds
    (3, 3, 82),  # port unreachable
    (3, 2, 88), (3, 5, 88), (3, 9, 88), (3, 10, 88), (3, 13, 88), (3, 15, 88),  # other unreachable codes
    (11, 0, 88),  # TTL exceeded in transit
    (3, 4, None),  # fragmentation needed: a path MTU report, not unreachability
    (11, 1, None), (0, 0, None), (5, 1, None), (12, 0, None),
])
def test_icmp_error_maps_to_rfc5944_code(icmp_type, icmp_code, expected):
    assert relay_error_code(icmp_type, icmp_code) == expected


def _blackhole_ha(net, seen: list):
    """Drop what goes to the HA, keeping the packets (what an ICMP error would quote)."""
    def match(pkt: Packet) -> bool:
        if pkt.dst == HA_ADDR:
            seen.append(pkt)
            return True
        return False
    net.drop_when(match)


def _codes_from_fa(net) -> list[tuple[float, int]]:
    return [(t, RegistrationReply.decode(a.payload).code) for t, a in net.nodes["fa1"].actions
            if isinstance(a, SendUdp) and a.dst == HOME]


@pytest.mark.parametrize("icmp_code, expected", [(0, 80), (1, 81), (3, 82), (13, 88)])
def test_relayed_request_answered_at_once_on_unreachable(icmp_code, expected):
    net = make_world(mn={"retransmit_initial": 20.0})
    seen: list[Packet] = []
    _blackhole_ha(net, seen)
    attach(net, "fa1", settle=0.5)
    assert len(seen) == 1 and core(net, "fa1").status().pending == 1
    relayed = seen[0]
    sent_at = net.now
    net.call("fa1", "relay_error", relayed.dst, relayed.dport, 3, icmp_code, quoted=relayed.payload,
             reporter=A("203.0.113.1"))
    net.run(0.01)
    fa, mn = core(net, "fa1"), core(net, "mn")
    assert _codes_from_fa(net) == [(sent_at, expected)]
    denial = [a for _, a in net.nodes["fa1"].actions if isinstance(a, SendUdp) and a.dst == HOME][0]
    assert denial.src == FA1 and denial.lladdr == MN_MAC, "the denial goes to the visitor on its link"
    reply = RegistrationReply.decode(denial.payload)
    request = RegistrationRequest.decode(relayed.payload)
    assert (reply.home_address, reply.home_agent, reply.identification) == \
        (HOME, HA_ADDR, request.identification)
    assert mn.last_code == expected
    assert fa.status().pending == 0
    counters = fa.status().counters
    assert counters["relay-errors"] == 1 and counters[f"relay-errors:{expected}"] == 1
    assert counters[f"denied:{expected}"] == 1
    logs = [a for a in net.actions_of("fa1", Log) if a.event == "relay-error"]
    assert logs and logs[0].fields["reporter"] == "203.0.113.1" and logs[0].fields["code"] == expected
    net.run(9.0)  # no 78 follows: the request is no longer pending
    assert [c for _, c in _codes_from_fa(net)] == [expected]


def _fa(**kw) -> ForeignAgent:
    return ForeignAgent(ForeignAgentConfig(FA1, iface="fa1-eth0", **kw))


def _relay(fa: ForeignAgent, now: float, ha=HA_ADDR, ident: int | None = None) -> bytes:
    req = RegistrationRequest(0, 1800, HOME, A(ha), FA1, ident or ntp_now(now))
    raw = SA.sign(req.encode())
    actions = feed(fa, "receive_datagram", raw, udp_from(HOME, 434, FA1, lladdr=MN_MAC, ttl=255), now=now)
    assert [a.dst for a in actions if isinstance(a, SendUdp)] == [A(ha)], actions
    return actions[0].payload


def _denials(actions) -> list[RegistrationReply]:
    return [RegistrationReply.decode(a.payload) for a in actions if isinstance(a, SendUdp) and a.dst == HOME]


def test_the_quote_names_the_request_answered():
    fa, now = _fa(), 1_700_000_000.0
    first, second = _relay(fa, now), _relay(fa, now, ident=ntp_now(now) + 1)
    actions = feed(fa, "relay_error", HA_ADDR, 434, 3, 3, quoted=second, now=now + 0.01)
    assert [(r.code, r.identification) for r in _denials(actions)] == [(82, ntp_now(now) + 1)]
    assert fa.status().pending == 1
    # the other request still times out normally
    assert [(r.code, r.identification) for r in _denials(feed(fa, "handle_timer", now=now + 7.0))] == \
        [(78, RegistrationRequest.decode(first).identification)]


def test_a_quote_too_short_answers_every_request_pending_at_that_home_agent():
    fa, now = _fa(), 1_700_000_000.0
    _relay(fa, now)
    _relay(fa, now, ident=ntp_now(now) + 1)
    _relay(fa, now, ha=OTHER_HA, ident=ntp_now(now) + 2)
    actions = feed(fa, "relay_error", HA_ADDR, 434, 3, 1, quoted=b"", now=now + 0.01)  # only the UDP header quoted
    assert sorted(r.code for r in _denials(actions)) == [81, 81]
    assert fa.status().pending == 1
    actions = feed(fa, "relay_error", OTHER_HA, 434, 3, 0, quoted=b"\x01\x00", now=now + 0.02)  # a few bytes
    assert [(r.code, r.home_agent) for r in _denials(actions)] == [(80, OTHER_HA)]
    assert fa.status().pending == 0 and feed(fa, "handle_timer", now=now + 8.0) == []


@pytest.mark.parametrize("what", ["other-ha", "other-ident", "other-port", "a-reply", "frag-needed", "redirect"])
def test_errors_that_do_not_concern_a_pending_request_are_ignored(what):
    fa, now = _fa(), 1_700_000_000.0
    relayed = _relay(fa, now)
    req = RegistrationRequest.decode(relayed)
    ha, port, icmp_type, icmp_code, quoted = HA_ADDR, 434, 3, 3, relayed
    if what == "other-ha":
        ha = OTHER_HA
    elif what == "other-ident":
        quoted = RegistrationRequest(0, 1800, HOME, HA_ADDR, FA1, req.identification + 5).encode()
    elif what == "other-port":
        port = 9000
    elif what == "a-reply":  # an error about a reply we sent to a visitor that has gone
        quoted = RegistrationReply(82, 0, HOME, HA_ADDR, req.identification).encode()
    elif what == "frag-needed":
        icmp_code = 4
    else:
        icmp_type, icmp_code = 5, 1
    assert feed(fa, "relay_error", ha, port, icmp_type, icmp_code, quoted=quoted, now=now + 0.01) == []
    assert fa.status().pending == 1
    assert fa.status().counters["relay-errors"] == 1
    assert any(k.startswith("drop:relay-error") for k in fa.status().counters)
    assert [r.code for r in _denials(feed(fa, "handle_timer", now=now + 7.0))] == [78], "the timeout still answers it"


def test_an_error_after_the_reply_changes_nothing():
    net = make_world()
    attach(net, "fa1")
    fa = core(net, "fa1")
    assert replies_to_mn(net)[-1].code == 0 and fa.visitors
    relayed = [a for a in net.actions_of("fa1", SendUdp) if a.dst == HA_ADDR][-1]
    actions = feed(fa, "relay_error", HA_ADDR, 434, 3, 3, quoted=relayed.payload, now=net.now)
    assert actions == [] and fa.status().counters["drop:relay-error-unmatched"] == 1
    assert HOME in fa.visitors
