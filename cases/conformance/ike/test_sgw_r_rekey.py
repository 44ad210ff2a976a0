"""SGW-R: the gateway as responder, CREATE_CHILD_SA: new child SAs, child SA rekey (with and without
PFS), IKE SA rekey, and the collisions and errors the tester can provoke (RFC 7296 sections 1.3,
1.3.2, 1.3.3, 2.8, 2.8.1, 2.8.2, 2.17, 2.18, 2.25).

The tester is the original initiator; the IUT only answers. Data through a child SA is an ICMP echo
to the inside host H; a reply may come back on any of the session's child SAs (which outbound SA the
IUT picks among parallel ones is its own choice) unless a part says otherwise.
"""
import os
import struct
import time


from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.crypto import dh_key
from testbed.conformance.ike.parse import parse_header, parse_message
from testbed.conformance.ike.session import Algorithms, ChildAlgorithms
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part, should

QUIET = 0.5
IDENT = 0x7e52


# ----------------------------------------------------------------------------- helpers


def _describe(msg):
    return msg.summary() if msg is not None else "no answer"


def _sel(t):
    return m.TrafficSelector(t.get("start", "0.0.0.0"), t.get("end", "255.255.255.255"), t.get("protocol", 0),
                             t.get("start_port", 0), t.get("end_port", 65535))


def _ts_of(child):
    return {"tsi": [_sel(t) for t in child.ts_local], "tsr": [_sel(t) for t in child.ts_remote]}


def _deletes(msg, protocol=c.PROTO_ESP):
    out = []
    for d in msg.get_all(c.DELETE):
        if d.fields.get("protocol") == protocol:
            out += d.fields.get("spis", [])
    return out


def _is_on(data, spi_i, response=None):
    h = parse_header(data)
    return h.ok and h.spi_i == spi_i and (response is None or h.response == response)


def _serve(ike, s, timeout):
    """Answer the IUT's INFORMATIONAL requests on `s` during `timeout`; returns them."""
    got = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        r = ike.receive(lambda r: _is_on(r.data, s.spi_i, False), left)
        if r is None:
            break
        msg = s.parse(r.data)
        got.append(msg)
        if msg.ok and msg.exchange == c.INFORMATIONAL:
            ike.send(s.informational_response([]))
    return got


def _rekey_child(ike, s, child, steps, pfs_group=None):
    """CREATE_CHILD_SA with N(REKEY_SA) for `child`; (response, new child SA), INCONCLUSIVE if none."""
    resp = ike.exchange(s, s.create_child_request(rekey=child, pfs_group=pfs_group))
    if resp is None:
        inconclusive("no answer to the CREATE_CHILD_SA rekeying the child SA")
    msg, new = s.handle_create_child_response(resp.raw)
    steps.record(f"CREATE_CHILD_SA {{N(REKEY_SA, {child.spi_in.hex()}), SA, Ni, {'KEi, ' if pfs_group else ''}TSi, TSr}}",
                 "SA, Nr, TSi, TSr: a new child SA", msg.summary(), ok=new is not None)
    return msg, new


def _rekey_ike(ike, s, steps):
    """CREATE_CHILD_SA {SA(IKE, new SPI), Ni, KEi}; (response, new session), INCONCLUSIVE if none."""
    resp = ike.exchange(s, s.rekey_ike_request())
    if resp is None:
        inconclusive("no answer to the CREATE_CHILD_SA rekeying the IKE SA")
    msg, new = s.handle_rekey_ike_response(resp.raw)
    steps.record("CREATE_CHILD_SA {SA(IKE, new SPI), Ni, KEi}", "SA, Nr, KEr: a new IKE SA", msg.summary(),
                 ok=new is not None)
    if new is not None:
        # the tester library does not carry these over to the new IKE SA
        new.virtual_ip = list(s.virtual_ip)
        new.peer_auth_ok = s.peer_auth_ok
        ike.sessions.append(new)
    return msg, new


# ----------------------------------------------------------------------------- new child SA

