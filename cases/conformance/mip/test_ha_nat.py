"""HA: RFC 3519 UDP tunnelling (NAT traversal) at the home agent: the tester is a co-located mobile
node behind the NAT (nh, 10.77.0.10, seen as 203.0.113.10) or at r forcing UDP tunnelling (F).
The UDP Tunnel Reply extension, data in MIP Tunnel Data messages to the NAT's address and port,
reverse tunnelled data and keepalives, the extension's reserved fields."""
from testbed.conformance.mip import TunnelData, UdpTunnelRequest
from testbed.conformance.mip.messages import EXT_UDP_TUNNEL_REPLY
from testbed.conformance.mip.tunnels import icmp_echo
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import part, should

NEEDS = ["mip.nat-traversal"]


def _utr(**kw):
    return [UdpTunnelRequest(**kw)]


def _behind_nat(ha_tester, steps, flags="D", utr=None, preamble=True, **kw):
    mn = ha_tester.mn()
    place = ha_tester.nat_place
    ext = _utr(**(utr or {}))
    if preamble:
        item, check = ha_tester.registered(mn, place=place, steps=steps, flags=flags, extensions_before=ext, **kw)
    else:
        item, check = ha_tester.register(mn, place=place, flags=flags, extensions_before=ext, **kw)
    return mn, item, check


@part("MIP.HA.NAT.1", "A request from behind a NAT with a UDP Tunnel Request is accepted with an assenting UDP Tunnel Reply",
      ["rfc3519-4.6-a", "rfc3519-4.6-b", "rfc3519-4.6-c"], needs=NEEDS)
def test_nat_udp_tunnel_reply(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps)
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY)
    steps.record("UDP Tunnel Reply of the reply", "present, code 0 (assent)", ext, ok=ext is not None and ext.code < 64)
    assert ext is not None, "no UDP Tunnel Reply extension in the reply to a request from behind a NAT"
    assert ext.code < 64, f"UDP Tunnel Reply code {ext.code}: the HA declined though a NAT is in the path"


@part("MIP.HA.NAT.2", "The UDP Tunnel Reply's reserved field is zero",
      ["rfc3519-3.2-d"], needs=NEEDS)
def test_nat_reply_reserved(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps)
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY)
    assert ext is not None, "no UDP Tunnel Reply"
    steps.record("reserved bits of the UDP Tunnel Reply", "0", ext.reserved, ok=ext.reserved == 0)
    assert ext.reserved == 0, f"reserved {ext.reserved:#x}"


@part("MIP.HA.NAT.3", "Data for the node goes in UDP to the NAT's address and port, as MIP Tunnel Data with IP-in-IP",
      ["rfc3519-4.6-e", "rfc3519-4.1-a", "rfc3519-3.3-a", "rfc3519-4.7-b"], needs=NEEDS)
def test_nat_data_in_udp(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps)
    _, got = ha_tester.data_to_coa(str(mn.home_address), ha_tester.nat_place)
    steps.record("datagram from h to the home address", "at nh in UDP 434: tunnel data type 4, next header 4",
                 got.summary() if got else "nothing", ok=bool(got and got.kind == "udp"))
    assert got is not None, "nothing reached the node behind the NAT"
    assert got.kind == "udp", f"arrived as {got.kind}, not in UDP"
    assert got.details["next_header"] == 4, f"next header {got.details['next_header']}"
    assert got.details["reserved"] == 0, f"tunnel data reserved {got.details['reserved']:#x}"
    assert str(got.outer.src) == ha_tester.ha, f"from {got.outer.src}"


@part("MIP.HA.NAT.4", "Data reverse-tunnelled in UDP from behind the NAT is decapsulated and forwarded",
      ["rfc3519-4.1-a", "rfc3519-4.7-a"], needs=NEEDS + ["mip.reverse-tunnel"])
def test_nat_reverse(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, flags="DT")
    inner, marker = ha_tester.inner_from_home(str(mn.home_address))
    ha_tester.send(TunnelData(4, inner).encode(), ha_tester.nat_place)
    got = ha_tester.at_correspondent(marker)
    steps.record("MIP tunnel data from nh:434 carrying home->h", "delivered to h", bool(got), ok=got is not None)
    assert got is not None, "the UDP reverse tunnel did not deliver"


@part("MIP.HA.NAT.5", "A keepalive (ICMP echo in UDP to the HA) is answered with an echo reply in UDP",
      ["rfc3519-4.9-d"], needs=NEEDS)
