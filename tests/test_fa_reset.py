"""The foreign agent daemon's `reset` control command (nodes/daemons/foreign_agent.py reset_core):
the visitor list and the pending requests emptied at once, the visitors' host routes taken away,
nothing sent, and no timer of theirs left to fall due."""
from __future__ import annotations

from ipaddress import IPv4Address as A

from nodes.daemons.foreign_agent import reset_core
from nodes.mip.actions import AddHostRoute, Log, RemoveHostRoute, SendIcmp, SendIp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.fa import ForeignAgent, ForeignAgentConfig
from nodes.wire.mip import RegistrationReply, RegistrationRequest, ntp_now

from fakelink import feed, udp_from

FA = A("192.0.2.1")
HA = A("10.1.1.2")
HOMES = (A("10.1.1.100"), A("10.1.1.101"), A("10.1.1.102"))
SA = SecurityAssociation(1000, b"0123456789abcdef")
MAC = "02:4d:4e:00:00:01"


def _fa() -> ForeignAgent:
    return ForeignAgent(ForeignAgentConfig(FA, iface="fn1", pending_timeout=7.0))


def _request(fa: ForeignAgent, home: A, now: float, flags: int = 0) -> int:
    ident = ntp_now(now)
    req = RegistrationRequest(flags, 600, home, HA, FA, ident, [])
    actions = feed(fa, "receive_datagram", SA.sign(req.encode()), udp_from(home, 434, FA, ttl=255, lladdr=MAC), now=now)
    assert any(isinstance(a, SendUdp) and a.dst == HA for a in actions), actions
    return ident


def _accept(fa: ForeignAgent, home: A, ident: int, now: float) -> list:
    reply = RegistrationReply(0, 600, home, HA, ident, [])
    return feed(fa, "receive_datagram", SA.sign(reply.encode()), udp_from(HA, 434, FA), now=now)


def test_reset_empties_visitors_and_pending_and_removes_host_routes():
    fa, now = _fa(), 1_700_000_000.0
    for home in HOMES[:2]:
        actions = _accept(fa, home, _request(fa, home, now, flags=0x02 if home == HOMES[0] else 0), now + 0.1)
        assert any(isinstance(a, AddHostRoute) and a.addr == home for a in actions)
    _request(fa, HOMES[2], now + 0.2)  # left pending
    assert len(fa.visitors) == 2 and len(fa.pending) == 1

    actions = reset_core(fa, now + 1)
    assert fa.visitors == {} and fa.pending == {}
    assert sorted(a.addr for a in actions if isinstance(a, RemoveHostRoute)) == sorted(HOMES[:2])
    assert not any(isinstance(a, (SendUdp, SendIcmp, SendIp)) for a in actions), "a reset sends nothing"
    log = next(a for a in actions if isinstance(a, Log))
    assert log.event == "reset" and log.fields["visitors"] == 2 and log.fields["pending"] == 1


def test_after_reset_no_timer_of_a_visitor_or_pending_request_falls_due():
    fa, now = _fa(), 1_700_000_000.0
    home = HOMES[0]
    _accept(fa, home, _request(fa, home, now), now + 0.1)
    _request(fa, HOMES[1], now + 0.2)
    reset_core(fa, now + 1)
    # only the advertiser's timers may remain (none here: the agent was never started)
    assert fa.next_deadline() is None
    assert feed(fa, "handle_timer", now=now + 10_000) == []


def test_a_late_reply_after_reset_is_not_relayed_and_makes_no_visitor():
    fa, now = _fa(), 1_700_000_000.0
    ident = _request(fa, HOMES[0], now)
    reset_core(fa, now + 0.5)
    actions = _accept(fa, HOMES[0], ident, now + 0.6)
    assert actions == [] and fa.visitors == {}


def test_reset_keeps_advertising_and_its_sequence():
    fa, now = _fa(), 1_700_000_000.0
    feed(fa, "start", now=now)
    feed(fa, "handle_timer", now=now + fa.config.adv_interval)
    seq = fa.sequence
    reset_core(fa, now + 1.5)
    assert fa.sequence == seq and fa.next_deadline() is not None


def test_reset_of_an_idle_agent_only_logs():
    actions = reset_core(_fa(), 1_700_000_000.0)
    assert [type(a) for a in actions] == [Log]
