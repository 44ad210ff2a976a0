"""SGW-R: the gateway as responder, Message IDs, retransmissions and the window (RFC 7296 sections 2.1,
2.2, 2.3): responses echo the request's Message ID, requests outside the window are neither answered
nor processed, a retransmitted request (the same bytes) gets the bitwise identical cached response
and is not processed again, the responder never retransmits on its own, window size 1.

Several parts put a Delete of the IKE SA into the request that must not be processed: the IKE SA
still answering afterwards (and the child SA still carrying data) proves it was not acted on."""
import struct

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.parse import parse_header
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part, should

QUIET = 0.5  # how long "no answer" is waited for


# ---------------------------------------------------------------------------- helpers

def said(msg) -> str:
    return msg.summary() if msg is not None else "no answer"


def from_iut(ike, s, mid: int | None = None, timeout: float = QUIET):
    """The next IKE message of the IUT on this IKE SA (optionally with Message ID `mid`), as
    (parsed, raw bytes), or (None, None)."""
    def match(r) -> bool:
        h = parse_header(r.data)
        return h.ok and h.spi_i == s.spi_i and (mid is None or h.message_id == mid)
    r = ike.receive(match, timeout)
    if r is None:
        return None, None
    return (s.parse(r.data) if s.keys is not None else parse_header(r.data)), r.data


def auth(ike, s, steps):
    """IKE_AUTH with the PSK user; the response (INCONCLUSIVE without a child SA)."""
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    if resp is None:
        inconclusive("no answer to IKE_AUTH")
    s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    if not s.children or not s.peer_auth_ok:
        inconclusive(f"IKE_AUTH did not establish a child SA: {said(resp)}")
    steps.record("IKE_AUTH (PSK, CP, SA, TSi, TSr), mid=1", "a child SA", said(resp))
    return resp


def established(ike, steps):
    """IKE_SA_INIT + IKE_AUTH: (session, IKE_SA_INIT response, IKE_AUTH response)."""
    s, init_resp = ike.init()
    steps.record("IKE_SA_INIT, mid=0", "SA, KE, Nr", said(init_resp))
    return s, init_resp, auth(ike, s, steps)


def window_1(steps, auth_resp) -> None:
    """The parts on the window judge a responder of window 1: one that announced more is not judged."""
    n = auth_resp.notify(c.N_SET_WINDOW_SIZE)
    if n is not None and len(n.fields["data"]) == 4 and struct.unpack("!I", n.fields["data"])[0] > 1:
        inconclusive(f"the IUT announced SET_WINDOW_SIZE {struct.unpack('!I', n.fields['data'])[0]}")
    steps.record("SET_WINDOW_SIZE in the IKE_AUTH response", "absent (window 1)", "absent" if n is None else
                 n.fields["data"].hex())


def liveness(ike, s, steps, what: str = "then an empty INFORMATIONAL (liveness check)") -> bool:
    resp = ike.exchange(s, s.informational_request([]))
    ok = resp is not None and resp.ok and resp.exchange == c.INFORMATIONAL and resp.response
    steps.record(f"{what}, mid={s.next_mid - 1}", "an INFORMATIONAL response: the IKE SA is still up", said(resp), ok=ok)
    return ok


def still_carries_data(ike, s, steps, child=None) -> bool:
    ok = bool(ike.ping(s, child, replies=[child or s.children[-1]]))
    steps.record("ICMP echo to H through the child SA", "the echo reply", ok, ok=ok)
    return ok


def must_not_process(ike, s, steps, mid: int, what: str, cached: bytes | None = None) -> None:
    """After a request that must not be processed (a Delete of the IKE SA at Message ID `mid`): no
    response at all, or (`cached`) exactly the cached response of that ID; then the SA still works."""
    got, raw = from_iut(ike, s, mid)
    ok = got is None or (cached is not None and raw == cached)
    steps.record(what, "not answered" + (", or the cached response byte for byte" if cached else ""),
                 "no answer" if got is None else f"{said(got)}{' (identical to the cached one)' if raw == cached else ''}",
                 ok=ok)
    assert got is None or got.response, f"the IUT sent a request in its place: {said(got)}"
    assert c.N_INVALID_MESSAGE_ID not in (got.notify_types() if got is not None and got.ok else []), \
        "INVALID_MESSAGE_ID must not be sent in a response"
    assert ok, f"the request must not be processed, got {said(got)}"
    assert liveness(ike, s, steps), "the IKE SA is gone: the Delete was acted on"
    assert still_carries_data(ike, s, steps), "the child SA no longer carries data"


