"""SGW-R: the gateway as responder, the Encrypted payload SK {...} (RFC 7296 section 3.14; RFC 5282 for
AES-GCM): where it sits, the IV and padding the receiver must accept, and the integrity check.

Parts run on an IKE SA with AES-GCM-16 (the tester's default, no block alignment) or with AES-CBC +
HMAC-SHA2-256-128 (16-byte blocks, where Padding and Pad Length make the alignment).
"""
import os

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.session import Algorithms
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part

QUIET = 0.5
IDENT = 0x7e53
CBC = Algorithms(encr=c.ENCR_AES_CBC, key_bits=128, integ=c.AUTH_HMAC_SHA2_256_128, prf=c.PRF_HMAC_SHA2_256,
                 dh=c.ECP256)


def _describe(msg):
    return msg.summary() if msg is not None else "no answer"


def _establish(ike, cbc=False):
    if not cbc:
        return ike.establish()
    s = ike.establish(ike.session(algs=Algorithms(**vars(CBC))))
    if s.algs.encr != c.ENCR_AES_CBC or s.algs.integ != c.AUTH_HMAC_SHA2_256_128:
        inconclusive(f"the IKE SA did not get AES-CBC with HMAC-SHA2-256-128 (ENCR {s.algs.encr}, INTEG {s.algs.integ})")
    return s


def _accepted(ike, s, steps, what, inner, opts):
    """Send INFORMATIONAL {inner} with the SK options; assert it is answered with a verified response."""
    resp = ike.exchange(s, s.informational_request(inner, sk_opts=opts))
    steps.record(what, "an INFORMATIONAL response that verifies", _describe(resp),
                 ok=resp is not None and resp.ok and resp.inner is not None)
    assert resp is not None, f"no answer to an INFORMATIONAL with {what}"
    assert resp.ok and resp.inner is not None, f"the response does not verify: {resp.reason}"
    assert resp.message_id == s.next_mid - 1, f"the response's Message ID {resp.message_id} is not the request's"
    return resp


def _filler(n):
    """An unrecognised status notify of exactly `n` (>= 8) bytes: ignorable content of a chosen length."""
    p = m.notify(40001, b"z" * (n - 8))
    assert 4 + len(p.body) == n
    return p


# ----------------------------------------------------------------------------- AES-GCM

@part("IKE.SGW-R.SK.1", "AES-GCM: an SK payload with 255 bytes of padding is accepted",
      ["rfc7296-3.14-e", "rfc7296-3.14-d"])
def test_gcm_pad_255(ike, steps):
    s = _establish(ike)
    _accepted(ike, s, steps, "SK with 255 padding bytes (Pad Length 255)", [], SkOptions(pad_len=255))


@part("IKE.SGW-R.SK.2", "AES-GCM: padding of random content (not zeros) is accepted",
      ["rfc7296-3.14-d"])
def test_gcm_pad_random(ike, steps):
    s = _establish(ike)
    _accepted(ike, s, steps, "SK with 17 random padding bytes", [], SkOptions(pad_len=17, pad_bytes=os.urandom(17)))


@part("IKE.SGW-R.SK.3", "AES-GCM: any IV value is accepted (all zeros, all ones)",
      ["rfc7296-3.14-c"])
def test_gcm_any_iv(ike, steps):
    s = _establish(ike)
    _accepted(ike, s, steps, "SK with the explicit IV 00..00", [], SkOptions(iv=bytes(8)))
    _accepted(ike, s, steps, "SK with the explicit IV ff..ff", [], SkOptions(iv=b"\xff" * 8))


@part("IKE.SGW-R.SK.4", "AES-GCM: a request with a bad ICV is silently discarded, and the SA works afterwards",
      ["rfc7296-3.14-f", "rfc7296-1.4-a"])
def test_gcm_bad_icv(ike, steps):
    s = _establish(ike)
    _bad_icv(ike, s, steps)


@part("IKE.SGW-R.SK.5", "A message whose SK payload is not the last payload is rejected, not acted upon",
      ["rfc7296-3.14-a"])
def test_sk_not_last(ike, steps):
    s = _establish(ike)
    child = s.children[0]
    req = s.informational_request([m.delete(c.PROTO_ESP, [child.spi_in])], after=[m.notify(40002, b"after")])
    resp = ike.exchange(s, req, timeout=1.0)
    errors = [t for t in (resp.notify_types() if resp is not None else []) if t < 16384]
    steps.record("INFORMATIONAL: SK{D(ESP, child)} followed by a clear N(40002) payload",
                 "rejected: no answer or an error notify, the Delete not done",
                 _describe(resp), ok=resp is None or (bool(errors) and not resp.get_all(c.DELETE)))
    assert resp is None or not resp.get_all(c.DELETE), f"the IUT acted on a message with a non-last SK: {_describe(resp)}"
    assert resp is None or errors, f"the IUT answered a message with a non-last SK as valid: {_describe(resp)}"
    if resp is None or c.N_INVALID_SYNTAX not in errors:  # INVALID_SYNTAX would end the IKE SA (2.21.3)
        ok = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
        steps.record("ICMP echo through the child SA", "the echo reply (the Delete was not done)", ok, ok=ok)
        assert ok, "the child SA is gone: the Delete inside the rejected message was done"


