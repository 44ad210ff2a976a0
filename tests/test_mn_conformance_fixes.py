"""The Mobile Node's and the RFC 5265 mobile VPN node's conformance fixes (cases/conformance/mip_mn/),
each driven in memory: the sans-I/O cores (nodes/mip/mn.py, mn_messages.py, rfc5265_location.py),
the wire decoders (nodes/wire/mip.py), and the runtime pieces whose timing is the fix (the trust
probe's retransmissions, the mobile node's first gratuitous ARP) with a fake event loop."""
from __future__ import annotations

import asyncio
import struct
from ipaddress import IPv4Address as A, IPv4Network

import pytest

from nodes.core import Addr, seeded_random
from nodes.mip.actions import GratuitousArp, SendIcmp, SendUdp
from nodes.mip.auth import SecurityAssociation
from nodes.mip.ha import HomeAgent, HomeAgentConfig, MobileNodeEntry
from nodes.mip.mn import MobileNode, MobileNodeConfig
from nodes.mip.mn_messages import Attempt, check_reply, inner_ttl_expired, request_for, tunnel_data_inner
from nodes.mip.rfc5265_location import I_HA_NONE, I_HA_REPLY, I_HA_TRUSTED, decide, i_ha_outcome, probe_attempt
from nodes.mip.mn_messages import Identifications
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import IPv4
from nodes.wire.mip import (
    EXT_MN_HA_AUTH, AgentAdvertisement, AgentFlags, RegistrationReply, RegistrationRequest, RequestFlags,
    TrustedNetworksConfigured, TunnelData, UdpTunnelReply, append_auth, encode_extension, find_extension,
)
from fakelink import feed

HOME, HA, FA, OTHER = A("10.1.1.100"), A("10.1.1.2"), A("192.0.2.129"), A("192.0.2.130")
SA = SecurityAssociation(1000, b"0123456789abcdef")
T0 = 1_700_000_000.0


def node(**kw) -> MobileNode:
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA, iface="r-eth0", **kw)
    return MobileNode(cfg, random=seeded_random(5))


def advert(flags="F", src=FA, seq=300, lifetime=9, prefix=None) -> bytes:
    bits = 0
    for letter in flags:
        bits |= AgentFlags[letter]
    return AgentAdvertisement(seq, 600, bits, [src], lifetime=lifetime,
                              routers=[(src, 0)] if prefix is not None else [],
                              prefix_lengths=[prefix] if prefix is not None else None).encode()


def hear(mn, data: bytes, src, now: float) -> list:
    return feed(mn, "receive_icmp", data, Addr(str(src), 0, "224.0.0.1", 0), now=now)


def requests(actions) -> list:
    return [RegistrationRequest.decode(a.payload) for a in actions if isinstance(a, SendUdp)]


def accept(mn, now: float, lifetime: int = 600) -> list:
    a = mn.attempt
    reply = RegistrationReply(0, lifetime, HOME, HA, a.identification)
    return feed(mn, "receive_datagram", SA.sign(reply.encode()), Addr(str(a.dst), 434, str(HOME), 434), now=now)


# ---- MIP.MN.ADV.1: reserved advertisement bits are ignored on reception (RFC 5944 2.1.1) ----------

def test_an_advertisement_with_the_reserved_bits_set_is_decoded_and_used():
    raw = AgentAdvertisement(300, 600, int(AgentFlags.F | AgentFlags.r) | 0x0001, [FA]).encode()
    adv = AgentAdvertisement.decode(raw)
    assert adv.has(AgentFlags.F) and adv.care_of_addresses == [FA]
    mn = node()
    feed(mn, "link_up", now=T0)
    (req,) = requests(hear(mn, raw, FA, T0 + 0.1))
    assert req.care_of_address == FA


# ---- MIP.MN.SOL.4: solicitation times randomised (RFC 5944 2.4) -----------------------------------

