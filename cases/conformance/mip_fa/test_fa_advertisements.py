"""FA: agent advertisements and answers to solicitations (RFC 5944 2.1, 2.3, 3.7), seen on the
visited link fn1 from r's interface. The configuration the FA was started with (scenario
conformance-fa) says what its advertisements must claim: F (and no H: no home agent on this link),
R, not B, T (reverse tunnelling), G (GRE) and no M (no minimal encapsulation)."""
from ipaddress import IPv4Address

from testbed.conformance.parts import part, should

ALL_SYSTEMS, BROADCAST = IPv4Address("224.0.0.1"), IPv4Address("255.255.255.255")


def periodic(t, steps, count: int = 1, timeout: float = 3.5):
    """`count` advertisements the FA sends on its own (no solicitation sent)."""
    t.drain()
    got = []
    while len(got) < count:
        f = t.wait_frame(t.is_advertisement, timeout)
        if f is None:
            break
        got.append(f)
    steps.record(f"listen on fn1 for {count} advertisement(s), no solicitation", f"{count} ICMP type 9 with the "
                 "mobility agent extension", "; ".join(x.summary() for x in got) or "none", ok=len(got) == count)
    assert len(got) == count, f"expected {count} periodic agent advertisement(s) within {timeout} s, saw {len(got)}"
    return got


def solicited(t, steps, timeout: float = 3.5):
    """An advertisement of the FA after a solicitation (RFC 5944 2.3: agents answer Agent
    Solicitations with Agent Advertisements; 2.4: a mobile node solicits rather than waits), or the
    next periodic one if the answer is rate limited: for parts about what every advertisement
    carries, periodic or solicited (not for those about unsolicited ones)."""
    t.drain()
    t.solicit(t.mns[0])
    f = t.wait_frame(t.is_advertisement, timeout)
    steps.record("agent solicitation on fn1, then the next advertisement", "ICMP type 9 with the mobility agent "
                 "extension", f.summary() if f else "none", ok=f is not None)
    assert f is not None, f"no agent advertisement within {timeout} s of a solicitation"
    return f


def adv(f):
    from testbed.conformance.mip import parse_advertisement
    return parse_advertisement(f.icmp, require_checksum=False).value


def expected_flags(cfg) -> dict:
    enc = cfg.get("encapsulations", ["ipip", "minimal", "gre"])
    return {"F": True, "H": False, "R": cfg.get("registration_required", True), "B": cfg.get("busy", False),
            "T": cfg.get("reverse_tunnelling", True), "M": "minimal" in enc, "G": "gre" in enc,
            "U": cfg.get("behind_nat", False)}


@part("MIP.FA.ADV.1", "The FA sends agent advertisements on its own: ICMP router advertisements (type 9) with "
      "a mobility agent advertisement extension and a right checksum", ["rfc5944-2.3-a", "rfc5944-3.7-a"])
def test_periodic_advertisement(tester, steps):
    f = periodic(tester, steps)[0]
    a = adv(f)
    assert f.icmp[0] == 9 and a is not None, f.summary()
    assert a.checksum_ok, "the advertisement's ICMP checksum is wrong"


@part("MIP.FA.ADV.2", "Every agent advertisement is sent with IP TTL 1", ["rfc5944-2.1-b"])
def test_advertisement_ttl_one(tester, steps):
    got = periodic(tester, steps, 2)
    tester.solicit(tester.mns[0])
    sol = tester.wait_frame(tester.is_advertisement, 1.0)
    got += [sol] if sol else []
    ttls = [f.ip.ttl for f in got]
    steps.record("IP TTL of periodic and solicited advertisements", "1 in each", ttls, ok=set(ttls) == {1})
    assert set(ttls) == {1}, f"advertisement TTLs {ttls}"


@part("MIP.FA.ADV.3", "Periodic advertisements go to 224.0.0.1 or 255.255.255.255, in a frame to the matching "
      "link-layer multicast or broadcast address", ["rfc5944-2.1-c"])
def test_advertisement_destination(tester, steps):
    f = periodic(tester, steps)[0]
    mac = {ALL_SYSTEMS: "01:00:5e:00:00:01", BROADCAST: "ff:ff:ff:ff:ff:ff"}.get(f.ip.dst)
    steps.record("destination of a periodic advertisement", "224.0.0.1 or 255.255.255.255",
                 f"{f.ip.dst} in a frame to {f.dst_mac}", ok=mac is not None and f.dst_mac == mac)
    assert f.ip.dst in (ALL_SYSTEMS, BROADCAST), f"advertisement sent to {f.ip.dst}"
    assert f.dst_mac == mac, f"{f.ip.dst} sent in a frame to {f.dst_mac}, expected {mac}"


