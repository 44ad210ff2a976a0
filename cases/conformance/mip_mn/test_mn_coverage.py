"""MN: coverage of RFC 3024 (a privately addressed node asks for a reverse tunnel; the Encapsulating
Delivery Style extension's place; the delivery style it asked for, Direct Delivery through the
foreign agent as its default router) and RFC 3519 (a co-located care-of address registered through
a foreign agent that requires it: the 'R' flag of the UDP Tunnel Request, only when the agent
advertises 'U'). The tester is the foreign agent on fn2 (ar2's address and link-layer address,
no co-located address for the node there) or on fn1 (ar1, where the node has the co-located
192.0.2.100), and the home agent in iha."""
from ipaddress import IPv4Address

from testbed.conformance.mip.auth import EXT_MN_FA_AUTH, EXT_MN_HA_AUTH
from testbed.conformance.mip.link import ethernet_ipv4
from testbed.conformance.mip.messages import (
    EXT_ENCAPSULATING_DELIVERY, EXT_UDP_TUNNEL_REQUEST, T, UdpTunnelReply, flag_letters,
)
from testbed.conformance.mip.tunnels import ipip_decapsulate
from testbed.conformance.mip_mn_env import CORRESPONDENT, echo_reply_in, pingable
from testbed.conformance.parts import inconclusive, part

FN1_COA = IPv4Address("192.0.2.100")


@part("MIP.MN.COV.1", "Through a foreign agent the privately addressed node sets T; an Encapsulating Delivery "
      "Style extension appears only with T, after MN-HA and before any MN-FA",
      ["rfc3024-8-a", "rfc3024-3.3-b", "rfc3024-3.3-c"], needs=["mip.reverse-tunnel"])
def test_private_home_sets_t(tester, steps):
    f, req = tester.fa_request("fn2", "FT")
    types = [e.type for e in req.extensions]
    steps.record(f"advertisement F T on fn2; the request (home address {req.home_address}, RFC 1918)",
                 "T set; extension 130 only with T, between MN-HA (32) and MN-FA (33)",
                 f"flags {flag_letters(req.flags)}, extensions {types}", ok=bool(req.flags & T))
    assert req.home_address.is_private, "the scenario's home address is not private"
    assert req.flags & T, f"T clear in a request of a node with a private home address (flags {flag_letters(req.flags)})"
    if EXT_ENCAPSULATING_DELIVERY in types:
        i = types.index(EXT_ENCAPSULATING_DELIVERY)
        assert EXT_MN_HA_AUTH in types[:i], f"extension 130 before the MN-HA extension: {types}"
        assert EXT_MN_FA_AUTH not in types[:i], f"extension 130 after the MN-FA extension: {types}"


@part("MIP.MN.COV.2", "With a reverse tunnel through the foreign agent, the node sends in the delivery style it asked "
      "for: Direct Delivery to the agent's link-layer address (or IP-in-IP to the agent)",
      ["rfc3024-5.1.1-a", "rfc3024-4.1.2-a"], needs=["mip.reverse-tunnel"])
def test_direct_delivery_to_agent(tester, steps):
    f, req = tester.fa_register("fn2", "FT")
    if not req.flags & T:
        inconclusive(f"the node asked for no reverse tunnel (flags {flag_letters(req.flags)})")
    encapsulating = req.find(EXT_ENCAPSULATING_DELIVERY) is not None
    a = tester.agent("fn2")
    tester.drain()
    ident = tester.next_ident()
    packet = pingable(CORRESPONDENT, tester.home, ident)
    tester.send_frame("fn2", ethernet_ipv4(packet, a.mac, tester.mn_mac),
                      f"echo request {CORRESPONDENT} -> {tester.home} delivered by the agent")

    def reply(i) -> bool:
        if getattr(i, "ip", None) is None or i.segment != "fn2":
            return False
        raw = i.raw[14:]
        if i.ip.protocol == 4:
            d = ipip_decapsulate(raw)
            return d.ok and echo_reply_in(d.value.inner, ident)
        return echo_reply_in(raw, ident)
    got = tester.take(reply, 1.0)
    style = "Encapsulating (IP-in-IP to the agent)" if encapsulating else "Direct (to the agent's MAC)"
    steps.record("the node's echo reply on fn2", f"{style}, to {a.mac}", got.summary() if got else "none",
                 ok=got is not None and got.dst_mac == a.mac)
    if got is None:
        inconclusive("no echo reply from the node on fn2")
    assert got.dst_mac == a.mac, f"the echo reply went to {got.dst_mac}, not to the foreign agent {a.mac}"
    if encapsulating:
        assert got.ip.protocol == 4 and got.ip.dst == a.address and got.ip.src == tester.home, \
            f"Encapsulating Delivery Style asked for, the reply is {got.summary()}"
    else:
        assert got.ip.protocol != 4 and got.ip.src == tester.home, \
            f"Direct Delivery asked for (no extension 130), the reply is {got.summary()}"


