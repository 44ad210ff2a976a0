"""EN-I: the established client answering the gateway's INFORMATIONAL requests (liveness, Delete,
unknown and malformed content), and its data through the child SA (RFC 7296 sections 1.4, 2.1, 2.3,
2.5, 2.17, 2.23, 3.1, 3.11; RFC 4303; RFC 3948)."""

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.parts import part, should


def summary(msg):
    return msg.summary() if msg is not None else "no answer"


@part("IKE.EN-I.INFO.1", "An empty INFORMATIONAL request (liveness check) is answered: same Message ID, R and I set",
      ["rfc7296-1.4-d", "rfc7296-4-e", "rfc7296-3.1-j"])
def test_liveness_answered(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request())
    steps.record("INFORMATIONAL, no payloads, Message ID 0", "an INFORMATIONAL response, mid 0, flags R|I", summary(resp),
                 ok=resp is not None)
    assert resp is not None, "no answer to an empty INFORMATIONAL"
    assert resp.ok and resp.exchange == c.INFORMATIONAL and resp.message_id == 0, summary(resp)
    assert resp.response and resp.initiator, f"flags 0x{resp.flags:02x} (the original initiator's response: I and R)"


@part("IKE.EN-I.INFO.2", "A retransmitted INFORMATIONAL request gets the same response again",
      ["rfc7296-2.1-b", "rfc7296-2.1-d", "rfc7296-2.3-g"])
def test_retransmitted_request(gw, steps):
    s = gw.establish()
    gw.exchange(s, s.informational_request())
    req = s.informational_request()
    gw.send(s, req)
    first = gw.receive(lambda r: r.data[:8] == s.spi_i and r.data[19] & c.FLAG_R, 2.0)
    gw.send(s, req)
    second = gw.receive(lambda r: r.data[:8] == s.spi_i and r.data[19] & c.FLAG_R, 2.0)
    steps.record("send an empty INFORMATIONAL twice (the same bytes)", "the same response twice",
                 f"first {'yes' if first else 'no'}, second {'identical' if second and first and second.data == first.data else 'different' if second else 'none'}",
                 ok=bool(first and second and first.data == second.data))
    assert first is not None, "no answer"
    assert second is not None, "no answer to the retransmitted request"
    assert second.data == first.data, "the retransmitted request got another response (not the one kept)"


@part("IKE.EN-I.INFO.3", "Delete of the child SA: the response deletes the client's inbound SA; no more ESP on it",
      ["rfc7296-1.4.1-b", "rfc7296-1.4.1-c", "rfc7296-1.4.1-a", "rfc7296-3.11-c"])
def test_delete_child(gw, steps):
    s = gw.establish()
    child = s.children[-1]
    resp = gw.exchange(s, s.delete_request([child.spi_in]))
    d = resp.get(c.DELETE) if resp else None
    steps.record("INFORMATIONAL with Delete(ESP, our inbound SPI)", f"Delete(ESP, {child.spi_out.hex()})", summary(resp),
                 ok=bool(d and d.fields["spis"] == [child.spi_out]))
    assert resp is not None, "no answer to the Delete"
    assert d is not None, f"no Delete payload in the response: {summary(resp)}"
    assert d.fields["protocol"] == c.PROTO_ESP and d.fields["spi_size"] == 4, d.fields
    assert d.fields["spis"] == [child.spi_out], f"deleted {[x.hex() for x in d.fields['spis']]}, not {child.spi_out.hex()}"
    echo = gw.echo_through(s, timeout=1.0, count=2, answer=False, wait_ping=False)
    steps.record("ping H from the client", "no ESP on the deleted SA", echo.describe(), ok=not echo.seen)
    assert not echo.seen, "ESP on the deleted child SA"


@part("IKE.EN-I.INFO.4", "Delete of the IKE SA is answered with an empty response; its child SA stops carrying data",
      ["rfc7296-1.4.1-c", "rfc7296-1.4-d", "rfc7296-3.11-c"])
def test_delete_ike(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.delete_request(ike=True))
    steps.record("INFORMATIONAL with Delete(IKE)", "an empty INFORMATIONAL response", summary(resp),
                 ok=bool(resp and resp.inner == []))
    assert resp is not None, "no answer to the Delete of the IKE SA"
    assert resp.ok and resp.inner == [], f"the response carries payloads: {summary(resp)}"
    echo = gw.echo_through(s, timeout=1.0, count=2, answer=False, wait_ping=False)
    steps.record("ping H from the client", "no ESP on the old child SA", echo.describe(), ok=not echo.seen)
    assert not echo.seen, "ESP on a child SA of a deleted IKE SA"


