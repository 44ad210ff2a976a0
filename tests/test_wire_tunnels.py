"""IP-in-IP, minimal encapsulation (RFC 2004) and GRE (RFC 2784): round trips, known bytes, scapy's
view of GRE, every rejection with its reason, and fuzzed decoders that only ever raise DecodeError."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import GRE

from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_GRE, PROTO_MINENC, PROTO_UDP, IPv4, checksum, ipv4_udp
from nodes.wire.tunnels import (
    GreHeader, MinimalForwardingHeader, NotEncapsulable, decapsulate, encapsulate,
)

HA, COA, CN, HOME = A("10.1.1.2"), A("192.0.2.1"), A("10.1.2.10"), A("10.1.1.100")
INNER = ipv4_udp(CN, HOME, 9000, 9000, b"payload", ttl=63)


@pytest.mark.parametrize("kind", ["ipip", "minimal", "gre"])
def test_each_kind_round_trips_the_inner_packet(kind):
    packet = encapsulate(kind, HA, COA, INNER)
    got = decapsulate(packet)
    assert got.kind == kind and got.inner == INNER
    assert (got.outer.src, got.outer.dst) == (HA, COA)


def test_minimal_encapsulation_rewrites_the_header_and_keeps_the_original_fields():
    packet = encapsulate("minimal", HA, COA, INNER)
    assert len(packet) == len(INNER) + 12  # S: the HA is not the original sender
    outer = IPv4.decode(packet)  # the rewritten header's checksum verifies
    assert (outer.proto, outer.src, outer.dst, outer.ttl) == (PROTO_MINENC, HA, COA, 63)
    protocol, flags, _csum, dst, src = struct.unpack("!BBH4s4s", outer.payload[:12])
    assert (protocol, flags, A(dst), A(src)) == (PROTO_UDP, 0x80, HOME, CN)
    assert checksum(outer.payload[:12]) == 0
    assert outer.payload[12:] == IPv4.decode(INNER).payload


def test_minimal_encapsulation_by_the_sender_itself_leaves_out_the_source():
    own = ipv4_udp(HA, HOME, 1, 2, b"x")
    packet = encapsulate("minimal", HA, COA, own)
    assert len(packet) == len(own) + 8 and IPv4.decode(packet).payload[1] == 0
    assert decapsulate(packet).inner == own


def test_a_fragment_is_not_minimal_encapsulated():
    fragment = IPv4(CN, HOME, PROTO_UDP, b"\0" * 16, flags=0x1).encode()
    with pytest.raises(NotEncapsulable):
        encapsulate("minimal", HA, COA, fragment)
    later = IPv4(CN, HOME, PROTO_UDP, b"\0" * 16, flags=0, frag_offset=3).encode()
    with pytest.raises(NotEncapsulable):
        encapsulate("minimal", HA, COA, later)


def test_gre_known_bytes_and_scapys_view():
    packet = encapsulate("gre", HA, COA, INNER)
    outer = IPv4.decode(packet)
    assert outer.proto == PROTO_GRE and outer.payload[:4] == bytes.fromhex("00000800")
    theirs = IP(packet)
    assert theirs.haslayer(GRE) and theirs[GRE].proto == 0x0800 and theirs[GRE].chksum_present == 0
    assert bytes(theirs[GRE].payload) == INNER


def test_gre_with_checksum_round_trips_and_scapy_agrees():
    data = GreHeader(with_checksum=True).encode(INNER)
    assert data[:2] == b"\x80\x00" and checksum(data) == 0
    header, payload = GreHeader.decode(data)
    assert header.with_checksum and payload == INNER
    theirs = GRE(data)
    assert theirs.chksum_present == 1 and theirs.chksum == struct.unpack("!H", data[4:6])[0]


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x00\x08", "truncated"),
    (struct.pack("!HH", 0x2000, 0x0800) + INNER, "unsupported-flags"),  # K (RFC 2890 key)
    (struct.pack("!HH", 0x1000, 0x0800) + INNER, "unsupported-flags"),  # S
    (struct.pack("!HH", 0x4000, 0x0800) + INNER, "unsupported-flags"),  # R
    (struct.pack("!HH", 0x0001, 0x0800) + INNER, "bad-version"),
    (struct.pack("!HH", 0x8000, 0x0800) + b"\0\0", "truncated"),
    (struct.pack("!HHHH", 0x8000, 0x0800, 0x1234, 0) + INNER, "bad-checksum"),
])
def test_gre_rejections(data, reason):
    with pytest.raises(DecodeError) as e:
        GreHeader.decode(data)
    assert e.value.reason == reason


def test_gre_reserved0_bits_6_to_12_are_ignored_on_reception():
    header, payload = GreHeader.decode(struct.pack("!HH", 0x03F8, 0x0800) + INNER)
    assert header.protocol == 0x0800 and payload == INNER


@pytest.mark.parametrize("data, reason", [
    (b"\x11\x00\x00", "truncated"),
    (b"\x11\x80" + b"\0" * 6, "truncated"),  # S set, no original source
    (b"\x11\x00\x00\x00" + HOME.packed, "bad-checksum"),
])
def test_minimal_forwarding_header_rejections(data, reason):
    with pytest.raises(DecodeError) as e:
        MinimalForwardingHeader.decode(data)
    assert e.value.reason == reason


@pytest.mark.parametrize("outer_proto, payload, reason", [
    (6, b"\0" * 40, "not-a-tunnel"),
    (PROTO_GRE, GreHeader(protocol=0x86DD).encode(b"\x60" + b"\0" * 39), "not-ipv4"),
    (4, b"\x60" + b"\0" * 39, "inner-bad-version"),
    (PROTO_GRE, GreHeader().encode(INNER[:10]), "inner-truncated"),
])
def test_decapsulate_rejections(outer_proto, payload, reason):
    with pytest.raises(DecodeError) as e:
        decapsulate(IPv4(HA, COA, outer_proto, payload).encode())
    assert e.value.reason == reason


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="one of ipip, minimal, gre"):
        encapsulate("udp", HA, COA, INNER)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_fuzzed_gre_and_minimal_headers_only_raise_decode_errors(data):
    for decoder in (GreHeader.decode, MinimalForwardingHeader.decode):
        try:
            decoder(data)
        except DecodeError as e:
            assert e.reason


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([4, PROTO_GRE, PROTO_MINENC]), st.binary(max_size=80))
def test_fuzzed_tunnel_packets_only_raise_decode_errors(proto, payload):
    try:
        got = decapsulate(IPv4(HA, COA, proto, payload).encode())
    except DecodeError as e:
        assert e.reason
    else:
        IPv4.decode(got.inner)  # whatever comes out is a whole IPv4 packet


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ipip", "minimal", "gre"]), st.binary(max_size=200), st.integers(0, 255), st.integers(1, 255))
def test_any_unfragmented_packet_round_trips(kind, data, proto, ttl):
    inner = IPv4(CN, HOME, proto, data, ttl=ttl).encode()
    assert decapsulate(encapsulate(kind, HA, COA, inner)).inner == inner
