"""MN: a co-located mobile node's tunnels (RFC 5944 4.1; RFC 2003, RFC 2784; RFC 3024 reverse
tunnelling; RFC 3519 behind the NAT on fn3). The node registers co-located with the tester's home
agent (iha); the tester then tunnels an ICMP echo request from the correspondent H to the home
address and looks for the echo reply, which the node sends back through its reverse tunnel."""
from ipaddress import IPv4Address

from testbed.conformance.mip.ipv4 import PROTO_GRE, build_ipv4
from testbed.conformance.mip.messages import D, T, EXT_UDP_TUNNEL_REQUEST, TunnelData, UdpTunnelReply, flag_letters
from testbed.conformance.mip.auth import EXT_MN_HA_AUTH
from testbed.conformance.mip.tunnels import gre_header, ipip_decapsulate, ipip_encapsulate, gre_encapsulate
from testbed.conformance.mip_mn_env import CORRESPONDENT, echo_reply_in, pingable
from testbed.conformance.parts import inconclusive, part, should

COA = IPv4Address("192.0.2.100")
NAT_PUBLIC = IPv4Address("203.0.113.10")


def _reply_tunnelled(tester, ident: int, timeout: float = 0.6):
    """The echo reply with `ident` reverse-tunnelled (IP-in-IP) to the home agent, or None."""
    def match(i) -> bool:
        if getattr(i, "kind", None) != "ip" or i.protocol != 4:
            return False
        d = ipip_decapsulate(i.data)
        return d.ok and echo_reply_in(d.inner, ident)
    return tester.take(match, timeout)


def _reply_in_udp(tester, ident: int, timeout: float = 0.6):
    def match(i) -> bool:
        return (getattr(i, "kind", None) == "udp" and i.data[:1] == b"\x04" and len(i.data) > 4
                and echo_reply_in(i.data[4:], ident))
    return tester.take(match, timeout)


def _ping_through(tester, steps, packet: bytes, ident: int, what: str, delivered: bool = True):
    tester.ha_send_ip(packet, what)
    got = _reply_tunnelled(tester, ident, 0.6 if delivered else 0.4)
    steps.record(f"HA -> {COA}: {what} (echo request H -> home address)",
                 "the echo reply back through the reverse tunnel" if delivered else "no echo reply (discarded)",
                 got.summary() if got else "no echo reply", ok=(got is not None) == delivered)
    return got


def _registered(tester):
    tester.colocated_register("fn1")
    tester.drain()


@part("MIP.MN.DECAP.1", "An IP-in-IP datagram from the home agent to the co-located care-of address is decapsulated and delivered",
      ["rfc5944-4.1-b"])
