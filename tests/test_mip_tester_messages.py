"""The Mobile IPv4 tester library (testbed/conformance/mip): known answers, round trips, negative
builds, tunnels, transport, and decoders that never crash."""
from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address as A

import pytest

from testbed.conformance.mip import (
    AgentAdvertisement, AgentSolicitation, Authenticate, AuthExtension, EncapsulatingDeliveryStyle, Extension,
    FakeTransport, MnAaaAuthenticate, MnAaaAuthExtension, NaiExtension, Padding, RegistrationReply,
    RegistrationRequest, RegistrationRevocation, RevocationAck, RevocationSupport, SecurityAssociation,
    TesterAgentAdvertiser, TesterFA, TesterHA, TesterMN, TrustedNetworksConfigured, TunnelData, UdpTunnelReply,
    UdpTunnelRequest, agent_flags, decapsulate, flags_from, gre_decapsulate, gre_encapsulate, hmac_md5,
    identification_time, ipip_decapsulate, ipip_encapsulate, ipv4_udp, minimal_decapsulate, minimal_encapsulate,
    next_sequence, nonce_identification, ntp_identification, parse_advertisement, parse_ipv4_udp, parse_message,
    parse_reply, parse_request, parse_solicitation, parse_tunnel_data, prefix_suffix_md5, udp_keepalive,
    udp_tunnel_decapsulate, udp_tunnel_encapsulate,
)
from testbed.conformance.mip.auth import PREFIX_SUFFIX_MD5
from testbed.conformance.mip.ipv4 import FLAG_DF, internet_checksum, parse_ipv4
from testbed.conformance.mip.messages import parse_revocation, parse_revocation_ack
from testbed.conformance.mip.transport import Received
from testbed.conformance.mip.udp import build_udp

KEY = b"0123456789abcdef"
SA = SecurityAssociation(1000, KEY)
HOME, HA, COA, FA = A("10.1.0.50"), A("10.1.0.1"), A("192.0.2.10"), A("198.51.100.1")
NOW = 1_700_000_000.0


# --- authenticators: known answers from the RFC definitions -----------------------------------------

def test_hmac_md5_rfc2104_vectors():
    # RFC 2104 appendix test vectors
    assert hmac_md5(b"\x0b" * 16, b"Hi There").hex() == "9294727a3638bb1c13f48ef8158bfc9d"
    assert hmac_md5(b"Jefe", b"what do ya want for nothing?").hex() == "750c783e6ab0b503eaa86e310a5db738"
    assert hmac_md5(b"\xaa" * 16, b"\xdd" * 50).hex() == "56be34521d144c88dbb8c733f0e8b3f6"
    long_key = bytes(range(100))  # longer than a block: hashed first
    assert hmac_md5(long_key, b"x") == hmac.new(long_key, b"x", "md5").digest()


def test_prefix_suffix_md5_is_md5_of_key_data_key():
    assert prefix_suffix_md5(b"k", b"data") == hashlib.md5(b"kdatak").digest()


def test_request_authenticator_covers_message_up_to_spi():
    req = RegistrationRequest(flags_from("D"), 600, HOME, HA, COA, 0x1122334455667788,
                              [NaiExtension(b"mn@x"), SA.authenticate()]).encode()
    # fixed part 24 bytes, NAI ext 2+4, then MN-HA: type 32, length 20, SPI 1000, 16 bytes
    assert req[30:36] == bytes((32, 20)) + struct.pack("!I", 1000)
    protected = req[:36]
    assert req[36:] == hmac.new(KEY, protected, "md5").digest()
    keyed = RegistrationRequest(0, 600, HOME, HA, COA, 1,
                                [Authenticate(32, 1000, KEY, PREFIX_SUFFIX_MD5)]).encode()
    assert keyed[30:] == hashlib.md5(KEY + keyed[:30] + KEY).digest()
    parsed = parse_request(req)
    assert parsed.verify(req, KEY, 32, 1000)
    assert not parsed.verify(req, b"other key", 32, 1000)
    assert not parsed.verify(req, KEY, 32, 1001)


