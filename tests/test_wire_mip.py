"""Mobile IPv4 codecs: round trips, known answers (and scapy's view), every rejection, fuzz."""
from __future__ import annotations

import hmac
import struct
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ, MobileIPTunnelData

from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import ICMP
from nodes.wire.mip import (
    NTP_UNIX_OFFSET, AgentAdvertisement, AgentFlags, AgentSolicitation, AuthExtension,
    EncapsulatingDeliveryStyle, RegistrationReply, RegistrationRequest, RequestFlags, TrustedNetworksConfigured,
    TunnelData, UdpTunnelReply, UdpTunnelRequest, UnknownExtension, agent_rebooted, append_auth, cut_after,
    find_extension, ident_for_mismatch, next_advertisement_sequence, ntp_now, ntp_to_unix, verify_auth,
)

HOME, HA, COA = A("10.1.0.50"), A("10.1.0.1"), A("198.51.100.1")
KEY = b"0123456789abcdef"
IDENT = 0xE8A1B2C3_11223344


def request(**kw) -> RegistrationRequest:
    fields = dict(flags=RequestFlags.T | RequestFlags.D, lifetime=1800, home_address=HOME, home_agent=HA,
                  care_of_address=COA, identification=IDENT, extensions=[])
    fields.update(kw)
    return RegistrationRequest(**fields)


# --- round trips and known answers --------------------------------------------------------------

def test_request_known_bytes():
    raw = request().encode()
    assert raw == bytes.fromhex("01220708" "0a010032" "0a010001" "c6336401" "e8a1b2c311223344")


def test_request_with_every_extension_round_trips():
    exts = [UdpTunnelRequest(force=True, via_fa=False), EncapsulatingDeliveryStyle(), UnknownExtension(200, b"xyz")]
    raw = append_auth(request(extensions=exts).encode(), 32, 1000, KEY)
    raw = append_auth(raw, 33, 1001, b"mnfa")
    raw = append_auth(raw, 34, 1002, b"faha")
    msg = RegistrationRequest.decode(raw)
    assert msg.extensions[:3] == exts
    assert [e.type for e in msg.extensions[3:]] == [32, 33, 34]
    assert msg.encode() == raw
    assert verify_auth(raw, msg.extensions[3], KEY)
    assert verify_auth(raw, msg.extensions[4], b"mnfa") and verify_auth(raw, msg.extensions[5], b"faha")
    assert not verify_auth(raw, msg.extensions[3], b"other key")
    assert cut_after(raw, msg.extensions[3]) == raw[:24 + 8 + 2 + 5 + 22]


def test_reply_round_trip_with_udp_tunnel_reply_and_tnc():
    reply = RegistrationReply(0, 600, HOME, HA, IDENT, [UdpTunnelReply(0, True, 110), TrustedNetworksConfigured()])
    raw = append_auth(reply.encode(), 32, 1000, KEY)
    back = RegistrationReply.decode(raw)
    assert back.extensions[:2] == reply.extensions
    assert raw[20:28] == bytes.fromhex("2c06 0000 8000 006e".replace(" ", ""))
    assert raw[28:32] == bytes.fromhex("95020000")


def test_hmac_md5_authenticator_known_answer():
    fixed = request(extensions=[]).encode()
    raw = append_auth(fixed, 32, 0x1234, KEY)
    covered = fixed + bytes([32, 20]) + struct.pack("!I", 0x1234)
    assert raw == covered + hmac.new(KEY, covered, "md5").digest()
    assert len(raw) == 24 + 22


def test_scapy_agrees_on_fixed_fields():
    ours = request(flags=0x02, lifetime=1800).encode()
    theirs = bytes(MobileIP(type=1) / MobileIPRRQ(flags=0x02, lifetime=1800, homeaddr=str(HOME),
                                                  haaddr=str(HA), coaddr=str(COA), id=IDENT))
    assert ours == theirs
    parsed = MobileIP(append_auth(ours, 32, 1000, KEY))
    rrq = parsed[MobileIPRRQ]
    assert (rrq.flags, rrq.lifetime, rrq.homeaddr, rrq.haaddr, rrq.coaddr, rrq.id) == \
        (0x02, 1800, str(HOME), str(HA), str(COA), IDENT)
    reply = RegistrationReply(133, 0, HOME, HA, IDENT).encode()
    rrp = MobileIP(reply)[MobileIPRRP]
    assert (rrp.code, rrp.lifetime, rrp.homeaddr, rrp.haaddr, rrp.id) == (133, 0, str(HOME), str(HA), IDENT)
    tunnel = TunnelData(4, b"").encode()
    assert tunnel == bytes(MobileIP(type=4) / MobileIPTunnelData(nexthdr=4))