def _colocated_through_agent(tester, steps, flags: str):
    """Preamble: on fn1 (co-located 192.0.2.100 there), the agent ar1 advertises `flags` (with R):
    the node's request to it, which must use the co-located care-of address (else INCONCLUSIVE)."""
    tester.attach("fn1")
    a = tester.agent("fn1")
    tester.advertise(a, flags)
    f = tester.wait_request("fn1", 3.0, dst=a.address)
    if f is None:
        inconclusive(f"no registration request to the agent {a.address} advertising {flags}")
    req = f.request
    steps.record(f"on fn1, advertisement {flags} from {a.address}", "a request through the agent",
                 f"care-of {req.care_of_address}, extensions {[e.type for e in req.extensions]}")
    if req.care_of_address != FN1_COA:
        inconclusive(f"the node registered the agent's care-of address {req.care_of_address}, not its co-located "
                     f"{FN1_COA}: the case of a co-located address registered through a foreign agent does not arise")
    return f, req


@part("MIP.MN.COV.3", "A co-located care-of address registered through an agent advertising R and U carries a UDP "
      "Tunnel Request with R", ["rfc3519-4.4-f", "rfc3519-4.11-a", "rfc3519-3.1.2-a"], needs=["mip.nat-traversal"])
def test_r_flag_with_u(tester, steps):
    f, req = _colocated_through_agent(tester, steps, "RFU")
    ext = req.find(EXT_UDP_TUNNEL_REQUEST)
    steps.record("the UDP Tunnel Request", "present, R set", ext, ok=ext is not None and ext.registration_via_fa)
    assert ext is not None, "no UDP Tunnel Request extension (the agent advertises U)"
    assert ext.registration_via_fa, f"R clear in the UDP Tunnel Request: {ext}"


@part("MIP.MN.COV.4", "A co-located care-of address registered through an agent without U carries no UDP Tunnel Request",
      ["rfc3519-4.4-h"], needs=["mip.nat-traversal"])
def test_no_utr_without_u(tester, steps):
    f, req = _colocated_through_agent(tester, steps, "RF")
    ext = req.find(EXT_UDP_TUNNEL_REQUEST)
    steps.record("the request's extensions", "no UDP Tunnel Request (144)", [e.type for e in req.extensions],
                 ok=ext is None)
    assert ext is None, f"a UDP Tunnel Request though the agent does not advertise U: {ext}"


@part("MIP.MN.COV.5", "With R (agent advertising U), the node sends a keepalive as soon as its registration is accepted",
      ["rfc3519-4.4-g"], needs=["mip.nat-traversal"])
def test_keepalive_after_r_registration(tester, steps):
    f, req = _colocated_through_agent(tester, steps, "RFU")
    ext = req.find(EXT_UDP_TUNNEL_REQUEST)
    if ext is None or not ext.registration_via_fa:
        inconclusive(f"no UDP Tunnel Request with R: {ext}")
    tester.fa_reply(f, tester.answer(f.udp.payload, 0, extensions_before=[UdpTunnelReply(keepalive=110)]),
                    what="accepted, UDP Tunnel Reply (keepalive 110 s)")

    def keepalive(i) -> bool:
        if getattr(i, "kind", None) != "udp" or i.data[:1] != b"\x04" or len(i.data) < 32:
            return False
        inner = i.data[4:]
        return inner[9] == 1 and inner[20] == 8 and IPv4Address(inner[16:20]) == tester.ha_address
    got = tester.take(keepalive, 1.0)
    steps.record("accepting reply with an assenting UDP Tunnel Reply (keepalive interval 110 s)",
                 "a keepalive (ICMP echo to the HA in MIP tunnel data) at once, not after 110 s",
                 got.summary() if got else "none", ok=got is not None)
    assert got is not None, "no keepalive within 1 s of the accepted registration with R"
