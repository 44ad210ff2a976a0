"""SGW-R: the gateway as responder, IKE_SA_INIT and the child SA of IKE_AUTH: proposal selection
(RFC 7296 2.7, 3.3), the key exchange (1.2, 3.4), nonces (3.9, 2.10) and cookies (2.6, 2.6.1)."""
import os
import struct

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike_env import notify_names
from testbed.conformance.parts import inconclusive, part, should

UNKNOWN_ENCR = 1024          # Transform ID of the private-use range (RFC 7296 3.3.2): unknown to the IUT
UNKNOWN_TYPE = 200           # a Transform Type no RFC defines (3.3.2)
UNKNOWN_ATTR = 16400         # a transform attribute type of the private-use range (3.3.5)
MODP768 = 1                  # a group the gateways do not implement (RFC 7296 3.3.2, Appendix B)


# ---------------------------------------------------------------------------------------- helpers

def said(resp) -> str:
    return resp.summary() if resp is not None else "no answer"


def sa_init(ike, s, payloads=None, timeout: float = 2.0, **kw):
    """An IKE_SA_INIT request on `s` and its answer. A responder that happens to demand a COOKIE
    (under load, or still shortly after) is followed once, the way RFC 7296 2.6 says, so that a part
    judges the answer to the request it built, not the cookie round. Where a silent drop is an
    acceptable answer, pass timeout=0.5."""
    def build(cookie):
        if payloads is not None:
            return s.sa_init_request(payloads=([m.notify(c.N_COOKIE, cookie)] if cookie else []) + payloads, **kw)
        return s.sa_init_request(cookie=cookie, **kw)

    resp = ike.exchange(s, build(None), timeout=timeout, port=c.IKE_PORT)
    ck = resp.notify(c.N_COOKIE) if resp is not None and resp.get(c.SA) is None else None
    if ck is not None:
        resp = ike.exchange(s, build(ck.fields["data"]), timeout=timeout, port=c.IKE_PORT)
    return resp


def the_sa(resp) -> list[dict]:
    """The proposals of the response's SA payload ([] when there is none)."""
    sa_p = resp.get(c.SA) if resp is not None else None
    return sa_p.fields.get("proposals", []) if sa_p is not None else []


def types_of(prop: dict) -> list[int]:
    return [t["type"] for t in prop["transforms"]]


def describe(prop: dict) -> str:
    ts = ", ".join(f"{t['type']}:{t['id']}" + (f"/{t['key_len']}" if t["key_len"] else "") for t in prop["transforms"])
    return f"#{prop['number']} proto {prop['protocol']} spi {prop['spi'].hex() or '-'} [{ts}]"


def ike_prop(number, encr=c.ENCR_AES_GCM_16, key_bits=128, integ=None, prf=c.PRF_HMAC_SHA2_256, dh=c.ECP256):
    return m.ike_proposal(number, encr, key_bits, integ, prf, dh)


def cbc_prop(number, dh=c.ECP256):
    """AES-CBC-128 with HMAC-SHA-256-128: a suite both gateways of the testbed accept, as the
    acceptable alternative next to a proposal a part makes unacceptable."""
    return m.ike_proposal(number, c.ENCR_AES_CBC, 128, c.AUTH_HMAC_SHA2_256_128, c.PRF_HMAC_SHA2_256, dh)


def refused(resp) -> bool:
    """No IKE SA came of the request: no answer, or an answer without SA payload."""
    return resp is None or resp.get(c.SA) is None


def assert_still_serving(ike, steps) -> None:
    """After a request that must not be accepted: a well-formed IKE_SA_INIT is still answered, so
    that "no SA" was a refusal and not a dead responder."""
    s = ike.session()
    resp = sa_init(ike, s)
    ok = resp is not None and resp.get(c.SA) is not None
    steps.record("a well-formed IKE_SA_INIT afterwards", "answered with SA, KE, Nr", said(resp), ok=ok)
    assert ok, f"the responder no longer answers a well-formed IKE_SA_INIT: {said(resp)}"


def finish_init(ike, s, resp) -> None:
    """Adopt an accepted IKE_SA_INIT response (keys, NAT) as IkeTester.init would."""
    s.handle_sa_init_response(resp.raw)
    ike.nat = ike._nat_detected(s, resp)
    ike.ike_port = c.NAT_T_PORT if ike.nat else c.IKE_PORT


def ke_group_of(resp) -> int | None:
    n = resp.notify(c.N_INVALID_KE_PAYLOAD) if resp is not None else None
    if n is None or len(n.fields["data"]) < 2:
        return None
    return struct.unpack("!H", n.fields["data"][:2])[0]


# ---------------------------------------------------------------------------------------- IKE proposals

@part("IKE.SGW-R.PROP.1", "Several transforms of each type in one IKE proposal: SAr1 holds exactly one of each "
       "type, taken from the offer", ["rfc7296-2.7-a", "rfc7296-2.7-d", "rfc7296-3.3.6-c"])