def test_nat_keepalive(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps)
    home = str(mn.home_address)
    echo = icmp_echo(home, ha_tester.ha, ident=0x3519, seq=7, data=b"keepalive")
    ha_tester.send(TunnelData(4, echo).encode(), ha_tester.nat_place)

    def reply(i):
        from testbed.conformance.mip_env import as_tunnelled
        t = as_tunnelled(i, ha_tester.nat_inside)
        return t is not None and len(t.inner) >= 28 and t.inner[9] == 1 and t.inner[20] == 0 and t.inner[24:28] == b"\x35\x19\x00\x07"
    got = ha_tester.nat_place.transport.wait_for(reply, 1.0)
    steps.record("ICMP echo home->HA in MIP tunnel data from nh", "echo reply in MIP tunnel data", bool(got),
                 ok=got is not None)
    assert got is not None, "no UDP-encapsulated echo reply to the keepalive"


@part("MIP.HA.NAT.6", "Without a NAT and without F, a UDP Tunnel Request gets a declining UDP Tunnel Reply",
      ["rfc3519-4.6-d", "rfc3519-4.6-l"], needs=NEEDS)
def test_no_nat_declined(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.registered(mn, steps=steps, extensions_before=_utr())
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY)
    steps.record("UDP Tunnel Reply to a request from r (no NAT), F clear", "present, declining (code >= 64)",
                 ext, ok=ext is not None and ext.code >= 64)
    should(ext is not None and ext.code >= 64, "a declining UDP Tunnel Reply should be returned when no NAT is seen")
    _, got = ha_tester.data_to_coa(str(mn.home_address))
    assert got is not None and got.kind == "ipip", f"without a NAT the data should come in IP-in-IP: {got and got.kind}"


@part("MIP.HA.NAT.7", "With F and no NAT, UDP tunnelling is accepted (or the request refused); data in UDP when accepted",
      ["rfc3519-3.1.1-a", "rfc3519-3.1.1-b", "rfc3519-4.6-a"], needs=NEEDS)
def test_forced(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, extensions_before=_utr(force=True))
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY) if check and check.reply else None
    steps.record("request from r with a UDP Tunnel Request, F set", "accepted with an assenting reply, or 129",
                 f"{describe_check(check)}; {ext}", ok=bool(check and (check.accepted and ext is not None or check.code == 129)))
    assert check is not None, "no reply"
    if not check.accepted:
        should(check.code == 129, f"a refused forced request should get 129: {describe_check(check)}")
        return
    assert ext is not None and ext.code < 64, "accepted a forced UDP tunnel without an assenting UDP Tunnel Reply"
    _, got = ha_tester.data_to_coa(str(mn.home_address))
    steps.record("datagram from h", "in UDP at r", got.summary() if got else "nothing", ok=bool(got and got.kind == "udp"))
    assert got is not None and got.kind == "udp", f"forced UDP tunnelling, data came as {got and got.kind}"


@part("MIP.HA.NAT.8", "Reserved 1 and 2 of the UDP Tunnel Request are ignored: the HA assents as usual",
      ["rfc3519-3.1-a", "rfc3519-3.1-b", "rfc3519-3.1.3-a"], needs=NEEDS)
def test_reserved_1_2_ignored(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, utr={"reserved1": 0xA5, "reserved2": 0x15})
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY)
    steps.record("UDP Tunnel Request with Reserved 1 = 0xa5, Reserved 2 = 0x15", "assenting UDP Tunnel Reply", ext,
                 ok=ext is not None and ext.code < 64)
    assert ext is not None and ext.code < 64, f"reserved fields not ignored: {ext}"


@part("MIP.HA.NAT.9", "Reserved 3 non-zero: the extension is not understood (skipped, no assent) or the request gets 134",
      ["rfc3519-3.1-c", "rfc3519-3.1.3-a", "rfc3519-4.6.1-e"], needs=NEEDS)
def test_reserved_3(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, utr={"reserved3": 1}, preamble=False)
    ext = check.reply.find(EXT_UDP_TUNNEL_REPLY) if check and check.reply else None
    ok = check is not None and (check.code == 134 or ext is None)
    steps.record("UDP Tunnel Request with Reserved 3 = 1 from behind the NAT",
                 "no UDP Tunnel Reply (extension skipped) or code 134", f"{describe_check(check)}; {ext}", ok=ok)
    assert check is not None, "no reply"
    assert check.code == 134 or ext is None, f"the HA understood an extension with Reserved 3 set: {ext}"
    # RFC 3519 contradicts itself here: 3.1 and 3.1.3 say the extension MUST be handled as not
    # understood and silently skipped, 4.6.1 says the HA SHOULD send 134; either is conformant
    steps.record("the behaviour", "skipped (3.1.3 MUST) or 134 (4.6.1 SHOULD)",
                 "134" if check.code == 134 else "skipped: registration goes on without UDP tunnelling", ok=True)


