"""FA: a relayed request that draws an ICMP error instead of a reply (RFC 5944 3.7.3, 3.7.2.3,
3.7.3.1). The tester's mobile node sends its request on fn1; the tester's home agent (10.1.1.2)
takes the relayed request and, instead of answering, makes an ICMP Destination Unreachable that
quotes it reach the FA: from a router on the way (the core for a network, the intranet router for
a host unreachable) or from the home agent's host (port unreachable). The FA should then deny the
request at once with the matching 'home agent unreachable' code (80-95: 80 home network, 81 home
agent host, 82 home agent port, 88 any other ICMP error); such a reply is the FA's own, with the
fields and IP/UDP headers 3.7.2.3 sets, and a reply from the home agent that comes after it
matches no pending request any more."""
import os

from testbed.conformance.mip import parse_reply
from testbed.conformance.parts import inconclusive, part, should

# ICMP Destination Unreachable code -> (what it says, who reports it, the denial code 3.7.3 points to)
NET, HOST, PORT, PROHIBITED = 0, 1, 3, 13
CASES = {
    NET: ("network unreachable", "core", 80),
    HOST: ("host unreachable", "ir", 81),
    PORT: ("port unreachable", None, 82),
    PROHIBITED: ("communication administratively prohibited", "core", 88),
}
UNREACHABLE_CODES = range(80, 96)
COMMON = ["rfc5944-3.7.3-a", "rfc5944-3.7.2.3-a", "rfc5944-3.7.2.3-d", "rfc5944-3.7.2-b"]


def relay_then_icmp(t, steps, icmp_code: int):
    """Preamble: a request relayed to the tester's HA, then the ICMP error about it. Returns (mobile
    node, identification, the relayed request as the HA saw it)."""
    mn = t.mns[0]
    t.learn_agent()
    data = t.request(mn, lifetime=123)
    ident = mn.mn.pending_identification
    t.send_request(mn, data, sport=40434)
    steps.record("registration request from UDP port 40434, lifetime 123",
                 observed=f"{len(data)} bytes, identification {ident:#x}")
    relayed = t.wait_relayed(mn, ident)
    if relayed is None:
        inconclusive(f"the FA did not relay {mn.home}'s registration request to the home agent")
    what, reporter, _ = CASES[icmp_code]
    src = t.icmp_error_about(relayed, 3, icmp_code, reporter)
    steps.record(f"instead of a reply: ICMP Destination Unreachable, {what} (3/{icmp_code}) from {src}, "
                 f"quoting the relayed request from {relayed.src}:{relayed.sport} to {relayed.dst}:{relayed.dport}")
    return mn, ident, relayed


def judge_unreachable_denial(t, steps, mn, ident, icmp_code: int):
    """The FA's reply to the mobile node after the ICMP error: should come, should carry the code
    of 3.7.3 for that error; when it comes it is a denial (64-95) with the request's fields and
    the IP/UDP headers of 3.7.2.3 (MUST)."""
    what, _, want = CASES[icmp_code]
    f = t.wait_reply(mn, ident, 1.0)
    rep = parse_reply(f.udp.payload).value if f else None
    steps.record("on the link, to the mobile node, within 1 s", f"a Registration Reply with code {want}",
                 f.summary() if f else "nothing", ok=rep is not None and rep.code == want)
    if not should(rep is not None, f"no reply to the mobile node within 1 s of an ICMP {what} about its "
                                   f"relayed request (a 'home agent unreachable' code 80-95 is due)"):
        return None
    assert 64 <= rep.code <= 95, f"the FA's reply after an ICMP {what} carries code {rep.code}, not a foreign " \
                                 "agent's denial (64-95)"
    should(rep.code in UNREACHABLE_CODES, f"code {rep.code} after an ICMP {what}: a 'home agent unreachable' "
                                          "code (80-95) is due")
    should(rep.code == want, f"code {rep.code} after an ICMP {what}: {want} is the code for it")
    got = (str(rep.home_address), str(rep.home_agent), rep.identification)
    assert got == (str(mn.home), str(t.ha.address), ident), \
        f"the denial's Home Address, Home Agent and Identification {got} are not the request's"
    headers = (str(f.ip.src), f.udp.sport, str(f.ip.dst), f.udp.dport)
    want_headers = (str(t.fa), 434, str(mn.home), 40434)
    steps.record("IP source, UDP source port, IP destination, UDP destination port", str(want_headers),
                 str(headers), ok=headers == want_headers)
    assert headers == want_headers, f"the denial's IP/UDP fields {headers}, 3.7.2.3 sets {want_headers}"
    return rep


@part("MIP.FA.UNREACH.1", "An ICMP network unreachable about the relayed request: the FA denies it with 80 "
      "(home network unreachable)", COMMON)
def test_network_unreachable_gives_80(tester, steps):
    judge_unreachable_denial(tester, steps, *relay_then_icmp(tester, steps, NET)[:2], NET)


@part("MIP.FA.UNREACH.2", "An ICMP host unreachable about the relayed request: the FA denies it with 81 "
      "(home agent host unreachable)", COMMON)
def test_host_unreachable_gives_81(tester, steps):
    judge_unreachable_denial(tester, steps, *relay_then_icmp(tester, steps, HOST)[:2], HOST)


@part("MIP.FA.UNREACH.3", "An ICMP port unreachable from the home agent's address: the FA denies the request "
      "with 82 (home agent port unreachable)", COMMON)
def test_port_unreachable_gives_82(tester, steps):
    judge_unreachable_denial(tester, steps, *relay_then_icmp(tester, steps, PORT)[:2], PORT)


@part("MIP.FA.UNREACH.4", "Another ICMP unreachable (communication administratively prohibited): the FA "
      "denies the request with 88 (home agent unreachable)", COMMON)
def test_other_unreachable_gives_88(tester, steps):
    judge_unreachable_denial(tester, steps, *relay_then_icmp(tester, steps, PROHIBITED)[:2], PROHIBITED)


@part("MIP.FA.UNREACH.5", "After the FA denied a request on an ICMP error, the home agent's late accepting "
      "reply matches no pending request: not relayed, no visitor entry", ["rfc5944-3.7.3.1-d", "rfc5944-3.7.3.1-b"])
def test_reply_after_unreachable_discarded(tester, steps):
    mn, ident, relayed = relay_then_icmp(tester, steps, PORT)
    f = tester.wait_reply(mn, ident, 1.0)
    if f is None:
        inconclusive("the FA sent no denial after the ICMP port unreachable: its request may still be pending")
    steps.record("the FA's reply on the link", "a denial", f.summary())
    tester.answer(relayed, 0)
    late = tester.wait_reply(mn, ident, 0.5)
    steps.record("the home agent's accepting reply, after the FA's denial", "silently discarded: nothing on the link",
                 late.summary() if late else "nothing", ok=late is None)
    assert late is None, "a reply that matches no pending request (the FA had denied it) was relayed"
    marker = b"fa-unreach-" + os.urandom(6).hex().encode()
    tester.tunnel_to_coa(tester.inner(mn, marker))
    got = tester.delivered(mn, marker, 0.4)
    steps.record("a datagram for the home address tunnelled to the care-of address", "not delivered (no visitor)",
                 got.summary() if got else "nothing", ok=got is None)
    assert got is None, "the late reply made the node a visitor: a tunnelled datagram was delivered to it"
