"""The NAPT's ALGs (nodes/ipsec/alg.py) in the NAPT core (AlgNapt, the hook the gateway wires):
FTP PORT/EPRT/227/229 rewriting with sequence and acknowledgement shifts (segment boundaries,
retransmissions, a command split across two segments, SACK), SIP/SDP rewriting; every packet
checked by scapy (checksums, lengths)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from nodes.ipsec.alg import AlgNapt, NaptAlgs
from nodes.ipsec.napt import RedirectRule

G_I, H, R = "10.1.0.1", "10.1.2.10", "100.64.0.2"
PEER = "alice"
ISN_R, ISN_H = 1_000_000, 5_000_000


def checked(data: bytes) -> IP:
    """scapy's view of a packet whose lengths and checksums scapy itself agrees with."""
    pkt = IP(data)
    assert pkt.len == len(data)
    fresh = pkt.copy()
    del fresh.chksum, fresh.len
    l4 = TCP if pkt.haslayer(TCP) else UDP
    del fresh[l4].chksum
    if l4 is UDP:
        del fresh[UDP].len
    again = IP(bytes(fresh))
    assert (pkt.chksum, pkt[l4].chksum) == (again.chksum, again[l4].chksum), "checksums"
    return pkt


class Ftp:
    """A control connection R:40000 -> H:21 through the NAPT, sequence numbers tracked by hand."""

    def __init__(self, napt=None, algs=("ftp",)):
        self.napt = napt or AlgNapt(G_I, ports=(61000, 61999), alg=NaptAlgs(algs))
        self.seq_r, self.seq_h = ISN_R + 1, ISN_H + 1
        syn = self.napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=40000, dport=21, flags="S", seq=ISN_R)), PEER, 0)
        self.ext_port = checked(syn)[TCP].sport
        back = self.napt.inbound(bytes(IP(src=H, dst=G_I) / TCP(sport=21, dport=self.ext_port, flags="SA",
                                                                   seq=ISN_H, ack=ISN_R + 1)), 0)
        assert back is not None

    def r_sends(self, text: bytes, seq: int | None = None, advance: bool = True):
        seq = self.seq_r if seq is None else seq
        out = self.napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=40000, dport=21, flags="PA", seq=seq,
                                                                  ack=self.seq_h) / Raw(text)), PEER, 1)
        if advance:
            self.seq_r = seq + len(text)
        return None if out is None else checked(out)

    def h_acks(self, ack: int, options=()):
        got = self.napt.inbound(bytes(IP(src=H, dst=G_I) / TCP(sport=21, dport=self.ext_port, flags="A", seq=self.seq_h,
                                                                   ack=ack, options=list(options))), 2)
        assert got is not None
        pkt, peer = got
        assert peer == PEER
        return checked(pkt)


def port_cmd(addr: str, port: int, verb=b"PORT") -> bytes:
    return verb + b" " + ",".join(addr.split(".") + [str(port >> 8), str(port & 0xFF)]).encode() + b"\r\n"


def test_port_rewritten_and_data_connection_mapped():
    f = Ftp()
    f.r_sends(b"USER anonymous\r\n")
    p = f.r_sends(port_cmd(R, 51210))
    text = bytes(p[Raw].load)
    assert text.startswith(b"PORT 10,1,0,1,") and text.endswith(b"\r\n"), text
    ext_port = int(text.split(b",")[4]) * 256 + int(text.split(b",")[5])
    assert p[TCP].seq == ISN_R + 1 + len(b"USER anonymous\r\n")  # before the rewrite: unshifted
    # H opens the data connection to what it was told: it reaches R's port 51210 through the tunnel
    got = f.napt.inbound(bytes(IP(src=H, dst=G_I) / TCP(sport=20, dport=ext_port, flags="S", seq=9)), 3)
    assert got is not None, f.napt.drop_counters()
    data_syn, peer = got
    assert peer == PEER and (IP(data_syn).dst, IP(data_syn)[TCP].dport) == (R, 51210)
    assert f.napt.alg.status()["rewrites"] == {"ftp-port": 1}