@part("IKE.EN-I.INFO.5", "An unknown critical payload in a request is answered with UNSUPPORTED_CRITICAL_PAYLOAD naming its type",
      ["rfc7296-2.5-h", "rfc7296-4-c", "rfc7296-2.21.2-b"])
def test_info_unknown_critical(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request([m.unknown(200, b"x" * 4, critical=True)]))
    n = resp.notify(c.N_UNSUPPORTED_CRITICAL_PAYLOAD) if resp else None
    steps.record("INFORMATIONAL with an unknown payload type 200, critical", "N(UNSUPPORTED_CRITICAL_PAYLOAD, 200)",
                 summary(resp), ok=bool(n and n.fields["data"][:1] == b"\xc8"))
    assert resp is not None, "no answer"
    assert n is not None, f"no UNSUPPORTED_CRITICAL_PAYLOAD: {summary(resp)}"
    assert n.fields["data"][:1] == bytes([200]), f"notification data {n.fields['data'].hex()}"


@part("IKE.EN-I.INFO.6", "An unknown payload without the critical bit in a request is ignored: a normal response",
      ["rfc7296-2.5-i", "rfc7296-4-b"])
def test_info_unknown_noncritical(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request([m.unknown(200, b"x" * 4)]))
    steps.record("INFORMATIONAL with an unknown payload type 200, not critical", "a response without error", summary(resp),
                 ok=bool(resp and resp.ok and not [t for t in resp.notify_types() if t < 16384]))
    assert resp is not None, "no answer"
    assert not [t for t in resp.notify_types() if t < 16384], f"an error notify: {summary(resp)}"


@part("IKE.EN-I.INFO.7", "An unknown status notify in a request is ignored: a normal response",
      ["rfc7296-3.10.1-b", "rfc7296-3.10.1-c"])
def test_info_unknown_status(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request([m.notify(40000, b"status")]))
    steps.record("INFORMATIONAL with N(40000)", "a response without error", summary(resp),
                 ok=bool(resp and not [t for t in resp.notify_types() if t < 16384]))
    assert resp is not None, "no answer"
    assert not [t for t in resp.notify_types() if t < 16384], f"an error notify: {summary(resp)}"


def still_alive(gw, s, steps):
    resp = gw.exchange(s, s.informational_request())
    steps.record("then an empty INFORMATIONAL", "answered (the SA still works)", summary(resp), ok=resp is not None)
    assert resp is not None, "the IKE SA no longer answers"


@part("IKE.EN-I.INFO.8", "A request with a broken ICV is not answered; the IKE SA still answers the next good one",
      ["rfc7296-1.4-a", "rfc7296-3.14-f"])
def test_info_bad_icv(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request(sk_opts=SkOptions(break_icv=True)), timeout=0.5)
    s.next_mid -= 1
    steps.record("INFORMATIONAL with a broken ICV", "no answer", summary(resp), ok=resp is None)
    assert resp is None, f"answered: {summary(resp)}"
    still_alive(gw, s, steps)


@part("IKE.EN-I.INFO.9", "An INFORMATIONAL request without encryption is not accepted", ["rfc7296-1.4-a"])
def test_info_unprotected(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request([m.delete(c.PROTO_IKE, [])], encrypt=False), timeout=0.5)
    s.next_mid -= 1
    steps.record("INFORMATIONAL with Delete(IKE) in clear", "no answer, nothing deleted", summary(resp),
                 ok=resp is None or not resp.response or resp.exchange != c.INFORMATIONAL)
    assert resp is None, f"answered: {summary(resp)}"
    still_alive(gw, s, steps)


@part("IKE.EN-I.INFO.10", "A request of major version 3 is not processed (dropped, or INVALID_MAJOR_VERSION)",
      ["rfc7296-3.1-f", "rfc7296-2.5-b"])
def test_info_major_version(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request(major=3), timeout=0.5)
    s.next_mid -= 1
    steps.record("INFORMATIONAL of version 3.0", "dropped, or INVALID_MAJOR_VERSION in version 2", summary(resp))
    if resp is not None:
        assert c.N_INVALID_MAJOR_VERSION in resp.notify_types() and resp.major == 2, f"processed: {summary(resp)}"
    still_alive(gw, s, steps)


@part("IKE.EN-I.INFO.11", "A request of version 2.9 is processed normally and answered in version 2.0",
      ["rfc7296-2.5-a", "rfc7296-3.1-h", "rfc7296-3.1-g", "rfc7296-2.5-d"])