def test_solicitation_intervals_are_randomised_above_the_nominal_ones():
    mn = node()
    times = [T0] if any(isinstance(a, SendIcmp) for a in feed(mn, "link_up", now=T0)) else []
    while len(times) < 6:
        t = mn.next_deadline()
        if any(isinstance(a, SendIcmp) for a in feed(mn, "handle_timer", now=t)):
            times.append(t)
    gaps = [b - a for a, b in zip(times, times[1:])]
    nominal = [1, 1, 2, 4, 8]
    assert all(n * 1.01 < g <= n * 1.05 for n, g in zip(nominal, gaps)), gaps  # never above one a second
    assert len({round(g / n, 4) for n, g in zip(nominal, gaps)}) > 1, "the same factor every time"


# ---- MIP.MN.REG.7: M and G only toward an agent that advertises them (RFC 5944 3.6.1.2) ----------

@pytest.mark.parametrize("flags, expected", [("F", 0), ("FG", RequestFlags.G)])
def test_gre_is_asked_of_a_foreign_agent_only_when_it_advertises_g(flags, expected):
    mn = node(encapsulation="gre")
    feed(mn, "link_up", now=T0)
    (req,) = requests(hear(mn, advert(flags), FA, T0 + 0.1))
    assert req.flags & (RequestFlags.M | RequestFlags.G) == expected
    accept(mn, T0 + 0.2)
    assert mn.status().tunnel == ("gre" if expected else "ipip")


def test_a_colocated_node_asks_for_its_encapsulation_itself():
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA, encapsulation="minimal")
    attempt = Attempt("colocated", 600, A("192.0.2.100"), HA, A("192.0.2.100"), identification=1)
    assert RegistrationRequest.decode(request_for(cfg, attempt)).flags & RequestFlags.M


# ---- MIP.MN.REG.8: the lifetime asked of a foreign agent is within its advertised one (3.6.1.2) ----

def test_the_lifetime_asked_of_a_foreign_agent_is_no_longer_than_it_advertises():
    """'If the mobile node is registering with a foreign agent, the Lifetime SHOULD NOT exceed the
    value in the Registration Lifetime field of the Agent Advertisement' (RFC 5944 3.6.1.2)."""
    mn = node(lifetime=600)
    feed(mn, "link_up", now=T0)
    short = AgentAdvertisement(300, 120, int(AgentFlags.F), [FA], lifetime=9).encode()
    (req,) = requests(hear(mn, short, FA, T0 + 0.1))
    assert req.lifetime == 120
    mn = node(lifetime=600)
    feed(mn, "link_up", now=T0)
    (req,) = requests(hear(mn, advert(), FA, T0 + 0.1))  # advertises 600: the configured 600
    assert req.lifetime == 600


def test_a_69_from_the_agent_is_answered_with_the_lifetime_it_offers():
    """An agent that denies the lifetime with 69 (more than it accepts, though within what it
    advertised) offers its maximum in the reply's Lifetime: the node asks again with it."""
    mn = node(lifetime=600)
    feed(mn, "link_up", now=T0)
    (first,) = requests(hear(mn, advert(), FA, T0 + 0.1))
    denial = RegistrationReply(69, 300, HOME, HA, first.identification).encode()
    (again,) = requests(feed(mn, "receive_datagram", denial, Addr(str(FA), 434, str(HOME), 434), now=T0 + 0.2))
    assert (first.lifetime, again.lifetime) == (600, 300)


# ---- MIP.MN.REPLY.5: a reply with two MN-HA extensions is discarded (RFC 5944 3.6.2.1) -----------

def test_a_reply_with_two_mn_ha_extensions_is_discarded():
    cfg = MobileNodeConfig(HOME, HA, IPv4Network("10.1.1.0/24"), SA)
    attempt = Attempt("fa", 600, FA, FA, HOME, identification=42)
    once = SA.sign(RegistrationReply(0, 600, HOME, HA, 42).encode())
    assert check_reply(cfg, attempt, once)[0] is not None
    twice = append_auth(once, EXT_MN_HA_AUTH, SA.spi, SA.key)
    assert check_reply(cfg, attempt, twice) == (None, "reply-duplicate-mn-ha")


