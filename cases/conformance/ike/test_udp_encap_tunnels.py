"""UDP-encapsulated tunnels at the gateway under test (RFC 3948 sections 2.3, 3.1.1 and 5.1): what it
takes from a NATed client after decapsulation, NAT-keepalives with a checksum, and two clients behind
one NAT. The tester forces a NAT as the IUT sees it (test_udp_encap.establish_nat)."""
from __future__ import annotations

from dataclasses import replace

from cases.conformance.ike.test_udp_encap import (DROP, NEEDS, assert_alive, collect, echo, establish_nat,
                                                  precondition, reply_match, udp_raw_send, where)
from testbed.conformance.ike import constants as c
from testbed.conformance.parts import part


@part("UDPENC.SGW.KA.2", "A NAT-keepalive with a correct non-zero UDP checksum is taken like one with none",
      ["rfc3948-2.3-a", "rfc3948-2.3-b"], needs=NEEDS)
def test_keepalive_with_checksum(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    precondition(ike, s, steps, 1)
    udp_raw_send(ike, c.NAT_KEEPALIVE, c.NAT_T_PORT, c.NAT_T_PORT, None)  # scapy computes the checksum
    _, seen = collect(ike, lambda r: False, DROP)
    steps.record("a NAT-keepalive 4500 -> 4500 with its UDP checksum computed", "no answer, nothing broken",
                 [where(x) for x in seen] or "nothing")
    assert_alive(ike, s, steps, 2, "a NAT-keepalive with a checksum")


@part("UDPENC.SGW.SRC.1", "After decapsulation, an inner source other than the client's assigned address is dropped",
      ["rfc3948-3.1.1-a", "rfc4303-3.4.4.1-e"], needs=NEEDS + ["ikev2.cp"])
def test_inner_source_checked(ike, steps):
    s, child, _ = establish_nat(ike, steps)
    precondition(ike, s, steps, 1)
    assigned = s.virtual_ip[0]
    spoofed = ".".join(assigned.split(".")[:3] + [str((int(assigned.split(".")[3]) + 100) % 250 + 1)])
    from scapy.layers.inet import ICMP, IP
    pkt = bytes(IP(src=spoofed, dst=ike.peer.inside_host) / ICMP(type=8, id=0x5150, seq=2) / b"spoofed-source")
    ike.esp_send(child.esp_out().seal(pkt, 4, seq=2))
    got, _ = collect(ike, reply_match(s, 0x5150), DROP)
    steps.record(f"ESP seq 2 with an echo from {spoofed} (assigned: {assigned})",
                 "dropped after decapsulation: no reply to either address", where(got), ok=got is None)
    assert got is None, f"the gateway forwarded a packet from {spoofed}, not the client's assigned {assigned}"
    assert_alive(ike, s, steps, 3, "a spoofed inner source")


@part("UDPENC.SGW.TWO.1", "Two tunnels from behind one NAT get distinct inner addresses, and each carries its own data",
      ["rfc3948-5.1-a", "rfc3948-A-a"], needs=NEEDS + ["ikev2.cp"])
def test_two_clients_behind_one_nat(ike, steps):
    first, _, _ = establish_nat(ike, steps)
    precondition(ike, first, steps, 1)
    ike.peer = replace(ike.peer, identity="bob", psk=b"testbed-bob-psk")  # a second user (conformance-sgw)
    second, _, _ = establish_nat(ike, steps)
    steps.record("two IKE SAs from the same address (one NAT)", "two different internal addresses",
                 f"{first.virtual_ip} and {second.virtual_ip}", ok=first.virtual_ip != second.virtual_ip)
    assert first.virtual_ip and second.virtual_ip and first.virtual_ip != second.virtual_ip, \
        f"two clients behind one NAT got {first.virtual_ip} and {second.virtual_ip}"
    for n, s in ((1, second), (2, first)):
        ident = 0x5200 + n
        ike.esp_send(s.children[-1].esp_out().seal(echo(ike, s, ident, n + 1), 4, seq=n + 1))
        got, _ = collect(ike, reply_match(s, ident), 2.0)
        steps.record(f"an echo from {s.virtual_ip[0]} in its own child SA", "its reply in the same child SA",
                     where(got), ok=got is not None)
        assert got is not None, f"no echo reply to {s.virtual_ip[0]} through its own child SA"
