"""FA: coverage of RFC 3519 (the 'U' flag of an agent not behind a NAT) and RFC 3024 (the
Encapsulating Delivery Style: the visitor's IP-in-IP to the FA re-encapsulated to the home agent, its
unencapsulated packets then routed, not reverse-tunnelled; mobile nodes with private addresses).
The tester's mobile nodes send frames on fn1 with their RFC 1918 home addresses (10.1.1.10x); the
tester's home agent listens at 10.1.1.2 (UDP 434, raw protocol 4)."""
import os

from testbed.conformance.mip import parse_reply, parse_request
from testbed.conformance.mip.ipv4 import PROTO_UDP, parse_ipv4
from testbed.conformance.mip.messages import EncapsulatingDeliveryStyle
from testbed.conformance.mip.tunnels import ipip_decapsulate, ipip_encapsulate
from testbed.conformance.mip.udp import ipv4_udp
from testbed.conformance.parts import inconclusive, part

CN = "10.1.2.10"
NEEDS = ["mip.reverse-tunnel"]


def _marker() -> bytes:
    return b"fa-coverage-" + os.urandom(6).hex().encode()


def _at_ha(t, m: bytes, timeout: float):
    """An IP-in-IP packet at the home agent whose data carries `m`, or None."""
    return t.take(lambda i: getattr(i, "kind", None) == "ip" and i.protocol == 4 and m in i.data, timeout)


def _encapsulating_registered(t, steps, mn):
    """Preamble: `mn` asks for a reverse tunnel with the Encapsulating Delivery Style (extension 130
    after MN-HA). Returns (request, relayed request, the FA's address from the accepting reply) or
    (None, None, code) when the FA refused it itself."""
    t.learn_agent()
    data = t.request(mn, flags="T", extensions_after=[EncapsulatingDeliveryStyle()])
    ident = mn.mn.pending_identification
    t.send_request(mn, data)
    relayed = t.wait_relayed(mn, ident, 0.8)
    if relayed is None:
        f = t.wait_reply(mn, ident, 0.3)
        code = parse_reply(f.udp.payload).code if f else None
        steps.record("T request with the Encapsulating Delivery Style (130)", "relayed, or refused with 79",
                     f.summary() if f else "nothing")
        return data, None, code
    t.answer(relayed, 0)
    back = t.wait_reply(mn, ident)
    if back is None or parse_reply(back.udp.payload).code not in (0, 1):
        inconclusive(f"the FA did not relay the HA's accepting reply: {back.summary() if back else 'nothing'}")
    steps.record("T request with the Encapsulating Delivery Style (130), accepted by the HA",
                 "relayed; the accepting reply relayed to the node", back.summary())
    t.collect(0.05, lambda i: False)  # the visitor entry is updated after the reply went out
    t.drain()
    return data, relayed, str(back.ip.src)


def _encapsulated(t, mn, fa_address: str, m: bytes) -> bytes:
    """The visitor's datagram home -> CN, in IP-in-IP from its home address to the FA (RFC 3024 5.2.2),
    in a frame to the FA's link-layer address."""
    inner = ipv4_udp(mn.home, CN, 7777, 7777, m, ttl=64)
    packet = ipip_encapsulate(inner, mn.home, fa_address, forwarding=False)
    t.send_frame_ip(packet, mn.mac)
    return inner


@part("MIP.FA.COV.1", "An agent that is not behind a NAT does not set U in its advertisements",
      ["rfc3519-3.4-b"])
def test_no_u_flag(tester, steps):
    tester.advertisement = None
    tester.solicit(tester.mns[0])
    f = tester.wait_frame(tester.is_advertisement, 2.0)
    if f is None:
        inconclusive("no agent advertisement within 2 s of a solicitation")
    from testbed.conformance.mip import parse_advertisement
    adv = parse_advertisement(f.icmp, require_checksum=False).value
    steps.record("solicit; the advertisement's flags", "U clear (the agent at 192.0.2.1 is not behind a NAT)",
                 adv.flag_letters, ok=not adv.has("U"))
    assert not adv.has("U"), f"U set by an agent that is not behind a NAT (flags {adv.flag_letters})"


@part("MIP.FA.COV.2", "With the Encapsulating Delivery Style, the visitor's IP-in-IP to the FA is re-encapsulated "
      "from the care-of address to the home agent (or the style is refused with 79)",
      ["rfc3024-4.2.1-b", "rfc3024-5.2.2-b", "rfc3024-5.4-b"], needs=NEEDS)