# ---------------------------------------------------------------------------- Message IDs

@part("IKE.SGW-R.MID.1", "The IKE_SA_INIT response carries Message ID 0 and the IKE_AUTH response Message ID 1",
      ["rfc7296-2.1-d", "rfc7296-2.3-g"])
def test_initial_message_ids(ike, steps):
    s, init_resp, auth_resp = established(ike, steps)
    steps.record("the Message IDs of the two responses", "0 and 1", f"{init_resp.message_id} and {auth_resp.message_id}",
                 ok=(init_resp.message_id, auth_resp.message_id) == (0, 1))
    assert init_resp.message_id == 0, f"IKE_SA_INIT response Message ID {init_resp.message_id}, expected 0"
    assert auth_resp.message_id == 1, f"IKE_AUTH response Message ID {auth_resp.message_id}, expected 1"


@part("IKE.SGW-R.MID.2", "A request with a Message ID 5 beyond the expected one is neither answered nor processed",
      ["rfc7296-2.3-h"])
def test_message_id_ahead_ignored(ike, steps):
    s, _, auth_resp = established(ike, steps)
    window_1(steps, auth_resp)
    mid = s.next_mid + 5
    ike.send(s.delete_request(ike=True, message_id=mid))
    must_not_process(ike, s, steps, mid, f"INFORMATIONAL {{D(IKE)}}, mid={mid} (expected {s.next_mid})")


@part("IKE.SGW-R.MID.3", "A request with an old Message ID and new content is neither answered nor processed",
      ["rfc7296-2.1-e", "rfc7296-2.3-h"])
def test_old_message_id_ignored(ike, steps):
    s, _, _ = established(ike, steps)
    assert liveness(ike, s, steps, "an empty INFORMATIONAL"), "no answer to an empty INFORMATIONAL"
    assert liveness(ike, s, steps, "another empty INFORMATIONAL"), "no answer to an empty INFORMATIONAL"
    old = s.next_mid - 2
    ike.send(s.delete_request(ike=True, message_id=old))
    must_not_process(ike, s, steps, old, f"INFORMATIONAL {{D(IKE)}} with the old mid={old}")


@part("IKE.SGW-R.MID.4", "A new request with the last answered Message ID is not processed (at most the cached "
      "response comes back)", ["rfc7296-2.1-b", "rfc7296-2.3-h"])
def test_same_id_new_content_not_processed(ike, steps):
    s, _, _ = established(ike, steps)
    mid = s.next_mid
    first = ike.exchange(s, s.informational_request([]))
    steps.record(f"empty INFORMATIONAL, mid={mid}", "a response", said(first))
    assert first is not None, "no answer to an empty INFORMATIONAL"
    ike.send(s.delete_request(ike=True, message_id=mid))
    must_not_process(ike, s, steps, mid, f"INFORMATIONAL {{D(IKE)}}, again mid={mid}, other content",
                     cached=first.raw)


@part("IKE.SGW-R.MID.5", "A request with Message ID 0xFFFFFFFF is neither answered nor processed",
      ["rfc7296-2.3-h"])
def test_message_id_max_ignored(ike, steps):
    s, _, auth_resp = established(ike, steps)
    window_1(steps, auth_resp)
    ike.send(s.delete_request(ike=True, message_id=0xFFFFFFFF))
    must_not_process(ike, s, steps, 0xFFFFFFFF, "INFORMATIONAL {D(IKE)}, mid=0xffffffff")


# ---------------------------------------------------------------------------- retransmissions

@part("IKE.SGW-R.RTX.1", "A retransmitted INFORMATIONAL request gets the bitwise identical response",
      ["rfc7296-2.1-b", "rfc7296-2.1-d", "rfc7296-2.3-g", "rfc7296-2.2-a"])