@part("MIP.HA.NAT.10", "A UDP Tunnel Request for an encapsulation the HA cannot offer (GRE) gets 142 or that encapsulation",
      ["rfc3519-4.1-d", "rfc3519-4.6.1-f"], needs=NEEDS)
def test_udp_encapsulation_unavailable(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, utr={"encapsulation": 47}, preamble=False)
    steps.record("UDP Tunnel Request with Encapsulation 47", "142 (or accepted with GRE in UDP)",
                 describe_check(check), ok=bool(check and check.code in (0, 1, 142)))
    assert check is not None, "no reply"
    if check.accepted:
        _, got = ha_tester.data_to_coa(str(mn.home_address), ha_tester.nat_place)
        assert got is not None and got.details.get("next_header") == 47, "accepted, but not GRE in UDP"
    else:
        assert check.code == 142, f"expected ERROR_HA_UDP_ENCAP_UNAVAIL (142), got {describe_check(check)}"


def _not_delivered(ha_tester, steps, mn, marker: bytes):
    """A silence window at h for the datagram carrying `marker` (sent already), ended once valid
    tunnel data of the same binding sent after it (from the NAT's mapping, next header 4) is
    delivered (testbed/conformance/inbox.py); the unwanted arrival (a Received) or None."""
    inner, mark = ha_tester.inner_from_home(str(mn.home_address))
    ha_tester.send(TunnelData(4, inner).encode(), ha_tester.nat_place)
    steps.record("then valid tunnel data home->h through the NAT: the wait ends once h has it")
    q = ha_tester.quiet(lambda i: i.kind == "ip" and marker in i.data, 0.4, ha_tester.cn_place,
                        lambda i: i.kind == "ip" and mark in i.data)
    return q.item


@part("MIP.HA.NAT.11", "Tunnel data from an address and port that are not the tunnel's is not decapsulated",
      ["rfc3519-4.3-a"], needs=NEEDS + ["mip.reverse-tunnel"])
def test_tunnel_data_wrong_source(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, flags="DT")
    inner, marker = ha_tester.inner_from_home(str(mn.home_address))
    ha_tester.send(TunnelData(4, inner).encode(), ha_tester.mn_place)  # from r:434, not the NAT's mapping
    got = _not_delivered(ha_tester, steps, mn, marker)
    steps.record("MIP tunnel data home->h from r:434 (the tunnel is the NAT's address)", "not delivered",
                 bool(got), ok=got is None)
    assert got is None, "tunnel data from outside the tunnel was decapsulated"


@part("MIP.HA.NAT.12", "Tunnel data whose Next Header does not match the binding (55) is dropped",
      ["rfc3519-3.3-b", "rfc3519-3.3-c"], needs=NEEDS + ["mip.reverse-tunnel"])
def test_tunnel_data_next_header_mismatch(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, flags="DT")
    inner, marker = ha_tester.inner_from_home(str(mn.home_address))
    ha_tester.send(TunnelData(55, inner).encode(), ha_tester.nat_place)
    got = _not_delivered(ha_tester, steps, mn, marker)
    steps.record("MIP tunnel data with next header 55 (the binding is IP-in-IP)", "dropped", bool(got), ok=got is None)
    assert got is None, "tunnel data with a mismatched next header was forwarded"


@part("MIP.HA.NAT.13", "Behind the NAT the reply itself comes in plain UDP to the NAT's port, never tunnelled",
      ["rfc3519-4.2-a"], needs=NEEDS)
def test_nat_reply_plain(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps)
    item2, again = ha_tester.register(mn, place=ha_tester.nat_place, extensions_before=_utr())
    steps.record("re-registration from behind the NAT", "a plain Registration Reply (type 3)",
                 f"type {item2.data[0]}" if item2 else "none", ok=bool(item2 and item2.data[0] == 3))
    assert item2 is not None and again.accepted, describe_check(again)


@part("MIP.HA.NAT.14", "A UDP Tunnel Request before the MN-HA with D clear is refused with 134 (SHOULD)",
      ["rfc3519-4.6.1-c"], needs=NEEDS)
def test_mn_placed_without_d(ha_tester, steps):
    mn, item, check = _behind_nat(ha_tester, steps, flags="", preamble=False)
    steps.record("UDP Tunnel Request before the MN-HA, D clear, from behind the NAT", "134",
                 describe_check(check))
    assert check is not None, "no reply"
    should(check.code == 134, f"134 expected: {describe_check(check)}")
