"""FA: the visitor list at work (RFC 5944 3.7.2, 3.7.3.2, 4.2.2): datagrams the tester's HA tunnels to
the care-of address are delivered to registered visitors on the link, by link layer; nothing else."""
import os

from testbed.conformance.inbox import MARKER_GRACE
from testbed.conformance.mip.tunnels import gre_encapsulate, ipip_encapsulate
from testbed.conformance.mip.udp import ipv4_udp
from testbed.conformance.parts import part, should


def marker() -> bytes:
    return b"fa-conformance-" + os.urandom(6).hex().encode()


def deliver(t, mn, steps, expect: bool, kind: str = "ipip", what: str = "", marker_mn=None, **kw):
    """A datagram tunnelled to `mn`; when it must not be delivered, a plain one to the registered
    visitor `marker_mn` follows and the wait ends once that one is (testbed/conformance/inbox.py)."""
    m = marker()
    t.tunnel_to_coa(t.inner(mn, m), kind, **kw)
    f = t.delivered(mn, m, 0.5) if expect else t.not_delivered(mn, m, 0.4, marker_mn).item
    what = what or f"a datagram for {mn.home} tunnelled ({kind}) to the care-of address"
    if not expect and marker_mn is not None:
        what += f" (then one for the visitor {marker_mn.home}: the wait ends once that one is delivered)"
    steps.record(what, "delivered to the mobile node" if expect else "not delivered", f.summary() if f else "nothing",
                 ok=(f is not None) == expect)
    return f


@part("MIP.FA.DELIVER.1", "After an accepted registration, IP-in-IP datagrams to the care-of address are "
      "decapsulated and delivered to the mobile node", ["rfc5944-4.2.2-a", "rfc5944-4.1-a", "rfc5944-3.7.3.2-a"])
