"""UDP encapsulation of IKE and ESP (RFC 3948) and NAT traversal (RFC 7296 section 2.23) at the gateway
under test. The tester forces a NAT on the path as the IUT sees it: its NAT_DETECTION hashes in
IKE_SA_INIT are computed over other ports (`sa_init_request(nat_wrong=True)`), and, as an initiator
behind a NAT must, it moves IKE to port 4500 (non-ESP marker) and sends ESP UDP-encapsulated on 4500.

Acceptance of ESP is judged through the tunnel (an ICMP echo to the inside host H, its reply through
the IUT's ESP); what the IUT sends is judged on the tester's sockets: 500, 4500, raw ESP (protocol 50),
a raw UDP socket where the UDP header matters (the checksum), and a socket on another port where the
tester plays a NAT that changed its mapping.
"""
from __future__ import annotations

import itertools
import select
import socket
import struct
import time

from testbed.conformance import netns
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.crypto import nat_detection_hash
from testbed.conformance.ike.parse import parse_message
from testbed.conformance.ike.session import ChildAlgorithms
from testbed.conformance.ike.transport import LogEntry, classify_udp4500
from testbed.conformance.parts import inconclusive, part, should

DROP = 0.5
OK = 2.0
NEEDS = ["ikev2.nat-t", "esp.aes-gcm-16"]
GCM = ChildAlgorithms(c.ENCR_AES_GCM_16, 128)

_IDENTS = itertools.count(0x6100)


# ---------------------------------------------------------------------------------------------- helpers

def where(r) -> str:
    if r is None:
        return "nothing"
    return "IP protocol 50" if r.sport == 0 else f"UDP {r.src}:{r.sport} -> tester:{r.dport} ({r.kind})"


def is_response(s, mid: int | None = None):
    """A match for the IUT's IKE response on session `s`: on 500, on 4500 with the marker ('ike'),
    or on 4500 without it (then classified 'esp', still parsed as IKE here)."""
    def match(r) -> bool:
        if r.kind not in ("ike", "esp") or r.sport == 0:
            return False
        h = parse_message(r.data)
        return h.spi_i == s.spi_i and h.response and (mid is None or h.message_id == mid)
    return match


def ike_auth(ike, s, steps):
    """IKE_AUTH on the tester's current IKE port; (its response as received, parsed) or INCONCLUSIVE."""
    data = s.auth_request(psk=ike.peer.psk, idi=ike.peer.identity)
    ike.send(data)
    r = ike.receive(is_response(s, 1), OK)
    if r is None:
        inconclusive(f"no answer to IKE_AUTH sent on port {ike.ike_port}")
    msg = s.handle_auth_response(r.data, psk=ike.peer.psk)
    steps.record(f"IKE_AUTH on port {ike.ike_port}", "a child SA", f"{msg.summary()} via {where(r)}")
    if not s.children or not s.peer_auth_ok:
        inconclusive(f"IKE_AUTH did not establish a child SA: {msg.summary()}")
    return r, msg


def source_only_wrong(s) -> dict:
    """init() keywords for NAT_DETECTION notifies where only the SOURCE hash is wrong (the tester
    behind a NAT, the IUT not)."""
    wrong = nat_detection_hash(s.spi_i, bytes(8), s.local[0], 1024)
    return {"nat_detection": False,
            "extra": [m.notify(c.N_NAT_DETECTION_SOURCE_IP, wrong), s.nat_notifies(bytes(8))[1]]}


def establish_nat(ike, steps, algs: ChildAlgorithms = GCM, wrong: str = "both"):
    """IKE_SA_INIT with wrong NAT_DETECTION hashes (`wrong`: "both", the IUT sees a NAT on either side;
    "source": only the tester is behind a NAT), then, as an initiator behind a NAT, IKE_AUTH on 4500
    and ESP in UDP on 4500. (session, child, the IKE_AUTH response as received)."""
    s = ike.session(child_algs=ChildAlgorithms(**vars(algs)))
    kw = {"nat_wrong": True} if wrong == "both" else source_only_wrong(s)
    s, resp = ike.init(s, **kw)
    what = "both hashes of other ports" if wrong == "both" else "a NAT_DETECTION_SOURCE_IP of another port"
    steps.record(f"IKE_SA_INIT on 500 with {what} (a NAT as the IUT sees it)", "an IKE_SA_INIT response",
                 resp.summary())
    src = resp.notify(c.N_NAT_DETECTION_SOURCE_IP)
    s.iut_behind_nat = src is not None and src.fields["data"] != nat_detection_hash(
        s.spi_i, s.spi_r, ike.peer.gateway, c.IKE_PORT)  # what the IUT's own hash claims
    # the tester faked a NAT, so it behaves as an initiator behind one: all IKE and ESP on 4500
    ike.nat, ike.ike_port = True, c.NAT_T_PORT
    r, _ = ike_auth(ike, s, steps)
    return s, s.children[-1], r


