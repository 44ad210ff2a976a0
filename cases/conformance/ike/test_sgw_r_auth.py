"""SGW-R: the gateway as responder, IKE_AUTH authentication with a pre-shared key (RFC 7296 1.2,
2.15, 2.21.2) and the Identification payloads (3.5, 3.8)."""
import os

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import part, should


def said(resp) -> str:
    return resp.summary() if resp is not None else "no answer"


def auth_payloads(ike, s, spi: bytes, idp=None, auth=None) -> list:
    """IDi, AUTH, CP(CFG_REQUEST), SAi2, TSi, TSr of a first IKE_AUTH request, with the IDi or the
    AUTH payload given (the AUTH value then computed over the IDi actually sent)."""
    idp = idp or m.idi(ike.peer.identity)
    if auth is None:
        auth = m.auth(c.AUTH_PSK, s.auth_value(ike.peer.psk, True, idp.body))
    return [idp, auth, m.cp_request(), m.sa([s.child_algs.proposal(spi)]), m.tsi(["0.0.0.0/0"]), m.tsr(["0.0.0.0/0"])]


def send_auth(ike, s, spi: bytes, payloads: list, **kw):
    resp = ike.exchange(s, s.auth_request(payloads=payloads, child_spi=spi, **kw))
    if resp is not None:
        s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    return resp


def judge_rejected(ike, s, resp, steps) -> None:
    """An authentication that must fail: no AUTH of the responder and no child SA in the answer
    (MUST), AUTHENTICATION_FAILED said (SHOULD), and no IKE SA left to talk to."""
    assert resp is None or (resp.get(c.AUTH) is None and resp.get(c.SA) is None), \
        f"the responder authenticated the IKE SA / created a child SA: {said(resp)}"
    info = ike.exchange(s, s.informational_request([]), timeout=0.5)
    protected = info is not None and info.ok and info.encrypted and info.inner is not None
    steps.record("an empty INFORMATIONAL on the refused IKE SA", "no protected answer (no IKE SA)", said(info),
                 ok=not protected)
    assert not protected, f"the IKE SA answers after a failed authentication: {said(info)}"
    should(resp is not None and c.N_AUTHENTICATION_FAILED in resp.notify_types(),
           f"an AUTHENTICATION_FAILED notify (got {notify_names(resp) if resp else 'no answer'})")


@part("IKE.SGW-R.AUTH.1", "AUTH made with a wrong pre-shared key: AUTHENTICATION_FAILED and no IKE SA",
      ["rfc7296-1.2-b", "rfc7296-2.21.2-a"], needs=["ikev2.psk"])
def test_wrong_psk(ike, steps):
    s, _ = ike.init()
    resp = ike.exchange(s, s.auth_request(psk=b"not-" + ike.peer.psk, idi=ike.peer.identity))
    steps.record(f"IKE_AUTH as {ike.peer.identity} with AUTH from a wrong key", "N(AUTHENTICATION_FAILED), no AUTH, no SA",
                 said(resp))
    judge_rejected(ike, s, resp, steps)


@part("IKE.SGW-R.AUTH.2", "AUTH with the right key but a wrong method (RSA signature): authentication fails",
      ["rfc7296-1.2-b", "rfc7296-2.21.2-a"], needs=["ikev2.psk"])
def test_wrong_auth_method(ike, steps):
    s, _ = ike.init()
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, auth_method=c.AUTH_RSA))
    steps.record("IKE_AUTH: AUTH method 1 (RSA signature) carrying the shared-key value",
                 "N(AUTHENTICATION_FAILED), no AUTH, no SA", said(resp))
    judge_rejected(ike, s, resp, steps)


@part("IKE.SGW-R.AUTH.3", "IDi of an unknown user with another user's pre-shared key: authentication fails",
      ["rfc7296-1.2-c", "rfc7296-2.21.2-a"], needs=["ikev2.psk"])
def test_unknown_user(ike, steps):
    s, _ = ike.init()
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi="mallory"))
    steps.record(f"IKE_AUTH as 'mallory' with the key of {ike.peer.identity}", "N(AUTHENTICATION_FAILED), no AUTH, no SA",
                 said(resp))
    judge_rejected(ike, s, resp, steps)


@part("IKE.SGW-R.AUTH.4", "AUTH computed over another IDi than the one sent: authentication fails",
      ["rfc7296-1.2-b", "rfc7296-1.2-c"], needs=["ikev2.psk"])
