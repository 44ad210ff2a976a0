"""SGW-R: the gateway as responder, the IKE header and the generic payload header (RFC 7296 sections
2.5, 2.21.2, 3.1, 3.2): version numbers, the I/R/V flags and the RESERVED flag bits, RESERVED
fields of the generic payload header, unknown payloads (critical or not), the critical bit on known
payloads and in responses, payload order, and wrong IKE header / payload Lengths."""
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.parse import parse_header
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part, should

QUIET = 0.5          # how long "no answer" is waited for
UNKNOWN = 200        # a payload type from the private-use range (RFC 7296 3.2: 128-255), unknown to any IUT
X_FLAGS = 0xC7       # every unused bit of the IKE header's Flags octet (RFC 7296 3.1: X bits)


# ---------------------------------------------------------------------------- helpers

def said(msg) -> str:
    return msg.summary() if msg is not None else "no answer"


def anything_from_iut(ike, s, timeout: float = QUIET, mid: int | None = None):
    """Any IKE message of the IUT on this IKE SA (request or response), or None after `timeout`."""
    def match(r) -> bool:
        h = parse_header(r.data)
        return h.ok and h.spi_i == s.spi_i and (mid is None or h.message_id == mid)
    r = ike.receive(match, timeout)
    if r is None:
        return None
    return s.parse(r.data) if s.keys is not None else parse_header(r.data)


def init_payloads(s) -> list:
    """The payloads of a default IKE_SA_INIT request of `s` (SA, KE, Ni, N(NAT_DETECTION_*)), to be
    altered one by one (sets up the session's DH key)."""
    s.sa_init_request()
    return [m.sa([s.algs.proposal()]), m.ke(s.algs.dh, s.dh.public), m.nonce(s.ni)] + s.nat_notifies(bytes(8))


def auth_payloads(ike, s, spi: bytes) -> list:
    """The inner payloads of a default IKE_AUTH request (IDi, AUTH, CP, SA, TSi, TSr), to be altered."""
    idp = m.idi(ike.peer.identity)
    s.own_id_body = idp.body
    return [idp, m.auth(c.AUTH_PSK, s.auth_value(ike.peer.psk, True)), m.cp_request(),
            m.sa([s.child_algs.proposal(spi)]), m.tsi(["0.0.0.0/0"]), m.tsr(["0.0.0.0/0"])]


def auth(ike, s, payloads=None, **overrides):
    """IKE_AUTH with `payloads` (inner, or a whole SkPayload) or the defaults; the response, and
    whether it established an authenticated child SA."""
    spi = overrides.pop("child_spi", None) or s.random(4)
    if payloads is not None and callable(payloads):
        payloads = payloads(auth_payloads(ike, s, spi))
    req = s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, child_spi=spi, payloads=payloads, **overrides)
    resp = ike.exchange(s, req)
    if resp is None:
        return None, False
    s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    return resp, bool(s.children and s.peer_auth_ok)


def established(ike, steps):
    """IKE_SA_INIT + IKE_AUTH, and the IKE_AUTH response (INCONCLUSIVE when it fails)."""
    s, init_resp = ike.init()
    resp, ok = auth(ike, s)
    if not ok:
        inconclusive(f"IKE_AUTH did not establish a child SA: {said(resp)}")
    steps.record("IKE_SA_INIT, IKE_AUTH (PSK, CP, SA, TSi, TSr)", "an IKE SA and a child SA", said(resp))
    return s, init_resp, resp


def liveness(ike, s, steps, what: str = "then an empty INFORMATIONAL (liveness check)"):
    """An empty INFORMATIONAL on `s` with the next Message ID: answered? (recorded)"""
    resp = ike.exchange(s, s.informational_request([]))
    ok = resp is not None and resp.ok and resp.exchange == c.INFORMATIONAL and resp.response
    steps.record(what, "an INFORMATIONAL response: the IKE SA is still up", said(resp), ok=ok)
    return ok


def still_carries_data(ike, s, steps) -> bool:
    ok = bool(ike.ping(s))
    steps.record("ICMP echo to H through the child SA", "the echo reply", ok, ok=ok)
    return ok


def flags_text(msg) -> str:
    return (f"flags 0x{msg.flags:02x} (I={int(msg.initiator)} R={int(msg.response)} V={int(msg.version_bit)} "
            f"X=0x{msg.reserved_flags:02x}), version {msg.major}.{msg.minor}")


