"""HA: deregistration, binding expiry and duplicates (RFC 5944 3.8.2.2, 4.2.3): lifetime 0, care-of
address equal to the home address, the binding deleted when its lifetime runs out without a
word to anyone, a duplicate request that must not extend the lifetime."""
import time

from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import part


def _accepted(check) -> bool:
    return bool(check and check.reply and check.reply.code in (0, 1))


def _stopped(ha_tester, steps, home, wait=0.3):
    marker = ha_tester.marker_binding()
    ok = ha_tester.nothing_tunnelled(home, wait=wait, marker_home=marker)
    steps.record(f"datagram from h to the home address (then one to {marker}, bound at r: the wait ends once that "
                 "one is tunnelled)", "no longer tunnelled", "nothing" if ok else "tunnelled", ok=ok)
    assert ok, "the binding is still in use: data is tunnelled to the care-of address"


@part("MIP.HA.DEREG.1", "Lifetime 0 for the registered care-of address is accepted with lifetime 0; tunnelling stops",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.3-a", "rfc5944-3.8.1-c"])
def test_deregister_coa(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, lifetime=0)
    steps.record("deregistration: lifetime 0, care-of address r", "accepted, lifetime 0", describe_check(check),
                 ok=bool(_accepted(check) and check.reply.lifetime == 0))
    assert check is not None and check.accepted, describe_check(check)
    assert check.reply.lifetime == 0, f"a deregistration reply with lifetime {check.reply.lifetime}"
    _stopped(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.DEREG.2", "Lifetime 0 with the care-of address equal to the home address deletes every binding",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.3-a"])
def test_deregister_all(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, coa=str(mn.home_address), lifetime=0, flags="")
    steps.record("deregistration: lifetime 0, care-of address = home address", "accepted", describe_check(check),
                 ok=_accepted(check))
    assert check is not None and check.accepted, describe_check(check)
    _stopped(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.DEREG.3", "A deregistration of a node with no binding is accepted",
      ["rfc5944-3.8.2.2-a", "rfc3024-4.3.2-a"])
def test_deregister_unbound(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, coa=str(mn.home_address), lifetime=0, flags="")
    steps.record("deregistration without a binding", "accepted, authentic", describe_check(check), ok=_accepted(check))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.DEREG.4", "A deregistration reply echoes the identification and carries a valid MN-HA",
      ["rfc5944-5.7-c", "rfc5944-3.4-f", "rfc5944-3.8.3.3-b"])
def test_deregister_reply_fields(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, lifetime=0)
    steps.record("deregistration reply", "identification echoed, authentic", describe_check(check),
                 ok=bool(check and check.exact_match and check.authentic))
    assert check is not None, "no reply"
    assert check.exact_match, "identification not echoed"
    assert check.authentic, "no valid MN-HA"


@part("MIP.HA.DEREG.5", "Lifetime 0 for another care-of address leaves the registered one in place",
      ["rfc5944-3.8.2.2-a"])
def test_deregister_other_coa(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, coa="192.0.2.99", lifetime=0)
    steps.record("deregistration of care-of address 192.0.2.99 (not registered)", "accepted", describe_check(check),
                 ok=_accepted(check))
    assert check is not None and check.accepted, describe_check(check)
    _, got = ha_tester.data_to_coa(str(mn.home_address))
    steps.record("datagram from h to the home address", "still tunnelled to r", got.summary() if got else "nothing",
                 ok=got is not None)
    assert got is not None, "deleting another care-of address removed the binding of r"


@part("MIP.HA.DEREG.6", "After a deregistration a new registration is accepted and tunnelling resumes",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.1-c"])
def test_register_after_deregistration(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    ha_tester.register(mn, lifetime=0)
    ha_tester.registered(mn, steps=steps)
    _, got = ha_tester.data_to_coa(str(mn.home_address))
    steps.record("datagram from h to the home address", "tunnelled to r", got.summary() if got else "nothing",
                 ok=got is not None)
    assert got is not None, "nothing tunnelled after registering again"


@part("MIP.HA.EXPIRE.1", "When the granted lifetime runs out the binding is deleted: no more tunnelling",
      ["rfc5944-3.8.2.2-g", "rfc5944-4.2.3-h"])
def test_binding_expires(ha_tester, steps):
    mn = ha_tester.mn(lifetime=1)
    _, check = ha_tester.registered(mn, steps=steps)
    granted = check.reply.lifetime
    time.sleep(granted + 0.3)
    _stopped(ha_tester, steps, str(mn.home_address))


@part("MIP.HA.EXPIRE.2", "No Registration Reply (nor request) is sent when a binding expires",
      ["rfc5944-3.8-b", "rfc5944-4.2.3-g", "rfc5944-3.8-a"])
def test_no_reply_on_expiry(ha_tester, steps):
    mn = ha_tester.mn(lifetime=1)
    _, check = ha_tester.registered(mn, steps=steps)
    got = ha_tester.any_registration(timeout=check.reply.lifetime + 0.4)
    steps.record(f"listen at r while the {check.reply.lifetime} s binding expires", "no registration message",
                 [i.data[:2].hex() for i in got], ok=not got)
    assert not got, f"the HA sent {len(got)} registration message(s) unprompted"


@part("MIP.HA.DUP.1", "A duplicate of an accepted request does not extend the binding beyond its granted lifetime",
      ["rfc5944-3.8.2.2-h"])
def test_duplicate_does_not_extend(ha_tester, steps):
    mn = ha_tester.mn(lifetime=2)
    item, check = ha_tester.registered(mn, steps=steps)
    first = mn.last_request
    t0 = time.monotonic()
    time.sleep(1.2)
    ha_tester.send(first)
    dup = ha_tester.reply_to(mn.pending_identification, timeout=0.5)
    dcheck = mn.check_reply(dup.data, time.time()) if dup else None
    steps.record("the same request again after 1.2 s", "133, or an acceptance that does not extend the binding",
                 describe_check(dcheck))
    time.sleep(max(0.0, check.reply.lifetime + 0.3 - (time.monotonic() - t0)))
    _stopped(ha_tester, steps, str(mn.home_address), wait=0.3)