def test_one_transform_per_type(ike, steps):
    s = ike.session()
    offer = m.Proposal(1, c.PROTO_IKE, [
        m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, 256), m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, 128),
        m.Transform(c.T_PRF, c.PRF_HMAC_SHA1), m.Transform(c.T_PRF, c.PRF_HMAC_SHA2_256),
        m.Transform(c.T_DH, c.ECP256), m.Transform(c.T_DH, c.CURVE25519)])
    resp = sa_init(ike, s, proposals=[offer])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT, one proposal: ENCR AES-GCM 256 and 128, PRF SHA1 and SHA2-256, DH 19 and 31; KE 19",
                 "one proposal with one ENCR, one PRF, one DH", said(resp) + " " + "; ".join(map(describe, props)))
    assert props, f"the offer was not accepted: {said(resp)}"
    assert len(props) == 1, f"SAr1 must hold one proposal, holds {len(props)}"
    types = types_of(props[0])
    assert sorted(types) == [c.T_ENCR, c.T_PRF, c.T_DH], f"transform types {types}: one each of ENCR, PRF, DH expected"
    offered = {(c.T_ENCR, c.ENCR_AES_GCM_16, 256), (c.T_ENCR, c.ENCR_AES_GCM_16, 128), (c.T_PRF, c.PRF_HMAC_SHA1, None),
               (c.T_PRF, c.PRF_HMAC_SHA2_256, None), (c.T_DH, c.ECP256, None), (c.T_DH, c.CURVE25519, None)}
    for t in props[0]["transforms"]:
        assert (t["type"], t["id"], t["key_len"]) in offered, f"transform {t} was not offered"


@part("IKE.SGW-R.PROP.2", "Of two IKE proposals, the acceptable second one is accepted alone and its number 2 echoed",
      ["rfc7296-2.7-c", "rfc7296-3.3.6-b", "rfc7296-3.3.1-c"])
def test_second_proposal_number_echoed(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, encr=UNKNOWN_ENCR), ike_prop(2)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: #1 ENCR 1024 (unknown), #2 AES-GCM-128/PRF-SHA2-256/DH 19",
                 "SAr1 with exactly proposal #2", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the acceptable proposal #2 was not accepted: {said(resp)}"
    assert len(props) == 1, f"{len(props)} proposals in SAr1, one expected"
    assert props[0]["number"] == 2, f"proposal number {props[0]['number']} in SAr1, 2 (the accepted one) expected"


@part("IKE.SGW-R.PROP.3", "The accepted proposal keeps the offered Protocol ID (IKE), its number 3 echoed",
      ["rfc7296-2.7-b", "rfc7296-3.3.1-c"])
def test_protocol_kept(ike, steps):
    s = ike.session()
    wrong_proto = ike_prop(2)
    wrong_proto.protocol, wrong_proto.spi = c.PROTO_ESP, os.urandom(4)  # an ESP proposal has a 4-octet SPI
    resp = sa_init(ike, s, proposals=[ike_prop(1, encr=UNKNOWN_ENCR), wrong_proto, ike_prop(3)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: #1 unknown ENCR, #2 Protocol ESP (SPI of 4 octets), #3 IKE AES-GCM-128",
                 "SAr1: #3, Protocol ID 1", "; ".join(map(describe, props)) or said(resp))
    assert len(props) == 1, f"one accepted proposal expected: {said(resp)}"
    p = props[0]
    assert p["protocol"] == c.PROTO_IKE, f"Protocol ID {p['protocol']}, the offered IKE (1) expected"
    assert p["number"] == 3, f"proposal number {p['number']}, 3 expected"


@part("IKE.SGW-R.PROP.16", "The proposal accepted in IKE_SA_INIT has SPI Size 0 (the SPIs are in the header)",
      ["rfc7296-3.3.1-d"])
def test_init_spi_size_zero(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s)
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: AES-GCM-128, PRF-HMAC-SHA2-256, DH 19", "SAr1 with SPI Size 0",
                 "; ".join(map(describe, props)) or said(resp))
    assert props, f"the offer was not accepted: {said(resp)}"
    assert props[0]["spi"] == b"", f"SPI Size {len(props[0]['spi'])} ({props[0]['spi'].hex()}) in IKE_SA_INIT, 0 expected"


@part("IKE.SGW-R.PROP.4", "No acceptable IKE proposal: NO_PROPOSAL_CHOSEN and no SA",
      ["rfc7296-2.7-c", "rfc7296-3.3.4-f", "rfc7296-3.3.6-a"])
def test_no_proposal_chosen(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, encr=UNKNOWN_ENCR), ike_prop(2, encr=UNKNOWN_ENCR + 1)])
    steps.record("IKE_SA_INIT offering only unknown ENCR transforms", "N(NO_PROPOSAL_CHOSEN), no SA payload", said(resp))
    assert resp is not None, "no answer: the rejection must be given as NO_PROPOSAL_CHOSEN"
    assert resp.get(c.SA) is None, f"an SA was accepted: {said(resp)}"
    assert c.N_NO_PROPOSAL_CHOSEN in resp.notify_types(), f"NO_PROPOSAL_CHOSEN expected, got {notify_names(resp)}"


@part("IKE.SGW-R.PROP.5", "An unknown Transform ID is skipped: the known transform of the same type is chosen",
      ["rfc7296-3.3.6-g"])
def test_unknown_transform_id_skipped(ike, steps):
    s = ike.session()
    offer = m.Proposal(1, c.PROTO_IKE, [
        m.Transform(c.T_ENCR, UNKNOWN_ENCR, 128), m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, 128),
        m.Transform(c.T_PRF, c.PRF_HMAC_SHA2_256), m.Transform(c.T_DH, c.ECP256)])
    resp = sa_init(ike, s, proposals=[offer])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT, one proposal: ENCR 1024 (unknown) then AES-GCM-128, PRF, DH 19",
                 "accepted with ENCR AES-GCM-128", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the proposal was refused for its unknown transform: {said(resp)}"
    encr = [t["id"] for t in props[0]["transforms"] if t["type"] == c.T_ENCR]
    assert encr == [c.ENCR_AES_GCM_16], f"ENCR {encr} chosen, AES-GCM-16 expected"


