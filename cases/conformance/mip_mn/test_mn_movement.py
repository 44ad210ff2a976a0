"""MN: move detection, returning home and ARP (RFC 5944 2.4.2-2.4.4, 3.6, 3.6.1.2, 4.6). The tester
is the foreign agent on fn2 (and a second agent there, 192.0.2.130, with a link-layer address of its
own), the home agent in iha, and watches the home link from iha."""
from ipaddress import IPv4Address

from testbed.conformance.mip.auth import EXT_MN_HA_AUTH
from testbed.conformance.mip_mn_env import BROADCAST_MAC
from testbed.conformance.parts import inconclusive, part, should

SEG = "fn2"
OTHER = IPv4Address("192.0.2.130")
STRANGER = (IPv4Address("192.0.2.140"), "02:53:54:00:00:01")  # another host on fn2


@part("MIP.MN.MOVE.1", "When the agent's advertisement lifetime runs out the node solicits again",
      ["rfc5944-2.4.2.1-b", "rfc5944-2.4.2.1-c", "rfc5944-2.4-i"])
def test_agent_lost_solicits(tester, steps):
    tester.fa_register(SEG, lifetime=1)
    tester.drain()
    f = tester.take(tester.is_solicitation, 2.5)
    steps.record("registered through the agent (advertisement lifetime 1 s), no more advertisements",
                 "a solicitation once the lifetime is over", f.summary() if f else "none", ok=f is not None)
    should(f is not None, "no solicitation within 2.5 s of the agent's advertisement lifetime (1 s) running out")


@part("MIP.MN.MOVE.2", "After losing its agent the node registers with a new one that advertises",
      ["rfc5944-2.4.2.1-b", "rfc5944-2.4.2-a", "rfc5944-3.6-c"])
def test_new_agent_after_loss(tester, steps):
    tester.fa_register(SEG, lifetime=1)
    tester.collect(1.6, lambda i: False)
    b = tester.agent(SEG, OTHER)
    tester.advertise(b, "F")
    f = tester.wait_request(SEG, 1.5, dst=b.address)
    steps.record(f"agent lost, then an advertisement from {b.address}", f"a request to {b.address}",
                 f.summary() if f else "none", ok=f is not None)
    should(f is not None and f.request.care_of_address == b.address, "no registration with the new agent")


@part("MIP.MN.MOVE.3", "A sequence number that falls below 256 (agent reboot) makes the node re-register",
      ["rfc5944-2.4.4-a", "rfc5944-3.6-d"])
def test_agent_reboot(tester, steps):
    tester.fa_register(SEG, sequence=1000)
    tester.drain()
    tester.advertise(SEG, "F", sequence=5)
    f = tester.wait_request(SEG, 1.5)
    steps.record("registered (advertisement sequence 1000), then an advertisement with sequence 5",
                 "a new registration request", f.summary() if f else "none", ok=f is not None)
    should(f is not None, "no re-registration after the agent's sequence number dropped to 5 (a reboot)")


@part("MIP.MN.MOVE.4", "A sequence number rolling over from 0xffff to 256 does not make the node re-register",
      ["rfc5944-2.4.4-b"])
def test_sequence_rollover(tester, steps):
    tester.fa_register(SEG, sequence=0xFFFF)
    tester.drain()
    tester.advertise(SEG, "F", sequence=256)
    got = tester.collect(1.2, tester.link_request(SEG))
    steps.record("registered (sequence 0xffff), then sequence 256", "no new request", [g.summary() for g in got],
                 ok=not got)
    should(not got, f"re-registered after a sequence rollover: {got[0].summary() if got else ''}")


@part("MIP.MN.MOVE.5", "Another agent's advertisement does not make the node re-register while its agent still advertises",
      ["rfc5944-3.6-e"])
def test_no_reregistration_for_new_agent(tester, steps):
    tester.fa_register(SEG)
    tester.drain()
    b = tester.agent(SEG, OTHER)
    tester.advertise(b, "F")
    tester.advertise(SEG, "F")
    got = tester.collect(1.2, tester.link_request(SEG))
    steps.record(f"registered; an advertisement from {b.address}, then the current agent's again", "no new request",
                 [g.summary() for g in got], ok=not got)
    should(not got, f"re-registered while the current agent still advertises: {got[0].summary() if got else ''}")