def bad_payload_headers(msg, reserved: bool = True, critical: bool = True) -> list[str]:
    """Payloads (outer and decrypted) whose generic header has the C bit or RESERVED bits set."""
    out = []
    for p in msg.payloads + (msg.inner or []):
        if critical and p.critical:
            out.append(f"{p.describe()} C=1")
        if reserved and p.reserved:
            out.append(f"{p.describe()} RESERVED=0x{p.reserved:02x}")
    return out


def sa_init_rejected(resp) -> bool:
    """A malformed IKE_SA_INIT is rejected: no answer, or an answer without an SA payload."""
    return resp is None or resp.get(c.SA) is None


# ---------------------------------------------------------------------------- versions

@part("IKE.SGW-R.VER.3", "IKE_SA_INIT and IKE_AUTH responses carry version 2.0",
      ["rfc7296-3.1-d", "rfc7296-3.1-g", "rfc7296-2.5-d"])
def test_responses_are_version_2_0(ike, steps):
    s, init_resp, auth_resp = established(ike, steps)
    for name, msg in (("IKE_SA_INIT", init_resp), ("IKE_AUTH", auth_resp)):
        steps.record(f"the {name} response's version", "major 2, minor 0", f"{msg.major}.{msg.minor}",
                     ok=(msg.major, msg.minor) == (2, 0))
        assert msg.major == 2, f"{name} response: major version {msg.major}, expected 2"
        assert msg.minor == 0, f"{name} response: minor version {msg.minor}, expected 0"


@part("IKE.SGW-R.VER.4", "An IKE_SA_INIT of version 2.15 is answered with version 2.0 (the minor not echoed)",
      ["rfc7296-2.5-a", "rfc7296-3.1-g", "rfc7296-3.1-h"])
def test_minor_15_answered_as_2_0(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(minor=15), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT with version 2.15", "an IKE_SA_INIT response (SA, KE, Nr) of version 2.0",
                 f"{said(resp)}, version {resp.major}.{resp.minor}" if resp else "no answer",
                 ok=resp is not None and resp.get(c.SA) is not None and resp.version == c.VERSION_2_0)
    assert resp is not None and resp.get(c.SA) is not None, f"the minor version must be ignored: {said(resp)}"
    assert (resp.major, resp.minor) == (2, 0), f"response version {resp.major}.{resp.minor}, expected 2.0"


@part("IKE.SGW-R.VER.5", "An INFORMATIONAL request of version 2.9 on the IKE SA is answered, as version 2.0",
      ["rfc7296-3.1-h", "rfc7296-2.5-a", "rfc7296-3.1-g"])
def test_minor_version_in_informational(ike, steps):
    s, _, _ = established(ike, steps)
    resp = ike.exchange(s, s.informational_request([], minor=9))
    steps.record("empty INFORMATIONAL with version 2.9", "an INFORMATIONAL response of version 2.0",
                 f"{said(resp)}, version {resp.major}.{resp.minor}" if resp else "no answer",
                 ok=resp is not None and resp.ok and resp.version == c.VERSION_2_0)
    assert resp is not None and resp.ok and resp.response, f"the minor version must be ignored: {said(resp)}"
    assert (resp.major, resp.minor) == (2, 0), f"response version {resp.major}.{resp.minor}, expected 2.0"


@part("IKE.SGW-R.VER.6", "An IKE_AUTH request of version 2.1 establishes the child SA",
      ["rfc7296-3.1-h", "rfc7296-2.5-a"])
def test_minor_version_in_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, minor=1)
    steps.record("IKE_AUTH with version 2.1", "IDr, AUTH, SA, TSi, TSr: a child SA", said(resp), ok=ok)
    assert ok, f"the minor version must be ignored: {said(resp)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


@part("IKE.SGW-R.VER.7", "An IKE_SA_INIT with major version 15 is dropped: no SA is negotiated",
      ["rfc7296-2.5-b", "rfc7296-3.1-f"])
def test_major_15_sa_init_dropped(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(major=15), timeout=QUIET, port=c.IKE_PORT)
    ok = resp is None or (resp.get(c.SA) is None and resp.major == 2)
    steps.record("IKE_SA_INIT with version 15.0", "dropped (at most an INVALID_MAJOR_VERSION of version 2)",
                 said(resp), ok=ok)
    assert resp is None or resp.get(c.SA) is None, f"a version 15 message must be dropped, got {said(resp)}"
    if resp is not None:
        assert resp.major == 2, f"the INVALID_MAJOR_VERSION must carry the version the IUT speaks: {resp.major}"
        should(c.N_INVALID_MAJOR_VERSION in resp.notify_types(),
               f"an answer to a higher major version is INVALID_MAJOR_VERSION (got {notify_names(resp)})")


