"""HA: registration accepted (RFC 5944 3.8.2.2, 3.8.3, 5.1, 5.7): codes, lifetimes, the reply's
fields and its MN-HA authenticator, security associations by SPI and peer, bindings updated."""
from testbed.conformance.mip import EXT_MN_HA_AUTH, PREFIX_SUFFIX_MD5
from testbed.conformance.mip_env import describe_check
from testbed.conformance.parts import part, should


@part("MIP.HA.REG.1", "A co-located registration with a valid MN-HA authenticator is accepted (code 0 or 1)",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.2-a", "rfc3024-4.3.2-a", "rfc5944-3.8.2.1-b"])
def test_registration_accepted(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn)
    steps.record("Registration Request (D, co-located care-of address) from r", "a reply, code 0 or 1, authentic",
                 describe_check(check), ok=bool(check and check.accepted))
    assert check is not None, "no Registration Reply"
    assert check.code in (0, 1), f"expected code 0 or 1, got {describe_check(check)}"
    assert check.authentic, "the reply's MN-HA authenticator does not verify"


@part("MIP.HA.REG.2", "The granted lifetime equals the requested one when it is within the HA's limit",
      ["rfc5944-3.4-b", "rfc5944-3.8.3.2-b", "rfc5944-3.8.2.2-e"])
def test_lifetime_as_requested(ha_tester, steps):
    mn = ha_tester.mn(lifetime=300)
    _, check = ha_tester.registered(mn, steps=steps)
    steps.record("reply lifetime for a request of 300 s (HA maximum 600 s)", "300", check.reply.lifetime,
                 ok=check.reply.lifetime == 300)
    assert check.reply.lifetime == 300, f"requested 300 s within the limit, granted {check.reply.lifetime}"


@part("MIP.HA.REG.3", "A lifetime longer than the HA allows is cut to the time the HA will serve, never longer",
      ["rfc5944-3.8.3.2-c", "rfc5944-3.4-b", "rfc5944-3.8.2.2-e", "rfc5944-3.8.3.2-d"])
def test_lifetime_too_long_reduced(ha_tester, steps):
    mn = ha_tester.mn(lifetime=1800)
    _, check = ha_tester.registered(mn, steps=steps)
    life = check.reply.lifetime
    steps.record("reply lifetime for a request of 1800 s (HA maximum 600 s)", "0 < lifetime <= 600 (SHOULD 600)",
                 life, ok=0 < life <= 600)
    assert 0 < life <= ha_tester.max_lifetime, f"expected a lifetime in 1..{ha_tester.max_lifetime}, got {life}"
    should(life == ha_tester.max_lifetime, f"the reduced lifetime should be the HA's maximum 600, got {life}")


@part("MIP.HA.REG.4", "The infinite lifetime 0xffff is not granted beyond the HA's maximum",
      ["rfc5944-3.8.3.2-c", "rfc5944-3.8.2.2-e"])
def test_infinite_lifetime_limited(ha_tester, steps):
    mn = ha_tester.mn(lifetime=0xFFFF)
    _, check = ha_tester.registered(mn, steps=steps)
    life = check.reply.lifetime
    steps.record("reply lifetime for a request of 0xffff (infinite)", "1..600", life, ok=0 < life <= 600)
    assert 0 < life <= ha_tester.max_lifetime, f"granted {life:#x} for an infinite request, HA maximum 600"


@part("MIP.HA.REG.5", "A node's own lifetime limit is what a longer request is cut to",
      ["rfc5944-3.8.3.2-d", "rfc5944-3.8.3.2-c"])
def test_per_node_lifetime_limit(ha_tester, steps):
    mn = ha_tester.mn("10.1.1.105", lifetime=300)
    _, check = ha_tester.registered(mn, steps=steps)
    life = check.reply.lifetime
    steps.record("reply lifetime for 300 s, the node's limit 20 s", "1..20 (SHOULD 20)", life, ok=0 < life <= 20)
    assert 0 < life <= 300, f"granted {life}"
    should(life == 20, f"the lifetime should be the node's maximum 20 s, got {life}")


@part("MIP.HA.REG.6", "The accepting reply echoes the request's Identification (timestamp method)",
      ["rfc5944-5.7-c", "rfc5944-3.8.3-c"])
def test_identification_echoed(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.registered(mn, steps=steps)
    steps.record("reply identification", f"{mn.pending_identification:#018x}", f"{check.reply.identification:#018x}",
                 ok=check.exact_match)
    assert check.exact_match, (f"identification {check.reply.identification:#x} is not the request's "
                               f"{mn.pending_identification:#x}")


@part("MIP.HA.REG.7", "The reply's Home Address and Home Agent fields are copied from the request",
      ["rfc5944-3.8.3.2-e", "rfc5944-3.8.3.2-h"])
def test_reply_addresses_copied(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.registered(mn, steps=steps)
    r = check.reply
    steps.record("reply home address / home agent", f"{mn.home_address} / {ha_tester.ha}",
                 f"{r.home_address} / {r.home_agent}", ok=(str(r.home_address), str(r.home_agent)) ==
                 (str(mn.home_address), ha_tester.ha))
    assert str(r.home_address) == str(mn.home_address), f"home address {r.home_address}"
    assert str(r.home_agent) == ha_tester.ha, f"home agent {r.home_agent}"


@part("MIP.HA.REG.8", "The reply carries exactly one MN-HA extension: 4-byte SPI of the node's SA, HMAC-MD5 over the reply",
      ["rfc5944-3.4-f", "rfc5944-3.5.2-a", "rfc5944-3.8.3.3-b", "rfc5944-5.1-a", "rfc5944-3.5.1-d",
       "rfc5944-1.6-a", "rfc5944-3.5.1-a", "rfc3024-4-b", "rfc3024-4-a", "rfc5944-3.2-b"])
def test_reply_mn_ha_extension(ha_tester, steps):
    mn = ha_tester.mn()
    item, check = ha_tester.registered(mn, steps=steps)
    exts = check.reply.find_all(EXT_MN_HA_AUTH)
    desc = [(e.spi, len(e.authenticator)) for e in exts]
    steps.record("MN-HA extensions of the reply", f"one, SPI {mn.sa.spi}, 16-byte HMAC-MD5 authenticator",
                 desc, ok=len(exts) == 1 and exts[0].spi == mn.sa.spi and check.authentic)
    assert len(exts) == 1, f"expected one MN-HA extension, got {desc}"
    assert exts[0].spi == mn.sa.spi, f"SPI {exts[0].spi}, the SA's is {mn.sa.spi}"
    assert len(exts[0].authenticator) == 16, f"authenticator of {len(exts[0].authenticator)} bytes"
    assert check.authentic, "the HMAC-MD5 authenticator does not verify"


@part("MIP.HA.REG.9", "Without a foreign agent the MN-HA extension is the reply's last extension",
      ["rfc5944-3.8.3.3-a", "rfc5944-3.2-c"])
def test_mn_ha_last(ha_tester, steps):
    mn = ha_tester.mn()
    item, check = ha_tester.registered(mn, steps=steps)
    exts = check.reply.extensions
    types = [getattr(e, "type", None) for e in exts]
    last = exts[-1] if exts else None
    ends = last is not None and last.type == EXT_MN_HA_AUTH and last.offset + 6 + len(last.authenticator) == len(item.data)
    steps.record("extension order of the reply", "MN-HA last, nothing after it", types, ok=ends)
    assert ends, f"the MN-HA extension is not the last thing in the reply: {types}"


@part("MIP.HA.REG.10", "A key of arbitrary binary bytes (00, ff, 7f, 80...) authenticates both ways",
      ["rfc5944-5.1-c"])
def test_binary_key(ha_tester, steps):
    mn = ha_tester.mn("10.1.1.101")
    _, check = ha_tester.register(mn)
    steps.record("register 10.1.1.101 (key 00ff7f80...)", "accepted, authentic", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.11", "The same SPI with two nodes selects each node's own key (SA by SPI and peer)",
      ["rfc5944-3.2-a", "rfc5944-3.5.1-b"])
def test_same_spi_two_peers(ha_tester, steps):
    a, b = ha_tester.mn("10.1.1.100"), ha_tester.mn("10.1.1.103")
    _, ca = ha_tester.register(a)
    _, cb = ha_tester.register(b)
    steps.record("register 10.1.1.100 and 10.1.1.103, both SPI 1000, each with its key", "both accepted",
                 f"{describe_check(ca)} | {describe_check(cb)}", ok=bool(ca and ca.accepted and cb and cb.accepted))
    assert ca is not None and ca.accepted, f"10.1.1.100: {describe_check(ca)}"
    assert cb is not None and cb.accepted, f"10.1.1.103: {describe_check(cb)}"
    _, cross = ha_tester.register(b, timeout=0.5, auth={"key": a.sa.key})
    steps.record("10.1.1.103 signed with 10.1.1.100's key (same SPI)", "not accepted", describe_check(cross),
                 ok=not (cross and cross.reply and cross.reply.code in (0, 1)))
    assert not (cross and cross.reply and cross.reply.code in (0, 1)), "accepted with another peer's key"


@part("MIP.HA.REG.12", "An SA with a large SPI (4096) authenticates the request and the reply",
      ["rfc5944-3.5.1-b", "rfc5944-1.6-a"])
def test_large_spi(ha_tester, steps):
    mn = ha_tester.mn("10.1.1.102")
    _, check = ha_tester.register(mn)
    steps.record("register 10.1.1.102 with SPI 4096", "accepted, reply signed with SPI 4096",
                 describe_check(check), ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)
    assert check.reply.find(EXT_MN_HA_AUTH).spi == 4096


@part("MIP.HA.REG.13", "A new registration with another care-of address moves the binding: data goes there",
      ["rfc5944-3.8.1-c", "rfc5944-3.8.2.2-a"])
def test_reregistration_moves_binding(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn, coa=ha_tester.fa_address)
    steps.record(f"re-register with care-of address {ha_tester.fa_address} (ar1)", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)
    _, got = ha_tester.data_to_coa(str(mn.home_address), ha_tester.fa_place)
    steps.record("datagram from h to the home address", f"tunnelled to {ha_tester.fa_address}",
                 got.summary() if got else "nothing", ok=got is not None)
    assert got is not None, f"nothing tunnelled to the new care-of address {ha_tester.fa_address}"
    assert ha_tester.nothing_tunnelled(str(mn.home_address), ha_tester.mn_place, wait=0.3,
                                       marker_home=ha_tester.marker_binding()), \
        "the old care-of address still gets the data"


@part("MIP.HA.REG.14", "A re-registration with a fresh identification is accepted and renews the binding",
      ["rfc5944-3.8.2.2-a", "rfc5944-5.7.1-f"])
def test_reregistration_accepted(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps)
    _, check = ha_tester.register(mn)
    steps.record("the same registration again, a later identification", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.15", "A registration with the B bit is accepted by an HA that does not forward broadcasts (B ignored)",
      ["rfc5944-3.8.2-c"])
def test_b_bit_ignored_or_served(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="BD")
    steps.record("Registration Request with B and D", "accepted (0 or 1)", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, f"a request with B must not be refused: {describe_check(check)}"


@part("MIP.HA.REG.16", "The S bit (simultaneous bindings) is accepted with code 0, or 1 where they are not supported",
      ["rfc5944-3.8.3.2-a", "rfc5944-3.8.2.2-a"])
def test_s_bit(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="SD")
    steps.record("Registration Request with S and D", "accepted, code 0 or 1", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.17", "With S and code 0, both care-of addresses get the data; with code 1 the newer one does",
      ["rfc5944-3.8.2.2-a", "rfc5944-3.8.1-c"])
def test_simultaneous_bindings_data(ha_tester, steps):
    mn = ha_tester.mn()
    ha_tester.registered(mn, steps=steps, flags="SD")
    _, check = ha_tester.register(mn, coa=ha_tester.fa_address, flags="SD")
    steps.record(f"second registration with S, care-of {ha_tester.fa_address}", "accepted (0 or 1)",
                 describe_check(check), ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)
    home = str(mn.home_address)
    packet, marker = ha_tester.send_to_home(home)
    new = ha_tester.tunnelled_at(ha_tester.fa_place, marker, 1.0)
    if check.code == 1:  # nothing at r: a silence window ended by a marker (testbed/conformance/inbox.py)
        old = not ha_tester.not_tunnelled(marker, ha_tester.mn_place, 0.3, marker_home=ha_tester.marker_binding())
    else:
        old = ha_tester.tunnelled_at(ha_tester.mn_place, marker, 1.0)
    steps.record("datagram from h to the home address (code 1: then one to a node bound at r, the wait for the "
                 "old care-of address ends once that one is tunnelled)", "code 0: both care-of addresses; code 1: the newer",
                 f"new coa: {bool(new)}, old coa: {bool(old)}", ok=bool(new) and (bool(old) == (check.code == 0)))
    assert new is not None, "the newest care-of address got nothing"
    if check.code == 0:
        assert old, "code 0 (simultaneous bindings kept) but the first care-of address got nothing"
    else:
        assert not old, "code 1 (no simultaneous bindings) but the old care-of address still gets data"


@part("MIP.HA.REG.18", "A Registration Request with the reserved r bit set is answered: accepted (ignored) or code 134",
      ["rfc5944-3.8.2.3-b"])
def test_reserved_r_bit(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="Dr")
    steps.record("Registration Request with the reserved r bit", "0/1 (3.3: ignored) or 134 (3.8.2.3)",
                 describe_check(check), ok=bool(check and check.code in (0, 1, 134)))
    assert check is not None and check.code in (0, 1, 134), describe_check(check)
    assert check.authentic, "the reply is not authentic"


@part("MIP.HA.REG.19", "A Registration Request with the reserved x bit set is answered: accepted (ignored) or code 134",
      ["rfc5944-3.8.2.3-b"])
def test_reserved_x_bit(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="Dx")
    steps.record("Registration Request with the reserved x bit", "0/1 (3.3: ignored) or 134 (3.8.2.3)",
                 describe_check(check), ok=bool(check and check.code in (0, 1, 134)))
    assert check is not None and check.code in (0, 1, 134), describe_check(check)
    assert check.authentic, "the reply is not authentic"


@part("MIP.HA.REG.20", "A timestamp 3 s off the HA's clock is within the tolerance and accepted",
      ["rfc5944-5.7.1-a", "rfc5944-5.7-a"])
def test_timestamp_tolerance(ha_tester, steps):
    mn = ha_tester.mn(clock_offset=-3.0)
    _, check = ha_tester.register(mn)
    steps.record("Registration Request with a timestamp 3 s behind", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    should(check is not None and check.accepted, f"a timestamp 3 s off should be accepted: {describe_check(check)}")


@part("MIP.HA.REG.21", "An unknown extension type 128-255 before the MN-HA is skipped; the request is accepted",
      ["rfc5944-1.8-b"])
def test_skippable_extension_before(ha_tester, steps):
    from testbed.conformance.mip import Extension
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, extensions_before=[Extension(200, b"skip-me!")])
    steps.record("request with an unknown extension type 200 before the MN-HA", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.22", "An unknown extension type 128-255 after the MN-HA is skipped; the request is accepted",
      ["rfc5944-1.8-b"])
def test_skippable_extension_after(ha_tester, steps):
    from testbed.conformance.mip import Extension
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, extensions_after=[Extension(201, b"\x01\x02")])
    steps.record("request with an unknown extension type 201 after the MN-HA", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.23", "The T bit (reverse tunnel) is accepted from a node with a private home address",
      ["rfc3024-3.2-a", "rfc3024-8-j", "rfc3024-4.3.1-c"], needs=["mip.reverse-tunnel"])
def test_t_bit_accepted(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, flags="DT")
    steps.record("Registration Request with D and T (home address 10.1.1.100)", "accepted", describe_check(check),
                 ok=bool(check and check.accepted))
    assert check is not None and check.accepted, describe_check(check)


@part("MIP.HA.REG.24", "Four nodes registered at once all get their own data at their care-of addresses",
      ["rfc5944-3.8.1-c", "rfc5944-4.2.3-a"])
def test_several_nodes(ha_tester, steps):
    homes = ["10.1.1.100", "10.1.1.101", "10.1.1.102", "10.1.1.103"]
    for h in homes:
        ha_tester.registered(ha_tester.mn(h), steps=steps)
    missing = []
    for h in homes:
        _, got = ha_tester.data_to_coa(h)
        if got is None or not got.inner[16:20] == bytes(map(int, h.split("."))):
            missing.append(h)
    steps.record("a datagram from h to each home address", "each tunnelled to r", f"missing: {missing}",
                 ok=not missing)
    assert not missing, f"nothing tunnelled for {missing}"


@part("MIP.HA.REG.25", "An authenticator computed with keyed MD5 (prefix+suffix) does not pass the HMAC-MD5 SA",
      ["rfc5944-3.5.1-b"])
def test_wrong_algorithm_refused(ha_tester, steps):
    mn = ha_tester.mn()
    _, check = ha_tester.register(mn, timeout=0.5, auth={"algorithm": PREFIX_SUFFIX_MD5})
    steps.record("request authenticated with keyed MD5 prefix+suffix (the SA is HMAC-MD5)", "not accepted",
                 describe_check(check), ok=not (check and check.reply and check.reply.code in (0, 1)))
    assert not (check and check.reply and check.reply.code in (0, 1)), "accepted with the wrong algorithm"
