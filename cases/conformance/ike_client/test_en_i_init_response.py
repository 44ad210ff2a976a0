"""EN-I: what the client does with the gateway's answer to its IKE_SA_INIT: INVALID_KE_PAYLOAD,
COOKIE, error and unknown notifies, unknown payloads, other versions and flags (RFC 7296 sections
1.2, 2.5, 2.6, 2.6.1, 3.1, 3.2, 3.10.1)."""
import os
import struct

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.parse import parse_message
from testbed.conformance.parts import inconclusive, part, should


def offered_groups(msg) -> list[int]:
    out = []
    for p in msg.get(c.SA).fields["proposals"]:
        for t in p["transforms"]:
            if t["type"] == c.T_DH and t["id"] not in out:
                out.append(t["id"])
    return out


def proposal_set(msg) -> list:
    """Each proposal's transforms as a set (the order of the DH groups may change: the requested one
    first), in proposal order."""
    return [sorted({(t["type"], t["id"], t["key_len"]) for t in p["transforms"]})
            for p in msg.get(c.SA).fields["proposals"]]


def refuse(gw, r, notify, **kw):
    """Answer the IKE_SA_INIT `r` with an error notify (SPIr 0); returns the session used."""
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    gw.answer_init(r, s.sa_init_error(notify, **kw))
    return s


def invalid_ke(gw, r, steps):
    """INVALID_KE_PAYLOAD naming a group the client offers but did not send KE for."""
    msg = parse_message(r.data)
    sent = msg.get(c.KE).fields["group"]
    other = [g for g in offered_groups(msg) if g != sent]
    if not other:
        inconclusive(f"the client offers only group {sent}: no other group to ask for")
    refuse(gw, r, m.notify(c.N_INVALID_KE_PAYLOAD, struct.pack("!H", other[0])))
    steps.record("answer the IKE_SA_INIT (KE group %d) with INVALID_KE_PAYLOAD(%d)" % (sent, other[0]))
    return msg, other[0]


@part("IKE.EN-I.KE.1", "After INVALID_KE_PAYLOAD the client retries IKE_SA_INIT with a KE of the requested group",
      ["rfc7296-1.2-d", "rfc7296-3.3.6-i"])
def test_invalid_ke_retry_group(gw, steps):
    first, group = invalid_ke(gw, gw.first_init(), steps)
    again = gw.init_retry(timeout=3.0)
    got = parse_message(again.data) if again else None
    steps.record("wait for the retry", f"IKE_SA_INIT with KE of group {group}",
                 f"KE group {got.get(c.KE).fields['group']}" if got and got.get(c.KE) else (got.summary() if got else "nothing"),
                 ok=bool(got and got.get(c.KE) and got.get(c.KE).fields["group"] == group))
    assert got is not None, "no new IKE_SA_INIT within 3 s"
    assert got.get(c.KE) is not None and got.get(c.KE).fields["group"] == group, got.summary()


@part("IKE.EN-I.KE.2", "The retry after INVALID_KE_PAYLOAD still offers the complete set of proposals",
      ["rfc7296-1.2-e", "rfc7296-3.3.6-j"])
def test_invalid_ke_retry_full_set(gw, steps):
    first, group = invalid_ke(gw, gw.first_init(), steps)
    again = gw.init_retry(timeout=3.0)
    assert again is not None, "no new IKE_SA_INIT within 3 s"
    got = parse_message(again.data)
    steps.record("compare the retry's SA payload with the first one", "the same proposals and DH groups",
                 f"first {offered_groups(first)}, retry {offered_groups(got)}", ok=proposal_set(got) == proposal_set(first))
    assert proposal_set(got) == proposal_set(first), \
        f"proposals changed: first {proposal_set(first)}, retry {proposal_set(got)}"


@part("IKE.EN-I.KE.3", "The retry after INVALID_KE_PAYLOAD has Message ID 0 and SPIr 0, and IKE_SA_INIT then completes",
      ["rfc7296-3.1-c", "rfc7296-1.2-d"])