def test_ipip_delivered(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    inner = pingable(CORRESPONDENT, tester.home, ident)
    got = _ping_through(tester, steps, ipip_encapsulate(inner, tester.ha_address, COA), ident, "IP-in-IP")
    assert got is not None, "no echo reply to an IP-in-IP tunnelled echo request from the home agent"


@part("MIP.MN.DECAP.2", "The reverse-tunnelled reply goes from the care-of address to the home agent, the home address inside",
      ["rfc5944-4.1-b", "rfc5265-2.5-a"])
def test_reverse_tunnel_header(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, ipip_encapsulate(pingable(CORRESPONDENT, tester.home, ident),
                                                        tester.ha_address, COA), ident, "IP-in-IP")
    if got is None:
        inconclusive("no echo reply came back")
    d = ipip_decapsulate(got.data).value
    inner = d.inner
    src = IPv4Address(inner[12:16])
    steps.record("the reverse tunnel's headers", f"outer {COA} -> {tester.ha_address}, inner from {tester.home}",
                 f"outer {d.outer.src} -> {d.outer.dst}, inner from {src}",
                 ok=(d.outer.src, d.outer.dst, src) == (COA, tester.ha_address, tester.home))
    assert (d.outer.src, d.outer.dst) == (COA, tester.ha_address), f"outer {d.outer.src} -> {d.outer.dst}"
    assert src == tester.home, f"inner source {src}, expected the home address"


@part("MIP.MN.DECAP.3", "A GRE datagram from the home agent is decapsulated and delivered", ["rfc2784-3.1-a"],
      needs=["mip.gre"])
def test_gre_delivered(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, gre_encapsulate(pingable(CORRESPONDENT, tester.home, ident),
                                                       tester.ha_address, COA), ident, "GRE")
    assert got is not None, "no echo reply to a GRE tunnelled echo request from the home agent"


def _gre(tester, ident: int, **header) -> bytes:
    inner = pingable(CORRESPONDENT, tester.home, ident, ttl=63)
    return build_ipv4(tester.ha_address, COA, PROTO_GRE, gre_header(inner, **header) + inner)


@part("MIP.MN.DECAP.4", "A GRE datagram with the checksum present is verified and delivered", ["rfc2784-2.2-a"],
      needs=["mip.gre"])
def test_gre_checksum_present(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, _gre(tester, ident, checksum=True), ident, "GRE, C bit and a right checksum")
    assert got is not None, "a GRE datagram with a right checksum was not delivered"


@part("MIP.MN.DECAP.5", "A GRE datagram with a wrong checksum is discarded", ["rfc2784-2.2-a"], needs=["mip.gre"])
def test_gre_bad_checksum(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, _gre(tester, ident, checksum=True, wrong_checksum=True), ident,
                        "GRE, C bit and a wrong checksum", delivered=False)
    assert got is None, "a GRE datagram with a wrong checksum was delivered"
    ident = tester.next_ident()
    alive = _ping_through(tester, steps, _gre(tester, ident), ident, "GRE, no checksum (still alive?)")
    assert alive is not None, "no echo reply through the tunnel after the discarded one"


@part("MIP.MN.DECAP.6", "A GRE datagram with one of Reserved0 bits 1-5 set (RFC 1701 flags) is discarded",
      ["rfc2784-2.3-a", "rfc2784-5.2-a"], needs=["mip.gre"])
def test_gre_rfc1701_bits(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, _gre(tester, ident, reserved0=0x800), ident,
                        "GRE with Reserved0 bit 1 (routing present) set", delivered=False)
    assert got is None, "a GRE datagram with Reserved0 bit 1 set was delivered"


@part("MIP.MN.DECAP.7", "GRE Reserved0 bits 6-12 are ignored on receipt", ["rfc2784-2.3-b"], needs=["mip.gre"])
def test_gre_reserved_ignored(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, _gre(tester, ident, reserved0=0x001), ident, "GRE with Reserved0 bit 12 set")
    assert got is not None, "a GRE datagram with only bits 6-12 of Reserved0 set was not delivered"


@part("MIP.MN.DECAP.8", "A GRE datagram whose protocol type is not a registered EtherType is discarded",
      ["rfc2784-2.4-a"], needs=["mip.gre"])
def test_gre_unknown_protocol(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    got = _ping_through(tester, steps, _gre(tester, ident, protocol_type=0x1234), ident,
                        "GRE with protocol type 0x1234", delivered=False)
    should(got is None, "a GRE datagram of protocol type 0x1234 was delivered as IPv4")


@part("MIP.MN.DECAP.9", "An IP-in-IP datagram to the care-of address from another source than the home agent is not delivered",
      ["rfc2003-6.2-a"])
def test_ipip_foreign_source(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    packet = ipip_encapsulate(pingable(CORRESPONDENT, tester.home, ident), "10.1.1.66", COA)
    got = _ping_through(tester, steps, packet, ident, "IP-in-IP from 10.1.1.66 (not the HA)", delivered=False)
    should(got is None, "an IP-in-IP datagram from a stranger was decapsulated and delivered")


@part("MIP.MN.DECAP.10", "An inner datagram whose TTL is 0 after decapsulation is discarded", ["rfc2003-3.1-d"])
def test_ipip_inner_ttl_zero(tester, steps):
    _registered(tester)
    ident = tester.next_ident()
    packet = ipip_encapsulate(pingable(CORRESPONDENT, tester.home, ident, ttl=0), tester.ha_address, COA,
                              forwarding=False)
    got = _ping_through(tester, steps, packet, ident, "IP-in-IP, inner TTL 0", delivered=False)
    assert got is None, "an inner datagram with TTL 0 was delivered"


# ---- RFC 3519: the node behind the NAT (fn3) -----------------------------------------------------

def _nat_request(tester):
    return tester.colocated_request("fn3")


def _nat_register(tester, keepalive: int = 30, **reply_fields):
    f, at = _nat_request(tester)
    ext = UdpTunnelReply(keepalive=keepalive, **reply_fields)
    at, _ = tester.ha_accept(at, extensions_before=[ext], what=f"with UDP Tunnel Reply {ext}")
    tester.drain()  # a retransmission after the reply is the part's to judge (e.g. a rejected extension)
    return f, at


@part("MIP.MN.NAT.1", "A co-located request carries a UDP Tunnel Request extension before the MN-HA one, reserved fields zero",
      ["rfc3519-4.4-b", "rfc3519-3.1-a", "rfc3519-3.1-b", "rfc3519-3.1-c", "rfc5944-1.11-a"], needs=["mip.nat-traversal"])
def test_udp_tunnel_request(tester, steps):
    f, at = _nat_request(tester)
    req = f.request
    types = [e.type for e in req.extensions]
    ext = req.find(EXT_UDP_TUNNEL_REQUEST)
    steps.record("co-located request behind the NAT", "extension 144 (length 6, reserved 0) before MN-HA (32)",
                 f"types {types}; {ext}")
    assert ext is not None, f"no UDP Tunnel Request extension (types {types})"
    assert types.index(EXT_UDP_TUNNEL_REQUEST) < types.index(EXT_MN_HA_AUTH), f"extension 144 after MN-HA: {types}"
    raw = f.udp.payload[ext.offset:ext.offset + 8]
    assert raw[1] == 6, f"extension 144 length {raw[1]}, must be 6"
    assert (ext.reserved1, ext.reserved2, ext.reserved3) == (0, 0, 0), f"reserved fields not zero: {ext}"


@part("MIP.MN.NAT.2", "A request asking for UDP tunnelling sets D", ["rfc3519-3.1.5-a"], needs=["mip.nat-traversal"])
def test_udp_tunnel_request_d(tester, steps):
    f, at = _nat_request(tester)
    req = f.request
    steps.record("co-located request with extension 144", "D set", f"flags {flag_letters(req.flags)}",
                 ok=bool(req.flags & D))
    assert req.flags & D, f"D clear in a request with a UDP Tunnel Request (flags {flag_letters(req.flags)})"


@part("MIP.MN.NAT.3", "A request asking for UDP tunnelling sets T", ["rfc3519-3.1.5-b"], needs=["mip.nat-traversal"])
def test_udp_tunnel_request_t(tester, steps):
    f, at = _nat_request(tester)
    req = f.request
    steps.record("co-located request with extension 144", "T set", f"flags {flag_letters(req.flags)}",
                 ok=bool(req.flags & T))
    should(req.flags & T, f"T clear in a request with a UDP Tunnel Request (flags {flag_letters(req.flags)})")


def _udp_ping(tester, at, ident: int, what: str = "UDP tunnel data (next header 4)", **data_fields):
    inner = pingable(CORRESPONDENT, tester.home, ident)
    tester.ha_send_udp(at.src, at.sport, TunnelData(data_fields.pop("next_header", 4), inner, **data_fields).encode(),
                       what)


@part("MIP.MN.NAT.4", "Behind the NAT, data tunnelled in UDP is delivered and the answer comes back in UDP from the registration's port",
      ["rfc3519-4.1-a", "rfc3519-4.4-d", "rfc3519-4.7-b"], needs=["mip.nat-traversal"])
def test_udp_tunnel_data(tester, steps):
    f, at = _nat_register(tester)
    ident = tester.next_ident()
    _udp_ping(tester, at, ident)
    got = _reply_in_udp(tester, ident)
    steps.record(f"registered through the NAT ({at.src}:{at.sport}); echo request in UDP tunnel data",
                 f"the echo reply in UDP tunnel data from {at.src}:{at.sport}", got.summary() if got else "none",
                 ok=got is not None and (got.src, got.sport) == (at.src, at.sport))
    assert got is not None, "no echo reply in the UDP tunnel"
    assert (got.src, got.sport) == (at.src, at.sport), \
        f"tunnel data from {got.src}:{got.sport}, the registration came from {at.src}:{at.sport}"


@part("MIP.MN.NAT.5", "An idle UDP tunnel gets keepalives (ICMP echo to the home agent in UDP) at the interval the reply gave, from the same port",
      ["rfc3519-4.9-a", "rfc3519-4.9-b", "rfc3519-4.9-c", "rfc3519-3.2-a", "rfc3519-3.2-b"], needs=["mip.nat-traversal"])
def test_udp_keepalive(tester, steps):
    f, at = _nat_register(tester, keepalive=1)

    def keepalive(i) -> bool:
        if getattr(i, "kind", None) != "udp" or i.data[:1] != b"\x04" or len(i.data) < 32:
            return False
        inner = i.data[4:]
        return inner[9] == 1 and inner[20] == 8 and IPv4Address(inner[16:20]) == tester.ha_address
    got = tester.take(keepalive, 2.5)
    steps.record("registered through the NAT, keepalive interval 1 s, no traffic", "a keepalive within 2.5 s",
                 got.summary() if got else "none", ok=got is not None and (got.src, got.sport) == (at.src, at.sport))
    assert got is not None, "no UDP-encapsulated ICMP echo request to the home agent within 2.5 s (keepalive 1 s)"
    assert (got.src, got.sport) == (at.src, at.sport), f"keepalive from {got.src}:{got.sport}, not the registration's"


@part("MIP.MN.NAT.6", "Without a UDP Tunnel Reply extension in the reply the node does not tunnel in UDP",
      ["rfc3519-4.4-c", "rfc3519-3.1.1-c", "rfc3519-4.6-m"], needs=["mip.nat-traversal"])
def test_no_udp_without_reply_extension(tester, steps):
    _registered(tester)  # fn1: the reply carries no extension 44
    ident = tester.next_ident()
    tester.ha_send_ip(ipip_encapsulate(pingable(CORRESPONDENT, tester.home, ident), tester.ha_address, COA), "IP-in-IP")
    got = tester.take(lambda i: getattr(i, "kind", None) in ("ip", "udp") and (
        (i.kind == "ip" and ipip_decapsulate(i.data).ok and echo_reply_in(ipip_decapsulate(i.data).value.inner, ident))
        or (i.kind == "udp" and i.data[:1] == b"\x04" and echo_reply_in(i.data[4:], ident))), 0.6)
    steps.record("registered with extension 144 asked, reply without 44; IP-in-IP echo request",
                 "the echo reply in IP-in-IP, not in UDP", got.summary() if got else "none",
                 ok=got is not None and got.kind == "ip")
    if got is None:
        inconclusive("no echo reply at all")
    assert got.kind == "ip", "the node tunnels in UDP though the reply carried no UDP Tunnel Reply extension"


@part("MIP.MN.NAT.7", "UDP tunnel data whose Next Header does not match the binding's (4) is dropped",
      ["rfc3519-3.3-b", "rfc3519-3.3-c"], needs=["mip.nat-traversal"])
def test_udp_next_header_mismatch(tester, steps):
    f, at = _nat_register(tester)
    ident = tester.next_ident()
    _udp_ping(tester, at, ident, "UDP tunnel data with next header 55 (an IPv4 packet inside)", next_header=55)
    got = _reply_in_udp(tester, ident, 0.4)
    steps.record("tunnel data, next header 55 for an IP-in-UDP binding", "dropped: no echo reply",
                 got.summary() if got else "none", ok=got is None)
    assert got is None, "tunnel data with a mismatched next header was delivered"


@part("MIP.MN.NAT.8", "The Reserved field of UDP tunnel data is ignored on receipt", ["rfc3519-3.3-a"],
      needs=["mip.nat-traversal"])
def test_udp_data_reserved(tester, steps):
    f, at = _nat_register(tester)
    ident = tester.next_ident()
    _udp_ping(tester, at, ident, "UDP tunnel data, reserved 0x1234", reserved=0x1234)
    got = _reply_in_udp(tester, ident)
    steps.record("tunnel data with reserved 0x1234", "delivered: the echo reply", got.summary() if got else "none",
                 ok=got is not None)
    assert got is not None, "tunnel data with a nonzero reserved field was not delivered"


@part("MIP.MN.NAT.9", "The Reserved field of the UDP Tunnel Reply extension is ignored", ["rfc3519-3.2-d"],
      needs=["mip.nat-traversal"])
def test_udp_reply_reserved(tester, steps):
    f, at = _nat_register(tester, reserved=0x1234)
    ident = tester.next_ident()
    _udp_ping(tester, at, ident)
    got = _reply_in_udp(tester, ident)
    steps.record("UDP Tunnel Reply with reserved 0x1234, then tunnel data", "the echo reply in UDP",
                 got.summary() if got else "none", ok=got is not None)
    assert got is not None, "no UDP tunnel after a UDP Tunnel Reply with nonzero reserved bits"


@part("MIP.MN.NAT.10", "Re-registrations are not tunnelled in UDP: a plain request on port 434",
      ["rfc3519-4.2-a"], needs=["mip.nat-traversal"])
def test_reregistration_not_tunnelled(tester, steps):
    f, at = _nat_request(tester)
    tester.ha_accept(at, lifetime=2, extensions_before=[UdpTunnelReply(keepalive=30)])
    got = tester.take(lambda i: getattr(i, "kind", None) == "udp" and i.data[:1] in (b"\x01", b"\x04")
                      and (i.data[:1] == b"\x01" or b"\x01" == i.data[24:25]), 2.2)
    steps.record("accepted with lifetime 2 s and UDP tunnelling", "a plain Registration Request (type 1) before 2 s",
                 got.summary() if got else "none", ok=got is not None and got.data[:1] == b"\x01")
    assert got is not None, "no re-registration within 2.2 s"
    assert got.data[:1] == b"\x01", "the re-registration came inside UDP tunnel data"
