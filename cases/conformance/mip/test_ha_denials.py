"""HA: requests denied or discarded (RFC 5944 3.8.2.1, 3.8.2.3, 5.7; RFC 3024 4.3.1): failed
authentication (131), identification mismatch (133) and resynchronisation, poorly formed requests
(134), an unknown home agent address (136), unavailable encapsulations (139), insufficient
resources (130); a denial changes no binding."""
import time

from testbed.conformance.mip import EXT_MN_HA_AUTH, Extension, ntp_identification
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import inconclusive, part, should


def _accepted(check) -> bool:
    return bool(check and check.reply and check.reply.code in (0, 1))


def _refused_131_or_silent(steps, what, check):
    """A failed MN authentication: no reply (MAY) or 131 with a valid MN-HA (MUST when sent)."""
    ok = check is None or (check.reply is not None and check.code == 131 and check.authentic)
    steps.record(what, "no reply, or code 131 with a valid MN-HA authenticator", describe_check(check), ok=ok)
    assert not _accepted(check), f"accepted: {describe_check(check)}"
    if check is not None:
        assert check.code == 131, f"expected code 131, got {describe_check(check)}"
        assert check.authentic, "a reply after an authentication failure must carry a valid MN-HA authenticator"


def _still_unbound(ha_tester, steps, home):
    marker = ha_tester.marker_binding()
    ok = ha_tester.nothing_tunnelled(home, wait=0.3, marker_home=marker)
    steps.record(f"datagram from h to the home address (then one to {marker}, bound at r: the wait ends once that "
                 "one is tunnelled)", "not tunnelled (no binding created)", "nothing" if ok else "tunnelled to r", ok=ok)
    assert ok, "the refused request created a binding: data is tunnelled to its care-of address"


def _binding_kept(ha_tester, steps, home, place=None):
    _, got = ha_tester.data_to_coa(home, place)
    steps.record("datagram from h to the home address", "still tunnelled to the registered care-of address",
                 got.summary() if got else "nothing", ok=got is not None)
    assert got is not None, "the refused request changed the binding: nothing reaches the registered care-of address"


# ---- 131: mobile node failed authentication ---------------------------------------------------------

@part("MIP.HA.AUTH.1", "A corrupted MN-HA authenticator: no binding; any reply is 131 with a valid MN-HA",
      ["rfc5944-3.8.2.1-g", "rfc5944-3.8.2.1-i", "rfc5944-3.8.2.1-d", "rfc5944-3.5.1-b"])
def test_corrupted_authenticator(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, auth={"corrupt": True})
    _refused_131_or_silent(steps, "request with the last bit of the authenticator flipped", check)
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.AUTH.2", "An authenticator computed with a wrong key: no binding; any reply is 131 with a valid MN-HA",
      ["rfc5944-3.8.2.1-g", "rfc5944-3.8.2.1-i", "rfc5944-3.8.2.1-k"])
def test_wrong_key(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, auth={"key": b"\x11" * 16})
    _refused_131_or_silent(steps, "request signed with a wrong key", check)
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.AUTH.3", "An SPI the node has no SA for: not accepted; any reply is 131 with a valid MN-HA",
      ["rfc5944-3.8.2.1-g", "rfc5944-3.8.2.1-i", "rfc5944-3.8.2.1-l", "rfc5944-3.8.2.1-j"])
def test_unknown_spi(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, auth={"spi": 9999})
    _refused_131_or_silent(steps, "request with SPI 9999 (the node's SA is SPI 1000), right key", check)
    should(check is None or check.reply.find(EXT_MN_HA_AUTH).spi == mn.sa.spi,
           "the reply should use an SA the node has (SPI 1000)")


@part("MIP.HA.AUTH.4", "A reserved SPI (0-255) never authenticates a request",
      ["rfc5944-3.8.2.1-g", "rfc5944-3.8.2.1-d"])
def test_reserved_spi(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, auth={"spi": 100})
    _refused_131_or_silent(steps, "request with the reserved SPI 100", check)


@part("MIP.HA.AUTH.5", "A request without any authorization-enabling extension is silently discarded",
      ["rfc5944-3.8.2.1-f", "rfc5944-3.8.2.1-c", "rfc5944-3.5.2-a"])
