"""FA: a request naming the FA's own address as its home agent (RFC 5944 3.7.2). In a module of its
own: an FA that forwards such a request to itself may keep doing so, and its world goes with it."""
from testbed.conformance.mip import parse_reply
from testbed.conformance.parts import part


@part("MIP.FA.SELF.1", "A request whose Home Agent field is the FA's own address is not forwarded again: the "
      "FA serves it as a home agent or refuses it with 194", ["rfc5944-3.7.2-c"])
def test_own_address_as_home_agent(tester, steps):
    mn = tester.mns[0]
    tester.learn_agent()
    data = tester.request(mn, home_agent=str(tester.fa))
    ident = mn.mn.pending_identification
    tester.send_request(mn, data)
    f = tester.wait_reply(mn, ident, 1.0)
    code = parse_reply(f.udp.payload).code if f else None
    steps.record(f"request with Home Agent {tester.fa} (the FA itself)", "code 194 (or an HA's answer)",
                 f.summary() if f else "nothing")
    assert f is not None, "no answer to a request naming the FA as home agent"
    assert code == 194 or code in (0, 1) or code >= 128, f"code {code}"
    tester.drain()
    echo = tester.collect(0.5, lambda i: getattr(i, "udp", None) is not None and i.udp.payload[:1] == b"\x03")
    steps.record("0.5 s more on the link", "no further reply (no loop)", len(echo), ok=not echo)
    assert not echo, f"{len(echo)} more replies: the request goes round"