@part("MIP.FA.ADV.4", "A foreign agent's advertisement has the F bit set (and H clear: it is no home agent on "
      "this link)", ["rfc5944-2.1.1-e"])
def test_advertisement_f_bit(tester, steps):
    a = adv(solicited(tester, steps))
    steps.record("flags of the advertisement", "F set, H clear", a.flag_letters, ok=a.has("F") and not a.has("H"))
    assert a.has("F"), f"F bit clear in a foreign agent's advertisement (flags {a.flag_letters})"
    assert not a.has("H"), f"H bit set though no home agent serves this link (flags {a.flag_letters})"


@part("MIP.FA.ADV.5", "An advertisement with F set lists at least one care-of address", ["rfc5944-2.1.1-b"])
def test_advertisement_care_of_address(tester, steps):
    a = adv(solicited(tester, steps))
    steps.record("care-of addresses of the advertisement", ">= 1", [str(c) for c in a.care_of_addresses],
                 ok=bool(a.care_of_addresses))
    assert a.has("F") and a.care_of_addresses, f"flags {a.flag_letters}, care-of addresses {a.care_of_addresses}"


@part("MIP.FA.ADV.6", "The R bit follows the configuration (registration required) and is set only with F",
      ["rfc5944-2.1.1-f"])
def test_advertisement_r_bit(tester, steps):
    a = adv(solicited(tester, steps))
    want = expected_flags(tester.config)["R"]
    steps.record("R bit", f"{'set' if want else 'clear'} (configured), F set when R is", a.flag_letters,
                 ok=a.has("R") == want and (not a.has("R") or a.has("F")))
    assert not a.has("R") or a.has("F"), f"R without F: {a.flag_letters}"
    assert a.has("R") == want, f"R is {'clear' if want else 'set'} but the FA is configured otherwise"


@part("MIP.FA.ADV.7", "The B bit follows the configuration (not busy) and is set only with F", ["rfc5944-2.1.1-d"])
def test_advertisement_b_bit(tester, steps):
    a = adv(solicited(tester, steps))
    want = expected_flags(tester.config)["B"]
    steps.record("B bit", f"{'set' if want else 'clear'} (configured)", a.flag_letters, ok=a.has("B") == want)
    assert not a.has("B") or a.has("F"), f"B without F: {a.flag_letters}"
    assert a.has("B") == want, f"B is {'set' if a.has('B') else 'clear'}, the FA is configured {'busy' if want else 'not busy'}"


@part("MIP.FA.ADV.8", "The T bit is set: the FA configured for reverse tunnelling advertises it", ["rfc3024-3.1-a"],
      needs=["mip.reverse-tunnel"])
def test_advertisement_t_bit(tester, steps):
    a = adv(solicited(tester, steps))
    want = expected_flags(tester.config)["T"]
    steps.record("T bit", f"{'set' if want else 'clear'} (configured)", a.flag_letters, ok=a.has("T") == want)
    assert a.has("T") == want, f"flags {a.flag_letters}; reverse tunnelling configured: {want}"


@part("MIP.FA.ADV.9", "The G and M bits follow the encapsulations the FA decapsulates (GRE: G set; minimal "
      "encapsulation not configured: M clear)", ["rfc5944-4.1-a"])
def test_advertisement_encapsulation_bits(tester, steps):
    a = adv(solicited(tester, steps))
    want = expected_flags(tester.config)
    steps.record("G and M bits", f"G {'set' if want['G'] else 'clear'}, M {'set' if want['M'] else 'clear'}",
                 a.flag_letters, ok=a.has("G") == want["G"] and a.has("M") == want["M"])
    assert a.has("G") == want["G"] and a.has("M") == want["M"], \
        f"flags {a.flag_letters}, configured encapsulations {tester.config.get('encapsulations')}"


@part("MIP.FA.ADV.10", "The advertised registration lifetime is nonzero and the ICMP lifetime leaves room for "
      "three advertisements", ["rfc5944-2.1-f"])