@part("IKE.SGW-R.VER.8", "An INFORMATIONAL Delete of the IKE SA with major version 3 is dropped, not acted on",
      ["rfc7296-2.5-b", "rfc7296-3.1-f"])
def test_major_3_informational_dropped(ike, steps):
    s, _, _ = established(ike, steps)
    mid = s.next_mid
    ike.send(s.delete_request(ike=True, major=3, message_id=mid))
    resp = anything_from_iut(ike, s, mid=mid)
    ok = resp is None or not resp.encrypted
    steps.record(f"INFORMATIONAL {{D(IKE)}} version 3.0, mid={mid}",
                 "dropped (at most an unprotected INVALID_MAJOR_VERSION)", said(resp), ok=ok)
    assert ok, f"a version 3 request must not be processed, got {said(resp)}"
    assert liveness(ike, s, steps), "the IKE SA was deleted by a version 3 message"
    assert still_carries_data(ike, s, steps), "the child SA no longer carries data"


# ---------------------------------------------------------------------------- header flags

@part("IKE.SGW-R.FLAG.1", "The IKE_SA_INIT response has R set, I, V and the X bits clear",
      ["rfc7296-3.1-j", "rfc7296-3.1-m", "rfc7296-3.1-l", "rfc7296-3.1-i"])
def test_sa_init_response_flags(ike, steps):
    s, resp = ike.init()
    steps.record("IKE_SA_INIT", "response flags: R=1 I=0 V=0 X=0 (0x20)", flags_text(resp), ok=resp.flags == c.FLAG_R)
    assert resp.response, f"R flag clear in a response: {flags_text(resp)}"
    assert not resp.initiator, f"I flag set by the original responder: {flags_text(resp)}"
    assert not resp.version_bit, f"V flag set by an IKEv2 node: {flags_text(resp)}"
    assert resp.reserved_flags == 0, f"X flag bits not zero: {flags_text(resp)}"


@part("IKE.SGW-R.FLAG.2", "IKE_AUTH and INFORMATIONAL responses have R set, I, V and the X bits clear",
      ["rfc7296-3.1-j", "rfc7296-3.1-m", "rfc7296-3.1-l", "rfc7296-3.1-i"])
def test_later_response_flags(ike, steps):
    s, _, auth_resp = established(ike, steps)
    info = ike.exchange(s, s.informational_request([]))
    steps.record("empty INFORMATIONAL", "an INFORMATIONAL response", said(info))
    assert info is not None, "no answer to an empty INFORMATIONAL"
    for name, msg in (("IKE_AUTH", auth_resp), ("INFORMATIONAL", info)):
        steps.record(f"the {name} response's flags", "R=1 I=0 V=0 X=0 (0x20)", flags_text(msg), ok=msg.flags == c.FLAG_R)
        assert msg.response, f"{name}: R flag clear in a response: {flags_text(msg)}"
        assert not msg.initiator, f"{name}: I flag set by the original responder: {flags_text(msg)}"
        assert not msg.version_bit, f"{name}: V flag set: {flags_text(msg)}"
        assert msg.reserved_flags == 0, f"{name}: X flag bits not zero: {flags_text(msg)}"


@part("IKE.SGW-R.FLAG.3", "An IKE_SA_INIT with the Version flag set is processed normally",
      ["rfc7296-3.1-l"])
