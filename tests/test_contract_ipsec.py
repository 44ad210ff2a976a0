"""The IPsec cores (IKE initiator and responder, ESP SAs, NAPT) against nodes/core.py's contract,
through the generic harness tests/core_contract.py."""
from __future__ import annotations

import pytest
from core_contract import CoreCase, check_contract

from nodes.core import Addr, seeded_random
from nodes.ipsec import client_session as cs
from nodes.ipsec.esp_sa import ALGORITHMS, Lifetime, make_sa
from nodes.ipsec.lifetime_policy import LifetimePolicy, RekeyChild
from nodes.ipsec.ike import Established, Failed, IkeConfig, IkeCore, IkeSaClosed, SendIke, UserPolicy
from nodes.ipsec.napt import Napt
from nodes.wire.ipv4 import ipv4_udp

CLIENT, GATEWAY, HOST, G_I = "198.51.100.10", "203.0.113.1", "192.168.1.20", "192.168.1.1"
TO_GATEWAY, TO_CLIENT = Addr(CLIENT, 500, GATEWAY, 500), Addr(GATEWAY, 500, CLIENT, 500)


def gateway_core(rnd) -> IkeCore:
    users = {"alice@example": UserPolicy(psk=b"alice-secret", subnets=["10.1.0.0/16"])}
    return IkeCore(IkeConfig("gw.example", users=users), random=rnd)


def client_core(rnd) -> IkeCore:
    return IkeCore(IkeConfig("alice@example", psk=b"alice-secret", remote_id="gw.example",
                             request_address=False), random=rnd)


def _sent(core: IkeCore) -> list[bytes]:
    return [a.data for a in core.drain_actions() if isinstance(a, SendIke)]


def init_request() -> bytes:
    """An IKE_SA_INIT request of a client core with a fixed random source."""
    cl = client_core(seeded_random(5))
    cl.connect(GATEWAY, CLIENT, 1000.0)
    return _sent(cl)[0]


def init_response(initiator: IkeCore) -> list[tuple[bytes, Addr]]:
    """A gateway core's answer to the IKE_SA_INIT request `initiator` sent."""
    request = next(iter(initiator.sas.values())).init_request
    gw = gateway_core(seeded_random(5))
    gw.receive_datagram(request, TO_GATEWAY, 1000.0)
    return [(data, TO_CLIENT) for data in _sent(gw)]


IKE_INITIATOR = CoreCase(name="ike-initiator", make=client_core,
                         start=lambda core, now: core.connect(GATEWAY, CLIENT, now),
                         valid=init_response, garbage_addr=TO_CLIENT)
IKE_RESPONDER = CoreCase(name="ike-responder", make=gateway_core,
                         valid=lambda core: [(init_request(), TO_GATEWAY)], garbage_addr=TO_GATEWAY)

ALG = "aes-cbc-128-hmac-sha256-128"  # the algorithm with a random IV
KEYS = (b"e" * ALGORITHMS[ALG].enc_keymat_len, b"i" * ALGORITHMS[ALG].integ_key_len)
SPI = 0xC0FFEE01
ESP_ADDR = Addr(CLIENT, 0, GATEWAY, 0)


def esp_packets(core) -> list[tuple[bytes, Addr]]:
    out = make_sa(ALG, *KEYS, SPI, "out", 1000.0, random=seeded_random(3))
    return [(out.encrypt(ipv4_udp("10.9.0.1", HOST, 1000 + i, 53, b"q" * 40), 1000.0), ESP_ADDR) for i in range(3)]


ESP_INBOUND = CoreCase(name="esp-inbound",
                       make=lambda rnd: make_sa(ALG, *KEYS, SPI, "in", 1000.0, Lifetime(soft_seconds=10,
                                                                                          hard_seconds=20), random=rnd),
                       valid=esp_packets, garbage_addr=ESP_ADDR)
ESP_OUTBOUND = CoreCase(name="esp-outbound",
                        make=lambda rnd: make_sa(ALG, *KEYS, SPI, "out", 1000.0, Lifetime(soft_seconds=10),
                                                 random=rnd),
                        start=lambda core, now: core.encrypt(ipv4_udp("10.9.0.1", HOST, 1000, 53, b"q"), now) and None,
                        garbage_addr=ESP_ADDR)


def napt_start(core: Napt, now: float) -> None:
    core.outbound(ipv4_udp("10.9.0.1", HOST, 4000, 53, b"query"), "alice", now)