@part("IKE.SGW-R.PROP.6", "A transform with an unknown attribute is unacceptable: the other proposal is chosen",
      ["rfc7296-3.3.6-g", "rfc7296-3.3.6-f"])
def test_unknown_attribute_unacceptable(ike, steps):
    s = ike.session()
    odd = ike_prop(1)
    odd.transforms[0] = m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, 128, attrs=struct.pack("!HH", 0x8000 | UNKNOWN_ATTR, 1))
    resp = sa_init(ike, s, proposals=[odd, cbc_prop(2)])
    props = the_sa(resp)
    steps.record(f"IKE_SA_INIT: #1 AES-GCM-128 with attribute {UNKNOWN_ATTR} (unknown), #2 AES-CBC-128/HMAC-SHA2-256",
                 "proposal #2 chosen (#1's only ENCR transform is unacceptable)",
                 "; ".join(map(describe, props)) or said(resp))
    assert props, f"no proposal accepted: {said(resp)}"
    assert props[0]["number"] == 2, f"proposal #{props[0]['number']} chosen: a transform with an unknown attribute " \
                                    "must be treated as unacceptable"


@part("IKE.SGW-R.PROP.7", "A proposal with an unknown Transform Type is unacceptable: the other proposal is chosen",
      ["rfc7296-3.3.6-f"])
def test_unknown_transform_type(ike, steps):
    s = ike.session()
    odd = ike_prop(1)
    odd.transforms.append(m.Transform(UNKNOWN_TYPE, 1))
    resp = sa_init(ike, s, proposals=[odd, cbc_prop(2)])
    props = the_sa(resp)
    steps.record(f"IKE_SA_INIT: #1 AES-GCM-128 plus a Transform Type {UNKNOWN_TYPE}, #2 AES-CBC-128/HMAC-SHA2-256",
                 "proposal #2 chosen", "; ".join(map(describe, props)) or said(resp))
    assert props, f"no proposal accepted (#2 is acceptable): {said(resp)}"
    assert props[0]["number"] == 2, f"proposal #{props[0]['number']} with an unknown Transform Type was accepted"


@part("IKE.SGW-R.PROP.8", "A proposal missing a mandatory Transform Type (PRF) is unacceptable: the other is chosen",
      ["rfc7296-3.3.6-f"])
def test_missing_prf(ike, steps):
    s = ike.session()
    no_prf = m.Proposal(1, c.PROTO_IKE, [m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, 128), m.Transform(c.T_DH, c.ECP256)])
    resp = sa_init(ike, s, proposals=[no_prf, cbc_prop(2)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: #1 AES-GCM-128 and DH 19 without PRF, #2 AES-CBC-128/HMAC-SHA2-256/PRF/DH",
                 "proposal #2 chosen", "; ".join(map(describe, props)) or said(resp))
    assert props, f"no proposal accepted (#2 is acceptable): {said(resp)}"
    assert props[0]["number"] == 2, f"proposal #{props[0]['number']} without a PRF was accepted"


@part("IKE.SGW-R.PROP.9", "AES-CBC without an integrity transform (integrity NONE) is refused: NO_PROPOSAL_CHOSEN",
      ["rfc7296-5-b", "rfc7296-3.3.6-f"])
def test_cbc_without_integrity(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, encr=c.ENCR_AES_CBC), ike_prop(2, encr=c.ENCR_AES_CBC, integ=c.AUTH_NONE)])
    steps.record("IKE_SA_INIT: #1 AES-CBC-128 with no INTEG transform, #2 AES-CBC-128 with INTEG NONE",
                 "no SA; NO_PROPOSAL_CHOSEN", said(resp))
    assert refused(resp), f"an IKE SA without integrity protection was accepted: {said(resp)}"
    assert resp is not None and c.N_NO_PROPOSAL_CHOSEN in resp.notify_types(), \
        f"NO_PROPOSAL_CHOSEN expected, got {notify_names(resp) if resp else 'no answer'}"


@part("IKE.SGW-R.PROP.10", "AES without a Key Length attribute is unacceptable: the other proposal is chosen",
      ["rfc7296-3.3.5-e"])
def test_aes_without_key_length(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, key_bits=None), cbc_prop(2)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: #1 AES-GCM-16 without Key Length, #2 AES-CBC-128/HMAC-SHA2-256",
                 "proposal #2 chosen", "; ".join(map(describe, props)) or said(resp))
    assert props, f"no proposal accepted (#2 is acceptable): {said(resp)}"
    assert props[0]["number"] == 2, f"proposal #{props[0]['number']} (AES without Key Length) was accepted"


@part("IKE.SGW-R.PROP.11", "The chosen AES transform echoes the offered Key Length unchanged, in TV format",
      ["rfc7296-3.3.6-d", "rfc7296-3.3.5-a", "rfc7296-3.3.5-c"])
