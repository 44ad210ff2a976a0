"""MN: what it makes of Registration Replies (RFC 5944 3.4, 3.6.2, 3.6.3, 5.7; RFC 3024 3.4). The
node registers through the tester's foreign agent on fn2; the tester answers as that agent, with a
reply signed (or not) as the home agent would. A reply the node discards silently shows in its
behaviour: it retransmits its request (after ~1 s); a reply it takes ends the attempt."""
import time

from testbed.conformance.mip.auth import EXT_MN_HA_AUTH, PREFIX_SUFFIX_MD5
from testbed.conformance.mip.messages import Extension, identification_time, ntp_identification
from testbed.conformance.mip_mn_env import intervals
from testbed.conformance.parts import part, should

SEG = "fn2"
RETRANSMIT_WAIT = 1.6


def _retransmission(tester, seconds: float = RETRANSMIT_WAIT):
    return tester.wait_request(SEG, seconds)


def _discarded(tester, steps, f, data: bytes, what: str, checksum: str = "right") -> None:
    """Send `data` to the node as the agent's reply; it must be discarded: the node retransmits."""
    tester.fa_reply(f, data, checksum=checksum, what=what)
    again = _retransmission(tester)
    steps.record(f"reply: {what}", "silently discarded: the request is retransmitted",
                 again.summary() if again else "no retransmission (the reply was taken)", ok=again is not None)
    assert again is not None, f"the node took a reply it must discard ({what}): no retransmission within " \
                              f"{RETRANSMIT_WAIT} s"


def _taken(tester, steps, f, data: bytes, what: str, checksum: str = "right", judge=None) -> list:
    tester.fa_reply(f, data, checksum=checksum, what=what)
    got = tester.collect(RETRANSMIT_WAIT, tester.link_request(SEG))
    steps.record(f"reply: {what}", "taken: no retransmission", [g.summary() for g in got], ok=not got)
    (judge or _assert_none)(got, what)
    return got


def _assert_none(got, what):
    assert not got, f"the node retransmitted after {what}: {got[0].summary()}"


@part("MIP.MN.REPLY.1", "A valid accepting reply ends the registration attempt (no retransmission)",
      ["rfc5944-3.6.2.1-h", "rfc5944-3.5.1-b", "rfc5944-5.1-a"])
def test_valid_reply_taken(tester, steps):
    f, req = tester.fa_request(SEG)
    _taken(tester, steps, f, tester.answer(f.udp.payload, 0), "code 0, identification copied, MN-HA valid")


@part("MIP.MN.REPLY.2", "A reply whose identification's low 32 bits differ is discarded",
      ["rfc5944-3.6.2.1-b", "rfc5944-3.6.2.1-c", "rfc5944-5.7-d"])
def test_wrong_identification(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0, identification=req.identification ^ 0x10),
               "code 0, identification low bits changed")


@part("MIP.MN.REPLY.3", "A reply with a wrong Mobile-Home authenticator is discarded",
      ["rfc5944-3.6.2.1-h", "rfc5944-3.6.2.1-i"])
def test_bad_authenticator(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0, auth={"corrupt": True}),
               "code 0, MN-HA authenticator's last bit flipped")


@part("MIP.MN.REPLY.4", "A home agent's reply without a Mobile-Home Authentication extension is discarded",
      ["rfc5944-3.6.2.1-d", "rfc5944-3.6.2.1-i", "rfc5944-3.5.2-a"])
def test_missing_authenticator(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0, sign=False), "code 0, no MN-HA extension")


@part("MIP.MN.REPLY.5", "A reply with two Mobile-Home Authentication extensions is discarded",
      ["rfc5944-3.6.2.1-i", "rfc5944-3.6.2.1-h"])
def test_duplicate_authenticator(tester, steps):
    f, req = tester.fa_request(SEG)
    data = tester.answer(f.udp.payload, 0, extensions_after=[tester.sa.authenticate(EXT_MN_HA_AUTH)])
    _discarded(tester, steps, f, data, "code 0, two valid MN-HA extensions")


@part("MIP.MN.REPLY.6", "A reply authenticated under another SPI is discarded", ["rfc5944-3.5.1-b"])
def test_other_spi(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0, auth={"spi": tester.sa.spi + 1}),
               f"code 0, MN-HA with SPI {tester.sa.spi + 1} (right key)")


@part("MIP.MN.REPLY.7", "A reply authenticated with another algorithm (prefix+suffix MD5 for an HMAC-MD5 SA) is discarded",
      ["rfc5944-3.5.1-b"])