NAPT = CoreCase(name="napt", make=lambda rnd: Napt(G_I, ports=(61000, 61010)), start=napt_start,
                valid=lambda core: [(ipv4_udp(HOST, G_I, 53, 4000, b"answer"), Addr(HOST, 53, G_I, 4000))],
                garbage_addr=Addr(HOST, 53, G_I, 4000))


SESSION = CoreCase(name="client-session", make=lambda rnd: cs.ClientSession("vpn.example", None, 2.0),
                   start=lambda core, now: core.resolved(None, "no such name", now))
LIFETIME_POLICY = CoreCase(name="lifetime-policy", make=lambda rnd: LifetimePolicy((2.0, 4.0), rnd),
                           start=lambda core, now: core.soft_expired(0xC0FFEE01, now))


@pytest.mark.parametrize("case", [IKE_INITIATOR, IKE_RESPONDER, ESP_INBOUND, ESP_OUTBOUND, NAPT, SESSION,
                                  LIFETIME_POLICY], ids=lambda c: c.name)
def test_ipsec_cores_follow_the_core_contract(case):
    check_contract(case)


def test_ike_exchange_replays_byte_for_byte():
    """With the same seeded random source, a whole handshake is the same bytes twice."""
    def handshake() -> list[bytes]:
        cl, gw = client_core(seeded_random(11)), gateway_core(seeded_random(12))
        cl.connect(GATEWAY, CLIENT, 1000.0)
        wire, to_gw = [], _sent(cl)
        while to_gw:
            wire += to_gw
            to_cl = []
            for data in to_gw:
                gw.receive_datagram(data, TO_GATEWAY, 1000.0)
                to_cl += _sent(gw)
            wire += to_cl
            to_gw = []
            for data in to_cl:
                cl.receive_datagram(data, TO_CLIENT, 1000.0)
                to_gw += _sent(cl)
        return wire

    first = handshake()
    assert len(first) == 4 and first == handshake()  # IKE_SA_INIT and IKE_AUTH, both ways


def test_ike_status_counts_messages_by_exchange():
    cl, gw = client_core(seeded_random(1)), gateway_core(seeded_random(2))
    cl.connect(GATEWAY, CLIENT, 1000.0)
    for data in _sent(cl):
        gw.receive_datagram(data, TO_GATEWAY, 1000.0)
    messages = gw.status(1000.0).as_dict()["messages"]
    assert messages == {"sent": {"total": 1, "IKE_SA_INIT": 1}, "received": {"total": 1, "IKE_SA_INIT": 1}}
    assert cl.status(1000.0).as_dict()["messages"]["sent"] == {"total": 1, "IKE_SA_INIT": 1}


def test_lifetime_policy_waits_then_rekeys_once_unless_the_child_went():
    policy = LifetimePolicy((2.0, 4.0), seeded_random(1))
    policy.soft_expired(1, 100.0)
    policy.soft_expired(1, 100.5)  # the other direction's soft expiry: still one rekey
    at = policy.next_deadline()
    assert 102.0 <= at <= 104.0 and policy.drain_actions() == []
    policy.handle_timer(at)
    assert policy.drain_actions() == [RekeyChild(1)] and policy.next_deadline() is None
    policy.soft_expired(2, 100.0)
    policy.child_gone(2)  # the peer rekeyed it first
    policy.handle_timer(200.0)
    assert policy.drain_actions() == []


def test_client_session_resolves_connects_and_retries():
    s = cs.ClientSession("vpn.example", None, 2.0)
    s.start(0.0)
    assert s.drain_actions() == [cs.Resolve("vpn.example")]
    s.resolved("203.0.113.1", None, 0.5)
    assert s.drain_actions() == [cs.GatewayResolved("203.0.113.1"), cs.Connect("203.0.113.1")]
    s.ike_event(Failed("AUTH", notify=24), 1.0)  # AUTHENTICATION_FAILED: three intervals
    assert s.drain_actions() == [cs.AttemptFailed("AUTHENTICATION_FAILED (AUTH)")] and s.next_deadline() == 7.0
    s.handle_timer(7.0)
    assert s.drain_actions() == [cs.Connect("203.0.113.1")] and s.status(7.0).connects == 2
    up = Established("ike-1", "initiator", "gw", "203.0.113.1", 500, False, "10.9.0.1")
    s.ike_event(up, 8.0)
    assert s.drain_actions() == [cs.TunnelUp(up)] and s.status(8.0).state == "established"
    s.ike_event(IkeSaClosed("ike-1", "peer unreachable"), 20.0)
    assert s.drain_actions() == [cs.TunnelDown("peer unreachable")] and s.next_deadline() == 22.0
    s.stop(21.0)
    assert s.next_deadline() is None
