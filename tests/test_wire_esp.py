"""ESP framing and the UDP/4500 demultiplexing (RFC 4303, RFC 3948)."""
import pytest
from hypothesis import given, settings, strategies as st

from nodes.wire.errors import DecodeError
from nodes.wire.esp import (
    NAT_KEEPALIVE, NON_ESP_MARKER, EncapKind, ESPPacket, decode_udp_encap, encode_udp_encap_esp,
    encode_udp_encap_ike, peek_spi,
)

IKE_MESSAGE = bytes(range(28)) + b"payloads"


def reason(fn, *args, **kw) -> str:
    with pytest.raises(DecodeError) as info:
        fn(*args, **kw)
    return info.value.reason


def test_esp_packet_round_trip():
    pkt = ESPPacket(spi=0xC0FFEE01, seq=7, iv=b"I" * 8, ciphertext=b"C" * 32, icv=b"T" * 16)
    data = pkt.encode()
    assert data[:8] == bytes.fromhex("c0ffee0100000007")
    assert ESPPacket.decode(data, iv_len=8, icv_len=16) == pkt
    assert peek_spi(data) == 0xC0FFEE01


def test_esp_packet_rejections():
    good = ESPPacket(0x1000, 1, b"I" * 16, b"C" * 32, b"T" * 16).encode()
    assert reason(ESPPacket.decode, good[:7], 16, 16) == "truncated"
    assert reason(ESPPacket.decode, good[:40], 16, 16, 16) == "truncated"
    assert reason(ESPPacket.decode, good + b"xx", 16, 16, 16) == "bad-length"
    assert reason(ESPPacket.decode, bytes(4) + good[4:], 16, 16) == "bad-spi"
    assert reason(ESPPacket.decode, b"\0\0\0\x05" + good[4:], 16, 16) == "reserved-spi"
    with pytest.raises(DecodeError):
        ESPPacket(0, 1, b"", b"", b"").encode()


def test_udp_encap_demultiplexing():
    ike = decode_udp_encap(encode_udp_encap_ike(IKE_MESSAGE))
    assert (ike.kind, ike.data) == (EncapKind.IKE, IKE_MESSAGE)
    assert decode_udp_encap(NAT_KEEPALIVE).kind is EncapKind.KEEPALIVE
    esp = ESPPacket(0x1000, 1, b"I" * 8, b"C" * 4, b"T" * 16).encode()
    got = decode_udp_encap(encode_udp_encap_esp(esp))
    assert (got.kind, got.data) == (EncapKind.ESP, esp)


@pytest.mark.parametrize(
    "payload, why",
    [
        (b"", "truncated"),
        (b"\x00", "bad-keepalive"),
        (b"\xff\xff", "truncated"),
        (NON_ESP_MARKER + b"short", "truncated"),  # marker but no whole IKE header
        (b"\0\0\0\x07" + bytes(20), "reserved-spi"),
    ],
)
def test_udp_encap_rejections(payload, why):
    assert reason(decode_udp_encap, payload) == why


def test_encode_esp_refuses_the_marker():
    with pytest.raises(DecodeError):
        encode_udp_encap_esp(NON_ESP_MARKER + IKE_MESSAGE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([(8, 16, 4), (16, 16, 16), (0, 12, 4)]))
def test_decoders_only_raise_decode_error(data, lengths):
    iv_len, icv_len, block = lengths
    for fn in (lambda: ESPPacket.decode(data, iv_len, icv_len, block), lambda: decode_udp_encap(data),
               lambda: peek_spi(data)):
        try:
            fn()
        except DecodeError:
            pass
