"""EN-I: the client's IKE_AUTH request and what it does with the gateway's answer: its contents (IDi,
AUTH, CP, SA, TSi, TSr), error notifies, a wrong AUTH, narrowed selectors, Message IDs, lost and late
responses (RFC 7296 sections 1.2, 2.1, 2.2, 2.4, 2.19, 2.21.2, 3.1, 3.13, 3.15)."""
import os

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.ike_gateway_env import CP_ADDRESS, GATEWAY_ID
from testbed.conformance.parts import inconclusive, part, should


def auth_of(gw):
    """The client's IKE_AUTH after an accepted IKE_SA_INIT: (session, received, decrypted)."""
    s, _ = gw.accept_init()
    r, msg = gw.auth_request(s)
    if r is None:
        inconclusive("no IKE_AUTH from the client")
    if not msg.ok:
        inconclusive(f"the IKE_AUTH request does not decrypt: {msg.summary()}")
    return s, r, msg


@part("IKE.EN-I.AUTH.1", "IKE_AUTH: Message ID 1, both SPIs, I set and R clear, one SK payload the tester's keys open",
      ["rfc7296-3.1-j", "rfc7296-3.14-a", "rfc7296-3.1-a", "rfc7296-2.14-a"])
def test_auth_header(gw, steps):
    s, r, msg = auth_of(gw)
    steps.record("accept IKE_SA_INIT, wait for IKE_AUTH", "mid 1, SPIi/SPIr of the SA, flags I, SK last and decrypting",
                 f"{msg.summary()} flags 0x{msg.flags:02x} SPIr {'ok' if msg.spi_r == s.spi_r else msg.spi_r.hex()}")
    assert msg.message_id == 1, f"Message ID {msg.message_id}"
    assert msg.spi_i == s.spi_i and msg.spi_r == s.spi_r, "the SPIs are not those of the IKE SA"
    assert msg.initiator and not msg.response, f"flags 0x{msg.flags:02x}"
    assert [p.type for p in msg.payloads] == [c.SK], f"payloads outside SK: {msg.summary()}"
    assert not any(p.type == c.SK for p in msg.inner or []), "a nested SK payload"


@part("IKE.EN-I.AUTH.2", "IKE_AUTH carries IDi and an AUTH that verifies with the pre-shared key of that identity",
      ["rfc7296-1.2-c", "rfc7296-2.15-a", "rfc7296-4-d"])
def test_auth_psk_valid(gw, steps):
    s, r, msg = auth_of(gw)
    idi, auth = msg.get(c.IDI), msg.get(c.AUTH)
    steps.record("check IDi and AUTH", "IDi of the client, AUTH method 2 (PSK) verifying",
                 f"IDi {idi.fields if idi else None}, AUTH method {auth.fields['method'] if auth else None}, "
                 f"verifies: {s.peer_auth_ok}", ok=bool(s.peer_auth_ok))
    assert idi is not None and auth is not None, msg.summary()
    assert idi.fields["data"].endswith(gw.site.identity.encode()), f"IDi {idi.fields['data']!r}"
    assert auth.fields["method"] == c.AUTH_PSK, f"AUTH method {auth.fields['method']}"
    assert s.peer_auth_ok, "the AUTH value is not prf(prf(PSK, \"Key Pad for IKEv2\"), <InitiatorSignedOctets>)"


@part("IKE.EN-I.AUTH.3", "A remote-access client asks for its internal address: CP(CFG_REQUEST) with INTERNAL_IP4_ADDRESS",
      ["rfc7296-2.19-a", "rfc7296-2.19-d", "rfc7296-3.15.1-c", "rfc7296-3.15-a"], needs=["ikev2.cp"])
def test_auth_cp_request(gw, steps):
    s, r, msg = auth_of(gw)
    cp = msg.get(c.CP)
    attrs = cp.fields.get("attributes", []) if cp else []
    steps.record("look at the CP payload", "CFG_REQUEST with INTERNAL_IP4_ADDRESS (empty netmask if any)",
                 f"{cp.fields if cp else 'no CP'}", ok=bool(cp and cp.fields["cfg_type"] == c.CFG_REQUEST))
    assert cp is not None, f"no CP payload: {msg.summary()}"
    assert cp.fields["cfg_type"] == c.CFG_REQUEST, f"CFG type {cp.fields['cfg_type']}"
    assert any(t in (c.INTERNAL_IP4_ADDRESS, 8) for t, _ in attrs), f"attributes {attrs}"
    assert all(v == b"" for t, v in attrs if t == c.INTERNAL_IP4_NETMASK), "a non-empty INTERNAL_IP4_NETMASK"
    assert cp.body[1:4] == bytes(3), f"CP RESERVED {cp.body[1:4].hex()}"