def test_retransmitted_informational(ike, steps):
    s, _, _ = established(ike, steps)
    req = s.informational_request([])
    mid = s.next_mid - 1
    first = ike.exchange(s, req)
    steps.record(f"empty INFORMATIONAL, mid={mid}", "a response", said(first))
    assert first is not None, "no answer to an empty INFORMATIONAL"
    again = ike.retransmit(s, req)
    same = again is not None and again.raw == first.raw
    steps.record("the same request again, byte for byte", "the same response, byte for byte",
                 "identical" if same else said(again), ok=same)
    assert again is not None, "a retransmitted request must get the cached response again"
    assert same, "the response to a retransmission must be the cached one, bitwise identical"


@part("IKE.SGW-R.RTX.2", "A retransmitted IKE_SA_INIT gets the bitwise identical response",
      ["rfc7296-2.1-b", "rfc7296-2.1-d"])
def test_retransmitted_sa_init(ike, steps):
    s, first = ike.init()
    steps.record("IKE_SA_INIT", "SA, KE, Nr", said(first))
    ike.send(s.init_request, port=c.IKE_PORT)
    again = ike.answer_to(s, 0)
    same = again is not None and again.raw == first.raw
    steps.record("the same IKE_SA_INIT again, byte for byte", "the same response (SPIr, KEr, Nr), byte for byte",
                 "identical" if same else said(again), ok=same)
    assert again is not None, "a retransmitted IKE_SA_INIT must get the response again"
    assert again.spi_r == first.spi_r, "a retransmission created a second IKE SA (another SPIr)"
    assert same, "the response to a retransmitted IKE_SA_INIT must be the same, bitwise identical"
    auth(ike, s, steps)


@part("IKE.SGW-R.RTX.3", "A retransmitted IKE_AUTH gets the bitwise identical response; the child SA still works",
      ["rfc7296-2.1-b", "rfc7296-2.3-g"])
def test_retransmitted_ike_auth(ike, steps):
    s, _, first = established(ike, steps)
    again = ike.exchange(s, s.retransmit())
    same = again is not None and again.raw == first.raw
    steps.record("the same IKE_AUTH again, byte for byte", "the same response, byte for byte",
                 "identical" if same else said(again), ok=same)
    assert again is not None, "a retransmitted IKE_AUTH must get the cached response"
    assert same, "the response to a retransmitted IKE_AUTH must be the cached one, bitwise identical"
    assert still_carries_data(ike, s, steps), "the child SA no longer carries data after the retransmission"


@part("IKE.SGW-R.RTX.4", "An IKE_SA_INIT retransmitted after IKE_AUTH is ignored (or the cached response), no new SA",
      ["rfc7296-2.1-e", "rfc7296-2.1-b"])
def test_sa_init_retransmitted_after_auth(ike, steps):
    s, first, _ = established(ike, steps)
    ike.send(s.init_request, port=c.IKE_PORT)
    got, raw = from_iut(ike, s, 0)
    ok = got is None or raw == first.raw
    steps.record("the IKE_SA_INIT request again, byte for byte", "ignored, or the cached response byte for byte",
                 "no answer" if got is None else ("identical" if raw == first.raw else
                                                  f"{said(got)}, SPIr {got.spi_r.hex()} (first {first.spi_r.hex()})"),
                 ok=ok)
    assert ok, f"a new response to an old IKE_SA_INIT: {said(got)}"
    assert liveness(ike, s, steps), "the IKE SA no longer answers"
    assert still_carries_data(ike, s, steps), "the child SA no longer carries data"


@part("IKE.SGW-R.RTX.5", "The responder does not retransmit its responses on its own",
      ["rfc7296-2.1-a"])
