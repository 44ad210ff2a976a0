"""FA: reverse tunnelling (RFC 3024) and the Mobile-Foreign authentication it shares with a mobile node
(RFC 5944 3.7.2.1, 3.7.3.2). The tester's HA receives what the FA tunnels on a raw socket for
protocol 4 at 10.1.1.2; the second tester mobile node (10.1.1.101) shares an MN-FA security
association with the FA."""
import os

from testbed.conformance.mip import parse_reply, parse_request
from testbed.conformance.mip.auth import EXT_MN_FA_AUTH
from testbed.conformance.mip.ipv4 import PROTO_UDP, parse_ipv4
from testbed.conformance.mip.messages import EncapsulatingDeliveryStyle
from testbed.conformance.mip.tunnels import ipip_decapsulate
from testbed.conformance.mip.udp import ipv4_udp
from testbed.conformance.parts import inconclusive, part, should

CN = "10.1.2.10"


def mn_datagram(t, mn, steps, ttl: int = 64, df: bool = False, dst=CN):
    """A UDP datagram from the visitor's home address, in a frame to the FA's MAC; returns the marker."""
    m = b"fa-reverse-" + os.urandom(6).hex().encode()
    packet = ipv4_udp(mn.home, dst, 7777, 7777, m, ttl=ttl, flags_fragment=0x4000 if df else 0)
    t.send_frame_ip(packet, mn.mac)
    steps.record(f"a datagram {mn.home} -> {dst}, TTL {ttl}{', DF' if df else ''}, to the FA's MAC", observed=m.decode())
    return m


def tunnelled(t, m, timeout: float = 0.5):
    return t.take(t.reverse_tunnelled(m), timeout)


def not_tunnelled(t, m, steps, marker_mn, timeout: float = 0.4):
    """What of the datagram carrying `m` reaches the HA in a silence window ended once the datagram
    of the T visitor `marker_mn` that follows is tunnelled (testbed/conformance/inbox.py)."""
    if marker_mn is not None:
        steps.record(f"then a datagram of the visitor {marker_mn.home} (registered with T): the wait ends once it "
                     "is tunnelled")
    return t.not_reverse_tunnelled(m, timeout, marker_mn).item


@part("MIP.FA.REVERSE.1", "A request with T, sent with TTL 255, is relayed to the home agent with T kept",
      ["rfc3024-4.2.2-a", "rfc5944-4.2.2-i"], needs=["mip.reverse-tunnel"])
def test_t_request_relayed(tester, steps):
    mn = tester.mns[0]
    tester.learn_agent()
    data = tester.request(mn, flags="T")
    tester.send_request(mn, data, ttl=255)
    r = tester.wait_relayed(mn, mn.mn.pending_identification)
    steps.record("request with T, TTL 255", "relayed with T", f"flags {parse_request(r.data).flags:#x}" if r else "nothing",
                 ok=r is not None)
    assert r is not None, "a T request was not relayed"
    assert parse_request(r.data).flags & 0x02, "the T bit was lost"


@part("MIP.FA.REVERSE.2", "After an accepted T registration, the visitor's datagrams are tunnelled (IP-in-IP) "
      "from the care-of address to the home agent", ["rfc3024-4.2.2-c", "rfc3024-5.1.2-a", "rfc3024-5.1.1-b",
                                                    "rfc3024-4.2.2-b", "rfc3024-3.1-a"], needs=["mip.reverse-tunnel"])
def test_reverse_tunnel(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps)
    got = tunnelled(tester, m)
    steps.record("at the HA", f"protocol 4 from {tester.care_of_address()} to {tester.ha.address}",
                 f"{got.src} -> {got.dst} protocol {got.protocol}" if got else "nothing", ok=got is not None)
    assert got is not None, "the visitor's datagram was not reverse-tunnelled to the HA"
    assert (got.src, got.dst) == (str(tester.care_of_address()), str(tester.ha.address)), \
        f"outer {got.src} -> {got.dst}"