def test_auth_over_other_id(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    value = s.auth_value(ike.peer.psk, True, m.idi("bob").body)
    resp = send_auth(ike, s, spi, auth_payloads(ike, s, spi, auth=m.auth(c.AUTH_PSK, value)))
    steps.record(f"IKE_AUTH: IDi {ike.peer.identity}, AUTH (right key) signed over IDi 'bob'",
                 "N(AUTHENTICATION_FAILED), no AUTH, no SA", said(resp))
    judge_rejected(ike, s, resp, steps)


@part("IKE.SGW-R.AUTH.5", "A truncated AUTH value (16 of its 32 octets): authentication fails",
      ["rfc7296-1.2-b"], needs=["ikev2.psk"])
def test_truncated_auth(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    idp = m.idi(ike.peer.identity)
    value = s.auth_value(ike.peer.psk, True, idp.body)[:16]
    resp = send_auth(ike, s, spi, auth_payloads(ike, s, spi, idp, m.auth(c.AUTH_PSK, value)))
    steps.record("IKE_AUTH with the first 16 octets of the right AUTH value", "no AUTH, no SA", said(resp))
    judge_rejected(ike, s, resp, steps)


@part("IKE.SGW-R.AUTH.6", "An IKE_AUTH request with a broken integrity checksum is dropped; the intact one is then "
      "served", ["rfc7296-1.2-b", "rfc7296-3.14-f"], needs=["ikev2.psk"])
def test_bad_icv_dropped(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    bad = s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, child_spi=spi, message_id=1,
                         sk_opts=SkOptions(break_icv=True))
    resp = ike.exchange(s, bad, timeout=0.5)
    steps.record("IKE_AUTH (message ID 1) with the last ICV bit flipped", "no answer (discarded)", said(resp),
                 ok=resp is None)
    assert resp is None or (resp.get(c.AUTH) is None and resp.get(c.SA) is None), \
        f"a message failing its integrity check was accepted: {said(resp)}"
    good = s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, child_spi=spi, message_id=1)
    resp = ike.exchange(s, good)
    if resp is not None:
        s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    steps.record("the intact IKE_AUTH (message ID 1)", "IDr, AUTH, SA: the IKE SA established", said(resp),
                 ok=bool(s.peer_auth_ok))
    assert s.peer_auth_ok and s.children, f"the intact request after a discarded one was not served: {said(resp)}"


@part("IKE.SGW-R.AUTH.7", "The responder's AUTH verifies with the shared key (SK_pr of the PRF's length) and "
      "IDr is present", ["rfc7296-2.14-a", "rfc7296-2.13-c", "rfc7296-1.2-c"], needs=["ikev2.psk"])
def test_responder_auth_verifies(ike, steps):
    s, _ = ike.init()
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    if resp is not None:
        s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    auth = resp.get(c.AUTH) if resp is not None else None
    steps.record("IKE_AUTH with the PSK", "IDr and an AUTH (method 2) that verifies over the responder's octets",
                 said(resp) + (f"; AUTH method {auth.fields['method']}" if auth else ""), ok=bool(s.peer_auth_ok))
    assert resp is not None and resp.get(c.IDR) is not None, f"no IDr: {said(resp)}"
    assert auth is not None and auth.fields["method"] == c.AUTH_PSK, f"no shared-key AUTH: {said(resp)}"
    assert s.peer_auth_ok, "the responder's AUTH does not verify with the shared key"


@part("IKE.SGW-R.AUTH.8", "A non-zero RESERVED field in the AUTH payload is ignored", ["rfc7296-3.8-b"],
      needs=["ikev2.psk"])
def test_auth_reserved_ignored(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    idp = m.idi(ike.peer.identity)
    auth = m.auth(c.AUTH_PSK, s.auth_value(ike.peer.psk, True, idp.body), reserved2=0xA5A5A5)
    resp = send_auth(ike, s, spi, auth_payloads(ike, s, spi, idp, auth))
    steps.record("IKE_AUTH with AUTH RESERVED 0xa5a5a5", "authenticated as usual", said(resp), ok=bool(s.peer_auth_ok))
    assert resp is not None and resp.get(c.AUTH) is not None and s.peer_auth_ok, \
        f"the request was not served: {said(resp)}"


@part("IKE.SGW-R.ID.1", "A non-zero RESERVED field in IDi is ignored (AUTH is computed over the IDi as sent)",
      ["rfc7296-3.5-a"], needs=["ikev2.psk"])
def test_id_reserved_ignored(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    idp = m.idi(ike.peer.identity, reserved2=0x5A5A5A)
    resp = send_auth(ike, s, spi, auth_payloads(ike, s, spi, idp))
    steps.record("IKE_AUTH with IDi RESERVED 0x5a5a5a, AUTH over that IDi", "authenticated as usual", said(resp),
                 ok=bool(s.peer_auth_ok))
    assert resp is not None and resp.get(c.AUTH) is not None and s.peer_auth_ok, \
        f"the request was not served: {said(resp)}"


@part("IKE.SGW-R.ID.2", "IDr is sent with RESERVED zero, and an FQDN or RFC 822 identity holds no terminator",
      ["rfc7296-3.5-a", "rfc7296-3.5-b", "rfc7296-3.5-c"], needs=["ikev2.psk"])
def test_idr_format(ike, steps):
    s, _ = ike.init()
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    idr = resp.get(c.IDR) if resp is not None else None
    steps.record("IKE_AUTH", "IDr with RESERVED 0; FQDN/RFC822 data without NUL, CR, LF",
                 f"IDr type {idr.fields['id_type']} reserved {idr.fields['reserved2'].hex()} data {idr.fields['data']!r}"
                 if idr else said(resp))
    assert idr is not None, "no IDr in the IKE_AUTH response"
    assert idr.fields["reserved2"] == bytes(3), f"IDr RESERVED {idr.fields['reserved2'].hex()}"
    if idr.fields["id_type"] in (c.ID_FQDN, c.ID_RFC822_ADDR):
        bad = [ch for ch in b"\x00\r\n" if ch in idr.fields["data"]]
        assert not bad, f"terminator characters {bad} in the identity {idr.fields['data']!r}"