def test_invalid_ke_retry_header(gw, steps):
    first, group = invalid_ke(gw, gw.first_init(), steps)
    again = gw.init_retry(timeout=3.0)
    assert again is not None, "no new IKE_SA_INIT within 3 s"
    got = parse_message(again.data)
    steps.record("wait for the retry", "Message ID 0, SPIr 0 (RFC 7296 2.6.1 shows the same SPIi)",
                 f"mid {got.message_id}, SPIr {got.spi_r.hex()}, SPIi {'the same' if got.spi_i == first.spi_i else 'a new one'}")
    assert got.message_id == 0 and got.spi_r == bytes(8), f"mid {got.message_id}, SPIr {got.spi_r.hex()}"
    s, _ = gw.accept_init(again)
    r, auth = gw.auth_request(s)
    steps.record("accept the retry", "IKE_AUTH (Message ID 1) on the new IKE SA", auth.summary() if auth else "nothing",
                 ok=bool(auth and auth.ok))
    assert r is not None and auth.ok, "no IKE_AUTH after the accepted retry"
    assert auth.message_id == 1, f"IKE_AUTH with Message ID {auth.message_id}"


@part("IKE.EN-I.KE.4", "After INVALID_KE_PAYLOAD for a group it did not propose, the client never sends KE of an unproposed group",
      ["rfc7296-3.4-b"])
def test_invalid_ke_unoffered_group(gw, steps):
    r = gw.first_init()
    msg = parse_message(r.data)
    group = next(g for g in (16, 15, 21, 20, 32, 14, 19, 31) if g not in offered_groups(msg))
    refuse(gw, r, m.notify(c.N_INVALID_KE_PAYLOAD, struct.pack("!H", group)))
    again = gw.init_retry(timeout=1.5)
    got = parse_message(again.data) if again else None
    steps.record(f"INVALID_KE_PAYLOAD({group}), a group not offered", "no KE of a group outside its SA payload",
                 got.summary() + f" KE {got.get(c.KE).fields['group']}, offers {offered_groups(got)}" if got and got.get(c.KE)
                 else "no retry")
    if got is not None and got.get(c.KE) is not None:
        assert got.get(c.KE).fields["group"] in offered_groups(got), \
            f"KE of group {got.get(c.KE).fields['group']} while proposing {offered_groups(got)}"


def cookie_round(gw, steps, cookie: bytes, spi_r: bytes | None = None):
    r = gw.first_init()
    first = parse_message(r.data)
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    kw = {"spi_r": spi_r} if spi_r is not None else {}
    data = s.message(c.IKE_SA_INIT, [m.notify(c.N_COOKIE, cookie)], response=True, encrypt=False, message_id=0,
                     **({"spi_r": bytes(8)} | kw))
    gw.answer_init(r, data)
    steps.record(f"answer IKE_SA_INIT with N(COOKIE) of {len(cookie)} octets" + (f", SPIr {spi_r.hex()}" if spi_r else ""))
    again = gw.init_retry(timeout=3.0)
    return first, (parse_message(again.data) if again else None), again


@part("IKE.EN-I.COOKIE.1", "After a COOKIE the client retries with N(COOKIE) as the first payload, echoing the data",
      ["rfc7296-2.6-d"])
def test_cookie_echoed_first(gw, steps):
    cookie = os.urandom(16)
    first, got, _ = cookie_round(gw, steps, cookie)
    ok = bool(got and got.payloads and got.payloads[0].type == c.NOTIFY
              and got.payloads[0].fields.get("notify_type") == c.N_COOKIE and got.payloads[0].fields["data"] == cookie)
    steps.record("wait for the retry", "N(COOKIE) with the same data, first", got.summary() if got else "nothing", ok=ok)
    assert got is not None, "no retry within 3 s"
    assert ok, f"the retry does not start with N(COOKIE) echoing the cookie: {got.summary()}"


@part("IKE.EN-I.COOKIE.2", "The retry with the cookie leaves all other payloads unchanged",
      ["rfc7296-2.6-d"])
def test_cookie_other_payloads_unchanged(gw, steps):
    first, got, _ = cookie_round(gw, steps, os.urandom(24))
    assert got is not None, "no retry within 3 s"
    before = [(p.type, p.body) for p in first.payloads]
    after = [(p.type, p.body) for p in got.payloads[1:]]
    steps.record("compare the retry without its cookie to the first request", "the same payloads, the same bytes",
                 f"{len(after)} payloads, equal: {after == before}", ok=after == before)
    assert [t for t, _ in after] == [t for t, _ in before], f"payloads {got.summary()} after {first.summary()}"
    assert after == before, "payload contents changed: " + ", ".join(
        c.payload_name(t) for (t, b), (_, b2) in zip(before, after) if b != b2)


