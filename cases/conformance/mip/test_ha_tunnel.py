"""HA: datagrams for a node away from home tunnelled to its care-of address (RFC 5944 4.1, 4.2.3;
RFC 2003 IP in IP, RFC 2004 minimal encapsulation, RFC 2784 GRE, chosen by the request's M and G
bits): the outer header, the inner TTL and DF, what must not be tunnelled (TTL running out, the
tunnel's own source, loops). The correspondent is h; the care-of address r (or ar1)."""
import struct

from testbed.conformance.mip.ipv4 import FLAG_MF, PROTO_IPIP, build_ipv4, parse_ipv4
from testbed.conformance.mip.tunnels import ipip_encapsulate
from testbed.conformance.parts import part, should

# a silence window ended by a marker (testbed/conformance/inbox.py)
AFTER = " (then a plain one to the same home address: the wait ends once that one is tunnelled)"


def _bound(ha_tester, steps, flags="D", **kw):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags=flags, **kw)
    return mn, str(mn.home_address)


def _tunnelled(ha_tester, steps, home, what="datagram from h to the home address", place=None, **kw):
    packet, got = ha_tester.data_to_coa(home, place, **kw)
    steps.record(what, "tunnelled to the care-of address", got.summary() if got else "nothing", ok=got is not None)
    assert got is not None, "nothing tunnelled to the care-of address"
    return packet, got


# ---- IP in IP ----------------------------------------------------------------------------------

@part("MIP.HA.TUN.1", "Data for the home address reaches the care-of address in IP-in-IP from the HA's address",
      ["rfc5944-4.2.3-a", "rfc5944-1.7-b", "rfc5944-4.1-a", "rfc5944-3.8.1-c", "rfc5944-4.2.3-d"])