def test_agent_advertisement_round_trip_and_layout():
    adv = AgentAdvertisement(7, 1800, int(AgentFlags.R | AgentFlags.F | AgentFlags.T | AgentFlags.U), [COA],
                             lifetime=3, routers=[(COA, 0)], prefix_lengths=[24],
                             extensions=[UnknownExtension(140, b"ab")], padding=1)
    raw = adv.encode()
    assert raw[0] == 9 and raw[4:8] == bytes([1, 2, 0, 3])
    assert raw[16:28] == bytes([16, 10, 0, 7, 0x07, 0x08, 0x91, 0x80]) + COA.packed
    assert raw[28:31] == bytes([19, 1, 24]) and raw[-1] == 0
    assert AgentAdvertisement.decode(raw) == adv


def test_agent_solicitation_round_trip():
    raw = AgentSolicitation().encode()
    assert raw[:2] == b"\x0a\x00" and len(raw) == 8
    assert AgentSolicitation.decode(raw) == AgentSolicitation()


def test_tunnel_data_round_trip():
    assert TunnelData.decode(TunnelData(55, b"inner").encode()) == TunnelData(55, b"inner")


def test_ntp_identification_helpers():
    now = 1_700_000_000.25
    ident = ntp_now(now)
    assert ident >> 32 == 1_700_000_000 + NTP_UNIX_OFFSET and (ident & 0xFFFFFFFF) == 1 << 30
    assert ntp_to_unix(ident) == pytest.approx(now)
    mismatch = ident_for_mismatch(now + 100, IDENT)
    assert mismatch >> 32 == (ntp_now(now + 100) >> 32) and mismatch & 0xFFFFFFFF == IDENT & 0xFFFFFFFF


def test_sequence_numbers_wrap_to_256_and_reboot_rule():
    assert next_advertisement_sequence(0) == 1
    assert next_advertisement_sequence(0xFFFF) == 256
    assert not agent_rebooted(0xFFFF, 256)
    assert agent_rebooted(300, 0) and agent_rebooted(300, 255)
    assert not agent_rebooted(5, 6) and not agent_rebooted(0, 0)


def test_find_extension():
    exts = [EncapsulatingDeliveryStyle(), AuthExtension(32, 300, b"x")]
    assert find_extension(exts, 32) is exts[1] and find_extension(exts, 44) is None


# --- rejections ---------------------------------------------------------------------------------

def _with_ext(body: bytes) -> bytes:
    return request().encode() + body


def _advert_with(agent_body: bytes, rest: bytes = b"", count: int = 0, entry_size: int = 2) -> bytes:
    return ICMP(9, 0, bytes([count, entry_size, 0, 3]), b"\0" * 8 * count + bytes([16, len(agent_body)])
                + agent_body + rest).encode()


GOOD_AGENT = struct.pack("!HHH", 1, 1800, 0x9000) + COA.packed

REQUEST_REJECTIONS = [
    ("truncated", request().encode()[:23]),
    ("bad-type", b"\x03" + request().encode()[1:]),
    ("truncated", _with_ext(b"\x20")),
    ("bad-length", _with_ext(b"\x20\x14" + b"\0" * 10)),
    ("bad-length", _with_ext(b"\x20\x03\0\0\x01")),
    ("unknown-extension", _with_ext(b"\x07\x00")),
    ("unknown-extension", _with_ext(b"\x00\x00")),
    ("bad-subtype", _with_ext(b"\x90\x06\x01\x00\x00\x04\x00\x00")),
    ("bad-length", _with_ext(b"\x90\x05\x00\x00\x00\x04\x00")),
    ("bad-length", _with_ext(b"\x82\x01\x00")),
]


@pytest.mark.parametrize("raw, check", [
    (request(flags=RequestFlags.r | RequestFlags.x | RequestFlags.T).encode(),
     lambda m: m.flags == RequestFlags.r | RequestFlags.x | RequestFlags.T),
    (_with_ext(b"\x20\x14" + struct.pack("!I", 255) + b"\0" * 16), lambda m: m.extensions[0].spi == 255),
    (_with_ext(b"\x90\x06\x00\xff\x3f\x04\xff\xff"),
     lambda m: m.extensions[0] == UdpTunnelRequest(force=False, encapsulation=4)),
    (_with_ext(b"\x90\x06\x00\x00\xc1\x04\x00\x00"), lambda m: m.extensions[0].force),
])
def test_request_fields_ignored_on_reception(raw, check):
    """Sent as zero, ignored on reception: request flags r and x (RFC 5944 3.3), the UDP Tunnel
    Request's reserved fields (RFC 3519 3.1); a reserved SPI decodes and fails authentication later."""
    assert check(RegistrationRequest.decode(raw))


@pytest.mark.parametrize("reason, raw", REQUEST_REJECTIONS)
def test_request_rejections(reason, raw):
    with pytest.raises(DecodeError) as err:
        RegistrationRequest.decode(raw)
    assert err.value.reason == reason


REPLY = RegistrationReply(0, 10, HOME, HA, IDENT).encode()