# ---- MIP.MN.MOVE.5 / MOVE.6: no move while the agent advertises; one registration a second -------

def test_another_agent_does_not_move_the_node_while_its_agent_advertises():
    mn = node()
    feed(mn, "link_up", now=T0)
    hear(mn, advert(), FA, T0 + 0.1)
    accept(mn, T0 + 0.15)
    assert requests(hear(mn, advert(src=OTHER), OTHER, T0 + 2.0)) == []
    assert requests(hear(mn, advert(), FA, T0 + 2.1)) == [] and mn.status().agent["address"] == str(FA)
    assert requests(hear(mn, advert(src=OTHER), OTHER, T0 + 2.2)) == []
    # ours falls silent: the other agent, still within its lifetime, is registered with at once
    (req,) = requests(feed(mn, "handle_timer", now=T0 + 2.1 + 9))
    assert req.care_of_address == OTHER


def test_alternating_agents_get_at_most_one_request_a_second():
    mn = node()
    feed(mn, "link_up", now=T0)
    sent = []
    for i in range(12):  # different prefixes (RFC 5944 2.4.2.2): each advertisement is a move
        now = T0 + 0.25 * i
        src, prefix = (FA, 24) if i % 2 == 0 else (A("198.51.100.1"), 24)
        sent += [now for _ in requests(hear(mn, advert(src=src, prefix=prefix), src, now))]
        while mn.next_deadline() is not None and mn.next_deadline() <= now + 0.25:
            t = mn.next_deadline()
            sent += [t for _ in requests(feed(mn, "handle_timer", now=t))]
    # RFC 5944 2.4.2: once a second on average: a burst of two, then a second apart
    assert 4 <= len(sent) <= 5, sent
    assert all(j - i + 1 <= sent[j] - sent[i] + 2 + 1e-6 for i in range(len(sent)) for j in range(i, len(sent))), sent
    assert all(b - a >= 0.999 for a, b in zip(sent[2:], sent[3:])), sent


# ---- MIP.MN.ARP.1: away, no answer to ARP for the home address but the agent's unicast one --------

def test_away_only_the_agents_unicast_arp_for_the_home_address_is_answered():
    mn = node()
    feed(mn, "link_up", now=T0)
    hear(mn, advert(), FA, T0 + 0.1)
    accept(mn, T0 + 0.15)
    assert not mn.answers_arp_for_home(A("192.0.2.140"), broadcast=True)
    assert not mn.answers_arp_for_home(FA, broadcast=True)
    assert not mn.answers_arp_for_home(A("192.0.2.140"), broadcast=False)
    assert mn.answers_arp_for_home(FA, broadcast=False)


# ---- MIP.MN.HOME.2: the first gratuitous ARP leaves before the deregistration ---------------------

class _FakeLink:
    def __init__(self, log):
        self.log = log

    def gratuitous_arp(self, ip):
        self.log.append(("garp", A(ip)))
        return True


class _FakeLoop:
    def __init__(self):
        self.timers = []

    def call_at(self, when, fn, *args):
        return self._timer(when, fn)

    def call_later(self, delay, fn, *args):
        return self._timer(delay, fn)

    def call_soon(self, fn, *args):
        return self._timer(0, fn)

    def _timer(self, at, fn):
        handle = asyncio.TimerHandle(at, fn, (), asyncio.new_event_loop())
        self.timers.append((at, fn, handle))
        return handle

    def add_reader(self, *a):
        pass

    def remove_reader(self, *a):
        pass


def test_the_mobile_node_sends_its_first_gratuitous_arp_at_once():
    from nodes.daemons.mobile_node import MobileNodeExecutor
    sent = []
    ex = MobileNodeExecutor(lambda *a, **k: None, raw=None, links={"r-eth0": _FakeLink(sent)},
                            capture="src", default_iface="r-eth0")
    ex.attach(_FakeLoop())
    ex.run([GratuitousArp(HOME, "r-eth0")])
    assert sent == [("garp", HOME)], "the first one waits for the pacer's turn: after the deregistration"


