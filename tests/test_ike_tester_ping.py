"""The IKE tester's one ping (`IkeTester.ping`, testbed/conformance/ike_env.py), in memory: a fake
gateway opens the tester's ESP and answers ICMP echoes through the child SA as the IUT would. A check
that data passes retries up to `tries` echoes, each waited for its full timeout; a check that data no
longer passes sends exactly one; a late reply to an earlier echo is never taken for a later one."""
from __future__ import annotations

import os
from types import SimpleNamespace

from scapy.layers.inet import ICMP, IP

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.session import ChildAlgorithms, ChildSa
from testbed.conformance.ike.transport import FakeTransport
from testbed.conformance.ike_env import IkeTester, Peer

TESTER, GATEWAY, H, VIP = "198.51.100.100", "203.0.113.70", "10.1.2.10", "10.9.0.7"


def child() -> ChildSa:
    return ChildSa(os.urandom(4), os.urandom(4), ChildAlgorithms(), os.urandom(20), b"", os.urandom(20), b"")


class Gateway:
    """Answers the tester's echoes on the child SA they were sealed on (its own view: the tester's
    outbound half in, the inbound half out), in UDP 4500 as behind a NAT, unless told to drop some
    or to answer late."""

    def __init__(self, transport: FakeTransport, children: list[ChildSa]):
        self.transport, self.children = transport, children
        self.echoes: list[tuple[int, int, int]] = []   # (ESP seq, ICMP ident, ICMP seq) as received
        self.drop = 0          # how many echoes to leave unanswered first
        self.dead = False      # the child SA no longer carries data
        self.late = False      # each echo's reply comes only with the next echo
        self.held: list[bytes] = []
        self.reply_on: ChildSa | None = None   # the SA the gateway answers on (default: the echo's own)

    def __call__(self, raw, dst, dport, sport, kind):
        assert kind == "esp" and dst == GATEWAY
        ch = next(ch for ch in self.children if raw[:4] == ch.spi_out)
        opened = ch.esp_out().open(raw)
        assert opened.ok, opened.reason
        echo = IP(opened.payload)
        assert echo.src == VIP and echo.dst == H and echo[ICMP].type == 8
        self.echoes.append((opened.seq, echo[ICMP].id, echo[ICMP].seq))
        if self.drop:
            self.drop -= 1
            return
        if self.dead:
            return
        reply = bytes(IP(src=H, dst=VIP) / ICMP(type=0, id=echo[ICMP].id, seq=echo[ICMP].seq) / echo[ICMP].payload)
        out = self.reply_on or ch
        packet = out.esp_in().seal(reply, c.IPPROTO_IPIP, seq=len(self.echoes))
        if self.late:
            self.held.append(packet)
            if len(self.held) > 1:
                self.transport.inject(self.held.pop(0), GATEWAY, c.NAT_T_PORT, c.NAT_T_PORT)
            return
        self.transport.inject(packet, GATEWAY, c.NAT_T_PORT, c.NAT_T_PORT)


def world(n_children: int = 1):
    transport = FakeTransport(TESTER)
    children = [child() for _ in range(n_children)]
    gw = Gateway(transport, children)
    transport.on_send = gw
    tester = IkeTester(Peer(0, TESTER, GATEWAY, "alice", b"psk", H), transport)
    session = SimpleNamespace(children=children, virtual_ip=[VIP])
    waits: list[float] = []

    def take(match, timeout):
        waits.append(timeout)
        return tester.receive(match, timeout, kind=None)
    return tester, session, gw, waits, take


def test_data_passes_on_the_first_echo():
    tester, s, gw, waits, take = world()
    got = tester.ping(s, tries=3, timeout=1.5, take=take)
    assert got and got.child is s.children[0] and got.sent == 1
    assert waits == [1.5]
    assert got.reply.kind == "esp" and got.seen == [got.reply]


def test_a_positive_check_retries_each_echo_with_its_full_timeout():
    tester, s, gw, waits, take = world()
    gw.drop = 2
    got = tester.ping(s, tries=3, timeout=2.0, take=take)
    assert got and got.sent == 3
    assert waits == [2.0, 2.0, 2.0]
    assert [e[0] for e in gw.echoes] == [1, 2, 3], "each echo has the child SA's next ESP sequence number"
    assert len({e[2] for e in gw.echoes}) == 3, "each echo has its own ICMP sequence number"


def test_a_positive_check_gives_up_after_tries():
    tester, s, gw, waits, take = world()
    gw.dead = True
    got = tester.ping(s, tries=2, timeout=1.0, take=take)
    assert not got and got.child is None and got.reply is None
    assert got.sent == 2 and waits == [1.0, 1.0]


def test_a_negative_check_sends_exactly_one_echo():
    tester, s, gw, waits, take = world()
    gw.dead = True
    got = tester.ping(s, tries=1, timeout=0.5, take=take)
    assert not got and got.sent == 1 and len(gw.echoes) == 1 and waits == [0.5]


def test_a_late_reply_to_an_earlier_echo_is_not_taken():
    tester, s, gw, _, take = world()
    gw.late = True
    got = tester.ping(s, tries=2, take=take)
    assert len(gw.echoes) == 2
    assert not got, "the reply that came during the second wait answers the first echo"
    assert len(got.seen) == 1


def test_the_reply_may_come_on_another_child_sa_of_replies():
    tester, s, gw, _, take = world(2)
    first, second = s.children
    gw.reply_on = second
    assert tester.ping(s, first, tries=1, take=take).child is second
    assert not tester.ping(s, first, replies=[first], tries=1, take=take), \
        "a reply on a child SA outside `replies` does not count"


def test_seq_and_send_are_the_callers():
    tester, s, gw, _, take = world()
    sent = []

    def send(packet):
        sent.append(packet)
        tester.transport.send(packet, GATEWAY, 0, src_port=0, kind="esp")
    got = tester.ping(s, seq=7, tries=1, send=send, take=take)
    assert got and len(sent) == 1 and gw.echoes[0][0] == 7


def test_default_reading_keeps_every_datagram_seen():
    tester, s, gw, _, _ = world()
    tester.transport.inject(b"\x00\x00\x00\x00" + b"ike?" * 10, GATEWAY, 4500, 4500)   # an IKE message on 4500
    got = tester.ping(s, tries=1)
    assert got and len(got.seen) == 2 and got.seen[-1] is got.reply