def test_delivery_after_registration(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    f = deliver(tester, mn, steps, True)
    assert f is not None, "a datagram tunnelled to a registered visitor was not delivered"


@part("MIP.FA.DELIVER.2", "Delivery goes to the visitor's link-layer address, with no ARP for its home address",
      ["rfc5944-4.2.2-g", "rfc5944-1.7-c"])
def test_delivery_by_link_layer(tester, steps):
    mn = tester.mns[2]
    tester.register(mn)
    f = deliver(tester, mn, steps, True)
    assert f is not None, "not delivered"
    arps = [x for x in tester.seen if x.arp is not None and str(x.arp.target_ip) == str(mn.home)]
    assert f.dst_mac == mn.mac, f"delivered in a frame to {f.dst_mac}, the visitor is {mn.mac}"
    assert not arps, f"ARP for the visitor's home address: {[a.summary() for a in arps]}"


@part("MIP.FA.DELIVER.3", "Two visitors: each gets its own datagrams, at its own link-layer address",
      ["rfc5944-4.2.2-a"])
def test_two_visitors(tester, steps):
    a, b = tester.mns[0], tester.mns[2]
    tester.register(a)
    tester.register(b)
    fa_ = deliver(tester, a, steps, True)
    fb = deliver(tester, b, steps, True)
    assert fa_ is not None and fb is not None, "a visitor's datagram was not delivered"
    assert (fa_.dst_mac, fb.dst_mac) == (a.mac, b.mac), f"frames to {fa_.dst_mac}, {fb.dst_mac}"


@part("MIP.FA.DELIVER.4", "A tunnelled datagram for a node that is not a visitor is not forwarded",
      ["rfc5944-4.2.2-b", "rfc5944-4.2.2-c"])
def test_non_visitor_not_forwarded(tester, steps):
    tester.learn_agent()
    mn = tester.mns[0]
    f = deliver(tester, mn, steps, False, marker_mn=tester.marker_visitor(mn))
    assert f is None, "a datagram for a node that never registered was delivered"


@part("MIP.FA.DELIVER.5", "No ICMP destination unreachable is sent for a tunnelled datagram the FA cannot "
      "forward", ["rfc5944-4.2.2-d"])
def test_no_icmp_for_undeliverable(tester, steps):
    tester.learn_agent()
    other = tester.marker_visitor(tester.mns[0])
    tester.drain()
    m = marker()
    tester.tunnel_to_coa(tester.inner(tester.mns[0], m))
    q = tester.not_delivered(tester.mns[0], m, 0.4, other)
    steps.record(f"a datagram for {tester.mns[0].home} (no visitor) tunnelled to the care-of address"
                 + (f", then one for the visitor {other.home}" if other else ""), "not delivered",
                 q.item.summary() if q.item else "nothing", ok=q.item is None)
    # the FA handled the first before it delivered the second: an ICMP error about it was on its way
    # already (the window ends MARKER_GRACE after that; the whole 0.3 s without the marker's delivery)
    icmp = [i for i in tester.ha_items(MARKER_GRACE if q.marker is not None else 0.3, ("icmp",))
            if i.src == str(tester.fa) and i.data[:1] == b"\x03"]
    steps.record("ICMP at the HA from the FA", "no destination unreachable", len(icmp), ok=not icmp)
    assert not icmp, f"the FA sent ICMP destination unreachable: {icmp[:2]}"


@part("MIP.FA.DELIVER.6", "A registration the HA denied makes no visitor entry", ["rfc5944-3.7.3.2-a",
                                                                                 "rfc5944-3.7.3.2-i"])
def test_denied_registration_no_entry(tester, steps):
    mn = tester.mns[0]
    tester.learn_agent()
    data = tester.request(mn)
    tester.send_request(mn, data)
    r = tester.wait_relayed(mn, mn.mn.pending_identification)
    assert r is not None, "not relayed"
    tester.answer(r, 130)
    tester.wait_reply(mn, mn.mn.pending_identification, 0.5)
    assert deliver(tester, mn, steps, False, marker_mn=tester.marker_visitor(mn)) is None, \
        "delivered after the HA denied the registration"


@part("MIP.FA.DELIVER.7", "An HA denial of a re-registration leaves the existing visitor entry: delivery "
      "goes on", ["rfc5944-3.7.2-g", "rfc5944-3.7.3.2-d"])
def test_denied_reregistration_keeps_entry(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    data = tester.request(mn)
    tester.send_request(mn, data)
    r = tester.wait_relayed(mn, mn.mn.pending_identification)
    assert r is not None, "the re-registration was not relayed"
    tester.answer(r, 130)
    tester.wait_reply(mn, mn.mn.pending_identification, 0.5)
    assert deliver(tester, mn, steps, True, what="after the denied re-registration") is not None, \
        "the HA's denial of a re-registration removed the visitor entry"


@part("MIP.FA.DELIVER.8", "An HA denial of a deregistration leaves the visitor entry: delivery goes on",
      ["rfc5944-3.7.2-g"])
def test_denied_deregistration_keeps_entry(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    data = tester.request(mn, lifetime=0)
    tester.send_request(mn, data)
    r = tester.wait_relayed(mn, mn.mn.pending_identification)
    assert r is not None, "the deregistration was not relayed"
    tester.answer(r, 129)
    tester.wait_reply(mn, mn.mn.pending_identification, 0.5)
    assert deliver(tester, mn, steps, True, what="after the denied deregistration") is not None, \
        "the HA's denial of a deregistration removed the visitor entry"


@part("MIP.FA.DELIVER.9", "A pending re-registration does not disturb the existing entry: delivery goes on "
      "before the HA answers", ["rfc5944-3.7.2-d"])
def test_pending_reregistration_keeps_entry(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    tester.send_request(mn, tester.request(mn))
    assert tester.wait_relayed(mn, mn.mn.pending_identification) is not None, "not relayed"
    f = deliver(tester, mn, steps, True, what="while the re-registration is pending")
    should(f is not None, "delivery stopped while a re-registration was pending")


@part("MIP.FA.DELIVER.10", "A pending deregistration does not end delivery before the HA's reply",
      ["rfc5944-3.7.2-f"])
def test_pending_deregistration_keeps_entry(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    tester.send_request(mn, tester.request(mn, lifetime=0))
    assert tester.wait_relayed(mn, mn.mn.pending_identification) is not None, "not relayed"
    f = deliver(tester, mn, steps, True, what="while the deregistration is pending")
    should(f is not None, "delivery stopped before the HA accepted the deregistration")


@part("MIP.FA.DELIVER.11", "An accepted deregistration removes the visitor entry: delivery stops",
      ["rfc5944-3.7.3.2-c"])
def test_deregistration_ends_delivery(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    back = tester.deregister(mn)
    steps.record("deregistration through the FA, the HA accepts", "relayed", back.summary() if back else "nothing")
    assert deliver(tester, mn, steps, False, what="after the accepted deregistration",
                   marker_mn=tester.marker_visitor(mn)) is None, \
        "still delivered after an accepted deregistration"


@part("MIP.FA.DELIVER.12", "GRE-encapsulated datagrams (G advertised) are decapsulated and delivered",
      ["rfc2784-3.1-a"], needs=["mip.gre"])
def test_gre_delivery(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="G")
    assert deliver(tester, mn, steps, True, "gre") is not None, "a GRE datagram was not delivered"


@part("MIP.FA.DELIVER.13", "A GRE packet with the checksum present (and right) is accepted", ["rfc2784-2.2-a"],
      needs=["mip.gre"])
def test_gre_checksum_accepted(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="G")
    assert deliver(tester, mn, steps, True, "gre", checksum=True) is not None, "a GRE packet with C=1 was dropped"


@part("MIP.FA.DELIVER.14", "A GRE packet with any of Reserved0 bits 1-5 set is discarded",
      ["rfc2784-2.3-a", "rfc2784-5.2-a"], needs=["mip.gre"])
def test_gre_reserved_discarded(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="G")
    m = marker()
    inner = tester.inner(mn, m)
    packet = bytearray(gre_encapsulate(inner, tester.ha.address, tester.care_of_address()))
    packet[20] |= 0x20  # bit 2 of the GRE flags (K, key present in RFC 1701)
    tester.transport.send_ip(bytes(packet))
    f = tester.not_delivered(mn, m, 0.4, marker_mn=mn).item
    steps.record("GRE with bit 2 of Reserved0 set (then a plain one: the wait ends once that one is delivered)", "discarded", f.summary() if f else "nothing", ok=f is None)
    assert f is None, "a GRE packet with Reserved0 bit 2 set was delivered"


@part("MIP.FA.DELIVER.15", "An inner datagram with TTL 0 after decapsulation is discarded", ["rfc2003-3.1-d"])
def test_inner_ttl_zero_discarded(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    m = marker()
    inner = ipv4_udp("10.1.2.10", mn.home, 7777, 7777, m, ttl=0)
    tester.transport.send_ip(ipip_encapsulate(inner, tester.ha.address, tester.care_of_address(), forwarding=False))
    f = tester.not_delivered(mn, m, 0.4, marker_mn=mn).item
    steps.record("IP-in-IP whose inner TTL is 0 (then a plain one: the wait ends once that one is delivered)", "discarded", f.summary() if f else "nothing", ok=f is None)
    assert f is None, "an inner datagram with TTL 0 was delivered"


@part("MIP.FA.DELIVER.16", "A broadcast the HA sends inside a unicast to the home address is delivered as that "
      "unicast: not decapsulated, not broadcast on the link", ["rfc5944-3.6.1.2-e"])
def test_encapsulated_broadcast_delivered_as_unicast(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="B")
    m = marker()
    bcast = ipv4_udp("10.1.1.1", "10.1.1.255", 7777, 7777, m)
    unicast = ipip_encapsulate(bcast, tester.ha.address, mn.home, forwarding=False)
    tester.tunnel_to_coa(unicast)
    f = tester.wait_frame(lambda x: x.ip is not None and m in x.raw, 0.5)
    steps.record("IP-in-IP(HA -> home address, broadcast inside) tunnelled to the care-of address",
                 "a frame to the visitor carrying the unicast, protocol 4", f.summary() if f else "nothing")
    assert f is not None, "the encapsulated broadcast was not delivered"
    assert f.ip.dst == mn.home and f.ip.protocol == 4 and f.dst_mac == mn.mac, \
        f"delivered as {f.summary()}: the FA must deliver the inner unicast as is"


@part("MIP.FA.FORWARD.1", "Datagrams a registered visitor (no reverse tunnel) sends are routed: they reach "
      "their destination with the TTL decremented", ["rfc5944-4.2.2-f", "rfc5944-2.1-e", "rfc5944-2.3.1-b"])
def test_visitor_datagrams_routed(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    tester.drain()
    ident = int.from_bytes(os.urandom(2), "big")
    echo = bytes((8, 0, 0, 0)) + ident.to_bytes(2, "big") + b"\x00\x01" + b"fa-forward"
    from testbed.conformance.mip.ipv4 import internet_checksum
    echo = echo[:2] + internet_checksum(echo).to_bytes(2, "big") + echo[4:]
    tester.mn_sends(mn, tester.ha.address, echo, ttl=64)
    got = tester.take(lambda i: getattr(i, "kind", None) == "icmp" and i.src == str(mn.home) and i.data[:1] == b"\x08"
                      and i.data[4:6] == ident.to_bytes(2, "big"), 1.0)
    steps.record(f"ICMP echo from {mn.home} to {tester.ha.address}, TTL 64, to the FA's MAC",
                 "arrives at the destination with TTL < 64", f"TTL {got.ttl}" if got else "nothing")
    assert got is not None, "a registered visitor's datagram was not routed"
    assert got.ttl < 64, f"arrived with TTL {got.ttl}: not decremented"
