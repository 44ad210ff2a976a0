"""NAPT (draft-gupta Appendix A): demultiplexing several remote hosts, checksums checked by
scapy, timeouts, redirection rules, exhaustion and drops."""
import json

from hypothesis import given, settings, strategies as st
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.packet import Raw

from nodes.ipsec.napt import Napt, NaptTimeouts, RedirectRule

G_I = "192.168.1.1"
H = "192.168.1.20"
R_INNER = "10.0.0.2"  # both remote hosts use it (each behind its own home NAT)



def expired(napt: Napt, now: float) -> int:
    """How many mappings handle_timer(now) removed."""
    before = len(napt)
    napt.handle_timer(now)
    return before - len(napt)

def raw(p) -> bytes:
    return bytes(p)


def assert_checksums_valid(data: bytes) -> IP:
    """Parse with scapy and check every checksum against scapy's own computation."""
    pkt = IP(data)
    fresh = pkt.copy()
    for layer in (IP, TCP, UDP, ICMP, IPerror, UDPerror):
        if fresh.haslayer(layer) and getattr(fresh[layer], "chksum", None) not in (None, 0):
            del fresh[layer].chksum
    rebuilt = IP(bytes(fresh))
    for layer in (IP, TCP, UDP, ICMP, IPerror, UDPerror):
        if pkt.haslayer(layer) and pkt[layer].chksum:
            assert pkt[layer].chksum == rebuilt[layer].chksum, f"{layer.__name__} checksum"
    return pkt


def tcp(src, dst, sport, dport, flags="S", payload=b"") -> bytes:
    return raw(IP(src=src, dst=dst, id=1) / TCP(sport=sport, dport=dport, flags=flags, seq=1000) / payload)


def udp(src, dst, sport, dport, payload=b"hello") -> bytes:
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def ping(src, dst, ident, reply=False) -> bytes:
    return raw(IP(src=src, dst=dst) / ICMP(type=0 if reply else 8, id=ident, seq=1) / b"abcdefgh")


@pytest.fixture
def napt():
    return Napt(G_I, ports=(1024, 65535))


def test_two_remote_hosts_same_inner_address_tcp(napt):
    a = assert_checksums_valid(napt.outbound(tcp(R_INNER, H, 40000, 80, payload=b"GET /"), "alice", 0.0))
    b = assert_checksums_valid(napt.outbound(tcp(R_INNER, H, 40000, 80, payload=b"GET /"), "bob", 0.0))
    assert (a.src, b.src) == (G_I, G_I)
    assert a[TCP].sport == 40000 and b[TCP].sport != 40000  # port preserved for the first only
    for peer, mapped in (("alice", a), ("bob", b)):
        data, who = napt.inbound(tcp(H, G_I, 80, mapped[TCP].sport, "SA", b"200 OK"), 1.0)
        back = assert_checksums_valid(data)
        assert who == peer and (back.dst, back[TCP].dport, back[TCP].sport) == (R_INNER, 40000, 80)
        assert back[Raw].load == b"200 OK"
    assert {row["state"] for row in napt.status(1.0).as_dict()["mappings"]} == {"established"}


def test_udp_and_icmp_demultiplexing(napt):
    a = assert_checksums_valid(napt.outbound(udp(R_INNER, H, 5353, 53), "alice", 0.0))
    b = assert_checksums_valid(napt.outbound(udp(R_INNER, H, 5353, 53), "bob", 0.0))
    assert a[UDP].sport != b[UDP].sport
    data, who = napt.inbound(udp(H, G_I, 53, b[UDP].sport, b"answer"), 0.5)
    assert who == "bob" and assert_checksums_valid(data)[UDP].dport == 5353
    pa = assert_checksums_valid(napt.outbound(ping(R_INNER, H, 77), "alice", 0.0))
    pb = assert_checksums_valid(napt.outbound(ping(R_INNER, H, 77), "bob", 0.0))
    assert pa.src == G_I and pa[ICMP].id != pb[ICMP].id
    for peer, mapped in (("alice", pa), ("bob", pb)):
        data, who = napt.inbound(ping(H, G_I, mapped[ICMP].id, reply=True), 0.5)
        back = assert_checksums_valid(data)
        assert who == peer and back.dst == R_INNER and back[ICMP].id == 77