def test_sequence_and_ack_shift_after_a_length_change():
    f = Ftp()
    orig = port_cmd(R, 51210)
    p = f.r_sends(orig)
    delta = len(p[Raw].load) - len(orig)
    assert delta != 0
    nxt = f.r_sends(b"RETR file.bin\r\n")
    assert nxt[TCP].seq == f.seq_r - len(b"RETR file.bin\r\n") + delta, "later segments are shifted"
    assert bytes(nxt[Raw].load) == b"RETR file.bin\r\n"
    # H acknowledges everything in its numbering; R gets its own back
    assert f.h_acks(f.seq_r + delta)[TCP].ack == f.seq_r
    # an ack that ends before the PORT line is unchanged
    assert f.h_acks(ISN_R + 1)[TCP].ack == ISN_R + 1


def test_sack_blocks_are_shifted_back():
    f = Ftp()
    p = f.r_sends(port_cmd(R, 51210))
    delta = len(p[Raw].load) - len(port_cmd(R, 51210))
    a = f.seq_r
    f.r_sends(b"NOOP\r\n")
    b = f.seq_r
    f.r_sends(b"NOOP\r\n")
    pkt = f.h_acks(a + delta, options=[("SAck", (b + delta, f.seq_r + delta))])
    assert pkt[TCP].ack == a
    sack = dict(pkt[TCP].options)["SAck"]
    assert tuple(sack) == (b, f.seq_r)


def test_retransmission_rewritten_identically():
    f = Ftp()
    f.r_sends(b"USER anonymous\r\n")
    seq = f.seq_r
    first = f.r_sends(port_cmd(R, 51210))
    f.r_sends(b"LIST\r\n")
    again = f.r_sends(port_cmd(R, 51210), seq=seq, advance=False)
    assert (again[TCP].seq, bytes(again[Raw].load)) == (first[TCP].seq, bytes(first[Raw].load))
    assert f.napt.alg.status()["rewrites"] == {"ftp-port": 1}, "a retransmission is not a second rewrite"
    delta = len(first[Raw].load) - len(port_cmd(R, 51210))
    assert f.h_acks(f.seq_r + delta)[TCP].ack == f.seq_r


def test_command_split_across_two_segments():
    f = Ftp()
    f.r_sends(b"TYPE I\r\n")
    cmd = port_cmd(R, 51210)
    seq = f.seq_r
    assert f.r_sends(cmd[:9]) is None, "the first half of a PORT line is held back"
    whole = f.r_sends(cmd[9:])
    assert whole[TCP].seq == seq and bytes(whole[Raw].load).startswith(b"PORT 10,1,0,1,")
    assert bytes(whole[Raw].load).endswith(b"\r\n")
    delta = len(whole[Raw].load) - len(cmd)
    assert f.r_sends(b"LIST\r\n")[TCP].seq == f.seq_r - 6 + delta


def test_split_command_sent_again_whole_by_the_sender():
    """Nagle: the sender waits for an ack of the first half, then retransmits both halves as one."""
    f = Ftp()
    cmd = port_cmd(R, 51210)
    seq = f.seq_r
    assert f.r_sends(cmd[:12]) is None
    assert f.r_sends(cmd[:12], seq=seq, advance=False) is None, "the same half again: still held"
    whole = f.r_sends(cmd, seq=seq)
    assert whole[TCP].seq == seq and bytes(whole[Raw].load).startswith(b"PORT 10,1,0,1,")


def test_segment_with_several_lines_and_a_rewrite_in_the_middle():
    f = Ftp()
    lines = b"TYPE I\r\n" + port_cmd(R, 51210) + b"RETR x\r\n"
    p = f.r_sends(lines)
    text = bytes(p[Raw].load)
    assert text.startswith(b"TYPE I\r\nPORT 10,1,0,1,") and text.endswith(b"\r\nRETR x\r\n"), text


def test_retransmission_starting_inside_the_rewritten_line_carries_it_whole():
    f = Ftp()
    seq = f.seq_r
    cmd = port_cmd(R, 51210)
    first = f.r_sends(cmd + b"LIST\r\n")
    part = f.r_sends((cmd + b"LIST\r\n")[6:], seq=seq + 6, advance=False)
    assert part[TCP].seq == first[TCP].seq and bytes(part[Raw].load) == bytes(first[Raw].load)


def test_eprt_rewritten_and_third_party_port_left_alone():
    f = Ftp()
    p = f.r_sends(b"EPRT |1|" + R.encode() + b"|51210|\r\n")
    assert bytes(p[Raw].load).startswith(b"EPRT |1|10.1.0.1|"), p[Raw].load
    other = port_cmd("192.0.2.7", 51210)
    assert bytes(f.r_sends(other)[Raw].load) == other
    assert f.napt.alg.status()["rewrites"] == {"ftp-eprt": 1}