def test_info_minor_version(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request(minor=9))
    steps.record("INFORMATIONAL of version 2.9", "a response of version 2.0", summary(resp) + (f" v{resp.major}.{resp.minor}" if resp else ""),
                 ok=bool(resp and (resp.major, resp.minor) == (2, 0)))
    assert resp is not None, "no answer"
    assert (resp.major, resp.minor) == (2, 0), f"answered in version {resp.major}.{resp.minor}"


@part("IKE.EN-I.INFO.12", "A message flagged as a response, with no request outstanding, is not answered",
      ["rfc7296-3.1-k"])
def test_info_unsolicited_response(gw, steps):
    s = gw.establish()
    gw.exchange(s, s.informational_request())
    gw.send(s, s.informational_request(response=True))
    got = gw.silence(s, timeout=0.5)
    steps.record("after a liveness check, an INFORMATIONAL flagged R (Message ID 1: the client's IKE_AUTH, answered long ago)", "nothing back",
                 "nothing" if got is None else "a message", ok=got is None)
    assert got is None, "the client answered a response"
    still_alive(gw, s, steps)


@part("IKE.EN-I.INFO.13", "Reserved flag bits and payload RESERVED bits in a request are ignored",
      ["rfc7296-3.1-i", "rfc7296-3.2-f", "rfc7296-2.5-f"])
def test_info_reserved_bits(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request([m.notify(40000, b"x", reserved=0x7f)], reserved_flags=0x87))
    steps.record("INFORMATIONAL with flag bits 0x87 and a payload with RESERVED 0x7f", "a normal response", summary(resp),
                 ok=resp is not None)
    assert resp is not None, "no answer"
    assert not [t for t in resp.notify_types() if t < 16384], summary(resp)


@part("IKE.EN-I.MID.2", "A request with a Message ID outside the window (5 instead of 0) is not answered",
      ["rfc7296-2.3-h"])
def test_info_out_of_window(gw, steps):
    s = gw.establish()
    resp = gw.exchange(s, s.informational_request(message_id=5), timeout=0.5)
    steps.record("INFORMATIONAL with Message ID 5 (0 expected)", "no answer", summary(resp), ok=resp is None)
    assert resp is None, f"answered: {summary(resp)}"
    still_alive(gw, s, steps)


@part("IKE.EN-I.DATA.1", "The client's data reaches H through the child SA: ESP that opens with the KEYMAT keys, tunnel mode, "
      "from the assigned address; the reply through the SA reaches it",
      ["rfc7296-2.17-a", "rfc7296-2.17-b", "rfc7296-4-d", "rfc4303-2.1-f"])
def test_data_through_child(gw, steps):
    s = gw.establish()
    echo = gw.echo_through(s)
    steps.record("ping H from the client", "ESP with our inbound SPI, inner 10.1.3.7 -> H, the reply returned",
                 echo.describe(), ok=echo.seen and echo.ping_ok)
    assert echo.seen, echo.describe()
    assert echo.opened.spi == int.from_bytes(s.children[-1].spi_in, "big") and echo.opened.spi != 0
    assert echo.opened.next_header == c.IPPROTO_IPIP, f"Next Header {echo.opened.next_header} (tunnel mode: 4)"
    assert echo.ping_ok, "the echo reply sent through the child SA did not reach the ping"


@part("IKE.EN-I.DATA.2", "The client's ESP sequence numbers start at 1 and grow by one",
      ["rfc4303-2.2-a", "rfc4303-2.2-b", "rfc4303-2.2-d"])
def test_data_sequence(gw, steps):
    s = gw.establish()
    ping = gw.start_ping(count=3)
    seqs = []
    for _ in range(3):
        r, p = gw.esp_from_client(s, timeout=2.0)
        if p is None:
            break
        seqs.append(p.seq)
    ping["thread"].join(8)
    steps.record("ping H three times from the client", "sequence numbers 1, 2, 3", seqs, ok=seqs == [1, 2, 3])
    assert seqs, "no ESP from the client"
    assert seqs[0] == 1, f"the first sequence number is {seqs[0]}"
    assert seqs == list(range(1, len(seqs) + 1)), f"sequence numbers {seqs}"


@part("IKE.EN-I.DATA.3", "The client's ESP padding is 1, 2, 3, ... and aligns the payload",
      ["rfc4303-2.4-b", "rfc4303-2.3-c"])
