"""SGW-R: the gateway as responder, INFORMATIONAL exchanges, deletes and errors (RFC 7296 sections 1.4,
1.4.1, 1.5, 2.4, 2.21, 2.25.1; RFC 4303 3.4.2).

The tester is the original initiator (the remote-access client); every part starts from a fresh IKE
SA with one child SA that carries ICMP echo to the inside host H.
"""
import os
import struct
import time

from scapy.layers.inet import ICMP, IP

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.parse import parse_header, parse_message
from testbed.conformance.ike.sk import SkCipher
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part, should

QUIET = 0.5      # how long "no answer" is waited for
IDENT = 0x7e51   # ICMP echo identifier of this module


# ----------------------------------------------------------------------------- helpers


def _alive(ike, s, timeout=1.0):
    """An empty INFORMATIONAL on `s` and its response (None: no answer)."""
    return ike.exchange(s, s.informational_request([]), timeout=timeout)


def _describe(msg):
    return msg.summary() if msg is not None else "no answer"


def _is_request_on(data, spi_i):
    h = parse_header(data)
    return h.ok and h.spi_i == spi_i and not h.response


def _is_on(data, spi_i):
    h = parse_header(data)
    return h.ok and h.spi_i == spi_i


def _serve(ike, s, timeout):
    """The IUT's requests on `s` during `timeout` (each answered with an empty INFORMATIONAL
    response, as a live peer would)."""
    got = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        r = ike.receive(lambda r: _is_request_on(r.data, s.spi_i), left)
        if r is None:
            break
        msg = s.parse(r.data)
        got.append(msg)
        if msg.ok and msg.exchange == c.INFORMATIONAL:
            ike.send(s.informational_response([]))
    return got


def _foreign(spi_i, spi_r, mid=0, response=False, encrypted=True, payloads=(), exchange=c.INFORMATIONAL):
    """A message on IKE SPIs the IUT does not know, its SK payload (if any) under random keys."""
    pl = [m.SkPayload(list(payloads))] if encrypted else list(payloads)
    cipher = SkCipher(c.ENCR_AES_GCM_16, os.urandom(20)) if encrypted else None
    return m.build_message(spi_i, spi_r, exchange, mid, pl, initiator=True, response=response, cipher=cipher)


def _invalid_ike_spi_ok(msg, spi_i, spi_r, mid):
    """RFC 7296 2.21.4: an answer to a request on an unknown IKE SPI is unprotected, carries
    INVALID_IKE_SPI, the same SPIs and the same Message ID. Returns the list of what is wrong."""
    wrong = []
    if msg.encrypted:
        wrong.append("it is encrypted")
    if c.N_INVALID_IKE_SPI not in msg.notify_types():
        wrong.append(f"no INVALID_IKE_SPI (notifies {notify_names(msg)})")
    if (msg.spi_i, msg.spi_r) != (spi_i, spi_r):
        wrong.append(f"SPIs {msg.spi_i.hex()}/{msg.spi_r.hex()} instead of {spi_i.hex()}/{spi_r.hex()}")
    if msg.message_id != mid:
        wrong.append(f"Message ID {msg.message_id} instead of {mid}")
    if not msg.response:
        wrong.append("the R flag is clear")
    return wrong


def _gone(ike, s, steps, what):
    """A request on `s` after the IUT dropped it: no answer, or an unprotected INVALID_IKE_SPI."""
    mid = s.next_mid
    req = s.informational_request([])
    ike.send(req)
    r = ike.receive(lambda r: _is_on(r.data, s.spi_i) and parse_header(r.data).response, QUIET)
    if r is None:
        steps.record(what, "no answer, or an unprotected INVALID_IKE_SPI", "no answer", ok=True)
        return True, "no answer"
    msg = parse_message(r.data)
    wrong = _invalid_ike_spi_ok(msg, s.spi_i, s.spi_r, mid) if not msg.encrypted else ["an encrypted response: the SA still exists"]
    steps.record(what, "no answer, or an unprotected INVALID_IKE_SPI", msg.summary(), ok=not wrong)
    return not wrong, f"{msg.summary()}: {', '.join(wrong)}"