@part("MIP.MN.MOVE.6", "Advertisements from agents in turn do not make the node register more than once a second",
      ["rfc5944-2.4.2-b", "rfc5944-3.6-f"])
def test_registration_rate_limit(tester, steps):
    tester.attach(SEG)
    a, b = tester.agent(SEG), tester.agent(SEG, OTHER)
    got = []
    for i in range(12):
        tester.advertise(a if i % 2 == 0 else b, "F")
        got += tester.collect(0.25, tester.link_request(SEG))
    got += tester.collect(0.1, tester.link_request(SEG))
    span = 3.1
    steps.record("advertisements alternating between two agents every 0.25 s for 3 s",
                 "at most one request per second (4 in 3.1 s)", f"{len(got)} requests: {[g.summary() for g in got]}",
                 ok=len(got) <= 4)
    assert len(got) <= 4, f"{len(got)} registration requests in {span} s: more than one per second"


@part("MIP.MN.MOVE.7", "Moving to another network the node registers its new care-of address",
      ["rfc5944-2.4.2-a", "rfc5944-3.6-c"])
def test_move_new_link(tester, steps):
    tester.fa_register(SEG)
    f, at = tester.colocated_request("fn1")
    steps.record("registered through the agent on fn2, then moved to fn1", "a request for 192.0.2.100",
                 f.summary(), ok=f.request.care_of_address == IPv4Address("192.0.2.100"))
    should(f.request.care_of_address == IPv4Address("192.0.2.100"), f"care-of address {f.request.care_of_address}")


def _home(tester):
    """Preamble: registered away (through the agent on fn2), then back on the home link; what the
    node sends there for 1.5 s (it is not answered) and its deregistration."""
    tester.fa_register(SEG)
    tester.place("home")
    got = tester.collect(1.5, lambda i: getattr(i, "segment", None) == "home")
    dereg = next((g for g in got if g.request is not None), None)
    if dereg is None:
        inconclusive(f"no registration request on the home link within 1.5 s: {[g.summary() for g in got]}")
    return got, dereg


@part("MIP.MN.HOME.1", "Back home the node deregisters: lifetime 0, care-of address = home address, to its home agent from its home address",
      ["rfc5944-3.6.1.2-o", "rfc5944-3.1-c", "rfc5944-3.6.1.1-h", "rfc5944-3.6.1.1-c", "rfc5944-2.4.3-b"])
def test_deregistration_home(tester, steps):
    got, f = _home(tester)
    req = f.request
    steps.record("registered away, back on the home link", "lifetime 0, CoA = home, to the HA from the home address",
                 f.summary(), ok=(req.lifetime, req.care_of_address, f.ip.dst, f.ip.src)
                 == (0, tester.home, tester.ha_address, tester.home))
    assert req.lifetime == 0, f"lifetime {req.lifetime} in the request sent at home"
    assert req.care_of_address == tester.home, f"care-of address {req.care_of_address}, expected the home address"
    assert f.ip.dst == tester.ha_address, f"sent to {f.ip.dst}, not to the home agent"
    assert f.ip.src == tester.home, f"sent from {f.ip.src}, not from the home address"


@part("MIP.MN.HOME.2", "Back home the node broadcasts a gratuitous ARP for its home address before it deregisters",
      ["rfc5944-4.6-h", "rfc5944-4.6-a", "rfc5944-4.6-q", "rfc5944-2.4.3-c", "rfc5944-3.6.2.2-b"])
def test_gratuitous_arp_home(tester, steps):
    got, f = _home(tester)
    garps = [g for g in got if g.arp is not None and g.arp.gratuitous and g.arp.sender_ip == str(tester.home)]
    first = garps[0] if garps else None
    steps.record("back on the home link", "a broadcast gratuitous ARP (home address, own MAC) before the request",
                 f"{[g.summary() for g in garps]}; request at {f.time:.3f}",
                 ok=first is not None and first.time <= f.time and first.dst_mac == BROADCAST_MAC)
    assert first is not None, "no gratuitous ARP for the home address on returning home"
    assert first.dst_mac == BROADCAST_MAC, f"gratuitous ARP sent to {first.dst_mac}, not broadcast"
    assert first.arp.sender_mac == tester.mn_mac, f"gratuitous ARP names {first.arp.sender_mac}, not the node's MAC"
    assert first.time <= f.time, "the deregistration went out before the gratuitous ARP"