def test_other_algorithm(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0, auth={"algorithm": PREFIX_SUFFIX_MD5}),
               "code 0, MN-HA computed with keyed MD5 prefix+suffix")


@part("MIP.MN.REPLY.8", "A reply with a wrong UDP checksum is discarded", ["rfc5944-3.6.2.1-a", "rfc5944-3.1-d"])
def test_bad_udp_checksum(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 0), "valid, UDP checksum wrong", checksum="wrong")


@part("MIP.MN.REPLY.9", "A reply with a zero UDP checksum (none computed) is accepted", ["rfc5944-3.1-e"])
def test_zero_udp_checksum(tester, steps):
    f, req = tester.fa_request(SEG)
    _taken(tester, steps, f, tester.answer(f.udp.payload, 0), "valid, UDP checksum 0", checksum="zero",
           judge=lambda got, what: should(not got, f"a reply with a zero UDP checksum was not taken ({what})"))


@part("MIP.MN.REPLY.10", "A reply with an unknown extension of type 0-127 is discarded", ["rfc5944-1.8-a"])
def test_unknown_skippable_not(tester, steps):
    f, req = tester.fa_request(SEG)
    data = tester.answer(f.udp.payload, 0, extensions_before=[Extension(100, b"\0\0")])
    _discarded(tester, steps, f, data, "code 0, unknown extension type 100 before MN-HA")


@part("MIP.MN.REPLY.11", "An unknown extension of type 128-255 is skipped: the reply is taken", ["rfc5944-1.8-b"])
def test_unknown_skippable(tester, steps):
    f, req = tester.fa_request(SEG)
    data = tester.answer(f.udp.payload, 0, extensions_before=[Extension(200, b"\0\0")])
    _taken(tester, steps, f, data, "code 0, unknown extension type 200 before MN-HA")


@part("MIP.MN.REPLY.12", "After code 133 the next request's identification follows the home agent's clock",
      ["rfc5944-3.6.2.3-c", "rfc5944-5.7.1-h"])
def test_resync_after_133(tester, steps):
    f, req = tester.fa_request(SEG)
    ha_now = time.time() + 5000.0
    data = tester.answer(f.udp.payload, 133, now=ha_now)
    tester.fa_reply(f, data, what="code 133, the HA's time (+5000 s) in the high 32 bits")
    again = _retransmission(tester, 1.6)
    skew = identification_time(again.request.identification) - (ha_now + (again.time - f.time)) if again else None
    steps.record("reply code 133 with the HA's clock 5000 s ahead", "a new request stamped with the HA's time",
                 f"{again.summary()}: {skew:+.3f} s from the HA's clock" if again else "no new request",
                 ok=again is not None and abs(skew) < 3)
    assert again is not None, "no new request after a code 133 reply"
    assert abs(skew) < 3, f"the next identification is {skew:+.1f} s from the home agent's clock: not resynchronised"


@part("MIP.MN.REPLY.13", "A code 133 whose low 32 identification bits do not match is not used to resynchronise",
      ["rfc5944-5.7.1-h", "rfc5944-3.6.2.1-c"])
def test_133_unmatched(tester, steps):
    f, req = tester.fa_request(SEG)
    ha_now = time.time() + 5000.0
    ident = (ntp_identification(ha_now) & ~0xFFFFFFFF) | ((req.identification ^ 0x10) & 0xFFFFFFFF)
    tester.fa_reply(f, tester.answer(f.udp.payload, 133, identification=ident),
                    what="code 133 (+5000 s), low 32 bits not the request's")
    again = _retransmission(tester)
    skew = identification_time(again.request.identification) - again.time if again else None
    steps.record("code 133 for another request", "retransmission on the node's own clock",
                 f"{again.summary()}: {skew:+.3f} s from now" if again else "none", ok=again is not None and abs(skew) < 3)
    assert again is not None, "no retransmission after an unmatched code 133 (it must be discarded)"
    assert abs(skew) < 3, f"identification {skew:+.1f} s off: resynchronised from an unmatched reply"


@part("MIP.MN.REPLY.14", "A code 133 with a wrong authenticator is not used to resynchronise",
      ["rfc5944-3.6.2.1-i", "rfc5944-5.7.1-h"])
