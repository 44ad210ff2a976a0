"""The IKEv2 tester in the gateway's place: inside node g (which holds G_e) it binds UDP 500 and 4500
and a raw ESP socket and answers a remote-access client under test as the IKE responder, with the
preambles the EN-I parts share (accept IKE_SA_INIT, complete IKE_AUTH, see the client's data through
the child SA) and its transcript for the report. testbed/conformance/ike_env.py is the same glue for
the tester in the client's place.

The client initiates by itself when its role starts; the fixture (cases/conformance/ike_client)
starts it with the tester already listening, so each part begins with the client's first
IKE_SA_INIT on its way. What the client sends is judged on the wire only: its IKE messages (parsed
and, once the tester holds the keys, decrypted) and its ESP (decrypted with the child SA's keys the
tester derived, RFC 7296 2.17).

Replies go back to the address and port a request came from, from the port it arrived at (RFC 7296
2.11): a client that floats to 4500 (a NAT detected, or faked to force UDP encapsulation) is
answered there, and its ESP in UDP is answered in UDP.
"""
from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.conformance import netns
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.esp import EspParsed
from testbed.conformance.ike.parse import ParsedMessage, parse_header, parse_message
from testbed.conformance.ike.session import IkeSession
from testbed.conformance.ike.transport import Received, UdpTransport
from testbed.report.verdicts import inconclusive

CP_ADDRESS = "10.1.3.7"      # the internal address the tester hands out (the pool of remote-access-basic)
GATEWAY_ID = "203.0.113.70"  # IDr: the gateway's address (ID_IPV4_ADDR), as a gateway without an identity


@dataclass
class Site:
    """Where the tester answers from and whom it expects."""
    node_pid: int        # node g's shell
    local: str           # G_e: the address the client is configured to reach
    client: str          # the client's address on its access network
    identity: str        # the client's identity and the pre-shared key both sides use
    psk: bytes
    inside_host: str     # H: an intranet host the client's data is sent to


@dataclass
class Echo:
    """What came of an ICMP echo the client node sent through its tunnel."""
    esp: Received | None = None          # the ESP packet that carried it (to the tester)
    opened: EspParsed | None = None      # its decryption with the child SA's keys
    inner: bytes = b""                   # the inner IPv4 packet
    answered: bool = False               # the tester sent the echo reply back through ESP
    ping_ok: bool | None = None          # the ping program got its reply (None: not waited for)
    others: list = field(default_factory=list)  # ESP that did not open with the child SA's keys

    @property
    def seen(self) -> bool:
        return self.opened is not None and self.opened.ok

    def describe(self) -> str:
        if not self.seen:
            extra = f", {len(self.others)} ESP packet(s) that do not open" if self.others else ""
            return "no ESP from the client" + extra if self.esp is None else f"ESP that does not open: {self.opened.reason}"
        p = self.inner
        src, dst = ".".join(map(str, p[12:16])), ".".join(map(str, p[16:20]))
        return (f"ESP SPI {self.opened.spi:08x} seq {self.opened.seq} ({'UDP ' + str(self.esp.dport) if self.esp.dport else 'IP 50'}): "
                f"inner {src} -> {dst} proto {p[9]}, reply {'sent' if self.answered else 'not sent'}, "
                f"ping {'ok' if self.ping_ok else 'failed' if self.ping_ok is False else 'not waited for'}")