@part("IKE.EN-I.AUTH.4", "In IKE_AUTH the CP payload comes before the SA payload", ["rfc7296-2.19-b"], needs=["ikev2.cp"])
def test_auth_cp_before_sa(gw, steps):
    s, r, msg = auth_of(gw)
    order = [p.type for p in msg.inner]
    steps.record("look at the payload order", "CP before SA", msg.summary())
    assert c.CP in order and c.SA in order, msg.summary()
    assert order.index(c.CP) < order.index(c.SA), msg.summary()


@part("IKE.EN-I.AUTH.5", "The child SA proposals: ESP, numbered from 1, 4-octet SPIs, no DH, AEAD without integrity",
      ["rfc7296-3.3-c", "rfc7296-3.3-d", "rfc7296-3.3-e", "rfc7296-1.2-f"])
def test_auth_child_proposals(gw, steps):
    s, r, msg = auth_of(gw)
    props = msg.get(c.SA).fields["proposals"]
    steps.record("look at SAi2", "ESP proposals 1..n, SPI 4 octets, no DH transform",
                 [(p["number"], p["protocol"], p["spi"].hex(), [(t["type"], t["id"]) for t in p["transforms"]]) for p in props])
    assert [p["number"] for p in props] == list(range(1, len(props) + 1)), [p["number"] for p in props]
    assert all(p["protocol"] == c.PROTO_ESP and len(p["spi"]) == 4 and p["spi"] != bytes(4) for p in props), props
    for p in props:
        encr = [t["id"] for t in p["transforms"] if t["type"] == c.T_ENCR]
        integ = [t["id"] for t in p["transforms"] if t["type"] == c.T_INTEG and t["id"] != c.AUTH_NONE]
        assert not (encr and all(e == c.ENCR_AES_GCM_16 for e in encr) and integ), f"proposal {p['number']}: AEAD with integrity"
    dh = [t for p in props for t in p["transforms"] if t["type"] == c.T_DH]
    should(not dh, f"no DH transform in the IKE_AUTH child proposals (RFC 7296 1.2: omit it), got {[t['id'] for t in dh]}")


@part("IKE.EN-I.AUTH.6", "TSi and TSr: IPv4 ranges, all ports written 0-65535, RESERVED zero",
      ["rfc7296-3.13.1-a", "rfc7296-3.13.1-b", "rfc7296-3.13.1-c", "rfc7296-3.13-a"])
def test_auth_selectors(gw, steps):
    s, r, msg = auth_of(gw)
    sels = []
    for t in (c.TSI, c.TSR):
        p = msg.get(t)
        assert p is not None, f"no {c.payload_name(t)}: {msg.summary()}"
        assert p.body[1:4] == bytes(3), f"{c.payload_name(t)} RESERVED {p.body[1:4].hex()}"
        sels += [(c.payload_name(t), x) for x in p.fields["selectors"]]
    steps.record("look at TSi and TSr", "protocol 0 with ports 0-65535", sels)
    for name, x in sels:
        if x["protocol"] == 0:
            assert (x["start_port"], x["end_port"]) == (0, 65535), f"{name}: ports {x['start_port']}-{x['end_port']}"


@part("IKE.EN-I.AUTH.7", "INITIAL_CONTACT, when sent, is in the IKE_AUTH request with protocol 0 and no SPI",
      ["rfc7296-2.4-b", "rfc7296-3.10-b", "rfc7296-3.10-c"])
def test_auth_initial_contact(gw, steps):
    s, r, msg = auth_of(gw)
    ic = msg.notify(c.N_INITIAL_CONTACT)
    steps.record("look for N(INITIAL_CONTACT)", "absent, or protocol 0, SPI size 0",
                 ic.fields if ic else "not sent")
    if ic is not None:
        assert ic.fields["protocol"] == 0 and ic.fields["spi_size"] == 0, ic.fields