def test_key_length_echoed(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[cbc_prop(1)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: AES-CBC Key Length 128, HMAC-SHA2-256-128, PRF-HMAC-SHA2-256, DH 19",
                 "ENCR AES-CBC with Key Length attribute (TV, AF=1) 128", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the offer was not accepted: {said(resp)}"
    encr = [t for t in props[0]["transforms"] if t["type"] == c.T_ENCR]
    assert len(encr) == 1 and encr[0]["id"] == c.ENCR_AES_CBC, f"ENCR {encr}"
    assert encr[0]["key_len"] == 128, f"Key Length {encr[0]['key_len']} (attributes {encr[0]['attrs']}), " \
                                      "128 in a TV attribute expected"


@part("IKE.SGW-R.PROP.12", "No Key Length attribute on the fixed-length transforms (PRF, INTEG, DH) of SAr1",
      ["rfc7296-3.3.5-d"])
def test_no_key_length_on_fixed(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[cbc_prop(1)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: AES-CBC-128, HMAC-SHA2-256-128, PRF-HMAC-SHA2-256, DH 19",
                 "PRF, INTEG and DH transforms without attributes", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the offer was not accepted: {said(resp)}"
    bad = [t for t in props[0]["transforms"] if t["type"] != c.T_ENCR and t["attrs"]]
    assert not bad, f"attributes on fixed-length transforms: {bad}"


@part("IKE.SGW-R.PROP.13", "AES-GCM with a 256-bit key, longer than the 128 bits configured, should be accepted",
      ["rfc7296-3.3.5-g", "rfc7296-3.3.5-f"])
def test_longer_key_accepted(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, key_bits=256)])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: only AES-GCM-16 with Key Length 256", "accepted, Key Length 256 echoed",
                 "; ".join(map(describe, props)) or said(resp))
    if should(props, f"a stronger key length accepted (got {said(resp)})"):
        encr = [t for t in props[0]["transforms"] if t["type"] == c.T_ENCR]
        assert encr and encr[0]["key_len"] == 256, f"ENCR {encr}: Key Length 256 must be echoed"


@part("IKE.SGW-R.PROP.14", "Non-zero RESERVED fields of the Proposal and Transform substructures are ignored",
      ["rfc7296-3.3.1-a", "rfc7296-3.3.2-a"])
def test_reserved_substructures_ignored(ike, steps):
    s = ike.session()
    p = ike_prop(1)
    p.reserved = 0xA5
    for t in p.transforms:
        t.reserved, t.reserved2 = 0x5A, 0xC3
    resp = sa_init(ike, s, proposals=[p])
    props = the_sa(resp)
    steps.record("IKE_SA_INIT: proposal RESERVED 0xa5, each transform RESERVED 0x5a and 0xc3",
                 "accepted as usual", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the proposal was refused for its RESERVED fields: {said(resp)}"


@part("IKE.SGW-R.PROP.15", "An SA payload whose transform count disagrees with its transforms is not accepted",
      ["rfc7296-3.3-b"])
def test_inconsistent_sa_rejected(ike, steps):
    s = ike.session()
    p = ike_prop(1)
    p.num_transforms = 5
    resp = sa_init(ike, s, proposals=[p], timeout=0.5)
    steps.record("IKE_SA_INIT: a proposal saying 5 transforms that holds 3", "no SA (an error notify or a drop)",
                 said(resp))
    assert refused(resp), f"a malformed SA payload was accepted: {said(resp)}"
    assert_still_serving(ike, steps)


# ---------------------------------------------------------------------------------------- KE

@part("IKE.SGW-R.KE.1", "SAr1 and KEr agree: KEr's group is the chosen DH transform, with data of that group's length",
      ["rfc7296-3.4-b"])
def test_ker_matches_chosen_group(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s)
    props = the_sa(resp)
    ke = resp.get(c.KE) if resp is not None else None
    steps.record("IKE_SA_INIT: AES-GCM-128, PRF-HMAC-SHA2-256, DH 19; KE 19",
                 "SAr1 with DH 19 and KEr group 19 of 64 octets",
                 "; ".join(map(describe, props)) + (f"; KEr group {ke.fields['group']} {len(ke.fields['data'])} octets"
                                                    if ke else f" {said(resp)}"))
    assert props and ke is not None, f"no SA or no KE in the response: {said(resp)}"
    dh = [t["id"] for t in props[0]["transforms"] if t["type"] == c.T_DH]
    assert dh == [c.ECP256] and ke.fields["group"] == c.ECP256, f"DH {dh}, KEr group {ke.fields['group']}"
    assert len(ke.fields["data"]) == 64, f"KEr of group 19 with {len(ke.fields['data'])} octets, 64 expected"


@part("IKE.SGW-R.KE.2", "With group 14 chosen, the responder's KE data is exactly the 256 octets of the modulus",
      ["rfc7296-3.4-a"], needs=["ikev2.group.14"])
def test_modp_ker_length(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, dh=c.MODP2048)], ke_group=c.MODP2048)
    ke = resp.get(c.KE) if resp is not None else None
    steps.record("IKE_SA_INIT offering only DH 14, KE 14", "KEr group 14 with 256 octets",
                 f"{said(resp)}" + (f"; KEr {ke.fields['group']}/{len(ke.fields['data'])} octets" if ke else ""))
    assert ke is not None, f"group 14 was not accepted: {said(resp)}"
    assert ke.fields["group"] == c.MODP2048 and len(ke.fields["data"]) == 256, \
        f"KEr group {ke.fields['group']} with {len(ke.fields['data'])} octets, 14 with 256 expected"


@part("IKE.SGW-R.KE.3", "KE of a group outside the proposal: INVALID_KE_PAYLOAD naming the proposal's group; the "
      "retry with that group is accepted", ["rfc7296-3.4-d"], needs=["ikev2.group.14"])
