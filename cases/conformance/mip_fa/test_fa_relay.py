"""FA: relaying registration requests to the home agent and denying them itself (RFC 5944 3.7.2,
3.7.3; RFC 3024 4.2.1). The tester's mobile nodes send their requests as frames on fn1 (with their
home addresses, TTL 255); the tester's home agent listens on UDP 434 at 10.1.1.2."""
from testbed.conformance.mip import Extension, parse_reply, parse_request
from testbed.conformance.mip.auth import EXT_FA_HA_AUTH, EXT_MN_HA_AUTH
from testbed.conformance.parts import part, should

FA_DENIALS = range(64, 96)


def send(t, mn, steps, what: str, ttl: int = 255, **kw):
    """Learn the FA, send `mn` a request (request kwargs in kw, send kwargs split off); returns
    (request bytes, identification)."""
    t.learn_agent()
    send_kw = {k: kw.pop(k) for k in ("dst", "sport", "checksum", "dst_mac", "src") if k in kw}
    data = t.request(mn, **kw)
    ident = mn.mn.pending_identification
    t.send_request(mn, data, ttl=ttl, **send_kw)
    steps.record(what, observed=f"{len(data)} bytes, identification {ident:#x}")
    return data, ident


def relayed(t, mn, ident, steps, timeout: float = 1.0):
    r = t.wait_relayed(mn, ident, timeout)
    steps.record("at the home agent", "the request relayed", f"from {r.src}:{r.sport}" if r else "nothing",
                 ok=r is not None)
    return r


def denial(t, mn, ident, steps, expect: str, timeout: float = 1.0):
    f = t.wait_reply(mn, ident, timeout)
    steps.record("on the link, to the mobile node", expect, f.summary() if f else "nothing")
    return f, (parse_reply(f.udp.payload).value if f else None)


# ---- relaying ------------------------------------------------------------------------------------------

@part("MIP.FA.RELAY.1", "A valid request is relayed to the address in its Home Agent field",
      ["rfc5944-3.7.2.2-a", "rfc5944-3.7.2-a"])
def test_valid_request_relayed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request, FA care-of address, lifetime 300")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "the FA did not relay a valid request to the home agent"
    assert r.dst == str(tester.ha.address), f"relayed to {r.dst}, the Home Agent field is {tester.ha.address}"


@part("MIP.FA.RELAY.2", "The relayed request is unchanged from its fixed part through the MN-HA authentication "
      "extension", ["rfc5944-3.7.2.2-b"])
def test_relayed_request_unchanged(tester, steps):
    mn = tester.mns[0]
    data, ident = send(tester, mn, steps, "registration request signed MN-HA")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    end = parse_request(data).find(EXT_MN_HA_AUTH)
    end = end.offset + 6 + len(end.authenticator)
    same = r.data[:end] == data[:end]
    steps.record("compare the bytes up to the end of MN-HA", "identical", "identical" if same else
                 f"sent {data[:end].hex()} relayed {r.data[:end].hex()}", ok=same)
    assert same, "the FA changed the request before or within the MN-HA extension"


@part("MIP.FA.RELAY.3", "The relayed request comes from the care-of address the FA offered, to UDP port 434",
      ["rfc5944-3.7.2.2-e"])
