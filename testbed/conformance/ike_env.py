"""The IKEv2 tester in the world: in the client's place (a station's node) against a gateway under
test, with the preambles every test part shares (establish an IKE SA, push data through a child SA)
and its transcript (pcap and message ladder) for the report.

The tester library (testbed/conformance/ike) is sans-I/O and knows nothing of the world; this module
gives it sockets inside the node (testbed/conformance/netns.py) and the world's addresses.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.conformance import netns
from testbed.conformance.ike import constants as c
from testbed.conformance.ike import messages as m
from testbed.conformance.ike.crypto import nat_detection_hash
from testbed.conformance.ike.parse import ParsedMessage, parse_message
from testbed.conformance.ike.session import IkeSession
from testbed.conformance.ike.transport import Received, UdpTransport
from testbed.report.verdicts import inconclusive

ECHO_IDENT = 0x7e57   # the ICMP echo identifier of the tester's pings


@dataclass
class Peer:
    """Where the tester speaks from and to whom."""
    node_pid: int
    local: str            # the tester's address (the node's address on its access network)
    gateway: str          # the IUT's address (G_e)
    identity: str         # the user the IUT admits, and its PSK
    psk: bytes
    inside_host: str      # a host behind the gateway that answers ICMP echo (H)


@dataclass
class IkeTester:
    """One test part's tester: its sockets, its sessions, and what it saw."""
    peer: Peer
    transport: UdpTransport
    sessions: list[IkeSession] = field(default_factory=list)
    nat: bool = False          # the IUT's NAT_DETECTION hashes said a NAT sits between: IKE on 4500, ESP in UDP
    ike_port: int = c.IKE_PORT
    echoes: int = 0            # ICMP echoes sent by `ping` (their ICMP sequence numbers)

    @classmethod
    def open(cls, peer: Peer) -> "IkeTester":
        s500 = netns.udp_socket(peer.node_pid, "0.0.0.0", c.IKE_PORT)
        s4500 = netns.udp_socket(peer.node_pid, "0.0.0.0", c.NAT_T_PORT)
        esp = netns.raw_socket(peer.node_pid, 50)
        return cls(peer, UdpTransport(s500, s4500, esp, clock=time.time))

    def close(self) -> None:
        for s in list(self.transport.socks.values()) + [self.transport.esp_raw]:
            if s is not None:
                s.close()

    # ---- sessions and messages -------------------------------------------------------------
    def session(self, **kw) -> IkeSession:
        s = IkeSession(initiator=True, local=(self.peer.local, c.IKE_PORT), peer=(self.peer.gateway, c.IKE_PORT), **kw)
        self.sessions.append(s)
        return s

    def send(self, data: bytes, port: int | None = None, kind: str = "ike") -> None:
        port = port or self.ike_port
        self.transport.send(data, self.peer.gateway, port, src_port=port, kind=kind)

    def receive(self, match=None, timeout: float = 2.0, kind: str = "ike"):
        """The next datagram of `kind` (None: any kind) for which `match(received)` holds, or None
        after `timeout`; the others stay in the log (a ladder shows them)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            r = self.transport.recv(left)
            if r is None:
                return None
            if (kind is None or r.kind == kind) and (match is None or match(r)):
                return r
        return None

    def answer_to(self, session: IkeSession, mid: int | None, timeout: float = 2.0) -> ParsedMessage | None:
        """The IUT's response to our request `mid` on `session` (same initiator SPI, R flag set),
        decrypted where the session has keys."""
        def match(r) -> bool:
            h = parse_message(r.data)
            return (h.ok or h.spi_i) and h.spi_i == session.spi_i and h.response and (mid is None or h.message_id == mid)
        r = self.receive(match, timeout)
        if r is None:
            return None
        return session.parse(r.data) if session.keys is not None else parse_message(r.data)

    def exchange(self, session: IkeSession, data: bytes, timeout: float = 2.0, port: int | None = None) -> ParsedMessage | None:
        """Send a request we built on `session` and wait for its response (by Message ID)."""
        mid = struct.unpack("!I", data[20:24])[0] if len(data) >= 28 else None
        self.send(data, port)
        return self.answer_to(session, mid, timeout)

    def retransmit(self, session: IkeSession, data: bytes, timeout: float = 2.0, tries: int = 2) -> ParsedMessage | None:
        """Send an already answered request again, as an initiator whose response was lost does
        (RFC 7296 2.1): up to `tries` copies spread over `timeout`, until one is answered. A responder
        may drop a copy that arrives while it still finishes the exchange (strongSwan logs "already
        processing" for one that came a millisecond after its response); the next copy must then
        get the cached response. The caller judges the response it gets."""
        for _ in range(tries):
            resp = self.exchange(session, data, timeout / tries)
            if resp is not None:
                return resp
        return None

    # ---- preambles -------------------------------------------------------------------------
    def init(self, session: IkeSession | None = None, **kw) -> tuple[IkeSession, ParsedMessage]:
        """IKE_SA_INIT, following a COOKIE or an INVALID_KE_PAYLOAD the way RFC 7296 1.2 / 2.6 says;
        INCONCLUSIVE when no usable response comes."""
        s = session or self.session()
        resp = self.exchange(s, s.sa_init_request(**kw), port=c.IKE_PORT)
        for _ in range(2):
            if resp is None or resp.get(c.SA) is not None:
                break
            cookie = resp.notify(c.N_COOKIE)
            ke = resp.notify(c.N_INVALID_KE_PAYLOAD)
            if cookie is not None:
                kw["cookie"] = cookie.fields["data"]
            elif ke is not None:
                kw["ke_group"] = struct.unpack("!H", ke.fields["data"][:2])[0]
            else:
                break
            resp = self.exchange(s, s.sa_init_request(**kw), port=c.IKE_PORT)
        if resp is None:
            inconclusive(f"no answer to IKE_SA_INIT from {self.peer.gateway}")
        if resp.get(c.SA) is None:
            inconclusive(f"IKE_SA_INIT refused: {resp.summary()}")
        s.handle_sa_init_response(resp.raw)
        self.nat = self._nat_detected(s, resp)
        self.ike_port = c.NAT_T_PORT if self.nat else c.IKE_PORT
        return s, resp

    def establish(self, session: IkeSession | None = None, init_kw: dict | None = None, **auth_kw) -> IkeSession:
        """IKE_SA_INIT and IKE_AUTH with the PSK user, CP and a child SA; INCONCLUSIVE when it fails."""
        s, _ = self.init(session, **(init_kw or {}))
        auth_kw.setdefault("psk", self.peer.psk)
        auth_kw.setdefault("idi", self.peer.identity)
        resp = self.exchange(s, s.auth_request(**auth_kw))
        if resp is None:
            inconclusive("no answer to IKE_AUTH")
        s.handle_auth_response(resp.raw, psk=self.peer.psk)
        if not s.children or not s.peer_auth_ok:
            inconclusive(f"IKE_AUTH did not establish a child SA: {resp.summary()}")
        return s

    def _nat_detected(self, s: IkeSession, resp: ParsedMessage) -> bool:
        """RFC 7296 2.23: the responder's NAT_DETECTION_SOURCE_IP hashes its own address and port;
        a mismatch (a NAT, or a responder faking one to force UDP encapsulation) moves us to 4500."""
        src = resp.notify(c.N_NAT_DETECTION_SOURCE_IP)
        if src is None:
            return False
        return src.fields["data"] != nat_detection_hash(s.spi_i, s.spi_r, self.peer.gateway, c.IKE_PORT)

    # ---- data through a child SA -----------------------------------------------------------
    def esp_send(self, esp_packet: bytes) -> None:
        if self.nat:
            self.transport.send(esp_packet, self.peer.gateway, c.NAT_T_PORT, src_port=c.NAT_T_PORT, kind="esp")
        else:
            self.transport.send(esp_packet, self.peer.gateway, 0, src_port=0, kind="esp")

    def ping(self, session: IkeSession, out=None, *, replies=None, tries: int = 3, timeout: float = 2.0,
             seq: int | None = None, ident: int = ECHO_IDENT, send: Callable[[bytes], None] | None = None, take=None) -> "Echo":
        """The one way a tester checks whether a child SA carries data: ICMP echoes from the
        tester's virtual IP (or its own address) to the inside host, sealed on child SA `out`
        (default: the session's newest), and whether an echo
        reply comes back through the IUT's ESP on one of `replies` (default: every child SA of the
        session, since which outbound SA the IUT picks among parallel ones is its own choice).

        `tries` says what kind of check this is. A check that data passes gives `tries` > 1: up to
        `tries` echoes, one after the other, each waited for `timeout` in full, so that one datagram
        lost on a busy machine does not decide. A check that data no longer passes gives `tries=1`
        (and a short `timeout`): exactly one echo, since a retry would only wait longer for nothing.

        Each echo has the next ESP sequence number of `out` (or `seq`, `seq + 1`, ... when given) and
        an ICMP sequence number unique within this tester, so that a late reply to an earlier echo,
        on this or another child SA, is never taken for this one. `send(esp_packet)` replaces the
        tester's way of sending ESP (`esp_send`), `take(match, timeout)` its way of reading the wire
        (`receive`: datagrams that do not match are dropped, as the transcript keeps them)."""
        out = out if out is not None else session.children[-1]
        replies = list(replies) if replies is not None else list(session.children)
        send = send or self.esp_send
        take = take or (lambda match, left: self.receive(match, left, kind=None))
        src = session.virtual_ip[0] if session.virtual_ip else self.peer.local
        inbound = [(ch, ch.esp_in()) for ch in replies]
        result = Echo()
        from scapy.layers.inet import ICMP, IP
        for n in range(max(1, tries)):
            esp_seq = seq + n if seq is not None else getattr(out, "_seq", 0) + 1
            out._seq = esp_seq
            self.echoes += 1
            icmp_seq = self.echoes & 0xFFFF
            echo = bytes(IP(src=src, dst=self.peer.inside_host) / ICMP(type=8, id=ident, seq=icmp_seq)
                         / (b"conformance" * 4))
            send(out.esp_out().seal(echo, c.IPPROTO_IPIP, seq=esp_seq))
            result.sent += 1

            def reply(r) -> bool:
                result.seen.append(r)
                if r.kind != "esp":
                    return False
                for ch, sa in inbound:
                    if _is_echo_reply(sa.open(r.data), ident, icmp_seq):
                        result.child, result.reply = ch, r
                        return True
                return False
            take(reply, timeout)
            if result:
                break
        return result

    # ---- evidence --------------------------------------------------------------------------
    def ladder(self) -> list[str]:
        def describe(data: bytes) -> str:
            p = parse_message(data)
            return p.summary() if p.ok or p.spi_i else f"{len(data)} bytes"
        return self.transport.ladder(describe)

    def write_transcript(self, directory: Path) -> Path:
        """The tester's datagrams as a pcap (the IP/UDP headers the kernel put on them rebuilt around
        the exact payloads) and its message ladder, in the case's directory."""
        from scapy.layers.inet import IP, UDP
        from scapy.packet import Raw
        from scapy.utils import wrpcap

        directory.mkdir(parents=True, exist_ok=True)
        pkts = []
        for e in self.transport.log:
            local, remote = (self.peer.local, e.addr)
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