def _second_child(ike, s):
    """A second child SA with the first one's traffic selectors (CREATE_CHILD_SA, RFC 7296 1.3.1)."""
    first = s.children[0]
    resp = ike.exchange(s, s.create_child_request(tsi=[_sel(t) for t in first.ts_local],
                                                  tsr=[_sel(t) for t in first.ts_remote]))
    if resp is None:
        inconclusive("no answer to CREATE_CHILD_SA for a second child SA")
    msg, child = s.handle_create_child_response(resp.raw)
    if child is None:
        inconclusive(f"no second child SA: {msg.summary()}")
    return child


def _sel(t):
    return m.TrafficSelector(t.get("start", "0.0.0.0"), t.get("end", "255.255.255.255"), t.get("protocol", 0),
                             t.get("start_port", 0), t.get("end_port", 65535))


def _deletes(msg, protocol=c.PROTO_ESP):
    """The SPIs of the Delete payloads of `protocol` in `msg`."""
    out = []
    for d in msg.get_all(c.DELETE):
        if d.fields.get("protocol") == protocol:
            out += d.fields.get("spis", [])
    return out


# ----------------------------------------------------------------------------- INFORMATIONAL answered

@part("IKE.SGW-R.INFO.2", "Consecutive liveness checks are each answered with the request's Message ID",
      ["rfc7296-1.4-d", "rfc7296-2.2-a"])
def test_liveness_checks_answered(ike, steps):
    s = ike.establish()
    for _ in range(3):
        mid = s.next_mid
        resp = _alive(ike, s)
        steps.record(f"empty INFORMATIONAL, Message ID {mid}", f"an INFORMATIONAL response with Message ID {mid}",
                     _describe(resp), ok=resp is not None and resp.message_id == mid)
        assert resp is not None, f"no answer to the empty INFORMATIONAL with Message ID {mid}"
        assert resp.exchange == c.INFORMATIONAL and resp.response and resp.message_id == mid, _describe(resp)


@part("IKE.SGW-R.INFO.3", "An INFORMATIONAL with an unrecognised status notify is answered; the notify is ignored",
      ["rfc7296-1.4-d", "rfc7296-3.10.1-b", "rfc7296-3.10.1-c"])
def test_unknown_status_notify(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.informational_request([m.notify(40000, b"conformance")]))
    steps.record("INFORMATIONAL with N(40000), an unassigned status type", "an INFORMATIONAL response",
                 _describe(resp), ok=resp is not None)
    assert resp is not None and resp.response, "no answer to an INFORMATIONAL request"
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA", "the echo reply", ok, ok=ok)
    assert ok, "the child SA no longer carries data after an ignorable status notify"


@part("IKE.SGW-R.INFO.4", "An unrecognised error notify type in an INFORMATIONAL request is ignored and answered",
      ["rfc7296-1.4-d", "rfc7296-3.10.1-b"])
def test_unknown_error_notify_in_request(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.informational_request([m.notify(8191, b"x")]))
    steps.record("INFORMATIONAL with N(8191), an unassigned error type", "an INFORMATIONAL response",
                 _describe(resp), ok=resp is not None)
    assert resp is not None and resp.response, "no answer to an INFORMATIONAL request"
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL, then ICMP echo through the child SA", "both answered",
                 f"{_describe(again)}; echo {ok}", ok=again is not None and ok)
    assert again is not None, "the IKE SA is gone after an unrecognised error notify in a request"
    assert ok, "the child SA no longer carries data after an unrecognised error notify in a request"


@part("IKE.SGW-R.INFO.5", "A protected INVALID_SPI notify from the peer changes no SA state",
      ["rfc7296-2.21.4-h", "rfc7296-1.4-d"])
def test_protected_invalid_spi_no_state_change(ike, steps):
    s = ike.establish()
    child = s.children[0]
    resp = ike.exchange(s, s.informational_request([m.notify(c.N_INVALID_SPI, child.spi_out)]))
    steps.record("INFORMATIONAL with N(INVALID_SPI) naming the IUT's inbound SPI", "a response; no SA state change",
                 _describe(resp), ok=resp is not None)
    assert resp is not None, "no answer to an INFORMATIONAL request"
    assert not _deletes(resp), f"the IUT deleted an SA because of an INVALID_SPI notify: {_describe(resp)}"
    ok = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA", "the echo reply", ok, ok=ok)
    assert ok, "the child SA stopped carrying data after an INVALID_SPI notify"