@pytest.mark.parametrize("reason, raw", [
    ("truncated", REPLY[:19]),
    ("bad-type", b"\x01" + REPLY[1:]),
    ("bad-length", REPLY + b"\x2c\x05\0\0\0\0\0"),
    ("bad-subtype", REPLY + b"\x95\x02\x01\x00"),
    ("reserved-bits", REPLY + b"\x95\x02\x00\x01"),
    ("bad-length", REPLY + b"\x95\x03\x00\x00\x00"),
])
def test_reply_rejections(reason, raw):
    with pytest.raises(DecodeError) as err:
        RegistrationReply.decode(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize("reason, raw", [
    ("bad-checksum", _advert_with(GOOD_AGENT)[:-1] + b"\xff"),
    ("bad-type", ICMP(8, 0).encode()),
    ("bad-code", ICMP(9, 1, bytes([0, 2, 0, 3]), bytes([16, len(GOOD_AGENT)]) + GOOD_AGENT).encode()),
    ("bad-entry-size", _advert_with(GOOD_AGENT, entry_size=3)),
    ("truncated", ICMP(9, 0, bytes([4, 2, 0, 3]), b"\0" * 8).encode()),
    ("missing-extension", ICMP(9, 0, bytes([0, 2, 0, 3]), b"").encode()),
    ("duplicate-extension", _advert_with(GOOD_AGENT, bytes([16, len(GOOD_AGENT)]) + GOOD_AGENT)),
    ("bad-length", _advert_with(GOOD_AGENT + b"\0")),
    ("bad-prefix-length", _advert_with(GOOD_AGENT, b"\x13\x01\x21", count=1)),
    ("bad-length", _advert_with(GOOD_AGENT, b"\x13\x02\x18\x18", count=1)),
    ("unknown-extension", _advert_with(GOOD_AGENT, b"\x05\x00")),
])
def test_advertisement_rejections(reason, raw):
    with pytest.raises(DecodeError) as err:
        AgentAdvertisement.decode(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize("reason, raw", [
    ("bad-type", ICMP(9, 0).encode()),
    ("bad-code", ICMP(10, 1).encode()),
    ("reserved-bits", ICMP(10, 0, b"\0\0\0\1").encode()),
    ("truncated", b"\x0a\x00"),
])
def test_solicitation_rejections(reason, raw):
    with pytest.raises(DecodeError) as err:
        AgentSolicitation.decode(raw)
    assert err.value.reason == reason


@pytest.mark.parametrize("reason, raw", [
    ("truncated", b"\x04\x04\x00"),
    ("bad-type", b"\x05\x04\x00\x00"),
    ("bad-next-header", b"\x04\x11\x00\x00"),
])
def test_tunnel_data_rejections(reason, raw):
    with pytest.raises(DecodeError) as err:
        TunnelData.decode(raw)
    assert err.value.reason == reason


def test_reserved_bits_the_rfcs_ignore_on_reception_are_ignored():
    """RFC 3519 3.2 (UDP Tunnel Reply), 3.3 (tunnel data) and RFC 5944 2.1.1 (the advertisement's r
    bit and reserved bits): sent as zero, ignored on reception: the message decodes."""
    reply = RegistrationReply.decode(REPLY + b"\x2c\x06\x00\x00\x40\x00\x00\x6e")
    assert reply.extensions
    assert AgentAdvertisement.decode(_advert_with(struct.pack("!HHH", 1, 1800, 0x9001)))
    assert TunnelData.decode(b"\x04\x04\x00\x01").next_header == 4


def test_skippable_unknown_extension_is_kept():
    raw = _with_ext(b"\xc8\x03abc")
    assert RegistrationRequest.decode(raw).extensions == [UnknownExtension(200, b"abc")]


# --- fuzz: decoders raise DecodeError and nothing else ------------------------------------------

DECODERS = [RegistrationRequest.decode, RegistrationReply.decode, AgentAdvertisement.decode,
            AgentSolicitation.decode, TunnelData.decode]
VALID = [
    append_auth(request(extensions=[UdpTunnelRequest()]).encode(), 32, 1000, KEY),
    append_auth(RegistrationReply(0, 10, HOME, HA, IDENT, [UdpTunnelReply()]).encode(), 32, 1000, KEY),
    AgentAdvertisement(1, 1800, 0x9000, [COA], routers=[(COA, 0)], prefix_lengths=[24]).encode(),
    AgentSolicitation().encode(),
    TunnelData(4, b"x" * 20).encode(),
]


def _only_decode_errors(decoder, data: bytes) -> None:
    try:
        decoder(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(DECODERS))), st.binary(max_size=120))
def test_fuzz_random_bytes(index, data):
    _only_decode_errors(DECODERS[index], data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(DECODERS))), st.data())
def test_fuzz_mutated_valid_messages(index, data):
    raw = bytearray(VALID[index])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _only_decode_errors(DECODERS[index], bytes(raw[:cut]))
    _only_decode_errors(DECODERS[index], bytes(raw))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**64 - 1),
       st.lists(st.tuples(st.integers(128, 255).filter(lambda t: t not in (130, 144, 149)),
                          st.binary(max_size=20)), max_size=3))
def test_request_round_trip_property(flags, lifetime, ident, unknown):
    msg = request(flags=flags & ~0x05, lifetime=lifetime, identification=ident,
                  extensions=[UnknownExtension(t, d) for t, d in unknown])
    assert RegistrationRequest.decode(msg.encode()) == msg
