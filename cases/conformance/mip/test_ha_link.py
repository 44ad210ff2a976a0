"""HA: the home link while a node is away (RFC 5944 4.6, 4.2.3, 3.8.2.2): the gratuitous ARP for the
home address on a first binding, proxy ARP while the binding lasts, none before or after it, and
no change in ARP behaviour for a refused request. Seen from ir, on the home link (AF_PACKET)."""
import time

from testbed.conformance.mip.link import BROADCAST_MAC
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import inconclusive, part, should

# a silence window ended by a marker (testbed/conformance/inbox.py)
AFTER = " (then one for a home address bound at r: the wait ends once the HA answers that one)"


def _ha_mac(ha_tester) -> str:
    reply = ha_tester.link.who_has(ha_tester.ha)
    if reply is None:
        inconclusive(f"the HA's address {ha_tester.ha} does not answer ARP on the home link")
    return reply.sender_mac


def _garps(msgs, home):
    return [m for m in msgs if m.sender_ip == home and m.target_ip == home]


def _register_and_watch(ha_tester, steps, mn, seconds=0.5, **kw):
    link = ha_tester.link
    link.drain()
    item, check = ha_tester.registered(mn, steps=steps, **kw)
    msgs = link.collect(seconds)
    return check, msgs



@part("MIP.HA.LINK.1", "A first binding makes the HA broadcast a gratuitous ARP for the home address with its own MAC",
      ["rfc5944-4.6-e", "rfc5944-4.6-f", "rfc5944-4.6-a", "rfc5944-3.8.2.2-i", "rfc5944-4.6-k"])
def test_gratuitous_arp_on_first_binding(ha_tester, steps):
    mac = _ha_mac(ha_tester)
    mn = ha_tester.mn()
    home = str(mn.home_address)
    check, msgs = _register_and_watch(ha_tester, steps, mn)
    g = _garps(msgs, home)
    steps.record("ARP on the home link within 0.5 s of the reply", f"gratuitous ARP {home} is-at {mac}, broadcast",
                 [(m.op, m.sender_mac, m.dst_mac) for m in g], ok=bool(g))
    assert g, f"no gratuitous ARP for {home} on the home link"
    assert all(m.dst_mac == BROADCAST_MAC for m in g), f"not broadcast: {[m.dst_mac for m in g]}"
    assert all(m.sender_mac == mac for m in g), f"sender hardware address {[m.sender_mac for m in g]}, HA's is {mac}"


@part("MIP.HA.LINK.2", "The gratuitous ARP is repeated (more than one within a second)",
      ["rfc5944-4.6-g", "rfc5944-4.6-k"])
def test_gratuitous_arp_repeated(ha_tester, steps):
    mn = ha_tester.mn()
    home = str(mn.home_address)
    check, msgs = _register_and_watch(ha_tester, steps, mn, seconds=1.0)
    g = _garps(msgs, home)
    steps.record("gratuitous ARPs within 1 s", "two or more", len(g))
    assert g, "no gratuitous ARP at all"
    should(len(g) >= 2, f"the gratuitous ARP should be repeated, saw {len(g)}")


@part("MIP.HA.LINK.3", "While a binding exists the HA answers ARP for the home address with its own MAC",
      ["rfc5944-4.6-c", "rfc5944-4.6-d", "rfc5944-1.7-b", "rfc5944-4.2.3-a"])
def test_proxy_arp(ha_tester, steps):
    mac = _ha_mac(ha_tester)
    mn = ha_tester.mn()
    home = str(mn.home_address)
    ha_tester.registered(mn, steps=steps)
    reply = ha_tester.link.who_has(home)
    ok = reply is not None and reply.sender_mac == mac
    steps.record(f"ARP request from ir for {home}", f"reply {home} is-at {mac}",
                 f"{reply.sender_ip} is-at {reply.sender_mac} to {reply.target_ip} {reply.target_mac}" if reply else "none",
                 ok=ok)
    assert reply is not None, f"no ARP reply for {home} while the node is away"
    assert reply.sender_mac == mac, f"answered with {reply.sender_mac}, the HA's MAC is {mac}"
    assert (reply.target_ip, reply.target_mac) == (ha_tester.home_router, ha_tester.link.mac), \
        f"target of the reply {reply.target_ip} {reply.target_mac}: sender and target not swapped"


@part("MIP.HA.LINK.4", "Without a binding nobody answers ARP for the home address (no proxy ARP)",
      ["rfc5944-4.2.3-b"])