@part("IKE.SGW-R.INFO.6", "N(INITIAL_CONTACT) in a later INFORMATIONAL on the only IKE SA is answered and closes nothing",
      ["rfc7296-2.4-b", "rfc7296-1.4-d"])
def test_initial_contact_outside_ike_auth(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.informational_request([m.notify(c.N_INITIAL_CONTACT)]))
    steps.record("INFORMATIONAL with N(INITIAL_CONTACT) on the only IKE SA", "a response; the SA stays",
                 _describe(resp), ok=resp is not None)
    assert resp is not None, "no answer to an INFORMATIONAL request"
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL, then ICMP echo", "both answered", f"{_describe(again)}; echo {ok}",
                 ok=again is not None and ok)
    assert again is not None and ok, "the IKE SA or its child SA is gone after INITIAL_CONTACT outside IKE_AUTH"


# ----------------------------------------------------------------------------- Delete of a child SA

@part("IKE.SGW-R.DEL.1", "A Delete of a child SA is answered with a Delete of the paired SA (the IUT's inbound SPI)",
      ["rfc7296-1.4.1-b", "rfc7296-1.4.1-c", "rfc7296-3.11-c"])
def test_child_delete_paired(ike, steps):
    s = ike.establish()
    child = s.children[0]
    resp = ike.exchange(s, s.delete_request([child.spi_in]))
    steps.record(f"INFORMATIONAL with D(ESP, {child.spi_in.hex()})", f"D(ESP, {child.spi_out.hex()}) in the response",
                 _describe(resp), ok=resp is not None and _deletes(resp) == [child.spi_out])
    assert resp is not None, "no answer to the Delete request"
    dels = [d.fields for d in resp.get_all(c.DELETE)]
    assert _deletes(resp) == [child.spi_out], f"expected D(ESP, [{child.spi_out.hex()}]), got {dels}"
    assert all(d.get("spi_size") == 4 for d in dels), f"an ESP Delete has SPI Size 4: {dels}"


@part("IKE.SGW-R.DEL.2", "After a child SA is deleted, ESP on it no longer carries data",
      ["rfc7296-1.4.1-a", "rfc7296-1.4.1-c"])
def test_child_delete_stops_data(ike, steps):
    s = ike.establish()
    child = s.children[0]
    before = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA", "the echo reply", before, ok=before)
    if not before:
        inconclusive("the child SA carried no data before the Delete")
    resp = ike.exchange(s, s.delete_request([child.spi_in]))
    steps.record("Delete of the child SA", "a response", _describe(resp), ok=resp is not None)
    assert resp is not None, "no answer to the Delete request"
    after = bool(ike.ping(s, child, timeout=QUIET, tries=1, ident=IDENT))
    steps.record("ICMP echo through the deleted child SA", "no echo reply", after, ok=not after)
    assert not after, "the deleted child SA still carries data"


@part("IKE.SGW-R.DEL.3", "The IKE SA survives the Delete of its child SA: it answers and creates a new child SA",
      ["rfc7296-1.4.1-c", "rfc7296-1.4-d"])