def test_relayed_request_addresses(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request for the advertised care-of address")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    coa = str(tester.care_of_address())
    steps.record("IP source and UDP destination port", f"{coa}, 434", f"{r.src}, {r.dport}",
                 ok=r.src == coa and r.dport == 434)
    assert r.src == coa, f"relayed from {r.src}, the care-of address is {coa}"
    assert r.dport == 434


@part("MIP.FA.RELAY.4", "The FA does not increase the requested lifetime when relaying", ["rfc5944-3.4-a"])
def test_relayed_lifetime_not_increased(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request, lifetime 37", lifetime=37)
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    life = parse_request(r.data).lifetime
    steps.record("relayed lifetime", "<= 37", life, ok=life <= 37)
    assert life <= 37, f"lifetime raised to {life}"


@part("MIP.FA.RELAY.5", "An unknown skippable extension (type 200) after MN-HA is processed and removed, not "
      "relayed", ["rfc5944-3.7.2.2-c", "rfc5944-1.8-b"])
def test_extension_after_mn_ha_removed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with extension 200 after MN-HA",
                    extensions_after=[Extension(200, b"conformance")])
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "a request with a skippable unknown extension was not relayed"
    types = [e.type for e in parse_request(r.data).extensions]
    steps.record("extensions of the relayed request", "no 200", types, ok=200 not in types)
    assert 200 not in types, f"extension 200 (after MN-HA, not covered by it) relayed: {types}"


@part("MIP.FA.RELAY.6", "A request sent to the mobile-agents group 224.0.0.11 is relayed", ["rfc5944-2.3-c"])
def test_request_to_mobile_agents_group(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request to 224.0.0.11", dst="224.0.0.11")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "a request sent to 224.0.0.11 was not relayed"


@part("MIP.FA.RELAY.7", "A request sent to the link's broadcast address 255.255.255.255 is relayed",
      ["rfc5944-3.7.2.2-a"])
def test_request_to_broadcast(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request to 255.255.255.255", dst="255.255.255.255")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "a request broadcast on the link was not relayed"


@part("MIP.FA.RELAY.8", "A deregistration (lifetime 0) is relayed to the home agent", ["rfc5944-3.7-e"])
def test_deregistration_relayed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "deregistration request, lifetime 0", lifetime=0)
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "a deregistration was not relayed"
    assert parse_request(r.data).lifetime == 0


@part("MIP.FA.RELAY.9", "A request with a zero UDP checksum (none computed) is accepted and relayed",
      ["rfc5944-3.1-e"])
def test_zero_checksum_request(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request, UDP checksum 0", checksum="zero")
    r = relayed(tester, mn, ident, steps)
    should(r is not None, "a request with a zero UDP checksum was not relayed")


@part("MIP.FA.RELAY.10", "A request with a wrong nonzero UDP checksum is silently discarded: neither relayed "
      "nor answered", ["rfc5944-3.7.2.1-a", "rfc5944-3.1-d"])
def test_bad_checksum_request_discarded(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request, wrong UDP checksum", checksum="wrong")
    r = tester.not_relayed(mn, ident, 0.4).item
    f = tester.wait_reply(mn, ident, 0.1)
    steps.record("at the HA and on the link (the wait at the HA ends once a valid request of another node sent after "
                 "it is relayed)", "nothing", f"relayed: {r is not None}, reply: {f.summary() if f else None}",
                 ok=r is None and f is None)
    assert r is None, "a request with a wrong UDP checksum was relayed"
    assert f is None, "a request with a wrong UDP checksum was answered"
    _, ident = send(tester, mn, steps, "the same request with a right checksum")
    assert relayed(tester, mn, ident, steps) is not None, "the FA stopped relaying"


@part("MIP.FA.RELAY.11", "A request from a mobile node that already has a request pending is relayed too",
      ["rfc5944-3.7.2.2-a", "rfc5944-3.7.2-e"])
def test_second_pending_request_relayed(tester, steps):
    mn = tester.mns[0]
    _, i1 = send(tester, mn, steps, "first request (left unanswered)")
    assert relayed(tester, mn, i1, steps) is not None, "first request not relayed"
    _, i2 = send(tester, mn, steps, "second request, new identification")
    r = relayed(tester, mn, i2, steps)
    assert r is not None, "the second request was not relayed while the first was pending"


@part("MIP.FA.RELAY.12", "A request with D set for a co-located care-of address is relayed (only D=0 with a "
      "foreign care-of address is refused)", ["rfc5944-3.7.2.1-c", "rfc5944-3.7.2.2-a"])
def test_colocated_request_relayed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with D, care-of address 192.0.2.77", flags="D",
                    care_of_address="192.0.2.77")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "a D-bit request for a co-located care-of address was not relayed"


@part("MIP.FA.RELAY.13", "A deregistration naming a care-of address the FA did not offer is relayed, not "
      "refused with 77", ["rfc5944-3.7.2.1-c", "rfc5944-3.7-e"])
def test_deregistration_foreign_coa_relayed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "deregistration (lifetime 0), care-of address = home address",
                    lifetime=0, care_of_address=str(mn.home))
    r = relayed(tester, mn, ident, steps)
    f = None if r else tester.wait_reply(mn, ident, 0.2)
    assert r is not None, f"a deregistration of all bindings was not relayed ({f.summary() if f else 'no reply'})"


# ---- FA-HA authentication on relayed requests --------------------------------------------------------------

@part("MIP.FA.RELAY.14", "With an FA-HA security association the FA appends a valid Foreign-Home "
      "Authentication extension, last, to a relayed registration", ["rfc5944-3.7.2.2-d", "rfc5944-3.7.1-g",
                                                                   "rfc5944-3.3-c"], needs=["mip.fa-ha-auth"])
def test_fa_ha_appended(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "registration request, lifetime 300")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    req = parse_request(r.data).value
    sa = tester.fa_ha
    found = req.find_all(EXT_FA_HA_AUTH)
    ok = req.verify(r.data, sa.key, EXT_FA_HA_AUTH, sa.spi)
    steps.record("FA-HA extension", f"exactly one, SPI {sa.spi}, verifies, last", [(e.type, getattr(e, "spi", None))
                 for e in req.extensions], ok=ok)
    assert len(found) == 1, f"{len(found)} FA-HA extensions in the relayed request"
    assert ok, "the FA-HA authenticator does not verify with the shared key"
    assert req.extensions[-1].type == EXT_FA_HA_AUTH, "FA-HA is not the last extension"
    mn_ha = [i for i, e in enumerate(req.extensions) if e.type == EXT_MN_HA_AUTH]
    assert mn_ha and mn_ha[0] < len(req.extensions) - 1, "FA-HA does not follow MN-HA"


@part("MIP.FA.RELAY.15", "No Foreign-Home Authentication extension is appended to a relayed deregistration",
      ["rfc5944-3.5.4-d", "rfc5944-F-b", "rfc5944-3.5.4-a"], needs=["mip.fa-ha-auth"])
def test_no_fa_ha_on_deregistration(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "deregistration request, lifetime 0", lifetime=0)
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "the deregistration was not relayed"
    types = [e.type for e in parse_request(r.data).extensions]
    steps.record("extensions of the relayed deregistration", "no FA-HA (34)", types, ok=EXT_FA_HA_AUTH not in types)
    assert EXT_FA_HA_AUTH not in types, f"FA-HA appended to a deregistration: {types}"


@part("MIP.FA.RELAY.16", "No Foreign-Home Authentication extension is appended when the request's care-of "
      "address is not one the FA advertised", ["rfc5944-3.5.4-c", "rfc5944-F-c"], needs=["mip.fa-ha-auth"])
def test_no_fa_ha_for_foreign_coa(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with D, co-located care-of address 192.0.2.77", flags="D",
                    care_of_address="192.0.2.77")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    types = [e.type for e in parse_request(r.data).extensions]
    steps.record("extensions of the relayed request", "no FA-HA (34)", types, ok=EXT_FA_HA_AUTH not in types)
    assert EXT_FA_HA_AUTH not in types, f"FA-HA appended for a care-of address the FA did not offer: {types}"


# ---- the FA's own denials ----------------------------------------------------------------------------------

@part("MIP.FA.DENY.1", "A requested lifetime longer than the advertised registration lifetime is denied with "
      "69, not relayed", ["rfc5944-3.7.2-b", "rfc5944-3.7.2.3-a"])
def test_lifetime_too_long(tester, steps):
    tester.learn_agent()
    mx = tester.advertisement.registration_lifetime
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, f"request with lifetime {mx + 1} (advertised {mx})", lifetime=mx + 1)
    f, rep = denial(tester, mn, ident, steps, "code 69")
    r = tester.wait_relayed(mn, ident, 0.1)
    assert r is None, "a request with a lifetime above the advertised one was relayed"
    assert rep is not None, "no denial"
    assert rep.code == 69, f"code {rep.code}"


@part("MIP.FA.DENY.2", "The 69 denial carries the longest lifetime the FA accepts (the advertised one)",
      ["rfc5944-3.7.2.3-a"])
def test_lifetime_too_long_carries_max(tester, steps):
    tester.learn_agent()
    mx = tester.advertisement.registration_lifetime
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, f"request with lifetime {mx + 100}", lifetime=mx + 100)
    f, rep = denial(tester, mn, ident, steps, f"code 69, lifetime {mx}")
    assert rep is not None and rep.code == 69, f"no 69 denial: {f.summary() if f else None}"
    assert rep.lifetime == mx, f"69 with lifetime {rep.lifetime}, the advertised maximum is {mx}"