# ---- MIP.MN.DECAP.10, NAT.7-9: the co-located node's data plane ----------------------------------

def test_an_inner_datagram_with_ttl_0_is_discarded():
    assert inner_ttl_expired(IPv4(A("198.51.100.7"), HOME, 1, b"\x08\0\0\0\0\0\0\0", ttl=0).encode())
    assert not inner_ttl_expired(IPv4(A("198.51.100.7"), HOME, 1, b"\x08\0\0\0\0\0\0\0", ttl=1).encode())


def test_udp_tunnel_data_must_carry_the_bindings_next_header():
    inner = IPv4(A("198.51.100.7"), HOME, 1, b"\x08\0\0\0\0\0\0\0").encode()
    assert tunnel_data_inner(TunnelData(4, inner).encode()) == inner
    with pytest.raises(DecodeError) as err:
        tunnel_data_inner(TunnelData(55, inner).encode())
    assert err.value.reason == "next-header-mismatch"


def test_the_tunnel_data_reserved_field_is_ignored():
    inner = IPv4(A("198.51.100.7"), HOME, 1, b"\x08\0\0\0\0\0\0\0").encode()
    raw = struct.pack("!BBH", 4, 4, 0x1234) + inner
    assert TunnelData.decode(raw).payload == inner and tunnel_data_inner(raw) == inner


def test_the_udp_tunnel_reply_reserved_bits_are_ignored():
    body = struct.pack("!BBHH", 0, 0, 0x8000 | 0x1234, 30)
    raw = RegistrationReply(0, 600, HOME, HA, 1).encode() + bytes([44, len(body)]) + body
    ext = find_extension(RegistrationReply.decode(raw).extensions, 44)
    assert ext == UdpTunnelReply(0, True, 30)
    assert encode_extension(ext)[2:] == struct.pack("!BBHH", 0, 0, 0x8000, 30)  # sent as zero


# ---- MIP.MVN.DETECT.10: a denial carrying 149 does not mean inside (RFC 5265 3.2.3) ---------------

I_HOA, I_HA = A("10.1.1.100"), A("10.1.1.2")
MVN = MobileNodeConfig(I_HOA, I_HA, IPv4Network("10.1.1.0/24"), SA, iface="vpn0", reverse_tunnel=True)


def _i_ha_reply(code: int, tnc: bool = True):
    attempt = probe_attempt(MVN, "10.1.4.100", 100.0, Identifications(lambda n: bytes(n)).next(100.0), False)
    exts = [TrustedNetworksConfigured()] if tnc else []
    reply = SA.sign(RegistrationReply(code, 0 if code else 600, I_HOA, I_HA, attempt.identification, exts).encode())
    return attempt, reply


def test_a_denial_with_149_is_an_answer_but_not_inside():
    attempt, reply = _i_ha_reply(129)
    assert i_ha_outcome(MVN, attempt, reply) == (I_HA_REPLY, None)
    assert decide(I_HA_REPLY, "none", 0.0, False).location == "outside"
    attempt, reply = _i_ha_reply(0)
    assert i_ha_outcome(MVN, attempt, reply) == (I_HA_TRUSTED, None)


# ---- MIP.MVN.DETECT.12 / 16 / 17: the trust probe's retransmissions and late answers --------------

class _FakeSock:
    def __init__(self):
        self.sent, self.closed = [], False

    def setsockopt(self, *a):
        pass

    def fileno(self):
        return 99

    def sendto(self, data, to):
        self.sent.append(data)

    def close(self):
        self.closed = True


