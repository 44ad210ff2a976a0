"""FA: relaying the home agent's replies to the mobile node (RFC 5944 3.7.3), the visitor list they
make or leave alone, and what the FA must never send on its own (3.7)."""
import os

from testbed.conformance.mip import Extension, parse_reply, parse_request
from testbed.conformance.mip.auth import EXT_FA_HA_AUTH, EXT_MN_HA_AUTH
from testbed.conformance.parts import inconclusive, part, should

# a silence window ended by a marker (testbed/conformance/inbox.py)
AFTER = (" (then the HA's acceptance for another node's request, left pending before: the wait ends once the FA "
         "relays that one)")


def pending(t, mn, steps, **kw):
    """A request of `mn` relayed to the HA and not yet answered: (request bytes, relayed item)."""
    t.learn_agent()
    data = t.request(mn, **kw)
    ident = mn.mn.pending_identification
    t.send_request(mn, data)
    r = t.wait_relayed(mn, ident)
    steps.record("registration request through the FA", "relayed to the HA", f"from {r.src}" if r else "nothing",
                 ok=r is not None)
    if r is None:
        inconclusive("the FA did not relay the request")
    return data, r


def on_link(t, mn, ident, steps, expect, timeout=1.0):
    f = t.wait_reply(mn, ident, timeout)
    steps.record("on the link, to the mobile node", expect, f.summary() if f else "nothing")
    return f


def mn_ha_end(data: bytes) -> int:
    e = parse_reply(data).find(EXT_MN_HA_AUTH)
    return e.offset + 6 + len(e.authenticator)


def delivery(t, mn, steps, expect: bool, what: str = "a datagram the HA tunnels to the care-of address",
             busy=()) -> bool:
    """Whether a datagram tunnelled to `mn` is delivered; when it must not be, a visitor is registered
    (another node than `mn` and the `busy` ones) and a datagram for it follows: the wait ends once
    that one is delivered (testbed/conformance/inbox.py)."""
    other = None if expect else t.marker_visitor(mn, *busy)
    marker = b"fa-conformance-" + os.urandom(6).hex().encode()
    t.tunnel_to_coa(t.inner(mn, marker))
    f = t.delivered(mn, marker, 0.5) if expect else t.not_delivered(mn, marker, 0.4, other).item
    if other is not None:
        what += f" (then one for the visitor {other.home}: the wait ends once that one is delivered)"
    steps.record(what, "delivered to the mobile node" if expect else "not delivered", f.summary() if f else "nothing",
                 ok=(f is not None) == expect)
    return f is not None


@part("MIP.FA.REPLY.1", "The HA's accepting reply is relayed to the mobile node by link layer (its MAC), from "
      "the FA's address and port 434 to the home address and the request's source port",
      ["rfc5944-1.7-c", "rfc5944-3.7.2.3-d"])
def test_reply_relayed_to_mn(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 0)
    f = on_link(tester, mn, mn.mn.pending_identification, steps, f"code 0 in a frame to {mn.mac}")
    assert f is not None, "the accepting reply was not relayed to the mobile node"
    assert f.dst_mac == mn.mac, f"relayed in a frame to {f.dst_mac}, the mobile node is {mn.mac}"
    got = (str(f.ip.src), f.udp.sport, str(f.ip.dst), f.udp.dport)
    assert got == (str(tester.fa), 434, str(mn.home), 434), f"relayed reply {got}"


@part("MIP.FA.REPLY.2", "The relayed reply is unchanged from its fixed part through the MN-HA extension",
      ["rfc5944-3.7.3.2-e", "rfc5944-F-e"])