@part("MIP.FA.DENY.3", "The FA's denial copies Home Address, Home Agent and Identification from the request",
      ["rfc5944-3.7.2.3-a"])
def test_denial_copies_fields(tester, steps):
    mn = tester.mns[0]
    data, ident = send(tester, mn, steps, "request with a care-of address the FA did not offer, D=0",
                       care_of_address="198.51.100.99")
    f, rep = denial(tester, mn, ident, steps, "a denial with the request's home address, HA, identification")
    assert rep is not None, "no denial"
    req = parse_request(data).value
    got = (rep.home_address, rep.home_agent, rep.identification)
    want = (req.home_address, req.home_agent, req.identification)
    assert got == want, f"denial fields {got}, request {want}"


@part("MIP.FA.DENY.4", "D=0, nonzero lifetime and a care-of address the FA did not offer: denied with 77",
      ["rfc5944-3.7.2.1-c"])
def test_invalid_care_of_address(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request, D=0, care-of address 198.51.100.99", care_of_address="198.51.100.99")
    f, rep = denial(tester, mn, ident, steps, "code 77")
    assert tester.wait_relayed(mn, ident, 0.1) is None, "relayed"
    assert rep is not None and rep.code == 77, f"expected 77, got {rep.code if rep else 'no reply'}"


@part("MIP.FA.DENY.5", "A request for minimal encapsulation, which the FA does not advertise, is denied with 72",
      ["rfc3024-4.2.1-a"])
def test_unadvertised_encapsulation(tester, steps):
    tester.learn_agent()
    a = tester.advertisement
    missing = "M" if not a.has("M") else "G" if not a.has("G") else None
    if missing is None:
        from testbed.conformance.parts import inconclusive
        inconclusive("the FA advertises both M and G: no encapsulation to ask for that it lacks")
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, f"request with {missing} and T (encapsulation not advertised)",
                    flags=missing + "T")
    f, rep = denial(tester, mn, ident, steps, "code 72")
    assert tester.wait_relayed(mn, ident, 0.1) is None, "relayed"
    assert rep is not None and rep.code == 72, f"expected 72, got {rep.code if rep else 'no reply'}"