def test_data_padding(gw, steps):
    s = gw.establish()
    echo = gw.echo_through(s, answer=False, wait_ping=False)
    assert echo.seen, echo.describe()
    pad = echo.opened.pad
    steps.record("ping H, open the ESP", "padding 01 02 03 ...", pad.hex() or "no padding", ok=pad == bytes(range(1, len(pad) + 1)))
    assert pad == bytes(range(1, len(pad) + 1)), f"padding {pad.hex()}"
    assert (len(echo.opened.payload) + len(pad) + 2) % 4 == 0, "payload, padding and trailer not 4-octet aligned"


@part("IKE.EN-I.NAT.1", "When the gateway's NAT_DETECTION hashes do not match, the client moves IKE and ESP to UDP 4500",
      ["rfc7296-2.23-j", "rfc7296-2.23-b", "rfc7296-2.23-e", "rfc7296-2-b", "rfc3948-1-b", "rfc3948-2.1-a"], needs=["ikev2.nat-t"])
def test_nat_detected_moves_to_4500(gw, steps):
    s, _ = gw.accept_init(nat_wrong=True)
    r, auth = gw.auth_request(s)
    steps.record("answer IKE_SA_INIT with NAT_DETECTION hashes that do not match (a NAT between)",
                 "IKE_AUTH on UDP 4500 with the non-ESP marker", f"IKE_AUTH to port {r.dport if r else None}",
                 ok=bool(r and r.dport == c.NAT_T_PORT))
    assert r is not None and auth.ok, "no IKE_AUTH"
    assert r.dport == c.NAT_T_PORT and r.raw[:4] == c.NON_ESP_MARKER, f"IKE_AUTH sent to port {r.dport}"
    gw.answer_auth(s, r)
    echo = gw.echo_through(s)
    steps.record("ping H", "ESP in UDP 4500", echo.describe(), ok=bool(echo.seen and echo.esp.dport == c.NAT_T_PORT))
    assert echo.seen, echo.describe()
    assert echo.esp.dport == c.NAT_T_PORT, "ESP not UDP-encapsulated although a NAT was detected"


@part("IKE.EN-I.NAT.2", "UDP-encapsulated ESP from the gateway is accepted, however the client sends its own",
      ["rfc7296-2.23-d", "rfc7296-2.23-k"], needs=["ikev2.nat-t"])
def test_udp_esp_accepted(gw, steps):
    s = gw.establish()
    echo = gw.echo_through(s, reply_via="udp")
    steps.record("ping H; answer the echo with ESP in UDP 4500 (to the client's port 4500 when it sent plain ESP)",
                 "the reply reaches the ping", echo.describe(), ok=echo.seen and echo.ping_ok)
    assert echo.seen, echo.describe()
    assert echo.ping_ok, "the echo reply in UDP-encapsulated ESP did not reach the ping"


@part("IKE.EN-I.NAT.3", "Plain ESP (IP protocol 50) from the gateway is accepted, however the client sends its own",
      ["rfc7296-2.23-d"], needs=["ikev2.nat-t"])
def test_plain_esp_accepted(gw, steps):
    s = gw.establish()
    echo = gw.echo_through(s, reply_via="ip")
    steps.record("ping H; answer the echo with plain ESP (protocol 50)", "the reply reaches the ping", echo.describe(),
                 ok=echo.seen and echo.ping_ok)
    assert echo.seen, echo.describe()
    assert echo.ping_ok, "the echo reply in plain ESP did not reach the ping"


@part("IKE.EN-I.CLOSE.1", "A client that closes its tunnel says so: Delete of the IKE SA, protected by that SA, next Message ID",
      ["rfc7296-2.4-i", "rfc7296-1.4-b"])
def test_close_sends_delete(gw, steps, en):
    s = gw.establish()
    gw.exchange(s, s.informational_request())
    en.stop_client()
    reqs = gw.requests(s, timeout=0.5)
    deletes = [q for q in reqs if q.ok and q.get(c.DELETE) is not None]
    steps.record("stop the client (the user closes the VPN)", "INFORMATIONAL with Delete(IKE), Message ID 2",
                 [q.summary() for q in reqs] or "nothing", ok=bool(deletes))
    for q in reqs:
        assert q.ok, f"a request on the IKE SA that its keys do not open: {q.summary()}"
        assert q.message_id == 2, f"the client's first request after IKE_AUTH has Message ID {q.message_id}"
    should(any(d.get(c.DELETE).fields["protocol"] == c.PROTO_IKE for d in deletes),
           "a Delete of the IKE SA when the client closes it")
