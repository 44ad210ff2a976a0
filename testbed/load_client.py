"""One remote-access initiator of the load generator (testbed/load.py), sans-I/O.

A `LoadClient` walks IKE_SA_INIT (following COOKIE and INVALID_KE_PAYLOAD, RFC 7296 1.2 / 2.6),
IKE_AUTH with a CP request (PSK, or EAP-MD5 ending with AUTH over SK_pi/SK_pr, 2.16), one probe
(an ICMP echo to H through its child SA, ESP built here) and, when asked, an empty INFORMATIONAL
(liveness check, 2.4). It retransmits its requests on its own timers and answers the gateway's own
INFORMATIONAL requests (its DPD), so a long run keeps its SAs.

Every method takes the current time and returns what to send: a list of ("ike", bytes) and
("esp", bytes), to the gateway's port `port` (500, or 4500 once IKE_SA_INIT showed a NAT or the
gateway faked one: then IKE goes with the non-ESP marker and ESP in UDP, RFC 3948); the generator owns the sockets and demultiplexes by SPI (the IKE header's initiator
SPI, the ESP SPI of the child SA's inbound side). States:

    idle -> init -> auth [-> eap -> eap_auth] -> probe -> up [-> dpd -> up]
                                                        `-> failed (cause)
"""
from __future__ import annotations

import socket
import struct

from testbed.conformance.ike import constants as c
from testbed.conformance.ike.crypto import nat_detection_hash
from testbed.conformance.ike.parse import parse_header
from testbed.conformance.ike.session import Algorithms, IkeSession