def test_no_proxy_without_binding(ha_tester, steps):
    home = ha_tester.homes[0]
    reply = ha_tester.link.no_reply(home, 0.3, ha_tester.marker_binding())
    steps.record(f"ARP request from ir for {home}, no binding{AFTER}", "no reply", reply.sender_mac if reply else "none",
                 ok=reply is None)
    assert reply is None, f"{reply.sender_mac} answers ARP for a node that is not away"


@part("MIP.HA.LINK.5", "After a deregistration the HA stops answering ARP for the home address",
      ["rfc5944-4.2.3-b", "rfc5944-4.6-q"])
def test_no_proxy_after_deregistration(ha_tester, steps):
    mn = ha_tester.mn()
    home = str(mn.home_address)
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, coa=home, lifetime=0, flags="")
    steps.record("deregistration (care-of = home address)", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)
    reply = ha_tester.link.no_reply(home, 0.3, ha_tester.marker_binding())
    steps.record(f"ARP request for {home}{AFTER}", "no reply from the HA", reply.sender_mac if reply else "none",
                 ok=reply is None)
    assert reply is None, f"the HA still answers ARP for {home} after the deregistration"


@part("MIP.HA.LINK.6", "After the binding expires the HA stops answering ARP for the home address",
      ["rfc5944-4.2.3-b", "rfc5944-3.8.2.2-g"])
def test_no_proxy_after_expiry(ha_tester, steps):
    mn = ha_tester.mn(lifetime=1)
    home = str(mn.home_address)
    _, check = ha_tester.registered(mn, steps=steps)
    time.sleep(check.reply.lifetime + 0.3)
    reply = ha_tester.link.no_reply(home, 0.3, ha_tester.marker_binding())
    steps.record(f"ARP request for {home} after the lifetime{AFTER}", "no reply", reply.sender_mac if reply else "none",
                 ok=reply is None)
    assert reply is None, "the HA still proxies for an expired binding"


@part("MIP.HA.LINK.7", "A refused request changes nothing on the home link: no gratuitous ARP, no proxy ARP",
      ["rfc5944-4.6-r"])
def test_refused_no_arp_change(ha_tester, steps):
    mn = ha_tester.mn()
    home = str(mn.home_address)
    ha_tester.link.drain()
    _, check = ha_tester.register(mn, timeout=0.5, auth={"corrupt": True})
    msgs = ha_tester.link.collect(0.3)
    g = _garps(msgs, home)
    reply = ha_tester.link.no_reply(home, 0.3, ha_tester.marker_binding())
    steps.record(f"request with a bad authenticator, then ARP for the home address{AFTER}",
                 "no gratuitous ARP, no proxy reply", f"{describe_check(check)}; garp {len(g)}, proxy {bool(reply)}",
                 ok=not g and reply is None)
    assert not g, "a refused request made the HA announce the home address"
    assert reply is None, "a refused request made the HA proxy for the home address"


@part("MIP.HA.LINK.8", "A re-registration keeps the HA answering ARP for the home address",
      ["rfc5944-3.8.2.2-j"])
def test_proxy_continues(ha_tester, steps):
    mac = _ha_mac(ha_tester)
    mn = ha_tester.mn()
    home = str(mn.home_address)
    ha_tester.registered(mn, steps=steps)
    ha_tester.registered(mn, steps=steps)
    reply = ha_tester.link.who_has(home)
    steps.record(f"ARP request for {home} after the re-registration", f"{home} is-at {mac}",
                 reply.sender_mac if reply else "none", ok=bool(reply and reply.sender_mac == mac))
    assert reply is not None and reply.sender_mac == mac, "proxy ARP stopped after a re-registration"


@part("MIP.HA.LINK.9", "A refused deregistration leaves proxy ARP in place",
      ["rfc5944-4.6-r", "rfc5944-3.8.2.1-k"])
def test_refused_deregistration_keeps_proxy(ha_tester, steps):
    mac = _ha_mac(ha_tester)
    mn = ha_tester.mn()
    home = str(mn.home_address)
    ha_tester.registered(mn, steps=steps)
    ha_tester.register(mn, coa=home, lifetime=0, flags="", timeout=0.4, auth={"corrupt": True})
    reply = ha_tester.link.who_has(home)
    steps.record("deregistration with a bad authenticator, then ARP for the home address", f"{home} is-at {mac}",
                 reply.sender_mac if reply else "none", ok=bool(reply and reply.sender_mac == mac))
    assert reply is not None and reply.sender_mac == mac, "a refused deregistration stopped proxy ARP"