def not_behind_nat(s, steps) -> None:
    """2.23's SHOULD to follow a new port binds a host not behind a NAT: INCONCLUSIVE when the IUT's
    NAT_DETECTION_SOURCE_IP says it is behind one (then 2.23's SHOULD NOT applies, UDPENC.SGW.FOLLOW.5)."""
    steps.record("the IUT's NAT_DETECTION_SOURCE_IP", "its own address and port 500 (not behind a NAT)",
                 "mismatch: it says it is behind a NAT" if s.iut_behind_nat else "match")
    if s.iut_behind_nat:
        inconclusive("the IUT's NAT_DETECTION_SOURCE_IP says it is behind a NAT: it SHOULD NOT follow a new port")


def echo(ike, s, ident: int, seq: int, size: int = 44) -> bytes:
    from scapy.layers.inet import ICMP, IP
    src = s.virtual_ip[0] if s.virtual_ip else ike.peer.local
    return bytes(IP(src=src, dst=ike.peer.inside_host) / ICMP(type=8, id=ident, seq=seq & 0xFFFF) /
                 (b"conformance-" * 4)[:size])


def esp_echo(ike, s, seq: int) -> tuple[int, bytes]:
    """(ICMP ident, an ESP packet with an echo to H, sequence number `seq`)."""
    ident = next(_IDENTS)
    return ident, s.children[-1].esp_out().seal(echo(ike, s, ident, seq), c.IPPROTO_IPIP, seq=seq)


def reply_match(s, ident: int, raw: bool = False):
    """A match for the IUT's ESP carrying the echo reply `ident`: on a Received (or, with `raw`, on
    (kind, data) as Mapping.recv gives)."""
    inbound = s.children[-1].esp_in()

    def check(kind: str, data: bytes) -> bool:
        if kind != "esp":
            return False
        p = inbound.open(data)
        if not p.ok or len(p.payload) < 28 or p.payload[0] >> 4 != 4:
            return False
        ihl = (p.payload[0] & 0x0F) * 4
        return (p.payload[9] == 1 and p.payload[ihl] == 0
                and struct.unpack("!H", p.payload[ihl + 4:ihl + 6])[0] == ident)
    return check if raw else (lambda r: check(r.kind, r.data))


def collect(ike, want, timeout: float):
    """(the first received datagram for which want() holds or None, everything received meanwhile)."""
    seen = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        r = ike.transport.recv(left)
        if r is None:
            break
        seen.append(r)
        if want(r):
            return r, seen
    return None, seen


def bare_esp(ike):
    """A `send` for `IkeTester.ping`: ESP as IP protocol 50, whatever NAT the tester detected."""
    return lambda p: ike.transport.send(p, ike.peer.gateway, 0, src_port=0, kind="esp")


def encapsulated_esp(ike):
    """A `send` for `IkeTester.ping`: ESP in UDP 4500 -> 4500, whatever NAT the tester detected."""
    return lambda p: ike.transport.send(p, ike.peer.gateway, c.NAT_T_PORT, src_port=c.NAT_T_PORT, kind="esp")


def precondition(ike, s, steps, seq: int = 1) -> None:
    r = ike.ping(s, seq=seq, tries=1, timeout=OK).reply
    steps.record(f"ESP seq {seq} (UDP 4500) carrying an ICMP echo to H", "the echo reply", where(r), ok=r is not None)
    if r is None:
        inconclusive("no echo reply through the UDP-encapsulated child SA")


def assert_alive(ike, s, steps, seq: int, after: str) -> None:
    r = ike.ping(s, seq=seq, tries=1, timeout=OK).reply
    steps.record(f"ESP seq {seq} (valid) carrying an ICMP echo to H", "the echo reply", where(r), ok=r is not None)
    assert r is not None, f"no echo reply to a valid ESP packet after {after}: the SA stopped carrying data"


def assert_ike_alive(ike, s, steps, after: str) -> None:
    resp = ike.exchange(s, s.informational_request())
    steps.record("an empty INFORMATIONAL on 4500", "answered", resp.summary() if resp else "no answer",
                 ok=resp is not None)
    assert resp is not None, f"the IKE SA no longer answers an empty INFORMATIONAL after {after}"