def refused_child(gw, steps, notify: int):
    """An IKE_AUTH response that authenticates the gateway but refuses the child SA with `notify`."""
    s, r, msg = auth_of(gw)
    s.own_id_body = m.idr(GATEWAY_ID).body
    payloads = [m.idr(GATEWAY_ID), m.auth(c.AUTH_PSK, s.auth_value(gw.site.psk)), m.notify(notify)]
    gw.send(s, s.response(c.IKE_AUTH, payloads), to=r)
    steps.record(f"answer IKE_AUTH with IDr, AUTH (valid) and {c.notify_name(notify)}, no SA")
    reqs = gw.requests(s, timeout=0.3)
    echo = gw.echo_through(s, timeout=1.0, count=2, answer=False, wait_ping=False)
    steps.record("ping H from the client", "no ESP (no child SA)",
                 f"{len(echo.others)} ESP packet(s)" if echo.others or echo.esp else "no ESP", ok=not (echo.others or echo.esp))
    assert not (echo.others or echo.esp), "ESP from the client although no child SA was created"
    reqs += gw.requests(s, timeout=0.1)
    deleted = any(q.get(c.DELETE) is not None for q in reqs)
    resp = None if deleted else gw.exchange(s, s.informational_request())
    steps.record("empty INFORMATIONAL on the IKE SA", "answered (the IKE SA stands, or the client deleted it by policy)",
                 "the client deleted the IKE SA" if deleted else (resp.summary() if resp else "no answer"),
                 ok=deleted or resp is not None)
    assert deleted or resp is not None, f"the IKE SA neither answers nor was deleted after {c.notify_name(notify)}"


@part("IKE.EN-I.TS.2", "TS_UNACCEPTABLE in IKE_AUTH: no child SA, no data; the IKE SA is not failed",
      ["rfc7296-2.21.2-c", "rfc7296-1.3.1-c"])
def test_ts_unacceptable(gw, steps):
    refused_child(gw, steps, c.N_TS_UNACCEPTABLE)


@part("IKE.EN-I.CP.1", "FAILED_CP_REQUIRED in IKE_AUTH: no child SA, no data; the IKE SA is not failed",
      ["rfc7296-2.21.2-c"], needs=["ikev2.cp"])
def test_failed_cp_required(gw, steps):
    refused_child(gw, steps, c.N_FAILED_CP_REQUIRED)


@part("IKE.EN-I.AUTH.8", "NO_PROPOSAL_CHOSEN for the child in IKE_AUTH: no child SA, no data; the IKE SA is not failed",
      ["rfc7296-2.21.2-c", "rfc7296-1.3.1-c"])
def test_child_no_proposal(gw, steps):
    refused_child(gw, steps, c.N_NO_PROPOSAL_CHOSEN)


@part("IKE.EN-I.AUTH.9", "AUTHENTICATION_FAILED from the gateway: no child SA, no data through the tunnel",
      ["rfc7296-1.2-b", "rfc7296-2.21.3-b"])
def test_authentication_failed(gw, steps):
    s, r, msg = auth_of(gw)
    gw.send(s, s.response(c.IKE_AUTH, [m.notify(c.N_AUTHENTICATION_FAILED)]), to=r)
    steps.record("answer IKE_AUTH with only N(AUTHENTICATION_FAILED)")
    reqs = gw.requests(s, timeout=0.3)
    echo = gw.echo_through(s, timeout=1.0, count=2, answer=False, wait_ping=False)
    steps.record("ping H from the client", "no ESP", "ESP seen" if echo.others or echo.esp else "no ESP",
                 ok=not (echo.others or echo.esp))
    assert not (echo.others or echo.esp), "ESP from the client after AUTHENTICATION_FAILED"
    should(not any(q.exchange == c.INFORMATIONAL and q.get(c.DELETE) is None for q in reqs),
           f"no INFORMATIONAL reporting the error in the response (got {[q.summary() for q in reqs]})")


@part("IKE.EN-I.AUTH.10", "A wrong AUTH from the gateway: the client does not establish (no data), and should say AUTHENTICATION_FAILED",
      ["rfc7296-1.2-b", "rfc7296-2.21.2-a"])
def test_wrong_gateway_auth(gw, steps):
    s, r, msg = auth_of(gw)
    gw.answer_auth(s, r, auth_data=os.urandom(32))
    steps.record("answer IKE_AUTH normally but with a random AUTH value")
    reqs = gw.requests(s, timeout=0.3)
    echo = gw.echo_through(s, timeout=1.0, count=2, wait_ping=False)
    steps.record("ping H from the client", "no ESP through the child SA", echo.describe(), ok=not echo.seen)
    told = any(c.N_AUTHENTICATION_FAILED in q.notify_types() for q in reqs)
    steps.record("wait for the client's word", "INFORMATIONAL with N(AUTHENTICATION_FAILED)",
                 [q.summary() for q in reqs] or "nothing", ok=told)
    assert not echo.seen and not echo.others, f"data through the tunnel of a gateway that did not authenticate: {echo.describe()}"
    should(told, "an INFORMATIONAL with AUTHENTICATION_FAILED telling the gateway its AUTH failed")


@part("IKE.EN-I.AUTH.11", "An IKE_AUTH response with a broken ICV is ignored: the client retransmits and takes the good one",
      ["rfc7296-1.2-b", "rfc7296-2.1-f"])
