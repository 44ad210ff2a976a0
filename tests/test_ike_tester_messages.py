"""The IKE tester library's builders and parser (testbed/conformance/ike): every override lands in the
bytes, scapy and tshark decode what is meant to be well formed, the parser rejects malformed input
with a reason and never raises (hypothesis fuzzing), and the transports log both directions."""
from __future__ import annotations

import hashlib
import socket
import struct

import pytest
from scapy.contrib.ikev2 import IKEv2, IKEv2_Notify, IKEv2_Proposal, IKEv2_TSi

from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike import tshark
from testbed.conformance.ike.crypto import nat_detection_hash
from testbed.conformance.ike.parse import parse_message
from testbed.conformance.ike.session import Algorithms, ChildAlgorithms, IkeSession
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.ike.transport import FakeTransport, UdpTransport

I_ADDR, R_ADDR = ("198.51.100.10", 500), ("203.0.113.1", 500)


def pair(algs: Algorithms | None = None, child: ChildAlgorithms | None = None):
    """Two tester sessions, initiator and responder, through IKE_AUTH (the library against itself)."""
    i = IkeSession(True, algs or Algorithms(), child or ChildAlgorithms(), local=I_ADDR, peer=R_ADDR)
    r = IkeSession(False, local=R_ADDR, peer=I_ADDR)
    assert r.handle_sa_init_request(i.sa_init_request()).ok
    assert i.handle_sa_init_response(r.sa_init_response()).ok
    assert i.keys == r.keys
    req = r.handle_auth_request(i.auth_request(psk=b"k", idi="alice@example"), psk=b"k")
    assert req.ok and r.peer_auth_ok
    assert i.handle_auth_response(r.auth_response(b"k"), psk=b"k").ok and i.peer_auth_ok
    assert i.children[0].encr_key_out == r.children[0].encr_key_in
    return i, r


# ----------------------------------------------------------------------------- header overrides

def test_header_overrides_land_in_the_bytes():
    i, r = pair()
    data = i.informational_request(major=3, minor=1, reserved_flags=0x81, version_bit=True, message_id=77)
    hdr = parse_message(data)
    assert (hdr.major, hdr.minor, hdr.message_id) == (3, 1, 77)
    assert hdr.version_bit and hdr.initiator and not hdr.response and hdr.reserved_flags == 0x81
    assert i.next_mid == 2  # an explicit Message ID does not advance the counter
    msg = r.parse(data)
    assert msg.ok and msg.inner == []
    resp = parse_message(i.informational_request(response=True, initiator=False))  # a response where a request belongs
    assert resp.response and not resp.initiator
    assert parse_message(i.informational_request(flags=0xFF)).flags == 0xFF
    assert parse_message(i.informational_request(version=0x20, next_payload=99)).next_payload == 99
    bad = i.informational_request(length=1000)
    assert struct.unpack("!I", bad[24:28])[0] == 1000 and "Length 1000" in parse_message(bad).reason
    assert i.informational_request(spi_r=bytes(8))[8:16] == bytes(8)
    assert parse_message(i.informational_request(trailing=b"xx")).reason.startswith("header Length")


def test_retransmission_is_the_same_bytes_and_out_of_window_ids():
    i, _ = pair()
    first = i.informational_request()
    assert i.retransmit() == first and i.next_mid == 3
    assert parse_message(i.informational_request(message_id=i.next_mid + 5)).message_id == 8


# ----------------------------------------------------------------------------- payload overrides

