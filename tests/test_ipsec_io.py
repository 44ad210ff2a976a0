"""The IPsec daemons' UDP batching (nodes/runtime/ipsec/sockets.py) over the loopback: datagrams sent
in UDP_SEGMENT batches arrive intact and in order, cut out of coalesced UDP_GRO reads, and the
sender falls back to one datagram per call where the kernel refuses segmentation."""
from __future__ import annotations

import errno
import os
import select

import pytest

from nodes.runtime.ipsec import sockets as io


def datagrams() -> list[bytes]:
    """Runs of equal sizes (ESP of full-sized packets), a shorter one ending a run, lone ones."""
    sizes = [1456] * 70 + [1000] + [1456] * 30 + [88] * 5 + [1456]
    return [bytes([k % 251]) * 4 + k.to_bytes(4, "big") + bytes(n - 8) for k, n in enumerate(sizes)]


def receive(reader: io.UdpReader, count: int) -> list[tuple[bytes, str, int, str | None]]:
    got: list[tuple[bytes, str, int, str | None]] = []
    while len(got) < count:
        if not select.select([reader.sock], [], [], 2.0)[0]:
            break
        reader.drain(lambda data, src, sport, dst: got.append((bytes(data), src, sport, dst)))
    return got


def test_batches_arrive_intact_and_in_order():
    rx, tx = io.udp_socket(0, "127.0.0.1"), io.udp_socket(0, "127.0.0.1")
    try:
        reader, sender = io.UdpReader(rx), io.UdpSender(tx)
        sent = datagrams()
        assert sender.send(sent, rx.getsockname()) == 0
        got = receive(reader, len(sent))
        assert [g[0] for g in got] == sent
        assert {g[1:] for g in got} == {("127.0.0.1", tx.getsockname()[1], "127.0.0.1")}
        assert sender.gso, "the loopback takes UDP_SEGMENT writes"
        assert reader.reads < len(sent) / 4, f"{reader.reads} reads for {len(sent)} datagrams: no UDP_GRO"
    finally:
        rx.close()
        tx.close()


class _NoGso:
    """A socket whose kernel refuses UDP_SEGMENT (EIO, as for a route without checksum offload)."""

    def __init__(self, sock):
        self.sock, self.sendmsg_calls = sock, 0

    def sendmsg(self, *args):
        self.sendmsg_calls += 1
        raise OSError(errno.EIO, "Input/output error")

    def sendto(self, data, addr):
        return self.sock.sendto(data, addr)


def test_sender_falls_back_to_one_datagram_per_call():
    rx, tx = io.udp_socket(0, "127.0.0.1"), io.udp_socket(0, "127.0.0.1")
    try:
        fake = _NoGso(tx)
        sender = io.UdpSender(fake)
        sent = datagrams()
        assert sender.send(sent, rx.getsockname()) == 0
        assert sender.send(sent[:3], rx.getsockname()) == 0
        assert not sender.gso and fake.sendmsg_calls == 1, "one refusal turns segmentation off for good"
        assert [g[0] for g in receive(io.UdpReader(rx), 2 * len(sent))] == sent + sent[:3]
    finally:
        rx.close()
        tx.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw protocol-50 socket needs root (CAP_NET_RAW)")
def test_raw_reader_hands_over_the_payload_after_the_ip_header():
    rx, tx = io.esp_socket(), io.esp_socket()
    try:
        tag = os.urandom(8)  # other tests' ESP on the loopback reaches this socket too: keep ours
        payloads = [tag + k.to_bytes(4, "big") + bytes(k * 10) for k in range(1, 6)]
        for p in payloads:
            tx.sendto(p, ("127.0.0.1", 0))
        got: list[tuple[bytes, str]] = []
        reader = io.RawReader(rx)
        while len(got) < len(payloads) and select.select([rx], [], [], 2.0)[0]:
            reader.drain(lambda data, src: got.append((bytes(data), src)) if data[:8] == tag else None)
        assert got == [(p, "127.0.0.1") for p in payloads]
    finally:
        rx.close()
        tx.close()


class _SlowRaw:
    """A raw socket stand-in: records (packet, address); refuses destination 192.0.2.99."""

    def __init__(self):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, packet: bytes, addr: tuple[str, int]) -> None:
        if addr[0] == "192.0.2.99":
            raise OSError(errno.ENETUNREACH, "unreachable")
        self.sent.append((packet, addr))


def test_raw_sender_keeps_the_order_of_bursts_and_lone_packets():
    raw = _SlowRaw()
    sender = io.RawSender(raw)
    try:
        sender.send([(b"lone-first", "10.1.2.10")])  # the thread has nothing: sent at once, here
        assert raw.sent == [(b"lone-first", ("10.1.2.10", 0))]
        bursts = [[(f"{b}-{k}".encode(), "10.1.2.10") for k in range(50)] for b in range(20)]
        for burst in bursts:
            sender.send(burst)
        sender.send([(b"lone-last", "10.1.2.10")])
        sender.send([(b"refused", "192.0.2.99"), (b"after", "10.1.2.10")])
    finally:
        sender.close()
    expected = [b"lone-first"] + [p for burst in bursts for p, _ in burst] + [b"lone-last", b"after"]
    assert [p for p, _ in raw.sent] == expected
    assert sender.failed == 1
