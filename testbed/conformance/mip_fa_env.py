"""The Mobile IPv4 tester around a foreign agent under test (scenario conformance-fa).

The tester plays both of the FA's peers at once:
- the mobile nodes on the visited link fn1: frames sent and received on r's interface through an
  AF_PACKET socket. A visiting mobile node has its *home* address, not an fn1 address, so every
  packet of it is built whole (Ethernet, IPv4, UDP) with a link-layer address of its own (not r's:
  r's kernel then ignores what the FA sends to it, and the FA must find it by that address alone);
- the home agent beyond the core: a UDP socket on port 434, a raw ICMP socket and raw sockets for
  the tunnel protocols (4, 47, 55) inside the node that holds the home agent's address (iha), and a
  raw IP socket there for datagrams built whole (a reply with a wrong UDP checksum, tunnels).

The tester library (testbed/conformance/mip) knows nothing of the world; this module gives it
sockets inside the nodes (testbed/conformance/netns.py) and the world's addresses, with the
preambles the parts share (learn the FA from an advertisement, register a mobile node through it).
"""
from __future__ import annotations

import os
import socket
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from testbed.conformance import netns
from testbed.conformance.inbox import Inbox
from testbed.conformance.mip import (
    SecurityAssociation, SocketTransport, TesterHA, TesterMN, parse_advertisement, parse_reply, parse_request,
)
from testbed.conformance.mip.advertisements import AgentSolicitation
from testbed.conformance.mip.auth import EXT_FA_HA_AUTH, EXT_MN_FA_AUTH, EXT_MN_HA_AUTH
from testbed.conformance.mip.ipv4 import FLAG_DF, PROTO_ICMP, PROTO_UDP, build_ipv4, parse_ipv4
from testbed.conformance.mip.link import ethernet_ipv4, parse_arp
from testbed.conformance.mip.transport import describe as describe_item
from testbed.conformance.mip.tunnels import icmp_error
from testbed.conformance.mip.udp import ipv4_udp, parse_udp_segment
from testbed.report.verdicts import inconclusive

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
MIP_PORT = 434
MN_SPORT = 434  # the mobile nodes' source port (RFC 5944 lets it vary; the FA copies it back)
CORRESPONDENT = IPv4Address("10.1.2.10")  # h: the inner source of what the tester-HA tunnels
MN_MACS = ("02:4d:4e:00:00:01", "02:4d:4e:00:00:02", "02:4d:4e:00:00:03")
# routers on the way from the FA to the home agent that report ICMP errors, and the segment whose
# address they report from: the core (its link to ar1) and the intranet router (the home subnet)
REPORTER_SEGMENT = {"core": "core-ar1", "ir": "home"}


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


@dataclass(frozen=True)
class Frame:
    """A frame seen on the visited link (from r's interface)."""
    time: float
    src_mac: str
    dst_mac: str
    ethertype: int
    raw: bytes
    ip: object = None        # IPv4Packet (testbed.conformance.mip.ipv4) or None
    udp: object = None       # UdpDatagram or None
    arp: object = None       # ArpMessage or None

    @property
    def icmp(self) -> bytes | None:
        return self.ip.payload if self.ip is not None and self.ip.protocol == PROTO_ICMP else None

    def summary(self) -> str:
        if self.arp is not None:
            return f"ARP op {self.arp.op} {self.arp.sender_ip} asks/tells {self.arp.target_ip} (to {self.dst_mac})"
        if self.ip is None:
            return f"frame {self.src_mac} -> {self.dst_mac} type {self.ethertype:#06x}"
        head = f"{self.src_mac} -> {self.dst_mac} {self.ip.src} -> {self.ip.dst} ttl {self.ip.ttl}"
        if self.udp is not None:
            return f"{head} udp {self.udp.sport}->{self.udp.dport} {describe_item('udp', self.udp.payload)}"
        if self.icmp is not None:
            return f"{head} {describe_item('icmp', self.icmp)}"
        return f"{head} protocol {self.ip.protocol}"


def parse_frame(t: float, data: bytes) -> Frame | None:
    if len(data) < 14:
        return None
    etype = struct.unpack_from("!H", data, 12)[0]
    f = dict(time=t, src_mac=_mac(data[6:12]), dst_mac=_mac(data[0:6]), ethertype=etype, raw=data)
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


@dataclass
class VisitingMn:
    """A mobile node the tester plays on the visited link."""
    mn: TesterMN
    mac: str
    mn_fa: SecurityAssociation | None = None

    @property
    def home(self) -> IPv4Address:
        return self.mn.home_address


