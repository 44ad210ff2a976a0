"""HA: requests relayed by a foreign agent (RFC 5944 3.5.4, 3.8.1, 3.8.2.1 c/d, 3.8.3.3): the tester's
FA at ar1 (192.0.2.1) shares an FA-HA security association with the HA, ar2 (192.0.2.129) none.
The FA-HA extension checked on registrations, not needed on deregistrations, added to the reply
last and the reply sent to the FA; data tunnelled to the FA's care-of address."""
import time

from testbed.conformance.mip import EXT_FA_HA_AUTH, EXT_MN_HA_AUTH
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import part, should

NEEDS = ["mip.fa-ha-auth"]


def _accepted(check) -> bool:
    return bool(check and check.reply and check.reply.code in (0, 1))


def _relay(ha_tester, mn, with_sa=True, lifetime=None, add_fa_ha=None, fa_ha_overrides=None, extra_after=(),
           timeout=1.0, **request_kw):
    """The MN's request (care-of = the FA) relayed by the tester's FA; (Received, ReplyCheck, fa_ha_ok)."""
    fa = ha_tester.fa(with_sa)
    place = ha_tester.fa_place if with_sa else ha_tester.fa2_place
    data = mn.request(time.time(), fa.care_of_address, lifetime=lifetime, **request_kw)
    out = fa.relay_request(data, add_fa_ha=add_fa_ha, fa_ha_overrides=fa_ha_overrides,
                           extra_extensions=list(extra_after)).value[0]
    ha_tester.send(out, place)
    item = ha_tester.reply_to(mn.pending_identification, place, timeout)
    if item is None:
        return None, None, None
    check = mn.check_reply(item.data, time.time(), mn.pending_identification)
    fa_ok = check.reply.verify(item.data, fa.fa_ha.key, EXT_FA_HA_AUTH, fa.fa_ha.spi) if fa.fa_ha else None
    return item, check, fa_ok


@part("MIP.HA.FA.1", "A relayed request with a valid FA-HA is accepted; the reply goes to the FA with a valid FA-HA",
      ["rfc5944-3.8.1-e", "rfc5944-3.8.1-f", "rfc5944-3.8.3.3-c", "rfc5944-3.5.4-b", "rfc5944-3.8.2.2-b"], needs=NEEDS)
