"""SGW-I: the gateway as the initiator of exchanges on an IKE SA the tester (the remote-access client)
set up: its liveness checks, child SA rekeys, IKE SA rekeys and the Deletes that follow them, its
Message IDs, retransmissions and window, and how it takes the answers the tester gives (RFC 7296
sections 1.3.2, 1.3.3, 1.4, 1.4.1, 2.1 to 2.4, 2.8, 2.8.1, 2.18, 2.25, 3.1).

The gateway runs scenario conformance-sgw-timers: a liveness check after DPD_AFTER seconds without
a message from the client, a child SA rekey CHILD_REKEY_AFTER seconds after the child SA was made,
an IKE SA rekey IKE_REKEY_AFTER seconds after IKE_AUTH. Every part establishes a fresh IKE SA, then
waits for the request it judges, answering the others the way a plain client would (`Lab.serve`).

The tester reads the wire through `Lab`, which keeps the datagrams a wait did not want for the next
one (IkeTester.receive drops them: a request of the IUT lost that way would only come back as a
retransmission, seconds later). Data through a child SA is an ICMP echo to the inside host H; its
reply may come back on any of the session's child SAs unless a part says otherwise.

Not here: the IUT giving up after its retransmissions (RFC 7296 2.1, 2.4). A gateway's default
retransmission timers can run for minutes (ours: 2 s doubling, 5 retransmissions, about two
minutes), and the scenario has no `retransmit_*` key every gateway reads, so it cannot be seen
within a few seconds on every profile.
"""
import os
import struct
import time
from collections import deque


from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.crypto import derive_ike_keys, dh_key, skeyseed_rekey
from testbed.conformance.ike.parse import parse_header
from testbed.conformance.ike.session import IkeSession, algorithms_of
from testbed.conformance.ike.sk import SkOptions
from testbed.conformance.parts import inconclusive, part, should

# conformance-sgw-timers: dpd_interval, child_rekey_after, ike_rekey_after (seconds)
DPD_AFTER, CHILD_REKEY_AFTER, IKE_REKEY_AFTER = 1.0, 2.0, 3.0
SLACK = 2.5      # how much later than its timer a request may come (scheduling, a queued exchange)
QUIET = 0.5      # how long "nothing comes" is waited for
IDENT = 0x7e49   # ICMP echo identifier of this module
LOW, HIGH = bytes(32), b"\xff" * 32   # nonces that are lower / higher than any random one (2.8.1)


# ----------------------------------------------------------------------------- the wire

def _describe(msg):
    return msg.summary() if msg is not None else "nothing"


def _on(data, s, response):
    h = parse_header(data)
    return h.ok and h.spi_i == s.spi_i and h.spi_r == s.spi_r and h.response == response


def _kind(msg):
    """What a request of the IUT asks: dpd, delete_child, delete_ike, info, rekey_child, rekey_ike,
    new_child, or other."""
    if not msg.ok:
        return "other"
    if msg.exchange == c.INFORMATIONAL:
        if msg.inner == []:
            return "dpd"
        protos = {d.fields.get("protocol") for d in msg.get_all(c.DELETE)}
        return "delete_ike" if c.PROTO_IKE in protos else "delete_child" if protos else "info"
    if msg.exchange == c.CREATE_CHILD_SA:
        sa = msg.get(c.SA)
        props = sa.fields.get("proposals", []) if sa is not None else []
        if props and props[0]["protocol"] == c.PROTO_IKE:
            return "rekey_ike"
        return "rekey_child" if msg.notify(c.N_REKEY_SA) is not None else "new_child"
    return "other"


def _deleted(msg, protocol=c.PROTO_ESP):
    return [spi for d in msg.get_all(c.DELETE) if d.fields.get("protocol") == protocol
            for spi in d.fields.get("spis", [])]


def _is_retransmission(msg, first):
    return msg is not None and msg.raw == first.raw


class Lab:
    """The tester's side of one part after IKE_AUTH: reads the wire keeping what a wait did not want,
    answers the IUT's requests, exchanges its own requests, pings through child SAs."""

    def __init__(self, ike, steps):
        self.ike, self.steps = ike, steps
        self.held = deque()
        self.successor = {}   # IKE SA (session) -> its successor after an IKE SA rekey we answered
        self.answered = []    # (kind, Message ID) of the IUT's requests answered by serve()
        self.cache = {}       # the IUT's request (bytes) -> our response (bytes)

    def take(self, match, timeout):
        for r in list(self.held):
            if match(r):
                self.held.remove(r)
                return r
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.ike.transport.recv(left)
            if r is None:
                return None
            if match(r):
                return r
            self.held.append(r)
        return None

    def chain(self, s):
        """IKE SA `s` and its successors (IKE SA rekeys we answered), oldest first."""
        out = [s]
        while out[-1] in self.successor:
            out.append(self.successor[out[-1]])
        return out

    def current(self, s):
        return self.chain(s)[-1]

    def request(self, s, timeout, follow=True):
        """The IUT's next request on IKE SA `s` (its SPIs, R clear), or with `follow` on one of its
        successors, decrypted, with its arrival time as `t` and its IKE SA as `session`; None after
        `timeout`."""
        sessions = self.chain(s) if follow else [s]
        r = self.take(lambda r: r.kind == "ike" and any(_on(r.data, x, False) for x in sessions), timeout)
        if r is None:
            return None
        x = next(x for x in sessions if _on(r.data, x, False))
        msg = x.parse(r.data)
        msg.t, msg.session = r.t, x
        return msg

    def response(self, s, mid, timeout=2.0):
        r = self.take(lambda r: r.kind == "ike" and _on(r.data, s, True) and parse_header(r.data).message_id == mid,
                      timeout)
        return s.parse(r.data) if r is not None else None

    def exchange(self, s, data, timeout=2.0, tries=1):
        """Send our request on `s` and take its response (by Message ID); with `tries`, the same bytes
        are sent again when `timeout` / tries passes unanswered, as an initiator retransmits (2.1)."""
        mid = struct.unpack("!I", data[20:24])[0]
        for _ in range(tries):
            self.ike.send(data)
            resp = self.response(s, mid, timeout / tries)
            if resp is not None:
                return resp
        return None

    def alive(self, s, timeout=1.5):
        """An empty INFORMATIONAL of ours on `s` (its successor after an IKE SA rekey) and its
        response (None: no answer). Retransmitted: right after a rekey the IUT may not have taken the
        new IKE SA into use yet when our first request arrives, and drops it (a peer retransmits)."""
        s = self.current(s)
        return self.exchange(s, s.informational_request([]), timeout, tries=3)

    # -- the IUT's requests, answered the way a plain client answers them
    def reply(self, msg, data):
        """Send our response to the IUT's request `msg`, kept for its retransmissions (2.1)."""
        self.cache[msg.raw] = data
        self.ike.send(data)

    def answer(self, s, msg, **kw):
        s = getattr(msg, "session", None) or s
        if msg.raw in self.cache:
            self.ike.send(self.cache[msg.raw])
            return
        kind = _kind(msg)
        if kind in ("dpd", "info", "delete_ike"):
            self.reply(msg, s.informational_response([]))
        elif kind == "delete_child":
            gone = _deleted(msg)
            mine = [ch for ch in s.children if ch.spi_out in gone]
            for ch in mine:
                s.children.remove(ch)
            self.reply(msg, s.informational_response([m.delete(c.PROTO_ESP, [ch.spi_in for ch in mine])] if mine else []))
        elif kind in ("rekey_child", "new_child"):
            s.handle_create_child_request(msg.raw)
            self.reply(msg, s.create_child_response(**kw))
        elif kind == "rekey_ike":
            data, new = ike_rekey_response(s, msg, **kw)
            self.reply(msg, data)
            if new is not None:
                self.successor[s] = new
                self.ike.sessions.append(new)
        else:
            return
        self.answered.append((kind, msg.message_id))

    def serve(self, s, want, timeout):
        """Answer the IUT's requests on `s` until one of kind in `want` (a kind or a tuple of kinds,
        see _kind) comes: that one is returned unanswered; None when none came within `timeout`."""
        want = (want,) if isinstance(want, str) else tuple(want)
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            msg = self.request(s, left)
            if msg is None:
                return None
            if msg.raw not in self.cache and _kind(msg) in want:
                return msg
            self.answer(msg.session, msg)
        return None

    # -- data
    def ping(self, s, out, replies=None, timeout=1.5, tries=2):
        """The tester's ping (`IkeTester.ping`: up to `tries` echoes sealed on child SA `out`, each
        waited `timeout`; a check that data no longer passes asks for one try) reading the wire
        through this lab, so that the IUT's requests meanwhile are kept; the child SA (of `replies`,
        by default every child of the session) whose inbound half carried an echo reply, or None."""
        return self.ike.ping(s, out, replies=replies, timeout=timeout, tries=tries, ident=IDENT, take=self.take).child