def test_negative_authentication_builds():
    base = dict(flags=0, lifetime=10, home_address=HOME, home_agent=HA, care_of_address=COA, identification=7)

    def build(*exts):
        raw = RegistrationRequest(**base, extensions=list(exts)).encode()
        return raw, parse_request(raw).value

    raw, req = build(SA.authenticate(key=b"wrong"))
    assert not req.verify(raw, KEY)
    raw, req = build(SA.authenticate(spi=999))
    assert req.find(32).spi == 999 and not req.verify(raw, KEY, spi=1000) and req.verify(raw, KEY)
    raw, req = build(SA.authenticate(truncate=8))
    ext = req.find(32)
    assert len(ext.authenticator) == 8 and raw[25] == 12
    raw, req = build(SA.authenticate(corrupt=True))
    assert not req.verify(raw, KEY)
    raw, req = build(SA.authenticate(), SA.authenticate())  # duplicate
    assert len(req.find_all(32)) == 2 and not req.verify(raw, KEY)
    raw, req = build()  # missing
    assert req.find(32) is None and not req.verify(raw, KEY)
    raw, req = build(SA.authenticate(), UdpTunnelRequest())  # something after the MN-HA: wrong order
    assert [e.type for e in req.extensions] == [32, 144] and req.verify(raw, KEY)
    raw = RegistrationRequest(**base, extensions=[SA.authenticate(length=40)]).encode()
    assert not parse_request(raw).ok and "runs past the end" in parse_request(raw).error


# --- messages round trip ---------------------------------------------------------------------------------

ALL_EXTENSIONS = [
    Padding(), NaiExtension(b"mn1@example.net"), EncapsulatingDeliveryStyle(),
    UdpTunnelRequest(force=True, registration_via_fa=True, encapsulation=4, reserved3=0),
    UdpTunnelReply(code=0, force=True, keepalive=30), TrustedNetworksConfigured(),
    RevocationSupport(0x01020304, inform=True), Extension(200, b"skippable"), MnAaaAuthExtension(77, b"x" * 16),
    AuthExtension(33, 500, b"a" * 16), AuthExtension(34, 600, b"b" * 16),
]


@pytest.mark.parametrize("flags", ["", "S", "B", "D", "M", "G", "r", "T", "x", "SBDMGrTx"])
def test_request_round_trip_every_flag_and_extension(flags):
    req = RegistrationRequest(flags_from(flags), 0xFFFF, HOME, HA, COA, 0xDEADBEEF01234567, list(ALL_EXTENSIONS))
    raw = req.encode()
    back = parse_request(raw)
    assert back.ok, back.error
    assert back.value == req and back.value.encode() == raw
    assert back.flags == flags_from(flags)


def test_reply_round_trip_and_codes():
    for code in (0, 1, 69, 74, 75, 76, 133, 137, 138, 139, 142, 194):
        rep = RegistrationReply(code, 300, HOME, HA, 42, [UdpTunnelReply(), TrustedNetworksConfigured()])
        raw = rep.encode()
        assert parse_reply(raw).value == rep and parse_message(raw).code == code
    assert not parse_reply(b"\x01" + bytes(19)).ok  # a request's type byte


def test_long_extension_and_mn_aaa_authentication():
    raw = RegistrationRequest(0, 10, A("0.0.0.0"), HA, COA, 1,
                              [NaiExtension(b"user@realm"), SA.authenticate(), MnAaaAuthenticate(2000, b"aaa")]).encode()
    req = parse_request(raw).value
    aaa = req.find(36)
    assert aaa.subtype == 1 and aaa.spi == 2000 and aaa.verifies(raw, b"aaa") and not aaa.verifies(raw, b"x")
    assert raw[aaa.offset + 2:aaa.offset + 4] == struct.pack("!H", 20)


def test_tunnel_data_and_revocation_messages():
    td = TunnelData(4, b"inner")
    assert parse_tunnel_data(td.encode()).value == td and parse_message(td.encode()).next_header == 4
    rev = RegistrationRevocation(HOME, HA, FA, 99, agent=True, inform=True, extensions=[SA.authenticate()])
    back = parse_revocation(rev.encode())
    assert back.ok and back.revocation_id == 99 and back.agent and back.inform and back.verify(rev.encode(), KEY)
    ack = RevocationAck(HOME, 99, True, extensions=[SA.authenticate()])
    assert parse_revocation_ack(ack.encode()).inform


