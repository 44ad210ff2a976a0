"""HA: agent advertisements on the home link (RFC 5944 2.1, 2.1.1, 2.3, 2.3.2), heard at ir on the
home subnet 10.1.1.0/24, with agent solicitations sent from there. An Ethernet home link gives no
link-layer discovery of the agent, so the home agent advertises (periodically, or at least in
answer to solicitations), with H set; its sequence numbers start at 0 after it boots and grow by
one with every advertisement, answers included.

Not tested here: the wrap of the sequence number from 0xffff to 256 (2.3.2). At the advertisement
rates an agent must keep to (2.3: rate limited, also when solicited) it takes 65,280
advertisements, hours of a part, and no configuration key an agent is known to read lets it start
anywhere but 0 after a boot (which 2.3.2 requires)."""
from testbed.conformance.mip_env import restart_iut
from testbed.conformance.parts import part, should

ADVERTISEMENT_DESTINATIONS = {"224.0.0.1", "255.255.255.255"}


def heard(t, steps, duration: float = 0.4, solicit_at=(0.0, 0.2), what: str = ""):
    """The HA's advertisements within `duration` (solicited at `solicit_at`); at least one, or FAIL:
    an agent on an Ethernet home link must advertise (2.3)."""
    got = t.home_advertisements(duration, solicit_at)
    steps.record(what or f"agent solicitations from ir to 224.0.0.2 at {list(solicit_at)} s; listen {duration} s",
                 "agent advertisements from the HA", [f"seq {a.sequence} flags {a.flag_letters} ttl {i.ttl} to {i.dst}"
                                                      for i, a in got] or "none", ok=bool(got))
    assert got, f"no agent advertisement from the home agent on its home link within {duration} s, solicited " \
                "or not: an agent that cannot be found by link-layer means must advertise (RFC 5944 2.3)"
    return got


def consecutive(seqs: list) -> bool:
    return all(b == (256 if a == 0xFFFF else a + 1) for a, b in zip(seqs, seqs[1:]))


@part("MIP.HA.ADV.1", "The HA answers an agent solicitation on its home link with an agent advertisement",
      ["rfc5944-2.3-a", "rfc5944-2.3-d", "rfc5944-2.3-f"])
def test_solicitation_answered(ha_tester, steps):
    got = ha_tester.home_advertisements(0.4, (0.0,))
    steps.record("an agent solicitation from ir (10.1.1.1) to 224.0.0.2", "an advertisement within 0.4 s",
                 [f"seq {a.sequence} to {i.dst}" for i, a in got] or "none", ok=bool(got))
    if not should(got, "no agent advertisement within 0.4 s of an agent solicitation on the home link"):
        heard(ha_tester, steps, 3.0, (), "listen 3 s more for a periodic advertisement")


@part("MIP.HA.ADV.2", "The HA's advertisements on its home link set H, and no B or R without F",
      ["rfc5944-2.3-g", "rfc5944-2.1.1-c", "rfc5944-2.1.1-d", "rfc5944-2.1.1-e", "rfc5944-2.1.1-f"])
def test_home_link_flags(ha_tester, steps):
    got = heard(ha_tester, steps)
    flags = [a.flag_letters for _, a in got]
    steps.record("flags of each advertisement", "H; B and R only with F", flags,
                 ok=all(a.has("H") and (a.has("F") or not (a.has("B") or a.has("R"))) for _, a in got))
    for _, a in got:
        assert a.has("H"), f"an advertisement of the home agent on its home link without H: {a.flag_letters}"
        assert a.has("F") or not a.has("B"), f"B (busy) without F: {a.flag_letters} (a home agent is always " \
                                             "ready to serve its mobile nodes)"
        assert a.has("F") or not a.has("R"), f"R without F: {a.flag_letters}"


@part("MIP.HA.ADV.3", "The HA's advertisements are sent with IP TTL 1, to 224.0.0.1 or 255.255.255.255 (or "
      "unicast to the soliciting node)", ["rfc5944-2.1-b", "rfc5944-2.1-c"])
def test_ttl_and_destination(ha_tester, steps):
    got = heard(ha_tester, steps)
    seen = [(i.ttl, i.dst) for i, _ in got]
    allowed = ADVERTISEMENT_DESTINATIONS | {ha_tester.home_router}
    steps.record("IP TTL and destination of each", f"TTL 1, destination in {sorted(allowed)}", seen,
                 ok=all(ttl == 1 and dst in allowed for ttl, dst in seen))
    assert all(ttl == 1 for ttl, _ in seen), f"advertisements with IP TTL other than 1: {seen}"
    assert all(dst in allowed for _, dst in seen), f"advertisement destinations {seen}"


@part("MIP.HA.ADV.4", "Each of the HA's advertisements, periodic or solicited, carries the sequence number one "
      "greater than the last", ["rfc5944-2.3.2-b"])
def test_sequence_increments(ha_tester, steps):
    got = heard(ha_tester, steps, 0.7, (0.0, 0.15, 0.3, 0.45))
    seqs = [a.sequence for _, a in got]
    steps.record("sequence numbers in the order heard", "each one more than the last (0xffff then 256)", seqs,
                 ok=len(seqs) >= 2 and consecutive(seqs))
    assert len(seqs) >= 2, f"only {len(seqs)} advertisement in 0.7 s with four solicitations"
    assert consecutive(seqs), f"sequence numbers {seqs}"


@part("MIP.HA.ADV.5", "After a reboot, the HA's first advertisement carries sequence number 0, the next ones "
      "1, 2, ...", ["rfc5944-2.3.2-a", "rfc5944-2.3.2-b"])
def test_sequence_zero_after_reboot(ha, ha_tester, steps):
    ha_tester.home_advertisements(0.0)  # the home-link socket listens from here on
    restart_iut(ha)
    got = heard(ha_tester, steps, 0.8, (0.0, 0.4),
                "reboot the HA (stop and start its role); solicitations at 0 and 0.4 s; listen 0.8 s")
    seqs = [a.sequence for _, a in got]
    # an advertisement of the agent before it stopped may still be queued: the boot starts where a
    # sequence number falls
    falls = [n for n in range(1, len(seqs)) if seqs[n] < seqs[n - 1]]
    after = seqs[falls[-1]:] if falls else seqs
    steps.record("sequence numbers since the boot", "0, 1, 2, ...", after, ok=after == list(range(len(after))))
    assert after[0] == 0, f"the first advertisement after the reboot carries {after[0]} (heard: {seqs})"
    assert after == list(range(len(after))), f"sequence numbers after the reboot: {after} (heard: {seqs})"