@part("MIP.MN.HOME.3", "The gratuitous ARP on returning home is sent more than once", ["rfc5944-4.6-i"])
def test_gratuitous_arp_repeated(tester, steps):
    got, f = _home(tester)
    garps = [g for g in got if g.arp is not None and g.arp.gratuitous and g.arp.sender_ip == str(tester.home)]
    steps.record("back on the home link, 1.5 s", ">= 2 gratuitous ARPs", [g.summary() for g in garps],
                 ok=len(garps) >= 2)
    should(len(garps) >= 2, f"{len(garps)} gratuitous ARP(s) on returning home")


@part("MIP.MN.HOME.4", "The deregistration carries a valid Mobile-Home Authentication extension",
      ["rfc5944-3.3-b", "rfc5944-3.5.2-a", "rfc5944-3.2-b"])
def test_deregistration_authenticated(tester, steps):
    got, f = _home(tester)
    ok = f.request.verify(f.udp.payload, tester.sa.key, EXT_MN_HA_AUTH, tester.sa.spi)
    steps.record("deregistration at home", "MN-HA verifies", f"verifies {ok}", ok=ok)
    assert ok, "the deregistration's MN-HA authenticator does not verify"


@part("MIP.MN.ARP.1", "Away from home the node does not answer a broadcast ARP request for its home address",
      ["rfc5944-4.6-m", "rfc5944-4.6-p"])
def test_no_arp_reply_for_home_away(tester, steps):
    tester.fa_register(SEG)
    tester.drain()
    ip, mac = STRANGER
    tester.arp_to_mn(SEG, 1, mac, ip, tester.home, BROADCAST_MAC, "(broadcast, a host on fn2)")
    got = tester.collect(0.5, lambda i: tester.arp_from_mn(i) and i.arp.op == 2)
    steps.record("registered on fn2; a broadcast ARP request for the home address", "no ARP reply",
                 [g.summary() for g in got], ok=not got)
    assert not got, f"the node answered ARP for its home address while away: {got[0].summary()}"


@part("MIP.MN.ARP.2", "Away from home and registered, the node sends no broadcast ARP from its home address",
      ["rfc5944-4.6-l", "rfc5944-4.2.1-c"])
def test_no_broadcast_arp_away(tester, steps):
    tester.fa_register(SEG)
    tester.drain()
    got = tester.collect(1.5, lambda i: tester.arp_from_mn(i) and i.dst_mac == BROADCAST_MAC
                         and i.arp.sender_ip == str(tester.home))
    steps.record("registered through the agent on fn2, 1.5 s", "no broadcast ARP with the home address",
                 [g.summary() for g in got], ok=not got)
    assert not got, f"broadcast ARP from the home address while away: {got[0].summary()}"


@part("MIP.MN.ARP.3", "Away from home the node answers its foreign agent's unicast ARP request for the home address",
      ["rfc5944-4.6-n"])
def test_arp_reply_to_agent(tester, steps):
    tester.fa_register(SEG)
    tester.drain()
    a = tester.agent(SEG)
    tester.arp_to_mn(SEG, 1, a.mac, a.address, tester.home, tester.mn_mac, "(unicast, from the agent)")
    f = tester.take(lambda i: tester.arp_from_mn(i) and i.arp.op == 2, 0.5)
    steps.record("unicast ARP request from the agent for the home address", "a unicast ARP reply",
                 f.summary() if f else "none", ok=f is not None and f.dst_mac == a.mac)
    assert f is not None, "no ARP reply to the foreign agent's unicast request"
    assert f.dst_mac == a.mac, f"ARP reply sent to {f.dst_mac}, not unicast to the agent"


@part("MIP.MN.ARP.4", "With a co-located care-of address the node answers ARP for it", ["rfc5944-4.6-o"])
def test_arp_for_colocated(tester, steps):
    tester.colocated_register("fn1")
    tester.drain()
    a = tester.agent("fn1")
    coa = IPv4Address("192.0.2.100")
    tester.arp_to_mn("fn1", 1, a.mac, a.address, coa, BROADCAST_MAC)
    f = tester.take(lambda i: tester.arp_from_mn(i) and i.arp.op == 2 and i.arp.sender_ip == str(coa), 0.5)
    steps.record(f"ARP request for the care-of address {coa}", "an ARP reply", f.summary() if f else "none",
                 ok=f is not None)
    should(f is not None, "no ARP reply for the co-located care-of address")