def test_identifications():
    ident = ntp_identification(NOW + 0.5)
    assert ident >> 32 == int(NOW) + 2_208_988_800 and ident & 0xFFFFFFFF == 1 << 31
    assert identification_time(ident) == pytest.approx(NOW + 0.5)
    assert ntp_identification(NOW, 0xFFF, 12) & 0xFFF == 0xFFF
    assert nonce_identification(0xAAAA, 0xBBBB) == (0xAAAA << 32) | 0xBBBB


def test_decoders_report_errors_instead_of_raising():
    assert "need 24" in parse_request(b"\x01\x00").error
    assert parse_request(b"").error and parse_reply(b"\x03").error
    assert "no length byte" in parse_request(RegistrationRequest().encode() + b"\x20").error
    assert "udp tunnel request" in parse_request(RegistrationRequest().encode() + b"\x90\x02\x00\x00").error
    assert parse_message(b"\x63abc").error.startswith("unknown")
    with pytest.raises(AttributeError):
        parse_request(b"").lifetime


# --- advertisements --------------------------------------------------------------------------------------

def test_advertisement_layout_and_round_trip():
    adv = AgentAdvertisement(sequence=7, registration_lifetime=600, flags=agent_flags("RBHFMGrTUXI"),
                             care_of_addresses=[FA, A("198.51.100.2")], routers=[(FA, 0)], lifetime=9,
                             prefix_lengths=[24], padding=True)
    raw = adv.encode()
    assert raw[0] == 9 and raw[1] == 16 and internet_checksum(raw) == 0
    assert raw[16:18] == bytes((16, 14)) and struct.unpack("!HHH", raw[18:24]) == (7, 600, 0xFFE0)
    p = parse_advertisement(raw)
    assert p.ok, p.error
    assert p.care_of_addresses == (FA, A("198.51.100.2")) and p.prefix_lengths == (24,) and p.padding == 1
    assert p.flag_letters == "RBHFMGrTUXI" and p.routers == ((FA, 0),) and p.sequence == 7


def test_advertisement_wrong_checksum_and_malformed():
    raw = AgentAdvertisement(checksum="wrong", care_of_addresses=[FA]).encode()
    assert internet_checksum(raw) != 0
    assert "checksum" in parse_advertisement(raw).error
    assert parse_advertisement(raw, require_checksum=False).checksum_ok is False
    bad_len = AgentAdvertisement(agent_ext_length=7, care_of_addresses=[FA]).encode()
    assert parse_advertisement(bad_len).error
    plain = AgentAdvertisement(care_of_addresses=[]).encode()[:8]
    plain = plain[:2] + b"\0\0" + plain[4:]
    plain = plain[:2] + struct.pack("!H", internet_checksum(plain)) + plain[4:]
    assert "no mobility agent" in parse_advertisement(plain).error


def test_solicitation_and_sequence_rollover():
    raw = AgentSolicitation().encode()
    assert raw[:2] == b"\x0a\x00" and parse_solicitation(raw).ok
    assert parse_solicitation(AgentSolicitation(checksum="wrong").encode()).error
    assert next_sequence(0xFFFF) == 256 and next_sequence(5) == 6
    adv = TesterAgentAdvertiser(FA, "RFT")
    seqs = [parse_advertisement(adv.advertisement()).sequence for _ in range(3)]
    assert seqs == [0, 1, 2]
    adv.sequence = 0xFFFF
    assert [parse_advertisement(adv.advertisement()).sequence for _ in range(2)] == [0xFFFF, 256]
    adv.reboot()
    assert parse_advertisement(adv.advertisement(flags="HF")).has("HF")


# --- UDP and tunnels -----------------------------------------------------------------------------------

def test_udp_checksums():
    for state in ("right", "zero", "wrong"):
        packet = ipv4_udp(COA, HA, 434, 434, b"payload", checksum=state)
        assert parse_ipv4_udp(packet).checksum_state == state
    seg = build_udp(COA, HA, 1, 2, b"ab", checksum=0x1234)
    assert seg[6:8] == b"\x12\x34"
    assert parse_ipv4_udp(b"\x45" + bytes(10)).error