def test_server_inside_pasv_and_epsv_replies():
    """An FTP server on R reached through a redirection rule (G_i:2121 -> R:21): its 227 and 229
    replies name R's inner address and ports, rewritten to G_i and mapped ports."""
    napt = AlgNapt(G_I, ports=(61000, 61999), alg=NaptAlgs(["ftp"]))
    napt.add_redirect(RedirectRule("tcp", 61021, PEER, R, 21), 0)
    syn = napt.inbound(bytes(IP(src=H, dst=G_I) / TCP(sport=45000, dport=61021, flags="S", seq=ISN_H)), 0)
    assert syn is not None
    reply = napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=21, dport=45000, flags="SA", seq=ISN_R, ack=ISN_H + 1)), PEER, 0)
    assert reply is not None
    pasv = checked(napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=21, dport=45000, flags="PA", seq=ISN_R + 1) /
                                     b"227 Entering Passive Mode (100,64,0,2,117,48).\r\n"), PEER, 1))
    assert bytes(pasv[Raw].load).startswith(b"227 Entering Passive Mode (10,1,0,1,"), pasv[Raw].load
    epsv = checked(napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=21, dport=45000, flags="PA", seq=ISN_R + 49) /
                                     b"229 Entering Extended Passive Mode (|||30001|)\r\n"), PEER, 1))
    port = int(bytes(epsv[Raw].load).split(b"|||")[1].split(b"|")[0])
    got = napt.inbound(bytes(IP(src=H, dst=G_I) / TCP(sport=45001, dport=port, flags="S")), 2)
    assert got is not None and IP(got[0])[TCP].dport == 30001


def test_alg_off_leaves_the_payload_alone():
    f = Ftp(algs=())
    cmd = port_cmd(R, 51210)
    assert bytes(f.r_sends(cmd)[Raw].load) == cmd
    with pytest.raises(ValueError, match="unknown ALG 'irc'"):
        NaptAlgs(["irc"])


SDP = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 100.64.0.2\r\ns=-\r\nc=IN IP4 100.64.0.2\r\n"
       b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
INVITE = (b"INVITE sip:service@10.1.2.10:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 100.64.0.2:5060;branch=z9hG4bK-1\r\n"
          b"From: sipp <sip:sipp@100.64.0.2:5060>;tag=1\r\nTo: <sip:service@10.1.2.10:5060>\r\n"
          b"Call-ID: 1-1@100.64.0.2\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@100.64.0.2:5060\r\n"
          b"Content-Type: application/sdp\r\nContent-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def test_sip_invite_sdp_rewritten_and_media_mapped():
    napt = AlgNapt(G_I, ports=(61000, 61999), alg=NaptAlgs(["sip"]))
    out = checked(napt.outbound(bytes(IP(src=R, dst=H) / UDP(sport=5060, dport=5060) / INVITE), PEER, 0))
    msg = bytes(out[Raw].load)
    assert b"Call-ID: 1-1@100.64.0.2\r\n" in msg, "the dialog's name is not an address to translate"
    assert msg.count(b"100.64.0.2") == 1, msg
    sig_port = out[UDP].sport
    assert f"Via: SIP/2.0/UDP {G_I}:{sig_port};".encode() in msg
    head, body = msg.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head
    assert f"c=IN IP4 {G_I}".encode() in body
    media = int(body.split(b"m=audio ")[1].split()[0])
    # H's RTP to the announced port reaches R's port 6000
    got = napt.inbound(bytes(IP(src=H, dst=G_I) / UDP(sport=7000, dport=media) / b"rtp"), 1)
    assert got is not None and IP(got[0])[UDP].dport == 6000 and got[1] == PEER
    # H's answer names G_i:port in Via and To; R gets its own address back there
    answer = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {G_I}:{sig_port};branch=z9hG4bK-1\r\n"
              f"From: <sip:sipp@{G_I}:{sig_port}>;tag=1\r\nCall-ID: 1-1@100.64.0.2\r\nCSeq: 1 INVITE\r\n"
              f"Content-Length: 0\r\n\r\n").encode()
    got = napt.inbound(bytes(IP(src=H, dst=G_I) / UDP(sport=5060, dport=sig_port) / answer), 1)
    back = checked(got[0])
    assert back[UDP].dport == 5060 and b"Via: SIP/2.0/UDP 100.64.0.2:5060;" in bytes(back[Raw].load)
    assert b"From: <sip:sipp@100.64.0.2:5060>" in bytes(back[Raw].load)
    assert napt.alg.status()["rewrites"] == {"sip": 1, "sip-in": 1, "sip-media": 1}