@dataclass
class Echo:
    """What `IkeTester.ping` saw: the child SA whose inbound half carried the echo reply (None: no
    reply came), the reply as received, every datagram received while waiting, the echoes sent.
    True when a reply came."""
    child: object | None = None
    reply: Received | None = None
    seen: list[Received] = field(default_factory=list)
    sent: int = 0

    def __bool__(self) -> bool:
        return self.reply is not None


def _is_echo_reply(opened, ident: int, icmp_seq: int) -> bool:
    """An ESP payload that opened (`EspSa.open`) and is an IPv4 ICMP echo reply (type 0) with this
    identifier and sequence number (RFC 792)."""
    if not getattr(opened, "ok", False):
        return False
    pkt = opened.payload
    if len(pkt) < 28 or pkt[0] >> 4 != 4:
        return False
    ihl = (pkt[0] & 0x0F) * 4
    return (len(pkt) >= ihl + 8 and pkt[9] == 1 and pkt[ihl] == 0
            and struct.unpack("!HH", pkt[ihl + 4:ihl + 8]) == (ident, icmp_seq))


def notify_names(msg: ParsedMessage | None) -> list[str]:
    return [] if msg is None else [c.notify_name(t) for t in msg.notify_types()]


__all__ = ["Echo", "IkeTester", "Peer", "notify_names", "m"]