def ike_rekey_response(s, msg, nonce=None, spi=None, payloads=None):
    """Accept the IUT's IKE SA rekey (RFC 7296 1.3.2, 2.18): the first IKE proposal that lists the
    KEi's group, one transform of each type, our new SPI, Nr and KEr. Returns (the response, the new
    IKE SA as an IkeSession in which the tester is the original responder), or (response, None) when
    `payloads` replaces the answer (an error) or the request has no usable SA/KE/Ni."""
    sa, ke, ni = msg.get(c.SA), msg.get(c.KE), msg.get(c.NONCE)
    if payloads is not None or sa is None or ke is None or ni is None:
        return s.response(c.CREATE_CHILD_SA, payloads or [m.notify(c.N_NO_PROPOSAL_CHOSEN)]), None
    group = ke.fields["group"]
    prop = next((p for p in sa.fields["proposals"] if p["protocol"] == c.PROTO_IKE and any(
        t["type"] == c.T_DH and t["id"] == group for t in p["transforms"])), None)
    if prop is None:
        return s.response(c.CREATE_CHILD_SA, [m.notify(c.N_NO_PROPOSAL_CHOSEN)]), None
    algs = algorithms_of(prop)
    algs.dh = group
    spi, nr, dh = spi or os.urandom(8), nonce or os.urandom(32), dh_key(group)
    data = s.response(c.CREATE_CHILD_SA, [m.sa([algs.proposal(prop["number"], spi=spi, dh=[group])]), m.nonce(nr),
                                          m.ke(group, dh.public)])
    new = IkeSession(initiator=False, algs=algs, child_algs=s.child_algs, local=s.local, peer=s.peer, spi=spi)
    new.spi_i, new.ni, new.nr = prop["spi"], ni.fields["data"], nr
    seed = skeyseed_rekey(s.algs.prf, s.keys.sk_d, dh.shared(ke.fields["data"]), new.ni, new.nr)
    new.keys = derive_ike_keys(algs.prf, seed, new.ni, new.nr, new.spi_i, new.spi_r, algs.encr, algs.key_bits,
                               algs.integ)
    new.children = s.children
    new.virtual_ip, new.peer_auth_ok = list(s.virtual_ip), s.peer_auth_ok
    return data, new


# ----------------------------------------------------------------------------- preambles

def _setup(ike, steps):
    s = ike.establish()
    return Lab(ike, steps), s


def _first_request(lab, s, steps):
    """The IUT's first request on the IKE SA (its liveness check, DPD_AFTER after IKE_AUTH),
    unanswered; INCONCLUSIVE when none comes."""
    msg = lab.request(s, DPD_AFTER + SLACK)
    steps.record("wait for the IUT's first request on the IKE SA (liveness check after "
                 f"{DPD_AFTER:g} s without a message)", "a request on the IKE SA's SPIs", _describe(msg))
    if msg is None:
        inconclusive(f"the IUT sent no request on the IKE SA within {DPD_AFTER + SLACK:g} s")
    return msg


def _dpd(lab, s, steps):
    msg = lab.serve(s, "dpd", DPD_AFTER + SLACK)
    steps.record("wait for the IUT's liveness check", "an INFORMATIONAL request with an empty SK payload",
                 _describe(msg))
    if msg is None:
        inconclusive("the IUT sent no liveness check")
    return msg


def _rekey_request(lab, s, steps):
    """The IUT's CREATE_CHILD_SA rekeying the child SA, unanswered (the others answered)."""
    msg = lab.serve(s, "rekey_child", CHILD_REKEY_AFTER + SLACK)
    steps.record("wait for the IUT's child SA rekey (answering its other requests)",
                 "CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi, TSr}", _describe(msg))
    if msg is None:
        inconclusive(f"the IUT did not rekey the child SA within {CHILD_REKEY_AFTER + SLACK:g} s")
    return msg


def _ike_rekey_request(lab, s, steps):
    msg = lab.serve(s, "rekey_ike", IKE_REKEY_AFTER + SLACK)
    steps.record("wait for the IUT's IKE SA rekey (answering its other requests)",
                 "CREATE_CHILD_SA {SA(IKE), Ni, KEi}", _describe(msg))
    if msg is None:
        inconclusive(f"the IUT did not rekey the IKE SA within {IKE_REKEY_AFTER + SLACK:g} s")
    return msg


def _accept_child_rekey(lab, s, msg, steps, **kw):
    """Answer the IUT's child SA rekey: the new child SA (the tester's view)."""
    before = list(s.children)
    lab.answer(s, msg, **kw)
    new = next((ch for ch in s.children if ch not in before), None)
    steps.record("answer the rekey: SA (the first proposal), Nr, TSi, TSr", "a new child SA",
                 f"new child SA in {new.spi_in.hex()} out {new.spi_out.hex()}" if new else "none", ok=new is not None)
    if new is None:
        inconclusive(f"the tester could not answer the rekey: {_describe(msg)}")
    return new


def _accept_ike_rekey(lab, s, msg, steps, **kw):
    lab.answer(s, msg, **kw)
    new = lab.successor.get(s)
    steps.record("answer the IKE SA rekey: SA (one IKE proposal, new SPI), Nr, KEr", "a new IKE SA",
                 f"new IKE SA {new.spi_i.hex()}/{new.spi_r.hex()}" if new else "none", ok=new is not None)
    if new is None:
        inconclusive(f"the tester could not answer the IKE SA rekey: {_describe(msg)}")
    return new


def _old_child(s, msg):
    """The child SA (the tester's view) that the IUT's rekey request names in N(REKEY_SA)."""
    n = msg.notify(c.N_REKEY_SA)
    spi = n.fields.get("spi") if n is not None else None
    return next((ch for ch in s.children if ch.spi_out == spi), None)


def _error_answer(lab, s, msg, ntype):
    s = getattr(msg, "session", None) or s
    lab.reply(msg, s.response(msg.exchange, [m.notify(ntype)]))


def _closes(lab, old, msg):
    """Whether the IUT's request `msg` deletes child SA `old` or an IKE SA that was not rekeyed."""
    if msg is None:
        return False
    if _kind(msg) == "delete_ike":
        return msg.session not in lab.successor
    return _kind(msg) == "delete_child" and old.spi_out in _deleted(msg)


# ----------------------------------------------------------------------------- Message IDs and header

@part("IKE.SGW-I.MID.1", "The IUT's first request on an IKE SA it responded to carries Message ID 0 (its own counter)",
      ["rfc7296-2.3-e", "rfc7296-3.1-j"])