def test_advertisement_lifetimes(tester, steps):
    got = periodic(tester, steps, 3)
    a = adv(got[0])
    gaps = [round(y.time - x.time, 3) for x, y in zip(got, got[1:])]
    steps.record("registration lifetime, ICMP lifetime, intervals", "nonzero; every interval <= lifetime / 3",
                 f"registration lifetime {a.registration_lifetime}, lifetime {a.lifetime}, gaps {gaps}")
    assert a.registration_lifetime > 0, "registration lifetime 0 in an advertisement"
    should(all(g <= a.lifetime / 3 + 0.05 for g in gaps),
           f"advertisement intervals {gaps} s are longer than a third of the lifetime {a.lifetime} s")


@part("MIP.FA.ADV.11", "Consecutive advertisements carry consecutive sequence numbers", ["rfc5944-2.3.2-b"])
def test_sequence_increments(tester, steps):
    got = periodic(tester, steps, 3)
    seqs = [adv(f).sequence for f in got]
    ok = all(b == (256 if a == 0xFFFF else a + 1) for a, b in zip(seqs, seqs[1:]))
    steps.record("sequence numbers of three consecutive advertisements", "each one more than the last", seqs, ok=ok)
    assert ok, f"sequence numbers {seqs}"


@part("MIP.FA.ADV.12", "A solicited advertisement takes the next sequence number too", ["rfc5944-2.3.2-b"])
def test_sequence_counts_solicited(tester, steps):
    first = periodic(tester, steps)[0]
    tester.solicit(tester.mns[0])
    nxt = tester.wait_frame(tester.is_advertisement, 1.0)
    seqs = [adv(first).sequence, adv(nxt).sequence if nxt else None]
    steps.record("a periodic advertisement, then one after a solicitation", "sequence + 1", seqs,
                 ok=nxt is not None and seqs[1] == seqs[0] + 1)
    assert nxt is not None, "no advertisement after the solicitation"
    assert seqs[1] == seqs[0] + 1, f"sequence numbers {seqs}"


@part("MIP.FA.ADV.13", "After a reboot, the FA's first advertisement carries sequence number 0 and the next 1",
      ["rfc5944-2.3.2-a", "rfc5944-2.3.2-b"])
def test_sequence_zero_after_reboot(tester, steps):
    tester.drain()
    tester.reboot()
    got = tester.collect_frames(1.2, tester.is_advertisement)
    seqs = [adv(f).sequence for f in got]
    steps.record("reboot the FA (stop and start its role); advertisements in the next 1.2 s",
                 "the first carries 0, then 1, 2...", seqs, ok=bool(seqs) and seqs[0] == 0)
    assert seqs, "no advertisement after the reboot"
    assert seqs[0] == 0, f"first sequence number after the reboot: {seqs[0]} (all: {seqs})"
    assert seqs == list(range(len(seqs))), f"sequence numbers after the reboot: {seqs}"


@part("MIP.FA.ADV.14", "An advertisement carries at most one one-byte padding extension", ["rfc5944-2.1.3-a"])
def test_advertisement_padding(tester, steps):
    a = adv(solicited(tester, steps))
    steps.record("padding extensions", "0 or 1 (the last)", a.padding, ok=a.padding <= 1)
    should(a.padding <= 1, f"{a.padding} padding bytes in an advertisement")


@part("MIP.FA.ADV.15", "The router addresses of an advertisement are the agent's own (its source address)",
      ["rfc5944-2.3.1-a"])
def test_advertisement_router_addresses(tester, steps):
    f = solicited(tester, steps)
    a = adv(f)
    own = {f.ip.src, *a.care_of_addresses}
    routers = [str(r) for r, _ in a.routers]
    steps.record("router addresses", f"among {sorted(map(str, own))}", routers)
    should(all(r in own for r, _ in a.routers), f"router addresses {routers} not the agent's own ({f.ip.src})")
    assert f.ip.src == tester.fa, f"advertisement from {f.ip.src}, the FA is {tester.fa}"


@part("MIP.FA.SOL.1", "A solicitation from a mobile node's home address (off the link's subnet) is answered at "
      "once", ["rfc5944-2.3-d", "rfc5944-2.3-f"])
def test_solicitation_answered(tester, steps):
    periodic(tester, steps)  # just after a periodic one: the next is due an interval later
    tester.solicit(tester.mns[0])
    f = tester.wait_frame(tester.is_advertisement, 0.3)
    steps.record(f"agent solicitation from {tester.mns[0].home} to 224.0.0.2, TTL 1", "an advertisement within 0.3 s",
                 f.summary() if f else "none", ok=f is not None)
    should(f is not None, "no advertisement within 0.3 s of a solicitation")