def test_no_spontaneous_retransmission(ike, steps):
    s, _, _ = established(ike, steps)
    info = ike.exchange(s, s.informational_request([]))
    steps.record("empty INFORMATIONAL", "a response", said(info))
    assert info is not None, "no answer to an empty INFORMATIONAL"
    got, raw = from_iut(ike, s, timeout=2.5)
    responses = [e for e in ike.transport.log if e.direction == "received" and e.kind == "ike"]
    dup = len(responses) != len({e.data for e in responses})
    steps.record("wait 2.5 s", "nothing from the IUT (no duplicate of any response)",
                 "nothing" if got is None else said(got), ok=got is None and not dup)
    assert not dup, "the IUT sent one of its responses twice without a retransmitted request"
    assert got is None or not got.response, f"a response without a request: {said(got)}"


@part("IKE.SGW-R.RTX.6", "A retransmission of request N after request N+1 was answered is ignored (or the cached "
      "response), never answered anew", ["rfc7296-2.1-e", "rfc7296-2.3-h"])
def test_retransmission_outside_window(ike, steps):
    s, _, auth_resp = established(ike, steps)
    window_1(steps, auth_resp)
    old_req = s.informational_request([])
    n = s.next_mid - 1
    first = ike.exchange(s, old_req)
    steps.record(f"empty INFORMATIONAL, mid={n}", "a response", said(first))
    assert first is not None, f"no answer to request {n}"
    nxt = ike.exchange(s, s.informational_request([]))
    steps.record(f"empty INFORMATIONAL, mid={n + 1}", "a response", said(nxt))
    assert nxt is not None, f"no answer to request {n + 1}"
    ike.send(old_req)
    got, raw = from_iut(ike, s, n)
    ok = got is None or raw == first.raw
    steps.record(f"request {n} again, byte for byte", "ignored, or the cached response byte for byte",
                 "no answer" if got is None else ("identical" if raw == first.raw else said(got)), ok=ok)
    assert ok, f"a response built anew for a request outside the window: {said(got)}"
    assert liveness(ike, s, steps), "the IKE SA no longer answers"


@part("IKE.SGW-R.RTX.7", "Every one of three retransmissions gets the same cached response",
      ["rfc7296-2.1-b", "rfc7296-2.3-g"])
def test_repeated_retransmissions(ike, steps):
    s, _, _ = established(ike, steps)
    req = s.informational_request([])
    first = ike.exchange(s, req)
    steps.record("empty INFORMATIONAL", "a response", said(first))
    assert first is not None, "no answer to an empty INFORMATIONAL"
    for i in (1, 2, 3):
        again = ike.retransmit(s, req)
        same = again is not None and again.raw == first.raw
        steps.record(f"retransmission {i}", "the cached response, byte for byte", "identical" if same else said(again),
                     ok=same)
        assert again is not None, f"no answer to retransmission {i}"
        assert same, f"retransmission {i}: the response differs from the cached one"


@part("IKE.SGW-R.RTX.8", "A retransmitted CREATE_CHILD_SA gets the identical response; the new child SA works",
      ["rfc7296-2.1-b", "rfc7296-2.3-g"])
def test_retransmitted_create_child(ike, steps):
    s, _, _ = established(ike, steps)
    req = s.create_child_request()
    first = ike.exchange(s, req)
    _, child = s.handle_create_child_response(first.raw) if first is not None else (None, None)
    steps.record("CREATE_CHILD_SA (SA, Ni, TSi, TSr)", "SA, Nr, TSi, TSr", said(first))
    if child is None:
        inconclusive(f"CREATE_CHILD_SA did not create a child SA: {said(first)}")
    again = ike.retransmit(s, req)
    same = again is not None and again.raw == first.raw
    steps.record("the same CREATE_CHILD_SA again, byte for byte", "the same response, byte for byte",
                 "identical" if same else said(again), ok=same)
    assert again is not None, "a retransmitted CREATE_CHILD_SA must get the cached response"
    assert same, "the response to a retransmitted CREATE_CHILD_SA must be the cached one, bitwise identical"
    assert still_carries_data(ike, s, steps, child), "the new child SA does not carry data"


@part("IKE.SGW-R.RTX.9", "A different IKE_SA_INIT with the same SPIi (new nonce and KE) gets a fresh response",
      ["rfc7296-2.1-b"])