def test_ipip_to_coa(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _, got = _tunnelled(ha_tester, steps, home)
    assert got.kind == "ipip", f"encapsulation {got.kind}, IP-in-IP asked for (neither M nor G)"
    assert str(got.outer.src) == ha_tester.ha, f"outer source {got.outer.src}, the reply's Home Agent is {ha_tester.ha}"
    assert str(got.outer.dst) == ha_tester.coa, f"outer destination {got.outer.dst}"


@part("MIP.HA.TUN.2", "The inner datagram arrives whole: addresses, protocol and payload as the correspondent sent them",
      ["rfc5944-4.2.3-a", "rfc5944-4.1-a"])
def test_ipip_inner_intact(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    sent, got = _tunnelled(ha_tester, steps, home)
    a, b = parse_ipv4(sent).value, parse_ipv4(got.inner, strict_length=False).value
    same = (a.src, a.dst, a.protocol, a.payload) == (b.src, b.dst, b.protocol, b.payload)
    steps.record("inner header and payload", "as sent (TTL aside)", f"{b.src}->{b.dst} proto {b.protocol}", ok=same)
    assert same, f"inner packet changed: {b.src}->{b.dst} proto {b.protocol}"
    assert b.checksum_ok, "the inner header checksum is wrong"


@part("MIP.HA.TUN.3", "The HA forwards into the tunnel: the inner TTL is one less than when it reached the HA",
      ["rfc2003-3.1-c", "rfc5944-4.1-a"])
def test_inner_ttl_decremented(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _, got = _tunnelled(ha_tester, steps, home, ttl=64)
    # h -> ir (63 on the home link) -> the HA forwards: 62 inside the tunnel
    steps.record("inner TTL at the care-of address (sent 64 from h, one router before the HA)", "62",
                 got.inner_ttl, ok=got.inner_ttl == 62)
    assert got.inner_ttl == 62, f"inner TTL {got.inner_ttl}, expected 62 (63 at the HA, minus one forwarding)"


@part("MIP.HA.TUN.4", "The outer header has DF set when the inner one has DF",
      ["rfc2003-3.1-a"])
def test_df_copied(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _, got = _tunnelled(ha_tester, steps, home, df=True)
    steps.record("outer DF for an inner datagram with DF", "DF set", got.outer.df, ok=got.outer.df)
    assert got.outer.df, "inner DF set, outer DF clear"


@part("MIP.HA.TUN.5", "The outer TTL is large enough to reach the care-of address (not 1), the outer protocol 4",
      ["rfc5944-4.1-a", "rfc5944-4.2.3-a"])
def test_outer_ttl(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _, got = _tunnelled(ha_tester, steps, home)
    steps.record("outer TTL and protocol at r (4 routers from the HA)", "TTL > 1, protocol 4",
                 f"ttl {got.outer.ttl} proto {got.received.protocol}", ok=got.outer.ttl > 1)
    assert got.received.protocol == PROTO_IPIP
    assert got.outer.ttl > 1


@part("MIP.HA.TUN.6", "A datagram whose TTL runs out at the HA is not tunnelled (SHOULD: time exceeded to the sender)",
      ["rfc2003-3.1-c", "rfc2003-3.1-b"])
def test_ttl_expiring_not_tunnelled(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    ha_tester.cn_place.transport.recv(0)
    ok = ha_tester.nothing_tunnelled(home, wait=0.4, marker_home=home, ttl=2)  # 1 at the HA
    steps.record(f"datagram from h with TTL 2 (1 when it reaches the HA){AFTER}", "not tunnelled", "nothing" if ok else "tunnelled",
                 ok=ok)
    assert ok, "a datagram with TTL 1 at the HA was tunnelled (TTL 0 inside)"
    icmp = ha_tester.cn_place.transport.wait_for(lambda i: i.kind == "icmp" and i.data[:1] == b"\x0b", 0.3)
    steps.record("ICMP at h", "time exceeded", "type 11" if icmp else "none")
    should(icmp is not None, "an ICMP time exceeded should reach the sender")


@part("MIP.HA.TUN.7", "A datagram whose source is the care-of address (the tunnel's exit) is not tunnelled back",
      ["rfc2003-3.2-b"])
def test_source_is_tunnel_exit(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    ok = ha_tester.nothing_tunnelled(home, wait=0.4, marker_home=home, src=ha_tester.coa)
    steps.record(f"datagram from h with source {ha_tester.coa} (the care-of address){AFTER}", "not tunnelled",
                 "nothing" if ok else "tunnelled", ok=ok)
    assert ok, "a datagram from the tunnel's exit point was tunnelled to it"


@part("MIP.HA.TUN.8", "A datagram whose source is the HA's own address is not tunnelled",
      ["rfc2003-3.2-a"])
def test_source_is_ha(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    ok = ha_tester.nothing_tunnelled(home, wait=0.4, marker_home=home, src=ha_tester.ha)
    steps.record(f"datagram from h with source {ha_tester.ha} (the HA){AFTER}", "not tunnelled",
                 "nothing" if ok else "tunnelled", ok=ok)
    assert ok, "a datagram with the HA's own source address was tunnelled"


@part("MIP.HA.TUN.9", "Without a binding, a datagram for the home address is not tunnelled anywhere",
      ["rfc5944-4.2.3-b", "rfc5944-4.2.3-c"])
def test_no_binding_no_tunnel(ha_tester, steps):
    home = ha_tester.homes[0]
    marker = ha_tester.marker_binding()
    ok = ha_tester.nothing_tunnelled(home, wait=0.4, marker_home=marker)
    steps.record(f"datagram from h to a home address without binding (then one to {marker}, bound at r: the wait "
                 "ends once that one is tunnelled)", "not tunnelled", "nothing" if ok else "tunnelled",
                 ok=ok)
    assert ok, "tunnelled without a binding"


@part("MIP.HA.TUN.10", "An encapsulated datagram for the node from its own care-of address is discarded (no loop)",
      ["rfc5944-4.2.3-k", "rfc5944-4.2.3-i", "rfc5944-4.2.3-j"])
def test_loop_discarded(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    inner, marker = ha_tester.datagram_to_home(home)
    pkt = ipip_encapsulate(inner, ha_tester.coa, home, forwarding=False)
    ha_tester.cn_place.transport.send_ip(pkt)
    ok = ha_tester.not_tunnelled(marker, wait=0.4, marker_home=home)
    steps.record(f"from h: IP-in-IP outer care-of->home, inner h->home{AFTER}", "not tunnelled again",
                 "nothing" if ok else "tunnelled", ok=ok)
    assert ok, "an encapsulated datagram from the care-of address was tunnelled back to it"


@part("MIP.HA.TUN.11", "An encapsulated datagram for the node from elsewhere is tunnelled on to it",
      ["rfc5944-4.2.3-l", "rfc5944-4.2.3-i"])
def test_encapsulated_from_elsewhere(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    inner, marker = ha_tester.datagram_to_home(home)
    pkt = ipip_encapsulate(inner, ha_tester.cn, home, forwarding=False)
    ha_tester.cn_place.transport.send_ip(pkt)
    got = ha_tester.tunnelled_at(ha_tester.mn_place, marker, 1.0)
    steps.record("from h: IP-in-IP outer h->home, inner h->home", "tunnelled to the care-of address",
                 got.summary() if got else "nothing")
    should(got is not None, "an encapsulated datagram from another source should be tunnelled to the node")


@part("MIP.HA.TUN.12", "Each node's data goes to its own care-of address",
      ["rfc5944-3.8.1-c", "rfc5944-4.2.3-a"])
def test_bindings_per_node(ha_tester, steps):
    a, b = ha_tester.mn("10.1.1.100"), ha_tester.mn("10.1.1.101")
    ha_tester.registered(a, steps=steps)
    ha_tester.registered(b, steps=steps, coa=ha_tester.fa_address)
    _, ga = ha_tester.data_to_coa("10.1.1.100")
    _, gb = ha_tester.data_to_coa("10.1.1.101", ha_tester.fa_place)
    steps.record("datagrams to 10.1.1.100 (at r) and 10.1.1.101 (at ar1)", "each at its care-of address",
                 f"{bool(ga)} {bool(gb)}", ok=bool(ga and gb))
    assert ga is not None, "nothing for 10.1.1.100 at r"
    assert gb is not None, "nothing for 10.1.1.101 at ar1"


@part("MIP.HA.TUN.13", "Broadcasts on the home link are not tunnelled to a node that did not set B",
      ["rfc5944-4.3-a"])
def test_no_broadcast_without_b(ha_tester, steps):
    _, home = _bound(ha_tester, steps)
    marker = ha_tester.next_marker()
    place = ha_tester.home_place
    place.transport.send_udp("10.1.1.255", marker, 9)
    ok = ha_tester.not_tunnelled(marker, wait=0.4, marker_home=home)
    steps.record(f"UDP broadcast to 10.1.1.255 from ir{AFTER}", "not tunnelled", "nothing" if ok else "tunnelled",
                 ok=ok)
    assert ok, "a home-link broadcast was tunnelled to a node without B"


@part("MIP.HA.TUN.14", "With B and D, a home-link broadcast is tunnelled to the co-located care-of address",
      ["rfc5944-3.6.1.2-c", "rfc5944-4.3-b"], needs=["mip.broadcast"])
def test_broadcast_with_b(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="BD")
    marker = ha_tester.next_marker()
    ha_tester.home_place.transport.send_udp("10.1.1.255", marker, 9)
    got = ha_tester.tunnelled_at(ha_tester.mn_place, marker, 1.0)
    steps.record("UDP broadcast to 10.1.1.255 from ir", "tunnelled to r", got.summary() if got else "nothing",
                 ok=got is not None)
    assert got is not None, "a home-link broadcast did not reach a node registered with B and D"


# ---- minimal encapsulation (M) ------------------------------------------------------------------

@part("MIP.HA.MIN.1", "With M, data reaches the care-of address in minimal encapsulation (protocol 55), header checksum right",
      ["rfc5944-3.8.1-c", "rfc5944-4.2.3-a", "rfc5944-4.2.3-d"], needs=["mip.minimal-encapsulation"])
def test_minimal(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DM")
    sent, got = _tunnelled(ha_tester, steps, home)
    assert got.kind == "minimal", f"encapsulation {got.kind}, minimal asked for (M)"
    assert str(got.outer.src) == ha_tester.ha and str(got.outer.dst) == ha_tester.coa, got.summary()
    inner = parse_ipv4(got.inner, strict_length=False).value
    assert (str(inner.src), str(inner.dst)) == (ha_tester.cn, home), f"restored inner {inner.src}->{inner.dst}"


@part("MIP.HA.MIN.2", "With M, the minimal forwarding header carries the original source (S bit) and protocol",
      ["rfc5944-4.2.3-a"], needs=["mip.minimal-encapsulation"])
def test_minimal_header(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DM")
    _, got = _tunnelled(ha_tester, steps, home)
    assert got.kind == "minimal", got.summary()
    body = parse_ipv4(got.received.data).value.payload
    s_bit, proto = bool(body[1] & 0x80), body[0]
    steps.record("minimal forwarding header", "S=1 (the HA is not the source), protocol 17, original dst = home",
                 f"S={int(s_bit)} proto {proto} dst {'.'.join(map(str, body[4:8]))}",
                 ok=s_bit and proto == 17 and body[4:8] == bytes(map(int, home.split("."))))
    assert s_bit, "S bit clear although the original source is not the HA"
    assert proto == 17
    assert body[4:8] == bytes(map(int, home.split("."))), "original destination is not the home address"
    assert body[1] & 0x7F == 0, "reserved bits of the forwarding header not zero"


@part("MIP.HA.MIN.3", "With M, a fragment is not minimal-encapsulated (IP-in-IP or dropped)",
      ["rfc2004-3-a"], needs=["mip.minimal-encapsulation"])
def test_minimal_fragment(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DM")
    _tunnelled(ha_tester, steps, home, what="a first datagram (the home link has resolved the address)")
    packet, marker = ha_tester.datagram_to_home(home)
    p = parse_ipv4(packet).value
    frag = build_ipv4(p.src, p.dst, 17, p.payload, ttl=64, flags_fragment=FLAG_MF, identification=0x4242)
    ha_tester.cn_place.transport.send_ip(frag)
    got = ha_tester.tunnelled_at(ha_tester.mn_place, marker, 0.5)
    steps.record("a first fragment (MF) from h to the home address", "IP-in-IP or not tunnelled, never minimal",
                 got.summary() if got else "nothing", ok=got is None or got.kind != "minimal")
    assert got is None or got.kind != "minimal", "a fragment was minimal-encapsulated"


# ---- GRE (G) -------------------------------------------------------------------------------------

@part("MIP.HA.GRE.1", "With G, data reaches the care-of address in GRE (protocol 47): version 0, protocol type 0x0800",
      ["rfc2784-2.3.1-a", "rfc2784-3-a", "rfc5944-3.8.1-c", "rfc5944-4.2.3-a"], needs=["mip.gre"])
def test_gre(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DG")
    _, got = _tunnelled(ha_tester, steps, home)
    assert got.kind == "gre", f"encapsulation {got.kind}, GRE asked for (G)"
    body = parse_ipv4(got.received.data).value.payload
    word, ptype = struct.unpack("!HH", body[:4])
    steps.record("GRE header", "version 0, protocol type 0x0800", f"word {word:#06x} type {ptype:#06x}",
                 ok=word & 7 == 0 and ptype == 0x0800)
    assert word & 7 == 0, f"GRE version {word & 7}"
    assert ptype == 0x0800, f"protocol type {ptype:#06x}"


@part("MIP.HA.GRE.2", "With G, the GRE header's reserved bits are zero (and Reserved1 when a checksum is present)",
      ["rfc2784-2.3-b", "rfc2784-2.6-a", "rfc2784-5.2-a"], needs=["mip.gre"])
def test_gre_reserved(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DG")
    _, got = _tunnelled(ha_tester, steps, home)
    body = parse_ipv4(got.received.data).value.payload
    word = struct.unpack("!H", body[:2])[0]
    reserved0 = (word >> 3) & 0xFFF
    ok = reserved0 == 0 and (not word & 0x8000 or body[6:8] == b"\0\0")
    steps.record("GRE C bit, Reserved0, Reserved1", "Reserved0 0, Reserved1 0", f"{word:#06x} {body[4:8].hex()}", ok=ok)
    assert reserved0 == 0, f"Reserved0 {reserved0:#x}"
    if word & 0x8000:
        assert body[6:8] == b"\0\0", "Reserved1 not zero"


@part("MIP.HA.GRE.3", "With G, the inner datagram is forwarded into the tunnel (TTL one less) and intact",
      ["rfc5944-4.2.3-a"], needs=["mip.gre"])
def test_gre_inner(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DG")
    sent, got = _tunnelled(ha_tester, steps, home, ttl=64)
    a, b = parse_ipv4(sent).value, parse_ipv4(got.inner, strict_length=False).value
    steps.record("inner packet", "h->home, payload as sent, TTL 62", f"{b.src}->{b.dst} ttl {b.ttl}",
                 ok=a.payload == b.payload and b.ttl == 62)
    assert a.payload == b.payload and (a.src, a.dst) == (b.src, b.dst), "inner packet changed"
    should(b.ttl == 62, f"inner TTL {b.ttl}, expected 62")


@part("MIP.HA.GRE.4", "With G, outer DF follows the inner DF",
      ["rfc5944-4.2.3-a"], needs=["mip.gre"])
def test_gre_df(ha_tester, steps):
    _, home = _bound(ha_tester, steps, flags="DG")
    _, got = _tunnelled(ha_tester, steps, home, df=True)
    steps.record("outer DF for an inner DF datagram", "DF set", got.outer.df)
    should(got.outer.df, "the outer header should carry DF when the inner one does")


@part("MIP.HA.ENC.4", "A new registration without M or G after one with G switches the tunnel back to IP-in-IP",
      ["rfc5944-3.8.1-c"], needs=["mip.gre"])
def test_encapsulation_switch(ha_tester, steps):
    mn, home = _bound(ha_tester, steps, flags="DG")
    ha_tester.registered(mn, steps=steps, flags="D")
    _, got = _tunnelled(ha_tester, steps, home)
    assert got.kind == "ipip", f"still {got.kind} after re-registering without G"