@dataclass
class Registration:
    """What a registration through the FA left: the request as sent, as relayed, the reply as the
    HA sent it and as the FA relayed it."""
    request: bytes
    relayed: object          # Received at the HA (udp)
    reply: bytes
    relayed_reply: Frame


@dataclass
class FaTester(Inbox):
    fa: IPv4Address                  # the FA's address on the visited link (from the scenario)
    ha: TesterHA
    transport: SocketTransport
    mns: list[VisitingMn]
    fa_ha: SecurityAssociation | None
    config: dict
    sockets: list = field(default_factory=list)
    fa_mac: str | None = None
    advertisement: object = None     # the last ParsedAdvertisement seen
    seen: list = field(default_factory=list)  # every frame from the link (not our own)
    inbox: list = field(default_factory=list)  # received, not yet taken by a wait
    own_macs: set = field(default_factory=set)
    iut: object = None

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, iut, ha_node: str = "iha", link_node: str = "r") -> "FaTester":
        world, cfg = iut.world, iut.scenario.roles[iut.role].config
        plan = world.plan
        ha_addr = plan.address(ha_node)
        ha_pid, mn_pid = world.pid(ha_node), world.pid(link_node)
        udp = netns.udp_socket(ha_pid, str(ha_addr), MIP_PORT)
        icmp = netns.raw_socket(ha_pid, socket.IPPROTO_ICMP)
        tunnels = {p: netns.raw_socket(ha_pid, p, header_included=True) for p in (4, 47, 55)}
        with netns.in_netns(ha_pid):
            tunnels[PROTO_UDP] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        from testbed import naming
        with netns.in_netns(mn_pid):
            packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            packet.bind((naming.station_ifname(link_node), ETH_P_ALL))
        transport = SocketTransport(udp=udp, icmp=icmp, tunnels=tunnels, packet=packet, clock=time.time)
        mn_sa = SecurityAssociation(1000, bytes.fromhex("6d6e2d68612d6b65792d74657374626564"))
        mn_fa = {IPv4Address(e["home_address"]): SecurityAssociation(int(e["spi"]), bytes.fromhex(e["key"]))
                 for e in cfg.get("mn_associations", [])}
        fa_ha = next((SecurityAssociation(int(e["spi"]), bytes.fromhex(e["key"]))
                      for e in cfg.get("ha_associations", []) if IPv4Address(e["address"]) == ha_addr), None)
        fa = IPv4Address(cfg["address"])
        homes = [IPv4Address("10.1.1.100"), IPv4Address("10.1.1.101"), IPv4Address("10.1.1.102")]
        mns = [VisitingMn(TesterMN(h, ha_addr, mn_sa, lifetime=300), mac, mn_fa.get(h)) for h, mac in zip(homes, MN_MACS)]
        coas = [IPv4Address(a) for a in cfg.get("care_of_addresses", [])] or [fa]
        ha = TesterHA(ha_addr, {m.home: mn_sa for m in mns}, {c: fa_ha for c in coas} if fa_ha else {})
        t = cls(fa, ha, transport, mns, fa_ha, dict(cfg), [udp, icmp, packet, *tunnels.values()])
        t.own_macs = set(MN_MACS)
        return t

    def reboot(self) -> None:
        """Stop the FA's role and start it again (a reboot of the agent, as the harness restarts
        a role); what the tester learnt of it stays (same node, same link-layer address)."""
        from testbed.conformance.mip_env import restart_iut
        restart_iut(self.iut)

    @contextmanager
    def reconfigured(self, **config):
        """The FA restarted with `config` laid over its scenario config for the block (see
        mip_env.reconfigured); what the tester learns of it meanwhile (its advertisement) is
        forgotten afterwards."""
        from testbed.conformance.mip_env import reconfigured
        known = self.advertisement
        with reconfigured(self.iut, **config):
            self.advertisement = None
            try:
                yield self
            finally:
                self.advertisement = known

    def close(self) -> None:
        for s in self.sockets:
            s.close()

    # ---- receiving: one inbox for the link's frames and the HA's sockets -----------------------
    def _pump(self, timeout: float) -> None:
        for item in self.transport.recv(max(timeout, 0.0)):
            if item.kind != "frame":
                self.inbox.append(item)
                continue
            f = parse_frame(item.time, item.data)
            if f is None or f.src_mac in self.own_macs:
                continue
            self.seen.append(f)
            if f.icmp is not None and f.icmp[:1] == b"\x09":
                adv = parse_advertisement(f.icmp, require_checksum=False)
                if adv.ok:
                    self.advertisement, self.fa_mac = adv.value, f.src_mac
            self.inbox.append(f)

    def wait_frame(self, match, timeout: float) -> Frame | None:
        return self.take(lambda i: isinstance(i, Frame) and match(i), timeout)

    def collect_frames(self, duration: float, match=lambda f: True) -> list[Frame]:
        return self.collect(duration, lambda i: isinstance(i, Frame) and match(i))

    @staticmethod
    def is_advertisement(f: Frame) -> bool:
        return f.icmp is not None and f.icmp[:1] == b"\x09" and parse_advertisement(f.icmp, require_checksum=False).ok

    def learn_agent(self, timeout: float = 3.0) -> Frame:
        """The FA's link-layer address from one of its advertisements (solicited); INCONCLUSIVE
        without one."""
        if self.fa_mac is not None and self.advertisement is not None:
            return None
        self.solicit(self.mns[0])
        f = self.wait_frame(self.is_advertisement, timeout)
        if f is None:
            inconclusive(f"no agent advertisement on the visited link within {timeout} s")
        return f

    def send_frame_ip(self, packet: bytes, mac: str, dst_mac: str | None = None) -> None:
        self.transport.send_frame(ethernet_ipv4(packet, mac, dst_mac or self.fa_mac or "ff:ff:ff:ff:ff:ff"))

    def solicit(self, mn: VisitingMn, src=None, dst="224.0.0.2", ttl: int = 1, dst_mac: str | None = None,
                **overrides) -> bytes:
        icmp = AgentSolicitation(**overrides).encode()
        dst = IPv4Address(dst)
        mac = dst_mac or (f"01:00:5e:00:00:{int(dst.packed[3]):02x}" if dst.is_multicast else "ff:ff:ff:ff:ff:ff")
        self.send_frame_ip(build_ipv4(src or mn.home, dst, PROTO_ICMP, icmp, ttl=ttl), mn.mac, mac)
        return icmp

    # ---- registration requests from a visiting mobile node -----------------------------------------
    def request(self, mn: VisitingMn, care_of_address=None, lifetime: int | None = None, flags="",
                mn_fa: bool | None = None, mn_fa_overrides: dict | None = None, extensions_after: list = (),
                **kw) -> bytes:
        """A request of `mn` for the FA's care-of address (the first advertised one), signed MN-HA,
        and MN-FA when the FA shares an SA with it (or mn_fa=True with the given overrides)."""
        coa = care_of_address or self.care_of_address()
        after = list(extensions_after)
        if (mn.mn_fa is not None) if mn_fa is None else mn_fa:
            after.append(mn.mn_fa.authenticate(EXT_MN_FA_AUTH, **(mn_fa_overrides or {})))
        return mn.mn.request(time.time(), coa, lifetime=lifetime, flags=flags, extensions_after=after, **kw)

    def send_request(self, mn: VisitingMn, data: bytes, ttl: int = 255, dst=None, sport: int = MN_SPORT,
                     checksum="right", dst_mac: str | None = None, src=None) -> None:
        dst = IPv4Address(dst or self.fa)
        if dst_mac is None:
            dst_mac = ("ff:ff:ff:ff:ff:ff" if dst == IPv4Address("255.255.255.255")
                       else f"01:00:5e:00:00:{int(dst.packed[3]):02x}" if dst.is_multicast else self.fa_mac)
        packet = ipv4_udp(src or mn.home, dst, sport, MIP_PORT, data, checksum, ttl=ttl)
        self.send_frame_ip(packet, mn.mac, dst_mac)

    def care_of_address(self) -> IPv4Address:
        if self.advertisement is not None and self.advertisement.care_of_addresses:
            return self.advertisement.care_of_addresses[0]
        return self.fa

    @staticmethod
    def reply_to(mn: VisitingMn, ident: int | None = None):
        """A matcher: a Registration Reply for `mn` (its home address; the identification's low 32
        bits when given) in a frame."""
        def match(f: Frame) -> bool:
            if f.udp is None or f.udp.payload[:1] != b"\x03":
                return False
            r = parse_reply(f.udp.payload)
            return r.ok and r.home_address == mn.home and (ident is None or
                                                          r.identification & 0xFFFFFFFF == ident & 0xFFFFFFFF)
        return match

    def wait_reply(self, mn: VisitingMn, ident: int | None = None, timeout: float = 1.0) -> Frame | None:
        return self.wait_frame(self.reply_to(mn, ident), timeout)

    # ---- the home agent's side ----------------------------------------------------------------------
    def wait_relayed(self, mn: VisitingMn | None = None, ident: int | None = None, timeout: float = 1.0):
        """The next Registration Request the HA's socket receives (for `mn`, with `ident`), or None."""
        return self.take(self._relayed(mn, ident), timeout)

    @staticmethod
    def _relayed(mn: VisitingMn | None, ident: int | None):
        """A matcher: a Registration Request at the HA's socket (for `mn`, with `ident`)."""
        def match(item) -> bool:
            if isinstance(item, Frame) or item.kind != "udp" or item.data[:1] != b"\x01":
                return False
            r = parse_request(item.data)
            return r.ok and (mn is None or r.home_address == mn.home) and (
                ident is None or r.identification == ident)
        return match

    def not_relayed(self, mn: VisitingMn, ident: int, window: float, marker: bool = True):
        """A silence window (testbed/conformance/inbox.py) for the relay of `mn`'s request `ident`
        (sent already): with `marker`, a valid request of another of the tester's mobile nodes
        follows, and the window ends once the FA has relayed that one (the tester-HA accepts it).
        A Quiet: .item is the relayed request, or None."""
        after = None
        if marker:
            other = next(m for m in self.mns if m is not mn)
            self.send_request(other, self.request(other))
            after = self._relayed(other, other.mn.pending_identification)
        q = self.quiet_until_marker(self._relayed(mn, ident), after, window)
        if q.marker is not None:
            self.answer(q.marker, 0)
        return q

    def ha_items(self, duration: float, kinds=("udp", "ip", "icmp")) -> list:
        """Whatever reaches the HA's sockets within `duration`."""
        return self.collect(duration, lambda i: not isinstance(i, Frame) and i.kind in kinds)

    def answer(self, relayed, code: int = 0, lifetime: int | None = None, fa_ha: bool | None = None,
               checksum: str = "right", **kw) -> bytes:
        """The HA's reply to a relayed request, sent back to where it came from. FA-HA is appended
        when the HA shares an SA with the FA and the request is not a deregistration (RFC 5944 3.5.4)."""
        req = parse_request(relayed.data).value
        dereg = req.lifetime == 0 or req.care_of_address == req.home_address
        if fa_ha is None:
            fa_ha = self.fa_ha is not None and not dereg
        data = self.ha.answer(relayed.data, code=code, lifetime=lifetime, fa_ha=fa_ha and bool(self.ha.fa_associations),
                              **kw)
        self.send_reply(data, relayed, checksum)
        return data

    def relayed_datagram(self, relayed) -> bytes:
        """The relayed request as it left the FA (IPv4 and UDP headers rebuilt from what the HA's
        socket saw: addresses, ports, TTL), for an ICMP error to quote."""
        return ipv4_udp(relayed.src, relayed.dst, relayed.sport, relayed.dport or MIP_PORT, relayed.data,
                        ttl=relayed.ttl or 64, flags_fragment=FLAG_DF)

    def icmp_error_about(self, relayed, icmp_type: int, code: int, reporter: str | None = None) -> str:
        """An ICMP error about a relayed request, quoting it whole, sent to the FA from the home
        agent's node (`reporter` None: what the HA's host says, e.g. port unreachable) or from the
        router `reporter` (a node name of the world, with its address on the way to the FA: what a
        router on the path says, e.g. network or host unreachable). Returns the reporter's address."""
        message = icmp_error(icmp_type, code, self.relayed_datagram(relayed))
        if reporter is None:
            self.transport.send_icmp(relayed.src, message, ttl=64)
            return str(self.ha.address)
        world = self.iut.world
        src = world.plan.address(reporter, REPORTER_SEGMENT.get(reporter))
        s = netns.raw_socket(world.pid(reporter), socket.IPPROTO_RAW, header_included=True)
        try:
            s.sendto(build_ipv4(src, relayed.src, PROTO_ICMP, message, ttl=64), (str(relayed.src), 0))
        finally:
            s.close()
        return str(src)

    def send_reply(self, data: bytes, relayed, checksum: str = "right") -> None:
        if checksum == "right":
            self.transport.send_udp(relayed.src, data, dport=relayed.sport)
        else:
            self.transport.send_ip(ipv4_udp(self.ha.address, relayed.src, MIP_PORT, relayed.sport, data, checksum))

    def register(self, mn: VisitingMn, flags="", lifetime: int | None = None, reply_lifetime: int | None = None,
                 **request_kw) -> Registration:
        """Preamble: the FA learnt, `mn` registered through it (the tester-HA accepts); INCONCLUSIVE
        when the FA does not relay the request or the accepting reply."""
        self.learn_agent()
        data = self.request(mn, lifetime=lifetime, flags=flags, **request_kw)
        ident = mn.mn.pending_identification
        self.send_request(mn, data)
        relayed = self.wait_relayed(mn, ident)
        if relayed is None:
            inconclusive(f"the FA did not relay {mn.home}'s registration request to the home agent")
        reply = self.answer(relayed, 0, reply_lifetime)
        back = self.wait_reply(mn, ident)
        if back is None or parse_reply(back.udp.payload).code not in (0, 1):
            inconclusive(f"the FA did not relay the HA's accepting reply to {mn.home}: "
                         f"{back.summary() if back else 'nothing'}")
        self._settle_reverse_tunnel(flags)
        return Registration(data, relayed, reply, back)

    def _settle_reverse_tunnel(self, flags) -> None:
        if "T" in str(flags) or (isinstance(flags, int) and flags & 0x02):
            # RFC 5944 3.7.3.2: the FA updates its visitor entry *after* forwarding the reply; give
            # the reverse-tunnel state a moment before the visitor's first datagram
            self.collect(0.05, lambda i: False)

    def deregister(self, mn: VisitingMn, care_of_address=None) -> Frame | None:
        data = self.request(mn, care_of_address=care_of_address, lifetime=0)
        ident = mn.mn.pending_identification
        self.send_request(mn, data)
        relayed = self.wait_relayed(mn, ident)
        if relayed is None:
            inconclusive(f"the FA did not relay {mn.home}'s deregistration")
        self.answer(relayed, 0, 0)
        back = self.wait_reply(mn, ident)
        if back is None or parse_reply(back.udp.payload).code not in (0, 1):
            inconclusive(f"the FA did not relay the HA's acceptance of {mn.home}'s deregistration: "
                         f"{back.summary() if back else 'nothing'}")
        return back

    # ---- data ----------------------------------------------------------------------------------------
    def inner(self, mn: VisitingMn, marker: bytes, src=CORRESPONDENT, ttl: int = 64) -> bytes:
        """A datagram for the mobile node's home address, as the HA would intercept it."""
        return ipv4_udp(src, mn.home, 7777, 7777, marker, ttl=ttl)

    def tunnel_to_coa(self, inner: bytes, kind: str = "ipip", coa=None, **kw) -> None:
        self.transport.send_ip(self.ha.tunnel(inner, coa or self.care_of_address(), kind, **kw))

    def delivered(self, mn: VisitingMn, marker: bytes, timeout: float = 0.5) -> Frame | None:
        """The datagram carrying `marker` on the link to the mobile node, or None."""
        return self.wait_frame(lambda f: self._carries(f, mn, marker), timeout)

    def not_delivered(self, mn: VisitingMn, marker: bytes, window: float, marker_mn: VisitingMn | None = None):
        """A silence window (testbed/conformance/inbox.py) for the datagram carrying `marker` (sent
        already) on the link to `mn`: with `marker_mn` (a registered visitor), a plain datagram to
        it is tunnelled after, and the window ends once the FA has delivered that one. A Quiet:
        .item is the frame that delivered `marker`, or None."""
        after = None
        if marker_mn is not None:
            mark = b"fa-marker-" + os.urandom(6).hex().encode()
            self.tunnel_to_coa(self.inner(marker_mn, mark))
            after = lambda i: isinstance(i, Frame) and self._carries(i, marker_mn, mark)  # noqa: E731
        return self.quiet_until_marker(lambda i: isinstance(i, Frame) and self._carries(i, mn, marker), after, window)

    def not_reverse_tunnelled(self, marker: bytes, window: float, marker_mn: VisitingMn | None = None):
        """A silence window (testbed/conformance/inbox.py) at the HA for the reverse tunnel of the
        datagram carrying `marker` (sent already): with `marker_mn` (a visitor registered with T), a
        datagram of it follows, and the window ends once the FA has tunnelled that one. A Quiet:
        .item is the tunnelled packet (protocol 4), or None."""
        after = None
        if marker_mn is not None:
            mark = b"fa-marker-" + os.urandom(6).hex().encode()
            self.send_frame_ip(ipv4_udp(marker_mn.home, CORRESPONDENT, 7777, 7777, mark), marker_mn.mac)
            after = self.reverse_tunnelled(mark)
        return self.quiet_until_marker(self.reverse_tunnelled(marker), after, window)

    @staticmethod
    def reverse_tunnelled(marker: bytes):
        return lambda i: getattr(i, "kind", None) == "ip" and i.protocol == 4 and marker in i.data

    def pending_marker(self, *other_than: VisitingMn):
        """For a silence window on the link after a reply from the HA: a request of another of the
        tester's mobile nodes (than `other_than`), relayed and left pending, as (node, relayed); None
        when the FA does not relay it (then the window is waited whole)."""
        mn = next(m for m in self.mns if all(m is not o for o in other_than))
        data = self.request(mn)
        ident = mn.mn.pending_identification
        self.send_request(mn, data)
        relayed = self.wait_relayed(mn, ident)
        return (mn, relayed) if relayed is not None else None

    def reply_not_relayed(self, match, window: float, marker=None):
        """A silence window (testbed/conformance/inbox.py) on the link for a frame that `match`es
        (a reply the tester-HA sent already): with `marker` (from `pending_marker`), the tester-HA
        accepts that pending request now, and the window ends once the FA has relayed that reply.
        A Quiet: .item is the matching frame, or None."""
        after = None
        if marker is not None:
            mn, relayed = marker
            self.answer(relayed, 0)
            done = self.reply_to(mn, parse_request(relayed.data).identification)
            after = lambda i: isinstance(i, Frame) and done(i)  # noqa: E731
        return self.quiet_until_marker(lambda i: isinstance(i, Frame) and match(i), after, window)

    def marker_visitor(self, *other_than: VisitingMn, flags: str = "") -> VisitingMn | None:
        """A visitor registered for silence windows' markers (another of the tester's mobile nodes
        than the part's, `other_than`), or None when the FA does not relay its registration (then the windows
        are waited whole)."""
        mn = next(m for m in self.mns if all(m is not o for o in other_than))
        data = self.request(mn, flags=flags)
        ident = mn.mn.pending_identification
        self.send_request(mn, data)
        relayed = self.wait_relayed(mn, ident)
        if relayed is None:
            return None
        self.answer(relayed, 0)
        back = self.wait_reply(mn, ident)
        if back is None or parse_reply(back.udp.payload).code not in (0, 1):
            return None
        self._settle_reverse_tunnel(flags)
        return mn

    @staticmethod
    def _carries(f: Frame, mn: VisitingMn, marker: bytes) -> bool:
        return f.udp is not None and f.udp.payload == marker and f.ip.dst == mn.home

    def mn_sends(self, mn: VisitingMn, dst, payload: bytes, protocol: int = PROTO_ICMP, ttl: int = 64) -> bytes:
        """A datagram from the mobile node's home address, sent to the FA's link-layer address (its
        default router)."""
        packet = build_ipv4(mn.home, dst, protocol, payload, ttl=ttl)
        self.send_frame_ip(packet, mn.mac)
        return packet

    # ---- evidence ------------------------------------------------------------------------------------
    def write_transcript(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

        def describe(kind: str, data: bytes) -> str:
            if kind == "frame":
                f = parse_frame(0.0, data)
                return f.summary() if f else f"frame {len(data)} bytes"
            return describe_item(kind, data)
        (directory / "tester-ladder.txt").write_text(self.transport.ladder(describe) + "\n")
        try:
            from scapy.layers.l2 import Ether
            from scapy.utils import wrpcap
            pkts = []
            for e in self.transport.log:
                if e.kind == "frame":
                    p = Ether(e.data)
                    p.time = e.time
                    pkts.append(p)
            if pkts:
                wrpcap(str(directory / "link.pcap"), pkts)
        except Exception as exc:  # the transcript is evidence, never a verdict
            (directory / "link.pcap.error").write_text(f"{type(exc).__name__}: {exc}\n")


def extension_types(data: bytes, parser=parse_request) -> list[int]:
    m = parser(data)
    return [e.type for e in m.extensions] if m.ok else []


__all__ = ["FaTester", "Frame", "VisitingMn", "Registration", "parse_frame", "extension_types",
           "EXT_MN_HA_AUTH", "EXT_MN_FA_AUTH", "EXT_FA_HA_AUTH", "CORRESPONDENT"]
