"""MN: the Registration Request as sent (RFC 5944 3.3, 3.5, 3.6.1, 5.7; RFC 3024 3.2; RFC 3519 4.4).
Through a foreign agent on fn2 (the tester's advertisement: F, care-of address 192.0.2.129) unless
a part says co-located (fn1: 192.0.2.100, directly to the home agent 10.1.1.2)."""
from ipaddress import IPv4Address

from testbed.conformance.mip.auth import EXT_MN_HA_AUTH
from testbed.conformance.mip.messages import B, D, G, M, EXT_UDP_TUNNEL_REQUEST, identification_time, flag_letters
from testbed.conformance.parts import part, should

FA_COA = IPv4Address("192.0.2.129")


def _flags(req) -> str:
    return flag_letters(req.flags) or "-"


@part("MIP.MN.REG.1", "The request through a foreign agent goes to the advertisement's source address and link-layer address, UDP port 434",
      ["rfc5944-3.6.1.1-f", "rfc5944-3.6.1.1-g", "rfc5944-3.1-a", "rfc5944-1.7-c"])
def test_request_to_agent(tester, steps):
    f, req = tester.fa_request("fn2")
    a = tester.agent("fn2")
    steps.record(f"advertisement from {a.address} ({a.mac})", f"request to {a.address}:434 at {a.mac}", f.summary(),
                 ok=f.ip.dst == a.address and f.dst_mac == a.mac and f.udp.dport == 434)
    assert f.ip.dst == a.address, f"request to {f.ip.dst}, expected the advertisement's source {a.address}"
    assert f.dst_mac == a.mac, f"request sent to link-layer address {f.dst_mac}, the advertisement came from {a.mac}"
    assert f.udp.dport == 434, f"request to UDP port {f.udp.dport}"


@part("MIP.MN.REG.2", "A request to the foreign agent has IP TTL 255", ["rfc3024-3.2-b", "rfc3024-4.1.1-a", "rfc3024-6.1-a"])
def test_request_ttl_255(tester, steps):
    f, req = tester.fa_request("fn2", "FT")
    steps.record("advertisement F T", "request with TTL 255", f.summary(), ok=f.ip.ttl == 255)
    assert f.ip.ttl == 255, f"request to the foreign agent with TTL {f.ip.ttl}, must be 255"


@part("MIP.MN.REG.3", "A request through a foreign agent has the home address as IP source", ["rfc5944-3.6.1.1-c"])
def test_request_source_home(tester, steps):
    f, req = tester.fa_request("fn2")
    steps.record("request through the agent", f"IP source {tester.home}", f.summary(), ok=f.ip.src == tester.home)
    assert f.ip.src == tester.home, f"IP source {f.ip.src}, expected the home address {tester.home}"


@part("MIP.MN.REG.4", "Home Address, Home Agent and Care-of Address fields carry the home address, the home agent and the advertised care-of address",
      ["rfc5944-3.6.1.2-i", "rfc5944-3.6.1.2-k", "rfc5944-3.6.1.2-n", "rfc5944-3.6.1-a"])
def test_request_fields(tester, steps):
    f, req = tester.fa_request("fn2")
    got = (req.home_address, req.home_agent, req.care_of_address)
    want = (tester.home, tester.ha_address, FA_COA)
    steps.record("request through the agent", f"home {want[0]}, HA {want[1]}, CoA {want[2]}",
                 f"home {got[0]}, HA {got[1]}, CoA {got[2]}", ok=got == want)
    assert got == want, f"fields {got}, expected {want}"


@part("MIP.MN.REG.5", "The D bit is clear when a foreign agent's care-of address is registered", ["rfc5944-3.6.1.2-b"])
def test_no_d_with_fa(tester, steps):
    f, req = tester.fa_request("fn2")
    steps.record("request through the agent", "D clear", f"flags {_flags(req)}", ok=not req.flags & D)
    assert not req.flags & D, f"D set in a request for a foreign agent care-of address (flags {_flags(req)})"


@part("MIP.MN.REG.6", "The B bit is clear (the node cannot take broadcasts through the agent's tunnel)", ["rfc5944-3.6.1.2-f"])
def test_no_b_with_fa(tester, steps):
    f, req = tester.fa_request("fn2")
    steps.record("request through the agent", "B clear", f"flags {_flags(req)}", ok=not req.flags & B)
    assert not req.flags & B, f"B set through a foreign agent (flags {_flags(req)})"


@part("MIP.MN.REG.7", "M and G are not requested through an agent that advertises neither",
      ["rfc5944-3.6.1.2-g"])
def test_no_m_g_unadvertised(tester, steps):
    f, req = tester.fa_request("fn2", "F")
    steps.record("advertisement F (no M, no G)", "M and G clear", f"flags {_flags(req)}", ok=not req.flags & (M | G))
    assert not req.flags & (M | G), f"M or G requested from an agent that advertises neither (flags {_flags(req)})"


@part("MIP.MN.REG.8", "The requested lifetime is no longer than the advertised registration lifetime",
      ["rfc5944-3.6.1.2-h"])
def test_lifetime_within_advertised(tester, steps):
    f, req = tester.fa_request("fn2", registration_lifetime=120)
    steps.record("advertisement with registration lifetime 120 s", "lifetime <= 120", f"lifetime {req.lifetime}",
                 ok=0 < req.lifetime <= 120)
    should(req.lifetime <= 120, f"requested lifetime {req.lifetime} s, the agent advertises 120 s")


