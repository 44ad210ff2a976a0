"""MN: agent solicitation and agent advertisements (RFC 5944 2.4, 2.4.1, 3.1). The station attaches
to fn2 (no co-located address for it there: only a foreign agent's care-of address) or to fn1 (a
static co-located address too); the tester is the agent on the link (the access router's address
and link-layer address, its FA role not running)."""
from ipaddress import IPv4Address

from testbed.conformance.mip.advertisements import AGENT_FLAGS
from testbed.conformance.mip_mn_env import intervals
from testbed.conformance.parts import inconclusive, part, should


def _solicitations(tester, duration: float) -> list:
    return tester.collect(duration, tester.is_solicitation)


@part("MIP.MN.SOL.1", "Agent Solicitations go out with IP TTL 1 as ICMP Router Solicitations (type 10, code 0)",
      ["rfc5944-2-a", "rfc5944-2.2-a", "rfc5944-2.4-a"])
def test_solicitation_ttl(tester, steps):
    tester.place("fn2")
    f = tester.take(tester.is_solicitation, 2.0)
    steps.record("attach to fn2, no advertisement", "an Agent Solicitation with TTL 1",
                 f.summary() if f else "none", ok=f is not None and f.ip.ttl == 1)
    assert f is not None, "no Agent Solicitation within 2 s of attaching to a link without advertisements"
    assert f.ip.ttl == 1, f"solicitation TTL {f.ip.ttl}, must be 1"
    assert f.icmp[0] == 10 and f.icmp[1] == 0, f"ICMP type {f.icmp[0]} code {f.icmp[1]}, expected 10/0"
    assert f.ip.dst in (IPv4Address("224.0.0.2"), IPv4Address("255.255.255.255")), \
        f"solicitation to {f.ip.dst}, expected all-routers 224.0.0.2 or the broadcast address"


@part("MIP.MN.SOL.2", "The initial solicitations come at most one per second, at most three of them",
      ["rfc5944-2.4-c", "rfc5944-2.4-d"])
def test_solicitation_initial_rate(tester, steps):
    t0 = tester.place("fn2")
    got = _solicitations(tester, 2.7)
    times = [f.time for f in got]
    gaps = intervals(times)
    steps.record("attach to fn2, no advertisement, 2.7 s", "at most 3 solicitations, >= 1 s apart",
                 f"{len(got)} at {[round(t - t0, 3) for t in times]}, gaps {gaps}",
                 ok=len(got) <= 3 and all(g >= 0.95 for g in gaps))
    assert got, "no solicitation at all"
    assert len(got) <= 3, f"{len(got)} solicitations within 2.7 s of attaching: more than three initial ones"
    assert all(g >= 0.95 for g in gaps), f"solicitations less than one second apart: gaps {gaps}"


@part("MIP.MN.SOL.3", "After the initial solicitations the interval doubles (binary exponential backoff)",
      ["rfc5944-2.4-d", "rfc5944-2.4-e", "rfc5944-2.4-h"])
def test_solicitation_backoff(tester, steps):
    t0 = tester.place("fn2")
    got = _solicitations(tester, 4.7)
    times = [f.time for f in got]
    gaps = intervals(times)
    steps.record("attach to fn2, no advertisement, 4.7 s", "gaps ~1, ~1, then >= 2 (doubling)",
                 f"{len(got)} at {[round(t - t0, 3) for t in times]}, gaps {gaps}")
    assert len(got) >= 2, f"only {len(got)} solicitation(s) in 4.7 s: cannot see the backoff"
    assert len(got) <= 4, f"{len(got)} solicitations in 4.7 s: the rate was not reduced after three ({gaps})"
    later = gaps[2:]
    assert all(g >= 1.9 * p for p, g in zip(gaps[1:], later)), \
        f"after the third solicitation the interval must at least double: gaps {gaps}"


@part("MIP.MN.SOL.4", "Solicitation times are randomised around the nominal intervals",
      ["rfc5944-2.4-k"])
def test_solicitation_jitter(tester, steps):
    t0 = tester.place("fn2")
    got = _solicitations(tester, 2.4)
    gaps = intervals([f.time for f in got])
    exact = [g for g in gaps if abs(g - round(g)) < 0.01]
    steps.record("attach to fn2, no advertisement, 2.4 s", "intervals that vary around the nominal 1 s",
                 f"gaps {gaps} (first at +{round(got[0].time - t0, 3) if got else None} s)",
                 ok=len(gaps) >= 2 and len(exact) < len(gaps))
    assert len(gaps) >= 2, f"not enough solicitations to judge ({len(got)})"
    assert len(exact) < len(gaps), f"every interval is the nominal value to the millisecond: {gaps} (no jitter)"


@part("MIP.MN.SOL.5", "The node stops soliciting once it hears an Agent Advertisement",
      ["rfc5944-2.4-b"])