@part("MIP.FA.SOL.2", "The answer to a solicitation goes to 224.0.0.1 / 255.255.255.255, or to the soliciting "
      "node's link-layer address", ["rfc5944-2.1-a", "rfc5944-2.1-c"])
def test_solicited_destination(tester, steps):
    periodic(tester, steps)
    mn = tester.mns[1]
    tester.solicit(mn)
    f = tester.wait_frame(tester.is_advertisement, 1.0)
    assert f is not None, "no advertisement after the solicitation"
    multicast = f.ip.dst in (ALL_SYSTEMS, BROADCAST) and f.dst_mac in ("01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff")
    unicast = f.dst_mac == mn.mac
    steps.record("the answer's destination", f"224.0.0.1/255.255.255.255 or unicast to {mn.mac}",
                 f.summary(), ok=multicast or unicast)
    assert multicast or unicast, f"answer sent to {f.ip.dst} in a frame to {f.dst_mac}"


@part("MIP.FA.SOL.3", "A solicitation to the broadcast address 255.255.255.255 is answered", ["rfc5944-2.3-d"])
def test_broadcast_solicitation(tester, steps):
    periodic(tester, steps)
    tester.solicit(tester.mns[0], dst="255.255.255.255")
    f = tester.wait_frame(tester.is_advertisement, 0.3)
    steps.record("agent solicitation to 255.255.255.255", "an advertisement within 0.3 s", f.summary() if f else "none")
    should(f is not None, "no advertisement within 0.3 s of a broadcast solicitation")


@part("MIP.FA.SOL.4", "A solicitation to the mobile-agents group 224.0.0.11 is received and answered",
      ["rfc5944-2.3-c", "rfc5944-2.3-d"])
def test_mobile_agents_group_solicitation(tester, steps):
    periodic(tester, steps)
    tester.solicit(tester.mns[0], dst="224.0.0.11")
    f = tester.wait_frame(tester.is_advertisement, 0.3)
    steps.record("agent solicitation to 224.0.0.11", "an advertisement within 0.3 s", f.summary() if f else "none",
                 ok=f is not None)
    assert f is not None, "a solicitation to 224.0.0.11 was not answered within 0.3 s"


@part("MIP.FA.SOL.5", "Forty solicitations in 0.2 s do not draw forty advertisements: multicast answers are "
      "rate limited", ["rfc5944-2.3-e"])
def test_solicitation_rate_limited(tester, steps):
    tester.drain()
    for i in range(40):
        tester.solicit(tester.mns[i % 2])
        tester.collect_frames(0.005)
    got = tester.collect_frames(0.3, tester.is_advertisement)
    later = tester.collect_frames(0.0, tester.is_advertisement)
    n = len(got) + len(later)
    steps.record("40 solicitations within ~0.2 s, count advertisements until 0.3 s after", "far fewer than 40 "
                 "(at most 10)", n, ok=n <= 10)
    assert n <= 10, f"{n} advertisements answered 40 solicitations in ~0.5 s"
    tester.drain()
    tester.solicit(tester.mns[0])
    alive = tester.wait_frame(tester.is_advertisement, 1.0)
    steps.record("one more solicitation", "answered (the FA still advertises)", alive.summary() if alive else "none",
                 ok=alive is not None)
    assert alive is not None, "no advertisement after the burst"


@part("MIP.FA.SOL.6", "A solicitation with a wrong ICMP checksum draws no extra advertisement", ["rfc5944-2.3-d"])
def test_bad_checksum_solicitation(tester, steps):
    first = periodic(tester, steps)[0]
    tester.solicit(tester.mns[0], checksum="wrong")
    f = tester.wait_frame(tester.is_advertisement, 0.3)
    steps.record("agent solicitation with a wrong checksum, just after a periodic advertisement",
                 "no advertisement before the next periodic one (interval > 0.3 s)", f.summary() if f else "none")
    interval = tester.config.get("adv_interval", 1.0)
    if interval > 0.35:
        should(f is None or f.time - first.time >= interval * 0.9,
               f"an advertisement {f and round(f.time - first.time, 3)} s after the periodic one answered a "
               "solicitation with a wrong checksum")
