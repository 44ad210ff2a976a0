"""The home agent core's `reset` (the daemon's control command of the same name): every binding,
tunnel and proxy entry dropped at once, replay state and counters cleared, as after a restart."""
from __future__ import annotations

from ipaddress import IPv4Address as A

from nodes.mip.actions import Log, ProxyArp, RemoveTunnel, SendIcmp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.wire.mip import AgentAdvertisement, RegistrationReply, RegistrationRequest, ntp_now

from fakelink import feed, udp_from

HA_ADDR = A("10.1.1.2")
HOMES = (A("10.1.1.100"), A("10.1.1.101"))
SA = SecurityAssociation(1000, b"0123456789abcdef")


def _ha(**kw) -> HomeAgent:
    return HomeAgent(HomeAgentConfig(HA_ADDR, [MobileNodeEntry(h, SA) for h in HOMES], home_iface="home0", **kw))


def _register(ha: HomeAgent, home: A, now: float, ident: int | None = None) -> int:
    req = RegistrationRequest(0, 1800, home, HA_ADDR, A("192.0.2.100"), ident or ntp_now(now), [])
    actions = feed(ha, "receive_datagram", SA.sign(req.encode()), udp_from("192.0.2.100", 434, HA_ADDR), now=now)
    return RegistrationReply.decode(next(a for a in actions if isinstance(a, SendUdp)).payload).code


def test_reset_drops_every_binding_with_its_tunnel_and_proxy_entry_and_sends_nothing():
    ha, now = _ha(), 1_700_000_000.0
    assert [_register(ha, h, now) for h in HOMES] == [0, 0]
    actions = feed(ha, "reset", now=now + 1)
    assert ha.bindings == {} and ha.next_deadline() is None
    assert sorted(a.home for a in actions if isinstance(a, RemoveTunnel)) == sorted(HOMES)
    assert sorted(a.addr for a in actions if isinstance(a, ProxyArp) and not a.on) == sorted(HOMES)
    assert not any(isinstance(a, (SendUdp, SendIcmp)) for a in actions), "a reset sends no reply"
    assert any(isinstance(a, Log) and a.event == "reset" and a.fields["bindings"] == 2 for a in actions)
    assert ha.status().counters == {}


def test_reset_forgets_the_replay_state_like_a_restart():
    ha, now = _ha(), 1_700_000_000.0
    ident = ntp_now(now)
    assert _register(ha, HOMES[0], now, ident) == 0
    assert _register(ha, HOMES[0], now, ident) == 133  # the same identification again: a replay
    feed(ha, "reset", now=now)
    assert _register(ha, HOMES[0], now, ident) == 0  # after a restart the HA knows no earlier one


def test_reset_restarts_advertising_at_sequence_zero():
    ha, now = _ha(advertise=True), 1_700_000_000.0
    feed(ha, "start", now=now)
    feed(ha, "handle_timer", now=now + 1.0)
    actions = feed(ha, "reset", now=now + 1.5)
    adverts = [AgentAdvertisement.decode(a.payload) for a in actions if isinstance(a, SendIcmp)]
    assert [a.sequence for a in adverts] == [0]
    assert ha.next_deadline() == now + 1.5 + ha.config.adv_interval


def test_reset_of_an_idle_home_agent_is_harmless():
    ha = _ha()
    actions = feed(ha, "reset", now=1_700_000_000.0)
    assert [type(a) for a in actions] == [Log]
