"""HA: reverse tunnels (RFC 3024 4.3, RFC 5944 4.2.3): IP-in-IP from the care-of address to the
HA, decapsulated and forwarded to the correspondent h; what does not match a binding is
silently discarded."""
from testbed.conformance.mip.tunnels import gre_encapsulate, ipip_encapsulate
from testbed.conformance.mip_env import describe_check, reconfigured
from testbed.conformance.parts import part, should


def _reverse(ha_tester, steps, what, outer_src=None, home=None, ttl=64, send=True, encap=ipip_encapsulate,
             place=None):
    home = home or ha_tester.homes[0]
    inner, marker = ha_tester.inner_from_home(home, ttl=ttl)
    place = place or ha_tester.mn_place
    pkt = encap(inner, outer_src or place.address, ha_tester.ha, forwarding=False)
    ha_tester.send_packet(pkt, place)
    return marker


def _delivered(ha_tester, steps, marker, what, expect=True, timeout=None, marker_home=None):
    """Whether the datagram carrying `marker` reaches h; not expected and with `marker_home` (a node
    bound at r with T), a valid reverse tunnel of it follows and the wait ends once that one is
    delivered (a silence window ended by a marker: testbed/conformance/inbox.py)."""
    if expect:
        got = ha_tester.at_correspondent(marker, timeout or 1.0)
    else:
        got = not ha_tester.not_at_correspondent(marker, timeout or 0.4, marker_home)
        what += f" (then a valid reverse tunnel of {marker_home}: the wait ends once h has it)" if marker_home else ""
    steps.record(what, "delivered to h" if expect else "not delivered to h", "delivered" if got else "nothing",
                 ok=bool(got) == expect)
    return got or None


@part("MIP.HA.REV.1", "A reverse-tunnelled datagram from the care-of address is decapsulated and forwarded to its destination",
      ["rfc3024-4.3.2-d", "rfc5944-4.2.3-f", "rfc5944-4.1-a"], needs=["mip.reverse-tunnel"])
def test_reverse_delivered(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "")
    got = _delivered(ha_tester, steps, marker, "IP-in-IP r->HA, inner home->h")
    assert got is not None, "the reverse-tunnelled datagram did not reach h"


@part("MIP.HA.REV.2", "The decapsulated datagram reaches the correspondent with its source the home address and TTL lowered by forwarding",
      ["rfc3024-4.3.2-d"], needs=["mip.reverse-tunnel"])
def test_reverse_inner_fields(ha_tester, steps):
    from testbed.conformance.mip.ipv4 import parse_ipv4
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "", ttl=64)
    got = _delivered(ha_tester, steps, marker, "IP-in-IP r->HA, inner home->h TTL 64")
    assert got is not None, "nothing delivered"
    p = parse_ipv4(got.data, strict_length=False).value
    steps.record("the datagram at h", "source home address, TTL below 64", f"{p.src} ttl {p.ttl}",
                 ok=str(p.src) == str(mn.home_address) and p.ttl < 64)
    assert str(p.src) == str(mn.home_address), f"source {p.src}"
    assert p.ttl < 64, f"TTL {p.ttl}: not decremented by the routers on the way"