def udp_raw_send(ike, payload: bytes, sport: int, dport: int, checksum: int | None) -> bytes:
    """A UDP datagram with exact header fields from the tester's address (IP_HDRINCL raw socket):
    `checksum` None lets scapy compute it. Logged in the transcript. Returns the UDP header."""
    from scapy.layers.inet import IP, UDP
    udp = UDP(sport=sport, dport=dport) if checksum is None else UDP(sport=sport, dport=dport, chksum=checksum)
    pkt = bytes(IP(src=ike.peer.local, dst=ike.peer.gateway) / udp / payload)
    rs = netns.raw_socket(ike.peer.node_pid, socket.IPPROTO_RAW, header_included=True)
    try:
        rs.sendto(pkt, (ike.peer.gateway, 0))
    finally:
        rs.close()
    ike.transport.log.append(LogEntry("sent", time.time(), "esp", sport, ike.peer.gateway, dport, payload))
    return pkt[20:28]


def udp_checksum(src: str, dst: str, udp: bytes) -> int:
    """The UDP checksum of `udp` (header with its checksum field zeroed, plus data), RFC 768."""
    data = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, len(udp))
    data += udp[:6] + b"\0\0" + udp[8:]
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    value = ~total & 0xFFFF
    return value or 0xFFFF


def pseudo_sum(src: str, dst: str, udp: bytes) -> int:
    """The folded pseudo-header sum a stack leaves in the checksum field for checksum offload."""
    data = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, len(udp))
    total = sum(struct.unpack("!6H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class Mapping:
    """The tester behind a NAT that gave it another port: a UDP socket on an ephemeral port in the
    tester's node, talking to the IUT's 4500 (IKE with the marker, ESP bare); logged in the transcript."""

    def __init__(self, ike):
        self.ike = ike
        self.sock = netns.udp_socket(ike.peer.node_pid, "0.0.0.0", 0, reuse=False)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, (self.ike.peer.gateway, c.NAT_T_PORT))
        self.ike.transport.log.append(LogEntry("sent", time.time(), "raw", self.port, self.ike.peer.gateway,
                                               c.NAT_T_PORT, payload))

    def send_ike(self, data: bytes) -> None:
        self.send(c.NON_ESP_MARKER + data)

    def recv(self, want, timeout: float):
        """The first datagram on this socket, classified like 4500 (kind, data, sport), for which
        want(kind, data) holds; None after `timeout`."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            raw, addr = self.sock.recvfrom(65535)
            self.ike.transport.log.append(LogEntry("received", time.time(), "raw", self.port, addr[0], addr[1], raw))
            kind, data = classify_udp4500(raw)
            if want(kind, data):
                return kind, data, addr[1]
        return None


# ---------------------------------------------------------------------------------------------- ports

@part("UDPENC.SGW.PORT.1", "After a NAT is detected, IKE_AUTH on 4500 with the non-ESP marker is answered "
      "from 4500 to 4500 with the marker", ["rfc7296-2.23-b", "rfc7296-2.23-a"], needs=NEEDS)
def test_ike_moves_to_4500(ike, steps):
    _, _, r = establish_nat(ike, steps)
    ok = r.sport == c.NAT_T_PORT and r.dport == c.NAT_T_PORT and r.raw[:4] == c.NON_ESP_MARKER
    steps.record("the IKE_AUTH response as received", "UDP 4500 -> 4500, payload starting with 4 zero bytes",
                 f"{where(r)}, first bytes {r.raw[:4].hex()}", ok=ok)
    assert r.dport == c.NAT_T_PORT, f"the IKE_AUTH response came to the tester's port {r.dport}, not 4500"
    assert r.sport == c.NAT_T_PORT, f"the IKE_AUTH response came from port {r.sport}, not 4500"
    assert r.raw[:4] == c.NON_ESP_MARKER, f"the IKE_AUTH response on 4500 lacks the non-ESP marker: {r.raw[:8].hex()}"


@part("UDPENC.SGW.PORT.2", "After the move to 4500, an IKE request from port 500 is still answered, to port 500",
      ["rfc7296-2.23-a"], needs=NEEDS)
def test_request_from_500_answered_to_500(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    data = s.informational_request()
    ike.send(data, port=c.IKE_PORT)
    r = ike.receive(is_response(s, 2), OK)
    steps.record("an empty INFORMATIONAL from port 500 to 500 (IKE SA on 4500)",
                 "the response, sent to the port the request came from (500)", where(r), ok=r is not None and r.dport == 500)
    assert r is not None, "no answer to an IKE request that came from port 500"
    assert r.dport == c.IKE_PORT, f"the response went to the tester's port {r.dport}, not 500 where the request came from"


@part("UDPENC.SGW.PORT.3", "An IKE_SA_INIT sent to 4500 (with the non-ESP marker) from the start is answered on 4500",
      ["rfc7296-2.23-a"], needs=NEEDS)
def test_sa_init_on_4500(ike, steps):
    s = ike.session()
    s.local, s.peer = (ike.peer.local, c.NAT_T_PORT), (ike.peer.gateway, c.NAT_T_PORT)
    ike.send(s.sa_init_request(), port=c.NAT_T_PORT)
    r = ike.receive(is_response(s, 0), OK)
    msg = parse_message(r.data) if r is not None else None
    steps.record("IKE_SA_INIT from 4500 to 4500 with the marker (hashes of port 4500)",
                 "an IKE_SA_INIT response from 4500 to 4500 with the marker",
                 f"{msg.summary() if msg else 'no answer'} via {where(r)}")
    assert r is not None, "no answer to an IKE_SA_INIT sent on port 4500"
    assert r.kind == "ike" and r.dport == c.NAT_T_PORT, f"the response did not come on 4500 with the marker: {where(r)}"
    assert msg.get(c.SA) is not None or msg.notify(c.N_COOKIE) is not None, f"not a usable response: {msg.summary()}"


# ---------------------------------------------------------------------------------------------- encapsulation

@part("UDPENC.SGW.ENCAP.1", "With a NAT detected, the IUT sends its ESP UDP-encapsulated from 4500 to 4500",
      ["rfc7296-2.23-e", "rfc7296-2.23-b", "rfc3948-2.1-a"], needs=NEEDS)
def test_iut_esp_encapsulated(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    got = ike.ping(s, seq=1, tries=1, timeout=OK)
    r, seen = got.reply, got.seen
    plain = [x for x in seen if x.kind == "esp" and x.sport == 0]
    steps.record("ESP seq 1 in UDP 4500 carrying an echo to H", "the reply in ESP inside UDP 4500 -> 4500, no bare ESP",
                 f"reply via {where(r)}; bare ESP packets: {len(plain)}",
                 ok=r is not None and r.sport == r.dport == c.NAT_T_PORT and not plain)
    if r is None and not plain:
        inconclusive("no echo reply at all through the UDP-encapsulated child SA")
    assert r is not None and r.sport != 0, "the IUT's ESP came unencapsulated (IP protocol 50) although a NAT was detected"
    assert r.sport == c.NAT_T_PORT and r.dport == c.NAT_T_PORT, \
        f"the IUT's UDP-encapsulated ESP: {where(r)}, not 4500 -> 4500"
    assert not plain, f"the IUT also sent {len(plain)} bare ESP packets"


@part("UDPENC.SGW.ENCAP.2", "The UDP checksum of the IUT's UDP-encapsulated ESP is zero or correct",
      ["rfc3948-2.1-a"], needs=NEEDS)
def test_iut_udp_checksum(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    rs = netns.raw_socket(ike.peer.node_pid, socket.IPPROTO_UDP)
    try:
        r = ike.ping(s, seq=1, tries=1, timeout=OK).reply
        time.sleep(0.05)
        rs.setblocking(False)
        headers = []
        while True:
            try:
                raw, _ = rs.recvfrom(65535)
            except BlockingIOError:
                break
            ihl = (raw[0] & 0x0F) * 4
            src, dst, udp = socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20]), raw[ihl:]
            sport, dport, _, _ = struct.unpack("!HHHH", udp[:8])
            if src == ike.peer.gateway and sport == c.NAT_T_PORT and len(udp) > 12 and udp[8:12] != c.NON_ESP_MARKER:
                headers.append((src, dst, udp))
    finally:
        rs.close()
    if r is None or not headers:
        inconclusive("no UDP-encapsulated ESP from the IUT to judge")
    # On the testbed's virtual links a checksum the sender's stack leaves to offload (CHECKSUM_PARTIAL)
    # arrives holding only the pseudo-header sum: a computed checksum, completed by the NIC on a wire.
    found = [(struct.unpack("!H", u[6:8])[0], udp_checksum(a, b, u), pseudo_sum(a, b, u)) for a, b, u in headers]
    steps.record("UDP checksums of the IUT's UDP-encapsulated ESP (raw UDP socket)",
                 "0 (not computed) or the correct checksum (or its offload seed, the pseudo-header sum)",
                 [f"{got:04x} (correct {want:04x}, offload seed {seed:04x})" for got, want, seed in found],
                 ok=all(g in (0, w, s) for g, w, s in found))
    bad = [f"{g:04x} instead of {w:04x}" for g, w, s in found if g not in (0, w, s)]
    assert not bad, f"the IUT's UDP checksum is neither zero nor correct: {bad}"


@part("UDPENC.SGW.ENCAP.3", "The IUT's UDP-encapsulated ESP carries the negotiated, non-zero SPI",
      ["rfc3948-2.1-b", "rfc3948-1-c"], needs=NEEDS)
def test_iut_encapsulated_spi(ike, steps):
    s, child, _ = establish_nat(ike, steps)
    seen = ike.ping(s, seq=1, tries=1, timeout=OK).seen
    spis = sorted({int.from_bytes(x.data[:4], "big") for x in seen if x.kind == "esp" and x.sport == c.NAT_T_PORT})
    want = int.from_bytes(child.spi_in, "big")
    steps.record("SPIs of the UDP-encapsulated ESP from the IUT", f"{want:08x} (the tester's, from IKE_AUTH)",
                 [f"{x:08x}" for x in spis], ok=spis == [want])
    if not spis:
        inconclusive("no UDP-encapsulated ESP from the IUT")
    assert 0 not in spis, "the IUT sent UDP-encapsulated ESP with SPI 0 (it would read as an IKE marker)"
    assert spis == [want], f"SPIs {[f'{x:08x}' for x in spis]}, not the negotiated {want:08x}"
    assert want != 0, "the SA negotiated SPI 0"


def _checksum_part(ike, steps, checksum: int | None, what: str):
    s, _, _ = establish_nat(ike, steps)
    ident, pkt = esp_echo(ike, s, 1)
    hdr = udp_raw_send(ike, pkt, c.NAT_T_PORT, c.NAT_T_PORT, checksum)
    r, _ = collect(ike, reply_match(s, ident), OK)
    steps.record(f"ESP seq 1 in UDP 4500 -> 4500 with checksum {hdr[6:8].hex()} ({what})", "accepted: the echo reply",
                 where(r), ok=r is not None)
    return r


@part("UDPENC.SGW.ENCAP.4", "UDP-encapsulated ESP with a zero UDP checksum is accepted",
      ["rfc3948-2.1-a"], needs=NEEDS)
def test_zero_checksum_accepted(ike, steps):
    r = _checksum_part(ike, steps, 0, "zero: not computed")
    assert r is not None, "UDP-encapsulated ESP with a zero UDP checksum got no echo reply"


@part("UDPENC.SGW.ENCAP.5", "UDP-encapsulated ESP with a computed (non-zero) UDP checksum is accepted",
      ["rfc3948-2.1-a"], needs=NEEDS)
def test_computed_checksum_accepted(ike, steps):
    r = _checksum_part(ike, steps, None, "computed")
    assert r is not None, "UDP-encapsulated ESP with a correct non-zero UDP checksum got no echo reply: " \
                          "the receiver must not depend on a zero checksum"


@part("UDPENC.SGW.ENCAP.6", "With a NAT detected, bare ESP (IP protocol 50) from the tester is still accepted",
      ["rfc7296-2.23-d"], needs=NEEDS)
def test_plain_esp_accepted_when_nated(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    precondition(ike, s, steps, 1)
    r = ike.ping(s, seq=2, tries=1, timeout=OK, send=bare_esp(ike)).reply
    steps.record("ESP seq 2 as IP protocol 50 (not encapsulated) carrying an echo to H", "accepted: the echo reply",
                 where(r), ok=r is not None)
    assert r is not None, "bare ESP on an SA with NAT_DETECTION exchanged got no echo reply: both forms must be accepted"


@part("UDPENC.SGW.ENCAP.7", "Without a NAT, UDP-encapsulated ESP on 4500 from the tester is still accepted",
      ["rfc7296-2.23-k", "rfc7296-2.23-d"], needs=NEEDS)
def test_encapsulated_accepted_without_nat(ike, steps):
    s = ike.establish(ike.session(child_algs=ChildAlgorithms(**vars(GCM))))
    steps.record("IKE_SA_INIT (correct NAT_DETECTION hashes: no NAT) and IKE_AUTH on 500", "a child SA",
                 f"NAT seen by the tester: {ike.nat}")
    if ike.nat:
        inconclusive("the IUT's NAT_DETECTION hashes say a NAT sits between: not the case this part needs")
    r0 = ike.ping(s, seq=1, tries=1, timeout=OK).reply
    steps.record("ESP seq 1 as IP protocol 50", "the echo reply", where(r0), ok=r0 is not None)
    if r0 is None:
        inconclusive("no echo reply through the child SA")
    r = ike.ping(s, seq=2, tries=1, timeout=OK, send=encapsulated_esp(ike)).reply
    steps.record("ESP seq 2 in UDP 4500 -> 4500 (no NAT detected)", "accepted: the echo reply", where(r), ok=r is not None)
    assert r is not None, "UDP-encapsulated ESP got no echo reply when no NAT was detected: it must be processed"


@part("UDPENC.SGW.ENCAP.8", "ESP sent in UDP on port 500 is not processed as ESP",
      ["rfc7296-2.23-c"], needs=NEEDS)
def test_esp_on_500_not_processed(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    precondition(ike, s, steps, 1)
    ident, pkt = esp_echo(ike, s, 2)
    ike.transport.send(pkt, ike.peer.gateway, c.IKE_PORT, src_port=c.IKE_PORT, kind="raw")
    r, _ = collect(ike, reply_match(s, ident), DROP)
    steps.record("ESP seq 2 (valid) as the payload of UDP 500 -> 500", f"not taken as ESP: no echo reply within {DROP} s",
                 where(r), ok=r is None)
    assert r is None, ("ESP carried in UDP on port 500 was processed (the echo reply came): "
                       "UDP encapsulation MUST NOT use port 500")
    assert_alive(ike, s, steps, 3, "ESP on port 500")


# ---------------------------------------------------------------------------------------------- keepalive, marker

@part("UDPENC.SGW.KA.1", "A NAT-keepalive (one byte 0xFF on 4500) is silently ignored; IKE and ESP go on",
      ["rfc3948-2.3-c", "rfc3948-2.3-b"], needs=NEEDS)
def test_keepalive_ignored(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    precondition(ike, s, steps, 1)
    ike.transport.send(c.NAT_KEEPALIVE, ike.peer.gateway, c.NAT_T_PORT, src_port=c.NAT_T_PORT, kind="raw")
    _, seen = collect(ike, lambda r: False, DROP)
    steps.record("a NAT-keepalive: UDP 4500 -> 4500, payload ff", f"no answer of any kind within {DROP} s",
                 [where(x) for x in seen] or "nothing", ok=not seen)
    should(not seen, f"a NAT-keepalive is ignored silently (the IUT sent {[where(x) for x in seen]})")
    assert_alive(ike, s, steps, 2, "a NAT-keepalive")
    assert_ike_alive(ike, s, steps, "a NAT-keepalive")


@part("UDPENC.SGW.MARKER.1", "An IKE message on 4500 without the non-ESP marker is not taken as IKE",
      ["rfc7296-2.23-b"], needs=NEEDS)
def test_ike_without_marker_not_ike(ike, steps):
    s, _, _ = establish_nat(ike, steps)
    data = s.informational_request()
    ike.transport.send(data, ike.peer.gateway, c.NAT_T_PORT, src_port=c.NAT_T_PORT, kind="raw")
    r, _ = collect(ike, is_response(s, 2), DROP)
    steps.record("an empty INFORMATIONAL (mid 2) on 4500 without the 4 zero bytes",
                 f"not taken as IKE (its first bytes read as an SPI): no response within {DROP} s", where(r), ok=r is None)
    assert r is None, "an IKE message on 4500 without the non-ESP marker was answered as IKE"
    ike.send(data)
    r2 = ike.receive(is_response(s, 2), OK)
    steps.record("the same INFORMATIONAL with the marker", "answered", where(r2), ok=r2 is not None)
    assert r2 is not None, "the IKE SA did not answer the same request with the marker"


# ---------------------------------------------------------------------------------------------- NAT detection

@part("UDPENC.SGW.NATD.1", "The IUT's NAT_DETECTION_SOURCE_IP is SHA-1(SPIi | SPIr | its address | 500)",
      ["rfc7296-2.23-g"], needs=["ikev2.nat-t"])
def test_iut_source_hash(ike, steps):
    s, resp = ike.init()
    n = resp.notify(c.N_NAT_DETECTION_SOURCE_IP)
    want = nat_detection_hash(s.spi_i, resp.spi_r, ike.peer.gateway, c.IKE_PORT)
    got = n.fields["data"] if n is not None else None
    steps.record("IKE_SA_INIT on 500 (correct hashes)", f"NAT_DETECTION_SOURCE_IP {want.hex()}",
                 got.hex() if got else "absent", ok=got == want)
    assert n is not None, f"no NAT_DETECTION_SOURCE_IP in the IKE_SA_INIT response: {resp.summary()}"
    assert got == want, f"NAT_DETECTION_SOURCE_IP {got.hex()} is not SHA-1 of the SPIs, {ike.peer.gateway} and 500"


@part("UDPENC.SGW.NATD.2", "The IUT's NAT_DETECTION_DESTINATION_IP is SHA-1(SPIi | SPIr | tester's address | 500)",
      ["rfc7296-2.23-g"], needs=["ikev2.nat-t"])
def test_iut_destination_hash(ike, steps):
    s, resp = ike.init()
    n = resp.notify(c.N_NAT_DETECTION_DESTINATION_IP)
    want = nat_detection_hash(s.spi_i, resp.spi_r, ike.peer.local, c.IKE_PORT)
    got = n.fields["data"] if n is not None else None
    steps.record("IKE_SA_INIT on 500 (correct hashes)", f"NAT_DETECTION_DESTINATION_IP {want.hex()}",
                 got.hex() if got else "absent", ok=got == want)
    assert n is not None, f"no NAT_DETECTION_DESTINATION_IP in the IKE_SA_INIT response: {resp.summary()}"
    assert got == want, f"NAT_DETECTION_DESTINATION_IP {got.hex()} is not SHA-1 of the SPIs, {ike.peer.local} and 500"


@part("UDPENC.SGW.NATD.3", "A mismatching NAT_DETECTION_SOURCE_IP alone makes the IUT UDP-encapsulate its ESP",
      ["rfc7296-2.23-h", "rfc7296-2.23-e"], needs=NEEDS)
def test_source_mismatch_enables_nat_t(ike, steps):
    s = ike.session(child_algs=ChildAlgorithms(**vars(GCM)))
    s, resp = ike.init(s, **source_only_wrong(s))
    steps.record("IKE_SA_INIT with a wrong NAT_DETECTION_SOURCE_IP (port 1024), a right DESTINATION",
                 "an IKE_SA_INIT response", resp.summary())
    ike.nat, ike.ike_port = True, c.NAT_T_PORT
    ike_auth(ike, s, steps)
    # the tester sends bare ESP (allowed at any time, 2.23): the IUT's own choice is judged
    r = ike.ping(s, seq=1, tries=1, timeout=OK, send=bare_esp(ike)).reply
    steps.record("ESP seq 1 as IP protocol 50 carrying an echo to H", "the reply in UDP 4500 (the IUT saw a NAT)",
                 where(r), ok=r is not None and r.sport == c.NAT_T_PORT)
    if r is None:
        inconclusive("no echo reply to bare ESP (see UDPENC.SGW.ENCAP.6)")
    should(r.sport == c.NAT_T_PORT, f"NAT traversal enabled on a mismatching NAT_DETECTION_SOURCE_IP: "
                                    f"the IUT's ESP came as {where(r)}")


# ---------------------------------------------------------------------------------------------- a NAT mapping changes
# The tester's NAT_DETECTION_SOURCE_IP alone is wrong: the tester is behind a NAT, the IUT is not, and
# the tester does not offer MOBIKE: the IUT SHOULD follow a validated packet's new port (2.23).

@part("UDPENC.SGW.FOLLOW.1", "An IKE request from a new source port to 4500 is answered to that port",
      ["rfc7296-2.23-a"], needs=NEEDS)
def test_ike_from_new_port_answered_there(ike, steps):
    s, _, _ = establish_nat(ike, steps, wrong="source")
    new = Mapping(ike)
    try:
        new.send_ike(s.informational_request())
        got = new.recv(lambda k, d: k == "ike" and parse_message(d).spi_i == s.spi_i and parse_message(d).response, OK)
        old = ike.receive(is_response(s, 2), 0.05)
        steps.record(f"an empty INFORMATIONAL from port {new.port} to 4500 (as after a NAT rebinding)",
                     f"the response sent to port {new.port}",
                     f"on {new.port}: {'yes' if got else 'no'}; on 4500: {'yes' if old else 'no'}", ok=got is not None)
        assert got is not None, (f"no response on port {new.port} where the request came from"
                                 f"{' (it went to 4500)' if old else ''}")
    finally:
        new.close()


def _follows(ike, steps, s, new, seq: int):
    """An echo in ESP from the new port: (reply on the new port, reply on the old 4500), waiting on both."""
    ident, pkt = esp_echo(ike, s, seq)
    new.send(pkt)
    got_new = got_old = None
    end = time.monotonic() + OK
    while got_new is None and got_old is None and time.monotonic() < end:
        got_new = new.recv(reply_match(s, ident, raw=True), 0.02)
        got_old = collect(ike, reply_match(s, ident), 0.02)[0]
    steps.record(f"ESP seq {seq} in UDP from port {new.port} to 4500", f"the reply, to port {new.port}",
                 f"on {new.port}: {'yes' if got_new else 'no'}; on 4500: {'yes' if got_old else 'no'}",
                 ok=got_new is not None)
    return got_new, got_old


@part("UDPENC.SGW.FOLLOW.2", "After an authenticated IKE request from a new port, the IUT's ESP follows to that port",
      ["rfc7296-2.23-m"], needs=NEEDS)
def test_esp_follows_after_ike(ike, steps):
    s, _, _ = establish_nat(ike, steps, wrong="source")
    not_behind_nat(s, steps)
    precondition(ike, s, steps, 1)
    new = Mapping(ike)
    try:
        new.send_ike(s.informational_request())
        got = new.recv(lambda k, d: k == "ike" and parse_message(d).spi_i == s.spi_i and parse_message(d).response, OK)
        steps.record(f"an empty INFORMATIONAL from port {new.port}", "answered", "yes" if got else "no", ok=got is not None)
        if got is None and ike.receive(is_response(s, 2), 0.3) is None:
            inconclusive("no answer to the INFORMATIONAL from the new port on either port")
        on_new, on_old = _follows(ike, steps, s, new, 2)
        if on_new is None and on_old is None:
            inconclusive("no echo reply to ESP from the new port (see UDPENC.SGW.FOLLOW.3)")
        should(on_new is not None, f"the IUT updates the peer's port to {new.port} after a validated IKE request from it "
                                   "(its ESP went to 4500)")
    finally:
        new.close()


@part("UDPENC.SGW.FOLLOW.3", "UDP-encapsulated ESP from a new source port is accepted (the SA is found by its SPI)",
      ["rfc4303-2.1-a", "rfc7296-2.23-a"], needs=NEEDS)
def test_esp_from_new_port_accepted(ike, steps):
    s, _, _ = establish_nat(ike, steps, wrong="source")
    precondition(ike, s, steps, 1)
    new = Mapping(ike)
    try:
        on_new, on_old = _follows(ike, steps, s, new, 2)
    finally:
        new.close()
    assert on_new is not None or on_old is not None, \
        "ESP from a new source port got no echo reply: inbound ESP must map to its SA by SPI"


@part("UDPENC.SGW.FOLLOW.4", "After validated ESP from a new port, the IUT's ESP follows to that port",
      ["rfc7296-2.23-m"], needs=NEEDS)
def test_esp_follows_after_esp(ike, steps):
    s, _, _ = establish_nat(ike, steps, wrong="source")
    not_behind_nat(s, steps)
    precondition(ike, s, steps, 1)
    new = Mapping(ike)
    try:
        first_new, first_old = _follows(ike, steps, s, new, 2)
        if first_new is None and first_old is None:
            inconclusive("no echo reply to ESP from the new port (see UDPENC.SGW.FOLLOW.3)")
        on_new, _ = _follows(ike, steps, s, new, 3) if first_new is None else (first_new, None)
    finally:
        new.close()
    should(on_new is not None, "the IUT updates the peer's port after validated ESP from a new port "
                               "(its ESP still went to 4500)")


@part("UDPENC.SGW.FOLLOW.5", "An IUT that finds itself behind a NAT does not follow a validated packet's new port",
      ["rfc7296-2.23-n"], needs=NEEDS)
def test_no_follow_when_behind_nat(ike, steps):
    s, _, _ = establish_nat(ike, steps, wrong="both")
    precondition(ike, s, steps, 1)
    new = Mapping(ike)
    try:
        new.send_ike(s.informational_request())
        got = new.recv(lambda k, d: k == "ike" and parse_message(d).spi_i == s.spi_i and parse_message(d).response, OK)
        steps.record(f"an empty INFORMATIONAL from port {new.port} (the IUT's DESTINATION hash was wrong: it is "
                     "behind a NAT)", "answered (to that port)", "yes" if got else "no")
        on_new, on_old = _follows(ike, steps, s, new, 2)
    finally:
        new.close()
    if on_new is None and on_old is None:
        inconclusive("no echo reply to ESP from the new port (see UDPENC.SGW.FOLLOW.3)")
    should(on_new is None, f"a host behind a NAT does not update the peer's port on a validated packet "
                           f"(its ESP went to the new port {new.port})")