def test_ike_sa_survives_child_delete(ike, steps):
    s = ike.establish()
    child = s.children[0]
    resp = ike.exchange(s, s.delete_request([child.spi_in]))
    assert resp is not None, "no answer to the Delete request"
    again = _alive(ike, s)
    steps.record("empty INFORMATIONAL after the child's Delete", "an answer", _describe(again), ok=again is not None)
    assert again is not None, "the IKE SA is gone after the Delete of a child SA"
    created = ike.exchange(s, s.create_child_request(tsi=[_sel(t) for t in child.ts_local],
                                                     tsr=[_sel(t) for t in child.ts_remote]))
    msg, new = (s.handle_create_child_response(created.raw) if created is not None else (None, None))
    steps.record("CREATE_CHILD_SA for a new child SA", "SA, Nr, TSi, TSr", _describe(created), ok=new is not None)
    assert new is not None, f"no new child SA on the surviving IKE SA: {_describe(created)}"
    ok = bool(ike.ping(s, new, replies=[new], timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the new child SA", "the echo reply", ok, ok=ok)
    assert ok, "the new child SA carries no data"


@part("IKE.SGW-R.DEL.4", "A Delete of an unknown child SPI is answered, without a Delete payload",
      ["rfc7296-1.4-d", "rfc7296-2.25.1-f"])
def test_delete_unknown_child(ike, steps):
    s = ike.establish()
    bogus = bytes([0xde, 0xad]) + os.urandom(2)
    resp = ike.exchange(s, s.delete_request([bogus]))
    steps.record(f"INFORMATIONAL with D(ESP, {bogus.hex()}), an SPI that names no SA", "a response without D",
                 _describe(resp), ok=resp is not None and not resp.get_all(c.DELETE))
    assert resp is not None, "no answer to an INFORMATIONAL request"
    should(not resp.get_all(c.DELETE), f"a response without a Delete payload (got {_describe(resp)})")
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the real child SA", "the echo reply", ok, ok=ok)
    assert ok, "the real child SA stopped carrying data after a Delete of an unknown SPI"


@part("IKE.SGW-R.DEL.5", "One Delete payload listing two child SAs closes both; the response names both paired SPIs",
      ["rfc7296-3.11-a", "rfc7296-1.4.1-c", "rfc7296-1.4.1-b"])
def test_delete_two_children_one_payload(ike, steps):
    s = ike.establish()
    first = s.children[0]
    second = _second_child(ike, s)
    steps.record("CREATE_CHILD_SA for a second child SA", "a second child SA", second.spi_out.hex(), ok=True)
    resp = ike.exchange(s, s.delete_request([first.spi_in, second.spi_in]))
    got = _deletes(resp) if resp is not None else []
    steps.record(f"D(ESP, {first.spi_in.hex()}, {second.spi_in.hex()})",
                 f"D(ESP) for {first.spi_out.hex()} and {second.spi_out.hex()}",
                 f"{_describe(resp)} {[x.hex() for x in got]}", ok=sorted(got) == sorted([first.spi_out, second.spi_out]))
    assert resp is not None, "no answer to the Delete request"
    assert sorted(got) == sorted([first.spi_out, second.spi_out]), \
        f"the response deletes {[x.hex() for x in got]}, not both paired SAs"
    left = (ike.ping(s, first, timeout=QUIET, tries=1, ident=IDENT).child
            or ike.ping(s, second, timeout=QUIET, tries=1, ident=IDENT).child)
    steps.record("ICMP echo through each deleted child SA", "no echo reply", left is not None, ok=left is None)
    assert left is None, "a deleted child SA still carries data"


@part("IKE.SGW-R.DEL.6", "Deleting one of two child SAs leaves the other carrying data",
      ["rfc7296-1.4.1-c", "rfc7296-2.8-e"])
def test_delete_one_of_two(ike, steps):
    s = ike.establish()
    first = s.children[0]
    second = _second_child(ike, s)
    resp = ike.exchange(s, s.delete_request([first.spi_in]))
    steps.record("Delete of the first child SA", f"D(ESP, {first.spi_out.hex()}) only", _describe(resp),
                 ok=resp is not None and _deletes(resp) == [first.spi_out])
    assert resp is not None, "no answer to the Delete request"
    assert second.spi_out not in _deletes(resp), "the IUT deleted the child SA that was not named"
    ok = bool(ike.ping(s, second, replies=[second], timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the second child SA", "the echo reply through it", ok, ok=ok)
    assert ok, "the child SA that was not deleted carries no data"


# ----------------------------------------------------------------------------- Delete of the IKE SA

@part("IKE.SGW-R.DEL.7", "A Delete of the IKE SA is answered with an empty INFORMATIONAL response",
      ["rfc7296-1.4.1-c", "rfc7296-1.4-d"])
def test_ike_delete_empty_response(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.delete_request(ike=True))
    steps.record("INFORMATIONAL with D(IKE)", "an empty INFORMATIONAL response (SK{})", _describe(resp),
                 ok=resp is not None and resp.ok and resp.inner == [])
    assert resp is not None, "no answer to the Delete of the IKE SA"
    assert resp.ok and resp.exchange == c.INFORMATIONAL and resp.response, _describe(resp)
    assert resp.inner == [], f"the response to an IKE SA Delete is empty, got {_describe(resp)}"


@part("IKE.SGW-R.DEL.8", "After its Delete, the IKE SA is gone: a request on it gets nothing or INVALID_IKE_SPI",
      ["rfc7296-1.4.1-c", "rfc7296-2.21.4-b", "rfc7296-2.21.4-c"])
def test_ike_delete_gone(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.delete_request(ike=True))
    steps.record("INFORMATIONAL with D(IKE)", "a response", _describe(resp), ok=resp is not None)
    assert resp is not None, "no answer to the Delete of the IKE SA"
    ok, what = _gone(ike, s, steps, "empty INFORMATIONAL on the deleted IKE SA")
    assert ok, f"the deleted IKE SA answered: {what}"


@part("IKE.SGW-R.DEL.9", "Deleting the IKE SA closes its child SAs: no more data through them",
      ["rfc7296-1.4.1-c", "rfc7296-1.4.1-a"])
def test_ike_delete_closes_children(ike, steps):
    s = ike.establish()
    child = s.children[0]
    before = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    if not before:
        inconclusive("the child SA carried no data before the Delete")
    resp = ike.exchange(s, s.delete_request(ike=True))
    assert resp is not None, "no answer to the Delete of the IKE SA"
    after = bool(ike.ping(s, child, timeout=QUIET, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA of the deleted IKE SA", "no echo reply", after, ok=not after)
    assert not after, "a child SA of the deleted IKE SA still carries data"


# ----------------------------------------------------------------------------- unprotected messages

@part("IKE.SGW-R.UNPROT.1", "An unencrypted INFORMATIONAL with N(AUTHENTICATION_FAILED) on the IKE SA changes nothing",
      ["rfc7296-1.4-a", "rfc7296-2.4-c"])
def test_unprotected_auth_failed(ike, steps):
    s = ike.establish()
    ike.send(s.informational_request([m.notify(c.N_AUTHENTICATION_FAILED)], encrypt=False, advance=False))
    _serve(ike, s, QUIET)
    steps.record("INFORMATIONAL in clear: N(AUTHENTICATION_FAILED), the SA's SPIs", "ignored", "sent")
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL, then ICMP echo", "both answered", f"{_describe(again)}; echo {ok}",
                 ok=again is not None and ok)
    assert again is not None, "the IKE SA is gone after an unprotected AUTHENTICATION_FAILED"
    assert ok, "the child SA stopped carrying data after an unprotected AUTHENTICATION_FAILED"


@part("IKE.SGW-R.UNPROT.2", "An unencrypted Delete of the IKE SA is ignored",
      ["rfc7296-1.4-a", "rfc7296-1.4-b"])
def test_unprotected_ike_delete(ike, steps):
    s = ike.establish()
    ike.send(s.informational_request([m.delete(c.PROTO_IKE, [])], encrypt=False, advance=False))
    _serve(ike, s, QUIET)
    steps.record("INFORMATIONAL in clear: D(IKE)", "ignored", "sent")
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL, then ICMP echo", "both answered", f"{_describe(again)}; echo {ok}",
                 ok=again is not None and ok)
    assert again is not None, "an unprotected Delete closed the IKE SA"
    assert ok, "an unprotected Delete of the IKE SA closed its child SA"


@part("IKE.SGW-R.UNPROT.3", "An unencrypted Delete of the child SA is ignored: the child SA still carries data",
      ["rfc7296-1.4-a", "rfc7296-1.4-c"])
def test_unprotected_child_delete(ike, steps):
    s = ike.establish()
    child = s.children[0]
    ike.send(s.informational_request([m.delete(c.PROTO_ESP, [child.spi_in])], encrypt=False, advance=False))
    _serve(ike, s, QUIET)
    steps.record(f"INFORMATIONAL in clear: D(ESP, {child.spi_in.hex()})", "ignored", "sent")
    ok = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the child SA", "the echo reply", ok, ok=ok)
    assert ok, "an unprotected Delete closed the child SA"


@part("IKE.SGW-R.UNPROT.4", "An unprotected INVALID_IKE_SPI notify on the IKE SA's SPIs gets no response and changes nothing",
      ["rfc7296-2.21.4-d", "rfc7296-2.4-c"])
def test_unprotected_invalid_ike_spi(ike, steps):
    s = ike.establish()
    ike.send(s.message(c.INFORMATIONAL, [m.notify(c.N_INVALID_IKE_SPI)], response=True, encrypt=False,
                       message_id=s.next_mid))
    answer = ike.receive(lambda r: _is_on(r.data, s.spi_i) and parse_header(r.data).response, QUIET)
    steps.record("INFORMATIONAL response in clear: N(INVALID_IKE_SPI), the SA's SPIs", "no response",
                 "no response" if answer is None else parse_message(answer.data).summary(), ok=answer is None)
    assert answer is None, f"the IUT answered an unprotected notify: {parse_message(answer.data).summary()}"
    _serve(ike, s, 0.2)
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL, then ICMP echo", "both answered", f"{_describe(again)}; echo {ok}",
                 ok=again is not None and ok)
    assert again is not None and ok, "an unprotected INVALID_IKE_SPI changed the state of the SAs"


@part("IKE.SGW-R.UNPROT.5", "A one-way unprotected INVALID_SPI notification outside any IKE SA is not answered",
      ["rfc7296-1.5-a"])
def test_one_way_invalid_spi_not_answered(ike, steps):
    s = ike.establish()
    spi_i = os.urandom(8)
    ike.send(_foreign(spi_i, bytes(8), encrypted=False, payloads=[m.notify(c.N_INVALID_SPI, s.children[0].spi_out)]))
    answer = ike.receive(lambda r: _is_on(r.data, spi_i), QUIET)
    steps.record("INFORMATIONAL request in clear, SPIs random/zero: N(INVALID_SPI)", "no answer",
                 "no answer" if answer is None else parse_message(answer.data).summary(), ok=answer is None)
    assert answer is None, f"the IUT answered a one-way notification: {parse_message(answer.data).summary()}"
    again = _alive(ike, s)
    assert again is not None, "the IKE SA is gone after an unprotected INVALID_SPI notification"


# ----------------------------------------------------------------------------- unknown IKE SPI

@part("IKE.SGW-R.SPI.1", "A request on an unknown IKE SPI gets nothing, or an unprotected INVALID_IKE_SPI with the same SPIs and Message ID",
      ["rfc7296-2.21.4-b", "rfc7296-2.21.4-c"])
def test_unknown_ike_spi_request(ike, steps):
    ike.establish()
    spi_i, spi_r, mid = os.urandom(8), os.urandom(8), 3
    ike.send(_foreign(spi_i, spi_r, mid))
    r = ike.receive(lambda r: _is_on(r.data, spi_i), QUIET)
    if r is None:
        steps.record("encrypted INFORMATIONAL request on random IKE SPIs", "nothing, or INVALID_IKE_SPI",
                     "no answer", ok=True)
        return
    msg = parse_message(r.data)
    wrong = _invalid_ike_spi_ok(msg, spi_i, spi_r, mid)
    if r.sport != c.IKE_PORT or r.dport != c.IKE_PORT:
        wrong.append(f"sent from {r.sport} to {r.dport}, not back to the request's port")
    steps.record("encrypted INFORMATIONAL request on random IKE SPIs", "nothing, or INVALID_IKE_SPI",
                 msg.summary(), ok=not wrong)
    assert not wrong, f"the answer to an unknown IKE SPI: {'; '.join(wrong)}"


@part("IKE.SGW-R.SPI.2", "A message flagged as a response on an unknown IKE SPI is never answered",
      ["rfc7296-2.21.4-a", "rfc7296-3.1-k"])
def test_unknown_ike_spi_response(ike, steps):
    ike.establish()
    spi_i, spi_r = os.urandom(8), os.urandom(8)
    ike.send(_foreign(spi_i, spi_r, 5, response=True))
    r = ike.receive(lambda r: _is_on(r.data, spi_i), QUIET)
    steps.record("encrypted INFORMATIONAL response on random IKE SPIs", "no answer",
                 "no answer" if r is None else parse_message(r.data).summary(), ok=r is None)
    assert r is None, f"the IUT answered a response: {parse_message(r.data).summary()}"


@part("IKE.SGW-R.SPI.3", "A request with the SA's SPIi but an unknown SPIr is not taken for the SA, which keeps working",
      ["rfc7296-2.21.4-b", "rfc7296-2.21.4-c", "rfc7296-2.4-c"])
def test_known_spi_i_unknown_spi_r(ike, steps):
    s = ike.establish()
    spi_r = os.urandom(8)
    mid = s.next_mid
    ike.send(s.informational_request([m.delete(c.PROTO_IKE, [])], spi_r=spi_r, advance=False))
    r = ike.receive(lambda r: _is_on(r.data, s.spi_i) and parse_header(r.data).spi_r == spi_r, QUIET)
    if r is not None:
        msg = parse_message(r.data)
        wrong = _invalid_ike_spi_ok(msg, s.spi_i, spi_r, mid)
        steps.record("D(IKE) under the SA's keys, SPIr replaced by a random one", "nothing, or INVALID_IKE_SPI",
                     msg.summary(), ok=not wrong)
        assert not wrong, f"the answer to an unknown SPIr: {'; '.join(wrong)}"
    else:
        steps.record("D(IKE) under the SA's keys, SPIr replaced by a random one", "nothing, or INVALID_IKE_SPI",
                     "no answer", ok=True)
    again = _alive(ike, s)
    ok = bool(ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT))
    steps.record("empty INFORMATIONAL on the real SA, then ICMP echo", "both answered",
                 f"{_describe(again)}; echo {ok}", ok=again is not None and ok)
    assert again is not None and ok, "a Delete sent to another SPIr closed the real IKE SA"


# ----------------------------------------------------------------------------- ESP on an unknown SPI

@part("IKE.SGW-R.ESPSPI.1", "ESP on an unknown SPI is discarded; the child SA keeps working",
      ["rfc4303-3.4.2-a"])
def test_esp_unknown_spi_discarded(ike, steps):
    s = ike.establish()
    child = s.children[0]
    bogus = int.from_bytes(b"\x7e" + os.urandom(3), "big")
    echo = bytes(IP(src=s.virtual_ip[0] if s.virtual_ip else ike.peer.local, dst=ike.peer.inside_host)
                 / ICMP(type=8, id=IDENT, seq=4242) / b"unknown-spi")
    ike.esp_send(child.esp_out().seal(echo, c.IPPROTO_IPIP, seq=1, spi=bogus))
    inbound = child.esp_in()

    def reply(r):
        p = inbound.open(r.data)
        return p.ok and len(p.payload) >= 28 and struct.unpack("!HH", p.payload[24:28]) == (IDENT, 4242)
    got = ike.receive(reply, QUIET, kind="esp")
    steps.record(f"ICMP echo in ESP with SPI {bogus:08x} (no such SA)", "discarded: no echo reply",
                 "echo reply" if got else "no echo reply", ok=got is None)
    assert got is None, "an ESP packet on an unknown SPI was decapsulated and forwarded"
    _serve(ike, s, 0.1)
    ok = bool(ike.ping(s, child, timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the real child SA", "the echo reply", ok, ok=ok)
    assert ok, "the child SA stopped carrying data after ESP on an unknown SPI"


@part("IKE.SGW-R.ESPSPI.2", "ESP on an unknown SPI is reported by an INFORMATIONAL with N(INVALID_SPI) over the IKE SA",
      ["rfc7296-2.21.4-f"])
def test_esp_unknown_spi_reported(ike, steps):
    s = ike.establish()
    child = s.children[0]
    bogus = b"\x7e" + os.urandom(3)
    ike.esp_send(child.esp_out().seal(b"\x45" + bytes(27), c.IPPROTO_IPIP, seq=1, spi=int.from_bytes(bogus, "big")))
    got = _serve(ike, s, 1.0)
    notes = [q for q in got if q.ok and q.exchange == c.INFORMATIONAL and q.notify(c.N_INVALID_SPI) is not None]
    steps.record(f"ESP with SPI {bogus.hex()} (no such SA)", "an INFORMATIONAL request with N(INVALID_SPI)",
                 ", ".join(q.summary() for q in got) or "no request", ok=bool(notes))
    if should(notes, f"an INFORMATIONAL with N(INVALID_SPI) after ESP on an unknown SPI (got "
                     f"{', '.join(q.summary() for q in got) or 'nothing'})"):
        data = notes[0].notify(c.N_INVALID_SPI).fields
        assert bogus in (data.get("data", b""), data.get("spi", b"")), \
            f"the INVALID_SPI notify names the packet's SPI {bogus.hex()}: {data}"


# ----------------------------------------------------------------------------- INVALID_SYNTAX

@part("IKE.SGW-R.SYNTAX.1", "A protected request whose inner payload overruns the plaintext is answered with INVALID_SYNTAX only",
      ["rfc7296-2.21.2-b", "rfc7296-3.10.1-d", "rfc7296-2.21.3-a"])
def test_invalid_syntax_payload_length(ike, steps):
    s = ike.establish()
    child = s.children[0]
    broken = m.delete(c.PROTO_ESP, [child.spi_in]).with_(length=64)
    resp = ike.exchange(s, s.informational_request([broken]))
    steps.record("INFORMATIONAL with D(ESP) whose Payload Length (64) runs past the plaintext",
                 "a response with N(INVALID_SYNTAX) only", _describe(resp),
                 ok=resp is not None and c.N_INVALID_SYNTAX in resp.notify_types())
    assert resp is not None, "no answer to a malformed protected request"
    assert c.N_INVALID_SYNTAX in resp.notify_types(), f"expected INVALID_SYNTAX, got {notify_names(resp)}"
    others = [p.describe() for p in (resp.inner or []) if not (p.type == c.NOTIFY and p.fields.get("notify_type") == c.N_INVALID_SYNTAX)]
    assert not others, f"a malformed request is rejected entirely, yet the response carries {others}"


@part("IKE.SGW-R.SYNTAX.2", "A Delete payload whose SPI count does not match its length is answered with INVALID_SYNTAX, and nothing is deleted",
      ["rfc7296-3.10.1-d", "rfc7296-2.21.3-a", "rfc7296-2.21.2-b"])
def test_invalid_syntax_delete_count(ike, steps):
    s = ike.establish()
    child = s.children[0]
    body = struct.pack("!BBH", c.PROTO_ESP, 4, 3) + child.spi_in
    resp = ike.exchange(s, s.informational_request([m.Payload(c.DELETE, body)]))
    steps.record("INFORMATIONAL with D(ESP) saying 3 SPIs but holding one", "N(INVALID_SYNTAX), no Delete",
                 _describe(resp), ok=resp is not None and c.N_INVALID_SYNTAX in resp.notify_types())
    assert resp is not None, "no answer to a malformed protected request"
    assert not _deletes(resp), f"a malformed Delete was acted upon: {_describe(resp)}"
    assert c.N_INVALID_SYNTAX in resp.notify_types(), f"expected INVALID_SYNTAX, got {notify_names(resp)}"


# ----------------------------------------------------------------------------- INITIAL_CONTACT

@part("IKE.SGW-R.IC.1", "INITIAL_CONTACT on a new IKE SA of the same identity: the new SA works, and the old one is either kept whole or closed with its child SAs",
      ["rfc7296-2.4-d", "rfc7296-1.4.1-c"])
def test_initial_contact(ike, steps):
    old = ike.establish()
    if not ike.ping(old, old.children[0], timeout=1.5, tries=1, ident=IDENT):
        inconclusive("the first IKE SA's child SA carried no data")
    new = ike.establish(ike.session(), initial_contact=True)
    steps.record("a second IKE SA, same identity, N(INITIAL_CONTACT) in IKE_AUTH", "established",
                 f"child SPI {new.children[-1].spi_out.hex()}", ok=True)
    _serve(ike, old, 0.3)
    ok = bool(ike.ping(new, new.children[0], replies=[new.children[0]], timeout=1.5, tries=1, ident=IDENT))
    steps.record("ICMP echo through the new IKE SA's child SA", "the echo reply", ok, ok=ok)
    assert ok, "the child SA of the IKE SA that carried INITIAL_CONTACT carries no data"
    mid = old.next_mid
    ike.send(old.informational_request([]))
    r = ike.receive(lambda r: _is_on(r.data, old.spi_i) and parse_header(r.data).response, QUIET)
    msg = parse_message(r.data, old.cipher_in) if r is not None else None
    kept = msg is not None and msg.ok and msg.encrypted
    steps.record("empty INFORMATIONAL on the old IKE SA", "the old SA closed (RFC: MAY) or still whole",
                 _describe(msg), ok=None)
    old_child = bool(ike.ping(old, old.children[0], replies=[old.children[0]], timeout=QUIET, tries=1,
                              ident=IDENT))
    steps.record("ICMP echo through the old IKE SA's child SA", "consistent with the old IKE SA's state",
                 old_child, ok=old_child if kept else not old_child)
    if kept:
        assert old_child, "the old IKE SA answers, but its child SA no longer carries data"
    else:
        if msg is not None:
            wrong = _invalid_ike_spi_ok(msg, old.spi_i, old.spi_r, mid)
            assert not wrong, f"the answer on the closed IKE SA: {'; '.join(wrong)}"
        assert not old_child, "the old IKE SA is gone, but its child SA still carries data"