def test_ke_group_not_proposed(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, dh=c.ECP256)], ke_group=c.MODP2048)
    group = ke_group_of(resp)
    steps.record("IKE_SA_INIT: proposal DH 19 only, KE payload of group 14", "N(INVALID_KE_PAYLOAD) with group 19, no SA",
                 said(resp) + (f" group {group}" if group is not None else ""))
    assert refused(resp), f"SA accepted with a KE of a group not in the selected proposal: {said(resp)}"
    assert resp is not None and resp.notify(c.N_INVALID_KE_PAYLOAD) is not None, \
        f"INVALID_KE_PAYLOAD expected, got {notify_names(resp) if resp else 'no answer'}"
    data = resp.notify(c.N_INVALID_KE_PAYLOAD).fields["data"]
    assert len(data) == 2 and group == c.ECP256, f"INVALID_KE_PAYLOAD data {data.hex()}: the 2-octet group 19 expected"
    again = sa_init(ike, s, proposals=[ike_prop(1, dh=c.ECP256)], ke_group=c.ECP256)
    steps.record("IKE_SA_INIT again with KE 19", "SA, KE, Nr", said(again))
    assert again is not None and again.get(c.SA) is not None, f"the retry with the named group failed: {said(again)}"


@part("IKE.SGW-R.KE.4", "KE of a group the responder does not implement: INVALID_KE_PAYLOAD naming the acceptable "
      "offered group", ["rfc7296-3.4-d"])
def test_ke_group_unsupported(ike, steps):
    s = ike.session()
    payloads = [m.sa([ike_prop(1, dh=[MODP768, c.ECP256])]), m.ke(MODP768, os.urandom(96)), m.nonce(s.ni)]
    payloads += s.nat_notifies(bytes(8))
    resp = sa_init(ike, s, payloads=payloads)
    group = ke_group_of(resp)
    steps.record("IKE_SA_INIT: proposal DH 1 (MODP-768) and 19, KE of group 1",
                 "N(INVALID_KE_PAYLOAD) naming group 19", said(resp) + (f" group {group}" if group is not None else ""))
    assert refused(resp), f"an SA was accepted with a KE of group 1: {said(resp)}"
    assert group == c.ECP256, f"INVALID_KE_PAYLOAD naming group 19 expected, got {notify_names(resp) if resp else 'no answer'}" \
                              f" group {group}"


@part("IKE.SGW-R.KE.5", "An offered, acceptable group other than the first in KE: accepted with that group, or "
      "INVALID_KE_PAYLOAD naming another offered group", ["rfc7296-3.4-d", "rfc7296-3.3.6-c"], needs=["ikev2.group.14"])
def test_ke_second_offered_group(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, proposals=[ike_prop(1, dh=[c.ECP256, c.MODP2048])], ke_group=c.MODP2048)
    props, ke = the_sa(resp), (resp.get(c.KE) if resp is not None else None)
    steps.record("IKE_SA_INIT: proposal DH 19 then 14, KE of group 14",
                 "SAr1 with DH 14 alone and KEr of group 14, or INVALID_KE_PAYLOAD naming 19",
                 said(resp) + ("; " + describe(props[0]) if props else f" group {ke_group_of(resp)}"))
    assert resp is not None, "no answer"
    if props:
        dh = [t["id"] for t in props[0]["transforms"] if t["type"] == c.T_DH]
        assert dh == [c.MODP2048], f"DH {dh} chosen while the KE is of group 14: INVALID_KE_PAYLOAD was due"
        assert ke is not None and ke.fields["group"] == c.MODP2048, "KEr of group 14 expected"
    else:
        assert ke_group_of(resp) == c.ECP256, f"neither accepted nor INVALID_KE_PAYLOAD(19): {said(resp)}"


@part("IKE.SGW-R.KE.6", "A MODP-2048 KE value one octet short of the modulus length is refused",
      ["rfc7296-3.4-a"], needs=["ikev2.group.14"])
def test_modp_ke_short(ike, steps):
    s = ike.session()
    s.sa_init_request(ke_group=c.MODP2048)  # makes the group-14 key
    short = s.dh.public[1:]
    resp = sa_init(ike, s, proposals=[ike_prop(1, dh=c.MODP2048)], ke_group=c.MODP2048, ke_data=short, timeout=0.5)
    steps.record("IKE_SA_INIT: DH 14, KE data of 255 octets (not padded to 256)", "no SA", said(resp))
    assert refused(resp), f"a KE value of the wrong length was accepted: {said(resp)}"
    assert_still_serving(ike, steps)


# ---------------------------------------------------------------------------------------- nonces

@part("IKE.SGW-R.NONCE.1", "An Ni of 15 octets (below the 16 minimum) is refused", ["rfc7296-3.9-a"])
def test_nonce_too_short(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, nonce=os.urandom(15), timeout=0.5)
    steps.record("IKE_SA_INIT with a 15-octet Ni", "no SA (an error notify or a drop)", said(resp))
    assert refused(resp), f"a 15-octet nonce was accepted: {said(resp)}"
    assert_still_serving(ike, steps)


@part("IKE.SGW-R.NONCE.2", "An Ni of 257 octets (above the 256 maximum) is refused", ["rfc7296-3.9-a"])
def test_nonce_too_long(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s, nonce=os.urandom(257), timeout=0.5)
    steps.record("IKE_SA_INIT with a 257-octet Ni", "no SA (an error notify or a drop)", said(resp))
    assert refused(resp), f"a 257-octet nonce was accepted: {said(resp)}"
    assert_still_serving(ike, steps)