def test_other_protocols_untouched():
    napt = AlgNapt(G_I, alg=NaptAlgs())
    pkt = bytes(IP(src=R, dst=H) / UDP(sport=4000, dport=53) / b"100.64.0.2")
    out = napt.outbound(pkt, PEER, 0)
    assert bytes(IP(out)[Raw].load) == b"100.64.0.2"


STREAM = (b"USER anonymous\r\nTYPE I\r\n" + port_cmd(R, 51210) + b"RETR a.bin\r\n"
          + b"EPRT |1|" + R.encode() + b"|51211|\r\n" + b"LIST\r\n" + port_cmd("192.0.2.7", 4000) + b"QUIT\r\n")


def _whole_rewritten() -> bytes:
    f = Ftp()
    return bytes(f.r_sends(STREAM)[Raw].load)


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(1, len(STREAM) - 1), max_size=12, unique=True),
       resend=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=6))
def test_any_segmentation_and_retransmission_gives_h_the_rewritten_stream(cuts, resend):
    """The control stream cut anywhere, earlier segments sent again (alone or collapsed with their
    neighbours): what reaches H, put together by sequence number, is the stream rewritten as a
    whole, every byte consistent; H's final ack comes back as R's own."""
    expected = _whole_rewritten()
    f = Ftp()
    bounds = [0, *sorted(cuts), len(STREAM)]
    segments = list(zip(bounds, bounds[1:]))
    got: dict[int, int] = {}

    def deliver(pkt):
        if pkt is None:
            return
        at = pkt[TCP].seq - (ISN_R + 1)
        for i, b in enumerate(bytes(pkt[Raw].load)):
            assert got.setdefault(at + i, b) == b, f"byte {at + i} sent twice with different values"

    for n, (a, b) in enumerate(segments):
        deliver(f.r_sends(STREAM[a:b], seq=ISN_R + 1 + a))
        for i, j in resend:
            if i <= j < n:  # segments i..j again, collapsed into one (Linux retransmits that way)
                deliver(f.r_sends(STREAM[segments[i][0]:segments[j][1]], seq=ISN_R + 1 + segments[i][0], advance=False))
    assert bytes(got.get(i, -1) for i in range(len(expected))) == expected and len(got) == len(expected)
    assert f.h_acks(ISN_R + 1 + len(expected))[TCP].ack == ISN_R + 1 + len(STREAM)


def test_data_after_a_gap_is_dropped_until_what_precedes_it_came():
    f = Ftp()
    seq = f.seq_r
    assert f.r_sends(b"LIST\r\n", seq=seq + 20, advance=False) is None
    assert f.napt.alg.status()["drops"] == {"ftp-out-of-order": 1}
    assert f.r_sends(b"x" * 18 + b"\r\n", seq=seq)[TCP].seq == seq
    assert f.r_sends(b"LIST\r\n", seq=seq + 20)[TCP].seq == seq + 20


def test_connection_seen_from_its_middle():
    """A gateway that restarted meets a control connection without its SYN: numbering starts at
    the first byte seen, and a retransmission of something older passes as it is."""
    napt = AlgNapt(G_I, ports=(61000, 61999), alg=NaptAlgs(["ftp"]))
    first = napt.outbound(bytes(IP(src=R, dst=H) / TCP(sport=40001, dport=21, flags="PA", seq=7000) /
                                port_cmd(R, 51210)), PEER, 0)
    assert bytes(IP(first)[Raw].load).startswith(b"PORT 10,1,0,1,") and IP(first)[TCP].seq == 7000
    older = bytes(IP(src=R, dst=H) / TCP(sport=40001, dport=21, flags="PA", seq=6990) / b"NOOP\r\n")
    assert bytes(IP(napt.outbound(older, PEER, 1))[Raw].load) == b"NOOP\r\n"