@part("IKE.EN-I.COOKIE.3", "The retry with the cookie has Message ID 0 and SPIr 0; the following IKE_AUTH has Message ID 1",
      ["rfc7296-3.1-c", "rfc7296-2.6-d"])
def test_cookie_retry_header(gw, steps):
    first, got, again = cookie_round(gw, steps, os.urandom(8))
    assert got is not None, "no retry within 3 s"
    steps.record("wait for the retry", "Message ID 0, SPIr 0 (RFC 7296 2.6: HDR(A,0))",
                 f"mid {got.message_id}, SPIr {got.spi_r.hex()}, SPIi {'the same' if got.spi_i == first.spi_i else 'a new one'}",
                 ok=got.message_id == 0 and got.spi_r == bytes(8))
    assert got.message_id == 0 and got.spi_r == bytes(8), f"mid {got.message_id}, SPIr {got.spi_r.hex()}"
    s, _ = gw.accept_init(again)
    r, auth = gw.auth_request(s)
    steps.record("accept it", "IKE_AUTH with Message ID 1", auth.summary() if auth else "nothing")
    assert auth is not None and auth.message_id == 1, auth.summary() if auth else "no IKE_AUTH"


@part("IKE.EN-I.COOKIE.4", "A cookie of 64 octets (the maximum) is echoed exactly", ["rfc7296-2.6-d"])
def test_cookie_64(gw, steps):
    cookie = os.urandom(64)
    first, got, _ = cookie_round(gw, steps, cookie)
    echoed = got.notify(c.N_COOKIE).fields["data"] if got and got.notify(c.N_COOKIE) else None
    steps.record("wait for the retry", "the 64 octets back", f"{len(echoed)} octets, equal: {echoed == cookie}"
                 if echoed is not None else (got.summary() if got else "nothing"), ok=echoed == cookie)
    assert echoed == cookie, "the cookie is not echoed exactly"


@part("IKE.EN-I.COOKIE.5", "COOKIE then INVALID_KE_PAYLOAD: the client still completes IKE_SA_INIT",
      ["rfc7296-2.6.1-a", "rfc7296-2.6-d", "rfc7296-1.2-d"])
def test_cookie_then_invalid_ke(gw, steps):
    cookie = os.urandom(16)
    first, got, again = cookie_round(gw, steps, cookie)
    assert got is not None and got.notify(c.N_COOKIE) is not None, "no retry with the cookie"
    sent = got.get(c.KE).fields["group"]
    other = [g for g in offered_groups(got) if g != sent]
    if not other:
        inconclusive(f"the client offers only group {sent}")
    refuse(gw, again, m.notify(c.N_INVALID_KE_PAYLOAD, struct.pack("!H", other[0])))
    steps.record(f"answer the retry with INVALID_KE_PAYLOAD({other[0]})")
    kept = None
    for _ in range(3):
        nxt = gw.init_retry(timeout=3.0)
        assert nxt is not None, "the client stopped retrying IKE_SA_INIT"
        msg = parse_message(nxt.data)
        ck = msg.notify(c.N_COOKIE)
        if kept is None:
            kept = ck is not None and ck.fields["data"] == cookie
        if ck is None or ck.fields["data"] != cookie:
            refuse(gw, nxt, m.notify(c.N_COOKIE, cookie))
            steps.record("a retry without the cookie: ask for it again", observed=msg.summary())
            continue
        steps.record("a retry with the cookie", f"KE of group {other[0]}", msg.summary())
        assert msg.get(c.KE).fields["group"] == other[0], f"KE group {msg.get(c.KE).fields['group']}"
        s, _ = gw.accept_init(nxt)
        r, auth = gw.auth_request(s)
        steps.record("accept it", "IKE_AUTH", auth.summary() if auth else "nothing", ok=auth is not None)
        assert auth is not None, "no IKE_AUTH after IKE_SA_INIT completed"
        should(kept, "the cookie kept in the retry after INVALID_KE_PAYLOAD (the shorter exchange of RFC 7296 2.6.1)")
        return
    raise AssertionError("IKE_SA_INIT did not complete within three more retries")


@part("IKE.EN-I.COOKIE.6", "A COOKIE response with a non-zero responder SPI still gets the retry with the cookie",
      ["rfc7296-2.6-d"])