@part("IKE.SGW-R.NONCE.3", "Ni of exactly 16 octets is accepted and the IKE SA completes", ["rfc7296-3.9-a"])
def test_nonce_16_accepted(ike, steps):
    s = ike.session(nonce_len=16)
    resp = sa_init(ike, s)
    steps.record("IKE_SA_INIT with a 16-octet Ni", "SA, KE, Nr", said(resp))
    assert resp is not None and resp.get(c.SA) is not None, f"a 16-octet nonce was refused: {said(resp)}"
    finish_init(ike, s, resp)
    auth = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    if auth is not None:
        s.handle_auth_response(auth.raw, psk=ike.peer.psk)
    steps.record("IKE_AUTH", "AUTH verified", said(auth), ok=bool(s.peer_auth_ok))
    assert s.peer_auth_ok, f"IKE_AUTH after a 16-octet Ni failed: {said(auth)}"


@part("IKE.SGW-R.NONCE.4", "Ni of exactly 256 octets is accepted and the IKE SA completes", ["rfc7296-3.9-a"])
def test_nonce_256_accepted(ike, steps):
    s = ike.session(nonce_len=256)
    resp = sa_init(ike, s)
    steps.record("IKE_SA_INIT with a 256-octet Ni", "SA, KE, Nr", said(resp))
    assert resp is not None and resp.get(c.SA) is not None, f"a 256-octet nonce was refused: {said(resp)}"
    finish_init(ike, s, resp)
    auth = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    if auth is not None:
        s.handle_auth_response(auth.raw, psk=ike.peer.psk)
    steps.record("IKE_AUTH", "AUTH verified", said(auth), ok=bool(s.peer_auth_ok))
    assert s.peer_auth_ok, f"IKE_AUTH after a 256-octet Ni failed: {said(auth)}"


@part("IKE.SGW-R.NONCE.5", "Nr is 16 to 256 octets and at least half the PRF key size (16 octets for PRF-HMAC-SHA2-256)",
      ["rfc7296-3.9-a", "rfc7296-2.10-a"])
def test_nr_length(ike, steps):
    s = ike.session()
    resp = sa_init(ike, s)
    nr = resp.get(c.NONCE) if resp is not None else None
    steps.record("IKE_SA_INIT (PRF-HMAC-SHA2-256)", "Nr of 16..256 octets",
                 f"Nr of {len(nr.fields['data'])} octets" if nr else said(resp))
    assert nr is not None, f"no Nr: {said(resp)}"
    assert 16 <= len(nr.fields["data"]) <= 256, f"Nr of {len(nr.fields['data'])} octets"


@part("IKE.SGW-R.NONCE.6", "Every IKE_SA_INIT response carries a fresh Nr", ["rfc7296-3.9-b"])
def test_nr_fresh(ike, steps):
    seen = []
    for _ in range(3):
        s = ike.session()
        resp = sa_init(ike, s)
        nr = resp.get(c.NONCE) if resp is not None else None
        assert nr is not None, f"no Nr: {said(resp)}"
        seen.append(nr.fields["data"])
    steps.record("three IKE_SA_INIT requests", "three different Nr", [n.hex()[:16] for n in seen],
                 ok=len(set(seen)) == 3)
    assert len(set(seen)) == 3, "a responder nonce was reused"


# ---------------------------------------------------------------------------------------- child SA proposals

def esp(number, spi, *transforms):
    return m.Proposal(number, c.PROTO_ESP, list(transforms), spi=spi)


def gcm(bits=128):
    return m.Transform(c.T_ENCR, c.ENCR_AES_GCM_16, bits)


def esn(v=c.ESN_NO):
    return m.Transform(c.T_ESN, v)


def auth_with(ike, s, proposals, spi):
    resp = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity, child_proposals=proposals,
                                          child_spi=spi))
    if resp is not None:
        s.handle_auth_response(resp.raw, psk=ike.peer.psk)
    return resp


@part("IKE.SGW-R.CHILD.1", "A child SA proposal with several ENCR and ESN transforms: SAr2 holds one of each, "
      "Protocol ESP, a 4-octet SPI", ["rfc7296-2.7-e", "rfc7296-2.7-d", "rfc7296-3.3.6-c", "rfc7296-2.7-b"])