def test_missing_mn_ha(ha_tester, steps):
    mn = ha_tester.mn()
    item, check = ha_tester.register(mn, timeout=0.5, marker=True, include_auth=False)
    steps.record("request with no MN-HA extension", "no reply, no binding", describe_check(check), ok=check is None)
    assert not _accepted(check), "accepted without authentication"
    assert check is None, f"expected a silent discard, got {describe_check(check)}"
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.AUTH.6", "A request for a home address the HA has no security association for is silently discarded",
      ["rfc5944-3.8.2.1-e"])
def test_unknown_home_address(ha_tester, steps):
    from testbed.conformance.mip import SecurityAssociation, TesterMN
    stranger = TesterMN("10.1.1.150", ha_tester.ha, SecurityAssociation(1000, b"\x22" * 16), lifetime=300)
    _, check = ha_tester.register(stranger, timeout=0.5, marker=True)
    steps.record("request for 10.1.1.150 (no SA at the HA)", "no reply", describe_check(check), ok=check is None)
    assert not _accepted(check), "accepted without a security association"
    assert check is None, f"expected a silent discard, got {describe_check(check)}"


@part("MIP.HA.AUTH.7", "A truncated authenticator (8 bytes) does not authenticate the request",
      ["rfc5944-3.8.2.1-g", "rfc5944-3.5.1-b"])
def test_truncated_authenticator(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, auth={"truncate": 8})
    steps.record("request whose MN-HA carries 8 bytes of the authenticator", "not accepted", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), f"accepted: {describe_check(check)}"


@part("MIP.HA.AUTH.8", "An authenticator that does not cover an extension before it does not authenticate the request",
      ["rfc5944-3.5.1-a", "rfc5944-3.8.2.1-g"])
def test_authenticator_not_covering(ha_tester, steps):
    from testbed.conformance.mip.messages import parse_request
    mn = ha_tester.mn()
    signed = mn.request(time.time(), ha_tester.coa, flags="D")
    req = parse_request(signed).value
    # insert a skippable extension between the fixed part and the MN-HA computed without it
    tampered = signed[:24] + Extension(200, b"inserted").encode() + signed[24:]
    ha_tester.send(tampered)
    item = ha_tester.reply_to(req.identification, timeout=0.5)
    check = mn.check_reply(item.data, time.time(), req.identification) if item else None
    steps.record("a signed request with an extension inserted before the MN-HA afterwards", "not accepted",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), "accepted although the authenticator does not cover the inserted extension"


@part("MIP.HA.AUTH.9", "A failed authentication leaves an existing binding as it was",
      ["rfc5944-3.8.2.1-k", "rfc5944-3.8.2.1-g"])