def test_cookie_nonzero_spir(gw, steps):
    cookie = os.urandom(16)
    first, got, _ = cookie_round(gw, steps, cookie, spi_r=os.urandom(8))
    ok = bool(got and got.notify(c.N_COOKIE) and got.notify(c.N_COOKIE).fields["data"] == cookie)
    steps.record("wait for the retry", "N(COOKIE) echoed (RFC 7296 2.6: should not reject for the SPI alone)",
                 got.summary() if got else "nothing", ok=ok)
    should(ok, "a retry with the cookie after a COOKIE response whose responder SPI is not zero")


def no_auth_after(gw, steps, r, what: str, wait: float = 1.0):
    spi = parse_message(r.data).spi_i
    later = gw.silence(spi_i=spi, timeout=wait)
    msg = parse_message(later.data) if later else None
    steps.record(f"wait {wait} s after {what}", "no IKE_AUTH (the request failed)", msg.summary() if msg else "nothing",
                 ok=not (msg and msg.exchange == c.IKE_AUTH))
    assert not (msg and msg.exchange == c.IKE_AUTH), f"IKE_AUTH after {what}: {msg.summary()}"
    return msg


@part("IKE.EN-I.ERR.1", "After NO_PROPOSAL_CHOSEN the client sends no IKE_AUTH", ["rfc7296-3.10.1-a"])
def test_no_proposal_chosen(gw, steps):
    r = gw.first_init()
    refuse(gw, r, m.notify(c.N_NO_PROPOSAL_CHOSEN))
    steps.record("answer IKE_SA_INIT with NO_PROPOSAL_CHOSEN")
    no_auth_after(gw, steps, r, "NO_PROPOSAL_CHOSEN")


@part("IKE.EN-I.ERR.2", "An unknown error notify type alone in the response fails the request: no IKE_AUTH",
      ["rfc7296-3.10.1-a"])
def test_unknown_error_notify(gw, steps):
    r = gw.first_init()
    refuse(gw, r, m.notify(8191))
    steps.record("answer IKE_SA_INIT with only N(8191), an unassigned error type")
    no_auth_after(gw, steps, r, "N(8191)")


def proceeds(gw, steps, what: str, **kw):
    """Answer the first IKE_SA_INIT (with `kw` to sa_init_response) and expect IKE_AUTH on it."""
    s, _ = gw.accept_init(**kw)
    steps.record(f"answer IKE_SA_INIT with {what}")
    r, auth = gw.auth_request(s)
    steps.record("wait for IKE_AUTH", "IKE_AUTH whose AUTH verifies with the keys of this response",
                 auth.summary() if auth else "nothing", ok=bool(auth and auth.ok and s.peer_auth_ok))
    assert r is not None, f"no IKE_AUTH after a response with {what}"
    assert auth.ok and s.peer_auth_ok, f"IKE_AUTH does not verify: {auth.summary()} (AUTH {s.peer_auth_ok})"
    return s, r


@part("IKE.EN-I.ERR.3", "An unknown status notify in the IKE_SA_INIT response is ignored: IKE_AUTH follows",
      ["rfc7296-3.10.1-b", "rfc7296-3.10.1-c"])
def test_unknown_status_notify(gw, steps):
    proceeds(gw, steps, "N(40000), an unassigned status type", extra=[m.notify(40000, b"status")])


@part("IKE.EN-I.CRIT.1", "An unknown payload without the critical bit in the response is skipped: IKE_AUTH follows",
      ["rfc7296-2.5-g", "rfc7296-2.5-i", "rfc7296-4-b"])
def test_unknown_noncritical_payload(gw, steps):
    proceeds(gw, steps, "an unknown payload type 200, not critical", extra=[m.unknown(200, b"future" * 3)])


@part("IKE.EN-I.CRIT.2", "An unknown payload with the critical bit set in the response makes the client reject it: no IKE_AUTH",
      ["rfc7296-4-c", "rfc7296-3.2-b"])
def test_unknown_critical_payload(gw, steps):
    r = gw.first_init()
    s, _ = gw.accept_init(r, extra=[m.unknown(200, b"future" * 3, critical=True)])
    steps.record("answer IKE_SA_INIT with an unknown payload type 200, critical")
    no_auth_after(gw, steps, r, "a response with an unknown critical payload")


@part("IKE.EN-I.CRIT.3", "A known payload with the critical bit set (the Nonce) is processed normally",
      ["rfc7296-3.2-c", "rfc7296-3.2-e"])