@part("IKE.SGW-R.NEWCHILD.1", "CREATE_CHILD_SA without REKEY_SA creates a new child SA that accepts data at once",
      ["rfc7296-2.8-f", "rfc7296-2.17-a", "rfc7296-2.17-b"])
def test_new_child(ike, steps):
    s = ike.establish()
    resp = ike.exchange(s, s.create_child_request(**_ts_of(s.children[0])))
    msg, new = s.handle_create_child_response(resp.raw) if resp is not None else (None, None)
    steps.record("CREATE_CHILD_SA {SA, Ni, TSi, TSr}", "SA (one proposal, 4-byte SPI), Nr, TSi, TSr",
                 _describe(msg), ok=new is not None)
    assert resp is not None, "no answer to CREATE_CHILD_SA"
    assert new is not None, f"no child SA created: {_describe(msg)}"
    props = msg.get(c.SA).fields["proposals"]
    assert len(props) == 1 and len(props[0]["spi"]) == 4, f"the response's SA: {props}"
    assert msg.get(c.TSI) is not None and msg.get(c.TSR) is not None, "no TSi/TSr in the response"
    got = ike.ping(s, new, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the new child SA (keys from KEYMAT with this exchange's nonces)",
                 "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the new child SA does not accept data (keys or SA not installed)"


@part("IKE.SGW-R.NEWCHILD.2", "A new child SA with the same traffic selectors does not delete the existing one",
      ["rfc7296-2.8-e"])
def test_new_child_keeps_old(ike, steps):
    s = ike.establish()
    old = s.children[0]
    resp = ike.exchange(s, s.create_child_request(**_ts_of(old)))
    msg, new = s.handle_create_child_response(resp.raw) if resp is not None else (None, None)
    if new is None:
        inconclusive(f"no second child SA: {_describe(msg)}")
    _serve(ike, s, 0.2)
    got = ike.ping(s, old, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the first child SA", "the echo reply", got is not None, ok=got is not None)
    should(got is not None, "the first child SA still carries data after a second one with the same traffic "
                            "selectors (no IKEv1-style duplicate heuristic)")


@part("IKE.SGW-R.NEWCHILD.3", "A CREATE_CHILD_SA with no acceptable proposal is refused, and the IKE SA and child SA survive",
      ["rfc7296-1.3.1-c", "rfc7296-2.21.3-a"])
def test_child_no_proposal(ike, steps):
    s = ike.establish()
    spi = os.urandom(4)
    bad = m.Proposal(1, c.PROTO_ESP, [m.Transform(c.T_ENCR, 1023, 128), m.Transform(c.T_ESN, c.ESN_NO)], spi=spi)
    resp = ike.exchange(s, s.create_child_request(proposals=[bad], child_spi=spi, **_ts_of(s.children[0])))
    steps.record("CREATE_CHILD_SA offering only ENCR 1023 (unassigned)", "an error notify (NO_PROPOSAL_CHOSEN)",
                 _describe(resp), ok=resp is not None and resp.get(c.SA) is None)
    assert resp is not None, "no answer to an unacceptable CREATE_CHILD_SA"
    assert resp.get(c.SA) is None, f"the IUT accepted an unknown transform: {_describe(resp)}"
    assert any(t < 16384 for t in resp.notify_types()), f"no error notify: {notify_names(resp)}"
    again = ike.exchange(s, s.informational_request([]))
    got = ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT).child
    steps.record("empty INFORMATIONAL, then ICMP echo", "both answered", f"{_describe(again)}; echo {got is not None}",
                 ok=again is not None and got is not None)
    assert again is not None, "the IKE SA is gone after a failed CREATE_CHILD_SA"
    assert got is not None, "the child SA stopped carrying data after a failed CREATE_CHILD_SA"


# ----------------------------------------------------------------------------- child SA rekey

@part("IKE.SGW-R.REKEY.1", "A child SA rekey (N(REKEY_SA)) is answered with SA, Nr, TSi, TSr; the new SA accepts data",
      ["rfc7296-2.8-f", "rfc7296-2.17-a"])
def test_rekey_child(ike, steps):
    s = ike.establish()
    old = s.children[0]
    msg, new = _rekey_child(ike, s, old, steps)
    assert new is not None, f"the rekey was refused: {msg.summary()}"
    assert msg.get(c.TSI) is not None and msg.get(c.TSR) is not None, "no TSi/TSr in the rekey response"
    assert new.spi_out != old.spi_out, "the new child SA reuses the old SA's SPI"
    got = ike.ping(s, new, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the new child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the new child SA does not accept data"


@part("IKE.SGW-R.REKEY.2", "Make before break: after the rekey, the old child SA still accepts data until it is deleted",
      ["rfc7296-2.8.1-b"])
def test_rekey_old_still_works(ike, steps):
    s = ike.establish()
    old = s.children[0]
    msg, new = _rekey_child(ike, s, old, steps)
    if new is None:
        inconclusive(f"the rekey was refused: {msg.summary()}")
    got = ike.ping(s, old, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the old child SA (not yet deleted)", "the echo reply (on either SA)",
                 got is not None, ok=got is not None)
    assert got is not None, "the old child SA stopped accepting data before its Delete"
    got = ike.ping(s, new, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the new child SA", "the echo reply (on either SA)", got is not None,
                 ok=got is not None)
    assert got is not None, "the new child SA does not accept data"


@part("IKE.SGW-R.REKEY.3", "The rekeyed child SA keeps the old SA's traffic selectors",
      ["rfc7296-2.9.2-c", "rfc7296-2.8-c"])
def test_rekey_same_ts(ike, steps):
    s = ike.establish()
    old = s.children[0]
    msg, new = _rekey_child(ike, s, old, steps)
    if new is None:
        inconclusive(f"the rekey was refused: {msg.summary()}")
    key = lambda sels: sorted((t.get("start"), t.get("end"), t.get("protocol"), t.get("start_port"), t.get("end_port"))
                              for t in sels)
    same = key(new.ts_local) == key(old.ts_local) and key(new.ts_remote) == key(old.ts_remote)
    steps.record("traffic selectors of the new child SA", f"TSi {key(old.ts_local)}, TSr {key(old.ts_remote)}",
                 f"TSi {key(new.ts_local)}, TSr {key(new.ts_remote)}", ok=same)
    assert same, (f"the rekey narrowed or changed the traffic selectors: TSi {key(old.ts_local)} -> "
                  f"{key(new.ts_local)}, TSr {key(old.ts_remote)} -> {key(new.ts_remote)}")


@part("IKE.SGW-R.REKEY.4", "After the rekey, the old child SA's Delete is answered with the paired Delete; data then flows on the new SA only",
      ["rfc7296-1.4.1-c", "rfc7296-1.4.1-a", "rfc7296-2.8-f"])
def test_rekey_then_delete_old(ike, steps):
    s = ike.establish()
    old = s.children[0]
    msg, new = _rekey_child(ike, s, old, steps)
    if new is None:
        inconclusive(f"the rekey was refused: {msg.summary()}")
    resp = ike.exchange(s, s.delete_request([old.spi_in]))
    steps.record(f"Delete of the old child SA ({old.spi_in.hex()})", f"D(ESP, {old.spi_out.hex()})",
                 _describe(resp), ok=resp is not None and _deletes(resp) == [old.spi_out])
    assert resp is not None, "no answer to the Delete of the old child SA"
    assert _deletes(resp) == [old.spi_out], f"expected D(ESP, [{old.spi_out.hex()}]), got {_describe(resp)}"
    got = ike.ping(s, new, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the new child SA", "the echo reply through the new SA",
                 None if got is None else got.spi_in.hex(), ok=got is new)
    assert got is new, ("no echo reply through the new child SA after the old one was deleted"
                        if got is None else "the echo reply came through the deleted child SA")
    dead = ike.ping(s, old, timeout=QUIET, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the deleted old child SA", "no echo reply", dead is not None, ok=dead is None)
    assert dead is None, "the deleted old child SA still accepts data"


@part("IKE.SGW-R.REKEY.5", "A child SA rekey with PFS is answered with KEr of the offered group; the new SA works with keys from g^ir",
      ["rfc7296-2.17-a"], needs=["ikev2.pfs"])
def test_rekey_child_pfs(ike, steps):
    s = ike.establish()
    old = s.children[0]
    msg, new = _rekey_child(ike, s, old, steps, pfs_group=c.ECP256)
    ke = msg.get(c.KE)
    steps.record("KEr in the response", f"group {c.ECP256}", ke.fields if ke else "no KE",
                 ok=ke is not None and ke.fields.get("group") == c.ECP256)
    assert new is not None, f"the PFS rekey was refused: {msg.summary()}"
    assert ke is not None and ke.fields.get("group") == c.ECP256, f"KEr of group 19 expected, got {ke and ke.fields}"
    got = ike.ping(s, new, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo sealed on the new child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the new child SA (PFS keys) does not accept data"


@part("IKE.SGW-R.REKEY.6", "A PFS rekey whose KEi group differs from the proposal's DH group gets INVALID_KE_PAYLOAD with the group wanted",
      ["rfc7296-1.3-c", "rfc7296-2.21.3-a"], needs=["ikev2.pfs"])
def test_rekey_child_wrong_ke(ike, steps):
    s = ike.establish()
    old = s.children[0]
    spi = os.urandom(4)
    prop = ChildAlgorithms(**{**vars(s.child_algs), "dh": c.ECP256}).proposal(spi)
    dh = dh_key(c.CURVE25519)
    payloads = [m.notify(c.N_REKEY_SA, protocol=c.PROTO_ESP, spi=old.spi_in), m.sa([prop]), m.nonce(os.urandom(32)),
                m.ke(dh.group, dh.public), m.tsi(_ts_of(old)["tsi"]), m.tsr(_ts_of(old)["tsr"])]
    resp = ike.exchange(s, s.create_child_request(payloads=payloads, child_spi=spi))
    n = resp.notify(c.N_INVALID_KE_PAYLOAD) if resp is not None else None
    group = struct.unpack("!H", n.fields["data"][:2])[0] if n is not None and len(n.fields["data"]) >= 2 else None
    steps.record("rekey offering DH 19 with KEi of group 31", "N(INVALID_KE_PAYLOAD) with group 19",
                 f"{_describe(resp)} group {group}", ok=group == c.ECP256)
    assert resp is not None, "no answer to the CREATE_CHILD_SA"
    assert resp.get(c.SA) is None, f"the IUT accepted a KEi that does not match the chosen proposal: {_describe(resp)}"
    if n is None and c.N_NO_PROPOSAL_CHOSEN in resp.notify_types():
        inconclusive("the IUT picks no proposal with DH 19 (NO_PROPOSAL_CHOSEN): the KEi mismatch is not reached")
    assert n is not None, f"expected INVALID_KE_PAYLOAD, got {notify_names(resp)}"
    assert group == c.ECP256, f"INVALID_KE_PAYLOAD names group {group}, but the only proposal offered group 19"


@part("IKE.SGW-R.REKEY.7", "A rekey of an unknown child SPI gets CHILD_SA_NOT_FOUND naming that SPI",
      ["rfc7296-2.25-d", "rfc7296-2.25.1-c", "rfc7296-2.21.3-a"])
def test_rekey_unknown_child(ike, steps):
    s = ike.establish()
    bogus = bytes([0x7e, 0x57]) + os.urandom(2)
    resp = ike.exchange(s, s.create_child_request(rekey=bogus, **_ts_of(s.children[0])))
    steps.record(f"CREATE_CHILD_SA with N(REKEY_SA, {bogus.hex()}), an SPI that names no SA",
                 "N(CHILD_SA_NOT_FOUND)", _describe(resp),
                 ok=resp is not None and c.N_CHILD_SA_NOT_FOUND in resp.notify_types())
    assert resp is not None, "no answer to a rekey of an unknown child SA"
    if should(c.N_CHILD_SA_NOT_FOUND in resp.notify_types(),
              f"CHILD_SA_NOT_FOUND for a rekey of an unknown SPI (got {notify_names(resp)})"):
        n = resp.notify(c.N_CHILD_SA_NOT_FOUND).fields
        should(n.get("spi") == bogus and n.get("protocol") == c.PROTO_ESP,
               f"the notify's SPI copied from REKEY_SA ({bogus.hex()}), got protocol {n.get('protocol')} "
               f"SPI {n.get('spi', b'').hex()}")
    got = ike.ping(s, s.children[0], timeout=1.5, tries=1, ident=IDENT).child
    assert got is not None, "the real child SA stopped carrying data"


@part("IKE.SGW-R.REKEY.8", "A rekey of a child SA that was just deleted gets CHILD_SA_NOT_FOUND",
      ["rfc7296-2.25.1-c", "rfc7296-2.21.3-a"])
def test_rekey_deleted_child(ike, steps):
    s = ike.establish()
    first = s.children[0]
    resp = ike.exchange(s, s.create_child_request(**_ts_of(first)))
    _, second = s.handle_create_child_response(resp.raw) if resp is not None else (None, None)
    if second is None:
        inconclusive(f"no second child SA: {_describe(resp)}")
    gone = ike.exchange(s, s.delete_request([first.spi_in]))
    if gone is None:
        inconclusive("no answer to the Delete of the first child SA")
    resp = ike.exchange(s, s.create_child_request(rekey=first, **_ts_of(first)))
    steps.record("rekey of the child SA deleted just before", "N(CHILD_SA_NOT_FOUND)", _describe(resp),
                 ok=resp is not None and c.N_CHILD_SA_NOT_FOUND in resp.notify_types())
    assert resp is not None, "no answer to a rekey of a deleted child SA"
    should(c.N_CHILD_SA_NOT_FOUND in resp.notify_types(),
           f"CHILD_SA_NOT_FOUND for a rekey of a deleted child SA (got {_describe(resp)})")


# ----------------------------------------------------------------------------- IKE SA rekey

@part("IKE.SGW-R.IKEREKEY.1", "An IKE SA rekey is answered with SA (one IKE proposal, new 8-byte SPI), Nr and KEr, no TS",
      ["rfc7296-2.18-a"])
def test_rekey_ike_response(ike, steps):
    s = ike.establish()
    msg, new = _rekey_ike(ike, s, steps)
    assert new is not None, f"the IKE SA rekey was refused: {msg.summary()}"
    props = msg.get(c.SA).fields["proposals"]
    assert len(props) == 1 and props[0]["protocol"] == c.PROTO_IKE and len(props[0]["spi"]) == 8, \
        f"one IKE proposal with an 8-byte SPI expected: {props}"
    assert props[0]["spi"] not in (bytes(8), s.spi_r), f"the new responder SPI {props[0]['spi'].hex()} is not new"
    ke = msg.get(c.KE)
    assert ke is not None and ke.fields["group"] == s.algs.dh, f"KEr of group {s.algs.dh} expected: {ke and ke.fields}"
    assert msg.get(c.TSI) is None and msg.get(c.TSR) is None, "TS payloads in an IKE SA rekey response"


@part("IKE.SGW-R.IKEREKEY.2", "The new IKE SA works with the new keys, its Message IDs starting at 0",
      ["rfc7296-2.18-c", "rfc7296-2.18-a"])
def test_rekey_ike_new_sa_works(ike, steps):
    s = ike.establish()
    msg, new = _rekey_ike(ike, s, steps)
    if new is None:
        inconclusive(f"the IKE SA rekey was refused: {msg.summary()}")
    stale = m.build_message(new.spi_i, new.spi_r, c.INFORMATIONAL, 0, [m.SkPayload([])], cipher=s.cipher_out)
    ike.send(stale)
    r = ike.receive(lambda r: _is_on(r.data, new.spi_i, True), QUIET)
    steps.record("INFORMATIONAL on the new SPIs, sealed with the OLD IKE SA's keys", "no answer",
                 "no answer" if r is None else parse_message(r.data).summary(), ok=r is None)
    assert r is None, "the new IKE SA accepted a message sealed with the old keys"
    resp = ike.exchange(new, new.informational_request([]))
    steps.record("empty INFORMATIONAL on the new IKE SA, Message ID 0, new keys", "an answer with Message ID 0",
                 _describe(resp), ok=resp is not None and resp.ok and resp.message_id == 0)
    assert resp is not None, "no answer on the new IKE SA to Message ID 0 under the new keys"
    assert resp.ok and resp.inner is not None, f"the response does not verify under the new keys: {resp.reason}"
    again = ike.exchange(new, new.informational_request([]))
    assert again is not None and again.message_id == 1, f"no answer to Message ID 1: {_describe(again)}"


@part("IKE.SGW-R.IKEREKEY.3", "After an IKE SA rekey the child SAs move to the new IKE SA: data flows, and a child Delete there is processed",
      ["rfc7296-1.4-c", "rfc7296-1.4.1-c"])
def test_rekey_ike_children_move(ike, steps):
    s = ike.establish()
    child = s.children[0]
    msg, new = _rekey_ike(ike, s, steps)
    if new is None:
        inconclusive(f"the IKE SA rekey was refused: {msg.summary()}")
    got = ike.ping(new, child, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo through the child SA after the IKE SA rekey", "the echo reply", got is not None,
                 ok=got is not None)
    assert got is not None, "the child SA stopped carrying data after the IKE SA rekey"
    resp = ike.exchange(new, new.delete_request([child.spi_in]))
    steps.record("Delete of the child SA on the NEW IKE SA", f"D(ESP, {child.spi_out.hex()})", _describe(resp),
                 ok=resp is not None and _deletes(resp) == [child.spi_out])
    assert resp is not None, "no answer on the new IKE SA"
    assert _deletes(resp) == [child.spi_out], f"the child SA was not moved to the new IKE SA: {_describe(resp)}"


@part("IKE.SGW-R.IKEREKEY.4", "The old IKE SA's Delete after a rekey is answered empty; the new IKE SA and the child SAs survive",
      ["rfc7296-1.4.1-c", "rfc7296-2.8-d", "rfc7296-1.4-c"])
def test_rekey_ike_delete_old(ike, steps):
    s = ike.establish()
    child = s.children[0]
    msg, new = _rekey_ike(ike, s, steps)
    if new is None:
        inconclusive(f"the IKE SA rekey was refused: {msg.summary()}")
    resp = ike.exchange(s, s.delete_request(ike=True))
    steps.record("D(IKE) on the OLD IKE SA", "an empty INFORMATIONAL response", _describe(resp),
                 ok=resp is not None and resp.inner == [])
    assert resp is not None, "no answer to the Delete of the old IKE SA"
    assert resp.inner == [], f"the response to an IKE SA Delete is empty: {_describe(resp)}"
    alive = ike.exchange(new, new.informational_request([]))
    got = ike.ping(new, child, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("empty INFORMATIONAL on the new IKE SA, then ICMP echo through the child SA", "both answered",
                 f"{_describe(alive)}; echo {got is not None}", ok=alive is not None and got is not None)
    assert alive is not None, "the new IKE SA is gone with the old one"
    assert got is not None, "the child SA was closed with the old IKE SA, though it had moved to the new one"
    ike.send(s.informational_request([]))
    r = ike.receive(lambda r: _is_on(r.data, s.spi_i, True), QUIET)
    late = parse_message(r.data) if r is not None else None
    steps.record("empty INFORMATIONAL on the deleted old IKE SA", "nothing, or INVALID_IKE_SPI", _describe(late),
                 ok=late is None or (not late.encrypted and c.N_INVALID_IKE_SPI in late.notify_types()))
    assert late is None or (not late.encrypted and c.N_INVALID_IKE_SPI in late.notify_types()), \
        f"the deleted old IKE SA still answers: {_describe(late)}"


@part("IKE.SGW-R.IKEREKEY.5", "An IKE SA rekey proposing Diffie-Hellman NONE is refused; the IKE SA survives",
      ["rfc7296-2.18-b", "rfc7296-2.21.3-a"])
def test_rekey_ike_dh_none(ike, steps):
    s = ike.establish()
    spi = os.urandom(8)
    a = s.algs
    prop = m.ike_proposal(1, a.encr, a.key_bits, a.integ, a.prf, [0], spi)
    resp = ike.exchange(s, s.rekey_ike_request(payloads=[m.sa([prop]), m.nonce(os.urandom(32))]))
    steps.record("CREATE_CHILD_SA {SA(IKE, DH NONE, new SPI), Ni}, no KEi", "refused: an error notify, no SA",
                 _describe(resp), ok=resp is not None and resp.get(c.SA) is None)
    assert resp is not None, "no answer to the CREATE_CHILD_SA"
    assert resp.get(c.SA) is None, f"the IUT accepted an IKE SA rekey without Diffie-Hellman: {_describe(resp)}"
    assert any(t < 16384 for t in resp.notify_types()), f"no error notify: {notify_names(resp)}"
    again = ike.exchange(s, s.informational_request([]))
    steps.record("empty INFORMATIONAL on the IKE SA", "an answer", _describe(again), ok=again is not None)
    should(again is not None, "the IKE SA still answers after a refused rekey")


@part("IKE.SGW-R.IKEREKEY.6", "A late second rekey request on an IKE SA already rekeyed is answered with TEMPORARY_FAILURE",
      ["rfc7296-2.8.2-b", "rfc7296-2.25.2-b"])
def test_rekey_ike_twice(ike, steps):
    s = ike.establish()
    msg, new = _rekey_ike(ike, s, steps)
    if new is None:
        inconclusive(f"the IKE SA rekey was refused: {msg.summary()}")
    resp = ike.exchange(s, s.rekey_ike_request(), timeout=1.0)
    steps.record("a second IKE SA rekey request on the old (already rekeyed) IKE SA", "N(TEMPORARY_FAILURE)",
                 _describe(resp), ok=resp is not None and c.N_TEMPORARY_FAILURE in resp.notify_types())
    should(resp is not None and c.N_TEMPORARY_FAILURE in resp.notify_types() and resp.get(c.SA) is None,
           f"TEMPORARY_FAILURE for a rekey of an IKE SA already rekeyed (got {_describe(resp)})")
    alive = ike.exchange(new, new.informational_request([]))
    assert alive is not None, "the first rekey's new IKE SA is gone"


@part("IKE.SGW-R.IKEREKEY.7", "A CREATE_CHILD_SA on the old IKE SA after its rekey is answered with TEMPORARY_FAILURE",
      ["rfc7296-2.25.2-e", "rfc7296-2.25-a"])
def test_child_on_rekeyed_ike(ike, steps):
    s = ike.establish()
    child = s.children[0]
    msg, new = _rekey_ike(ike, s, steps)
    if new is None:
        inconclusive(f"the IKE SA rekey was refused: {msg.summary()}")
    resp = ike.exchange(s, s.create_child_request(rekey=child), timeout=1.0)
    steps.record("child SA rekey on the OLD IKE SA after the IKE SA rekey", "N(TEMPORARY_FAILURE)",
                 _describe(resp), ok=resp is not None and c.N_TEMPORARY_FAILURE in resp.notify_types())
    assert resp is None or resp.get(c.SA) is None, \
        f"a child SA was created on the IKE SA that was rekeyed away: {_describe(resp)}"
    should(resp is not None and c.N_TEMPORARY_FAILURE in resp.notify_types(),
           f"TEMPORARY_FAILURE for a child SA rekey on an IKE SA being replaced (got {_describe(resp)})")
    got = ike.ping(new, child, timeout=1.5, tries=1, ident=IDENT).child
    steps.record("ICMP echo through the child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the child SA stopped carrying data"