@part("MIP.FA.REVERSE.3", "The reverse-tunnelled inner datagram is the visitor's own: home address to its "
      "destination, payload intact", ["rfc3024-4.2.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_tunnel_inner(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps)
    got = tunnelled(tester, m)
    assert got is not None, "not reverse-tunnelled"
    d = ipip_decapsulate(got.data)
    assert d.ok, d.error
    inner = parse_ipv4(d.value.inner).value
    steps.record("the inner datagram", f"{mn.home} -> {CN}, UDP, the marker", f"{inner.src} -> {inner.dst}",
                 ok=str(inner.src) == str(mn.home) and str(inner.dst) == CN)
    assert (str(inner.src), str(inner.dst), inner.protocol) == (str(mn.home), CN, PROTO_UDP)
    assert inner.payload.endswith(m)


@part("MIP.FA.REVERSE.4", "The outer header of a reverse-tunnelled datagram has DF set when the inner one has",
      ["rfc2003-3.1-a"], needs=["mip.reverse-tunnel"])
def test_reverse_tunnel_df(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps, df=True)
    got = tunnelled(tester, m)
    assert got is not None, "not reverse-tunnelled"
    outer = parse_ipv4(got.data, strict_length=False).value
    steps.record("outer DF", "set", outer.header.df, ok=outer.header.df)
    assert outer.header.df, "inner DF set, outer DF clear"


@part("MIP.FA.REVERSE.5", "A visitor registered without T is not reverse-tunnelled: its datagrams are routed",
      ["rfc3024-4.2.2-b", "rfc5944-4.2.2-f"], needs=["mip.reverse-tunnel"])
def test_no_t_no_reverse_tunnel(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    other = tester.marker_visitor(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps)
    got = not_tunnelled(tester, m, steps, other)
    steps.record("at the HA", "no IP-in-IP", "tunnelled" if got else "nothing", ok=got is None)
    assert got is None, "a visitor registered without T was reverse-tunnelled"


@part("MIP.FA.REVERSE.6", "After an accepted deregistration, the FA no longer reverse-tunnels the node's "
      "datagrams", ["rfc5944-3.7.3.2-c", "rfc3024-4.2.2-c"], needs=["mip.reverse-tunnel"])
def test_no_reverse_tunnel_after_deregistration(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="T")
    tester.deregister(mn)
    other = tester.marker_visitor(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps)
    got = not_tunnelled(tester, m, steps, other)
    assert got is None, "still reverse-tunnelled after the deregistration"


@part("MIP.FA.REVERSE.7", "A datagram from a node that is not a visitor is not reverse-tunnelled",
      ["rfc3024-5.1.1-b"], needs=["mip.reverse-tunnel"])
def test_non_visitor_not_reverse_tunnelled(tester, steps):
    tester.register(tester.mns[0], flags="T")
    other = tester.mns[2]
    tester.drain()
    m = mn_datagram(tester, other, steps)
    got = not_tunnelled(tester, m, steps, tester.mns[0])
    assert got is None, f"a datagram of {other.home} (never registered) was tunnelled to the HA"


@part("MIP.FA.REVERSE.8", "A visitor's datagram with TTL 1 is not encapsulated (its TTL would reach 0)",
      ["rfc2003-3.1-c"], needs=["mip.reverse-tunnel"])
def test_ttl_one_not_encapsulated(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, flags="T")
    tester.drain()
    m = mn_datagram(tester, mn, steps, ttl=1)
    got = not_tunnelled(tester, m, steps, mn)
    if got is not None:
        inner = parse_ipv4(ipip_decapsulate(got.data).value.inner).value
        steps.record("at the HA", "nothing (or an inner TTL > 0)", f"inner TTL {inner.ttl}")
        assert inner.ttl > 0, "a datagram was encapsulated with inner TTL 0"
    else:
        steps.record("at the HA", "nothing", "nothing", ok=True)


@part("MIP.FA.REVERSE.9", "A T request carrying the Encapsulating Delivery Style extension is either refused "
      "with 79 or relayed without that extension", ["rfc3024-3.3-a", "rfc3024-3.4-d"], needs=["mip.reverse-tunnel"])
def test_encapsulating_delivery_style_consumed(tester, steps):
    mn = tester.mns[0]
    tester.learn_agent()
    data = tester.request(mn, flags="T", extensions_after=[EncapsulatingDeliveryStyle()])
    ident = mn.mn.pending_identification
    tester.send_request(mn, data)
    r = tester.wait_relayed(mn, ident, 0.6)
    f = None if r else tester.wait_reply(mn, ident, 0.3)
    steps.record("T request with extension 130 after MN-HA", "79, or relayed without 130",
                 (f"relayed with {[e.type for e in parse_request(r.data).extensions]}" if r else
                  f.summary() if f else "nothing"))
    if r is not None:
        types = [e.type for e in parse_request(r.data).extensions]
        assert 130 not in types, f"the Encapsulating Delivery Style extension was relayed to the HA: {types}"
        tester.answer(r, 0)
        back = tester.wait_reply(mn, ident)
        assert back is not None, "the reply was not relayed"
        assert 130 not in [e.type for e in parse_reply(back.udp.payload).extensions]
    else:
        assert f is not None and parse_reply(f.udp.payload).code == 79, \
            f"neither relayed nor refused with 79: {f.summary() if f else 'nothing'}"


# ---- MN-FA authentication ---------------------------------------------------------------------------

def mnfa(t):
    mn = t.mns[1]
    if mn.mn_fa is None:
        inconclusive("the scenario gives the FA no MN-FA security association with the second mobile node")
    t.learn_agent()
    return mn


@part("MIP.FA.AUTH.1", "A request with one valid Mobile-Foreign authentication extension is relayed, without it",
      ["rfc5944-3.7.2.1-e", "rfc5944-3.7.2.2-c"], needs=["mip.mn-fa-auth"])
def test_valid_mn_fa_relayed(tester, steps):
    mn = mnfa(tester)
    tester.send_request(mn, tester.request(mn))
    r = tester.wait_relayed(mn, mn.mn.pending_identification)
    steps.record("request with MN-HA then MN-FA", "relayed, MN-FA removed",
                 [e.type for e in parse_request(r.data).extensions] if r else "nothing", ok=r is not None)
    assert r is not None, "a request with a valid MN-FA was not relayed"
    assert EXT_MN_FA_AUTH not in [e.type for e in parse_request(r.data).extensions], "MN-FA relayed to the HA"


def refused(t, mn, steps, data, what):
    ident = mn.mn.pending_identification
    t.send_request(mn, data)
    r = t.not_relayed(mn, ident, 0.4).item  # ends once a valid request of another node sent after it is relayed
    f = t.wait_reply(mn, ident, 0.2)
    code = parse_reply(f.udp.payload).code if f else None
    steps.record(what, "not relayed; 67 to the mobile node", f"relayed: {r is not None}, reply {code}", ok=r is None)
    assert r is None, f"{what}: relayed to the home agent"
    should(code == 67, f"{what}: the mobile node got {code}, not 67")


@part("MIP.FA.AUTH.2", "A request without the MN-FA extension the FA shares with the node is not relayed (67)",
      ["rfc5944-3.7.2.1-f", "rfc5944-3.7.2.1-g", "rfc5944-3.7.2.1-d"], needs=["mip.mn-fa-auth"])
def test_missing_mn_fa(tester, steps):
    mn = mnfa(tester)
    refused(tester, mn, steps, tester.request(mn, mn_fa=False), "request without MN-FA")


@part("MIP.FA.AUTH.3", "A request with a wrong MN-FA authenticator is not relayed (67)",
      ["rfc5944-3.7.2.1-e", "rfc5944-3.7.2.1-f", "rfc5944-3.7.2.1-g"], needs=["mip.mn-fa-auth"])
def test_bad_mn_fa(tester, steps):
    mn = mnfa(tester)
    refused(tester, mn, steps, tester.request(mn, mn_fa_overrides={"corrupt": True}), "request with a corrupted MN-FA")


@part("MIP.FA.AUTH.4", "A request with an MN-FA extension under an unknown SPI is not relayed (67)",
      ["rfc5944-3.7.2.1-e", "rfc5944-3.5.1-b"], needs=["mip.mn-fa-auth"])
def test_wrong_spi_mn_fa(tester, steps):
    mn = mnfa(tester)
    refused(tester, mn, steps, tester.request(mn, mn_fa_overrides={"spi": mn.mn_fa.spi + 1}),
            "request with MN-FA under another SPI")


@part("MIP.FA.AUTH.5", "A request with two MN-FA extensions is not relayed", ["rfc5944-3.7.2.1-f"],
      needs=["mip.mn-fa-auth"])
def test_two_mn_fa(tester, steps):
    mn = mnfa(tester)
    data = tester.request(mn, extensions_after=[mn.mn_fa.authenticate(EXT_MN_FA_AUTH)])
    refused(tester, mn, steps, data, "request with two MN-FA extensions")


@part("MIP.FA.AUTH.6", "The relayed reply to a node sharing an MN-FA association carries a valid MN-FA "
      "extension", ["rfc5944-3.7.3.2-h", "rfc5944-3.7.1-i", "rfc5944-3.5.1-a"], needs=["mip.mn-fa-auth"])
def test_reply_carries_mn_fa(tester, steps):
    mn = mnfa(tester)
    reg = tester.register(mn)
    data = reg.relayed_reply.udp.payload
    rep = parse_reply(data).value
    ok = rep.verify(data, mn.mn_fa.key, EXT_MN_FA_AUTH, mn.mn_fa.spi)
    steps.record("the relayed reply's MN-FA", "exactly one, verifies", [e.type for e in rep.extensions], ok=ok)
    assert ok, "no valid MN-FA extension in the reply relayed to the mobile node"


@part("MIP.FA.AUTH.7", "The FA's own denial to a node sharing an MN-FA association carries a valid MN-FA "
      "extension", ["rfc5944-3.7.1-i"], needs=["mip.mn-fa-auth"])
def test_denial_carries_mn_fa(tester, steps):
    mn = mnfa(tester)
    tester.send_request(mn, tester.request(mn, care_of_address="198.51.100.99"))
    f = tester.wait_reply(mn, mn.mn.pending_identification)
    assert f is not None, "no denial"
    data = f.udp.payload
    ok = parse_reply(data).value.verify(data, mn.mn_fa.key, EXT_MN_FA_AUTH, mn.mn_fa.spi)
    steps.record("the FA's 77 denial", "a valid MN-FA", f.summary(), ok=ok)
    assert ok, "the FA's denial carries no valid MN-FA extension"


@part("MIP.FA.AUTH.8", "A node without an MN-FA association is served without one (MN-FA is not demanded of it)",
      ["rfc5944-3.7.2.1-e"], needs=["mip.mn-fa-auth"])
def test_no_mn_fa_needed_without_sa(tester, steps):
    mn = tester.mns[0]
    reg = tester.register(mn)
    types = [e.type for e in parse_reply(reg.relayed_reply.udp.payload).extensions]
    steps.record("registration of a node the FA shares nothing with", "accepted, no MN-FA in the reply", types)
    assert EXT_MN_FA_AUTH not in types, "an MN-FA extension in a reply to a node with no MN-FA association"