INNER = ipv4_udp("10.1.0.9", HOME, 5000, 6000, b"hello", ttl=30, tos=0x10, flags_fragment=FLAG_DF)


def test_ipip_copies_df_and_tos_and_decrements_inner_ttl():
    outer = ipip_encapsulate(INNER, HA, COA, ttl=17)
    o = parse_ipv4(outer).value
    assert o.protocol == 4 and o.ttl == 17 and o.header.df and o.header.tos == 0x10 and o.checksum_ok
    d = ipip_decapsulate(outer)
    assert parse_ipv4(d.inner).ttl == 29 and parse_ipv4(d.inner).checksum_ok
    assert parse_ipv4(ipip_decapsulate(ipip_encapsulate(INNER, HA, COA, forwarding=False)).inner).ttl == 30


def test_minimal_encapsulation_8_and_12_bytes():
    twelve = minimal_encapsulate(INNER, HA, COA)
    assert len(twelve) == len(INNER) + 12
    o = parse_ipv4(twelve).value
    assert o.protocol == 55 and o.ttl == 30 and o.dst == COA and o.src == HA
    assert internet_checksum(o.payload[:12]) == 0 and o.payload[1] & 0x80
    assert minimal_decapsulate(twelve).inner == INNER
    eight = minimal_encapsulate(INNER, "10.1.0.9", COA)  # encapsulator is the original source
    assert len(eight) == len(INNER) + 8 and minimal_decapsulate(eight).inner == INNER
    bad = minimal_encapsulate(INNER, HA, COA, checksum="wrong")
    assert "checksum" in minimal_decapsulate(bad).error


def test_gre_and_udp_tunnel():
    for checksum in (False, True):
        outer = gre_encapsulate(INNER, HA, COA, checksum=checksum)
        d = gre_decapsulate(outer)
        assert d.ok and d.details["checksum_present"] == checksum and parse_ipv4(d.inner).ttl == 29
    corrupt = bytearray(gre_encapsulate(INNER, HA, COA, checksum=True))
    corrupt[-1] ^= 1
    assert "checksum" in gre_decapsulate(bytes(corrupt)).error
    udp = udp_tunnel_encapsulate(INNER, COA, HA, sport=40000)
    d = udp_tunnel_decapsulate(udp)
    assert d.ok and d.details["sport"] == 40000 and d.details["next_header"] == 4
    assert decapsulate(udp).kind == "udp" and decapsulate(ipip_encapsulate(INNER, HA, COA)).kind == "ipip"
    keep = udp_tunnel_decapsulate(udp_keepalive(COA, HA))
    assert parse_ipv4(keep.inner).protocol == 1 and parse_ipv4(keep.inner).payload[0] == 8
    assert decapsulate(INNER).error


# --- peers without any implementation under test -------------------------------------------------------

def test_tester_mn_and_tester_ha_together_and_resync():
    mn = TesterMN(HOME, HA, SA, clock_offset=-3600)
    ha = TesterHA(HA, {HOME: SA})
    req = mn.request(NOW, COA, flags="D")
    seen = ha.inspect(req, now=NOW)
    assert seen["mn_ha_ok"] and seen["identification_fresh"] is False
    reply = ha.answer(req, code=133, now=NOW)
    check = mn.check_reply(reply, NOW)
    assert check.code == 133 and check.authentic and check.matches and check.resynchronised
    req2 = mn.request(NOW, COA, flags="D")
    assert ha.inspect(req2, now=NOW)["identification_fresh"]
    assert mn.check_reply(ha.answer(req2), NOW).accepted
    forged = ha.answer(req2, auth={"key": b"bad"})
    assert mn.check_reply(forged, NOW).authentic is False and not mn.check_reply(forged, NOW).accepted


def test_nonce_replay_style():
    sa = SecurityAssociation(1000, KEY, replay="nonce")
    mn, ha = TesterMN(HOME, HA, sa), TesterHA(HA, {HOME: sa})
    req = mn.request(NOW, COA)
    reply = ha.answer(req, code=133, identification=nonce_identification(0x5555, parse_request(req).identification))
    assert mn.check_reply(reply, NOW).resynchronised
    assert parse_request(mn.request(NOW, COA)).identification >> 32 == 0x5555