def test_critical_unknown_payload_reserved_bits_and_lengths():
    i, r = pair()
    data = i.informational_request([m.unknown(200, b"abc", critical=True),
                                    m.notify(c.N_INITIAL_CONTACT, reserved=0x05),
                                    m.vendor_id(b"tester").with_(flags=0x7F)])
    msg = r.parse(data)
    assert msg.ok, msg.reason
    unk, n, v = msg.inner
    assert (unk.type, unk.critical, unk.body, unk.fields) == (200, True, b"abc", {})
    assert n.reserved == 5 and not n.critical and n.fields["notify_type"] == c.N_INITIAL_CONTACT
    assert v.flags == 0x7F and v.fields["data"] == b"tester"
    # a payload length that lies: the parser reports it
    bad = r.parse(i.informational_request([m.nonce(b"n" * 16, length=200)]))
    assert not bad.ok and "runs past the end" in bad.reason
    short = r.parse(i.informational_request([m.nonce(b"n" * 16, length=3)]))
    assert not short.ok and "< 4" in short.reason
    wrong_next = r.parse(i.informational_request([m.nonce(b"n", next_payload=c.NOTIFY)]))
    assert not wrong_next.ok and "truncated" in wrong_next.reason


def test_sk_breakage_is_reported_by_the_parser():
    i, r = pair()
    assert r.parse(i.informational_request(sk_opts=SkOptions(break_icv=True))).sk_error == "icv"
    assert r.parse(i.informational_request(sk_opts=SkOptions(pad_len=0, pad_length_field=99))).sk_error == "padding"
    non_last = r.parse(i.informational_request([], after=[m.notify(c.N_INITIAL_CONTACT)]))
    assert not non_last.ok and "not the last" in non_last.reason
    clear = r.parse(i.informational_request([m.notify(c.N_INITIAL_CONTACT)], encrypt=False))
    assert clear.ok and not clear.encrypted and clear.notify(c.N_INITIAL_CONTACT) is not None
    iv = r.parse(i.informational_request(sk_opts=SkOptions(iv=bytes(8))))
    assert iv.ok and iv.payloads[0].body[:8] == bytes(8)
    sk_crit = r.parse(i.informational_request([m.nonce(b"x")], encrypt=True,
                                              sk_opts=SkOptions(pad_len=5, pad_bytes=b"GARBA")))
    assert sk_crit.ok and sk_crit.padding == b"GARBA" and sk_crit.pad_length == 5


def test_cbc_suite_pair_and_cbc_padding():
    i, r = pair(Algorithms(c.ENCR_AES_CBC, 256, c.AUTH_HMAC_SHA2_256_128, c.PRF_HMAC_SHA2_256, c.MODP2048),
                ChildAlgorithms(c.ENCR_AES_CBC, 128, c.AUTH_HMAC_SHA2_256_128))
    msg = r.parse(i.informational_request([m.nonce(b"x" * 10)], sk_opts=SkOptions(pad_len=17)))
    assert msg.ok and msg.pad_length == 17
    assert r.children[0].algs.integ == c.AUTH_HMAC_SHA2_256_128 and len(r.children[0].integ_key_in) == 32


def test_proposal_sets_are_written_as_asked():
    props = [m.ike_proposal(1, dh=[c.ECP256, c.MODP2048]),
             m.Proposal(1, c.PROTO_IKE, [m.Transform(c.T_ENCR, 9999, 128), m.Transform(c.T_PRF, 5),
                                         m.Transform(c.T_DH, 19, attrs=b"\x80\x63\x00\x01")]),
             m.Proposal(7, c.PROTO_IKE, [m.Transform(c.T_ENCR, c.ENCR_AES_CBC, 256)], num_transforms=3),
             m.ike_proposal(4, c.ENCR_AES_CBC, 192, c.AUTH_HMAC_SHA2_256_128)]
    s = IkeSession()
    data = s.sa_init_request(proposals=props[:2] + props[3:])
    msg = parse_message(data)
    got = msg.get(c.SA).fields["proposals"]
    assert [p["number"] for p in got] == [1, 1, 4] and [p["last"] for p in got] == [2, 2, 0]
    assert [t["id"] for t in got[0]["transforms"] if t["type"] == c.T_DH] == [19, 14]
    assert got[1]["transforms"][0]["id"] == 9999 and got[1]["transforms"][2]["attrs"] == [(0x63, 1)]
    assert got[2]["transforms"][0]["key_len"] == 192
    # scapy reads the same
    p = IKEv2(data)[IKEv2_Proposal]
    assert p.trans_nb == 4 and p.proposal == 1
    # a proposal whose transform count lies
    bad = parse_message(s.sa_init_request(proposals=[props[2]]))
    assert not bad.get(c.SA).fields and "says 3 transforms" in bad.get(c.SA).error


