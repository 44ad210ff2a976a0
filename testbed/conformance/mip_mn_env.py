"""The Mobile IPv4 tester around a mobile node under test (scenarios conformance-mn and
conformance-mn-rfc5265).

The mobile node runs on the station r; the tester plays everything around it:
- the agents on its links: AF_PACKET sockets on the access routers' interfaces (ar1 on fn1, ar2 on
  fn2; their FA roles do not run), on the NAT router's inside (fn3), on the home link (iha) and on
  the intranet's visited subnet (ir on ivn). Every frame there is seen (what the MN sends is judged
  before any router touched it: TTL, link-layer destination), and frames are sent whole: agent
  advertisements with any field, a foreign agent's registration replies, ARP;
- the home agent: a UDP socket on 10.1.1.2:434, raw sockets for the tunnel protocols (4, 47, 55)
  and a raw socket for datagrams built whole (a reply with a wrong UDP checksum), in iha.
  With RFC 5265 (conformance-mn-rfc5265) that is the internal home agent (i-HA); the external one
  (x-HA, xha) and the VPN gateway (g) are helper roles of this project.

The tester library (testbed/conformance/mip) knows nothing of the world; this module gives it
sockets inside the nodes (testbed/conformance/netns.py), the world's addresses and the preambles the
parts share (place the station, register through a foreign agent, register co-located).
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from testbed.conformance import netns
from testbed.conformance.inbox import Inbox
from testbed.processes import patience
from testbed.conformance.mip import (
    AgentAdvertisement, SecurityAssociation, TesterHA, parse_request,
)
from testbed.conformance.mip.advertisements import agent_flags
from testbed.conformance.mip.ipv4 import PROTO_ICMP, PROTO_UDP, build_ipv4, internet_checksum, parse_ipv4
from testbed.conformance.mip.link import arp, ethernet_ipv4, parse_arp
from testbed.conformance.mip.messages import TunnelData
from testbed.conformance.mip.transport import describe as describe_item
from testbed.conformance.mip.udp import ipv4_udp, parse_udp_segment
from testbed.report.verdicts import inconclusive

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
MIP_PORT = 434
HA = IPv4Address("10.1.1.2")
CORRESPONDENT = IPv4Address("10.1.2.10")  # h: the inner source of what the tester-HA tunnels
ALL_SYSTEMS_MAC = "01:00:5e:00:00:01"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
# where the tester listens on each network the station may visit: (node, segment)
TAPS = {"fn1": ("ar1", "fn1"), "fn2": ("ar2", "fn2"), "fn3": ("nat", "fn3"), "home": ("iha", "home"),
        "ivn": ("ir", "ivn")}
FAKE_AGENT_MAC = "02:46:41:00:00:02"  # a second agent on a link (not an interface of the world)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


CROSSING = 0.05  # s: a request that reached the HA this soon after a reply was sent before the MN got it

@dataclass(frozen=True)
class Frame:
    """A frame seen on one of the tapped links."""
    time: float
    segment: str
    src_mac: str
    dst_mac: str
    ethertype: int
    raw: bytes
    ip: object = None        # IPv4Packet or None
    udp: object = None       # UdpDatagram or None
    arp: object = None       # ArpMessage or None

    @property
    def icmp(self) -> bytes | None:
        return self.ip.payload if self.ip is not None and self.ip.protocol == PROTO_ICMP else None

    @property
    def request(self):
        """The Registration Request this frame carries (UDP to port 434, type 1), or None."""
        if self.udp is None or self.udp.dport != MIP_PORT or self.udp.payload[:1] != b"\x01":
            return None
        r = parse_request(self.udp.payload)
        return r.value if r.ok else None

    def summary(self) -> str:
        if self.arp is not None:
            return (f"[{self.segment}] ARP op {self.arp.op} {self.arp.sender_ip} ({self.arp.sender_mac}) "
                    f"-> {self.arp.target_ip} (to {self.dst_mac})")
        if self.ip is None:
            return f"[{self.segment}] frame {self.src_mac} -> {self.dst_mac} type {self.ethertype:#06x}"
        head = f"[{self.segment}] {self.src_mac} -> {self.dst_mac} {self.ip.src} -> {self.ip.dst} ttl {self.ip.ttl}"
        if self.udp is not None:
            return f"{head} udp {self.udp.sport}->{self.udp.dport} {describe_item('udp', self.udp.payload)}"
        if self.icmp is not None:
            return f"{head} {describe_item('icmp', self.icmp)}"
        return f"{head} protocol {self.ip.protocol}"


def parse_frame(t: float, segment: str, data: bytes) -> Frame | None:
    if len(data) < 14:
        return None
    etype = struct.unpack_from("!H", data, 12)[0]
    f = dict(time=t, segment=segment, src_mac=_mac(data[6:12]), dst_mac=_mac(data[0:6]), ethertype=etype, raw=data)
    if etype == ETH_P_ARP:
        a = parse_arp(data)
        return Frame(**f, arp=a.value if a.ok else None)
    if etype != ETH_P_IP:
        return Frame(**f)
    p = parse_ipv4(data[14:], strict_length=False)
    if not p.ok:
        return Frame(**f)
    udp = None
    if p.value.protocol == PROTO_UDP and not p.value.header.flags_fragment & 0x3FFF:
        u = parse_udp_segment(p.value.src, p.value.dst, p.value.payload)
        udp = u.value if u.ok else None
    return Frame(**f, ip=p.value, udp=udp)


@dataclass(frozen=True)
class AtHa:
    """What reached one of the home agent's sockets: kind "udp" (data = UDP payload, src/sport as the
    HA saw them, after any NAT) or "ip" (a whole tunnelled IPv4 packet)."""
    time: float
    kind: str
    data: bytes
    src: str
    sport: int | None = None
    protocol: int | None = None

    @property
    def request(self):
        if self.kind != "udp" or self.data[:1] != b"\x01":
            return None
        r = parse_request(self.data)
        return r.value if r.ok else None

    def summary(self) -> str:
        if self.kind == "udp":
            return f"[ha] udp from {self.src}:{self.sport} {describe_item('udp', self.data)}"
        return f"[ha] ip protocol {self.protocol} from {self.src}, {len(self.data)} bytes"


@dataclass
class Tap:
    segment: str
    node: str
    ifname: str
    sock: socket.socket
    mac: str
    address: IPv4Address


@dataclass
class Agent:
    """An agent the tester plays on a link: its addresses and its advertisements' sequence."""
    segment: str
    address: IPv4Address
    mac: str
    sequence: int = 0