@part("MIP.MN.REG.9", "The request carries a valid Mobile-Home Authentication extension (configured SPI, HMAC-MD5)",
      ["rfc5944-3.3-b", "rfc5944-3.2-b", "rfc5944-3.5.1-a", "rfc5944-3.5.1-d", "rfc5944-5.1-a", "rfc5944-1.6-a",
       "rfc5944-3.5.2-a", "rfc5944-3.6.1.3-b", "rfc3024-4-b"])
def test_mn_ha_valid(tester, steps):
    f, req = tester.fa_request("fn2")
    found = req.find_all(EXT_MN_HA_AUTH)
    ok = req.verify(f.udp.payload, tester.sa.key, EXT_MN_HA_AUTH, tester.sa.spi)
    steps.record("request through the agent", f"one MN-HA extension, SPI {tester.sa.spi}, HMAC-MD5 verifies",
                 f"{len(found)} MN-HA, SPI {[e.spi for e in found]}, verifies {ok}", ok=ok)
    assert len(found) == 1, f"{len(found)} Mobile-Home Authentication extensions"
    assert found[0].spi == tester.sa.spi, f"SPI {found[0].spi}, configured {tester.sa.spi}"
    assert ok, "the MN-HA authenticator does not verify with the configured key (HMAC-MD5)"


@part("MIP.MN.REG.10", "Without an MN-FA association the Mobile-Home Authentication extension is the last one",
      ["rfc5944-3.6.1.3-a", "rfc5944-3.2-c", "rfc5944-3.3-c"])
def test_mn_ha_last(tester, steps):
    f, req = tester.fa_request("fn2")
    types = [e.type for e in req.extensions]
    steps.record("request through the agent", "extensions end with MN-HA (32)", f"extension types {types}",
                 ok=bool(types) and types[-1] == EXT_MN_HA_AUTH)
    assert types and types[-1] == EXT_MN_HA_AUTH, f"extension types {types}: MN-HA must come last"


@part("MIP.MN.REG.11", "No UDP Tunnel Request extension when a foreign agent's care-of address is registered",
      ["rfc3519-4.4-a"])
def test_no_udp_tunnel_request_with_fa(tester, steps):
    f, req = tester.fa_request("fn2")
    types = [e.type for e in req.extensions]
    steps.record("request through the agent", "no extension 144", f"extension types {types}",
                 ok=EXT_UDP_TUNNEL_REQUEST not in types)
    assert EXT_UDP_TUNNEL_REQUEST not in types, "a UDP Tunnel Request extension with a foreign agent care-of address"


@part("MIP.MN.REG.12", "The identification is an NTP timestamp of the current time", ["rfc5944-5.7.1-b", "rfc5944-5.7-a"])
def test_identification_timestamp(tester, steps):
    f, req = tester.fa_request("fn2")
    stamp = identification_time(req.identification)
    skew = stamp - f.time
    steps.record("request through the agent", "an NTP timestamp within 5 s of now",
                 f"identification {req.identification:#018x} = {stamp:.3f}, {skew:+.3f} s", ok=abs(skew) < 5)
    assert abs(skew) < 5, f"identification {req.identification:#x} is {skew:+.1f} s from now: not a timestamp"


@part("MIP.MN.REG.13", "A retransmitted request has a new, greater identification",
      ["rfc5944-5.7.1-d", "rfc5944-5.7-e"])
def test_identification_increases(tester, steps):
    f, req = tester.fa_request("fn2")
    again = tester.wait_request("fn2", 1.6)
    steps.record("no answer to the request", "a retransmission with a greater identification",
                 f"{req.identification:#x} then {again.request.identification:#x}" if again else "no retransmission",
                 ok=again is not None and again.request.identification > req.identification)
    assert again is not None, "no retransmission within 1.6 s of an unanswered request"
    assert again.request.identification > req.identification, \
        f"identification {again.request.identification:#x} not greater than {req.identification:#x}"


@part("MIP.MN.REG.14", "The request's UDP checksum is present and right", ["rfc5944-3.1-d"])
def test_request_udp_checksum(tester, steps):
    f, req = tester.fa_request("fn2")
    steps.record("request through the agent", "a nonzero, right UDP checksum",
                 f"checksum {f.udp.checksum:#06x} ({f.udp.checksum_state})", ok=f.udp.checksum_state == "right")
    should(f.udp.checksum_state == "right", f"UDP checksum {f.udp.checksum_state}")


@part("MIP.MN.REG.15", "A co-located registration goes from the care-of address straight to the home agent's unicast address",
      ["rfc5944-3.1-c", "rfc5944-3.6.1.1-a", "rfc5944-3.6.1.1-h", "rfc5944-3.6.1.2-n"])
def test_colocated_addresses(tester, steps):
    f, at = tester.colocated_request("fn1")
    req = f.request
    coa = IPv4Address("192.0.2.100")
    steps.record("attach to fn1 (co-located 192.0.2.100)", f"{coa} -> {tester.ha_address}, CoA field {coa}",
                 f.summary(), ok=(f.ip.src, f.ip.dst, req.care_of_address) == (coa, tester.ha_address, coa))
    assert f.ip.src == coa, f"IP source {f.ip.src}, expected the co-located care-of address {coa}"
    assert f.ip.dst == tester.ha_address, f"IP destination {f.ip.dst}, expected the home agent"
    assert req.care_of_address == coa, f"Care-of Address field {req.care_of_address}"


@part("MIP.MN.REG.16", "A co-located registration sets the D bit", ["rfc5944-3.6.1.2-a"])
def test_colocated_d_bit(tester, steps):
    f, at = tester.colocated_request("fn1")
    req = f.request
    steps.record("co-located request", "D set", f"flags {_flags(req)}", ok=bool(req.flags & D))
    should(req.flags & D, f"D clear in a co-located registration (flags {_flags(req)})")