def test_sa_init_options_cookie_ke_and_nat_detection():
    s = IkeSession(local=I_ADDR, peer=R_ADDR)
    msg = parse_message(s.sa_init_request(cookie=b"C" * 16, ke_group=c.MODP2048))
    assert msg.payloads[0].fields["notify_type"] == c.N_COOKIE and msg.payloads[0].fields["data"] == b"C" * 16
    assert msg.get(c.KE).fields["group"] == 14 and len(msg.get(c.KE).fields["data"]) == 256
    nat_src = msg.notify(c.N_NAT_DETECTION_SOURCE_IP).fields["data"]
    assert nat_src == nat_detection_hash(s.spi_i, bytes(8), *I_ADDR)
    assert msg.notify(c.N_NAT_DETECTION_DESTINATION_IP).fields["data"] == hashlib.sha1(
        s.spi_i + bytes(8) + bytes([203, 0, 113, 1]) + b"\x01\xf4").digest()
    wrong = parse_message(s.sa_init_request(nat_wrong=True))
    assert wrong.notify(c.N_NAT_DETECTION_SOURCE_IP).fields["data"] != nat_src
    r = IkeSession(False)
    err = parse_message(r.sa_init_error(m.notify(c.N_INVALID_KE_PAYLOAD, b"\x00\x13")))
    assert err.response and err.spi_r == bytes(8) and err.notify(c.N_INVALID_KE_PAYLOAD).fields["data"] == b"\x00\x13"