def test_fa_relay_accepted(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, fa_ok = _relay(ha_tester, mn)
    steps.record("request relayed by ar1 with FA-HA", "accepted, reply to 192.0.2.1 with a valid FA-HA",
                 f"{describe_check(check)} to {item.dst if item else None}, FA-HA {fa_ok}",
                 ok=_accepted(check) and bool(fa_ok))
    assert check is not None, "no reply at the FA"
    assert _accepted(check) and check.authentic, describe_check(check)
    assert item.dst == ha_tester.fa_address, f"reply sent to {item.dst}"
    assert fa_ok, "the reply lacks a valid FA-HA extension"


@part("MIP.HA.FA.2", "In a reply to the FA, the MN-HA comes before the FA-HA, which is last",
      ["rfc5944-3.8.3.3-a", "rfc5944-3.8.3.3-c"], needs=NEEDS)
def test_fa_reply_order(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, fa_ok = _relay(ha_tester, mn)
    assert check is not None and check.reply is not None, "no reply"
    types = [getattr(e, "type", None) for e in check.reply.extensions]
    ok = EXT_MN_HA_AUTH in types and types[-1] == EXT_FA_HA_AUTH and types.index(EXT_MN_HA_AUTH) < len(types) - 1
    steps.record("extension order", "... MN-HA ... FA-HA (last)", types, ok=ok)
    assert ok, f"extension order {types}"


@part("MIP.HA.FA.3", "A relayed registration without FA-HA (the FA has an SA) is refused (SHOULD: 132)",
      ["rfc5944-3.8.2.1-o", "rfc5944-3.8.2.1-q", "rfc5944-3.8.2.1-r"], needs=NEEDS)
def test_fa_ha_missing(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, _ = _relay(ha_tester, mn, add_fa_ha=False, timeout=0.6)
    steps.record("request relayed by ar1 without FA-HA", "refused, 132", describe_check(check), ok=not _accepted(check))
    assert not _accepted(check), "accepted without the FA-HA the HA shares with this FA"
    should(check is not None and check.code == 132, f"132 expected: {describe_check(check)}")


@part("MIP.HA.FA.4", "A relayed registration with an invalid FA-HA is refused (SHOULD: 132)",
      ["rfc5944-3.8.2.1-p", "rfc5944-3.8.2.1-q"], needs=NEEDS)
def test_fa_ha_invalid(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, _ = _relay(ha_tester, mn, fa_ha_overrides={"corrupt": True}, timeout=0.6)
    steps.record("request relayed by ar1 with a corrupted FA-HA", "refused, 132", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), "accepted with an invalid FA-HA"
    should(check is not None and check.code == 132, f"132 expected: {describe_check(check)}")


@part("MIP.HA.FA.5", "Two FA-HA extensions make the HA refuse the registration",
      ["rfc5944-3.8.2.1-p", "rfc5944-3.8.2.1-q"], needs=NEEDS)
def test_fa_ha_twice(ha_tester, steps):
    mn = ha_tester.mn()
    sa = ha_tester.fa_sas[ha_tester.fa_address]
    item, check, _ = _relay(ha_tester, mn, extra_after=[sa.authenticate(EXT_FA_HA_AUTH)], timeout=0.6)
    steps.record("request relayed by ar1 with two FA-HA extensions", "refused (132)", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), "accepted with two FA-HA extensions"


@part("MIP.HA.FA.6", "An FA-HA from an FA the HA shares no SA with makes the HA discard the request",
      ["rfc5944-3.8.2.1-s"], needs=NEEDS)
def test_fa_ha_without_sa(ha_tester, steps):
    from testbed.conformance.mip import SecurityAssociation
    mn = ha_tester.mn()
    fa = ha_tester.fa(with_sa=False)
    data = mn.request(time.time(), fa.care_of_address)
    from testbed.conformance.mip.messages import encode_extensions
    out = encode_extensions(data, [SecurityAssociation(2000, b"\x44" * 16).authenticate(EXT_FA_HA_AUTH)])
    ha_tester.send(out, ha_tester.fa2_place)
    # then a valid request ar2 relays: the wait ends once it is answered (testbed/conformance/inbox.py)
    item = ha_tester.quiet(ha_tester.reply_match(mn.pending_identification), 0.5, ha_tester.fa2_place,
                           ha_tester.marker_request(ha_tester.fa2_place)).item
    check = mn.check_reply(item.data, time.time()) if item else None
    steps.record("request relayed by ar2 (no SA) carrying an FA-HA (then a valid one of another node, relayed by "
                 "ar2: the wait ends once it is answered)", "discarded: not accepted", describe_check(check),
                 ok=not _accepted(check))
    assert not _accepted(check), "accepted a request with an FA-HA from an FA it shares no SA with"


@part("MIP.HA.FA.7", "A relayed deregistration without FA-HA is not refused for that",
      ["rfc5944-3.5.4-e", "rfc5944-3.8.2.1-o"], needs=NEEDS)
def test_fa_deregistration_without_fa_ha(ha_tester, steps):
    mn = ha_tester.mn()
    _, first, _ = _relay(ha_tester, mn)
    if not _accepted(first):
        from testbed.conformance.parts import inconclusive
        inconclusive(f"the relayed registration was not accepted: {describe_check(first)}")
    item, check, _ = _relay(ha_tester, mn, lifetime=0, add_fa_ha=False)
    steps.record("deregistration relayed by ar1 without FA-HA", "accepted", describe_check(check), ok=_accepted(check))
    assert _accepted(check), f"a deregistration was refused for lacking an FA-HA: {describe_check(check)}"


@part("MIP.HA.FA.8", "The reply to a relayed deregistration carries no FA-HA",
      ["rfc5944-3.5.4-a"], needs=NEEDS)
def test_fa_deregistration_reply_no_fa_ha(ha_tester, steps):
    mn = ha_tester.mn()
    _relay(ha_tester, mn)
    item, check, _ = _relay(ha_tester, mn, lifetime=0, add_fa_ha=False)
    assert check is not None and check.reply is not None, "no reply to the deregistration"
    n = len(check.reply.find_all(EXT_FA_HA_AUTH))
    steps.record("FA-HA extensions in the deregistration reply", "none", n, ok=n == 0)
    assert n == 0, "an FA-HA extension in a deregistration reply"


@part("MIP.HA.FA.9", "An invalid MN-HA with a valid FA-HA gets a 131 reply with a valid MN-HA",
      ["rfc5944-3.8.2.1-h", "rfc5944-3.8.2.1-i"], needs=NEEDS)
def test_fa_131(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, fa_ok = _relay(ha_tester, mn, auth={"corrupt": True})
    steps.record("request with a corrupted MN-HA relayed by ar1 with a valid FA-HA", "131, valid MN-HA",
                 describe_check(check), ok=bool(check and check.code == 131 and check.authentic))
    assert check is not None, "no reply: with a valid FA-HA the HA must answer 131"
    assert check.code == 131, describe_check(check)
    assert check.authentic, "the 131 reply has no valid MN-HA"


@part("MIP.HA.FA.10", "After a relayed registration, data goes to the FA's care-of address in IP-in-IP",
      ["rfc5944-3.8.1-c", "rfc5944-4.2.3-a"], needs=NEEDS)
def test_fa_data(ha_tester, steps):
    mn = ha_tester.mn()
    _, check, _ = _relay(ha_tester, mn)
    assert _accepted(check), describe_check(check)
    _, got = ha_tester.data_to_coa(str(mn.home_address), ha_tester.fa_place)
    steps.record("datagram from h to the home address", "IP-in-IP to 192.0.2.1", got.summary() if got else "nothing",
                 ok=bool(got and got.kind == "ipip"))
    assert got is not None and got.kind == "ipip", "nothing tunnelled to the FA"


@part("MIP.HA.FA.11", "A request relayed by an FA without an SA (and without FA-HA) is served as usual",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.2.2-b"], needs=NEEDS)
def test_fa_without_sa(ha_tester, steps):
    mn = ha_tester.mn()
    item, check, _ = _relay(ha_tester, mn, with_sa=False)
    steps.record("request relayed by ar2 (no SA, no FA-HA)", "accepted, reply to ar2", describe_check(check),
                 ok=_accepted(check))
    assert _accepted(check), describe_check(check)
    assert item.dst == ha_tester.fa2_address, f"reply to {item.dst}"
    assert not check.reply.find_all(EXT_FA_HA_AUTH), "an FA-HA in a reply to an FA without SA"


@part("MIP.HA.FA.12", "A deregistration by the MN directly (not via the FA) gets no extra reply to the FA",
      ["rfc5944-3.8.2.2-c", "rfc5944-3.8.2.2-b"], needs=NEEDS)
def test_no_extra_reply_to_fa(ha_tester, steps):
    mn = ha_tester.mn()
    _relay(ha_tester, mn, with_sa=False)
    _, check = ha_tester.register(mn, coa=ha_tester.fa2_address, lifetime=0, flags="")
    extra = ha_tester.any_registration(ha_tester.fa2_place, timeout=0.3)
    steps.record("deregistration of the FA's care-of address sent from r", "reply to r only, none to ar2",
                 f"{describe_check(check)}; {len(extra)} at ar2", ok=not extra)
    assert not extra, "the HA sent an extra reply to the FA it shares no SA with"