def test_failed_auth_keeps_binding(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, coa=ha_tester.fa_address, timeout=0.5, marker=True, auth={"corrupt": True})
    steps.record(f"request to move to {ha_tester.fa_address}, corrupted authenticator", "not accepted",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    _binding_kept(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.AUTH.10", "A deregistration with a bad authenticator leaves the binding in place",
      ["rfc5944-3.8.2.1-k", "rfc5944-3.8.2.1-b"])
def test_bad_auth_deregistration(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, lifetime=0, timeout=0.5, marker=True, auth={"key": b"\x33" * 16})
    steps.record("deregistration (lifetime 0) signed with a wrong key", "not accepted", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    _binding_kept(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.AUTH.11", "Two MN-HA extensions with a valid first one: the reply, if any, is authentic and the HA stays consistent",
      ["rfc5944-3.8.2.1-c", "rfc5944-3.8.2.1-i"])
def test_two_mn_ha(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, extensions_after=[mn.sa.authenticate(EXT_MN_HA_AUTH)])
    steps.record("request with two MN-HA extensions (both valid over what precedes them)",
                 "a reply with a valid MN-HA, or none", describe_check(check),
                 ok=check is None or bool(check.authentic))
    assert check is None or check.authentic, f"the reply is not authentic: {describe_check(check)}"
    if _accepted(check):
        _binding_kept(ha_tester, steps, str(mn.home_address))


# ---- 133: identification mismatch ------------------------------------------------------------------

def _ident_133(ha_tester, steps, what, offset=None, identification=None):
    mn = ha_tester.mn()
    if identification is None:
        identification = ntp_identification(time.time() + offset, 0x5A5A5, 20)
    t0 = time.time()
    _, check = ha_tester.register(mn, identification=identification)
    ok = bool(check and check.code == 133)
    steps.record(what, "code 133 with a valid MN-HA, low 32 bits echoed, the HA's time high", describe_check(check), ok=ok)
    assert check is not None, "no reply to a request with a bad identification (SHOULD send 133)"
    assert not _accepted(check), f"accepted a bad identification: {describe_check(check)}"
    assert check.code == 133, f"expected code 133, got {describe_check(check)}"
    assert check.authentic, "the 133 reply is not authentic"
    assert check.matches, (f"low 32 bits {check.reply.identification & 0xFFFFFFFF:#x} are not the request's "
                           f"{identification & 0xFFFFFFFF:#x}")
    return mn, check, t0


@part("MIP.HA.IDENT.1", "A timestamp 60 s old gets 133, low 32 bits echoed, MN-HA valid",
      ["rfc5944-5.7.1-g", "rfc5944-3.8.2.1-m", "rfc5944-5.7-c", "rfc5944-5.7.1-e", "rfc5944-5.7-a"])
def test_old_timestamp(ha_tester, steps):
    _ident_133(ha_tester, steps, "request with a timestamp 60 s in the past", offset=-60)


@part("MIP.HA.IDENT.2", "A timestamp 60 s ahead gets 133",
      ["rfc5944-5.7.1-g", "rfc5944-5.7.1-f"])
def test_future_timestamp(ha_tester, steps):
    _ident_133(ha_tester, steps, "request with a timestamp 60 s in the future", offset=60)


@part("MIP.HA.IDENT.3", "The 133 reply's high 32 bits carry the HA's time (within 3 s of the true time)",
      ["rfc5944-5.7.1-g"])
def test_133_carries_ha_time(ha_tester, steps):
    mn, check, t0 = _ident_133(ha_tester, steps, "request with a timestamp 100 s old", offset=-100)
    ha_time = (check.reply.identification >> 32) - 2_208_988_800
    steps.record("high 32 bits of the 133 reply", f"about {int(t0)}", ha_time, ok=abs(ha_time - t0) <= 3)
    assert abs(ha_time - t0) <= 3, f"high 32 bits say {ha_time}, the time is {t0:.0f}"


@part("MIP.HA.IDENT.4", "After a 133, a request resynchronised to the HA's time is accepted",
      ["rfc5944-5.7.1-g", "rfc5944-3.8.2.1-m"])
def test_resync_after_133(ha_tester, steps):
    mn = ha_tester.mn(clock_offset=-120)
    _, check = ha_tester.register(mn)
    steps.record("request from a node whose clock is 120 s behind", "133", describe_check(check),
                 ok=bool(check and check.code == 133))
    assert check is not None and check.code == 133, describe_check(check)
    steps.record("resynchronise from the reply's identification", "clock offset set", mn.clock_offset,
                 ok=check.resynchronised)
    assert check.resynchronised, "the 133 reply does not allow resynchronisation (authentic, low bits echoed)"
    _, again = ha_tester.register(mn)
    steps.record("request again with the HA's time", "accepted", describe_check(again), ok=bool(again and again.accepted))
    assert again is not None and again.accepted, describe_check(again)


@part("MIP.HA.IDENT.5", "Replaying the identification of an accepted request gets 133 and changes nothing",
      ["rfc5944-5.7.1-f", "rfc5944-3.8.2.1-n", "rfc5944-3.8.2.1-l"])
def test_replayed_identification(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    used = mn.pending_identification
    _, check = ha_tester.register(mn, coa=ha_tester.fa_address, identification=used)
    steps.record("request to move to ar1 with the identification already accepted", "133 (or no reply), not accepted",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), f"a replayed identification was accepted: {describe_check(check)}"
    should(check is not None and check.code == 133, f"code 133 expected: {describe_check(check)}")
    _binding_kept(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.IDENT.6", "A fresh timestamp lower than the last accepted one gets 133",
      ["rfc5944-5.7.1-f", "rfc5944-5.7.1-g"])
def test_lower_timestamp(ha_tester, steps):
    mn = ha_tester.mn()
    first = ntp_identification(time.time())
    _, c1 = ha_tester.register(mn, identification=first)
    steps.record("request with timestamp T", "accepted", describe_check(c1), ok=bool(c1 and c1.accepted))
    if not (c1 and c1.accepted):
        inconclusive(f"the first registration was not accepted: {describe_check(c1)}")
    _, c2 = ha_tester.register(mn, identification=first - (1 << 32))  # one second earlier, still in tolerance
    steps.record("request with timestamp T - 1 s", "133", describe_check(c2), ok=bool(c2 and c2.code == 133))
    assert not _accepted(c2), f"a timestamp lower than the last accepted one was accepted: {describe_check(c2)}"
    assert c2 is not None and c2.code == 133, describe_check(c2)


@part("MIP.HA.IDENT.7", "The identification of an accepted deregistration cannot be replayed",
      ["rfc5944-5.7.1-f", "rfc5944-3.8.2.1-l"])
def test_replay_after_deregistration(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, d = ha_tester.register(mn, lifetime=0)
    steps.record("deregistration", "accepted", describe_check(d), ok=bool(d and d.accepted))
    _, check = ha_tester.register(mn, identification=mn.pending_identification, timeout=0.6)
    steps.record("a registration with the deregistration's identification", "not accepted (133)",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.IDENT.8", "A 133 leaves an existing binding as it was",
      ["rfc5944-3.8.2.1-n", "rfc5944-3.8.2.1-m"])
def test_133_keeps_binding(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    stale = ntp_identification(time.time() - 300)
    _, check = ha_tester.register(mn, coa=ha_tester.fa_address, identification=stale)
    steps.record("move to ar1 with a 300 s old timestamp", "133", describe_check(check),
                 ok=bool(check and check.code == 133))
    assert not _accepted(check), describe_check(check)
    _binding_kept(ha_tester, steps, str(mn.home_address))


# ---- 134: poorly formed ----------------------------------------------------------------------------

@part("MIP.HA.FORM.1", "An unknown extension type 0-127 before the MN-HA: the request is silently discarded",
      ["rfc5944-1.8-a"])
def test_unknown_extension_low_before(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, extensions_before=[Extension(100, b"abcd")])
    steps.record("request with an unknown extension type 100 before the MN-HA", "no reply, no binding",
                 describe_check(check), ok=check is None)
    assert not _accepted(check), f"accepted: {describe_check(check)}"
    assert check is None, f"expected a silent discard, got {describe_check(check)}"
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.FORM.2", "An unknown extension type 0-127 after the MN-HA: the request is silently discarded",
      ["rfc5944-1.8-a"])
def test_unknown_extension_low_after(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, extensions_after=[Extension(127, b"")])
    steps.record("request with an unknown extension type 127 after the MN-HA", "no reply, no binding",
                 describe_check(check), ok=check is None)
    assert not _accepted(check), f"accepted: {describe_check(check)}"
    assert check is None, f"expected a silent discard, got {describe_check(check)}"


@part("MIP.HA.FORM.3", "A request whose last extension runs past the end is not accepted (SHOULD: 134)",
      ["rfc5944-3.8.2.3-a", "rfc5944-1.11-a"])
def test_extension_past_end(ha_tester, steps):
    mn = ha_tester.mn()
    data = mn.request(time.time(), ha_tester.coa, flags="D") + bytes([200, 40, 1, 2])
    item, check = ha_tester.exchange(mn, data, timeout=0.6)
    steps.record("signed request followed by extension 200 with Length 40 and 2 bytes", "134 (or no reply)",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), f"a poorly formed request was accepted: {describe_check(check)}"
    should(check is not None and check.code == 134, f"code 134 expected: {describe_check(check)}")


@part("MIP.HA.FORM.4", "A registration with a multicast care-of address is not accepted",
      ["rfc5944-3.8.2.3-a"])
def test_multicast_coa(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, coa="224.0.0.5", timeout=0.6)
    steps.record("request with care-of address 224.0.0.5", "refused (134), not accepted", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    should(check is not None and check.code == 134, f"a reason code (134) expected: {describe_check(check)}")


@part("MIP.HA.FORM.5", "A truncated request (fixed part cut short) gets no reply and the HA keeps serving",
      ["rfc5944-3.8.2.1-b"])
def test_truncated_fixed_part(ha_tester, steps):
    mn = ha_tester.mn()
    data = mn.request(time.time(), ha_tester.coa, flags="D")[:18]
    ha_tester.send(data)
    got = ha_tester.any_registration(timeout=0.3, marker=True)
    steps.record("the first 18 bytes of a request (then a valid one of another node: the wait ends once that one is "
                 "answered)", "nothing", [i.data[:1] for i in got], ok=not got)
    assert not any(i.data[:1] == b"\x03" and i.data[2:4] != b"\0\0" for i in got), "a truncated request was accepted"
    ha_tester.registered(ha_tester.mn(), steps=steps)


@part("MIP.HA.FORM.6", "A request with Home Address 0.0.0.0 for a configured SA is not accepted",
      ["rfc5944-3.8.2.3-a", "rfc5944-3.8.2.1-e"])
def test_zero_home_address(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, marker=True, home_address="0.0.0.0")
    steps.record("request with Home Address 0.0.0.0 (no dynamic home addresses)", "not accepted",
                 describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)


# ---- 136: unknown home agent address --------------------------------------------------------------

@part("MIP.HA.HAADDR.1", "A unicast request naming another home agent gets 136 with the HA's unicast address",
      ["rfc5944-3.8.3.2-i", "rfc5944-3.8.3.2-j"])
def test_other_home_agent(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, home_agent="10.1.1.3")
    ok = bool(check and check.code == 136 and str(check.reply.home_agent) == ha_tester.ha)
    steps.record("request to the HA naming home agent 10.1.1.3", f"136, Home Agent field {ha_tester.ha}",
                 describe_check(check), ok=ok)
    assert not _accepted(check), f"registered with another home agent's address: {describe_check(check)}"
    assert check is not None and check.code == 136, f"expected 136: {describe_check(check)}"
    assert str(check.reply.home_agent) == ha_tester.ha, f"Home Agent field {check.reply.home_agent}"
    assert check.authentic, "the 136 reply is not authentic"


@part("MIP.HA.HAADDR.2", "A unicast request whose Home Agent field is the home network's broadcast address gets 136",
      ["rfc5944-3.8.3.2-i", "rfc5944-3.8.3.2-j", "rfc5944-3.6.1.2-m"])
def test_broadcast_home_agent_field(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, home_agent="10.1.1.255")
    ok = bool(check and check.code == 136 and str(check.reply.home_agent) == ha_tester.ha)
    steps.record("request to the HA with Home Agent 10.1.1.255", f"136, Home Agent field {ha_tester.ha}",
                 describe_check(check), ok=ok)
    assert not _accepted(check), describe_check(check)
    assert check is not None and check.code == 136, f"expected 136: {describe_check(check)}"
    assert str(check.reply.home_agent) == ha_tester.ha, f"Home Agent field {check.reply.home_agent}"


@part("MIP.HA.HAADDR.3", "A request sent to the home network's directed broadcast is denied with 136 from the HA's unicast address",
      ["rfc5944-3.8.2.1-t", "rfc5944-3.8.2.1-u", "rfc5944-3.6.1.2-m", "rfc5944-3.8.3.1-a"])
def test_directed_broadcast_request(ha_tester, steps):
    mn = ha_tester.mn()
    place = ha_tester.home_place
    data = mn.request(time.time(), ha_tester.coa, flags="D", home_agent="10.1.1.255")
    item, check = ha_tester.exchange(mn, data, place, dst="10.1.1.255")
    ok = bool(check and check.code == 136 and item.src == ha_tester.ha)
    steps.record("request from the home link to 10.1.1.255:434, Home Agent 10.1.1.255",
                 f"136 from {ha_tester.ha}, Home Agent field {ha_tester.ha}",
                 f"{describe_check(check)} from {item.src if item else None}", ok=ok)
    assert not _accepted(check), f"a broadcast request was accepted: {describe_check(check)}"
    should(check is not None, "a reply with code 136 should be sent")
    if check is not None:
        assert check.code == 136, f"expected 136: {describe_check(check)}"
        assert item.src == ha_tester.ha, f"the reply comes from {item.src}, not the HA's unicast address"
        assert str(check.reply.home_agent) == ha_tester.ha, f"Home Agent field {check.reply.home_agent}"


@part("MIP.HA.HAADDR.4", "A request sent to the HA's directed broadcast naming the HA itself is still denied",
      ["rfc5944-3.8.2.1-t", "rfc5944-3.8.2.1-u"])
def test_directed_broadcast_naming_ha(ha_tester, steps):
    mn = ha_tester.mn()
    place = ha_tester.home_place
    data = mn.request(time.time(), ha_tester.coa, flags="D")
    item, check = ha_tester.exchange(mn, data, place, dst="10.1.1.255")
    steps.record("request from the home link to 10.1.1.255:434, Home Agent 10.1.1.2", "not accepted (136)",
                 f"{describe_check(check)} from {item.src if item else None}", ok=not _accepted(check))
    assert not _accepted(check), f"a request sent to the subnet-directed broadcast was accepted: {describe_check(check)}"
    should(check is not None and check.code == 136, f"136 expected: {describe_check(check)}")


@part("MIP.HA.HAADDR.5", "A request to 255.255.255.255 on the home link is not accepted as a registration",
      ["rfc5944-3.8.2.1-t", "rfc5944-3.8.3.1-a"])
def test_limited_broadcast_request(ha_tester, steps):
    mn = ha_tester.mn()
    place = ha_tester.home_place
    data = mn.request(time.time(), ha_tester.coa, flags="D", home_agent="255.255.255.255")
    item, check = ha_tester.exchange(mn, data, place, dst="255.255.255.255")
    steps.record("request to 255.255.255.255:434 from the home link, Home Agent 255.255.255.255",
                 "136 from the HA's unicast address, or no reply",
                 f"{describe_check(check)} from {item.src if item else None}", ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    if item is not None:
        assert item.src == ha_tester.ha, f"reply from {item.src}, not the HA's unicast address"
        assert check.code == 136 and str(check.reply.home_agent) == ha_tester.ha, describe_check(check)


# ---- 139 / 130: what the HA cannot provide ----------------------------------------------------------

@part("MIP.HA.ENC.1", "A request with both M and G (two encapsulations at once) is denied with 139",
      ["rfc3024-3.4-e"])
def test_m_and_g(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="DMG")
    steps.record("request with M and G", "139", describe_check(check), ok=bool(check and check.code == 139))
    assert not _accepted(check), describe_check(check)
    assert check is not None and check.code == 139, f"expected 139: {describe_check(check)}"
    assert check.authentic, "the reply is not authentic"


@part("MIP.HA.ENC.2", "A reverse-tunnel request with an encapsulation the HA cannot offer is denied with 139",
      ["rfc3024-4.3.1-a", "rfc3024-3.4-e"], needs=["mip.reverse-tunnel"])
def test_t_with_m_and_g(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="DTMG")
    steps.record("request with T, M and G", "139", describe_check(check), ok=bool(check and check.code == 139))
    assert not _accepted(check), describe_check(check)
    assert check is not None and check.code == 139, f"expected 139: {describe_check(check)}"


@part("MIP.HA.ENC.3", "A denial for an unavailable encapsulation creates no binding",
      ["rfc3024-3.4-a", "rfc5944-3.8.2.3-a"])
def test_139_no_binding(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="DMG")
    steps.record("request with M and G", "denied", describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), describe_check(check)
    _still_unbound(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.RES.1", "With its binding table full, the HA refuses another node with a reason code and keeps the others",
      ["rfc5944-3.8.2.3-a", "rfc5944-3.8.3-b"])
def test_binding_table_full(ha_tester, steps):
    homes = ["10.1.1.100", "10.1.1.101", "10.1.1.102", "10.1.1.103"]
    for h in homes:
        ha_tester.registered(ha_tester.mn(h), steps=steps)
    fifth = ha_tester.mn("10.1.1.104")
    _, check = ha_tester.register(fifth, timeout=0.6)
    steps.record("a fifth node (the HA admits 4 bindings)", "a denial with a code (130), authentic",
                 describe_check(check), ok=bool(check and not _accepted(check)))
    if _accepted(check):
        inconclusive("the HA found room for a fifth binding: its table is larger than the scenario says")
    should(check is not None and check.code in (128, 129, 130), f"a reason code expected: {describe_check(check)}")
    _binding_kept(ha_tester, steps, homes[0])
