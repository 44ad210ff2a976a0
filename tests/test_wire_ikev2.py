"""IKEv2 codec: round trips, SK protection, each rejection reason, UDP/4500 demux, fuzzing."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings, strategies as st

from nodes.wire import ikev2 as w
from nodes.wire.errors import DecodeError

SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")

TS = w.TrafficSelector(IPv4Address("10.1.0.0"), IPv4Address("10.1.255.255"), 6, 80, 443)
ALL_PAYLOADS = [
    w.SecurityAssociation([
        w.Proposal(1, w.PROTO_IKE, b"", [w.Transform(w.TT_ENCR, w.ENCR_AES_GCM_16, 256),
                                         w.Transform(w.TT_PRF, w.PRF_HMAC_SHA2_256), w.Transform(w.TT_DH, 19)]),
        w.Proposal(2, w.PROTO_ESP, b"\x00\x00\x12\x34", [w.Transform(w.TT_ENCR, w.ENCR_AES_CBC, 128),
                                                         w.Transform(w.TT_INTEG, w.INTEG_HMAC_SHA2_256_128),
                                                         w.Transform(w.TT_ESN, 0)]),
    ]),
    w.KeyExchange(31, bytes(range(32))),
    w.Nonce(b"n" * 32),
    w.IDi(w.ID_RFC822_ADDR, b"alice@example"),
    w.IDr(w.ID_IPV4_ADDR, bytes([203, 0, 113, 1])),
    w.Authentication(w.AUTH_SHARED_KEY, b"a" * 32),
    w.Notify(w.N_REKEY_SA, b"", w.PROTO_ESP, b"\x00\x00\x12\x34"),
    w.Notify(w.N_INVALID_KE_PAYLOAD, b"\x00\x0e"),
    w.Delete(w.PROTO_ESP, [b"\x00\x00\x12\x34", b"\x00\x00\x56\x78"]),
    w.Delete(w.PROTO_IKE),
    w.TSi([TS]),
    w.TSr([TS, w.TrafficSelector(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"))]),
    w.Configuration(w.CFG_REPLY, [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS, bytes([10, 9, 0, 1])),
                                  w.ConfigAttribute(w.INTERNAL_IP4_DNS, bytes([10, 1, 0, 53])),
                                  w.ConfigAttribute(w.INTERNAL_IP4_SUBNET, bytes([10, 1, 0, 0, 255, 255, 0, 0]))]),
    w.EAP(bytes([1, 7, 0, 6, 1, 0x41])),
    w.VendorID(b"strongSwan"),
    w.CertificateRequest(4, b"\x00" * 20),
    w.Certificate(4, b"cert"),
    w.UnknownPayload(200, b"whatever"),
]


def message(payloads, **kw) -> w.Message:
    return w.Message(SPI_I, SPI_R, w.IKE_AUTH, 1, payloads, initiator=True, **kw)


def test_plain_round_trip_of_every_payload():
    data = message(ALL_PAYLOADS).encode()
    back = w.decode_message(data)
    assert back.payloads == ALL_PAYLOADS
    assert (back.spi_i, back.spi_r, back.exchange, back.message_id) == (SPI_I, SPI_R, w.IKE_AUTH, 1)
    assert back.initiator and not back.response and not back.encrypted
    assert back.encode() == data


CIPHERS = {
    "gcm128": lambda: w.SkCipher(w.ENCR_AES_GCM_16, b"k" * 16 + b"salt"),
    "gcm256": lambda: w.SkCipher(w.ENCR_AES_GCM_16, b"k" * 32 + b"salt"),
    "cbc256": lambda: w.SkCipher(w.ENCR_AES_CBC, b"k" * 32, w.INTEG_HMAC_SHA2_256_128, b"i" * 32),
}


@pytest.mark.parametrize("name", sorted(CIPHERS))
def test_sk_round_trip(name):
    cipher = CIPHERS[name]()
    data = message(ALL_PAYLOADS, response=True).encode(cipher)
    hdr = w.decode_header(data)
    assert hdr.next_payload == w.PT_SK and hdr.is_response and hdr.length == len(data)
    back = w.decode_message(data, cipher)
    assert back.encrypted and back.payloads == ALL_PAYLOADS
    empty = message([]).encode(cipher)  # empty INFORMATIONAL (liveness check)
    assert w.decode_message(empty, cipher).payloads == []


@pytest.mark.parametrize("name", sorted(CIPHERS))
def test_sk_tampering_is_detected(name):
    cipher = CIPHERS[name]()
    data = bytearray(message([w.Nonce(b"x" * 16)]).encode(cipher))
    for pos in (10, 40, len(data) - 1):  # header (AAD), ciphertext, ICV
        bad = bytearray(data)
        bad[pos] ^= 1
        with pytest.raises(DecodeError) as err:
            w.decode_message(bytes(bad), cipher)
        assert err.value.reason == "integrity_check_failed"
    with pytest.raises(DecodeError) as err:
        w.decode_message(bytes(data))
    assert err.value.reason == "no_keys"


def _payload(ptype: int, body: bytes, nxt: int = 0, critical: bool = False) -> bytes:
    return struct.pack("!BBH", nxt, 0x80 if critical else 0, 4 + len(body)) + body


def _raw(first: int, chain: bytes, version: int = 0x20, length: int | None = None) -> bytes:
    total = 28 + len(chain) if length is None else length
    return struct.pack("!8s8sBBBBII", SPI_I, SPI_R, first, version, w.IKE_AUTH, 0x08, 1, total) + chain


REJECTIONS = {
    "short header": (b"\x01" * 20, "truncated"),
    "IKEv1 version": (_raw(0, b"", version=0x10), "bad_version"),
    "length field": (_raw(0, b"", length=99), "bad_length"),
    "payload past end": (_raw(w.PT_NONCE, struct.pack("!BBH", 0, 0, 200)), "bad_length"),
    "payload length < 4": (_raw(w.PT_NONCE, struct.pack("!BBH", 0, 0, 2)), "bad_length"),
    "trailing bytes": (_raw(w.PT_NONCE, _payload(w.PT_NONCE, b"n" * 16) + b"xx"), "bad_length"),
    "unknown critical": (_raw(222, _payload(222, b"x", critical=True)), "unsupported_critical_payload"),
    "short nonce": (_raw(w.PT_NONCE, _payload(w.PT_NONCE, b"n" * 8)), "bad_payload"),
    "empty KE": (_raw(w.PT_KE, _payload(w.PT_KE, b"\x00\x13\x00\x00")), "bad_payload"),
    "ID_IPV4 size": (_raw(w.PT_IDI, _payload(w.PT_IDI, b"\x01\x00\x00\x00\x01\x02")), "bad_payload"),
    "delete ESP spi size": (_raw(w.PT_DELETE, _payload(w.PT_DELETE, b"\x03\x08\x00\x01" + b"x" * 8)), "bad_payload"),
    "delete count": (_raw(w.PT_DELETE, _payload(w.PT_DELETE, b"\x03\x04\x00\x02" + b"x" * 4)), "bad_payload"),
    "TS zero count": (_raw(w.PT_TSI, _payload(w.PT_TSI, b"\x00\x00\x00\x00")), "bad_payload"),
    "TS start > end": (_raw(w.PT_TSI, _payload(w.PT_TSI, b"\x01\x00\x00\x00" + struct.pack(
        "!BBHHH4s4s", 7, 0, 16, 0, 65535, bytes([10, 0, 0, 9]), bytes([10, 0, 0, 1])))), "bad_payload"),
    "TS length": (_raw(w.PT_TSI, _payload(w.PT_TSI, b"\x01\x00\x00\x00" + struct.pack(
        "!BBHHH4s", 7, 0, 12, 0, 65535, bytes(4)))), "bad_payload"),
    "CP type": (_raw(w.PT_CP, _payload(w.PT_CP, b"\x09\x00\x00\x00")), "bad_payload"),
    "CP address length": (_raw(w.PT_CP, _payload(w.PT_CP, b"\x02\x00\x00\x00\x00\x01\x00\x03abc")), "bad_payload"),
    "EAP length": (_raw(w.PT_EAP, _payload(w.PT_EAP, b"\x01\x01\x00\x09\x01")), "bad_payload"),
    "SA no proposal": (_raw(w.PT_SA, _payload(w.PT_SA, b"")), "bad_payload"),
    "SA transform count": (_raw(w.PT_SA, _payload(w.PT_SA, struct.pack("!BBHBBBB", 0, 0, 8, 1, 1, 0, 1))),
                           "bad_payload"),
    "SA proposal last": (_raw(w.PT_SA, _payload(w.PT_SA, struct.pack("!BBHBBBB", 7, 0, 8, 1, 1, 0, 0))),
                         "bad_payload"),
    "SK not last": (_raw(w.PT_SK, _payload(w.PT_SK, b"x" * 40, nxt=w.PT_NONCE) + _payload(w.PT_NONCE, b"n" * 16)),
                    "bad_payload"),
    "zero SPIi": (b"\0" * 16 + _raw(0, b"")[16:], "bad_payload"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejections_name_the_reason(case):
    data, reason = REJECTIONS[case]
    with pytest.raises(DecodeError) as err:
        w.decode_message(data)
    assert err.value.reason == reason, err.value


def test_unknown_non_critical_payload_is_skipped_over():
    data = _raw(222, _payload(222, b"opaque", nxt=w.PT_NONCE) + _payload(w.PT_NONCE, b"n" * 16))
    msg = w.decode_message(data)
    assert msg.payloads == [w.UnknownPayload(222, b"opaque"), w.Nonce(b"n" * 16)]


def test_bad_sk_padding_is_rejected():
    cipher = CIPHERS["gcm128"]()
    plain = b"\x00\x00\x00\x09"  # pad length 9 exceeds the 4-byte plaintext
    iv = b"\x01" * 8
    sk_len = 4 + len(iv) + len(plain) + 16
    prefix = _raw(w.PT_SK, b"", length=28 + sk_len)[:28] + struct.pack("!BBH", 0, 0, sk_len)
    data = prefix + iv + cipher.aead.encrypt(cipher.salt + iv, plain, prefix)
    with pytest.raises(DecodeError) as err:
        w.decode_message(data, cipher)
    assert err.value.reason == "bad_padding"


def test_gcm_sk_without_alignment_padding_is_accepted():
    """strongSwan pads AES-GCM SK payloads to 1 byte, not 4: the ciphertext length is arbitrary."""
    cipher = CIPHERS["gcm128"]()
    inner = struct.pack("!BBH", 0, 0, 20) + b"n" * 16
    plain = inner + b"\x00"  # no padding, pad length 0: 21 bytes
    iv = b"\x02" * 8
    sk_len = 4 + len(iv) + len(plain) + 16
    prefix = _raw(w.PT_SK, b"", length=28 + sk_len)[:28] + struct.pack("!BBH", w.PT_NONCE, 0, sk_len)
    data = prefix + iv + cipher.aead.encrypt(cipher.salt + iv, plain, prefix)
    assert w.decode_message(data, cipher).payloads == [w.Nonce(b"n" * 16)]


def test_udp4500_classification():
    ike = message([w.Nonce(b"n" * 16)]).encode()
    assert w.classify_udp4500(w.add_non_esp_marker(ike)) == (w.KIND_IKE, ike)
    assert w.classify_udp4500(b"\xff") == (w.KIND_KEEPALIVE, b"")
    esp = b"\x00\x00\x12\x34" + b"\x00\x00\x00\x01" + b"payload"
    assert w.classify_udp4500(esp) == (w.KIND_ESP, esp)
    for bad in (b"", b"\x00\x00", b"\x00\x00\x12\x34\x00"):
        with pytest.raises(DecodeError) as err:
            w.classify_udp4500(bad)
        assert err.value.reason == "truncated"


def test_header_flags_and_message_id():
    data = w.Message(SPI_I, SPI_R, w.INFORMATIONAL, 0xFFFFFFFF, [], response=True).encode()
    hdr = w.decode_header(data)
    assert hdr.message_id == 0xFFFFFFFF and hdr.is_response and not hdr.from_initiator
    assert data[17] == 0x20 and data[19] == w.FLAG_RESPONSE


VALID = [message(ALL_PAYLOADS).encode(), message([w.Nonce(b"n" * 16)]).encode(CIPHERS["cbc256"]())]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10000), st.integers(0, 255)), max_size=6),
       st.integers(0, 2000))
def test_fuzz_mutations_raise_only_decode_error(base, flips, cut):
    data = bytearray(base)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = bytes(data[:cut]) if cut < len(data) else bytes(data)
    for cipher in (None, CIPHERS["cbc256"]()):
        try:
            w.decode_message(data, cipher)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    for decoder in [w.decode_message, w.decode_header, w.classify_udp4500] + [
            cls.decode_body for cls in w.PAYLOAD_CLASSES.values()]:
        try:
            decoder(data)
        except DecodeError:
            pass