def test_133_unauthentic(tester, steps):
    f, req = tester.fa_request(SEG)
    ha_now = time.time() + 5000.0
    tester.fa_reply(f, tester.answer(f.udp.payload, 133, now=ha_now, auth={"corrupt": True}),
                    what="code 133 (+5000 s), MN-HA corrupted")
    again = _retransmission(tester)
    skew = identification_time(again.request.identification) - again.time if again else None
    steps.record("code 133 with a bad authenticator", "retransmission on the node's own clock",
                 f"{again.summary()}: {skew:+.3f} s from now" if again else "none", ok=again is not None and abs(skew) < 3)
    assert again is not None, "no retransmission after a code 133 with a bad authenticator"
    assert abs(skew) < 3, f"identification {skew:+.1f} s off: resynchronised from an unauthentic reply"


@part("MIP.MN.REPLY.15", "After code 69 (lifetime too long) the next request asks for no more than the reply's lifetime",
      ["rfc5944-3.6.2.3-b"])
def test_lifetime_too_long(tester, steps):
    f, req = tester.fa_request(SEG)
    tester.fa_reply(f, tester.answer(f.udp.payload, 69, lifetime=30, sign=False), what="FA code 69, lifetime 30")
    again = tester.wait_request(SEG, 2.5)
    steps.record(f"request lifetime {req.lifetime}, FA denies 69 with lifetime 30", "a retry with lifetime <= 30",
                 again.summary() if again else "no retry")
    if again is None:
        return  # not retrying at all is conformant
    assert again.request.lifetime <= 30, f"retry with lifetime {again.request.lifetime} after code 69 offering 30"


@part("MIP.MN.REPLY.16", "A granted lifetime shorter than requested is used: the node re-registers before it ends",
      ["rfc5944-3.4-d", "rfc5944-3.6.2.2-c", "rfc5944-3.6.2.2-e", "rfc5944-3.8.2.2-f"])
def test_shorter_lifetime(tester, steps):
    f, req = tester.fa_request(SEG)
    tester.advertise(tester.agent(SEG), "F", lifetime=9)  # the agent stays heard
    tester.fa_reply(f, tester.answer(f.udp.payload, 0, lifetime=3), what="code 0, lifetime 3 s")
    again = tester.wait_request(SEG, 3.2)
    at = round(again.time - f.time, 3) if again else None
    steps.record("accepted with lifetime 3 s (requested more)", "a new request within 3 s of the first",
                 f"{again.summary()} at +{at} s" if again else "none", ok=again is not None and at < 3.0)
    assert again is not None and at < 3.0, "no re-registration before the granted 3 s lifetime ran out"


@part("MIP.MN.REPLY.17", "A foreign agent's code 70 to a T request is taken as the rejection (no MN-HA needed)",
      ["rfc3024-3.4-b"])
def test_fa_70_rejection(tester, steps):
    f, req = tester.fa_request(SEG, "FT")
    _taken(tester, steps, f, tester.answer(f.udp.payload, 70, sign=False), "FA code 70 (poorly formed), no MN-HA")


@part("MIP.MN.REPLY.18", "A home agent's code 134 to a T request is taken as the rejection", ["rfc3024-3.4-b"])
def test_ha_134_rejection(tester, steps):
    f, req = tester.fa_request(SEG, "FT")
    _taken(tester, steps, f, tester.answer(f.udp.payload, 134), "HA code 134 (poorly formed), MN-HA valid")


@part("MIP.MN.REPLY.19", "A home agent's denial without a Mobile-Home Authentication extension is discarded",
      ["rfc5944-3.6.2.1-e", "rfc5944-3.6.2.1-h"])
def test_unsigned_ha_denial(tester, steps):
    f, req = tester.fa_request(SEG)
    _discarded(tester, steps, f, tester.answer(f.udp.payload, 129, sign=False), "HA code 129, no MN-HA")


@part("MIP.MN.RTX.1", "Unanswered requests are retransmitted at least one second apart, each timeout doubling",
      ["rfc5944-3.6.3-c", "rfc5944-3.6.3-d", "rfc5944-3.6-f"])
def test_retransmission_backoff(tester, steps):
    f, req = tester.fa_request(SEG)
    later = tester.collect(3.4, tester.link_request(SEG))
    times = [f.time] + [g.time for g in later]
    gaps = intervals(times)
    steps.record("no answer for 3.4 s", "requests >= 1 s apart, the second gap >= twice the first", f"gaps {gaps}",
                 ok=len(gaps) >= 1 and min(gaps) >= 0.99)
    assert later, "no retransmission in 3.4 s"
    assert min(gaps) >= 0.99, f"requests less than one second apart: gaps {gaps}"
    if len(gaps) >= 2:
        should(gaps[1] >= 1.9 * gaps[0], f"the retransmission timeout did not double: gaps {gaps}")
