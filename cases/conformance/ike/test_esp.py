"""ESP (RFC 4303) of the gateway under test: anti-replay window and sequence numbers, padding, dummy
packets (Next Header 59), ICV failures, unknown SPIs, and the gateway's own outbound ESP, over a child
SA of AES-GCM-16 or of AES-CBC with HMAC-SHA-256-128 (the tester offers one of them in IKE_AUTH).

Acceptance is judged through the tunnel: an ICMP echo to the inside host H inside the ESP packet the
tester crafts; a reply coming back through the IUT's ESP means the packet was accepted. Each echo has
its own ICMP identifier, so a late reply can never be taken for another's. A drop is judged by no
reply within DROP seconds, then a valid packet proves the SA still carries data.
"""
from __future__ import annotations

import itertools
import struct
import time

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.session import ChildAlgorithms
from testbed.conformance.parts import inconclusive, part, should

DROP = 0.5      # how long "no reply" is waited for
OK = 2.0        # how long an expected reply is waited for
FAR = 1 << 20   # a sequence number far to the right of any sensible window

GCM = ChildAlgorithms(c.ENCR_AES_GCM_16, 128)
CBC = ChildAlgorithms(c.ENCR_AES_CBC, 128, c.AUTH_HMAC_SHA2_256_128)
NEEDS_GCM = ["esp.aes-gcm-16"]
NEEDS_CBC = ["esp.aes-cbc-hmac-sha256"]

_IDENTS = itertools.count(0x5100)


# ---------------------------------------------------------------------------------------------- helpers

def _name(algs: ChildAlgorithms) -> str:
    return "AES-GCM-16" if algs.encr == c.ENCR_AES_GCM_16 else "AES-CBC/HMAC-SHA-256-128"


def establish(ike, steps, algs: ChildAlgorithms = GCM, **init_kw):
    """IKE_SA_INIT and IKE_AUTH offering exactly one child proposal (`algs`); INCONCLUSIVE unless the
    child SA has those algorithms."""
    s = ike.establish(ike.session(child_algs=ChildAlgorithms(**vars(algs))), init_kw=init_kw or None)
    child = s.children[-1]
    got = (child.algs.encr, child.algs.integ)
    steps.record(f"IKE_SA_INIT, IKE_AUTH offering only {_name(algs)} for the child SA",
                 "a child SA with the offered algorithms",
                 f"ENCR {child.algs.encr}, INTEG {child.algs.integ}, IUT's SPI {child.spi_out.hex()}, "
                 f"ours {child.spi_in.hex()}, address {s.virtual_ip}")
    if got != (algs.encr, algs.integ):
        inconclusive(f"the child SA has ENCR/INTEG {got}, not the one proposal offered ({algs.encr}, {algs.integ})")
    return s, child


