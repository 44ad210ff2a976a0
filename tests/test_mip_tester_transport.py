"""SocketTransport of the tester library over loopback UDP sockets (no root, no namespace), and the
link-layer framing helpers."""
from __future__ import annotations

import socket

from testbed.conformance.mip import SocketTransport
from testbed.conformance.mip.link import gratuitous_arp, parse_arp


def test_socket_transport_udp_roundtrip_with_destination_and_ttl():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        ta, tb = SocketTransport(udp=a), SocketTransport(udp=b)
        ta.send_udp("127.0.0.1", b"\x01hello", dport=b.getsockname()[1], ttl=9)
        item = tb.wait_for(lambda i: i.kind == "udp", timeout=2.0)
        assert item is not None and item.data == b"\x01hello"
        assert (item.src, item.sport) == ("127.0.0.1", a.getsockname()[1])
        assert item.dst == "127.0.0.1" and item.ttl == 9 and item.dport == b.getsockname()[1]
        assert [e.direction for e in ta.log] == ["sent"] and [e.direction for e in tb.log] == ["received"]
        assert tb.log[0].time >= ta.log[0].time
        assert tb.recv(0.01) == []
    finally:
        a.close()
        b.close()


def test_gratuitous_arp_frame():
    frame = gratuitous_arp("02:aa:00:00:00:50", "10.1.0.50")
    arp = parse_arp(frame)
    assert arp.ok and arp.gratuitous and arp.op == 1 and arp.dst_mac == "ff:ff:ff:ff:ff:ff"
    assert parse_arp(frame[:20]).error and parse_arp(b"\x00" * 60).error