def test_zero_udp_checksum_stays_zero(napt):
    packet = bytearray(udp(R_INNER, H, 1111, 53))
    packet[26:28] = b"\0\0"
    out = IP(napt.outbound(bytes(packet), "alice", 0.0))
    assert out[UDP].chksum == 0 and out.src == G_I


def test_icmp_errors_translated_both_ways(napt):
    sent = IP(napt.outbound(udp(R_INNER, H, 6000, 69), "alice", 0.0))
    error = raw(IP(src=H, dst=G_I) / ICMP(type=3, code=3) / raw(sent))  # port unreachable from H
    data, who = napt.inbound(error, 1.0)
    back = assert_checksums_valid(data)
    assert who == "alice" and back.dst == R_INNER
    assert back[IPerror].src == R_INNER and back[UDPerror].sport == 6000
    napt.add_redirect(RedirectRule("udp", 7000, "alice", R_INNER, 7001), 0.0)
    inside, _ = napt.inbound(udp(H, G_I, 9000, 7000), 1.0)
    error = raw(IP(src=R_INNER, dst=H) / ICMP(type=3, code=3) / inside)  # R's answer: port closed
    out = assert_checksums_valid(napt.outbound(error, "alice", 1.0))
    assert out.src == G_I and out[IPerror].dst == G_I and out[UDPerror].dport == 7000


def test_redirection_rule_for_inbound_connections(napt):
    napt.add_redirect(RedirectRule("tcp", 2222, "alice", R_INNER, 22), 0.0)
    data, who = napt.inbound(tcp(H, G_I, 50000, 2222, "S"), 1.0)
    syn = assert_checksums_valid(data)
    assert who == "alice" and (syn.dst, syn[TCP].dport) == (R_INNER, 22)
    synack = assert_checksums_valid(napt.outbound(tcp(R_INNER, H, 22, 50000, "SA"), "alice", 1.1))
    assert (synack.src, synack[TCP].sport) == (G_I, 2222)
    assert napt.inbound(tcp(H, G_I, 50000, 2223, "S"), 1.0) is None  # no rule there
    assert napt.inbound(tcp(H, G_I, 50001, 2222, "S"), 10**6)[1] == "alice"  # static: no timeout
    with pytest.raises(ValueError):
        napt.add_redirect(RedirectRule("tcp", 2222, "bob", R_INNER, 22), 0.0)
    with pytest.raises(ValueError):
        napt.add_redirect(RedirectRule("icmp", 1, "bob", R_INNER, 1), 0.0)
    assert napt.remove_redirect("tcp", 2222) and not napt.remove_redirect("tcp", 2222)
    assert napt.inbound(tcp(H, G_I, 50000, 2222, "S"), 2.0) is None


def test_idle_timeouts_per_protocol():
    t = NaptTimeouts(tcp_established=1000, tcp_transitory=100, tcp_closed=5, udp=30, icmp=10)
    napt = Napt(G_I, timeouts=t)
    u = IP(napt.outbound(udp(R_INNER, H, 1000, 53), "alice", 0.0))
    napt.outbound(ping(R_INNER, H, 5), "alice", 0.0)
    s = IP(napt.outbound(tcp(R_INNER, H, 3000, 80, "S"), "alice", 0.0))
    assert napt.inbound(udp(H, G_I, 53, u[UDP].sport), 29.0) is not None  # refreshes
    assert expired(napt, 39.0) == 1  # icmp (idle 39 > 10); udp idle 10, tcp syn idle 39
    assert napt.inbound(udp(H, G_I, 53, u[UDP].sport), 59.0) is None  # idle 30: gone
    assert napt.drops["no-mapping"] == 1
    napt.inbound(tcp(H, G_I, 80, s[TCP].sport, "SA"), 50.0)
    assert napt.status(50.0).as_dict()["mappings"][0]["state"] == "established"
    assert napt.inbound(tcp(H, G_I, 80, s[TCP].sport, "A"), 1000.0) is not None  # idle 950 < 1000
    napt.outbound(tcp(R_INNER, H, 3000, 80, "FA"), "alice", 1001.0)
    napt.inbound(tcp(H, G_I, 80, s[TCP].sport, "FA"), 1002.0)
    assert napt.status(1002.0).as_dict()["mappings"][0]["state"] == "closing" and napt.status(1002.0).as_dict()["mappings"][0]["expires_in"] == 100
    napt.outbound(tcp(R_INNER, H, 3000, 80, "R"), "alice", 1003.0)
    assert napt.status(1003.0).as_dict()["mappings"][0]["state"] == "closed"
    assert expired(napt, 1008.0) == 1 and len(napt) == 0