def test_auth_response_bad_icv(gw, steps):
    s, r, msg = auth_of(gw)
    s.peer_mid = 1
    bad = s.auth_response(gw.site.psk, idr=GATEWAY_ID, cp_address=CP_ADDRESS, sk_opts=SkOptions(break_icv=True))
    s.children.clear()
    gw.send(s, bad, to=r)
    steps.record("answer IKE_AUTH with a broken ICV")
    again = gw.request(s, c.IKE_AUTH, timeout=4.0)
    steps.record("wait", "the same IKE_AUTH again", "retransmitted" if again and again.data == r.data else "nothing",
                 ok=again is not None and again.data == r.data)
    assert again is not None and again.data == r.data, "no retransmission of IKE_AUTH after a response with a bad ICV"
    gw.answer_auth(s, again)
    echo = gw.echo_through(s)
    steps.record("answer it properly, ping H from the client", "ESP through the child SA", echo.describe(), ok=echo.seen)
    assert echo.seen, echo.describe()


@part("IKE.EN-I.MID.1", "An IKE_AUTH response with another Message ID is not taken: the client retransmits and takes the right one",
      ["rfc7296-2.1-f", "rfc7296-2.2-a"])
def test_auth_response_wrong_mid(gw, steps):
    s, r, msg = auth_of(gw)
    gw.answer_auth(s, r, message_id=7)
    s.children.clear()
    steps.record("answer IKE_AUTH with Message ID 7")
    again = gw.request(s, c.IKE_AUTH, timeout=4.0)
    steps.record("wait", "the same IKE_AUTH again (Message ID 1)",
                 "retransmitted" if again and again.data == r.data else "nothing", ok=again is not None)
    assert again is not None and again.data == r.data, "no retransmission: the response with the wrong Message ID was taken"
    gw.answer_auth(s, again)
    echo = gw.echo_through(s)
    steps.record("answer with Message ID 1, ping H", "ESP through the child SA", echo.describe(), ok=echo.seen)
    assert echo.seen, echo.describe()


@part("IKE.EN-I.RETX.2", "A lost IKE_AUTH response: the request is retransmitted identically, the late answer is accepted",
      ["rfc7296-2.1-c", "rfc7296-2.1-g", "rfc7296-2.2-a", "rfc7296-2.1-f"])
def test_auth_retransmitted_and_late_answer(gw, steps):
    s, r, msg = auth_of(gw)
    again = gw.request(s, c.IKE_AUTH, timeout=4.0)
    steps.record("leave IKE_AUTH unanswered", "the same bytes again",
                 f"after {again.t - r.t:.2f} s, identical: {again.data == r.data}" if again else "nothing",
                 ok=again is not None and again.data == r.data)
    assert again is not None, "no retransmission of IKE_AUTH"
    assert again.data == r.data, "the retransmitted IKE_AUTH differs from the first"
    gw.answer_auth(s, again)
    echo = gw.echo_through(s)
    steps.record("answer the retransmission, ping H", "ESP through the child SA, the reply gets back", echo.describe(),
                 ok=echo.seen and echo.ping_ok)
    assert echo.seen, echo.describe()
    assert echo.ping_ok, "the echo reply sent through the child SA did not reach the ping"


@part("IKE.EN-I.TS.1", "Narrowed selectors (TSr 10.1.0.0/16) are accepted and the child SA carries traffic to H",
      ["rfc7296-4-d", "rfc7296-2.17-a"])
def test_narrowed_selectors_used(gw, steps):
    s = gw.establish(tsr=["10.1.0.0/16"])
    echo = gw.echo_through(s)
    steps.record("answer with TSi = the CP address, TSr = 10.1.0.0/16; ping H", "ESP carrying the echo to H",
                 echo.describe(), ok=echo.seen)
    assert echo.seen, echo.describe()
    assert echo.inner[12:16] == bytes(map(int, CP_ADDRESS.split("."))), "inner source is not the assigned address"
    assert echo.ping_ok, "the echo reply did not reach the ping"


@part("IKE.EN-I.TS.3", "Traffic outside the narrowed TSr is not sent through the child SA",
      ["rfc4303-5-a"])
def test_narrowed_selectors_respected(gw, steps):
    s = gw.establish(tsr=["10.1.0.0/16"])
    outside = "198.51.100.10"
    echo = gw.echo_through(s, dst=outside, timeout=1.0, count=2, answer=False, wait_ping=False)
    steps.record(f"TSr 10.1.0.0/16; ping {outside} from the client", "no ESP on the child SA carrying it",
                 echo.describe(), ok=not echo.seen)
    assert not echo.seen, f"a packet to {outside} went through a child SA limited to 10.1.0.0/16"
