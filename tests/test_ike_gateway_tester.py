"""The gateway-place IKE tester (testbed/conformance/ike_gateway_env.py) in memory: a client that
retransmits its IKE_SA_INIT (its response was dropped) gets the same answer again while the tester
waits for it to go on (RFC 7296 2.1), and the retransmission is never taken for the client's next
request; a request never answered stays visible to the part."""
from __future__ import annotations

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.session import IkeSession
from testbed.conformance.ike.transport import FakeTransport
from testbed.conformance.ike_gateway_env import GatewayTester, Site

CLIENT, GATEWAY, PSK = "192.0.2.100", "203.0.113.70", b"alice-secret"


def make_tester() -> GatewayTester:
    site = Site(node_pid=0, local=GATEWAY, client=CLIENT, identity="alice", psk=PSK, inside_host="10.1.0.10")
    return GatewayTester(site, FakeTransport(GATEWAY), retransmit=0.0)


def sent(gw: GatewayTester) -> list[bytes]:
    return [raw for raw, *_ in gw.transport.outbox]


def test_a_retransmitted_init_gets_the_same_answer_while_waiting_for_ike_auth():
    gw, client = make_tester(), IkeSession(initiator=True)
    first = client.sa_init_request()
    gw.transport.inject(first, CLIENT, 500)
    s, _ = gw.accept_init(gw.init_request(timeout=0.1))
    answer = sent(gw)[-1]
    client.handle_sa_init_response(answer)
    gw.transport.inject(first, CLIENT, 500)       # the answer was dropped: the same bytes again
    gw.transport.inject(client.auth_request(psk=PSK, idi="alice"), CLIENT, 500)
    r, auth = gw.auth_request(s, timeout=0.5)
    assert sent(gw) == [answer, answer], "the retransmission is answered with the same bytes"
    assert gw.init_answered_again == 1
    assert r is not None and auth.ok and s.peer_auth_ok, "the IKE_AUTH after it is still taken"


def test_a_retransmitted_refused_init_is_not_taken_for_the_retry():
    gw, client = make_tester(), IkeSession(initiator=True)
    first = client.sa_init_request()
    gw.transport.inject(first, CLIENT, 500)
    r = gw.init_request(timeout=0.1)
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    cookie = s.message(c.IKE_SA_INIT, [m.notify(c.N_COOKIE, b"c" * 16)], response=True, encrypt=False,
                       message_id=0, spi_r=bytes(8))
    gw.answer_init(r, cookie)
    retry = bytes(first[:27]) + b"\x01" + first[28:]  # any other request: the retry
    gw.transport.inject(first, CLIENT, 500)
    gw.transport.inject(retry, CLIENT, 500)
    got = gw.init_retry(timeout=0.5)
    assert got is not None and got.data == retry
    assert sent(gw) == [cookie, cookie]


def test_an_unanswered_retransmission_stays_visible():
    gw, client = make_tester(), IkeSession(initiator=True)
    first = client.sa_init_request()
    gw.transport.inject(first, CLIENT, 500)
    gw.transport.inject(first, CLIENT, 500)
    assert gw.init_request(timeout=0.1).data == first
    assert gw.init_retry(timeout=0.2).data == first, "a request never answered is the client's, not ours to hide"
    assert sent(gw) == []