@dataclass
class GatewayTester:
    """One test part's tester in the gateway's place: sockets in node g, the sessions it answered,
    and what it saw."""
    site: Site
    transport: UdpTransport
    world: object = None
    client_node: str = "r"
    sessions: list[IkeSession] = field(default_factory=list)
    ping_threads: list[threading.Thread] = field(default_factory=list)
    retransmit: float = 0.5
    # IKE_SA_INIT requests answered (their bytes -> our answer) and how many of their
    # retransmissions were answered again while the part waited for the client to go on
    init_answers: dict[bytes, bytes] = field(default_factory=dict)
    init_answered_again: int = 0

    @classmethod
    def open(cls, site: Site, world=None, client_node: str = "r") -> "GatewayTester":
        s500 = netns.udp_socket(site.node_pid, site.local, c.IKE_PORT)
        s4500 = netns.udp_socket(site.node_pid, site.local, c.NAT_T_PORT)
        esp = netns.raw_socket(site.node_pid, 50)
        return cls(site, UdpTransport(s500, s4500, esp, clock=time.time), world, client_node)

    def close(self) -> None:
        for t in self.ping_threads:
            t.join(5)
        for s in list(self.transport.socks.values()) + [self.transport.esp_raw]:
            if s is not None:
                s.close()

    # ---- receiving --------------------------------------------------------------------------
    def receive(self, match=None, timeout: float = 2.0, kind: str = "ike") -> Received | None:
        """The next datagram of `kind` from the client for which `match(received)` holds, or None
        after `timeout`; the others stay in the log (the ladder shows them)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.transport.recv(left)
            if r is None:
                return None
            if r.kind == kind and r.src == self.site.client and (match is None or match(r)):
                return r
        return None

    def request(self, session: IkeSession | None = None, exchange: int | None = None, timeout: float = 2.0,
                spi_i: bytes | None = None) -> Received | None:
        """The client's next request (R clear), on `session` (its SPIi) or with SPIi `spi_i`, of
        `exchange` when given."""
        want = session.spi_i if session is not None else spi_i

        r = self.receive(lambda x: _is_request(x, exchange, want), timeout)
        if r is not None and session is not None:
            self._follow(session, r)
        return r

    def init_request(self, timeout: float = 10.0, spi_i: bytes | None = None) -> Received | None:
        """The client's next IKE_SA_INIT request (the first one comes when the client starts)."""
        return self.request(exchange=c.IKE_SA_INIT, timeout=timeout, spi_i=spi_i)

    def answer_init(self, r: Received, data: bytes) -> None:
        """Answer the IKE_SA_INIT request `r` with `data` and keep the answer for its retransmissions."""
        self.init_answers[r.data] = data
        self.reply_raw(r, data)

    def _answered_again(self, r: Received) -> bool:
        """`r` is a retransmission of an IKE_SA_INIT request answered already: answer it again with
        the same bytes, as a responder does (RFC 7296 2.1; a client may drop a response that comes
        while it is still busy with the previous one, and then retransmits)."""
        answer = self.init_answers.get(r.data)
        if answer is None:
            return False
        self.reply_raw(r, answer)
        self.init_answered_again += 1
        return True

    def _progress(self, match, timeout: float) -> Received | None:
        """The next request for which `match` holds, answering retransmissions of IKE_SA_INIT
        requests answered already on the way: for the waits where the client is expected to go on
        (never for a part that judges whether the client retransmits)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.receive(lambda x: match(x) or x.data in self.init_answers, left)
            if r is None or not self._answered_again(r):
                return r
        return None

    def init_retry(self, timeout: float = 3.0) -> Received | None:
        """The client's next IKE_SA_INIT that is not a retransmission of one answered already (its
        retry after a COOKIE or an error notify)."""
        return self._progress(lambda r: _is_request(r, c.IKE_SA_INIT), timeout)

    def silence(self, session: IkeSession | None = None, timeout: float = 0.5, spi_i: bytes | None = None,
                exchange: int | None = None) -> Received | None:
        """A request of the client within `timeout` (None: it stayed silent)."""
        return self.request(session, exchange, timeout, spi_i)

    def response(self, session: IkeSession, mid: int | None, timeout: float = 2.0) -> ParsedMessage | None:
        """The client's response to our request `mid` on `session`, decrypted."""
        def match(r: Received) -> bool:
            h = parse_header(r.data)
            return h.ok and h.spi_i == session.spi_i and h.response and (mid is None or h.message_id == mid)
        r = self.receive(match, timeout)
        if r is None:
            return None
        return session.parse(r.data) if session.keys is not None else parse_message(r.data)

    # ---- sessions and sending ---------------------------------------------------------------
    def session_for(self, r: Received, **kw) -> IkeSession:
        """A responder session for the client's IKE_SA_INIT `r` (not yet handled)."""
        s = IkeSession(initiator=False, local=(self.site.local, r.dport), peer=(r.src, r.sport), **kw)
        self.sessions.append(s)
        return s

    @staticmethod
    def _follow(session: IkeSession, r: Received) -> None:
        """Answer where the client's last request came from (RFC 7296 2.11, 2.23)."""
        session.peer, session.local = (r.src, r.sport), (session.local[0], r.dport)

    def send(self, session: IkeSession, data: bytes, to: Received | None = None) -> None:
        """An IKE message to the client: to where `to` (a request) came from, else to where its last
        request on `session` came from."""
        if to is not None:
            addr, port, lport = to.src, to.sport, to.dport
        else:
            (addr, port), lport = session.peer, session.local[1]
        self.transport.send(data, addr, port, src_port=lport, kind="ike")

    def reply_raw(self, to: Received, data: bytes) -> None:
        self.transport.send(data, to.src, to.sport, src_port=to.dport, kind="ike")

    def exchange(self, session: IkeSession, data: bytes, timeout: float = 2.0) -> ParsedMessage | None:
        """Send a request of ours (the gateway's) on `session` and wait for the client's response,
        retransmitting it every `retransmit` seconds (a request sent right after IKE_AUTH may reach
        the client before it has taken the IKE_AUTH response in)."""
        mid = struct.unpack("!I", data[20:24])[0]
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            self.send(session, data)  # again (the same bytes) while unanswered, as a gateway retransmits
            resp = self.response(session, mid, min(left, self.retransmit))
            if resp is not None:
                return resp
        return None

    # ---- preambles --------------------------------------------------------------------------
    def first_init(self, timeout: float = 10.0) -> Received:
        """The client's first IKE_SA_INIT (it starts with the part); INCONCLUSIVE when none comes."""
        r = self.init_request(timeout)
        if r is None:
            inconclusive(f"no IKE_SA_INIT from the client {self.site.client} within {timeout} s")
        return r

    def requests(self, session: IkeSession, timeout: float = 0.5, answer: bool = True) -> list[ParsedMessage]:
        """Every request of the client on `session` within `timeout`, decrypted; with `answer`, each
        is answered with an empty response (as a gateway answers a Delete or a liveness check)."""
        got = []
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.request(session, timeout=left)
            if r is None:
                break
            msg = session.parse(r.data) if session.keys is not None else parse_message(r.data)
            got.append(msg)
            if answer and msg.ok and session.keys is not None and msg.exchange == c.INFORMATIONAL:
                self.send(session, session.informational_response(), to=r)
        return got

    @staticmethod
    def init_payloads(s: IkeSession, nat_wrong: bool = False) -> list:
        """The payloads IkeSession.sa_init_response sends by default (SA, KEr, Nr, NAT_DETECTION), for
        a part that changes them (order, flags) and passes them back as `payloads=`."""
        from testbed.conformance.ike.crypto import dh_key
        if s.dh is None or s.dh.group != s.algs.dh:
            s.dh = dh_key(s.algs.dh)
        num = getattr(s, "offered", {"number": 1})["number"]
        return [m.sa([s.algs.proposal(num)]), m.ke(s.dh.group, s.dh.public), m.nonce(s.nr)] + s.nat_notifies(None, nat_wrong)

    def accept_init(self, r: Received | None = None, timeout: float = 10.0, **kw) -> tuple[IkeSession, ParsedMessage]:
        """Take the client's IKE_SA_INIT (the next one unless `r` is given) and answer it with SA,
        KEr, Nr and NAT_DETECTION (overrides go to IkeSession.sa_init_response); INCONCLUSIVE when
        none comes or it cannot be answered."""
        r = r or self.init_request(timeout)
        if r is None:
            inconclusive(f"no IKE_SA_INIT from the client {self.site.client} within {timeout} s")
        s = self.session_for(r)
        req = s.handle_sa_init_request(r.data)
        if s.ni == b"" or req.get(c.KE) is None:
            inconclusive(f"the client's IKE_SA_INIT cannot be answered: {req.summary()}")
        self.answer_init(r, s.sa_init_response(**kw))
        return s, req

    def auth_request(self, s: IkeSession, timeout: float = 3.0) -> tuple[Received | None, ParsedMessage | None]:
        """The client's IKE_AUTH request on `s`, decrypted and its AUTH checked (s.peer_auth_ok);
        retransmissions of its IKE_SA_INIT get our answer again meanwhile."""
        r = self._progress(lambda x: _is_request(x, c.IKE_AUTH, s.spi_i), timeout)
        if r is None:
            return None, None
        self._follow(s, r)
        return r, s.handle_auth_request(r.data, psk=self.site.psk)

    def answer_auth(self, s: IkeSession, r: Received, **kw) -> bytes:
        """IDr, AUTH, CP(CFG_REPLY) with CP_ADDRESS, SA, TSi, TSr (IkeSession.auth_response's
        overrides pass through)."""
        kw.setdefault("idr", GATEWAY_ID)
        kw.setdefault("cp_address", CP_ADDRESS)
        data = s.auth_response(self.site.psk, **kw)
        self.send(s, data, to=r)
        return data

    def establish(self, init_kw: dict | None = None, **auth_kw) -> IkeSession:
        """IKE_SA_INIT and IKE_AUTH answered as a gateway does: an IKE SA and a child SA with the
        client, CP address CP_ADDRESS; INCONCLUSIVE when the client does not get that far."""
        s, _ = self.accept_init(**(init_kw or {}))
        r, auth = self.auth_request(s)
        if r is None:
            inconclusive("no IKE_AUTH from the client after the IKE_SA_INIT response")
        if not auth.ok or not s.peer_auth_ok:
            inconclusive(f"the client's IKE_AUTH does not verify: {auth.summary()} (AUTH ok: {s.peer_auth_ok})")
        self.answer_auth(s, r, **auth_kw)
        if not s.children:
            inconclusive(f"the client offered no child SA: {auth.summary()}")
        return s

    # ---- data through the child SA ----------------------------------------------------------
    def start_ping(self, dst: str | None = None, count: int = 3, interval: float = 0.2, wait: float = 1.0) -> dict:
        """`ping` from the client's node to `dst` (H), in the background; the returned dict gets
        its exit status under "rc" when it ends."""
        dst = dst or self.site.inside_host
        out: dict = {}
        argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), dst]

        def run():
            try:
                res = self.world.run_in(self.client_node, argv, timeout=count * (interval + wait) + 5)
                out["rc"], out["stdout"] = res.returncode, res.stdout
            except Exception as exc:  # noqa: BLE001 - reported as the ping's outcome
                out["rc"], out["stdout"] = -1, str(exc)
        t = threading.Thread(target=run, name="en-ping", daemon=True)
        t.start()
        self.ping_threads.append(t)
        out["thread"] = t
        return out

    def esp_from_client(self, session: IkeSession, match=None, timeout: float = 2.0,
                        others: list | None = None) -> tuple[Received | None, EspParsed | None]:
        """The next ESP packet from the client that opens with one of `session`'s child SAs (the
        client's outbound keys) and whose inner packet satisfies `match`; ESP that does not open is
        collected in `others`."""
        inbound = [ch.esp_in() for ch in session.children]
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.receive(None, left, kind="esp")
            if r is None:
                return None, None
            for sa in inbound:
                p = sa.open(r.data)
                if p.ok:
                    if match is None or match(p):
                        return r, p
                    break
            else:
                if others is not None:
                    others.append(r)
        return None, None

    def esp_send(self, to: Received, packet: bytes) -> None:
        """ESP to the client the way its ESP came: in UDP to its port when it came in UDP, else IP 50."""
        if to.dport == c.NAT_T_PORT:
            self.transport.send(packet, to.src, to.sport, src_port=c.NAT_T_PORT, kind="esp")
        else:
            self.transport.send(packet, to.src, 0, src_port=0, kind="esp")

    def echo_through(self, session: IkeSession, dst: str | None = None, answer: bool = True,
                     timeout: float = 2.0, count: int = 3, wait_ping: bool = True, reply_via: str | None = None) -> Echo:
        """The client node pings `dst` (H); the tester waits for the echo request in the client's
        ESP, opens it with the child SA's keys and (with `answer`) sends the echo reply back through
        the child SA (the way the client's ESP came, or `reply_via` "udp" / "ip"), then waits for the
        ping's outcome."""
        dst = dst or self.site.inside_host
        ping = self.start_ping(dst, count=count)
        echo = Echo()

        def is_echo(p: EspParsed) -> bool:
            pkt = p.payload
            return (p.next_header == c.IPPROTO_IPIP and len(pkt) >= 28 and pkt[9] == 1
                    and pkt[(pkt[0] & 15) * 4] == 8)
        echo.esp, echo.opened = self.esp_from_client(session, is_echo, timeout, echo.others)
        if echo.seen:
            echo.inner = echo.opened.payload
            if answer:
                self._answer_echo(session, echo, reply_via)
        if wait_ping:
            ping["thread"].join(count * 1.5 + 5)
            echo.ping_ok = ping.get("rc") == 0
        return echo

    def _answer_echo(self, session: IkeSession, echo: Echo, via: str | None = None) -> None:
        from scapy.layers.inet import ICMP, IP
        req = IP(echo.inner)
        reply = IP(src=req.dst, dst=req.src, ttl=63) / ICMP(type=0, id=req[ICMP].id, seq=req[ICMP].seq) / bytes(req[ICMP].payload)
        child = next(ch for ch in session.children if int.from_bytes(ch.spi_in, "big") == echo.opened.spi)
        out = getattr(child, "_tester_out", None) or child.esp_out()
        child._tester_out = out
        to = echo.esp
        if via == "udp" and to.dport != c.NAT_T_PORT:
            to = Received(b"", to.src, c.NAT_T_PORT, c.NAT_T_PORT, to.t, "esp")
        elif via == "ip" and to.dport == c.NAT_T_PORT:
            to = Received(b"", to.src, 0, 0, to.t, "esp")
        self.esp_send(to, out.seal(bytes(reply), c.IPPROTO_IPIP))
        echo.answered = True

    # ---- evidence ---------------------------------------------------------------------------
    def ladder(self) -> list[str]:
        def describe(data: bytes) -> str:
            p = parse_message(data)
            return p.summary() if p.ok or p.spi_i else f"{len(data)} bytes"
        return self.transport.ladder(describe)

    def write_transcript(self, directory: Path) -> Path:
        """The tester's datagrams as a pcap (IP/UDP headers rebuilt around the exact payloads) and
        its message ladder, in the case's directory."""
        from scapy.layers.inet import IP, UDP
        from scapy.packet import Raw
        from scapy.utils import wrpcap

        directory.mkdir(parents=True, exist_ok=True)
        pkts = []
        for e in self.transport.log:
            local, remote = self.site.local, e.addr
            src, dst = (local, remote) if e.direction == "sent" else (remote, local)
            if e.kind == "esp" and e.local_port == 0:
                p = IP(src=src, dst=dst, proto=50) / Raw(e.data)
            else:
                sport, dport = (e.local_port, e.port) if e.direction == "sent" else (e.port, e.local_port)
                payload = e.data if e.local_port != c.NAT_T_PORT or e.kind != "ike" else c.NON_ESP_MARKER + e.data
                p = IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)
            p.time = e.t
            pkts.append(p)
        path = directory / "tester.pcap"
        if pkts:
            wrpcap(str(path), pkts)
        (directory / "tester-ladder.txt").write_text("\n".join(self.ladder()) + "\n")
        return path


def intervals(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


__all__ = ["CP_ADDRESS", "GATEWAY_ID", "Echo", "GatewayTester", "Site", "intervals", "m"]


def _is_request(r: Received, exchange: int | None = None, spi_i: bytes | None = None) -> bool:
    """`r` is an IKE request (R clear), of `exchange` and with SPIi `spi_i` when given."""
    h = parse_header(r.data)
    return h.ok and not h.response and (spi_i is None or h.spi_i == spi_i) and (exchange is None or h.exchange == exchange)