def test_tester_fa_relays_with_fa_ha_and_strips_it_back():
    fa_ha = SecurityAssociation(3000, b"fa-ha key")
    fa = TesterFA(FA, fa_ha=fa_ha)
    ha = TesterHA(HA, {HOME: SA}, {FA: fa_ha})
    mn = TesterMN(HOME, HA, SA)
    req = mn.request(NOW, FA)
    out, ha_addr = fa.relay_request(req, src=HOME).value
    assert ha_addr == HA and len(out) == len(req) + 22
    seen = ha.inspect(out, src=FA)
    assert seen["mn_ha_ok"] and seen["fa_ha_ok"]
    reply = ha.answer(out, fa_ha=True)
    to_mn, dst, dport, fa_ha_ok = fa.relay_reply(reply).value
    assert fa_ha_ok and dst == HOME and dport == 434 and len(to_mn) == len(reply) - 22
    assert mn.check_reply(to_mn, NOW).accepted
    denial = fa.deny(req, 69, lifetime=300)
    assert parse_reply(denial).code == 69 and parse_reply(denial).find(32) is None


def test_fake_transport_register_and_ladder():
    ha = TesterHA(HA, {HOME: SA})
    t = FakeTransport()
    t.responder = lambda kind, data, meta: [Received(t.clock() + 0.01, "udp", ha.answer(data), str(HA), 434,
                                                     str(COA), 434)]
    mn = TesterMN(HOME, HA, SA)
    check = mn.register(t, care_of_address=COA, flags="D")
    assert check.accepted
    assert [e.direction for e in t.log] == ["sent", "received"]
    ladder = t.ladder().splitlines()
    assert "-> 10.1.0.1: RegistrationRequest coa 192.0.2.10" in ladder[0]
    assert "<- 10.1.0.1: RegistrationReply code 0 lifetime 1800" in ladder[1]
    t.responder = None
    assert mn.register(t, care_of_address=COA, timeout=1.0) is None


# --- fuzzing ---------------------------------------------------------------------------------------------

DECODERS = [parse_request, parse_reply, parse_message, parse_tunnel_data, parse_advertisement, parse_solicitation,
            parse_revocation, parse_revocation_ack, parse_ipv4_udp, parse_ipv4, ipip_decapsulate, minimal_decapsulate,
            gre_decapsulate, udp_tunnel_decapsulate, decapsulate]


def _seeds():
    return [RegistrationRequest(0, 1, HOME, HA, COA, 1, list(ALL_EXTENSIONS) + [SA.authenticate()]).encode(),
            RegistrationReply(0, 1, HOME, HA, 1, [UdpTunnelReply(), SA.authenticate()]).encode(),
            AgentAdvertisement(care_of_addresses=[FA], routers=[(FA, 0)], prefix_lengths=[24]).encode(),
            minimal_encapsulate(INNER, HA, COA), gre_encapsulate(INNER, HA, COA, checksum=True),
            udp_tunnel_encapsulate(INNER, COA, HA)]


def _check_decoders(data: bytes) -> None:
    for decode in DECODERS:
        result = decode(data)
        assert result.ok or (isinstance(result.error, str) and result.error), decode
        assert not (result.error or "").startswith("internal"), (decode, result.error)


def test_decoders_never_crash_on_mutations():
    import random

    rng = random.Random(5)
    for seed in _seeds():
        for _ in range(300):
            data = bytearray(seed)
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            _check_decoders(bytes(data[:rng.randrange(len(data) + 1)]))


def test_decoders_never_crash_hypothesis():
    hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed in the venv")
    from hypothesis import strategies as st

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.one_of(st.binary(max_size=120),
                                st.sampled_from(_seeds()).flatmap(
                                    lambda s: st.tuples(st.just(s), st.integers(0, len(s)),
                                                        st.binary(max_size=8)).map(
                                        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):]))))
    def run(data):
        _check_decoders(data)

    run()