def pingable(src, dst, ident: int, seq: int = 1, payload: bytes = b"mn-conformance", ttl: int = 64) -> bytes:
    """An ICMP echo request, a whole IPv4 packet."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + payload
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    return build_ipv4(src, dst, PROTO_ICMP, body, ttl=ttl)


def echo_reply_in(packet: bytes, ident: int) -> bool:
    """True when the IPv4 `packet` is an ICMP echo reply with `ident`."""
    p = parse_ipv4(packet, strict_length=False)
    if not p.ok or p.value.protocol != PROTO_ICMP or len(p.value.payload) < 8:
        return False
    t, _c, _s, i = struct.unpack_from("!BBHH", p.value.payload)
    return t == 0 and i == ident & 0xFFFF


@dataclass
class MnTester(Inbox):
    iut: object
    taps: dict
    mn_mac: str
    ha: TesterHA
    sa: SecurityAssociation
    home: IPv4Address
    ha_address: IPv4Address
    udp: socket.socket | None
    tunnels: dict
    raw: socket.socket | None
    log: list = field(default_factory=list)      # (time, "sent"/"seen", text)
    inbox: list = field(default_factory=list)
    frames: list = field(default_factory=list)   # every frame the MN sent (seen on any tap)
    agents: dict = field(default_factory=dict)
    sockets: list = field(default_factory=list)
    pcap: list = field(default_factory=list)     # (time, segment, frame bytes)
    idents: int = 0x4D00

    # ---- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, iut, mn_cfg: dict, ha_node: str = "iha", taps=tuple(TAPS)) -> "MnTester":
        world, plan = iut.world, iut.world.plan
        opened = {}
        sockets = []
        for seg in taps:
            node, segment = TAPS[seg]
            intf = plan.nodes[node].interface_on(segment)
            with netns.in_netns(world.pid(node)):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.bind((intf.name, ETH_P_ALL))
            sockets.append(s)
            opened[seg] = Tap(seg, node, intf.name, s, _mac(s.getsockname()[4]), intf.address)
        from testbed import naming
        with netns.in_netns(world.pid("r")):
            probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            probe.bind((naming.station_ifname("r"), ETH_P_ARP))
            mn_mac = _mac(probe.getsockname()[4])
            probe.close()
        ha_address = IPv4Address(mn_cfg["home_agent"])
        ha_pid = world.pid(ha_node)
        udp = netns.udp_socket(ha_pid, str(ha_address), MIP_PORT)
        tunnels = {p: netns.raw_socket(ha_pid, p, header_included=True) for p in (4, 47, 55)}
        with netns.in_netns(ha_pid):
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        sockets += [udp, raw, *tunnels.values()]
        for s in sockets:  # each datagram stamped by the kernel on arrival (see _recv)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sa = SecurityAssociation(int(mn_cfg["spi"]), bytes.fromhex(mn_cfg["key"]))
        home = IPv4Address(mn_cfg["home_address"])
        ha = TesterHA(ha_address, {home: sa})
        t = cls(iut, opened, mn_mac, ha, sa, home, ha_address, udp, tunnels, raw, sockets=sockets)
        for seg, tap in opened.items():
            t.agents[seg] = Agent(seg, tap.address, tap.mac)
        return t

    def close(self) -> None:
        for s in self.sockets:
            s.close()

    # ---- where the station is -----------------------------------------------------------------------
    def place(self, segment: str, settle: float = 0.0, fresh: bool = False) -> float:
        """Attach the station to `segment` (carrier down, new bridge, carrier up: the MN sees a new
        link, even on the same network). Returns the time the carrier came back. `fresh`: first take
        the station off every link for a moment and forget what arrived until then, so nothing the MN
        sent on its previous attachment (still in flight, or queued during the carrier flap) is seen
        as sent on the new one."""
        from testbed import handoff
        if fresh:
            handoff.detach(self.iut.world, "r")
            self.collect(0.1, lambda i: False)
            self.inbox.clear()
        m = handoff.move(self.iut.world, "r", segment, configure=False)
        self._note("sent", f"station r attached to {segment}")
        if settle:
            self.collect(settle, lambda i: False)
        return m.t_up

    def attach(self, segment: str, timeout: float = 1.5):
        """Place the station on `segment` and wait until the MN shows it is there (its first
        solicitation on the new link: an advertisement sent before it took the link up would be
        lost). Returns that solicitation (or None)."""
        self.place(segment)
        return self.take(lambda i: self.is_solicitation(i) and i.segment == segment, timeout)

    def restart(self) -> None:
        """Stop the MN's role and start it again (state gone)."""
        from testbed.profiles import restart_role
        restart_role(self.iut.world, self.iut.scenario, self.iut.roles, self.iut.role)
        self.iut.restarts += 1

    # ---- receiving -----------------------------------------------------------------------------------
    def _note(self, direction: str, text: str, at: float | None = None) -> None:
        self.log.append((at or time.time(), direction, text))

    def catch_up(self, until: float) -> list:
        """What had arrived by `until` (kernel arrival time) and the sockets still hold, read without
        waiting: e.g. the taps' frames queued behind an answer at the home agent that was read
        first. Taken from the inbox; what arrived later stays for the next waits."""
        for _ in range(10000):
            n = len(self.inbox)
            self._pump(0.0)
            if len(self.inbox) == n:
                break
        caught = [i for i in self.inbox if i.time <= until]
        self.inbox = [i for i in self.inbox if i.time > until]
        return caught

    def _pump(self, timeout: float) -> None:
        import select
        fds = {tap.sock: ("tap", seg) for seg, tap in self.taps.items()}
        if self.udp is not None:
            fds[self.udp] = ("udp", None)
        for proto, s in self.tunnels.items():
            fds[s] = ("ip", proto)
        ready, _, _ = select.select(list(fds), [], [], max(timeout, 0.0))
        # what reached the home agent first: a wait for it (and the answer a part sends) must not queue
        # behind the taps' frames, which arrive by the hundred when the node starts or moves
        for s in sorted(ready, key=lambda s: fds[s][0] == "tap"):
            kind, detail = fds[s]
            try:
                if kind == "tap":
                    data, addr, now = _recv(s)
                    if addr[2] == socket.PACKET_OUTGOING:
                        continue  # the tapping node's own frames (the tester's included)
                    f = parse_frame(now, detail, data)
                    if f is None:
                        continue
                    if f.src_mac == self.mn_mac:
                        self.frames.append(f)
                        self.pcap.append((now, detail, data))
                        self._note("seen", f.summary(), now)
                        self.inbox.append(f)
                elif kind == "udp":
                    data, (src, sport), now = _recv(s)
                    item = AtHa(now, "udp", data, src, sport, 17)
                    self._note("seen", item.summary(), now)
                    self.inbox.append(item)
                else:
                    data, (src, _), now = _recv(s)
                    item = AtHa(now, "ip", data, src, None, detail)
                    self._note("seen", item.summary(), now)
                    self.inbox.append(item)
            except (BlockingIOError, InterruptedError):
                continue

    # ---- matchers -----------------------------------------------------------------------------------
    @staticmethod
    def is_solicitation(i) -> bool:
        return isinstance(i, Frame) and i.icmp is not None and i.icmp[:1] == b"\x0a"

    @staticmethod
    def link_request(segment: str | None = None, dst=None):
        """A Registration Request frame from the MN (on `segment`, to `dst`)."""
        def match(i) -> bool:
            return (isinstance(i, Frame) and i.request is not None and (segment is None or i.segment == segment)
                    and (dst is None or i.ip.dst == IPv4Address(dst)))
        return match

    @staticmethod
    def ha_request(i) -> bool:
        return isinstance(i, AtHa) and i.request is not None

    @staticmethod
    def arp_from_mn(i) -> bool:
        return isinstance(i, Frame) and i.arp is not None

    # ---- the agents on the links ----------------------------------------------------------------
    def agent(self, segment: str = "fn2", address=None, mac: str | None = None) -> Agent:
        """The tester's agent on `segment` (the access router's own address and MAC), or another
        one with `address` and `mac` (created on first use)."""
        if address is None:
            return self.agents[segment]
        key = f"{segment}:{address}"
        if key not in self.agents:
            self.agents[key] = Agent(segment, IPv4Address(address), mac or FAKE_AGENT_MAC)
        return self.agents[key]

    def advertise(self, agent: Agent | str = "fn2", flags: str | int = "F", coas=None, lifetime: int = 9,
                  registration_lifetime: int = 300, prefix_length: int | None = 25, sequence: int | None = None,
                  dst="224.0.0.1", ttl: int = 1, **fields) -> AgentAdvertisement:
        """Send an Agent Advertisement from `agent` (a segment name: its access router), flags as
        letters or an int; care-of addresses default to the agent's address when F is set."""
        a = self.agent(agent) if isinstance(agent, str) else agent
        flag_value = agent_flags(flags) if isinstance(flags, str) else int(flags)
        if coas is None:
            coas = [a.address] if flag_value & agent_flags("F") else []
        if sequence is None:
            sequence = a.sequence
            a.sequence = 256 if a.sequence >= 0xFFFF else a.sequence + 1
        adv = AgentAdvertisement(sequence=sequence, registration_lifetime=registration_lifetime, flags=flag_value,
                                 care_of_addresses=[IPv4Address(c) for c in coas], routers=[(a.address, 0)],
                                 lifetime=lifetime,
                                 prefix_lengths=None if prefix_length is None else [prefix_length], **fields)
        dst = IPv4Address(dst)
        mac = ALL_SYSTEMS_MAC if dst == IPv4Address("224.0.0.1") else BROADCAST_MAC
        packet = build_ipv4(a.address, dst, PROTO_ICMP, adv.encode(), ttl=ttl)
        self.send_frame(a.segment, ethernet_ipv4(packet, a.mac, mac),
                        f"Agent Advertisement from {a.address} seq {sequence} flags {flags} coa "
                        f"{[str(c) for c in coas]} lifetime {lifetime} reg-lifetime {registration_lifetime}")
        return adv

    def send_frame(self, segment: str, frame: bytes, what: str) -> None:
        self.taps[segment].sock.send(frame)
        self._note("sent", f"[{segment}] {what}")
        self.pcap.append((time.time(), segment, frame))

    def fa_reply(self, request: Frame, data: bytes, agent: Agent | None = None, checksum="right",
                 what: str = "") -> None:
        """Send a Registration Reply to the MN as its foreign agent: from the agent's address to the
        request's source address and port, to the MN's link-layer address."""
        a = agent or self.agent_for(request)
        packet = ipv4_udp(a.address, request.ip.src, MIP_PORT, request.udp.sport, data, checksum)
        self.send_frame(request.segment, ethernet_ipv4(packet, a.mac, request.src_mac),
                        f"Registration Reply {describe_item('udp', data)} {what} (udp checksum {checksum})")

    def agent_for(self, request: Frame) -> Agent:
        for a in self.agents.values():
            if a.segment == request.segment and (a.mac == request.dst_mac or a.address == request.ip.dst):
                return a
        return self.agents[request.segment]

    def arp_to_mn(self, segment: str, op: int, sender_mac: str, sender_ip, target_ip, dst_mac: str = BROADCAST_MAC,
                  what: str = "") -> None:
        frame = arp(op, sender_mac, sender_ip, target_ip, "00:00:00:00:00:00" if op == 1 else self.mn_mac, dst_mac)
        self.send_frame(segment, frame, f"ARP op {op} {sender_ip} asks for {target_ip} (to {dst_mac}) {what}")

    # ---- registration answers -------------------------------------------------------------------
    def answer(self, request_data: bytes, code: int = 0, **kw) -> bytes:
        """A home agent's reply to the request bytes (TesterHA.answer: signed MN-HA, the
        identification copied)."""
        return self.ha.answer(request_data, code=code, **kw)

    def ha_reply(self, at_ha: AtHa, data: bytes, checksum: str = "right", what: str = "") -> None:
        """Send a reply from the home agent's socket back to where the request came from."""
        if checksum == "right":
            self.udp.sendto(data, (at_ha.src, at_ha.sport))
        else:
            self.raw.sendto(ipv4_udp(self.ha_address, at_ha.src, MIP_PORT, at_ha.sport, data, checksum),
                            (at_ha.src, 0))
        self._note("sent", f"[ha] to {at_ha.src}:{at_ha.sport} {describe_item('udp', data)} {what} "
                           f"(udp checksum {checksum})")

    def ha_send_udp(self, dst, dport: int, payload: bytes, what: str = "") -> None:
        self.udp.sendto(payload, (str(dst), dport))
        self._note("sent", f"[ha] udp to {dst}:{dport} {what}")

    def ha_send_ip(self, packet: bytes, what: str = "") -> None:
        p = parse_ipv4(packet, strict_length=False).value
        sock = self.tunnels.get(p.protocol) or self.raw
        sock.sendto(packet, (str(p.dst), 0))
        self._note("sent", f"[ha] ip protocol {p.protocol} {p.src} -> {p.dst} {what}")

    # ---- preambles ----------------------------------------------------------------------------------
    def wait_request(self, segment: str | None = None, timeout: float = 3.0, dst=None) -> Frame | None:
        return self.take(self.link_request(segment, dst), timeout)

    def fa_request(self, segment: str = "fn2", flags: str = "F", timeout: float = 3.0, place: bool = True,
                   **adv) -> tuple[Frame, object]:
        """Preamble: the station on `segment`, an advertisement from the tester's agent there, the
        MN's request to it. INCONCLUSIVE without one. Returns (frame, parsed request)."""
        if place:
            self.attach(segment)
        a = self.agent(segment)
        self.advertise(a, flags, **adv)
        timeout = patience(timeout)
        f = self.wait_request(segment, timeout, dst=a.address)
        if f is None:
            inconclusive(f"no registration request to the tester's agent {a.address} on {segment} within {timeout} s "
                         f"of its advertisement")
        return f, f.request

    def fa_register(self, segment: str = "fn2", flags: str = "F", reply_lifetime: int | None = None,
                    **adv) -> tuple[Frame, object]:
        """Preamble: registered through the tester's agent on `segment` (the tester answers as FA
        with the home agent's accepting reply). Returns the request (frame, parsed)."""
        f, req = self.fa_request(segment, flags, **adv)
        self.fa_reply(f, self.answer(f.udp.payload, 0, lifetime=reply_lifetime))
        again = self.take(self.link_request(segment), 0.3)
        if again is not None and again.request.lifetime == req.lifetime:
            # still retransmitting: the accepting reply was not taken
            inconclusive(f"the MN retransmitted after an accepting reply: {again.summary()}")
        return f, req

    def colocated_request(self, segment: str = "fn1", timeout: float = 3.0, place: bool = True) -> tuple[Frame, AtHa]:
        """Preamble: the station on `segment` (a network with a co-located address for it), its
        request to the home agent seen on the link and at the HA's socket. INCONCLUSIVE without."""
        if place:
            self.place(segment)
        timeout = patience(timeout)
        f = self.wait_request(segment, timeout, dst=self.ha_address)
        if f is None:
            inconclusive(f"no registration request to the home agent on {segment} within {timeout} s")
        ident = f.request.identification
        at = self.take(lambda i: self.ha_request(i) and i.request.identification == ident, patience(2.0))
        if at is None:
            inconclusive(f"the request seen on {segment} did not reach the home agent's socket")
        return f, at

    def colocated_register(self, segment: str = "fn1", extensions_before: list = (), **answer) -> tuple[Frame, AtHa]:
        """Preamble: registered co-located (the tester-HA accepts). Returns (frame, at_ha)."""
        f, at = self.colocated_request(segment)
        at, again = self.ha_accept(at, extensions_before=list(extensions_before), **answer)
        if again is not None:
            inconclusive(f"the MN retransmitted after an accepting reply: {again.summary()}")
        return f, at

    def ha_accept(self, at: AtHa, what: str = "", **answer) -> tuple[AtHa, AtHa | None]:
        """Accept the co-located request `at` as the home agent. A retransmission (a new
        Identification, RFC 5944 3.6.3) that the MN sent before the reply could reach it, e.g. while
        the tester was slow to answer on a busy machine, is answered as well: the MN rightly ignores a
        reply to the request it replaced. Returns (the request answered last, a request the MN sent
        after that reply reached it or None, left in the inbox too): the caller judges the second."""
        for _ in range(3):
            sent_at = time.time()
            self.ha_reply(at, self.answer(at.data, 0, **answer), what=what)
            again = self.take(lambda i: self.ha_request(i) and i.src == at.src and
                              i.request.identification != at.request.identification, 0.3)
            if again is None or again.time > sent_at + CROSSING:
                if again is not None:
                    self.inbox.insert(0, again)  # still there for the caller's own waits
                return at, again
            self._note("note", f"the MN's retransmission crossed the reply ({again.summary()}): answered it too")
            at = again
        return at, None

    def next_ident(self) -> int:
        self.idents = (self.idents + 1) & 0xFFFF
        return self.idents

    # ---- evidence ----------------------------------------------------------------------------------
    def write_transcript(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrows = {"sent": "->", "note": "--"}
        lines = [f"{t:.6f} {arrows.get(d, '<-')} {text}" for t, d, text in sorted(self.log)]
        (directory / "tester-ladder.txt").write_text("\n".join(lines) + "\n")
        try:
            from scapy.layers.l2 import Ether
            from scapy.utils import wrpcap
            pkts = []
            for t, _seg, data in sorted(self.pcap, key=lambda x: x[0]):
                p = Ether(data)
                p.time = t
                pkts.append(p)
            if pkts:
                wrpcap(str(directory / "links.pcap"), pkts)
        except Exception as exc:  # the transcript is evidence, never a verdict
            (directory / "links.pcap.error").write_text(f"{type(exc).__name__}: {exc}\n")


def intervals(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


__all__ = ["MnTester", "Frame", "AtHa", "Agent", "parse_frame", "pingable", "echo_reply_in", "intervals",
           "TunnelData", "CORRESPONDENT", "HA", "MIP_PORT"]


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has the same value


def _recv(s: socket.socket) -> tuple[bytes, object, float]:
    """(data, address, arrival time): the kernel's receive timestamp (SO_TIMESTAMPNS), so an item's
    time is when it arrived, not when the tester got round to reading it (the taps' frames queue
    behind the home agent's socket when the machine is busy); the read time where none came."""
    data, anc, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(16))
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
            sec, nsec = struct.unpack("qq", cdata[:16])
            return data, addr, sec + nsec / 1e9
    return data, addr, time.time()