@part("IKE.SGW-R.SK.6", "The IUT's SK payload is the last payload and its ICV verifies; every response has a fresh IV",
      ["rfc7296-3.14-a", "rfc7296-3.14-f", "rfc7296-3.14-c"])
def test_iut_sk_fresh_iv(ike, steps):
    s = _establish(ike)
    ivs = []
    for _ in range(4):
        resp = ike.exchange(s, s.informational_request([]))
        assert resp is not None, "no answer to an empty INFORMATIONAL"
        last = resp.payloads[-1] if resp.payloads else None
        steps.record("empty INFORMATIONAL", "a response whose last payload is SK and verifies", _describe(resp),
                     ok=resp.ok and last is not None and last.type == c.SK)
        assert resp.ok and resp.inner is not None, f"the IUT's response does not verify: {resp.reason}"
        assert last is not None and last.type == c.SK, f"the IUT's SK payload is not last: {_describe(resp)}"
        ivs.append(last.body[:s.cipher_in.iv_len])
    steps.record("the IVs of the four responses", "all different", [iv.hex() for iv in ivs],
                 ok=len(set(ivs)) == len(ivs))
    assert len(set(ivs)) == len(ivs), f"the IUT reused an IV: {[iv.hex() for iv in ivs]}"


# ----------------------------------------------------------------------------- AES-CBC + HMAC-SHA2-256-128

@part("IKE.SGW-R.SK.7", "AES-CBC: an SK payload with 255 bytes of padding (still block-aligned) is accepted",
      ["rfc7296-3.14-e", "rfc7296-3.14-d"])
def test_cbc_pad_255(ike, steps):
    s = _establish(ike, cbc=True)
    _accepted(ike, s, steps, "empty SK, 255 padding bytes + Pad Length = 16 blocks", [], SkOptions(pad_len=255))


@part("IKE.SGW-R.SK.8", "AES-CBC: an SK payload with no padding at all (Pad Length 0) is accepted",
      ["rfc7296-3.14-e", "rfc7296-3.14-d"])
def test_cbc_pad_zero(ike, steps):
    s = _establish(ike, cbc=True)
    _accepted(ike, s, steps, "SK with a 15-byte payload, no padding, Pad Length 0", [_filler(15)],
              SkOptions(pad_len=0))


@part("IKE.SGW-R.SK.9", "AES-CBC: a chosen IV and longer-than-needed random padding are accepted",
      ["rfc7296-3.14-c", "rfc7296-3.14-e", "rfc7296-3.14-d"])
def test_cbc_iv_and_padding(ike, steps):
    s = _establish(ike, cbc=True)
    _accepted(ike, s, steps, "empty SK, IV 00..00, 31 random padding bytes", [],
              SkOptions(iv=bytes(16), pad_len=31, pad_bytes=os.urandom(31)))
    _accepted(ike, s, steps, "empty SK, a random IV, 47 random padding bytes", [],
              SkOptions(iv=os.urandom(16), pad_len=47, pad_bytes=os.urandom(47)))


@part("IKE.SGW-R.SK.10", "AES-CBC: a request with a bad ICV is silently discarded, and the SA works afterwards",
      ["rfc7296-3.14-f", "rfc7296-1.4-a"])
def test_cbc_bad_icv(ike, steps):
    s = _establish(ike, cbc=True)
    _bad_icv(ike, s, steps)


def _bad_icv(ike, s, steps):
    """A Delete of the child SA whose ICV is broken: no answer, nothing deleted; then the same
    Message ID, correctly sealed, is answered and the child SA still carries data."""
    child = s.children[0]
    mid = s.next_mid
    bad = s.informational_request([m.delete(c.PROTO_ESP, [child.spi_in])], sk_opts=SkOptions(break_icv=True),
                                  advance=False)
    resp = ike.exchange(s, bad, timeout=QUIET)
    steps.record(f"INFORMATIONAL SK{{D(ESP, child)}}, Message ID {mid}, last ICV bit flipped",
                 "silently discarded: no answer", _describe(resp), ok=resp is None)
    assert resp is None, f"a request with a bad ICV was answered: {_describe(resp)} {notify_names(resp)}"
    again = ike.exchange(s, s.informational_request([]))
    steps.record(f"empty INFORMATIONAL, Message ID {mid}, correct ICV", "an answer", _describe(again),
                 ok=again is not None)
    assert again is not None, "the IKE SA stopped answering after a message with a bad ICV"
    ok = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA", "the echo reply (the forged Delete was not done)", ok, ok=ok)
    assert ok, "the child SA is gone: the Delete with a bad ICV was acted upon"