@part("MIP.FA.DENY.6", "A request with T that arrives with an IP TTL other than 255 is denied with 76",
      ["rfc3024-4.2.1-c", "rfc3024-4.2.1-d"], needs=["mip.reverse-tunnel"])
def test_t_bit_ttl_not_255(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with T, IP TTL 64", flags="T", ttl=64)
    f, rep = denial(tester, mn, ident, steps, "code 76")
    assert tester.wait_relayed(mn, ident, 0.1) is None, "a T request from a distant node was relayed"
    assert rep is not None and rep.code == 76, f"expected 76, got {rep.code if rep else 'no reply'}"


@part("MIP.FA.DENY.7", "Code-76 denials are rate limited to one per second", ["rfc3024-4.2.1-e"],
      needs=["mip.reverse-tunnel"])
def test_76_rate_limited(tester, steps):
    mn = tester.mns[0]
    idents = [send(tester, mn, steps, f"request {i + 1} with T, IP TTL 64", flags="T", ttl=64)[1] for i in range(3)]
    got = tester.collect_frames(0.5, lambda f: any(tester.reply_to(mn, i)(f) for i in idents))
    codes = [parse_reply(f.udp.payload).code for f in got]
    steps.record("three such requests within ~10 ms", "at most one code-76 reply in that second", codes,
                 ok=codes.count(76) <= 1)
    assert codes.count(76) <= 1, f"{codes.count(76)} code-76 replies within 0.5 s"


@part("MIP.FA.DENY.8", "The FA's denial comes from the address the request was sent to, from port 434, to the "
      "home address and the request's source port", ["rfc5944-3.7.2.3-d"])
def test_denial_ip_udp_fields(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request from UDP port 40434 with a foreign care-of address",
                    care_of_address="198.51.100.99", sport=40434)
    f, rep = denial(tester, mn, ident, steps, f"{tester.fa}:434 -> {mn.home}:40434")
    assert f is not None, "no denial"
    got = (str(f.ip.src), f.udp.sport, str(f.ip.dst), f.udp.dport)
    assert got == (str(tester.fa), 434, str(mn.home), 40434), f"denial {got}"


@part("MIP.FA.DENY.9", "A denial of a request sent to 224.0.0.11 comes from the FA's own address on the link",
      ["rfc5944-3.7.2.3-e"])
def test_denial_of_multicast_request(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request to 224.0.0.11 with a foreign care-of address", dst="224.0.0.11",
                    care_of_address="198.51.100.99")
    f, rep = denial(tester, mn, ident, steps, f"a denial from {tester.fa}")
    assert f is not None, "no denial"
    assert f.ip.src == tester.fa, f"denial from {f.ip.src}"


@part("MIP.FA.DENY.10", "The FA's denial is sent by link layer to the mobile node's MAC address, with no ARP "
      "for its home address", ["rfc5944-1.7-c", "rfc5944-4.2.2-g"])
def test_denial_by_link_layer(tester, steps):
    mn = tester.mns[2]
    _, ident = send(tester, mn, steps, "request with a foreign care-of address", care_of_address="198.51.100.99")
    f, rep = denial(tester, mn, ident, steps, f"a denial in a frame to {mn.mac}")
    arps = [x for x in tester.seen if x.arp is not None and str(x.arp.target_ip) == str(mn.home)]
    assert f is not None, "no denial reached the mobile node"
    assert f.dst_mac == mn.mac, f"the denial went to {f.dst_mac}"
    assert not arps, f"the FA asked ARP for the home address: {[a.summary() for a in arps]}"


@part("MIP.FA.DENY.11", "The lifetime of a denial other than 69 is copied from the request",
      ["rfc5944-3.7.2.3-c"])
def test_denial_lifetime_copied(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request, lifetime 123, foreign care-of address", lifetime=123,
                    care_of_address="198.51.100.99")
    f, rep = denial(tester, mn, ident, steps, "a denial with lifetime 123")
    assert rep is not None, "no denial"
    should(rep.lifetime == 123, f"denial {rep.code} carries lifetime {rep.lifetime}, the request asked 123")


@part("MIP.FA.DENY.12", "A request whose extension runs past its end is denied (70, poorly formed), never "
      "relayed", ["rfc5944-3.7.2-b", "rfc5944-3.7.2.3-a"])
def test_poorly_formed_request(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with a trailing extension whose Length runs past the end",
                    extensions_after=[bytes((200, 40)) + b"xx"])
    f, rep = denial(tester, mn, ident, steps, "code 70")
    assert tester.wait_relayed(mn, ident, 0.1) is None, "a poorly formed request was relayed"
    assert rep is not None and rep.code == 70, f"expected 70, got {rep.code if rep else 'no reply'}"


@part("MIP.FA.DENY.13", "A home agent that stays silent: the FA denies the pending request with 78 "
      "(within 7 s)", ["rfc5944-3.7.1-f"])
def test_registration_timeout(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request; the HA does not answer")
    assert relayed(tester, mn, ident, steps) is not None, "not relayed"
    wait = float(tester.config.get("pending_timeout", 7.0)) + 1.0
    f, rep = denial(tester, mn, ident, steps, "code 78", timeout=min(wait, 8.0))
    should(rep is not None and rep.code == 78, f"no code-78 denial within {min(wait, 8.0)} s "
           f"({rep.code if rep else 'nothing'})")


@part("MIP.FA.DENY.14", "After the FA gave up on a pending request, a late reply is not relayed",
      ["rfc5944-3.7.2.2-g", "rfc5944-3.7.3.1-d"])
def test_late_reply_not_relayed(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request; the HA does not answer")
    r = relayed(tester, mn, ident, steps)
    assert r is not None, "not relayed"
    wait = min(float(tester.config.get("pending_timeout", 7.0)) + 1.0, 8.0)
    f, rep = denial(tester, mn, ident, steps, "the FA gives up (78)", timeout=wait)
    if rep is None or rep.code != 78:
        from testbed.conformance.parts import inconclusive
        inconclusive(f"the FA did not give up on the request within {wait} s")
    tester.answer(r, 0)
    late = tester.wait_reply(mn, ident, 0.5)
    steps.record("the HA's accepting reply after the 78", "not relayed", late.summary() if late else "nothing",
                 ok=late is None)
    assert late is None, "a reply to a request the FA had given up was relayed"


@part("MIP.FA.DENY.15", "An ICMP port unreachable from the home agent's address draws a 'home agent "
      "unreachable' denial (80-95)", ["rfc5944-3.7.3-a"])
def test_ha_port_unreachable(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with Home Agent 10.1.2.10 (a host with nothing on port 434)",
                    home_agent="10.1.2.10")
    f, rep = denial(tester, mn, ident, steps, "a code in 80-95 (82)", timeout=1.5)
    should(rep is not None and 80 <= rep.code <= 95, f"after a port unreachable: {rep.code if rep else 'no reply'}")


@part("MIP.FA.DENY.16", "An ICMP network unreachable on the way to the home agent draws a 'home agent "
      "unreachable' denial (80-95)", ["rfc5944-3.7.3-a"])
def test_ha_network_unreachable(tester, steps):
    mn = tester.mns[0]
    _, ident = send(tester, mn, steps, "request with Home Agent 172.16.0.1 (the core refuses: net unreachable)",
                    home_agent="172.16.0.1")
    f, rep = denial(tester, mn, ident, steps, "a code in 80-95 (80)", timeout=1.5)
    should(rep is not None and 80 <= rep.code <= 95, f"after a network unreachable: {rep.code if rep else 'no reply'}")


@part("MIP.FA.DENY.17", "Every denial code the FA sends itself is one of the foreign agent's (64-95)",
      ["rfc5944-3.7.2-b"])
def test_denial_codes_are_fa_codes(tester, steps):
    mn = tester.mns[0]
    tester.learn_agent()
    mx = tester.advertisement.registration_lifetime
    idents = [send(tester, mn, steps, "request with a foreign care-of address", care_of_address="198.51.100.99")[1],
              send(tester, mn, steps, "request with a lifetime too long", lifetime=mx + 1)[1]]
    got = tester.collect_frames(0.4, lambda f: any(tester.reply_to(mn, i)(f) for i in idents))
    codes = [parse_reply(f.udp.payload).code for f in got]
    steps.record("codes of the FA's denials", "each in 64-95", codes, ok=bool(codes) and all(c in FA_DENIALS for c in codes))
    assert codes, "no denial"
    assert all(c in FA_DENIALS for c in codes), f"codes {codes}"


@part("MIP.FA.DENY.18", "When the FA reaches its limit of pending requests it denies further ones with 66",
      ["rfc5944-3.7.1-e"])
def test_pending_limit(tester, steps):
    mn = tester.mns[0]
    limit = int(tester.config.get("max_pending", 64))
    tester.learn_agent()
    idents = []
    for i in range(limit + 1):
        data = tester.request(mn)
        idents.append(mn.mn.pending_identification)
        tester.send_request(mn, data)
        if i % 16 == 15:
            tester.collect(0.01, lambda x: False)
    steps.record(f"{limit + 1} requests, the HA silent", f"the last one denied with 66 (limit {limit})")
    last = tester.wait_reply(mn, idents[-1], 1.0)
    rep = parse_reply(last.udp.payload).value if last else None
    steps.record("reply to the last request", "code 66", last.summary() if last else "nothing")
    should(rep is not None and rep.code == 66, f"the request beyond {limit} pending: {rep.code if rep else 'no reply'}")