def test_known_payload_critical(gw, steps):
    r = gw.first_init()
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    pl = gw.init_payloads(s)
    pl[2] = pl[2].with_(critical=True)
    s2, r2 = proceeds_with(gw, steps, s, r, pl, "Nr with the critical bit set")


def proceeds_with(gw, steps, s, r, payloads, what):
    gw.send(s, s.sa_init_response(payloads=payloads), to=r)
    steps.record(f"answer IKE_SA_INIT with {what}")
    ra, auth = gw.auth_request(s)
    steps.record("wait for IKE_AUTH", "IKE_AUTH whose AUTH verifies", auth.summary() if auth else "nothing",
                 ok=bool(auth and auth.ok and s.peer_auth_ok))
    assert ra is not None, f"no IKE_AUTH after a response with {what}"
    assert auth.ok and s.peer_auth_ok, f"IKE_AUTH does not verify: {auth.summary()}"
    return s, ra


@part("IKE.EN-I.CRIT.4", "An unknown Vendor ID in the response is ignored", ["rfc7296-3.12-b"])
def test_unknown_vendor_id(gw, steps):
    proceeds(gw, steps, "a Vendor ID nobody knows", extra=[m.vendor_id(os.urandom(16))])


@part("IKE.EN-I.CRIT.5", "A response with its payloads in another order (NAT_DETECTION, Nr, KEr, SA) is accepted",
      ["rfc7296-1.7-e", "rfc7296-2.5-k"])
def test_payload_order(gw, steps):
    r = gw.first_init()
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    pl = gw.init_payloads(s)
    proceeds_with(gw, steps, s, r, pl[3:] + [pl[2], pl[1], pl[0]], "payloads in reverse order")


@part("IKE.EN-I.VER.1", "A response of version 2.7 is accepted and the client goes on in version 2.0",
      ["rfc7296-2.5-a", "rfc7296-3.1-h", "rfc7296-3.1-g"])
def test_higher_minor_version(gw, steps):
    s, r = proceeds(gw, steps, "version 2.7 in the header", minor=7)
    v = parse_message(r.data)
    assert (v.major, v.minor) == (2, 0), f"IKE_AUTH of version {v.major}.{v.minor}"


@part("IKE.EN-I.VER.2", "A response of major version 3 is not taken as the answer: no IKE_AUTH built on it",
      ["rfc7296-3.1-f", "rfc7296-2.5-b"])
def test_higher_major_version(gw, steps):
    r = gw.first_init()
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    gw.send(s, s.sa_init_response(major=3), to=r)
    steps.record("answer IKE_SA_INIT with a response of version 3.0")
    spi = parse_message(r.data).spi_i
    later = gw.silence(spi_i=spi, timeout=2.5)
    msg = parse_message(later.data) if later else None
    steps.record("wait", "no IKE_AUTH on it (a retransmission of IKE_SA_INIT may come)",
                 msg.summary() if msg else "nothing", ok=not (msg and msg.exchange == c.IKE_AUTH))
    assert not (msg and msg.exchange == c.IKE_AUTH), "IKE_AUTH after a version 3 response"
    if msg is not None and later.data == r.data:
        s2, _ = gw.accept_init(later)
        ra, auth = gw.auth_request(s2)
        steps.record("answer its retransmission in version 2.0", "IKE_AUTH", auth.summary() if auth else "nothing",
                     ok=ra is not None)
        assert ra is not None, "no IKE_AUTH after the proper response to the retransmission"


@part("IKE.EN-I.HDR.1", "Reserved flag bits and the V flag set in the response are ignored",
      ["rfc7296-3.1-i", "rfc7296-3.1-l"])
def test_response_flags_ignored(gw, steps):
    proceeds(gw, steps, "the header's reserved flag bits (0x87) and V set", reserved_flags=0x87, version_bit=True)


@part("IKE.EN-I.HDR.2", "RESERVED bits set in the response's payload headers and KE are ignored",
      ["rfc7296-3.2-f", "rfc7296-2.5-f"])
def test_payload_reserved_ignored(gw, steps):
    r = gw.first_init()
    s = gw.session_for(r)
    s.handle_sa_init_request(r.data)
    pl = gw.init_payloads(s)
    pl = [p.with_(reserved=0x55) for p in pl]
    pl[1] = m.ke(s.dh.group, s.dh.public, reserved2=0xabcd, reserved=0x55)
    proceeds_with(gw, steps, s, r, pl, "RESERVED bits set in every payload header and in KE")