def test_version_flag_ignored_sa_init(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(version_bit=True), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT with V=1", "a normal IKE_SA_INIT response (SA, KE, Nr), V clear", said(resp),
                 ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"the V flag must be ignored: {said(resp)}"
    assert not resp.version_bit, f"V flag set in the response: {flags_text(resp)}"


@part("IKE.SGW-R.FLAG.4", "IKE_AUTH and INFORMATIONAL requests with the Version flag set are processed normally",
      ["rfc7296-3.1-l"])
def test_version_flag_ignored_encrypted(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, version_bit=True)
    steps.record("IKE_AUTH with V=1", "a child SA", said(resp), ok=ok)
    assert ok, f"the V flag must be ignored in IKE_AUTH: {said(resp)}"
    info = ike.exchange(s, s.informational_request([], version_bit=True))
    ok = info is not None and info.ok and info.response
    steps.record("empty INFORMATIONAL with V=1", "an INFORMATIONAL response, V clear", said(info), ok=ok)
    assert ok, f"the V flag must be ignored in INFORMATIONAL: {said(info)}"
    assert not info.version_bit, f"V flag set in the response: {flags_text(info)}"


@part("IKE.SGW-R.FLAG.5", "An IKE_SA_INIT with every X flag bit set is processed; the response's X bits are zero",
      ["rfc7296-3.1-i", "rfc7296-2.5-f"])
def test_reserved_flags_sa_init(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(reserved_flags=X_FLAGS), port=c.IKE_PORT)
    steps.record(f"IKE_SA_INIT with flags 0x{c.FLAG_I | X_FLAGS:02x} (I + every X bit)",
                 "a normal IKE_SA_INIT response, X bits zero", f"{said(resp)}; {flags_text(resp)}" if resp else
                 "no answer", ok=resp is not None and resp.get(c.SA) is not None and resp.reserved_flags == 0)
    assert resp is not None and resp.get(c.SA) is not None, f"X flag bits must be ignored: {said(resp)}"
    assert resp.reserved_flags == 0, f"X flag bits set in the response: {flags_text(resp)}"


@part("IKE.SGW-R.FLAG.6", "IKE_AUTH and INFORMATIONAL requests with every X flag bit set are processed",
      ["rfc7296-3.1-i", "rfc7296-2.5-f"])
def test_reserved_flags_encrypted(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, reserved_flags=X_FLAGS)
    steps.record("IKE_AUTH with every X flag bit set", "a child SA", said(resp), ok=ok)
    assert ok, f"X flag bits must be ignored in IKE_AUTH: {said(resp)}"
    assert resp.reserved_flags == 0, f"X flag bits set in the IKE_AUTH response: {flags_text(resp)}"
    info = ike.exchange(s, s.informational_request([], reserved_flags=X_FLAGS))
    ok = info is not None and info.ok and info.response and info.reserved_flags == 0
    steps.record("empty INFORMATIONAL with every X flag bit set", "an INFORMATIONAL response, X bits zero",
                 f"{said(info)}; {flags_text(info)}" if info else "no answer", ok=ok)
    assert info is not None and info.ok, f"X flag bits must be ignored in INFORMATIONAL: {said(info)}"
    assert info.reserved_flags == 0, f"X flag bits set in the response: {flags_text(info)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


@part("IKE.SGW-R.FLAG.7", "An IKE_SA_INIT flagged as a response (R=1) is not answered",
      ["rfc7296-3.1-k", "rfc7296-2.21.4-a"])
def test_sa_init_with_r_flag_not_answered(ike, steps):
    s = ike.session()
    ike.send(s.sa_init_request(response=True), port=c.IKE_PORT)
    got = anything_from_iut(ike, s)
    steps.record("IKE_SA_INIT (SA, KE, Ni) with R=1", "no answer", "no answer" if got is None else
                 f"{c.exchange_name(got.exchange)} mid={got.message_id} flags 0x{got.flags:02x}", ok=got is None)
    assert got is None, "a message flagged as a response must never be answered"
    t = ike.session()
    resp = ike.exchange(t, t.sa_init_request(), port=c.IKE_PORT)
    steps.record("then a correct IKE_SA_INIT", "a normal response", said(resp), ok=resp is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"the IUT stopped answering: {said(resp)}"


@part("IKE.SGW-R.FLAG.8", "An IKE_AUTH flagged as a response is neither answered nor processed",
      ["rfc7296-3.1-k"])
def test_ike_auth_with_r_flag_not_answered(ike, steps):
    s, _ = ike.init()
    ike.send(s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, response=True, message_id=s.next_mid))
    got = anything_from_iut(ike, s)
    steps.record("IKE_AUTH (IDi, AUTH, CP, SA, TSi, TSr) with R=1, mid=1", "no answer", said(got), ok=got is None)
    assert got is None, f"a message flagged as a response must never be answered, got {said(got)}"
    resp, ok = auth(ike, s)
    steps.record("then the IKE_AUTH request (R=0), mid=1", "a child SA", said(resp), ok=ok)
    assert ok, f"the correct IKE_AUTH after it failed: {said(resp)}"


@part("IKE.SGW-R.FLAG.9", "On the IKE SA, a Delete flagged as a response where a request belongs is ignored",
      ["rfc7296-3.1-k"])
def test_informational_with_r_flag_ignored(ike, steps):
    s, _, _ = established(ike, steps)
    mid = s.next_mid
    ike.send(s.delete_request(ike=True, response=True, message_id=mid))
    got = anything_from_iut(ike, s)
    steps.record(f"INFORMATIONAL {{D(IKE)}} with R=1, mid={mid} (the next request's ID)", "no answer, SA kept",
                 said(got), ok=got is None)
    assert got is None, f"a message flagged as a response must never be answered, got {said(got)}"
    assert liveness(ike, s, steps, f"then an empty INFORMATIONAL request, mid={mid}"), \
        "the IKE SA was deleted by a Delete flagged as a response"
    assert still_carries_data(ike, s, steps), "the child SA no longer carries data"


# ---------------------------------------------------------------------------- RESERVED in payload headers

@part("IKE.SGW-R.RSV.1", "An IKE_SA_INIT whose every payload header has RESERVED bits set is processed normally",
      ["rfc7296-3.2-f", "rfc7296-2.5-f"])
def test_payload_reserved_sa_init(ike, steps):
    s = ike.session()
    pl = [p.with_(reserved=0x7F) for p in init_payloads(s)]
    resp = ike.exchange(s, s.sa_init_request(payloads=pl), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT, RESERVED=0x7f in SA, KE, Ni, N, N", "a normal response (SA, KE, Nr)", said(resp),
                 ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"RESERVED must be ignored: {said(resp)}"


@part("IKE.SGW-R.RSV.2", "An IKE_AUTH with RESERVED bits set in SK and every inner payload header establishes the SA",
      ["rfc7296-3.2-f", "rfc7296-2.5-f"])
def test_payload_reserved_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, lambda pl: [m.SkPayload([p.with_(reserved=0x55) for p in pl], reserved=0x2A)])
    steps.record("IKE_AUTH: SK RESERVED=0x2a, IDi/AUTH/CP/SA/TSi/TSr RESERVED=0x55", "a child SA", said(resp), ok=ok)
    assert ok, f"RESERVED must be ignored: {said(resp)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


@part("IKE.SGW-R.RSV.3", "The payload headers of the IUT's responses have RESERVED zero",
      ["rfc7296-3.2-f", "rfc7296-2.5-f"])
def test_response_payload_reserved_zero(ike, steps):
    s, init_resp, auth_resp = established(ike, steps)
    info = ike.exchange(s, s.informational_request([]))
    assert info is not None, "no answer to an empty INFORMATIONAL"
    for name, msg in (("IKE_SA_INIT", init_resp), ("IKE_AUTH", auth_resp), ("INFORMATIONAL", info)):
        bad = bad_payload_headers(msg, critical=False)
        steps.record(f"the {name} response's payload headers", "RESERVED 0 everywhere", bad or "all zero", ok=not bad)
        assert not bad, f"{name} response: RESERVED not zero in {bad}"


# ---------------------------------------------------------------------------- unknown payloads and the critical bit

@part("IKE.SGW-R.UNK.1", "An unknown non-critical payload in IKE_SA_INIT is skipped",
      ["rfc7296-2.5-g", "rfc7296-2.5-i", "rfc7296-4-b"])
def test_unknown_noncritical_sa_init(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(extra=[m.unknown(UNKNOWN, b"future" * 3)]), port=c.IKE_PORT)
    steps.record(f"IKE_SA_INIT with a payload of type {UNKNOWN}, C=0", "a normal response (SA, KE, Nr)",
                 said(resp), ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"the unknown payload must be skipped: {said(resp)}"
    assert c.N_UNSUPPORTED_CRITICAL_PAYLOAD not in resp.notify_types(), notify_names(resp)


@part("IKE.SGW-R.UNK.2", "An unknown non-critical payload inside SK in IKE_AUTH is skipped",
      ["rfc7296-2.5-g", "rfc7296-2.5-i", "rfc7296-4-b"])
def test_unknown_noncritical_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, extra=[m.unknown(UNKNOWN, b"\x00" * 11)])
    steps.record(f"IKE_AUTH with a payload of type {UNKNOWN}, C=0, inside SK", "a child SA", said(resp), ok=ok)
    assert ok, f"the unknown payload must be skipped: {said(resp)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


@part("IKE.SGW-R.UNK.3", "An unknown non-critical payload in an INFORMATIONAL request is skipped, no error",
      ["rfc7296-2.5-g", "rfc7296-2.5-i"])
def test_unknown_noncritical_informational(ike, steps):
    s, _, _ = established(ike, steps)
    resp = ike.exchange(s, s.informational_request([m.unknown(UNKNOWN, b"\xff" * 8)]))
    errors = [t for t in (resp.notify_types() if resp else []) if t is not None and t < 16384]
    ok = resp is not None and resp.ok and resp.response and not errors
    steps.record(f"INFORMATIONAL {{payload type {UNKNOWN}, C=0}}", "an INFORMATIONAL response without error notify",
                 said(resp), ok=ok)
    assert resp is not None and resp.ok, f"no answer: {said(resp)}"
    assert not errors, f"an unknown non-critical payload must be ignored, got {notify_names(resp)}"


@part("IKE.SGW-R.UNK.4", "Unknown non-critical payloads first and between known ones, empty or long, are skipped",
      ["rfc7296-2.5-g", "rfc7296-2.5-i", "rfc7296-4-b"])
def test_unknown_noncritical_interleaved(ike, steps):
    s = ike.session()
    sa_p, ke_p, *rest = init_payloads(s)
    pl = [m.unknown(130), sa_p, m.unknown(UNKNOWN, bytes(range(256)) * 2), ke_p, m.unknown(255, b"z")] + rest
    resp = ike.exchange(s, s.sa_init_request(payloads=pl), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT: type 130 (empty), SA, type 200 (512 bytes), KE, type 255, Ni, N, N; all C=0",
                 "a normal response (SA, KE, Nr)", said(resp), ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"unknown payloads must be skipped: {said(resp)}"


@part("IKE.SGW-R.CRIT.2", "An unknown critical payload in IKE_SA_INIT gets UNSUPPORTED_CRITICAL_PAYLOAD, no SA",
      ["rfc7296-2.5-h", "rfc7296-4-c", "rfc7296-2.21.2-b"])
def test_unknown_critical_sa_init(ike, steps):
    s = ike.session()
    resp = ike.exchange(s, s.sa_init_request(extra=[m.unknown(UNKNOWN, b"x" * 4, critical=True)]),
                        port=c.IKE_PORT)
    steps.record(f"IKE_SA_INIT with a payload of type {UNKNOWN}, C=1",
                 f"UNSUPPORTED_CRITICAL_PAYLOAD (data {UNKNOWN}) and no SA", said(resp))
    assert resp is not None, "no answer: the response must include UNSUPPORTED_CRITICAL_PAYLOAD"
    n = resp.notify(c.N_UNSUPPORTED_CRITICAL_PAYLOAD)
    assert n is not None, f"expected UNSUPPORTED_CRITICAL_PAYLOAD, got {notify_names(resp)}"
    assert resp.get(c.SA) is None and resp.get(c.KE) is None, f"the message must be rejected entirely: {said(resp)}"
    assert n.fields["data"][:1] == bytes([UNKNOWN]), f"the notify data must be the payload type: {n.fields['data'].hex()}"


@part("IKE.SGW-R.CRIT.3", "An unknown critical payload in IKE_AUTH gets only UNSUPPORTED_CRITICAL_PAYLOAD",
      ["rfc7296-2.5-h", "rfc7296-2.21.2-b"])
def test_unknown_critical_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, extra=[m.unknown(UNKNOWN, b"x" * 4, critical=True)])
    steps.record(f"IKE_AUTH with a payload of type {UNKNOWN}, C=1, inside SK",
                 "UNSUPPORTED_CRITICAL_PAYLOAD only: no IDr, AUTH, SA", said(resp), ok=resp is not None and not ok)
    assert resp is not None, "no answer: the response must include UNSUPPORTED_CRITICAL_PAYLOAD"
    assert c.N_UNSUPPORTED_CRITICAL_PAYLOAD in resp.notify_types(), f"got {notify_names(resp)}"
    accepted = [p.describe() for p in resp.all if p.type in (c.IDR, c.AUTH, c.SA, c.TSI, c.TSR, c.CP)]
    assert not accepted, f"the request must be rejected in its entirety, the response carries {accepted}"


@part("IKE.SGW-R.CRIT.4", "Known payloads with the critical bit set in IKE_SA_INIT are processed normally",
      ["rfc7296-3.2-c", "rfc7296-3.2-e"])
def test_known_critical_sa_init(ike, steps):
    s = ike.session()
    pl = [p.with_(critical=True) for p in init_payloads(s)]
    resp = ike.exchange(s, s.sa_init_request(payloads=pl), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT, C=1 on SA, KE, Ni, N, N", "a normal response (SA, KE, Nr)", said(resp),
                 ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"C must be ignored on known payloads: {said(resp)}"
    assert c.N_UNSUPPORTED_CRITICAL_PAYLOAD not in resp.notify_types(), notify_names(resp)


@part("IKE.SGW-R.CRIT.5", "An IKE_AUTH with the critical bit on SK and every known inner payload establishes the SA",
      ["rfc7296-3.2-c", "rfc7296-3.2-e"])
def test_known_critical_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, lambda pl: [m.SkPayload([p.with_(critical=True) for p in pl], critical=True)])
    steps.record("IKE_AUTH, C=1 on SK, IDi, AUTH, CP, SA, TSi, TSr", "a child SA", said(resp), ok=ok)
    assert ok, f"C must be ignored on known payloads: {said(resp)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


@part("IKE.SGW-R.CRIT.6", "No payload of the IUT's responses has the critical bit set",
      ["rfc7296-2.5-j", "rfc7296-3.2-d"])
def test_responses_not_critical(ike, steps):
    s, init_resp, auth_resp = established(ike, steps)
    err = ike.exchange(s, s.informational_request([m.unknown(UNKNOWN, b"x", critical=True)]))
    steps.record("INFORMATIONAL with an unknown critical payload", "an error response", said(err))
    assert err is not None, "no answer to an INFORMATIONAL with an unknown critical payload"
    for name, msg in (("IKE_SA_INIT", init_resp), ("IKE_AUTH", auth_resp), ("INFORMATIONAL error", err)):
        bad = bad_payload_headers(msg, reserved=False)
        steps.record(f"the {name} response's payload headers", "C=0 everywhere", bad or "all C=0", ok=not bad)
        assert not bad, f"{name} response: critical bit set on {bad}"


@part("IKE.SGW-R.CRIT.7", "An INFORMATIONAL Delete with an unknown critical payload is rejected: the SA stays",
      ["rfc7296-2.21.2-b", "rfc7296-2.5-h"])
def test_unknown_critical_rejects_whole_message(ike, steps):
    s, _, _ = established(ike, steps)
    assert liveness(ike, s, steps, "an empty INFORMATIONAL first"), "no answer to an empty INFORMATIONAL"
    req = s.informational_request([m.unknown(UNKNOWN, b"x" * 4, critical=True), m.delete(c.PROTO_IKE, [])])
    resp = ike.exchange(s, req)
    ok = resp is not None and c.N_UNSUPPORTED_CRITICAL_PAYLOAD in resp.notify_types() and resp.get(c.DELETE) is None
    steps.record(f"INFORMATIONAL {{type {UNKNOWN} C=1, D(IKE)}}", "UNSUPPORTED_CRITICAL_PAYLOAD, the Delete ignored",
                 said(resp), ok=ok)
    assert resp is not None, "no answer: the response must include UNSUPPORTED_CRITICAL_PAYLOAD"
    assert c.N_UNSUPPORTED_CRITICAL_PAYLOAD in resp.notify_types(), f"got {notify_names(resp)}"
    assert liveness(ike, s, steps), "the Delete of a rejected message was acted on: the IKE SA is gone"


# ---------------------------------------------------------------------------- payload order

@part("IKE.SGW-R.ORDER.1", "An IKE_SA_INIT with its payloads in another order is accepted",
      ["rfc7296-2.5-k"])
def test_payload_order_sa_init(ike, steps):
    s = ike.session()
    sa_p, ke_p, ni_p, n_src, n_dst = init_payloads(s)
    resp = ike.exchange(s, s.sa_init_request(payloads=[n_dst, ni_p, n_src, ke_p, sa_p]), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT as N(NAT_D_DST), Ni, N(NAT_D_SRC), KE, SA", "a normal response (SA, KE, Nr)",
                 said(resp), ok=resp is not None and resp.get(c.SA) is not None)
    assert resp is not None and resp.get(c.SA) is not None, f"another payload order must not be rejected: {said(resp)}"


@part("IKE.SGW-R.ORDER.2", "An IKE_AUTH with its inner payloads in another order establishes the SA",
      ["rfc7296-2.5-k"])
def test_payload_order_ike_auth(ike, steps):
    s, _ = ike.init()
    resp, ok = auth(ike, s, lambda pl: list(reversed(pl)))
    steps.record("IKE_AUTH SK{TSr, TSi, SA, CP, AUTH, IDi}", "a child SA", said(resp), ok=ok)
    assert ok, f"another payload order must not be rejected: {said(resp)}"
    assert still_carries_data(ike, s, steps), "no echo reply through the child SA"


# ---------------------------------------------------------------------------- lengths

def _malformed_sa_init(ike, steps, what: str, build):
    """Send a malformed IKE_SA_INIT (`build(session)` -> bytes), expect it rejected, then prove the IUT
    still answers a correct one."""
    s = ike.session()
    ike.send(build(s), port=c.IKE_PORT)
    resp = ike.answer_to(s, 0, timeout=QUIET)
    steps.record(what, "rejected: no answer, or an answer without SA", said(resp), ok=sa_init_rejected(resp))
    assert sa_init_rejected(resp), f"a malformed IKE_SA_INIT was accepted: {said(resp)}"
    t = ike.session()
    good = ike.exchange(t, t.sa_init_request(), port=c.IKE_PORT)
    steps.record("then a correct IKE_SA_INIT", "a normal response", said(good), ok=good is not None)
    assert good is not None and good.get(c.SA) is not None, f"the IUT stopped answering: {said(good)}"


@part("IKE.SGW-R.LEN.1", "An IKE_SA_INIT whose header Length exceeds the datagram is rejected",
      ["rfc7296-2.21.2-b"])
def test_header_length_too_long_sa_init(ike, steps):
    def build(s):
        n = len(s.sa_init_request())
        return s.sa_init_request(length=n + 16)
    _malformed_sa_init(ike, steps, "IKE_SA_INIT, header Length = datagram + 16", build)


@part("IKE.SGW-R.LEN.2", "An IKE_SA_INIT whose header Length is shorter than its payload chain is rejected",
      ["rfc7296-2.21.2-b"])
def test_header_length_too_short_sa_init(ike, steps):
    def build(s):
        n = len(s.sa_init_request())
        return s.sa_init_request(length=n - 8)
    _malformed_sa_init(ike, steps, "IKE_SA_INIT, header Length = datagram - 8", build)


@part("IKE.SGW-R.LEN.3", "An IKE_SA_INIT whose last payload's Length runs past the end is rejected",
      ["rfc7296-2.21.2-b"])
def test_payload_length_past_end_sa_init(ike, steps):
    def build(s):
        pl = init_payloads(s)
        last = pl[-1]
        pl[-1] = last.with_(length=4 + len(last.body) + 12)
        return s.sa_init_request(payloads=pl)
    _malformed_sa_init(ike, steps, "IKE_SA_INIT, the last N's Payload Length 12 bytes past the datagram", build)


@part("IKE.SGW-R.LEN.4", "An IKE_SA_INIT with an SA payload Length of 0 is rejected and the IUT keeps answering",
      ["rfc7296-2.21.2-b"])
def test_payload_length_zero_sa_init(ike, steps):
    def build(s):
        pl = init_payloads(s)
        pl[0] = pl[0].with_(length=0)
        return s.sa_init_request(payloads=pl)
    _malformed_sa_init(ike, steps, "IKE_SA_INIT, SA Payload Length 0", build)


@part("IKE.SGW-R.LEN.5", "An INFORMATIONAL Delete whose header Length exceeds the datagram is not acted on",
      ["rfc7296-2.21.2-b"])
def test_header_length_too_long_informational(ike, steps):
    s, _, _ = established(ike, steps)
    mid = s.next_mid
    n = len(s.delete_request(ike=True, message_id=mid))
    ike.send(s.delete_request(ike=True, message_id=mid, length=n + 16))
    _judge_dropped(ike, steps, s, mid, "INFORMATIONAL {D(IKE)}, header Length = datagram + 16")


@part("IKE.SGW-R.LEN.6", "An INFORMATIONAL Delete whose SK payload Length runs past the end is not acted on",
      ["rfc7296-2.21.2-b"])
def test_sk_length_past_end_informational(ike, steps):
    s, _, _ = established(ike, steps)
    mid = s.next_mid
    probe = s.delete_request(ike=True, message_id=mid)
    sk_len = len(probe) - c.IKE_HEADER_LEN
    ike.send(s.informational_request([m.SkPayload([m.delete(c.PROTO_IKE, [])], length=sk_len + 16)], message_id=mid))
    _judge_dropped(ike, steps, s, mid, f"INFORMATIONAL {{D(IKE)}}, SK Payload Length {sk_len + 16} (16 past the end)")


def _judge_dropped(ike, steps, s, mid: int, what: str):
    got = anything_from_iut(ike, s, mid=mid)
    processed = got is not None and got.ok and got.response and c.N_INVALID_SYNTAX not in got.notify_types()
    steps.record(f"{what}, mid={mid}", "dropped (or INVALID_SYNTAX), the Delete not acted on", said(got),
                 ok=not processed)
    assert not processed, f"a message with a wrong length was processed: {said(got)}"
    if got is None:
        assert liveness(ike, s, steps, f"then an empty INFORMATIONAL, mid={mid}"), \
            "the IKE SA was deleted by a message with a wrong length"
        assert still_carries_data(ike, s, steps), "the child SA no longer carries data"
