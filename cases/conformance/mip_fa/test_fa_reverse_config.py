"""FA: reverse tunnelling switched off or made mandatory by configuration (RFC 3024 3.4, 4.2.1).
An FA that implements reverse tunnelling but does not offer it must refuse a request with T with
code 74 (not the legacy 70); one that makes it mandatory may refuse a request without T, and then
says so with code 75. Each part restarts the FA with the configuration key its conformance
statement claims it reads (testbed.conformance.ics `mip.config.*`), and restarts it as the scenario
made it afterwards."""
from testbed.conformance.mip import parse_reply
from testbed.conformance.parts import part, should


def ask(t, steps, flags: str, what: str):
    """A request of the first mobile node (TTL 255) with `flags`; returns (mobile node, ident)."""
    mn = t.mns[0]
    t.learn_agent()
    data = t.request(mn, flags=flags)
    ident = mn.mn.pending_identification
    t.send_request(mn, data)
    steps.record(what, observed=f"identification {ident:#x}")
    return mn, ident


def outcome(t, steps, mn, ident, expect: str):
    """(relayed request or None, the FA's reply code or None)."""
    relayed = t.wait_relayed(mn, ident, 0.6)
    f = None if relayed else t.wait_reply(mn, ident, 0.4)
    code = parse_reply(f.udp.payload).code if f else None
    steps.record("at the home agent and on the link", expect,
                 f"relayed from {relayed.src}" if relayed else f.summary() if f else "nothing")
    return relayed, code


@part("MIP.FA.RTCONF.1", "An FA configured without reverse tunnelling does not advertise T and refuses a request "
      "with T with code 74", ["rfc3024-3.4-c", "rfc3024-3.4-a", "rfc3024-4.2.1-f"],
      needs=["mip.config.reverse-tunnelling-off"])
def test_reverse_tunnelling_off_gives_74(tester, steps):
    with tester.reconfigured(reverse_tunnelling=False):
        steps.record("restart the FA with reverse_tunnelling: false")
        tester.learn_agent()
        t_bit = tester.advertisement.has("T")
        steps.record("its advertisement", "no T", tester.advertisement.flag_letters, ok=not t_bit)
        should(not t_bit, "an FA configured without reverse tunnelling still advertises T")
        mn, ident = ask(tester, steps, "T", "registration request with T, IP TTL 255")
        relayed, code = outcome(tester, steps, mn, ident, "not relayed; denied with 74")
    assert relayed is None, "an FA without reverse tunnelling relayed a request that asks for one"
    assert code is not None, "the request for a reverse tunnel the FA does not offer was not answered: its " \
                             "reply must say the reverse tunnel failed (RFC 3024 3.4)"
    assert code == 74, f"denied with {code}: an FA that implements reverse tunnelling uses 74 for a reverse " \
                       "tunnel it cannot give (RFC 3024 3.4)"


@part("MIP.FA.RTCONF.2", "An FA configured to make reverse tunnelling mandatory refuses a request without T "
      "with code 75 and relays one with T", ["rfc3024-3.4-a", "rfc3024-4.2.2-a"],
      needs=["mip.config.reverse-tunnel-required", "mip.reverse-tunnel"])
def test_reverse_tunnel_required_gives_75(tester, steps):
    with tester.reconfigured(reverse_tunnel_required=True):
        steps.record("restart the FA with reverse_tunnel_required: true")
        mn, ident = ask(tester, steps, "", "registration request without T")
        relayed, code = outcome(tester, steps, mn, ident, "not relayed; denied with 75")
        mn, ident_t = ask(tester, steps, "T", "registration request with T, IP TTL 255")
        relayed_t = tester.wait_relayed(mn, ident_t, 0.6)
        steps.record("at the home agent", "relayed", f"from {relayed_t.src}" if relayed_t else "nothing",
                     ok=relayed_t is not None)
    should(relayed is None, "an FA configured to make reverse tunnelling mandatory relayed a request without T")
    if relayed is None:
        assert code is not None, "a request refused for want of T was not answered"
        assert code == 75, f"a request without T refused with {code}: 75 says the reverse tunnel is mandatory"
    assert relayed_t is not None, "with reverse tunnelling mandatory, a valid request with T was not relayed " \
                                  "(RFC 3024 4.2.2)"