def echo_packet(ike, s, ident: int, icmp_seq: int, size: int = 44) -> bytes:
    """An inner IPv4 ICMP echo from the tester's internal address to H, `size` bytes of ICMP data."""
    from scapy.layers.inet import ICMP, IP
    src = s.virtual_ip[0] if s.virtual_ip else ike.peer.local
    data = (b"conformance-" * (size // 12 + 1))[:size]
    return bytes(IP(src=src, dst=ike.peer.inside_host) / ICMP(type=8, id=ident, seq=icmp_seq & 0xFFFF) / data)


def size_for_pad(pad_len: int, align: int) -> int:
    """ICMP data size so that inner packet (28 + size) + padding + 2 is a multiple of `align`."""
    size = 16
    while (28 + size + pad_len + 2) % align:
        size += 1
    return size


def send_echo(ike, s, seq: int, child=None, size: int = 44, tamper=None, send=None, **seal_kw) -> tuple[int, bytes]:
    """Seal an echo into ESP with sequence number `seq` (seal overrides: pad_len, pad_bytes, break_icv,
    spi, next_header), optionally `tamper` with the packet, send it; (ICMP ident, packet)."""
    child = child or s.children[-1]
    ident = next(_IDENTS)
    nh = seal_kw.pop("next_header", c.IPPROTO_IPIP)
    pkt = child.esp_out().seal(echo_packet(ike, s, ident, seq, size), nh, seq=seq, **seal_kw)
    if tamper is not None:
        pkt = tamper(pkt)
    (send or ike.esp_send)(pkt)
    return ident, pkt


def is_reply(parsed, ident: int) -> bool:
    """An opened ESP packet carrying an ICMP echo reply with identifier `ident`."""
    if not parsed.ok:
        return False
    p = parsed.payload
    if len(p) < 20 or p[0] >> 4 != 4:
        return False
    ihl = (p[0] & 0x0F) * 4
    return len(p) >= ihl + 8 and p[9] == 1 and p[ihl] == 0 and struct.unpack("!H", p[ihl + 4:ihl + 6])[0] == ident


def collect(ike, want, timeout: float) -> tuple[object | None, list]:
    """Everything the tester receives until `want(received)` holds or `timeout`: (match, all seen)."""
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


def await_reply(ike, s, ident: int, timeout: float, child=None):
    """(the IUT's ESP packet carrying the echo reply `ident` and its opened form, or (None, None); all seen)."""
    inbound = (child or s.children[-1]).esp_in()
    opened = {}

    def want(r) -> bool:
        if r.kind != "esp":
            return False
        p = inbound.open(r.data)
        opened[id(r)] = p
        return is_reply(p, ident)
    r, seen = collect(ike, want, timeout)
    return (r, opened.get(id(r)) if r is not None else None), seen


def probe(ike, s, seq: int, timeout: float = OK, **kw) -> bool:
    """An echo in ESP with sequence number `seq`: did its reply come back through the IUT?"""
    ident, _ = send_echo(ike, s, seq, **kw)
    (r, _), _ = await_reply(ike, s, ident, timeout, kw.get("child"))
    return r is not None


def expect_accepted(ike, s, steps, seq: int, what: str = "", **kw) -> bool:
    ok = probe(ike, s, seq, OK, **kw)
    steps.record(f"ESP seq {seq}{' ' + what if what else ''} carrying an ICMP echo to H",
                 "accepted: the echo reply comes back", "reply" if ok else "no reply", ok=ok)
    return ok


def expect_dropped(ike, s, steps, seq: int, what: str = "", **kw) -> bool:
    got = probe(ike, s, seq, DROP, **kw)
    steps.record(f"ESP seq {seq}{' ' + what if what else ''} carrying an ICMP echo to H",
                 f"dropped: no echo reply within {DROP} s", "reply" if got else "no reply", ok=not got)
    return not got


def precondition(ike, s, steps, seq: int = 1, **kw) -> None:
    """A valid packet first: the SA carries data (else the part cannot judge a drop)."""
    if not expect_accepted(ike, s, steps, seq, "(valid, the SA carries data)", **kw):
        inconclusive(f"no echo reply to a valid ESP packet with seq {seq}: the child SA carries no data")


def assert_alive(ike, s, steps, seq: int, after: str, **kw) -> None:
    ok = expect_accepted(ike, s, steps, seq, "(valid)", **kw)
    assert ok, f"a valid ESP packet with seq {seq} after {after} got no echo reply: the SA stopped carrying data"


def silent(ike, timeout: float = DROP) -> list:
    """What the IUT sends the tester within `timeout` (IKE or ESP); [] when it stays silent."""
    _, seen = collect(ike, lambda r: False, timeout)
    return seen


def flip(offset_from_start: int | None = None, offset_from_end: int | None = None):
    """A tamper function flipping the lowest bit of one byte of the packet."""
    def tamper(pkt: bytes) -> bytes:
        i = offset_from_start if offset_from_start is not None else len(pkt) - offset_from_end
        return pkt[:i] + bytes([pkt[i] ^ 1]) + pkt[i + 1:]
    return tamper


def outbound(ike, s, child, steps, count: int = 3, size: int = 44) -> list:
    """`count` echoes with seq 1..count; every ESP packet the tester received meanwhile, with its
    opened form: [(received, parsed)]. INCONCLUSIVE when no reply at all comes back."""
    inbound = child.esp_in()
    got, replies = [], 0
    for n in range(1, count + 1):
        ident, _ = send_echo(ike, s, n, child=child, size=size)
        (r, _), seen = await_reply(ike, s, ident, OK, child)
        replies += r is not None
        got += [(x, inbound.open(x.data)) for x in seen if x.kind == "esp"]
    steps.record(f"{count} ICMP echoes to H in ESP seq 1..{count}", "the IUT's ESP packets with the replies",
                 "; ".join(f"SPI {p.spi:08x} seq {p.seq} {'ok' if p.ok else p.reason}" for _, p in got) or "none")
    if not replies:
        inconclusive("no echo reply came back through the IUT's ESP")
    return got


# ---------------------------------------------------------------------------------------------- anti-replay

@part("ESP.SGW.REPLAY.1", "The first ESP packet of a new child SA, sequence number 1, is accepted",
      ["rfc4303-3.4.3-d", "rfc4303-3.4.3-a"], needs=NEEDS_GCM)
def test_first_packet_seq_1(ike, steps):
    s, _ = establish(ike, steps)
    ok = expect_accepted(ike, s, steps, 1, "(the first on the SA)")
    assert ok, "the first ESP packet (seq 1) of a new SA got no echo reply: the receive window must start at 0"


@part("ESP.SGW.REPLAY.2", "A second packet with an already received sequence number is dropped",
      ["rfc4303-3.4.3-e", "rfc4303-2.2-c"], needs=NEEDS_GCM)
def test_duplicate_seq_dropped(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 1, "again (new contents, a duplicate sequence number)")
    assert dropped, "a packet with the already received sequence number 1 was accepted (echo reply came)"
    assert_alive(ike, s, steps, 2, "the duplicate")


@part("ESP.SGW.REPLAY.3", "A byte-for-byte replay of an accepted ESP packet is dropped",
      ["rfc4303-3.4.3-e"], needs=NEEDS_GCM)
def test_exact_replay_dropped(ike, steps):
    s, _ = establish(ike, steps)
    ident, pkt = send_echo(ike, s, 1)
    (r, _), _ = await_reply(ike, s, ident, OK)
    steps.record("ESP seq 1 carrying an ICMP echo to H", "the echo reply", "reply" if r else "no reply", ok=r is not None)
    if r is None:
        inconclusive("no echo reply to the first valid ESP packet")
    ike.esp_send(pkt)
    (again, _), _ = await_reply(ike, s, ident, DROP)
    steps.record("the same ESP packet again, byte for byte", f"dropped: no second echo reply within {DROP} s",
                 "reply" if again else "no reply", ok=again is None)
    assert again is None, "a replayed ESP packet (the same bytes, seq 1) was accepted: a second echo reply came"
    assert_alive(ike, s, steps, 2, "the replay")


@part("ESP.SGW.REPLAY.4", "Packets arriving out of order inside the window (5, 3, 4, 2, 1) are all accepted",
      ["rfc4303-3.4.3-a", "rfc4303-3.4.3-i"], needs=NEEDS_GCM)
def test_out_of_order_in_window_accepted(ike, steps):
    s, _ = establish(ike, steps)
    results = {n: expect_accepted(ike, s, steps, n, "(out of order)") for n in (5, 3, 4, 2, 1)}
    refused = [n for n, ok in results.items() if not ok]
    assert not refused, f"packets inside the window arriving out of order were dropped: seq {refused}"


@part("ESP.SGW.REPLAY.5", "A packet accepted out of order is dropped when it comes again",
      ["rfc4303-3.4.3-e"], needs=NEEDS_GCM)
def test_out_of_order_duplicate_dropped(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 5)
    precondition(ike, s, steps, 3)
    dropped = expect_dropped(ike, s, steps, 3, "again (already received, left of the highest)")
    assert dropped, "seq 3, received once out of order, was accepted a second time"
    assert_alive(ike, s, steps, 4, "the duplicate")


@part("ESP.SGW.REPLAY.6", "The receive window is at least 32 packets: after seq 40, seq 9 is accepted",
      ["rfc4303-3.4.3-i"], needs=NEEDS_GCM)
def test_window_at_least_32(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 40)
    ok = expect_accepted(ike, s, steps, 9, "(31 below the highest: inside a 32-packet window)")
    assert ok, "seq 9 after seq 40 was dropped: the anti-replay window is smaller than 32 packets"


@part("ESP.SGW.REPLAY.7", "The receive window is 64 packets by default: after seq 100, seq 37 is accepted",
      ["rfc4303-3.4.3-i"], needs=NEEDS_GCM)
def test_window_default_64(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 100)
    ok = expect_accepted(ike, s, steps, 37, "(63 below the highest: inside a 64-packet window)")
    should(ok, "a 64-packet anti-replay window by default (seq 37 after seq 100 was dropped)")


@part("ESP.SGW.REPLAY.8", "A packet far to the right of the window is accepted and the window moves to it",
      ["rfc4303-3.4.3-a"], needs=NEEDS_GCM)
def test_far_ahead_accepted(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    ok = expect_accepted(ike, s, steps, FAR, "(far right of the window)")
    assert ok, f"seq {FAR} after seq 1 was dropped: a packet right of the window must be accepted"
    ok = expect_accepted(ike, s, steps, FAR + 1, "(next after the new highest)")
    assert ok, f"seq {FAR + 1} after seq {FAR} was dropped"
    dropped = expect_dropped(ike, s, steps, FAR, "again (the new highest)")
    assert dropped, f"seq {FAR} came twice and was accepted twice: the window did not move to it"


@part("ESP.SGW.REPLAY.9", "A packet left of the window (stale) is dropped, and the SA keeps working",
      ["rfc4303-3.4.3-a"], needs=NEEDS_GCM)
def test_stale_dropped(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    precondition(ike, s, steps, FAR)
    dropped = expect_dropped(ike, s, steps, 2, f"(never received, but {FAR - 2} below the highest)")
    assert dropped, f"seq 2 after seq {FAR} was accepted: a packet left of the window must be dropped"
    assert_alive(ike, s, steps, FAR + 1, "the stale packet")


@part("ESP.SGW.REPLAY.10", "Sequence number 0 is never accepted: neither first on the SA nor after others",
      ["rfc4303-3.4.3-d", "rfc4303-3.4.3-a"], needs=NEEDS_GCM)
def test_seq_zero_never_valid(ike, steps):
    s, _ = establish(ike, steps)
    first = expect_dropped(ike, s, steps, 0, "(first on the SA)")
    assert first, "an ESP packet with sequence number 0 was accepted as the first packet of the SA"
    precondition(ike, s, steps, 1)
    precondition(ike, s, steps, 2)
    later = expect_dropped(ike, s, steps, 0, "(after seq 1 and 2)")
    assert later, "an ESP packet with sequence number 0 was accepted after seq 1 and 2"
    assert_alive(ike, s, steps, 3, "seq 0")


@part("ESP.SGW.REPLAY.11", "AES-CBC/HMAC-SHA-256 child SA: a duplicate sequence number is dropped",
      ["rfc4303-3.4.3-e", "rfc4303-2.2-c"], needs=NEEDS_CBC)
def test_duplicate_seq_dropped_cbc(ike, steps):
    s, _ = establish(ike, steps, CBC)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 1, "again (new contents, a duplicate sequence number)")
    assert dropped, "a packet with the already received sequence number 1 was accepted (echo reply came)"
    assert_alive(ike, s, steps, 2, "the duplicate")


# ---------------------------------------------------------------------------------------------- padding

def _pad_part(ike, steps, algs: ChildAlgorithms, pad_len: int, what: str):
    s, _ = establish(ike, steps, algs)
    align = 4 if algs.encr == c.ENCR_AES_GCM_16 else 16
    size = size_for_pad(pad_len, align)
    ok = expect_accepted(ike, s, steps, 1, f"with {pad_len} padding bytes 1, 2, ... ({what})", size=size,
                         pad_len=pad_len)
    assert ok, f"a packet with {pad_len} bytes of valid padding ({what}) got no echo reply"


@part("ESP.SGW.PAD.1", "AES-GCM: a packet with no padding (Pad Length 0) is accepted",
      ["rfc4303-2.4-a"], needs=NEEDS_GCM)
def test_pad_zero_gcm(ike, steps):
    _pad_part(ike, steps, GCM, 0, "none needed: the payload is 4-byte aligned")


@part("ESP.SGW.PAD.2", "AES-GCM: a packet with the maximum padding (Pad Length 255) is accepted",
      ["rfc4303-2.4-a"], needs=NEEDS_GCM)
def test_pad_max_gcm(ike, steps):
    _pad_part(ike, steps, GCM, 255, "more than the 4-byte alignment needs")


@part("ESP.SGW.PAD.3", "AES-CBC: a packet with no padding (Pad Length 0) is accepted",
      ["rfc4303-2.4-a"], needs=NEEDS_CBC)
def test_pad_zero_cbc(ike, steps):
    _pad_part(ike, steps, CBC, 0, "none needed: the payload fills the 16-byte blocks")


@part("ESP.SGW.PAD.4", "AES-CBC: a packet with the maximum padding (Pad Length 255) is accepted",
      ["rfc4303-2.4-a"], needs=NEEDS_CBC)
def test_pad_max_cbc(ike, steps):
    _pad_part(ike, steps, CBC, 255, "15 blocks more than the 16-byte alignment needs")


@part("ESP.SGW.PAD.5", "Padding bytes other than 1, 2, 3, ... are detected and the packet dropped",
      ["rfc4303-2.4-c", "rfc4303-3.4.4.1-c"], needs=NEEDS_GCM)
def test_bad_padding_bytes(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    size = size_for_pad(6, 4)
    got = probe(ike, s, 2, DROP, size=size, pad_len=6, pad_bytes=bytes(6))
    steps.record("ESP seq 2 with 6 padding bytes 00 00 00 00 00 00 (not 1..6)",
                 "dropped: the receiver checks the padding",
                 "reply" if got else "no reply", ok=not got)
    should(not got, "the receiver inspects the Padding (1, 2, 3, ...) and drops a packet whose padding is wrong")
    assert_alive(ike, s, steps, 3, "the packet with wrong padding bytes")


# ---------------------------------------------------------------------------------------------- dummy packets

def _dummy_part(ike, steps, algs: ChildAlgorithms):
    s, child = establish(ike, steps, algs)
    precondition(ike, s, steps, 1)
    ike.esp_send(child.esp_out().dummy(48, seq=2))
    seen = silent(ike)
    steps.record("ESP seq 2, a dummy packet: Next Header 59, 48 random bytes",
                 f"silently discarded: nothing within {DROP} s",
                 [f"{r.kind} {len(r.data)} bytes" for r in seen] or "nothing", ok=not seen)
    assert not seen, f"the IUT answered a dummy packet (Next Header 59): {[r.kind for r in seen]}"
    assert_alive(ike, s, steps, 3, "the dummy packet")


@part("ESP.SGW.DUMMY.1", "AES-GCM: a dummy packet (Next Header 59) is silently discarded and the SA keeps working",
      ["rfc4303-2.6-b", "rfc4303-2.6-a"], needs=NEEDS_GCM)
def test_dummy_gcm(ike, steps):
    _dummy_part(ike, steps, GCM)


@part("ESP.SGW.DUMMY.2", "AES-CBC: a dummy packet (Next Header 59) is silently discarded and the SA keeps working",
      ["rfc4303-2.6-b", "rfc4303-2.6-c"], needs=NEEDS_CBC)
def test_dummy_cbc(ike, steps):
    _dummy_part(ike, steps, CBC)


# ---------------------------------------------------------------------------------------------- integrity

@part("ESP.SGW.ICV.1", "AES-GCM: a packet whose ICV does not verify is dropped",
      ["rfc4303-3.4.4.2-a", "rfc4303-3.4.3-g"], needs=NEEDS_GCM)
def test_bad_icv_gcm(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 2, "with the last ICV bit flipped", break_icv=True)
    assert dropped, "a packet whose AES-GCM ICV does not verify was accepted (echo reply came)"
    assert_alive(ike, s, steps, 3, "the bad ICV")


@part("ESP.SGW.ICV.2", "AES-CBC/HMAC-SHA-256: a packet whose ICV does not verify is dropped",
      ["rfc4303-3.4.4.1-a", "rfc4303-3.4.3-g"], needs=NEEDS_CBC)
def test_bad_icv_cbc(ike, steps):
    s, _ = establish(ike, steps, CBC)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 2, "with the last ICV bit flipped", break_icv=True)
    assert dropped, "a packet whose HMAC-SHA-256-128 ICV does not verify was accepted (echo reply came)"
    assert_alive(ike, s, steps, 3, "the bad ICV")


@part("ESP.SGW.ICV.3", "AES-GCM: a packet whose ciphertext was altered (ICV unchanged) is dropped",
      ["rfc4303-3.4.4.2-a"], needs=NEEDS_GCM)
def test_altered_ciphertext_gcm(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 2, "with one ciphertext bit flipped (inner header)",
                             tamper=flip(offset_from_start=8 + 8 + 12))
    assert dropped, "a packet with altered ciphertext was accepted: the AES-GCM tag must cover it"
    assert_alive(ike, s, steps, 3, "the altered packet")


@part("ESP.SGW.ICV.4", "AES-CBC/HMAC: altered ciphertext is dropped, never decrypted and forwarded",
      ["rfc4303-3.4.4.1-a", "rfc4303-3.4.4.1-e"], needs=NEEDS_CBC)
def test_altered_ciphertext_cbc(ike, steps):
    # In CBC the IV is XORed into the first plaintext block: IV' = IV ^ P1 ^ P1' makes the packet decrypt
    # to P1', here the inner IP header with another Identification and its checksum fixed. Without the
    # HMAC check the IUT would forward a valid echo to H.
    from scapy.layers.inet import IP
    s, child = establish(ike, steps, CBC)
    precondition(ike, s, steps, 1)
    ident = next(_IDENTS)
    inner = echo_packet(ike, s, ident, 2)
    forged = IP(inner)
    forged.id = (forged.id + 1) & 0xFFFF
    del forged.chksum
    forged = bytes(forged)
    pkt = child.esp_out().seal(inner, c.IPPROTO_IPIP, seq=2)
    iv = bytes(a ^ b ^ d for a, b, d in zip(pkt[8:24], inner[:16], forged[:16]))
    ike.esp_send(pkt[:8] + iv + pkt[24:])
    (r, _), _ = await_reply(ike, s, ident, DROP)
    steps.record("ESP seq 2 whose IV was changed so that it decrypts to a valid echo (other IP ID), ICV unchanged",
                 f"dropped: no echo reply within {DROP} s", "reply" if r else "no reply", ok=r is None)
    assert r is None, ("a packet whose HMAC no longer verifies (IV altered), but which decrypts to a valid echo, "
                       "was forwarded: the ICV must be checked before delivery")
    assert_alive(ike, s, steps, 3, "the altered packet")


@part("ESP.SGW.ICV.5", "A packet whose Sequence Number was changed after sealing is dropped (it is authenticated)",
      ["rfc4303-3.4.3-g", "rfc4303-3.4.4.2-a"], needs=NEEDS_GCM)
def test_altered_seq(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)

    def reseq(pkt: bytes) -> bytes:
        return pkt[:4] + struct.pack("!I", 6) + pkt[8:]
    dropped = expect_dropped(ike, s, steps, 5, "sealed, then its Sequence Number rewritten to 6", tamper=reseq)
    assert dropped, "a packet whose Sequence Number was rewritten after sealing was accepted"
    assert_alive(ike, s, steps, 6, "the forged seq 6 (its slot stays free)")


@part("ESP.SGW.ICV.6", "A packet failing the ICV does not move the window: a forged far-ahead seq leaves seq 2 valid",
      ["rfc4303-3.4.3-g"], needs=NEEDS_GCM)
def test_icv_failure_does_not_move_window(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, FAR, "with a broken ICV", break_icv=True)
    assert dropped, f"a packet with a broken ICV (seq {FAR}) was accepted"
    ok = expect_accepted(ike, s, steps, 2, "(valid; stale only if the forged packet had moved the window)")
    assert ok, f"seq 2 was dropped after a forged seq {FAR}: the window moved before the ICV was verified"


# ---------------------------------------------------------------------------------------------- SPI

@part("ESP.SGW.SPI.1", "A packet with an SPI of no SA is dropped, and the SA keeps working",
      ["rfc4303-3.4.2-a"], needs=NEEDS_GCM)
def test_unknown_spi(ike, steps):
    s, child = establish(ike, steps)
    precondition(ike, s, steps, 1)
    bogus = int.from_bytes(child.spi_out, "big") ^ 0x5A5A0000
    dropped = expect_dropped(ike, s, steps, 2, f"with SPI {bogus:08x} (no SA), keys of the SA", spi=bogus)
    assert dropped, f"a packet with the unknown SPI {bogus:08x} was accepted (echo reply came)"
    assert_alive(ike, s, steps, 2, "the unknown SPI")


@part("ESP.SGW.SPI.2", "A packet with SPI 0 (reserved, never on the wire) is dropped",
      ["rfc4303-3.4.2-a", "rfc4303-2.1-f"], needs=NEEDS_GCM)
def test_spi_zero(ike, steps):
    s, _ = establish(ike, steps)
    precondition(ike, s, steps, 1)
    dropped = expect_dropped(ike, s, steps, 2, "with SPI 0, keys of the SA", spi=0)
    assert dropped, "a packet with SPI 0 was accepted (echo reply came)"
    assert_alive(ike, s, steps, 2, "SPI 0")


# ---------------------------------------------------------------------------------------------- the IUT's ESP

def _out_seq(ike, steps, algs):
    s, child = establish(ike, steps, algs)
    got = outbound(ike, s, child, steps)
    ours = [p.seq for _, p in got if p.spi == int.from_bytes(child.spi_in, "big")]
    steps.record("sequence numbers of the IUT's ESP on the SA", "1, 2, 3, ... (one more per packet)", ours,
                 ok=ours == list(range(1, len(ours) + 1)))
    assert ours and ours[0] == 1, f"the IUT's first ESP packet on the SA has seq {ours[:1]}, not 1"
    assert ours == list(range(1, len(ours) + 1)), f"the IUT's sequence numbers do not increase by one: {ours}"


def _out_pad(ike, steps, algs):
    s, child = establish(ike, steps, algs)
    align = 4 if algs.encr == c.ENCR_AES_GCM_16 else 16
    got = [p for _, p in outbound(ike, s, child, steps) if p.ok]
    pads = [p.pad for p in got]
    steps.record("the Padding of the IUT's ESP packets (decrypted)", "1, 2, 3, ... up to the Pad Length",
                 [x.hex() for x in pads], ok=all(x == bytes(range(1, len(x) + 1)) for x in pads))
    if not any(pads):
        inconclusive("the IUT's packets carry no padding (nothing to judge)")
    bad = [x.hex() for x in pads if x != bytes(range(1, len(x) + 1))]
    assert not bad, f"padding bytes are not the monotonic sequence 1, 2, 3, ...: {bad}"
    lens = [len(p.payload) + len(p.pad) + 2 for p in got]
    assert all(n % align == 0 for n in lens), f"payload + padding + 2 not a multiple of {align}: {lens}"


def _out_spi(ike, steps, algs):
    s, child = establish(ike, steps, algs)
    got = outbound(ike, s, child, steps)
    want = int.from_bytes(child.spi_in, "big")
    spis = sorted({p.spi for _, p in got})
    protos = sorted({r.raw[9] for r, _ in got if r.raw and r.sport == 0})
    steps.record("SPI and outer protocol of the IUT's ESP",
                 f"SPI {want:08x} (ours, from IKE_AUTH); IP protocol 50 unless in UDP 4500",
                 f"SPIs {[f'{x:08x}' for x in spis]}, protocols {protos}", ok=spis == [want])
    assert 0 not in spis, "the IUT sent ESP with SPI 0"
    assert spis == [want], f"the IUT's ESP carries SPI {[f'{x:08x}' for x in spis]}, not the negotiated {want:08x}"
    assert not protos or protos == [50], f"the IUT's ESP came in IP protocol {protos}, not 50"


def _out_icv(ike, steps, algs):
    s, child = establish(ike, steps, algs)
    got = [(r, p) for r, p in outbound(ike, s, child, steps) if p.spi == int.from_bytes(child.spi_in, "big")]
    bad = [f"seq {p.seq}: {p.reason}" for _, p in got if not p.ok]
    steps.record(f"verify and decrypt the IUT's ESP with the negotiated {_name(algs)} keys",
                 "every ICV verifies; Next Header 4 (IPv4, tunnel mode); an ICMP echo reply from H inside",
                 [f"seq {p.seq}: {'ok NH %d' % p.next_header if p.ok else p.reason}" for _, p in got], ok=not bad)
    assert not bad, f"the IUT's ESP does not verify with the negotiated keys: {bad}"
    nh = sorted({p.next_header for _, p in got})
    assert nh == [c.IPPROTO_IPIP], f"Next Header {nh} in the IUT's tunnel-mode ESP, not 4"
    srcs = sorted({".".join(str(b) for b in p.payload[12:16]) for _, p in got})
    assert srcs == [ike.peer.inside_host], f"inner source {srcs}, not the inside host {ike.peer.inside_host}"


@part("ESP.SGW.OUT.1", "AES-GCM: the IUT's ESP sequence numbers start at 1 and increase by one",
      ["rfc4303-2.2-a", "rfc4303-2.2-b", "rfc4303-2.2-d"], needs=NEEDS_GCM)
def test_out_seq_gcm(ike, steps):
    _out_seq(ike, steps, GCM)


@part("ESP.SGW.OUT.2", "AES-GCM: the IUT pads to 4 bytes with the monotonic padding 1, 2, 3, ...",
      ["rfc4303-2.4-b", "rfc4303-2.3-c", "rfc4303-2.4-a"], needs=NEEDS_GCM)
def test_out_pad_gcm(ike, steps):
    _out_pad(ike, steps, GCM)


@part("ESP.SGW.OUT.3", "AES-GCM: the IUT's ESP carries the SPI the tester gave in IKE_AUTH "
      "(in IP protocol 50 unless UDP-encapsulated)",
      ["rfc4303-2-a", "rfc4303-2.1-f"], needs=NEEDS_GCM)
def test_out_spi_gcm(ike, steps):
    _out_spi(ike, steps, GCM)


@part("ESP.SGW.OUT.4", "AES-GCM: the IUT's ESP verifies and decrypts with the negotiated keys (tunnel mode, NH 4)",
      ["rfc4303-5-a", "rfc4303-1-b"], needs=NEEDS_GCM)
def test_out_icv_gcm(ike, steps):
    _out_icv(ike, steps, GCM)


@part("ESP.SGW.OUT.5", "AES-CBC/HMAC: the IUT's ESP sequence numbers start at 1 and increase by one",
      ["rfc4303-2.2-a", "rfc4303-2.2-b", "rfc4303-2.2-d"], needs=NEEDS_CBC)
def test_out_seq_cbc(ike, steps):
    _out_seq(ike, steps, CBC)


@part("ESP.SGW.OUT.6", "AES-CBC/HMAC: the IUT pads to the 16-byte block with the monotonic padding 1, 2, 3, ...",
      ["rfc4303-2.4-b", "rfc4303-2.3-c", "rfc4303-2.4-a"], needs=NEEDS_CBC)
def test_out_pad_cbc(ike, steps):
    _out_pad(ike, steps, CBC)


@part("ESP.SGW.OUT.7", "AES-CBC/HMAC: the IUT's ESP carries the SPI the tester gave in IKE_AUTH "
      "(in IP protocol 50 unless UDP-encapsulated)",
      ["rfc4303-2-a", "rfc4303-2.1-f"], needs=NEEDS_CBC)
def test_out_spi_cbc(ike, steps):
    _out_spi(ike, steps, CBC)


@part("ESP.SGW.OUT.8", "AES-CBC/HMAC: the IUT's ESP verifies (HMAC-SHA-256-128) and decrypts with the negotiated keys",
      ["rfc4303-5-a", "rfc4303-1-b"], needs=NEEDS_CBC)
def test_out_icv_cbc(ike, steps):
    _out_icv(ike, steps, CBC)