@part("MIP.HA.REV.3", "A reverse-tunnelled datagram from an outer source that is not the care-of address is discarded",
      ["rfc3024-4.3.2-b", "rfc3024-4.3.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_wrong_outer_source(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "", place=ha_tester.fa_place)
    got = _delivered(ha_tester, steps, marker, f"IP-in-IP from {ha_tester.fa_address} (not the care-of address)",
                     expect=False, marker_home=str(mn.home_address))
    assert got is None, "a reverse tunnel from another outer source was decapsulated and forwarded"
    ok = _delivered(ha_tester, steps, _reverse(ha_tester, steps, ""), "the same from the care-of address")
    assert ok is not None, "the HA does not forward a valid reverse tunnel either"


@part("MIP.HA.REV.4", "A reverse-tunnelled datagram whose inner source has no binding is discarded",
      ["rfc3024-4.3.2-b", "rfc3024-4.3.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_unbound_inner_source(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "", home="10.1.1.101")
    got = _delivered(ha_tester, steps, marker, "IP-in-IP from r, inner source 10.1.1.101 (not registered)",
                     expect=False, marker_home=str(mn.home_address))
    assert got is None, "a reverse tunnel for a home address without binding was forwarded"


@part("MIP.HA.REV.5", "A reverse-tunnelled datagram without any registration is discarded",
      ["rfc3024-4.3.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_without_binding(ha_tester, steps):
    marker = _reverse(ha_tester, steps, "")
    got = _delivered(ha_tester, steps, marker, "IP-in-IP from r, no binding", expect=False,
                     marker_home=ha_tester.marker_binding("DT"))
    assert got is None, "a reverse tunnel without a binding was forwarded"


@part("MIP.HA.REV.6", "After a deregistration reverse-tunnelled datagrams are discarded",
      ["rfc3024-4.3.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_after_deregistration(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    ha_tester.register(mn, lifetime=0)
    marker = _reverse(ha_tester, steps, "")
    got = _delivered(ha_tester, steps, marker, "IP-in-IP from r after the deregistration", expect=False,
                     marker_home=ha_tester.marker_binding("DT"))
    assert got is None, "a reverse tunnel of a deregistered node was forwarded"


@part("MIP.HA.REV.7", "A reverse-tunnelled inner datagram with TTL 0 is discarded after decapsulation",
      ["rfc2003-3.1-d"], needs=["mip.reverse-tunnel"])
def test_reverse_inner_ttl_zero(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "", ttl=0)
    got = _delivered(ha_tester, steps, marker, "IP-in-IP from r, inner TTL 0", expect=False,
                     marker_home=str(mn.home_address))
    assert got is None, "an inner datagram with TTL 0 was forwarded"


@part("MIP.HA.REV.8", "A reverse tunnel in an encapsulation that was not negotiated (GRE) is discarded",
      ["rfc3024-4.3.2-c"], needs=["mip.reverse-tunnel"])
def test_reverse_unnegotiated_encapsulation(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="DT")
    marker = _reverse(ha_tester, steps, "", encap=gre_encapsulate)
    got = _delivered(ha_tester, steps, marker, "GRE from r (IP-in-IP negotiated)", expect=False,
                     marker_home=str(mn.home_address))
    assert got is None, "a GRE reverse tunnel was forwarded although IP-in-IP was negotiated"


def _reconfigured_pair(ha, ha_tester, steps, config: dict, refused: str, want: int, accepted: str):
    """The HA restarted with `config`: a co-located request with flags `refused` (expected: code
    `want`) and one of another node with flags `accepted` (expected: accepted). Returns the checks."""
    with reconfigured(ha, **config):
        steps.record("restart the HA with " + ", ".join(f"{k}: {str(v).lower()}" for k, v in config.items()))
        checks = []
        for home, flags, expect in ((ha_tester.homes[0], refused, f"denied with {want}"),
                                    (ha_tester.homes[1], accepted, "accepted")):
            _, check = ha_tester.register(ha_tester.mn(home), flags=flags)
            steps.record(f"co-located request with flags {flags}", expect, describe_check(check),
                         ok=check is not None and (check.code == want if expect != "accepted" else check.code in (0, 1)))
            checks.append(check)
    return checks


@part("MIP.HA.REV.9", "An HA configured without reverse tunnelling refuses a request with T with code 137, "
      "and accepts one without T", ["rfc3024-3.4-c", "rfc3024-3.4-a", "rfc3024-4.3.1-b"],
      needs=["mip.config.reverse-tunnelling-off"])
def test_reverse_tunnelling_off_gives_137(ha, ha_tester, steps):
    check, plain = _reconfigured_pair(ha, ha_tester, steps, {"reverse_tunnelling": False}, "DT", 137, "D")
    assert check is not None, "a request for a reverse tunnel the HA does not offer was not answered: its reply " \
                              "must say the reverse tunnel failed (RFC 3024 3.4)"
    assert check.code == 137, f"denied with {check.code}: an HA that implements reverse tunnelling uses 137 " \
                              "(RFC 3024 3.4)"
    assert check.authentic, "the 137 reply does not carry a valid MN-HA authenticator"
    assert plain is not None and plain.code in (0, 1), f"a request without T was not accepted: {describe_check(plain)}"


@part("MIP.HA.REV.10", "An HA configured to make reverse tunnelling mandatory refuses a request without T with "
      "code 138, and accepts one with T", ["rfc3024-3.4-a", "rfc3024-3.2-a"],
      needs=["mip.config.reverse-tunnel-required", "mip.reverse-tunnel"])
def test_reverse_tunnel_required_gives_138(ha, ha_tester, steps):
    check, with_t = _reconfigured_pair(ha, ha_tester, steps, {"reverse_tunnel_required": True}, "D", 138, "DT")
    should(check is None or check.code not in (0, 1),
           "an HA configured to make reverse tunnelling mandatory accepted a request without T")
    if check is not None and check.code not in (0, 1):
        assert check.code == 138, f"a request without T refused with {check.code}: 138 says the reverse tunnel " \
                                  "is mandatory"
    assert with_t is not None and with_t.code in (0, 1), \
        f"with reverse tunnelling mandatory, a valid request with T was not accepted: {describe_check(with_t)}"