def test_no_solicitation_after_advertisement(tester, steps):
    first = tester.attach("fn2")
    tester.advertise("fn2", "F", lifetime=9)
    tester.drain()
    got = _solicitations(tester, 2.2)
    steps.record("a solicitation, then an advertisement (F, lifetime 9 s)", "no more solicitations within 2.2 s",
                 f"first: {first.summary() if first else None}; after: {[f.summary() for f in got]}", ok=not got)
    should(not got, f"{len(got)} solicitation(s) after an advertisement was heard")


@part("MIP.MN.SOL.6", "A node registered with a co-located care-of address does not keep soliciting",
      ["rfc5944-2.4-b"])
def test_no_solicitation_with_colocated(tester, steps):
    tester.colocated_register("fn1")
    tester.drain()
    got = _solicitations(tester, 2.2)
    steps.record("registered co-located on fn1 (no advertisement on the link)", "no solicitation within 2.2 s",
                 [f.summary() for f in got], ok=not got)
    should(not got, f"{len(got)} solicitation(s) while a co-located care-of address is in use")


@part("MIP.MN.ADV.1", "An advertisement with the reserved bit set is used, not discarded",
      ["rfc5944-2.4-o", "rfc5944-2.4-l"])
def test_reserved_bit_ignored(tester, steps):
    tester.attach("fn2")
    a = tester.agent("fn2")
    tester.advertise(a, AGENT_FLAGS["F"] | AGENT_FLAGS["r"])
    f = tester.wait_request("fn2", 2.0, dst=a.address)
    steps.record("advertisement F + reserved r bit", "a registration request to the agent",
                 f.summary() if f else "none", ok=f is not None)
    assert f is not None, "no registration request after an advertisement with the reserved bit set"


@part("MIP.MN.ADV.2", "A plain ICMP Router Advertisement (no Mobility Agent extension) is not taken for an agent",
      ["rfc5944-2.4-l"])
def test_plain_router_advertisement(tester, steps):
    from testbed.conformance.mip.ipv4 import PROTO_ICMP, build_ipv4, internet_checksum
    from testbed.conformance.mip.link import ethernet_ipv4
    import struct
    tester.attach("fn2")
    a = tester.agent("fn2")
    body = struct.pack("!BBHBBH", 9, 0, 0, 1, 2, 9) + a.address.packed + struct.pack("!i", 0)
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    tester.send_frame("fn2", ethernet_ipv4(build_ipv4(a.address, "224.0.0.1", PROTO_ICMP, body, ttl=1), a.mac,
                                           "01:00:5e:00:00:01"), "ICMP Router Advertisement without extensions")
    got = tester.collect(1.2, tester.link_request("fn2"))
    steps.record("a router advertisement without the mobility agent extension", "no registration request",
                 [f.summary() for f in got], ok=not got)
    assert not got, f"registration request(s) after a plain router advertisement: {got[0].summary()}"
    tester.advertise(a, "F")
    f = tester.wait_request("fn2", 2.0, dst=a.address)
    steps.record("then a real agent advertisement", "a registration request", f.summary() if f else "none",
                 ok=f is not None)
    assert f is not None, "no registration request after a proper agent advertisement either"


@part("MIP.MN.ADV.3", "With the R bit advertised the node registers through the agent though it has a co-located address",
      ["rfc5944-2.4.1-a", "rfc5944-3.1-b"])
def test_r_bit_through_agent(tester, steps):
    tester.colocated_request("fn1")
    a = tester.agent("fn1")
    tester.advertise(a, "RF")
    f = tester.wait_request("fn1", 2.0, dst=a.address)
    steps.record("on fn1 (co-located address available), advertisement R F", "a request to the agent",
                 f.summary() if f else "none", ok=f is not None)
    should(f is not None, "no registration request through the foreign agent that requires registration (R)")


@part("MIP.MN.ADV.4", "Without R, a node with a co-located address registers directly with its home agent",
      ["rfc5944-3.1-c"])
def test_no_r_bit_colocated(tester, steps):
    tester.colocated_request("fn1")
    a = tester.agent("fn1")
    tester.advertise(a, "F")
    got = tester.collect(1.2, tester.link_request("fn1"))
    to_agent = [f for f in got if f.ip.dst == a.address]
    steps.record("on fn1 (co-located), advertisement F without R", "requests, if any, to the home agent only",
                 [f.summary() for f in got], ok=not to_agent)
    assert not to_agent, f"a co-located node registered through the agent without R: {to_agent[0].summary()}"


@part("MIP.MN.ADV.5", "With several advertised care-of addresses the first one is registered",
      ["rfc5944-2.4-m"])
def test_first_care_of_address(tester, steps):
    tester.attach("fn2")
    a = tester.agent("fn2")
    coas = [a.address, IPv4Address("192.0.2.131")]
    tester.advertise(a, "F", coas=coas)
    f = tester.wait_request("fn2", 2.0, dst=a.address)
    steps.record(f"advertisement with care-of addresses {[str(c) for c in coas]}", f"care-of address {coas[0]}",
                 f.summary() if f else "none")
    if f is None:
        inconclusive("no registration request")
    should(f.request.care_of_address == coas[0], f"care-of address {f.request.care_of_address}, not the first")