@pytest.fixture
def probe(monkeypatch):
    from nodes.runtime.mip import trust_probe
    sock, inbox = _FakeSock(), []
    monkeypatch.setattr(trust_probe, "udp_socket", lambda **kw: sock)
    monkeypatch.setattr(trust_probe, "recv_udp", lambda s: inbox.pop(0) if inbox else None)

    async def make():
        return trust_probe.TrustProbe(MVN, lambda *a, **k: None)
    p = asyncio.run(make())
    p.loop = _FakeLoop()
    p.sock_, p.inbox = sock, inbox
    return p


def _fire(p, at=None):
    """Run the earliest pending timer (not cancelled); returns its delay."""
    live = sorted([t for t in p.loop.timers if not t[2].cancelled()], key=lambda t: t[0])
    at, fn, handle = live[0]
    p.loop.timers.remove((at, fn, handle))
    fn()
    return at


def test_detection_requests_are_at_least_a_second_apart_and_back_off(probe):
    probe.probe("10.1.4.100", False, 100.0)
    assert len(probe.sock_.sent) == 1
    assert _fire(probe) >= 1.0 and len(probe.sock_.sent) == 2
    assert _fire(probe) >= 2.0 and len(probe.sock_.sent) == 3


def test_an_unanswered_probe_lingers_and_a_late_149_still_counts(probe):
    probe.probe("10.1.4.100", False, 100.0)
    probe.stop()  # the window passed: the node decided "outside"
    assert not probe.sock_.closed, "RFC 5265 3.3: keep retransmitting to the i-HA for a while"
    _fire(probe)
    assert len(probe.sock_.sent) == 2
    ha = HomeAgent(HomeAgentConfig(I_HA, [MobileNodeEntry(I_HOA, SA)], home_iface="home0",
                                   trusted_networks=["10.1.0.0/16"]))
    ha.receive_datagram(request_for(MVN, probe.attempt), Addr("10.1.4.100", 40000, str(I_HA), 434), 101.0)
    (reply,) = [a for a in ha.drain_actions() if isinstance(a, SendUdp)]
    probe.inbox.append((reply.payload, Addr(str(I_HA), 434, "10.1.4.100", 40000), 0))
    probe._on_reply()
    assert probe.outcome == I_HA_TRUSTED and probe.sock_.closed
    assert decide(probe.outcome, "accepted", 1.4, False).location == "inside"


def test_an_answered_probe_stops_at_once(probe):
    probe.probe("10.1.4.100", False, 100.0)
    probe.outcome = I_HA_REPLY
    probe.stop()
    assert probe.sock_.closed and probe.outcome != I_HA_NONE


# ---- MIP.MVN.DETECT.14 (policy only): an unanswered inside re-registration ends "inside" ----------

def test_an_inside_registration_that_runs_out_unrenewed_has_lapsed():
    from nodes.mip.rfc5265_location import inside_lapsed
    mn = MobileNode(MVN)
    feed(mn, "link_up", care_of_address="10.1.4.100", now=100.0)
    a = mn.attempt
    reply = SA.sign(RegistrationReply(0, 1, I_HOA, I_HA, a.identification, [TrustedNetworksConfigured()]).encode())
    feed(mn, "receive_datagram", reply, Addr(str(I_HA), 434, "10.1.4.100", 434), now=100.05)
    assert not inside_lapsed(mn.status(100.5).as_dict(), 100.5)
    feed(mn, "handle_timer", now=100.9)  # the renewal goes out, the i-HA stays silent
    assert mn.status().state == "registering"
    assert not inside_lapsed(mn.status(100.9).as_dict(), 100.9)
    assert inside_lapsed(mn.status(101.1).as_dict(), 101.1)


def test_a_move_to_another_link_is_registered_at_once_however_soon():
    mn = node()
    for i, src in enumerate([FA, OTHER, FA, OTHER]):
        now = T0 + 0.2 * i
        feed(mn, "link_down", now=now)
        feed(mn, "link_up", now=now)
        (req,) = requests(hear(mn, advert(src=src), src, now + 0.01))
        assert req.care_of_address == src