def test_other_payload_builders_round_trip():
    i, r = pair()
    pl = [m.delete(c.PROTO_ESP, [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]), m.delete(c.PROTO_IKE, []),
          m.notify(c.N_REKEY_SA, protocol=c.PROTO_ESP, spi=b"\xaa\xbb\xcc\xdd"),
          m.notify(c.N_USE_TRANSPORT_MODE), m.notify(c.N_INITIAL_CONTACT),
          m.cp(c.CFG_REPLY, [(c.INTERNAL_IP4_ADDRESS, bytes([10, 9, 0, 1]))]),
          m.tsi([m.TrafficSelector("10.0.0.1", "10.0.0.9", 17, 500, 500), "10.1.0.0/16"]),
          m.eap_identity_response(7, b"bob@example"), m.eap_md5_response(8, b"pw", b"challenge"),
          m.identification(c.IDI, c.ID_IPV4_ADDR, bytes([192, 0, 2, 1])), m.auth(c.AUTH_PSK, b"a" * 32)]
    msg = r.parse(i.informational_request(pl))
    assert msg.ok, msg.reason
    d1, d2, n1, n2, n3, cp, ts, e1, e2, idp, au = msg.inner
    assert d1.fields["spis"] == [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"] and d2.fields["protocol"] == 1
    assert (n1.fields["protocol"], n1.fields["spi"]) == (3, b"\xaa\xbb\xcc\xdd")
    assert n2.fields["notify_type"] == c.N_USE_TRANSPORT_MODE
    assert cp.fields == {"cfg_type": 2, "attributes": [(1, bytes([10, 9, 0, 1]))]}
    assert ts.fields["selectors"][0] == {"ts_type": 7, "protocol": 17, "start_port": 500, "end_port": 500,
                                         "start": "10.0.0.1", "end": "10.0.0.9"}
    assert ts.fields["selectors"][1]["end"] == "10.1.255.255"
    assert e1.fields == {"code": 2, "identifier": 7, "eap_type": 1, "data": b"bob@example"}
    assert e2.fields["data"] == b"\x10" + hashlib.md5(b"\x08pwchallenge").digest()
    assert idp.fields["data"] == bytes([192, 0, 2, 1]) and au.fields["method"] == 2
    # scapy decodes the clear version of the same chain
    clear = IKEv2(i.informational_request(pl, encrypt=False))
    assert clear[IKEv2_TSi].number_of_TSs == 2 and clear[IKEv2_Notify].type == c.N_REKEY_SA


def test_auth_override_and_eap_start_and_wrong_psk():
    i = IkeSession(local=I_ADDR, peer=R_ADDR)
    r = IkeSession(False, local=R_ADDR, peer=I_ADDR)
    r.handle_sa_init_request(i.sa_init_request())
    i.handle_sa_init_response(r.sa_init_response())
    no_auth = r.handle_auth_request(i.auth_request(psk=None, idi="bob@example"), psk=b"k")
    assert no_auth.ok and no_auth.get(c.AUTH) is None and r.peer_auth_ok is False
    r.handle_auth_request(i.auth_request(auth_data=b"\x00" * 32, message_id=1), psk=b"k")
    assert r.peer_auth_ok is False
    i.handle_auth_response(r.auth_response(b"other"), psk=b"k")
    assert i.peer_auth_ok is False


# ----------------------------------------------------------------------------- parser robustness

@pytest.mark.parametrize("data,reason", [
    (b"", "shorter than the IKE header"),
    (bytes(27), "shorter than the IKE header"),
    (bytes(16) + b"\x21\x20\x22\x08" + bytes(4) + struct.pack("!I", 28), "truncated"),
    (bytes(16) + b"\x00\x20\x22\x08" + bytes(4) + struct.pack("!I", 40) + bytes(12), "after the last payload"),
])
def test_parser_reasons(data, reason):
    msg = parse_message(data)
    assert not msg.ok and reason in msg.reason


def test_parser_fuzzed_with_hypothesis():
    hyp = pytest.importorskip("hypothesis", reason="hypothesis is not installed in the venv")
    from hypothesis import strategies as st
    i, r = pair()
    samples = [i.sa_init_request(), i.informational_request([m.notify(c.N_INITIAL_CONTACT)]),
               i.auth_request(psk=b"k", message_id=1)]
    cipher = r.cipher_in

    @hyp.settings(max_examples=300, deadline=None, derandomize=True)
    @hyp.given(st.sampled_from(samples), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
               st.integers(0, 420))
    def mutate(sample, flips, cut):
        data = bytearray(sample)
        for pos, val in flips:
            if pos < len(data):
                data[pos] = val
        msg = parse_message(bytes(data[:cut] if cut < len(data) else data), cipher)
        assert msg.ok or msg.reason
        msg.summary()

    @hyp.settings(max_examples=200, deadline=None, derandomize=True)
    @hyp.given(st.binary(max_size=300))
    def random_bytes(data):
        msg = parse_message(data, cipher)
        assert msg.ok or msg.reason

    mutate()
    random_bytes()


# ----------------------------------------------------------------------------- tshark and transports

@pytest.mark.skipif(not tshark.available(), reason="tshark is not installed")
def test_tshark_decodes_the_well_formed_and_flags_the_broken():
    i, r = pair()
    good = i.sent + r.sent + [i.informational_request([m.delete(c.PROTO_ESP, [b"1234"])])]
    assert tshark.check_ike(good) == []
    assert tshark.check_ike(good[:1], port=c.NAT_T_PORT) == []
    bad = i.sa_init_request(payloads=[m.nonce(b"x" * 16, length=300)])
    assert tshark.check_ike([bad]) != []


def test_fake_transport_logs_both_directions_with_markers():
    t = FakeTransport("192.0.2.1")
    t.send(b"IKE", "192.0.2.2", 4500, 4500)
    assert t.outbox[0][0] == bytes(4) + b"IKE"
    t.now = 1.5
    t.inject(bytes(4) + b"reply", "192.0.2.2", 4500, 4500)
    t.inject(b"\xff", "192.0.2.2", 4500, 4500)
    t.inject(b"\x00\x00\x00\x07" + bytes(30), "192.0.2.2", 4500, 4500)
    got = [t.recv(0) for _ in range(3)]
    assert [(g.kind, g.data[:5]) for g in got] == [("ike", b"reply"), ("keepalive", b""), ("esp", b"\x00\x00\x00\x07\x00")]
    assert t.recv(0) is None and [e.direction for e in t.log] == ["sent"] + ["received"] * 3
    assert got[0].t == 1.5 and len(t.ladder()) == 4


def test_udp_transport_over_loopback():
    socks = []
    for _ in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    try:
        tester = UdpTransport(socks[0], socks[1])
        peer500, peer4500 = socks[2], socks[3]
        tester.send(b"hello", "127.0.0.1", peer4500.getsockname()[1], src_port=4500)
        assert peer4500.recvfrom(100)[0] == bytes(4) + b"hello"
        peer4500.sendto(bytes(4) + b"answer", socks[1].getsockname())
        peer500.sendto(b"plain", socks[0].getsockname())
        peer4500.sendto(b"\xff", socks[1].getsockname())
        got = sorted((r.kind, r.data, r.dport) for r in [tester.recv(1.0) for _ in range(3)])
        assert got == [("ike", b"answer", 4500), ("ike", b"plain", 500), ("keepalive", b"", 4500)]
        assert tester.recv(0.01) is None and len(tester.log) == 4
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("payload,next_type", [
    (m.Payload(c.NONCE, b"\x01" * 32), c.NO_NEXT),
    (m.Payload(c.KE, b"\x00\x13\x00\x00" + b"\x02" * 64), c.NONCE),
    (m.Payload(c.NOTIFY, b"", critical=True, reserved=0x55), c.SA),
    (m.Payload(c.VENDOR_ID, b"x", flags=0xFF, next_payload=200, length=3), c.NO_NEXT),
    (m.Payload(c.NONCE, b"", length=0xFFFF), c.NO_NEXT),
])
def test_the_generic_payload_header_is_what_scapy_builds(payload, next_type):
    """RFC 7296 3.2, packed with struct: the same octets as scapy's IKEv2_Payload, overrides included."""
    from scapy.contrib.ikev2 import IKEv2_Payload
    nxt = payload.next_payload if payload.next_payload is not None else next_type
    length = payload.length if payload.length is not None else 4 + len(payload.body)
    assert payload.encode(next_type) == bytes(IKEv2_Payload(next_payload=nxt, flags=payload.flags_octet(),
                                                             length=length, load=payload.body))


@pytest.mark.parametrize("fields", [
    dict(next_payload=c.SA, version=0x20, exchange=c.IKE_SA_INIT, flags=0x08, message_id=0, length=300),
    dict(next_payload=255, version=0xFF, exchange=255, flags=0xFF, message_id=0xFFFFFFFF, length=0xFFFFFFFF),
    dict(next_payload=0, version=0x10, exchange=37, flags=0x20, message_id=7, length=28),
])
def test_the_ike_header_is_what_scapy_builds(fields):
    """RFC 7296 3.1, packed with struct: the same 28 octets as scapy's IKEv2 layer."""
    spi_i, spi_r = bytes(range(1, 9)), bytes(range(9, 17))
    assert m.build_header(spi_i, spi_r, **fields) == bytes(IKEv2(
        init_SPI=spi_i, resp_SPI=spi_r, next_payload=fields["next_payload"], version=fields["version"],
        exch_type=fields["exchange"], flags=fields["flags"], id=fields["message_id"], length=fields["length"]))