def test_first_request_mid_zero(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _first_request(lab, s, steps)
    steps.record("its Message ID", "0 (the counter of the requests the IUT initiates; the client's were 0 and 1)",
                 msg.message_id, ok=msg.message_id == 0)
    assert msg.message_id == 0, f"the IUT's first request carries Message ID {msg.message_id}, not 0"


@part("IKE.SGW-I.MID.2", "The IUT's consecutive requests carry Message IDs 0, 1, 2, each sent after the previous was answered",
      ["rfc7296-2.3-e", "rfc7296-2.3-b"])
def test_request_mids_increment(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    mids = []
    end = time.monotonic() + CHILD_REKEY_AFTER + 2 * SLACK
    while len(mids) < 3 and (left := end - time.monotonic()) > 0:
        msg = lab.request(s, left)
        if msg is None:
            break
        mids.append(msg.message_id)
        lab.answer(s, msg)
        steps.record("answer the IUT's request", "", f"{_describe(msg)}")
    steps.record("Message IDs of the IUT's first three requests", "0, 1, 2", mids, ok=mids == [0, 1, 2])
    if len(mids) < 3:
        inconclusive(f"the IUT sent only {len(mids)} request(s) in {CHILD_REKEY_AFTER + 2 * SLACK:g} s")
    assert mids == [0, 1, 2], f"the IUT's requests carry Message IDs {mids}, not 0, 1, 2"


@part("IKE.SGW-I.HDR.1", "The IUT's requests have the Initiator flag clear (it is the original responder) and the Response flag clear",
      ["rfc7296-3.1-m", "rfc7296-3.1-j"])
def test_request_flags(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _first_request(lab, s, steps)
    steps.record("its flags", "I clear, R clear", f"0x{msg.flags:02x}", ok=not msg.initiator and not msg.response)
    assert not msg.initiator, f"flags 0x{msg.flags:02x}: I set in a message of the original responder"
    assert not msg.response, f"flags 0x{msg.flags:02x}: R set in a request"


@part("IKE.SGW-I.HDR.2", "The IUT's requests carry version 2.0, with the Version flag and the reserved flag bits clear",
      ["rfc7296-3.1-d", "rfc7296-3.1-g", "rfc7296-3.1-i", "rfc7296-3.1-l"])
def test_request_version(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _first_request(lab, s, steps)
    ok = msg.major == 2 and msg.minor == 0 and not msg.version_bit and msg.reserved_flags == 0
    steps.record("its version and flags", "2.0, V clear, X bits clear",
                 f"{msg.major}.{msg.minor}, flags 0x{msg.flags:02x}", ok=ok)
    assert (msg.major, msg.minor) == (2, 0), f"version {msg.major}.{msg.minor}"
    assert not msg.version_bit, f"flags 0x{msg.flags:02x}: the V flag is set"
    assert msg.reserved_flags == 0, f"flags 0x{msg.flags:02x}: reserved bits set"


@part("IKE.SGW-I.HDR.3", "The IUT's requests are protected with the IKE SA's keys: an SK payload, last, that the responder's keys open",
      ["rfc7296-1.4-a", "rfc7296-3.14-a", "rfc7296-3.14-f"])
def test_request_protected(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _first_request(lab, s, steps)
    ok = msg.ok and msg.encrypted and msg.payloads[-1].type == c.SK and msg.inner is not None
    steps.record("its payloads", "SK{...} as the last payload, integrity and decryption with SK_ar/SK_er",
                 f"{_describe(msg)} {msg.reason}", ok=ok)
    assert msg.encrypted, f"the request has no SK payload: {_describe(msg)}"
    assert msg.ok and msg.inner is not None, f"the SK payload does not open with the IKE SA's keys: {msg.reason}"
    assert msg.payloads[-1].type == c.SK, "the SK payload is not the last payload"


# ----------------------------------------------------------------------------- liveness

@part("IKE.SGW-I.LIVE.1", "The IUT's liveness check is an INFORMATIONAL request with an empty SK payload",
      ["rfc7296-1.4-a"])
def test_liveness_check_empty(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _first_request(lab, s, steps)
    ok = msg.ok and msg.exchange == c.INFORMATIONAL and msg.inner == []
    steps.record(f"the request after {DPD_AFTER:g} s without a message", "INFORMATIONAL, SK{} (no payloads)",
                 _describe(msg), ok=ok)
    if msg.exchange != c.INFORMATIONAL:
        inconclusive(f"the IUT's first request is not a liveness check: {_describe(msg)}")
    assert msg.inner == [], f"a liveness check carries no payloads: {_describe(msg)}"
    lab.answer(s, msg)
    got = lab.ping(s, s.children[0])
    steps.record("answer it; ICMP echo through the child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the child SA stopped carrying data after the liveness check was answered"


@part("IKE.SGW-I.LIVE.2", "While its liveness check is unanswered, the IUT answers the tester's request",
      ["rfc7296-2.3-c", "rfc7296-1.4-d"])
def test_answers_during_own_dpd(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _dpd(lab, s, steps)
    resp = lab.alive(s)
    steps.record("hold the liveness check; send an empty INFORMATIONAL (our Message ID 2)",
                 "an INFORMATIONAL response, Message ID 2", _describe(resp), ok=resp is not None)
    assert resp is not None, "the IUT did not answer our request while its own request was outstanding"
    assert resp.ok and resp.exchange == c.INFORMATIONAL and resp.message_id == 2, _describe(resp)
    lab.answer(s, msg)


# ----------------------------------------------------------------------------- retransmission, window

@part("IKE.SGW-I.RTX.1", "An unanswered request is retransmitted bit for bit, with the same Message ID",
      ["rfc7296-2.1-g", "rfc7296-2.2-a", "rfc7296-2.1-c", "rfc7296-2.1-f", "rfc7296-2.3-f"])
def test_retransmission_identical(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    again = lab.request(s, 5.0)
    steps.record("leave it unanswered", "the same request again, bit for bit",
                 "nothing" if again is None else
                 f"{_describe(again)} after {again.t - first.t:.2f} s, "
                 f"{'identical' if _is_retransmission(again, first) else 'different bytes'}",
                 ok=_is_retransmission(again, first))
    assert again is not None, "the IUT did not retransmit its unanswered request within 5 s"
    assert again.message_id == first.message_id, \
        f"the next request carries Message ID {again.message_id}, the unanswered one {first.message_id}"
    assert again.raw == first.raw, "the retransmission is not bitwise identical to the original request"
    lab.answer(s, again)


@part("IKE.SGW-I.RTX.2", "The intervals between retransmissions of an unanswered request grow",
      ["rfc7296-2.4-f"])
def test_retransmission_backoff(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    times = [first.t]
    for _ in range(2):
        wait = 2.0 + 3 * (times[-1] - times[-2] if len(times) > 1 else 2.0)
        again = lab.request(s, wait)
        if again is None or not _is_retransmission(again, first):
            break
        times.append(again.t)
    gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
    steps.record("leave it unanswered; the times of its retransmissions", "each interval longer than the one before",
                 f"intervals {gaps} s", ok=len(gaps) == 2 and gaps[1] > gaps[0] * 1.1)
    if len(gaps) < 2:
        inconclusive(f"fewer than two retransmissions came (intervals {gaps})")
    assert gaps[1] > gaps[0] * 1.1, f"retransmission intervals {gaps} s do not grow"


@part("IKE.SGW-I.WIN.1", "While a request is unanswered the IUT starts no other exchange (window of one); it sends the next once answered",
      ["rfc7296-2.3-b", "rfc7296-2.3-d"])
def test_window_one(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    hold_until = time.monotonic() + max(CHILD_REKEY_AFTER, IKE_REKEY_AFTER) - DPD_AFTER + 0.5
    others, last = [], first
    while (left := hold_until - time.monotonic()) > 0:
        msg = lab.request(s, left)
        if msg is None:
            break
        last = msg
        if not _is_retransmission(msg, first):
            others.append(msg)
    steps.record(f"hold the first request unanswered past the rekey timers ({IKE_REKEY_AFTER:g} s)",
                 "only retransmissions of it", f"other requests: {[_describe(o) for o in others]}", ok=not others)
    assert not others, (f"the IUT started another exchange while Message ID {first.message_id} was unanswered: "
                        f"{_describe(others[0])}")
    lab.answer(s, last)
    nxt = lab.request(s, SLACK)
    steps.record("answer it", f"the next request, Message ID {first.message_id + 1}", _describe(nxt),
                 ok=nxt is not None and nxt.message_id == first.message_id + 1)


# ----------------------------------------------------------------------------- responses the IUT must not take

@part("IKE.SGW-I.RESP.1", "A response with another Message ID does not answer the IUT's request: it retransmits the request",
      ["rfc7296-2.1-f", "rfc7296-2.1-c"])
def test_response_wrong_mid_ignored(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    lab.ike.send(s.response(first.exchange, [], message_id=first.message_id + 1))
    again = lab.request(s, 5.0)
    steps.record(f"answer with Message ID {first.message_id + 1} instead of {first.message_id}",
                 "ignored: the request retransmitted", _describe(again), ok=_is_retransmission(again, first))
    assert again is not None, "the IUT neither retransmitted its request nor sent anything else"
    assert _is_retransmission(again, first), \
        f"the IUT took a response with the wrong Message ID and went on: {_describe(again)}"
    lab.answer(s, again)
    nxt = lab.request(s, CHILD_REKEY_AFTER + SLACK)
    steps.record("answer the retransmission correctly", f"the next request, Message ID {first.message_id + 1}",
                 _describe(nxt), ok=nxt is not None and nxt.message_id == first.message_id + 1)
    assert nxt is None or nxt.message_id == first.message_id + 1, f"then: {_describe(nxt)}"


@part("IKE.SGW-I.RESP.2", "A response whose SK integrity check fails is ignored: the IUT retransmits its request",
      ["rfc7296-1.4-a", "rfc7296-2.1-f", "rfc7296-3.14-f"])
def test_response_bad_icv_ignored(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    lab.ike.send(s.response(first.exchange, [], sk_opts=SkOptions(break_icv=True)))
    again = lab.request(s, 5.0)
    steps.record("answer with a flipped ICV bit", "ignored: the request retransmitted", _describe(again),
                 ok=_is_retransmission(again, first))
    assert again is not None, "the IUT neither retransmitted its request nor sent anything else"
    assert _is_retransmission(again, first), f"the IUT took a response with a broken ICV: {_describe(again)}"
    lab.answer(s, again)


@part("IKE.SGW-I.RESP.3", "An unprotected response (no SK payload) is ignored: the IUT retransmits its request",
      ["rfc7296-1.4-a", "rfc7296-2.1-f"])
def test_response_unprotected_ignored(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    first = _first_request(lab, s, steps)
    lab.ike.send(s.response(first.exchange, [], encrypt=False))
    again = lab.request(s, 5.0)
    steps.record("answer with a header and no payload (no SK)", "ignored: the request retransmitted",
                 _describe(again), ok=_is_retransmission(again, first))
    assert again is not None, "the IUT neither retransmitted its request nor sent anything else"
    assert _is_retransmission(again, first), f"the IUT took an unprotected response: {_describe(again)}"
    lab.answer(s, again)


# ----------------------------------------------------------------------------- child SA rekey: the request

@part("IKE.SGW-I.CHILD.1", "The IUT's child SA rekey carries N(REKEY_SA), protocol ESP, with its inbound SPI of the old child SA",
      ["rfc7296-1.3.3-a", "rfc7296-3.10-a"])
def test_rekey_notify(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    old = s.children[0]
    msg = _rekey_request(lab, s, steps)
    n = msg.notify(c.N_REKEY_SA).fields
    ok = n.get("protocol") == c.PROTO_ESP and n.get("spi_size") == 4 and n.get("spi") == old.spi_out
    steps.record("N(REKEY_SA)", f"protocol 3 (ESP), SPI size 4, SPI {old.spi_out.hex()} (the IUT's inbound SPI)",
                 f"protocol {n.get('protocol')}, SPI size {n.get('spi_size')}, SPI {n.get('spi', b'').hex()}", ok=ok)
    assert n.get("protocol") == c.PROTO_ESP, f"REKEY_SA protocol {n.get('protocol')}, not ESP"
    assert n.get("spi_size") == 4 and n.get("spi") == old.spi_out, (
        f"REKEY_SA names SPI {n.get('spi', b'').hex()}, not the IUT's inbound SPI {old.spi_out.hex()}"
        + (" (it names the tester's inbound SPI)" if n.get("spi") == old.spi_in else ""))


@part("IKE.SGW-I.CHILD.2", "The rekey's SA payload: ESP proposals numbered from 1, each with a new 4-octet SPI; AES-GCM without an integrity transform",
      ["rfc7296-3.3-c", "rfc7296-3.3-d", "rfc7296-3.3.1-b", "rfc7296-3.3-e"])
def test_rekey_sa_payload(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    old = s.children[0]
    msg = _rekey_request(lab, s, steps)
    props = msg.get(c.SA).fields["proposals"] if msg.get(c.SA) is not None else []
    desc = [(p["number"], p["protocol"], p["spi"].hex(), [(t["type"], t["id"]) for t in p["transforms"]]) for p in props]
    steps.record("the SA payload", "ESP proposals 1, 2, ..., each SPI 4 octets, new", desc)
    assert props, f"no SA payload or no proposal: {_describe(msg)}"
    assert [p["number"] for p in props] == list(range(1, len(props) + 1)), \
        f"proposal numbers {[p['number'] for p in props]}, not 1, 2, ..."
    for p in props:
        assert p["protocol"] == c.PROTO_ESP, f"proposal {p['number']} protocol {p['protocol']}, not ESP"
        assert len(p["spi"]) == 4 and p["spi"] != bytes(4), f"proposal {p['number']} SPI {p['spi'].hex()}"
        assert p["spi"] not in (old.spi_out, old.spi_in), f"proposal {p['number']} reuses the old SPI {p['spi'].hex()}"
        encr = [t for t in p["transforms"] if t["type"] == c.T_ENCR]
        integ = [t for t in p["transforms"] if t["type"] == c.T_INTEG and t["id"] != c.AUTH_NONE]
        if encr and all(t["id"] == c.ENCR_AES_GCM_16 for t in encr):
            assert not integ, f"proposal {p['number']} pairs AES-GCM with integrity {[t['id'] for t in integ]}"


@part("IKE.SGW-I.CHILD.3", "The rekey's Ni is 16 to 256 octets and fresh (not a nonce of IKE_SA_INIT)",
      ["rfc7296-3.9-a", "rfc7296-3.9-b", "rfc7296-2.10-a"])
def test_rekey_nonce(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    ni = msg.get(c.NONCE).fields["data"] if msg.get(c.NONCE) is not None else b""
    ok = 16 <= len(ni) <= 256 and ni not in (s.ni, s.nr)
    steps.record("Ni", "16 to 256 octets, not Ni/Nr of IKE_SA_INIT", f"{len(ni)} octets", ok=ok)
    assert msg.get(c.NONCE) is not None, f"no Nonce payload: {_describe(msg)}"
    assert 16 <= len(ni) <= 256, f"Ni of {len(ni)} octets"
    assert ni not in (s.ni, s.nr), "Ni repeats a nonce of IKE_SA_INIT"


def _covers(outer, inner):
    """Every selector of `inner` lies within one of `outer` (addresses, ports, protocol)."""
    import ipaddress

    def within(a, b):
        return ((b["protocol"] in (0, a["protocol"])) and b["start_port"] <= a["start_port"] and a["end_port"] <= b["end_port"]
                and ipaddress.ip_address(b["start"]) <= ipaddress.ip_address(a["start"])
                and ipaddress.ip_address(a["end"]) <= ipaddress.ip_address(b["end"]))
    return all(any(within(a, b) for b in outer) for a in inner)


def _ts_key(sels):
    return sorted((t.get("start"), t.get("end"), t.get("protocol"), t.get("start_port"), t.get("end_port")) for t in sels)


@part("IKE.SGW-I.CHILD.4", "The rekey's TSi/TSr are those of the old child SA (never narrower)",
      ["rfc7296-2.9.2-a", "rfc7296-2.9.2-b", "rfc7296-2.8-c"])
def test_rekey_ts(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    old = s.children[0]
    msg = _rekey_request(lab, s, steps)
    tsi, tsr = msg.get(c.TSI), msg.get(c.TSR)
    # the IUT initiates this exchange: its TSi is its own side (the tester's TSr of IKE_AUTH)
    got_i = tsi.fields.get("selectors", []) if tsi is not None else []
    got_r = tsr.fields.get("selectors", []) if tsr is not None else []
    steps.record("TSi, TSr", f"TSi {_ts_key(old.ts_remote)}, TSr {_ts_key(old.ts_local)}",
                 f"TSi {_ts_key(got_i) if tsi else 'none'}, TSr {_ts_key(got_r) if tsr else 'none'}")
    assert tsi is not None and tsr is not None, f"no TSi/TSr in the rekey request: {_describe(msg)}"
    assert _covers(got_i, old.ts_remote) and _covers(got_r, old.ts_local), \
        f"the rekey narrows the traffic selectors: TSi {_ts_key(got_i)}, TSr {_ts_key(got_r)}"
    should(_ts_key(got_i) == _ts_key(old.ts_remote) and _ts_key(got_r) == _ts_key(old.ts_local),
           "the rekey proposes the old child SA's traffic selectors")


@part("IKE.SGW-I.CHILD.5", "The rekey carries no KE payload unless a proposal names a Diffie-Hellman group, and then one of those groups",
      ["rfc7296-3.4-c", "rfc7296-1.3-a", "rfc7296-3.4-b"])
def test_rekey_ke_consistent(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    props = msg.get(c.SA).fields["proposals"] if msg.get(c.SA) is not None else []
    groups = [t["id"] for p in props for t in p["transforms"] if t["type"] == c.T_DH and t["id"] != 0]
    ke = msg.get(c.KE)
    ok = (ke is None and not groups) or (ke is not None and ke.fields.get("group") in groups)
    steps.record("KE and the proposals' DH groups", "no KE without a DH group; else KE of an offered group",
                 f"KE {ke.fields.get('group') if ke else None}, groups {groups}", ok=ok)
    if ke is None:
        assert not groups, f"the proposals name DH groups {groups} but no KEi is sent"
    else:
        assert groups, f"KEi (group {ke.fields.get('group')}) although no proposal names a DH group"
        assert ke.fields.get("group") in groups, f"KEi group {ke.fields.get('group')} is not offered ({groups})"


# ----------------------------------------------------------------------------- child SA rekey: after the answer

@part("IKE.SGW-I.CHILD.6", "After the tester answers the rekey, the new child SA carries data both ways",
      ["rfc7296-2.17-a", "rfc7296-2.17-b"])
def test_rekey_new_child_works(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    new = _accept_child_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_child", SLACK)   # the Delete of the old SA: the IUT has installed the new one
    if d is not None:
        lab.answer(s, d)
    got = lab.ping(s, new, replies=[new])
    steps.record("ICMP echo sealed on the new child SA", "the echo reply through the new child SA",
                 got is not None, ok=got is not None)
    assert got is not None, "no echo reply through the new child SA (KEYMAT from this exchange's nonces, 2.17)"


@part("IKE.SGW-I.CHILD.7", "After the rekey the IUT deletes the old child SA: D(ESP) naming its old inbound SPI, on the same IKE SA",
      ["rfc7296-1.4.1-b", "rfc7296-3.11-c", "rfc7296-1.4-c", "rfc7296-2.4-h"])
def test_rekey_deletes_old(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    new = _accept_child_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_child", SLACK)
    spis = _deleted(d) if d is not None else []
    dp = d.get(c.DELETE).fields if d is not None else {}
    steps.record("wait for the IUT's next request", f"INFORMATIONAL {{D(ESP, {old.spi_out.hex()})}}",
                 f"{_describe(d)} SPIs {[x.hex() for x in spis]}", ok=spis == [old.spi_out])
    assert d is not None, f"no Delete of the old child SA within {SLACK:g} s of the rekey"
    assert dp.get("protocol") == c.PROTO_ESP and dp.get("spi_size") == 4, f"Delete payload {dp}"
    assert old.spi_out in spis, (f"the Delete names {[x.hex() for x in spis]}, not the IUT's old inbound SPI "
                                 f"{old.spi_out.hex()}" + (" (it names the tester's SPI)" if old.spi_in in spis else ""))
    assert new.spi_out not in spis, "the IUT deletes the new child SA"
    lab.answer(s, d)


@part("IKE.SGW-I.CHILD.8", "Once the old child SA's Delete is answered, the old SA carries no data; the new one does",
      ["rfc7296-1.4.1-a"])
def test_rekey_old_gone(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    new = _accept_child_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_child", SLACK)
    if d is None or old.spi_out not in _deleted(d):
        inconclusive(f"no Delete of the old child SA: {_describe(d)}")
    lab.answer(s, d)
    time.sleep(0.05)
    got = lab.ping(s, new, replies=[new, old])
    steps.record("ICMP echo sealed on the new child SA", "the echo reply through the new SA",
                 None if got is None else got.spi_in.hex(), ok=got is new)
    assert got is not None, "no echo reply through the new child SA"
    assert got is new, "the IUT still sends on the old child SA after deleting it"
    dead = lab.ping(s, old, replies=[new, old], timeout=QUIET, tries=1)
    steps.record("ICMP echo sealed on the deleted old child SA", "no echo reply", dead is not None, ok=dead is None)
    assert dead is None, "the IUT still accepts data on the old child SA it deleted"


@part("IKE.SGW-I.CHILD.9", "Make before break: the old child SA carries data while the rekey is outstanding and right after it",
      ["rfc7296-2.8.1-b"])
def test_rekey_make_before_break(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    got = lab.ping(s, old)
    steps.record("hold the rekey; ICMP echo sealed on the old child SA", "the echo reply", got is not None,
                 ok=got is not None)
    assert got is not None, "the old child SA stopped carrying data before the rekey was answered"
    new = _accept_child_rekey(lab, s, msg, steps)
    got = lab.ping(s, old, replies=[old, new])
    steps.record("at once, ICMP echo sealed on the old child SA (both SAs can receive until the IUT deletes the old)",
                 "the echo reply (on either SA)", got is not None, ok=got is not None)
    should(got is not None, "the old inbound SA still accepts data right after the rekey completes")


@part("IKE.SGW-I.CHILD.10", "While its child SA rekey is unanswered, the IUT answers the tester's request",
      ["rfc7296-2.3-c"])
def test_answers_during_rekey(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    resp = lab.alive(s)
    steps.record("hold the rekey; send an empty INFORMATIONAL", "an INFORMATIONAL response", _describe(resp),
                 ok=resp is not None)
    assert resp is not None, "the IUT did not answer our request while its own rekey was outstanding"
    assert resp.ok and resp.exchange == c.INFORMATIONAL, _describe(resp)
    lab.answer(s, msg)


# ----------------------------------------------------------------------------- child SA rekey refused

def _refused_keeps_old(ike, steps, ntype):
    lab, s = _setup(ike, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    _error_answer(lab, s, msg, ntype)
    steps.record(f"answer the rekey with N({c.notify_name(ntype)})", "the rekey fails; the old child SA stays")
    late = None
    end = time.monotonic() + QUIET
    while late is None and (left := end - time.monotonic()) > 0:
        d = lab.serve(s, ("delete_child", "delete_ike"), left)
        if d is None:
            break
        if _closes(lab, old, d):
            late = d
        lab.answer(s, d)
    steps.record("the IUT's requests in the next moment", "no Delete of the old child SA or of the IKE SA",
                 _describe(late), ok=late is None)
    got = lab.ping(s, old)
    alive = lab.alive(s)
    steps.record("ICMP echo through the old child SA; empty INFORMATIONAL", "both answered",
                 f"echo {got is not None}; {_describe(alive)}", ok=got is not None and alive is not None)
    assert alive is not None, f"the IKE SA is gone after a refused child SA rekey ({c.notify_name(ntype)})"
    assert got is not None, f"the old child SA stopped carrying data after a refused rekey ({c.notify_name(ntype)})"
    should(late is None, f"the IUT keeps the old child SA and the IKE SA after {c.notify_name(ntype)} "
                         f"(it sent {_describe(late)})")


@part("IKE.SGW-I.CHILD.11", "A rekey answered with NO_PROPOSAL_CHOSEN fails: the old child SA and the IKE SA keep working",
      ["rfc7296-1.3.1-c"])
def test_rekey_no_proposal(ike_timers, steps):
    _refused_keeps_old(ike_timers, steps, c.N_NO_PROPOSAL_CHOSEN)


@part("IKE.SGW-I.CHILD.12", "A rekey answered with TEMPORARY_FAILURE fails: the old child SA and the IKE SA keep working",
      ["rfc7296-1.3.1-c"])
def test_rekey_temporary_failure(ike_timers, steps):
    _refused_keeps_old(ike_timers, steps, c.N_TEMPORARY_FAILURE)


@part("IKE.SGW-I.CHILD.13", "After TEMPORARY_FAILURE the IUT does not retry the rekey at once",
      ["rfc7296-2.25-b"])
def test_rekey_no_immediate_retry(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    spi = msg.notify(c.N_REKEY_SA).fields.get("spi")
    _error_answer(lab, s, msg, c.N_TEMPORARY_FAILURE)
    window = 2 * QUIET
    again = lab.serve(s, "rekey_child", window)
    same = again is not None and again.notify(c.N_REKEY_SA).fields.get("spi") == spi
    steps.record("answer with N(TEMPORARY_FAILURE); watch the next requests",
                 f"no new rekey of the same child SA within {window:g} s",
                 "nothing" if again is None else f"{_describe(again)} after {again.t - msg.t:.2f} s", ok=not same)
    assert not same, f"the IUT retried the rekey {again.t - msg.t:.2f} s after TEMPORARY_FAILURE"


@part("IKE.SGW-I.CHILD.15", "A rekey refused with NO_ADDITIONAL_SAS is not tried again: the IUT deletes the old child SA (and creates a new one) instead",
      ["rfc7296-4-f"])
def test_rekey_no_additional_sas(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    _error_answer(lab, s, msg, c.N_NO_ADDITIONAL_SAS)
    seen, retried, closed = [], None, False
    end = time.monotonic() + CHILD_REKEY_AFTER + SLACK
    while (left := end - time.monotonic()) > 0:
        r = lab.request(s, left)
        if r is None:
            break
        seen.append(r)
        if _closes(lab, old, r):
            closed = True
            break
        if _kind(r) == "rekey_child" and r.notify(c.N_REKEY_SA).fields.get("spi") == old.spi_out:
            retried = r
            _error_answer(lab, s, r, c.N_NO_ADDITIONAL_SAS)
            break
        lab.answer(s, r)
    steps.record(f"answer with N(NO_ADDITIONAL_SAS); watch the IUT's requests for {CHILD_REKEY_AFTER + SLACK:g} s",
                 "no new rekey of the old child SA (a Delete of it, or of the IKE SA, may come)",
                 [_describe(r) for r in seen] or "nothing", ok=retried is None)
    assert retried is None, (f"the IUT rekeys the old child SA again {retried.t - msg.t:.2f} s after NO_ADDITIONAL_SAS "
                             "instead of deleting it and creating a new one")
    steps.record("the old child SA deleted within that time", "", closed)


# ----------------------------------------------------------------------------- simultaneous child SA rekey

def _collide_start(lab, s, steps, our_ni):
    """The IUT's rekey (held), then ours of the same child SA with Ni `our_ni`, and the IUT's answer.
    Returns (the IUT's request, the old child SA, the child SA of our exchange, the IUT's response)."""
    req = _rekey_request(lab, s, steps)
    old = _old_child(s, req)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(req)}")
    s.handle_create_child_request(req.raw)
    req.offer = s.pending
    resp = lab.exchange(s, s.create_child_request(rekey=old, nonce=our_ni))
    resp_msg, mine = s.handle_create_child_response(resp.raw) if resp is not None else (None, None)
    steps.record(f"hold it; send our own rekey of the same child SA (N(REKEY_SA, {old.spi_in.hex()}), "
                 f"Ni {our_ni[:4].hex()}...)", "answered as usual: SA, Nr, TSi, TSr", _describe(resp),
                 ok=mine is not None)
    return req, old, mine, resp_msg


def _collide_finish(lab, s, steps, req, our_nr):
    """Answer the IUT's held rekey with Nr `our_nr`: the child SA of its exchange."""
    s.pending = req.offer
    before = list(s.children)
    lab.reply(req, s.create_child_response(nonce=our_nr))
    theirs = next((ch for ch in s.children if ch not in before), None)
    steps.record(f"answer the IUT's rekey (Nr {our_nr[:4].hex()}...)", "",
                 f"child SA in {theirs.spi_in.hex()} out {theirs.spi_out.hex()}" if theirs else "")
    return theirs


def _collide(lab, s, steps, our_ni, our_nr):
    req, old, mine, resp = _collide_start(lab, s, steps, our_ni)
    if mine is None:
        inconclusive(f"the IUT refused our colliding rekey: {_describe(resp)}")
    theirs = _collide_finish(lab, s, steps, req, our_nr)
    return old, mine, theirs, req, resp


@part("IKE.SGW-I.COLL.1", "A rekey of the child SA the IUT is itself rekeying is answered as usual (no refusal)",
      ["rfc7296-2.25.1-b", "rfc7296-2.3-c"])
def test_collision_answered(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    req, old, mine, resp = _collide_start(lab, s, steps, os.urandom(32))
    assert resp is not None, "the IUT did not answer our rekey while its own rekey was outstanding"
    should(mine is not None, f"the colliding rekey answered with SA, Nr, TSi, TSr (got {_describe(resp)})")
    _collide_finish(lab, s, steps, req, os.urandom(32))


@part("IKE.SGW-I.COLL.2", "During a rekey collision the IUT accepts data on both the old child SA and the one our rekey made",
      ["rfc7296-2.8.1-b", "rfc7296-2.8-f"])
def test_collision_both_receive(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    req, old, mine, resp = _collide_start(lab, s, steps, os.urandom(32))
    if mine is None:
        inconclusive(f"the IUT refused our colliding rekey: {_describe(resp)}")
    got_mine = lab.ping(s, mine)
    got_old = lab.ping(s, old)
    steps.record("its rekey still held: ICMP echo sealed on the child SA of our rekey, then on the old one",
                 "both answered", f"ours {got_mine is not None}, old {got_old is not None}",
                 ok=got_mine is not None and got_old is not None)
    assert got_mine is not None, "the child SA the IUT just created in answer to our rekey does not accept data"
    assert got_old is not None, "the old child SA stopped accepting data during the collision"
    _collide_finish(lab, s, steps, req, os.urandom(32))


def _collision_outcome(lab, s, steps, old, mine, theirs, our_delete):
    """After a collision: send our Delete (of `our_delete`), answer the IUT's requests for a moment;
    the SPIs (the IUT's inbound) it deleted."""
    resp = lab.exchange(s, s.delete_request([our_delete.spi_in]))
    steps.record(f"delete {('the old child SA' if our_delete is old else 'our redundant child SA')} "
                 f"(D(ESP, {our_delete.spi_in.hex()}))", f"D(ESP, {our_delete.spi_out.hex()})", _describe(resp),
                 ok=resp is not None and our_delete.spi_out in _deleted(resp))
    if resp is not None:
        s.children.remove(our_delete)
    deleted = []
    end = time.monotonic() + SLACK
    while (left := end - time.monotonic()) > 0:
        d = lab.serve(s, "delete_child", left)
        if d is None:
            break
        deleted += _deleted(d)
        lab.answer(s, d)
        if any(spi in deleted for spi in (old.spi_out, mine.spi_out, theirs.spi_out) if spi != our_delete.spi_out):
            break
    return deleted


@part("IKE.SGW-I.COLL.3", "Rekey collision, lowest nonce in the IUT's exchange: the IUT deletes the SA it created, keeps ours",
      ["rfc7296-2.8.1-c"])
def test_collision_iut_loses(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    old, mine, theirs, req, resp = _collide(lab, s, steps, HIGH, LOW)
    if mine is None or theirs is None:
        inconclusive(f"no two new child SAs: {_describe(resp)}")
    deleted = _collision_outcome(lab, s, steps, old, mine, theirs, old)
    steps.record("the IUT's Deletes (the lowest nonce, our Nr, is in the IUT's exchange)",
                 f"D(ESP, {theirs.spi_out.hex()}) (its redundant SA); not {mine.spi_out.hex()} (the survivor)",
                 [x.hex() for x in deleted], ok=theirs.spi_out in deleted and mine.spi_out not in deleted)
    should(mine.spi_out not in deleted, "the IUT keeps the surviving child SA (of the exchange without the lowest nonce)")
    should(theirs.spi_out in deleted, "the IUT deletes the redundant child SA its own exchange created")
    got = lab.ping(s, mine)
    steps.record("ICMP echo through the surviving child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None or mine.spi_out in deleted, "the surviving child SA does not carry data"


@part("IKE.SGW-I.COLL.4", "Rekey collision, lowest nonce in the tester's exchange: the IUT deletes the old SA, keeps its own new one",
      ["rfc7296-2.8.1-c"])
def test_collision_iut_wins(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    old, mine, theirs, req, resp = _collide(lab, s, steps, LOW, HIGH)
    if mine is None or theirs is None:
        inconclusive(f"no two new child SAs: {_describe(resp)}")
    deleted = _collision_outcome(lab, s, steps, old, mine, theirs, mine)
    steps.record("the IUT's Deletes (the lowest nonce, our Ni, is in the tester's exchange)",
                 f"D(ESP, {old.spi_out.hex()}) (the old SA); not {theirs.spi_out.hex()} (the survivor)",
                 [x.hex() for x in deleted], ok=old.spi_out in deleted and theirs.spi_out not in deleted)
    should(theirs.spi_out not in deleted, "the IUT keeps the surviving child SA (its own exchange's)")
    should(old.spi_out in deleted, "the IUT, initiator of the surviving rekey, deletes the old child SA")
    got = lab.ping(s, theirs)
    steps.record("ICMP echo through the surviving child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None or theirs.spi_out in deleted, "the surviving child SA does not carry data"


# ----------------------------------------------------------------------------- IKE SA rekey

@part("IKE.SGW-I.IKEREKEY.1", "The IUT's IKE SA rekey: SA with IKE proposals carrying a new, non-zero 8-octet SPI; no TS, no REKEY_SA",
      ["rfc7296-2.6-a", "rfc7296-3.3-d", "rfc7296-3.3-c"])
def test_ike_rekey_sa(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    props = msg.get(c.SA).fields["proposals"]
    desc = [(p["number"], p["protocol"], p["spi"].hex()) for p in props]
    steps.record("the SA payload", "IKE proposals 1, 2, ..., SPI 8 octets, new, not zero", desc)
    assert [p["number"] for p in props] == list(range(1, len(props) + 1)), f"proposal numbers {desc}"
    for p in props:
        assert p["protocol"] == c.PROTO_IKE, f"proposal {p['number']} protocol {p['protocol']}"
        assert len(p["spi"]) == 8, f"proposal {p['number']} SPI of {len(p['spi'])} octets, not 8"
        assert p["spi"] not in (bytes(8), s.spi_r, s.spi_i), f"proposal {p['number']} SPI {p['spi'].hex()} is not new"
    assert msg.get(c.TSI) is None and msg.get(c.TSR) is None, "TS payloads in an IKE SA rekey"
    assert msg.notify(c.N_REKEY_SA) is None, "N(REKEY_SA) in an IKE SA rekey"


@part("IKE.SGW-I.IKEREKEY.2", "The IUT's IKE SA rekey carries KEi of a group its proposals name (a new Diffie-Hellman exchange)",
      ["rfc7296-1.3.2-a", "rfc7296-2.18-a", "rfc7296-3.4-b", "rfc7296-2.18-b"])
def test_ike_rekey_ke(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    ke = msg.get(c.KE)
    props = msg.get(c.SA).fields["proposals"]
    groups = [t["id"] for p in props for t in p["transforms"] if t["type"] == c.T_DH]
    steps.record("KEi and the proposals' DH groups", "KEi of a group offered; no group NONE",
                 f"KE {ke.fields.get('group') if ke else None} ({len(ke.fields.get('data', b'')) if ke else 0} octets), "
                 f"groups {groups}", ok=ke is not None and ke.fields.get("group") in groups and 0 not in groups)
    assert ke is not None, f"no KEi in the IKE SA rekey: {_describe(msg)}"
    assert ke.fields.get("group") in groups, f"KEi group {ke.fields.get('group')} not offered ({groups})"
    assert 0 not in groups, "an IKE SA rekey proposes DH group NONE"
    assert ke.fields.get("data"), "an empty Key Exchange Data"


@part("IKE.SGW-I.IKEREKEY.3", "The IUT's IKE SA rekey carries a fresh Ni of 16 to 256 octets",
      ["rfc7296-3.9-a", "rfc7296-3.9-b", "rfc7296-2.10-a"])
def test_ike_rekey_nonce(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    ni = msg.get(c.NONCE).fields["data"] if msg.get(c.NONCE) is not None else b""
    steps.record("Ni", "16 to 256 octets, not a nonce of IKE_SA_INIT", f"{len(ni)} octets",
                 ok=16 <= len(ni) <= 256 and ni not in (s.ni, s.nr))
    assert msg.get(c.NONCE) is not None, "no Nonce payload"
    assert 16 <= len(ni) <= 256, f"Ni of {len(ni)} octets"
    assert ni not in (s.ni, s.nr), "Ni repeats a nonce of IKE_SA_INIT"


@part("IKE.SGW-I.IKEREKEY.4", "After the IKE SA rekey the IUT deletes the old IKE SA: D(IKE) on the old SA, its last request there",
      ["rfc7296-2.8-d", "rfc7296-1.4-b", "rfc7296-3.11-c"])
def test_ike_rekey_deletes_old(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    _accept_ike_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_ike", SLACK)
    dp = next((x.fields for x in d.get_all(c.DELETE) if x.fields.get("protocol") == c.PROTO_IKE), {}) if d else {}
    steps.record("wait for the IUT's next request on the old IKE SA", "INFORMATIONAL {D(IKE)}, SPI size 0, no SPI",
                 f"{_describe(d)} {dp}", ok=bool(dp) and dp.get("spi_size") == 0 and not dp.get("spis"))
    assert d is not None, f"no Delete of the old IKE SA within {SLACK:g} s of the rekey"
    assert dp.get("spi_size") == 0 and not dp.get("spis"), f"D(IKE) with SPI size {dp.get('spi_size')}"
    lab.answer(s, d)
    late = lab.request(s, QUIET, follow=False)
    steps.record("answer it; wait on the old IKE SA", "no further request there", _describe(late), ok=late is None)
    assert late is None or _is_retransmission(late, d), f"a request on the old IKE SA after its Delete: {_describe(late)}"


@part("IKE.SGW-I.IKEREKEY.5", "The new IKE SA answers the tester's requests from Message ID 0, with the I flag set (the IUT is its original initiator)",
      ["rfc7296-2.18-c", "rfc7296-3.1-m"])
def test_ike_rekey_new_sa_answers(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    new = _accept_ike_rekey(lab, s, msg, steps)
    resp = lab.alive(new)
    steps.record("empty INFORMATIONAL on the new IKE SA, Message ID 0, I clear", "its response, Message ID 0, flags I|R",
                 f"{_describe(resp)}" + (f" flags 0x{resp.flags:02x}" if resp else ""),
                 ok=resp is not None and resp.ok and resp.initiator)
    assert resp is not None, "no answer on the new IKE SA (new keys, Message ID 0)"
    assert resp.ok and resp.message_id == 0, f"{_describe(resp)} {resp.reason}"
    assert resp.initiator, f"flags 0x{resp.flags:02x}: the new IKE SA's original initiator (the IUT) must set I"
    again = lab.alive(new)
    assert again is not None and again.message_id == 1, f"no answer to Message ID 1: {_describe(again)}"


@part("IKE.SGW-I.IKEREKEY.6", "The IUT's first request on the new IKE SA carries Message ID 0 and the I flag",
      ["rfc7296-2.18-c", "rfc7296-3.1-m"])
def test_ike_rekey_new_sa_requests(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    new = _accept_ike_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_ike", SLACK)
    if d is not None:
        lab.answer(s, d)
    first = lab.request(new, max(DPD_AFTER, CHILD_REKEY_AFTER) + SLACK)
    steps.record("wait for the IUT's first request on the new IKE SA", "Message ID 0, flags I (R clear)",
                 f"{_describe(first)}" + (f" flags 0x{first.flags:02x}" if first else ""),
                 ok=first is not None and first.message_id == 0 and first.initiator and not first.response)
    if first is None:
        inconclusive("the IUT sent no request on the new IKE SA")
    assert first.ok, f"the request does not open with the new IKE SA's keys: {first.reason}"
    assert first.message_id == 0, f"the first request on the new IKE SA carries Message ID {first.message_id}"
    assert first.initiator, f"flags 0x{first.flags:02x}: I clear, though the IUT is the new IKE SA's original initiator"
    lab.answer(new, first)


@part("IKE.SGW-I.IKEREKEY.7", "The child SA moves to the new IKE SA: it carries data after the old IKE SA is deleted, and its next rekey comes on the new one",
      ["rfc7296-1.4-c", "rfc7296-2.8-d"])
def test_ike_rekey_children_move(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _ike_rekey_request(lab, s, steps)
    new = _accept_ike_rekey(lab, s, msg, steps)
    d = lab.serve(s, "delete_ike", SLACK)
    if d is None:
        inconclusive("the IUT did not delete the old IKE SA")
    lab.answer(s, d)
    child = new.children[-1]
    got = lab.ping(new, child)
    steps.record("ICMP echo through the child SA after the old IKE SA's Delete", "the echo reply", got is not None,
                 ok=got is not None)
    assert got is not None, "the child SA was closed with the old IKE SA"
    nxt = lab.serve(new, ("rekey_child", "delete_child"), CHILD_REKEY_AFTER + SLACK)
    n = nxt.notify(c.N_REKEY_SA) if nxt is not None and _kind(nxt) == "rekey_child" else None
    names = n.fields.get("spi") if n is not None else (_deleted(nxt) if nxt is not None else None)
    steps.record("wait for the IUT's next exchange about the child SA", "on the new IKE SA, naming a child SA it holds",
                 f"{_describe(nxt)}", ok=nxt is not None)
    if nxt is None:
        inconclusive("no further child SA exchange on the new IKE SA")
    known = {ch.spi_out for ch in new.children}
    assert (names in known) if n is not None else any(x in known for x in names), \
        f"the exchange on the new IKE SA names no child SA that moved there: {_describe(nxt)}"


def _ike_rekey_refused(ike, steps, ntype):
    lab, s = _setup(ike, steps)
    msg = _ike_rekey_request(lab, s, steps)
    _error_answer(lab, s, msg, ntype)
    steps.record(f"answer the IKE SA rekey with N({c.notify_name(ntype)})", "the rekey fails; the IKE SA stays")
    late = lab.serve(s, ("delete_ike", "rekey_ike"), 2 * QUIET)
    alive = lab.alive(s)
    got = lab.ping(s, s.children[-1])
    steps.record("empty INFORMATIONAL on the IKE SA; ICMP echo through the child SA", "both answered",
                 f"{_describe(alive)}; echo {got is not None}", ok=alive is not None and got is not None)
    assert alive is not None, f"the IKE SA is gone after a refused IKE SA rekey ({c.notify_name(ntype)})"
    assert got is not None, "the child SA stopped carrying data after a refused IKE SA rekey"
    return late, msg


@part("IKE.SGW-I.IKEREKEY.8", "An IKE SA rekey answered with NO_PROPOSAL_CHOSEN fails: the IKE SA and its child SA keep working",
      ["rfc7296-1.3.1-c"])
def test_ike_rekey_no_proposal(ike_timers, steps):
    late, _ = _ike_rekey_refused(ike_timers, steps, c.N_NO_PROPOSAL_CHOSEN)
    should(late is None or _kind(late) != "delete_ike", f"the IUT keeps the IKE SA after NO_PROPOSAL_CHOSEN ({_describe(late)})")


@part("IKE.SGW-I.IKEREKEY.9", "After TEMPORARY_FAILURE to its IKE SA rekey the IUT keeps the IKE SA and does not retry at once",
      ["rfc7296-2.25-b"])
def test_ike_rekey_temporary_failure(ike_timers, steps):
    late, msg = _ike_rekey_refused(ike_timers, steps, c.N_TEMPORARY_FAILURE)
    retry = late is not None and _kind(late) == "rekey_ike"
    steps.record("the IUT's requests in the next moment", "no new IKE SA rekey at once",
                 _describe(late) + (f" after {late.t - msg.t:.2f} s" if late is not None else ""), ok=not retry)
    assert not retry, f"the IUT retried the IKE SA rekey {late.t - msg.t:.2f} s after TEMPORARY_FAILURE"


# ----------------------------------------------------------------------------- last: a response that may stop the IUT
# (kept at the end of the module: this response has been seen to end an IUT's daemon, and every part
# after it in the same world would then find no IUT)

@part("IKE.SGW-I.CHILD.14", "A rekey response with an unrecognised error notify fails as a whole: the IUT keeps the old child SA",
      ["rfc7296-3.10.1-a"])
def test_rekey_unknown_error(ike_timers, steps):
    lab, s = _setup(ike_timers, steps)
    msg = _rekey_request(lab, s, steps)
    old = _old_child(s, msg)
    if old is None:
        inconclusive(f"the rekey names no child SA of the tester: {_describe(msg)}")
    s.handle_create_child_request(msg.raw)
    lab.reply(msg, s.create_child_response(extra=[m.notify(8191)]))
    steps.record("answer the rekey with SA, Nr, TSi, TSr and an unrecognised error N(8191)",
                 "the exchange failed: no Delete of the old child SA")
    gone, d = False, None
    end = time.monotonic() + 2 * QUIET
    while not gone and (left := end - time.monotonic()) > 0:
        d = lab.serve(s, ("delete_child", "delete_ike"), left)
        if d is None:
            break
        gone = _closes(lab, old, d)
        lab.answer(s, d)
    steps.record("the IUT's requests in the next second", "no Delete of the old child SA", _describe(d), ok=not gone)
    assert not gone, f"the IUT took the failed rekey as done and deleted the old child SA: {_describe(d)}"
    got = lab.ping(s, old)
    steps.record("ICMP echo sealed on the old child SA", "the echo reply", got is not None, ok=got is not None)
    assert got is not None, "the old child SA does not carry data after the failed rekey"
    # an IUT that goes down over the answer may still pass the echo on its way down: its IKE SA must
    # still answer after it (the exchange failed, nothing else did)
    alive = lab.alive(s)
    steps.record("empty INFORMATIONAL on the IKE SA", "its response", _describe(alive), ok=alive is not None)
    assert alive is not None, "the IUT no longer answers on its IKE SA after the failed rekey"
