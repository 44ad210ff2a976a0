"""The IPsec cores (IKE initiator and responder, ESP SAs, NAPT) against nodes/core.py's contract,
through the generic harness tests/core_contract.py."""
from __future__ import annotations

import pytest
from core_contract import CoreCase, check_contract

from nodes.core import Addr, seeded_random
from nodes.ipsec.esp_sa import ALGORITHMS, Lifetime, make_sa
from nodes.ipsec.ike import IkeConfig, IkeCore, SendIke, UserPolicy
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


@pytest.mark.parametrize("case", [IKE_INITIATOR, IKE_RESPONDER, ESP_INBOUND, ESP_OUTBOUND, NAPT],
                         ids=lambda c: c.name)
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