def test_same_spi_new_sa_init_is_new(ike, steps):
    s1 = ike.session()
    first = ike.exchange(s1, s1.sa_init_request(), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT (SPIi, Ni, KEi)", "SA, KE, Nr", said(first))
    if first is None or first.get(c.SA) is None:
        inconclusive(f"IKE_SA_INIT refused: {said(first)}")
    s2 = ike.session(spi=s1.spi_i)
    second = ike.exchange(s2, s2.sa_init_request(), port=c.IKE_PORT)
    assert second is not None and second.get(c.SA) is not None, f"a new IKE_SA_INIT must be answered: {said(second)}"
    fresh = second.raw != first.raw and second.get(c.NONCE).fields["data"] != first.get(c.NONCE).fields["data"]
    steps.record("another IKE_SA_INIT, same SPIi, new Ni and KEi", "a fresh response (new Nr), not the cached one",
                 f"{said(second)}, SPIr {second.spi_r.hex()} (first {first.spi_r.hex()})"
                 + ("" if fresh else ": the first response again"), ok=fresh)
    # RFC 7296 2.1: only a bitwise identical request is a retransmission; "a robust responder will do the
    # IKE SA lookup using the whole packet, its hash, or the Ni payload" (not a MUST: judged as a SHOULD)
    if should(fresh, "a new IKE_SA_INIT with a known SPIi is answered anew, not with the cached response"):
        s2.handle_sa_init_response(second.raw)
        auth(ike, s2, steps)


@part("IKE.SGW-R.RTX.10", "A retransmitted Delete of a child SA gets the identical response, not a second processing",
      ["rfc7296-2.1-b", "rfc7296-2.3-g"])
def test_retransmitted_delete(ike, steps):
    s, _, _ = established(ike, steps)
    req = s.delete_request()
    first = ike.exchange(s, req)
    steps.record("INFORMATIONAL {D(ESP, our child SPI)}", "a response with D(ESP, its SPI)", said(first))
    assert first is not None, "no answer to a Delete of the child SA"
    again = ike.retransmit(s, req)
    same = again is not None and again.raw == first.raw
    steps.record("the same request again, byte for byte", "the same response, byte for byte",
                 "identical" if same else said(again), ok=same)
    assert again is not None, "a retransmitted Delete must get the cached response"
    assert same, (f"the retransmission was processed again: {said(again)} "
                  f"({notify_names(again)}) instead of the cached {said(first)}")


# ---------------------------------------------------------------------------- window size 1

@part("IKE.SGW-R.WIN.1", "Window 1: request N+1 before N is not answered; after N, the same N+1 is",
      ["rfc7296-2.3-h"])
def test_window_one_out_of_order(ike, steps):
    s, _, auth_resp = established(ike, steps)
    window_1(steps, auth_resp)
    n = s.next_mid
    req_n = s.informational_request([])
    req_n1 = s.informational_request([])
    ike.send(req_n1)
    got, _ = from_iut(ike, s, n + 1)
    steps.record(f"empty INFORMATIONAL, mid={n + 1} (before {n})", "not answered: outside the window",
                 said(got), ok=got is None)
    assert got is None, f"request {n + 1} is outside a window of 1 while {n} is expected: {said(got)}"
    resp_n = ike.exchange(s, req_n)
    steps.record(f"empty INFORMATIONAL, mid={n}", f"a response, mid={n}", said(resp_n), ok=resp_n is not None)
    assert resp_n is not None, f"no answer to the expected request {n}"
    resp_n1 = ike.exchange(s, req_n1)
    steps.record(f"request {n + 1} again (the same bytes)", f"a response, mid={n + 1}", said(resp_n1),
                 ok=resp_n1 is not None)
    assert resp_n1 is not None, f"request {n + 1}, now in the window, was not answered"


@part("IKE.SGW-R.WIN.2", "Window 1: a Delete sent as request N+1 before N is not acted on",
      ["rfc7296-2.3-h"])
def test_window_one_ahead_delete_ignored(ike, steps):
    s, _, auth_resp = established(ike, steps)
    window_1(steps, auth_resp)
    n = s.next_mid
    ike.send(s.delete_request(ike=True, message_id=n + 1))
    must_not_process(ike, s, steps, n + 1, f"INFORMATIONAL {{D(IKE)}}, mid={n + 1} (expected {n})")