def test_timer_deadlines_come_from_the_mappings_without_a_scan():
    """next_deadline is never later than a mapping's real timeout: a refreshed mapping's old deadline
    comes up early, the timer finds it used and queues it at its new one; a RST brings it forward."""
    napt = Napt(G_I, timeouts=NaptTimeouts(udp=30, tcp_closed=5))
    assert napt.next_deadline() is None
    u = IP(napt.outbound(udp(R_INNER, H, 1000, 53), "alice", 0.0))
    assert napt.next_deadline() == 30.0
    napt.inbound(udp(H, G_I, 53, u[UDP].sport), 20.0)
    assert expired(napt, 30.0) == 0 and napt.next_deadline() == 50.0
    s = IP(napt.outbound(tcp(R_INNER, H, 3000, 80, "S"), "alice", 40.0))
    napt.inbound(tcp(H, G_I, 80, s[TCP].sport, "R"), 41.0)
    assert napt.next_deadline() == 46.0 and expired(napt, 46.0) == 1
    assert expired(napt, 50.0) == 1 and napt.next_deadline() is None


def test_unanswered_syn_is_transitory():
    napt = Napt(G_I, timeouts=NaptTimeouts(tcp_transitory=100))
    napt.outbound(tcp(R_INNER, H, 3000, 80, "S"), "alice", 0.0)
    assert expired(napt, 99.0) == 0 and expired(napt, 100.0) == 1


def test_port_exhaustion_and_recovery():
    napt = Napt(G_I, ports=(5000, 5001), timeouts=NaptTimeouts(udp=30))
    for sport in (1, 2):
        assert napt.outbound(udp(R_INNER, H, sport, 53), "alice", 0.0) is not None
    assert napt.outbound(udp(R_INNER, H, 3, 53), "bob", 0.0) is None
    assert napt.drops["ports-exhausted"] == 1
    assert napt.outbound(tcp(R_INNER, H, 3, 80), "bob", 0.0) is not None  # TCP has its own ports
    assert IP(napt.outbound(udp(R_INNER, H, 3, 53), "bob", 31.0))[UDP].sport in (5000, 5001)


def test_address_range_pairs_each_peer_with_one_address():
    napt = Napt("192.168.1.240/30")  # hosts .241 and .242
    a1 = IP(napt.outbound(udp(R_INNER, H, 1, 53), "alice", 0.0)).src
    b1 = IP(napt.outbound(udp(R_INNER, H, 1, 53), "bob", 0.0))
    a2 = IP(napt.outbound(tcp(R_INNER, H, 2, 80), "alice", 0.0)).src
    assert a1 == a2 and {a1, b1.src} == {"192.168.1.241", "192.168.1.242"}
    assert b1[UDP].sport == 1024  # port 1 is outside the range: the first free one
    data, who = napt.inbound(udp(H, b1.src, 53, 1024), 0.0)
    assert who == "bob" and IP(data).dst == R_INNER


def test_address_dependent_filtering():
    napt = Napt(G_I, filtering="address-dependent")
    napt.outbound(udp(R_INNER, H, 2049, 2049), "alice", 0.0)
    assert napt.inbound(udp("192.168.1.21", G_I, 2049, 2049), 0.0) is None  # multi-homed H' answers
    assert napt.drops["filtered"] == 1
    assert napt.inbound(udp(H, G_I, 2049, 2049), 0.0) is not None
    default = Napt(G_I)
    default.outbound(udp(R_INNER, H, 2049, 2049), "alice", 0.0)
    assert default.inbound(udp("192.168.1.21", G_I, 2049, 2049), 0.0) is not None