def test_reply_unchanged(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    sent = tester.answer(r, 0)
    f = on_link(tester, mn, mn.mn.pending_identification, steps, "the reply, same bytes through MN-HA")
    assert f is not None, "not relayed"
    end = mn_ha_end(sent)
    assert f.udp.payload[:end] == sent[:end], "the FA changed the reply before or within MN-HA"
    check = mn.mn.check_reply(f.udp.payload, 0.0)
    assert check.authentic, "the MN-HA authenticator no longer verifies at the mobile node"


@part("MIP.FA.REPLY.3", "The FA-HA extension of the HA's reply is removed before the reply goes to the mobile "
      "node", ["rfc5944-3.7.3.2-g"], needs=["mip.fa-ha-auth"])
def test_reply_fa_ha_removed(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    sent = tester.answer(r, 0)
    assert EXT_FA_HA_AUTH in [e.type for e in parse_reply(sent).extensions]
    f = on_link(tester, mn, mn.mn.pending_identification, steps, "the reply without FA-HA")
    assert f is not None, "not relayed"
    types = [e.type for e in parse_reply(f.udp.payload).extensions]
    assert EXT_FA_HA_AUTH not in types, f"FA-HA relayed to the mobile node: {types}"


@part("MIP.FA.REPLY.4", "An extension the MN-HA authenticator does not cover (type 200 after it) is removed "
      "from the relayed reply", ["rfc5944-3.7.3.2-g"])
def test_reply_uncovered_extension_removed(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 0, extensions_after=[Extension(200, b"uncovered")])
    f = on_link(tester, mn, mn.mn.pending_identification, steps, "the reply without extension 200")
    assert f is not None, "a reply with a skippable extension after MN-HA was not relayed"
    types = [e.type for e in parse_reply(f.udp.payload).extensions]
    assert 200 not in types, f"uncovered extension relayed: {types}"


@part("MIP.FA.REPLY.5", "The HA's denial (131) is relayed to the mobile node", ["rfc5944-3.7.3.2-a"])
def test_ha_denial_relayed(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 131)
    f = on_link(tester, mn, mn.mn.pending_identification, steps, "code 131")
    assert f is not None, "the HA's denial was not relayed"
    assert parse_reply(f.udp.payload).code == 131


@part("MIP.FA.REPLY.6", "A reply that matches no pending request is silently discarded", ["rfc5944-3.7.3.1-d"])
def test_unmatched_reply_discarded(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    req = parse_request(r.data).value
    other = tester.mns[2]
    marker = tester.pending_marker(mn, other)
    fake = tester.ha.answer(r.data, 0, home_address=other.home)
    tester.send_reply(fake, r)
    f = tester.reply_not_relayed(tester.reply_to(other), 0.4, marker).item
    steps.record(f"a reply for {other.home}, who has no request pending{AFTER}", "not relayed", f.summary() if f else "nothing",
                 ok=f is None)
    assert f is None, "a reply matching no pending request was relayed"
    assert not delivery(tester, other, steps, False, busy=(mn,)), "the unmatched reply made a visitor entry"
    tester.answer(r, 0)
    assert on_link(tester, mn, req.identification, steps, "the pending one still relayed") is not None


@part("MIP.FA.REPLY.7", "A reply whose identification's low 32 bits differ from the request's is silently "
      "discarded; the right one is relayed after it", ["rfc5944-3.7.3.1-e", "rfc5944-3.7.3.1-b"])
def test_identification_mismatch_discarded(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    ident = parse_request(r.data).identification
    marker = tester.pending_marker(mn)
    tester.answer(r, 0, identification=ident ^ 0x5A5A)
    f = tester.reply_not_relayed(tester.reply_to(mn), 0.4, marker).item
    steps.record(f"a reply with the low 32 bits changed{AFTER}", "not relayed", f.summary() if f else "nothing", ok=f is None)
    assert f is None, "a reply with a mismatched identification was relayed"
    tester.answer(r, 0)
    assert on_link(tester, mn, ident, steps, "the matching reply relayed") is not None, \
        "the matching reply was not relayed after the mismatched one"


@part("MIP.FA.REPLY.8", "A reply whose identification differs only in the high 32 bits (the HA's time, code 133) "
      "is relayed", ["rfc5944-3.7.3.1-b", "rfc5944-3.7.3.2-a"])
def test_high_bits_differ_relayed(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    ident = parse_request(r.data).identification
    tester.answer(r, 133, identification=(ident ^ (0x1234 << 32)))
    f = on_link(tester, mn, ident, steps, "code 133 relayed")
    assert f is not None, "a 133 reply matching the low 32 bits was not relayed"


@part("MIP.FA.REPLY.9", "A reply with a wrong nonzero UDP checksum is silently discarded",
      ["rfc5944-3.7.3.1-a", "rfc5944-3.1-d"])
def test_bad_checksum_reply_discarded(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    ident = parse_request(r.data).identification
    marker = tester.pending_marker(mn)
    tester.answer(r, 0, checksum="wrong")
    f = tester.reply_not_relayed(tester.reply_to(mn, ident), 0.4, marker).item
    steps.record(f"the accepting reply with a wrong UDP checksum{AFTER}", "not relayed", f.summary() if f else "nothing",
                 ok=f is None)
    assert f is None, "a reply with a wrong UDP checksum was relayed"
    assert not delivery(tester, mn, steps, False), "the discarded reply made a visitor entry"


@part("MIP.FA.REPLY.10", "A reply with a zero UDP checksum is accepted and relayed", ["rfc5944-3.1-e"])
def test_zero_checksum_reply(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 0, checksum="zero")
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "relayed")
    should(f is not None, "a reply with a zero UDP checksum was not relayed")


@part("MIP.FA.REPLY.11", "A reply without the FA-HA extension the FA and HA share is not relayed: the "
      "registration is refused (68)", ["rfc5944-3.7.3.1-h", "rfc5944-3.7.3.1-i", "rfc5944-3.7.1-h"],
      needs=["mip.fa-ha-auth"])
def test_reply_missing_fa_ha(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 0, fa_ha=False)
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "code 68, not the HA's 0")
    code = parse_reply(f.udp.payload).code if f else None
    assert code != 0, "a reply without FA-HA was relayed as an acceptance"
    assert not delivery(tester, mn, steps, False), "a visitor entry was made from an unauthenticated reply"
    should(code == 68, f"the mobile node got {code}, not 68")


@part("MIP.FA.REPLY.12", "A reply with a wrong FA-HA authenticator is not relayed: the registration is refused "
      "(68)", ["rfc5944-3.7.3.1-g", "rfc5944-3.7.3.1-i", "rfc5944-3.7.3.1-f"], needs=["mip.fa-ha-auth"])
def test_reply_bad_fa_ha(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    tester.answer(r, 0, fa_ha=False, extensions_after=[tester.fa_ha.authenticate(EXT_FA_HA_AUTH, corrupt=True)])
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "code 68")
    code = parse_reply(f.udp.payload).code if f else None
    assert code != 0, "a reply with a wrong FA-HA authenticator was relayed as an acceptance"
    assert not delivery(tester, mn, steps, False), "a visitor entry was made from a badly authenticated reply"
    should(code == 68, f"the mobile node got {code}, not 68")


@part("MIP.FA.REPLY.13", "A reply with two FA-HA extensions is not relayed as an acceptance",
      ["rfc5944-3.7.3.1-h"], needs=["mip.fa-ha-auth"])
def test_reply_two_fa_ha(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    sa = tester.fa_ha
    tester.answer(r, 0, fa_ha=False, extensions_after=[sa.authenticate(EXT_FA_HA_AUTH), sa.authenticate(EXT_FA_HA_AUTH)])
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "no acceptance (68 or nothing)", timeout=0.5)
    code = parse_reply(f.udp.payload).code if f else None
    assert code != 0, "a reply with two FA-HA extensions was relayed as an acceptance"


@part("MIP.FA.REPLY.14", "The HA's acceptance of a deregistration (no FA-HA: none may be added to "
      "deregistration messages) is relayed", ["rfc5944-3.5.4-a", "rfc5944-3.7.1-h"], needs=["mip.fa-ha-auth"])
def test_deregistration_reply_without_fa_ha(tester, steps):
    mn = tester.mns[0]
    tester.register(mn)
    _, r = pending(tester, mn, steps, lifetime=0)
    tester.answer(r, 0, 0)
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "code 0, lifetime 0")
    code = parse_reply(f.udp.payload).code if f else None
    assert code == 0, f"the HA's acceptance of a deregistration reached the mobile node as {code}"


@part("MIP.FA.REPLY.15", "A reply from the HA that runs past its end (poorly formed) is not relayed as is; "
      "the mobile node gets 71 or nothing", ["rfc5944-3.7.2.3-a"])
def test_poorly_formed_reply(tester, steps):
    mn = tester.mns[0]
    _, r = pending(tester, mn, steps)
    good = tester.ha.answer(r.data, 0)
    tester.send_reply(good + bytes((200, 60)) + b"zz", r)
    f = on_link(tester, mn, parse_request(r.data).identification, steps, "71, or nothing", timeout=0.5)
    code = parse_reply(f.udp.payload).code if f else None
    assert code != 0, "a poorly formed reply was relayed as an acceptance"
    should(code == 71, f"the mobile node got {code}, not 71")


@part("MIP.FA.SILENT.1", "The FA sends no registration request and no reply on its own: 1 s after a reset, "
      "with nothing sent to it", ["rfc5944-3.7-b", "rfc5944-3.7-c"])
def test_fa_sends_nothing_on_its_own(tester, steps):
    tester.drain()
    got = tester.collect(1.0, lambda i: (getattr(i, "kind", None) == "udp") or
                         (getattr(i, "udp", None) is not None and i.udp.dport == 434 or
                          getattr(i, "udp", None) is not None and i.udp.sport == 434))
    steps.record("listen at the HA and on the link for 1 s", "no request, no reply", len(got), ok=not got)
    assert not got, f"the FA sent registration messages on its own: {got[:3]}"


@part("MIP.FA.SILENT.2", "When a visitor's registration lifetime expires the FA sends neither a request nor a "
      "reply, and stops delivering to it", ["rfc5944-3.7-d", "rfc5944-3.7-e", "rfc5944-3.4-d"])
def test_expiry_silent(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, lifetime=300, reply_lifetime=1)
    assert delivery(tester, mn, steps, True, "a tunnelled datagram while registered"), "no delivery after acceptance"
    got = tester.collect(1.3, lambda i: (getattr(i, "kind", None) == "udp") or
                         (getattr(i, "udp", None) is not None and 434 in (i.udp.sport, i.udp.dport)))
    steps.record("wait past the granted lifetime (1 s)", "no request at the HA, no reply on the link", len(got),
                 ok=not got)
    assert not got, "the FA sent registration messages when a lifetime expired"
    assert not delivery(tester, mn, steps, False, "a tunnelled datagram after the 1 s lifetime"), \
        "still delivered after the lifetime the reply granted (shorter than requested)"


@part("MIP.FA.SILENT.3", "A reply granting more than the request asked does not extend the visitor entry: "
      "delivery stops after the requested lifetime", ["rfc5944-3.4-c"])
def test_longer_reply_lifetime_capped(tester, steps):
    mn = tester.mns[0]
    tester.register(mn, lifetime=1, reply_lifetime=60)
    assert delivery(tester, mn, steps, True, "while registered"), "no delivery after acceptance"
    tester.collect(1.3, lambda i: False)
    assert not delivery(tester, mn, steps, False, "after the requested 1 s"), \
        "still delivered after the requested lifetime: the FA used the reply's longer one"