RETRANSMIT = (1.0, 2.0, 4.0)   # seconds between an IKE request's sends; failed after the last
PROBE_WAIT = (1.0, 1.0, 1.0)   # the probe's echo is sent again after each wait; lost after the last
GROUPS = {19: c.ECP256, 31: c.CURVE25519, 14: c.MODP2048}
ERROR_NOTIFY_MAX = 16383        # RFC 7296 3.10.1: notify types below 16384 are errors
TERMINAL = ("up", "failed")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def icmp_echo(src: str, dst: str, ident: int, seq: int, payload: bytes = b"testbed-load-probe") -> bytes:
    """An IPv4 ICMP echo request, built by hand (scapy is too slow for thousands of clients)."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64, 1, 0, socket.inet_aton(src),
                      socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + icmp


def is_echo_reply(pkt: bytes, ident: int, seq: int) -> bool:
    if len(pkt) < 28 or pkt[9] != 1:
        return False
    ihl = (pkt[0] & 0x0F) * 4
    return len(pkt) >= ihl + 8 and pkt[ihl] == 0 and struct.unpack("!HH", pkt[ihl + 4:ihl + 8]) == (ident, seq)


class LoadClient:
    """One initiator: `identity`/`psk`/`password` as the gateway's users config gives them, speaking
    from `local` (its own address, port 500) to `gateway`; `inside_host` answers the probe."""

    def __init__(self, index: int, local: str, gateway: str, identity: str, psk: bytes, inside_host: str,
                 auth: str = "psk", password: bytes | None = None, group: int = 19, spi: bytes | None = None,
                 retransmit: tuple[float, ...] = RETRANSMIT, probe_wait: tuple[float, ...] = PROBE_WAIT):
        self.index, self.local, self.gateway = index, local, gateway
        self.identity, self.psk, self.password, self.auth = identity, psk, password, auth
        self.inside_host = inside_host
        self.retransmit_waits, self.probe_waits = retransmit, probe_wait
        self.session = IkeSession(True, Algorithms(dh=GROUPS.get(group, group)), local=(local, c.IKE_PORT),
                                  peer=(gateway, c.IKE_PORT), spi=spi)
        self.state = "idle"
        self.port = c.IKE_PORT     # 4500 (IKE with the non-ESP marker, ESP in UDP) once a NAT is detected
        self.cause = ""
        self.t_start: float | None = None
        self.t_established: float | None = None
        self.deadline: float | None = None   # when on_timer wants to run
        self.tries = 0
        self.waiting_mid: int | None = None
        self.last_out: bytes = b""
        self.init_kw: dict = {}
        self.init_rounds = 0
        self.cookies = 0
        self.probe_ok: bool | None = None
        self.probe_sent = 0
        self.dpd_ok: bool | None = None
        self.dpd_rtt: float | None = None
        self.t_dpd: float | None = None
        self.peer_requests = 0
        self.esp_out = self.esp_in = None
        self.ident = 0x4000 | (index & 0x3FFF)

    # ------------------------------------------------------------------ identity for the demux
    @property
    def spi_i(self) -> bytes:
        return self.session.spi_i

    @property
    def spi_in(self) -> bytes | None:
        return self.session.children[0].spi_in if self.session.children else None

    @property
    def established(self) -> bool:
        return self.t_established is not None

    @property
    def done(self) -> bool:
        """The setup is over: failed, or up with the probe answered or given up on."""
        return self.state == "failed" or (self.state in ("up", "dpd") and self.probe_ok is not None)

    # ------------------------------------------------------------------ helpers
    def _request(self, data: bytes, now: float) -> list:
        self.last_out, self.tries = data, 0
        self.waiting_mid = struct.unpack("!I", data[20:24])[0]
        self.deadline = now + self.retransmit_waits[0]
        return [("ike", data)]

    def _fail(self, cause: str) -> list:
        self.state, self.cause, self.deadline = "failed", cause, None
        return []

    @staticmethod
    def _error_notify(msg) -> str | None:
        for t in msg.notify_types():
            if t <= ERROR_NOTIFY_MAX:
                return c.notify_name(t)
        return None

    # ------------------------------------------------------------------ events
    def start(self, now: float) -> list:
        self.t_start, self.state = now, "init"
        return self._request(self.session.sa_init_request(**self.init_kw), now)

    def on_timer(self, now: float) -> list:
        if self.deadline is None or now < self.deadline:
            return []
        if self.state == "probe":
            if self.probe_sent >= len(self.probe_waits):
                self.probe_ok, self.deadline, self.state = False, None, "up"
                return []
            return self._probe(now)
        if self.state not in ("init", "auth", "eap", "eap_auth", "dpd"):
            self.deadline = None
            return []
        self.tries += 1
        if self.tries >= len(self.retransmit_waits):
            if self.state == "dpd":
                self.dpd_ok, self.state, self.deadline = False, "up", None
                return []
            return self._fail(f"timeout:{'IKE_SA_INIT' if self.state == 'init' else 'IKE_AUTH'}")
        self.deadline = now + self.retransmit_waits[self.tries]
        return [("ike", self.last_out)]   # RFC 7296 2.1: the same bytes again

    def on_ike(self, data: bytes, now: float) -> list:
        h = parse_header(data) if len(data) >= 28 else None
        if h is None or not h.ok and not h.spi_i:
            return []
        if not h.response:
            return self._peer_request(data)
        if h.message_id != self.waiting_mid:
            return []   # a duplicate or a stale answer
        if self.state == "init":
            return self._init_response(data, now)
        if self.state in ("auth", "eap", "eap_auth"):
            return self._auth_response(data, now)
        if self.state == "dpd":
            msg = self.session.parse(data)
            if msg.ok:
                self.dpd_ok, self.state, self.deadline = True, "up", None
                self.dpd_rtt = now - (self.t_dpd or now)
                self.waiting_mid = None
        return []

    def _peer_request(self, data: bytes) -> list:
        """The gateway's own request (its liveness check, a delete): an empty answer keeps it happy."""
        if self.session.keys is None:
            return []
        msg = self.session.parse(data)
        if not msg.ok or msg.exchange != c.INFORMATIONAL:
            return []
        self.peer_requests += 1
        if msg.get(c.DELETE) is not None and self.state in ("up", "dpd", "probe"):
            self.state, self.cause = "failed", "deleted_by_gateway"
            self.deadline = None
        return [("ike", self.session.informational_response())]

    def _init_response(self, data: bytes, now: float) -> list:
        msg = self.session.handle_sa_init_response(data)
        if msg.get(c.SA) is None or self.session.keys is None:
            cookie, ke = msg.notify(c.N_COOKIE), msg.notify(c.N_INVALID_KE_PAYLOAD)
            if (cookie is not None or ke is not None) and self.init_rounds < 3:
                self.init_rounds += 1
                if cookie is not None:
                    self.cookies += 1
                    self.init_kw["cookie"] = cookie.fields["data"]
                else:
                    self.init_kw["ke_group"] = struct.unpack("!H", ke.fields["data"][:2])[0]
                return self._request(self.session.sa_init_request(**self.init_kw), now)
            return self._fail(self._error_notify(msg) or f"IKE_SA_INIT:{msg.reason or 'refused'}")
        src = msg.notify(c.N_NAT_DETECTION_SOURCE_IP)
        if src is not None and src.fields["data"] != nat_detection_hash(self.session.spi_i, self.session.spi_r,
                                                                          self.gateway, c.IKE_PORT):
            # RFC 7296 2.23: a NAT between us, or a gateway that pretends one (strongSwan's userspace ESP
            # takes ESP only in UDP): the rest on 4500
            self.port = c.NAT_T_PORT
        self.state = "auth"
        if self.auth == "eap-md5":
            return self._request(self.session.auth_request(idi=self.identity, cp=True), now)
        return self._request(self.session.auth_request(psk=self.psk, idi=self.identity, cp=True), now)

    def _auth_response(self, data: bytes, now: float) -> list:
        s = self.session
        if self.state == "eap":
            msg = s.parse(data)
            eap = msg.get(c.EAP) if msg.ok else None
            if eap is None:
                return self._fail(self._error_notify(msg) or f"IKE_AUTH:{msg.reason or 'no EAP'}")
            if eap.fields.get("code") == c.EAP_SUCCESS:
                s.peer_auth_ok = None
                self.state = "eap_auth"
                return self._request(s.eap_auth_request(), now)
            if eap.fields.get("code") == c.EAP_REQUEST:
                return self._request(s.eap_response(msg, password=self.password, identity=self.identity.encode()), now)
            return self._fail("EAP_FAILURE")
        msg = s.handle_auth_response(data, psk=s.keys.sk_pr if self.state == "eap_auth" else self.psk)
        if not msg.ok:
            return self._fail(f"IKE_AUTH:{msg.reason}")
        err = self._error_notify(msg)
        if err:
            return self._fail(err)
        if self.state == "auth" and self.auth == "eap-md5" and msg.get(c.EAP) is not None:
            if not s.peer_auth_ok:
                return self._fail("gateway_auth_mismatch")
            self.state = "eap"
            return self._eap_step(msg, now)
        if not s.peer_auth_ok:
            return self._fail("gateway_auth_mismatch")
        if not s.children:
            return self._fail("no_child_sa")
        self.t_established, self.waiting_mid = now, None
        child = s.children[0]
        self.esp_out, self.esp_in = child.esp_out(), child.esp_in()
        self.state = "probe"
        return self._probe(now)

    def _eap_step(self, msg, now: float) -> list:
        eap = msg.get(c.EAP)
        if eap.fields.get("code") != c.EAP_REQUEST:
            return self._fail("EAP_FAILURE")
        return self._request(self.session.eap_response(msg, password=self.password,
                                                       identity=self.identity.encode()), now)

    # ------------------------------------------------------------------ probe and liveness
    def _probe(self, now: float) -> list:
        self.probe_sent += 1
        self.deadline = now + self.probe_waits[self.probe_sent - 1]
        src = self.session.virtual_ip[0] if self.session.virtual_ip else self.local
        echo = icmp_echo(src, self.inside_host, self.ident, self.probe_sent)
        return [("esp", self.esp_out.seal(echo, c.IPPROTO_IPIP))]

    def on_esp(self, data: bytes, now: float) -> list:
        if self.esp_in is None or self.state != "probe":
            return []
        p = self.esp_in.open(data)
        if p.ok and any(is_echo_reply(p.payload, self.ident, n) for n in range(1, self.probe_sent + 1)):
            self.probe_ok, self.state, self.deadline = True, "up", None
        return []

    def dpd(self, now: float) -> list:
        """An empty INFORMATIONAL request (RFC 7296 2.4) on an established SA."""
        if self.state != "up" or not self.established:
            return []
        self.state, self.t_dpd = "dpd", now
        return self._request(self.session.informational_request(), now)