def test_drop_reasons(napt):
    gre = raw(IP(src=R_INNER, dst=H, proto=47) / (b"\0" * 8))
    fragment = raw(IP(src=R_INNER, dst=H, flags="MF") / UDP(sport=1, dport=2) / (b"x" * 16))
    assert napt.outbound(gre, "alice", 0.0) is None
    assert napt.outbound(fragment, "alice", 0.0) is None
    assert napt.outbound(raw(IP(src=R_INNER, dst=H) / ICMP(type=13)), "alice", 0.0) is None
    assert napt.outbound(udp(R_INNER, H, 1, 2)[:24], "alice", 0.0) is None
    assert napt.outbound(b"\x60" + bytes(40), "alice", 0.0) is None
    assert napt.inbound(udp(H, "192.168.1.99", 1, 2), 0.0) is None
    assert napt.inbound(udp(H, G_I, 1, 2), 0.0) is None
    assert napt.inbound(raw(IP(src=H, dst=G_I) / ICMP(type=3) / b"\x45"), 0.0) is None
    assert napt.status(0.0).as_dict()["drops"] == {"bad-packet": 1, "fragment": 1, "no-mapping": 1, "not-napt-address": 1,
                                    "truncated": 2, "unsupported-icmp": 1, "unsupported-protocol": 1}


def test_table_is_json_and_forget_peer(napt):
    napt.outbound(udp(R_INNER, H, 1, 53), "alice", 0.0)
    napt.outbound(udp(R_INNER, H, 1, 53), "bob", 0.0)
    napt.add_redirect(RedirectRule("tcp", 2222, "alice", R_INNER, 22), 0.0)
    table = json.loads(json.dumps(napt.status(5.0).as_dict()["mappings"]))
    assert {(r["proto"], r["peer"], r["inner"], r["static"]) for r in table} == {
        ("udp", "alice", "10.0.0.2:1", False), ("udp", "bob", "10.0.0.2:1", False),
        ("tcp", "alice", "10.0.0.2:22", True)}
    assert napt.forget_peer("alice") == 1 and len(napt) == 2
    assert napt.forget_peer("alice", keep_static=False) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_never_raises(data):
    napt = Napt(G_I)
    napt.outbound(data, "alice", 0.0)
    napt.inbound(data, 0.0)
    # the same bytes behind a plausible header
    header = bytearray(raw(IP(src=H, dst=G_I, proto=(1, 6, 17)[data[0] % 3] if data else 1)))
    body = header + data
    body[2:4] = len(body).to_bytes(2, "big")
    napt.inbound(bytes(body), 0.0)
    napt.outbound(bytes(body), "alice", 0.0)


def test_presence_picks_the_translation_by_destination_and_answers_come_back_through_it():
    """draft-gupta Appendix A with Internet access: toward the intranet the source becomes G_i,
    elsewhere G_e; an answer to G_e goes back through the G_e mapping; one timer for both."""
    from nodes.ipsec.napt_presence import NaptPresence
    from ipaddress import IPv4Network
    g_e, web = "203.0.113.70", "198.51.100.10"
    presence = NaptPresence(Napt(G_I, timeouts=NaptTimeouts(udp=30)), Napt(g_e, timeouts=NaptTimeouts(udp=20)),
                            [IPv4Network("192.168.0.0/16")], g_e)
    to_h = IP(presence.outbound(udp(R_INNER, H, 1000, 53), "alice", 0.0))
    to_web = IP(presence.outbound(udp(R_INNER, web, 1001, 53), "alice", 0.0))
    assert (to_h.src, to_web.src) == (G_I, g_e)
    back, peer = presence.inbound(udp(web, g_e, 53, to_web[UDP].sport), 1.0)
    assert peer == "alice" and IP(back).dst == R_INNER and IP(back)[UDP].dport == 1001
    assert presence.next_deadline() == 20.0
    presence.handle_timer(21.0)
    assert presence.inbound(udp(web, g_e, 53, to_web[UDP].sport), 22.0) is None
    assert presence.inbound(udp(H, G_I, 53, to_h[UDP].sport), 22.0) is not None