def test_child_one_per_type(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    offer = esp(1, spi, m.Transform(c.T_ENCR, UNKNOWN_ENCR, 128), gcm(256), gcm(128), esn(c.ESN_YES), esn(c.ESN_NO))
    resp = auth_with(ike, s, [offer], spi)
    props = the_sa(resp)
    steps.record("IKE_AUTH, ESP proposal: ENCR 1024, AES-GCM 256, AES-GCM 128, ESN yes, ESN no",
                 "SAr2: one ENCR, one ESN, Protocol ESP, SPI of 4 octets", "; ".join(map(describe, props)) or said(resp))
    assert props, f"the child SA offer was not accepted: {said(resp)}"
    assert len(props) == 1, f"{len(props)} proposals in SAr2"
    p = props[0]
    assert sorted(types_of(p)) == [c.T_ENCR, c.T_ESN], f"transform types {types_of(p)}: one ENCR and one ESN expected"
    assert p["protocol"] == c.PROTO_ESP and len(p["spi"]) == 4, f"Protocol {p['protocol']}, SPI {p['spi'].hex()}"
    assert p["number"] == 1


@part("IKE.SGW-R.CHILD.2", "Of two child SA proposals, the acceptable second is chosen, its number echoed, and "
      "the child SA carries data", ["rfc7296-3.3.1-c", "rfc7296-3.3.6-b"])
def test_child_second_proposal(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth_with(ike, s, [esp(1, spi, m.Transform(c.T_ENCR, UNKNOWN_ENCR, 128), esn()),
                              esp(2, spi, gcm(128), esn())], spi)
    props = the_sa(resp)
    steps.record("IKE_AUTH: ESP #1 ENCR 1024 (unknown), #2 AES-GCM-128", "SAr2 with #2",
                 "; ".join(map(describe, props)) or said(resp))
    assert len(props) == 1, f"one accepted child proposal expected: {said(resp)}"
    assert props[0]["number"] == 2, f"proposal number {props[0]['number']}, 2 expected"
    ok = bool(s.children) and bool(ike.ping(s))
    steps.record("ICMP echo through the child SA", "echo reply", ok, ok=ok)
    assert ok, "no echo reply through the child SA negotiated with proposal #2"


@part("IKE.SGW-R.CHILD.3", "No acceptable child SA proposal: NO_PROPOSAL_CHOSEN in IKE_AUTH, no child SA; the IKE SA "
      "should stay", ["rfc7296-2.7-c", "rfc7296-3.3.6-a", "rfc7296-1.3.1-c"])
def test_child_no_proposal(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth_with(ike, s, [esp(1, spi, m.Transform(c.T_ENCR, UNKNOWN_ENCR, 128), esn())], spi)
    steps.record("IKE_AUTH with only an unknown ESP ENCR", "N(NO_PROPOSAL_CHOSEN), no SA/TS payloads", said(resp))
    assert resp is not None and resp.ok, f"no readable IKE_AUTH response: {said(resp)}"
    assert resp.get(c.SA) is None, f"a child SA was accepted: {said(resp)}"
    assert c.N_NO_PROPOSAL_CHOSEN in resp.notify_types(), f"NO_PROPOSAL_CHOSEN expected, got {notify_names(resp)}"
    if resp.get(c.AUTH) is not None:
        info = ike.exchange(s, s.informational_request([]), timeout=1.0)
        steps.record("empty INFORMATIONAL on the IKE SA", "answered", said(info))
        should(info is not None and info.response, "the IKE SA survives the refused child SA")
    else:
        should(False, "the IKE SA survives the refused child SA (the IKE_AUTH response has no AUTH)")


@part("IKE.SGW-R.CHILD.4", "A child SA proposal without the mandatory ESN transform is unacceptable: the other is chosen",
      ["rfc7296-3.3.6-f"])
def test_child_missing_esn(ike, steps):
    s, _ = ike.init()
    spi = os.urandom(4)
    resp = auth_with(ike, s, [esp(1, spi, gcm(128)), esp(2, spi, gcm(128), esn())], spi)
    props = the_sa(resp)
    steps.record("IKE_AUTH: ESP #1 AES-GCM-128 without ESN, #2 AES-GCM-128 with ESN", "SAr2 with #2",
                 "; ".join(map(describe, props)) or said(resp))
    assert props, f"no child proposal accepted (#2 is acceptable): {said(resp)}"
    assert props[0]["number"] == 2, f"proposal #{props[0]['number']} lacking the mandatory ESN transform was accepted"


# ---------------------------------------------------------------------------------------- cookies

def load_until_cookie(ike, steps, limit: int = 80):
    """Half-open IKE SAs from raw IKE_SA_INIT requests, one after the other, until the responder
    answers one with N(COOKIE): (the cookie-only response, its session) or (None, None)."""
    misses = 0
    for n in range(limit):
        s = ike.session()
        resp = ike.exchange(s, s.sa_init_request(), timeout=0.5, port=c.IKE_PORT)
        if resp is None:
            misses += 1
            if misses >= 3:
                break
            continue
        if resp.get(c.SA) is None and resp.notify(c.N_COOKIE) is not None:
            steps.record(f"{n} half-open IKE SAs, then one more IKE_SA_INIT", "N(COOKIE)", said(resp))
            return resp, s
    steps.record(f"{limit} IKE_SA_INIT requests left half-open", "N(COOKIE) at some point", "no COOKIE")
    return None, None


def cookie_or_inconclusive(ike, steps):
    resp, s = load_until_cookie(ike, steps)
    if resp is None:
        inconclusive("the responder demanded no COOKIE under load")
    return resp, s


@part("IKE.SGW-R.COOKIE.1", "Under many half-open IKE SAs, IKE_SA_INIT is answered with N(COOKIE) alone, of 1 to 64 "
      "octets", ["rfc7296-2.6-b", "rfc7296-2.6-c"], needs=["ikev2.cookies"])
def test_cookie_demanded(ike, steps):
    resp, _ = load_until_cookie(ike, steps)
    if should(resp is not None, "a COOKIE demanded under load (none came)"):
        data = resp.notify(c.N_COOKIE).fields["data"]
        assert 1 <= len(data) <= 64, f"COOKIE data of {len(data)} octets"
        assert resp.get(c.SA) is None and resp.get(c.KE) is None, f"the COOKIE response carries more: {said(resp)}"


@part("IKE.SGW-R.COOKIE.2", "The request repeated with the COOKIE as first payload is served, and IKE_AUTH completes",
      ["rfc7296-2.6-b", "rfc7296-4-d"], needs=["ikev2.cookies"])
def test_cookie_accepted(ike, steps):
    first, s = cookie_or_inconclusive(ike, steps)
    cookie = first.notify(c.N_COOKIE).fields["data"]
    resp = ike.exchange(s, s.sa_init_request(cookie=cookie), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT again: N(COOKIE) first, the other payloads unchanged", "SA, KE, Nr", said(resp))
    assert resp is not None and resp.get(c.SA) is not None, f"the cookie was not honoured: {said(resp)}"
    finish_init(ike, s, resp)
    auth = ike.exchange(s, s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity))
    if auth is not None:
        s.handle_auth_response(auth.raw, psk=ike.peer.psk)
    steps.record("IKE_AUTH (message ID 1)", "AUTH verified, a child SA", said(auth), ok=bool(s.peer_auth_ok))
    assert s.peer_auth_ok and s.children, f"IKE_AUTH after the cookie exchange failed: {said(auth)}"


@part("IKE.SGW-R.COOKIE.3", "A wrong cookie is ignored: the request is answered as one without cookie, a fresh COOKIE",
      ["rfc7296-2.6-e"], needs=["ikev2.cookies"])
def test_wrong_cookie(ike, steps):
    first, s = cookie_or_inconclusive(ike, steps)
    cookie = bytearray(first.notify(c.N_COOKIE).fields["data"])
    cookie[-1] ^= 0xFF
    resp = ike.exchange(s, s.sa_init_request(cookie=bytes(cookie)), timeout=0.5, port=c.IKE_PORT)
    steps.record("IKE_SA_INIT with the cookie's last octet flipped", "N(COOKIE) again, no SA", said(resp))
    assert refused(resp), f"a wrong cookie was accepted: {said(resp)}"
    assert resp is not None and resp.notify(c.N_COOKIE) is not None, \
        f"the request must be processed as if it had no cookie (a new COOKIE), got {said(resp)}"


@part("IKE.SGW-R.COOKIE.4", "A cookie made for another initiator SPI is not accepted: a fresh COOKIE instead",
      ["rfc7296-2.6-e"], needs=["ikev2.cookies"])
def test_cookie_of_other_spi(ike, steps):
    first, _ = cookie_or_inconclusive(ike, steps)
    cookie = first.notify(c.N_COOKIE).fields["data"]
    other = ike.session()
    resp = ike.exchange(other, other.sa_init_request(cookie=cookie), timeout=0.5, port=c.IKE_PORT)
    steps.record("IKE_SA_INIT of a new SPIi carrying the cookie given to another SPIi", "N(COOKIE), no SA", said(resp))
    assert refused(resp), f"a cookie of another SPIi was accepted: {said(resp)}"
    assert resp is not None and resp.notify(c.N_COOKIE) is not None, \
        f"the request must be processed as if it had no cookie (a new COOKIE), got {said(resp)}"


@part("IKE.SGW-R.COOKIE.5", "Under load, a retry without the cookie gets a COOKIE again and no SA",
      ["rfc7296-2.6-b"], needs=["ikev2.cookies"])
def test_cookieless_retry(ike, steps):
    _, s = cookie_or_inconclusive(ike, steps)
    resp = ike.exchange(s, s.sa_init_request(), timeout=0.5, port=c.IKE_PORT)
    steps.record("the same IKE_SA_INIT again without N(COOKIE)", "N(COOKIE), no SA", said(resp))
    assert refused(resp), f"the cookie-less retry was served while cookies are demanded: {said(resp)}"
    should(resp is not None and resp.notify(c.N_COOKIE) is not None, f"a COOKIE again (got {said(resp)})")


@part("IKE.SGW-R.COOKIE.6", "COOKIE then INVALID_KE_PAYLOAD: IKE_SA_INIT completes (the cookie kept across the KE "
      "retry should suffice)", ["rfc7296-2.6.1-a", "rfc7296-3.4-d"], needs=["ikev2.cookies", "ikev2.group.14"])
def test_cookie_and_invalid_ke(ike, steps):
    first, s = cookie_or_inconclusive(ike, steps)
    cookie = first.notify(c.N_COOKIE).fields["data"]
    proposals = [ike_prop(1, dh=c.ECP256)]
    resp = ike.exchange(s, s.sa_init_request(proposals=proposals, cookie=cookie, ke_group=c.MODP2048), port=c.IKE_PORT)
    steps.record("IKE_SA_INIT: N(COOKIE), proposal DH 19, KE of group 14", "N(INVALID_KE_PAYLOAD) naming 19 (or a new COOKIE)",
                 said(resp))
    assert refused(resp), f"accepted with a KE outside the proposal: {said(resp)}"
    rounds = 0
    while resp is not None and resp.get(c.SA) is None and rounds < 3:
        rounds += 1
        if resp.notify(c.N_COOKIE) is not None:
            cookie = resp.notify(c.N_COOKIE).fields["data"]
        elif resp.notify(c.N_INVALID_KE_PAYLOAD) is not None:
            assert ke_group_of(resp) == c.ECP256, f"INVALID_KE_PAYLOAD names group {ke_group_of(resp)}, 19 expected"
        else:
            break
        resp = ike.exchange(s, s.sa_init_request(proposals=proposals, cookie=cookie, ke_group=c.ECP256), port=c.IKE_PORT)
        steps.record(f"retry {rounds}: N(COOKIE), KE 19", "SA, KE, Nr", said(resp))
    assert resp is not None and resp.get(c.SA) is not None, f"IKE_SA_INIT did not complete: {said(resp)}"
    should(rounds == 1, f"the shorter exchange of 2.6.1 (the cookie kept across the KE retry): {rounds} retries")