def test_encapsulating_delivery(tester, steps):
    mn = tester.mns[0]
    data, relayed, fa = _encapsulating_registered(tester, steps, mn)
    if relayed is None:
        assert fa == 79, f"the FA neither relayed the request with 130 nor refused it with 79 (code {fa})"
        return
    req = parse_request(data).value
    m = _marker()
    _encapsulated(tester, mn, fa, m)
    got = _at_ha(tester, m, 0.6)
    steps.record(f"IP-in-IP {mn.home} -> {fa} (inner {mn.home} -> {CN}) in a frame to the FA",
                 f"IP-in-IP {req.care_of_address} -> {tester.ha.address} at the home agent, inner the visitor's datagram",
                 f"{got.src} -> {got.dst} protocol {got.protocol}" if got else "nothing", ok=got is not None)
    assert got is not None, "the visitor's encapsulated datagram was not reverse-tunnelled to the home agent"
    assert (got.src, got.dst) == (str(req.care_of_address), str(tester.ha.address)), \
        f"outer {got.src} -> {got.dst}: must be the request's care-of address -> the reply's home agent"
    d = ipip_decapsulate(got.data)
    assert d.ok, d.error
    inner = parse_ipv4(d.value.inner, strict_length=False).value
    steps.record("the inner datagram", f"{mn.home} -> {CN}, UDP (the visitor's own, not its tunnel to the FA)",
                 f"{inner.src} -> {inner.dst} protocol {inner.protocol}")
    assert (str(inner.src), str(inner.dst), inner.protocol) == (str(mn.home), CN, PROTO_UDP), \
        f"inner {inner.src} -> {inner.dst} protocol {inner.protocol}: not the decapsulated datagram"


@part("MIP.FA.COV.3", "With the Encapsulating Delivery Style, the visitor's unencapsulated datagrams are not "
      "reverse-tunnelled", ["rfc3024-5.2.1-a", "rfc3024-5.4-a"], needs=NEEDS)
def test_encapsulating_direct_not_tunnelled(tester, steps):
    mn = tester.mns[0]
    data, relayed, fa = _encapsulating_registered(tester, steps, mn)
    if relayed is None:
        inconclusive(f"the FA does not offer the Encapsulating Delivery Style (code {fa})")
    m = _marker()
    tester.send_frame_ip(ipv4_udp(mn.home, CN, 7777, 7777, m, ttl=64), mn.mac)
    got = _at_ha(tester, m, 0.4)
    steps.record(f"a plain datagram {mn.home} -> {CN} in a frame to the FA (Direct Delivery)",
                 "not reverse-tunnelled (routed as regular traffic)",
                 f"IP-in-IP {got.src} -> {got.dst}" if got else "nothing at the home agent", ok=got is None)
    assert got is None, ("a visitor that asked for the Encapsulating Delivery Style had its unencapsulated "
                         "datagram reverse-tunnelled to the home agent")
    m2 = _marker()
    _encapsulated(tester, mn, fa, m2)
    alive = _at_ha(tester, m2, 0.6)
    steps.record("the same datagram encapsulated to the FA", "reverse-tunnelled", "yes" if alive else "nothing",
                 ok=alive is not None)
    assert alive is not None, "the encapsulated datagram was not reverse-tunnelled either"


@part("MIP.FA.COV.4", "A visitor with a private (RFC 1918) home address is served with a reverse tunnel: "
      "tunnelled data delivered to it, its datagrams tunnelled to the home agent",
      ["rfc3024-8-e", "rfc3024-8-h"], needs=NEEDS)
def test_private_address_visitor(tester, steps):
    mn = tester.mns[0]
    assert mn.home.is_private
    tester.register(mn, flags="T")
    tester.drain()
    m = _marker()
    tester.tunnel_to_coa(tester.inner(mn, m))
    got = tester.delivered(mn, m, 0.6)
    steps.record(f"IP-in-IP HA -> care-of address, inner {CN} -> {mn.home} (RFC 1918)",
                 f"delivered on the link to {mn.mac}", got.summary() if got else "nothing",
                 ok=got is not None and got.dst_mac == mn.mac)
    assert got is not None, f"a datagram for the private home address {mn.home} was not delivered"
    assert got.dst_mac == mn.mac, f"delivered to {got.dst_mac}, the visitor is {mn.mac}"
    m2 = _marker()
    tester.send_frame_ip(ipv4_udp(mn.home, CN, 7777, 7777, m2, ttl=64), mn.mac)
    back = _at_ha(tester, m2, 0.6)
    steps.record(f"a datagram {mn.home} -> {CN} from the visitor", "reverse-tunnelled to the home agent",
                 f"{back.src} -> {back.dst}" if back else "nothing", ok=back is not None)
    assert back is not None, "the privately addressed visitor's datagram was not reverse-tunnelled"
