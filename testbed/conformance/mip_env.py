"""The Mobile IPv4 tester in the world: the other parties of a conformance test part, speaking from
nodes of the world, with the preambles the parts share and their transcript for the report.

The tester library (testbed/conformance/mip) is sans-I/O and knows nothing of the world; this module
gives it sockets inside the nodes (testbed/conformance/netns.py) and the world's addresses.

Home agent under test (scenario conformance-ha, `HaTester`): the tester is
- the mobile node with a co-located care-of address at r on fn1 (`mn_place`, 192.0.2.100): UDP 434,
  raw sockets for protocols 4, 47 and 55 (tunnelled data in, reverse tunnels out) and a raw socket
  for whole hand-made packets (a wrong UDP checksum, any source);
- a foreign agent at ar1 (`fa_place`, 192.0.2.1, with an FA-HA security association at the HA) and
  one at ar2 without one (`fa2_place`, 192.0.2.129);
- a mobile node behind the NAT at nh (`nat_place`, 10.77.0.10, outside 203.0.113.10): RFC 3519;
- a correspondent host h on the server subnet (`cn_place`, 10.1.2.10): datagrams to a home address,
  every header field chosen, and what reverse tunnels deliver;
- a listener on the home link at ir (`link`): ARP requests and what the HA announces.
The MN at r, the FA at ar1 and the correspondent listen from the start; the other places open
their sockets when a part first uses them (before it sends what they are to receive).

Silence windows (the HA must not answer, tunnel, deliver or proxy) end on a marker as
testbed/conformance/inbox.py describes: the scenario's fifth home address is the marker node,
which the tester registers at r (`marker_binding`) or asks for with a valid request
(`marker_request`) after the probe.
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
from testbed.conformance.inbox import Quiet, quiet_until_marker
from testbed.conformance.mip import (
    SecurityAssociation, SocketTransport, TesterFA, TesterMN, decapsulate, parse_reply,
)
from testbed.conformance.mip.advertisements import AgentSolicitation, parse_advertisement
from testbed.conformance.mip.ipv4 import FLAG_DF, build_ipv4, parse_ipv4
from testbed.conformance.mip.link import parse_arp
from testbed.conformance.mip.messages import MIP_PORT, parse_tunnel_data
from testbed.conformance.mip.transport import Received
from testbed.conformance.mip.tunnels import ipip_encapsulate
from testbed.conformance.mip.udp import build_udp, ipv4_udp
from testbed.report.verdicts import inconclusive

ETH_P_ARP = 0x0806
IPPROTO_RAW = 255
MARKER_HOME_INDEX = 4  # the scenario's fifth mobile node is the marker node (see HaTester.marker_home)
CN_PORT = 7434  # the correspondent's source port for data to a home address
SINK_PORT = 9  # discard


@dataclass
class Place:
    """The tester at one node: its address there and a SocketTransport over sockets made inside."""
    name: str
    node: str
    address: str
    transport: SocketTransport
    sockets: list = field(default_factory=list)

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def _raw(pid: int, proto: int) -> socket.socket:
    s = netns.raw_socket(pid, proto, header_included=True)
    s.setblocking(False)
    return s


def open_place(name: str, node: str, pid: int, address: str, udp: bool = True,
               tunnels: tuple = (4, 47, 55), raw_udp_out: bool = True, raw_udp_in: bool = False,
               icmp: bool = False, bind_address: bool = False) -> Place:
    """A place: UDP 434 on all addresses (with `udp`), receiving raw sockets for the tunnel
    protocols, and a send-only raw socket for whole packets of protocol 17 (`raw_udp_out`; with
    `raw_udp_in` the protocol-17 raw socket also receives every UDP datagram; with `bind_address`
    the UDP socket is bound to `address`, the source of what it sends on a node with several)."""
    socks, tun = [], {}
    u = None
    if udp:
        u = netns.udp_socket(pid, address if bind_address else "0.0.0.0", MIP_PORT)
        u.setblocking(False)
        socks.append(u)
    for proto in tunnels:
        tun[proto] = _raw(pid, proto)
    if raw_udp_in:
        tun[17] = _raw(pid, 17)
    elif raw_udp_out:
        tun[17] = _raw(pid, IPPROTO_RAW)  # never receives: whole packets out only
    socks += list(tun.values())
    ic = None
    if icmp:
        ic = netns.raw_socket(pid, 1)
        ic.setblocking(False)
        socks.append(ic)
    return Place(name, node, address, SocketTransport(udp=u, icmp=ic, tunnels=tun), socks)


@dataclass
class Tunnelled:
    """A datagram for a home address as it arrived at the care-of address."""
    received: Received
    kind: str            # ipip, minimal, gre, udp
    outer: object        # IPv4Header of the outer packet (for udp: the IP header of the UDP datagram)
    inner: bytes         # the inner IPv4 packet
    inner_ttl: int
    details: dict

    def summary(self) -> str:
        o = self.outer
        return (f"{self.kind} {o.src}->{o.dst} outer ttl {o.ttl} df {o.df} tos {o.tos:#x}; inner ttl {self.inner_ttl} "
                f"{self.details}")


class HomeLink:
    """An AF_PACKET listener/sender on the home link (at ir): ARP seen there, ARP requests sent."""

    def __init__(self, pid: int, iface: str, address: str):
        with netns.in_netns(pid):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            self.sock.bind((iface, ETH_P_ARP))
        self.sock.setblocking(False)
        self.iface, self.address = iface, address
        self.mac = _mac_of(pid, iface)
        self.log: list[tuple[float, str]] = []

    def drain(self) -> None:
        """Forget what arrived so far."""
        self.collect(0)

    def collect(self, seconds: float, until=None) -> list:
        """ARP messages (link.ArpMessage, with .time set) seen within `seconds` (or until `until(msg)`)."""
        import select
        out, end = [], time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            ready, _, _ = select.select([self.sock], [], [], max(left, 0))
            if not ready:
                if left <= 0:
                    return out
                continue
            try:
                frame, meta = self.sock.recvfrom(2048)
            except BlockingIOError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue
            msg = parse_arp(frame)
            if not msg.ok:
                continue
            m = msg.value
            self.log.append((time.time(), f"<- arp op {m.op} {m.sender_ip} is-at {m.sender_mac} -> "
                                          f"{m.target_ip} ({m.target_mac}) to {m.dst_mac}"))
            out.append(m)
            if until is not None and until(m):
                return out

    def who_has(self, target: str, timeout: float = 0.3):
        """An ARP request for `target` from ir; the first reply for it (ArpMessage) or None."""
        from testbed.conformance.mip.link import arp
        self.sock.send(arp(1, self.mac, self.address, target))
        self.log.append((time.time(), f"-> arp who-has {target} tell {self.address}"))
        got = self.collect(timeout, until=lambda m: m.op == 2 and m.sender_ip == str(target))
        replies = [m for m in got if m.op == 2 and m.sender_ip == str(target)]
        return replies[0] if replies else None

    def no_reply(self, target: str, timeout: float = 0.3, marker_target: str | None = None):
        """An ARP request for `target` from ir, in a silence window: the first reply for it
        (ArpMessage) or None. With `marker_target` (an address the HA answers for: a bound home
        address), a request for it follows, and the window ends once that one is answered
        (testbed/conformance/inbox.py)."""
        from testbed.conformance.mip.link import arp
        for ip in (target, marker_target):
            if ip is not None:
                self.sock.send(arp(1, self.mac, self.address, ip))
                self.log.append((time.time(), f"-> arp who-has {ip} tell {self.address}"))

        def reply_for(ip):
            return lambda m: m.op == 2 and m.sender_ip == str(ip)
        return quiet_until_marker(lambda t: self.collect(t, until=lambda m: True), reply_for(target),
                                  reply_for(marker_target) if marker_target is not None else None, timeout).item

    def close(self) -> None:
        self.sock.close()


def _mac_of(pid: int, iface: str) -> str:
    """The MAC address of `iface` in the node (SIOCGIFHWADDR on a socket made there)."""
    import fcntl
    with netns.in_netns(pid):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(s.fileno(), 0x8927, struct.pack("256s", iface.encode()[:15]))
    finally:
        s.close()
    return ":".join(f"{b:02x}" for b in info[18:24])


class HaTester:
    """One part's tester against a home agent under test (see the module docstring)."""

    def __init__(self, world, scenario, role: str = "ha"):
        cfg = scenario.roles[role].config
        plan = world.plan
        self.world, self.plan = world, plan
        self.ha = str(cfg["address"])
        self.home_network = str(cfg["home_network"])
        self.max_lifetime = int(cfg.get("max_lifetime", 1800))
        self.max_bindings = cfg.get("max_bindings")
        self.sas = {str(n["home_address"]): SecurityAssociation(int(n["spi"]), bytes.fromhex(n["key"]))
                    for n in cfg["mobile_nodes"]}
        self.node_max_lifetime = {str(n["home_address"]): n.get("max_lifetime") for n in cfg["mobile_nodes"]}
        self.fa_sas = {str(a["address"]): SecurityAssociation(int(a["spi"]), bytes.fromhex(a["key"]))
                       for a in cfg.get("fa_associations", [])}
        self.homes = list(self.sas)
        self.coa = str(plan.attachments["fn1"].address)                # r on fn1
        self.fa_address = str(plan.address("ar1", "fn1"))              # the FA with an FA-HA SA
        self.fa2_address = str(plan.address("ar2", "fn2"))            # an FA without one
        self.nat_inside = str(plan.address("nh", "fn3"))
        self.nat_public = str(plan.address("nat", "core-nat"))
        self.cn = str(plan.address("h", "srv"))
        self.home_router = str(plan.address("ir", "home"))
        self.home_iface = plan.nodes["ir"].interface_on("home").name
        self._places: dict[str, Place] = {}
        self._link: HomeLink | None = None
        self.tag = int.from_bytes(os.urandom(2), "big")
        self._seq = 0
        # the marker node (testbed/conformance/inbox.py: silence windows ended by a marker): a home
        # address no part judges, after the ones the parts use (the fifth, 10.1.1.104)
        self.marker_home = self.homes[MARKER_HOME_INDEX] if len(self.homes) > MARKER_HOME_INDEX else None
        self._marker_mn: TesterMN | None = None
        self._marker_bound: str | None = None  # the flags it is registered with, None: not bound
        for name in ("mn", "fa", "cn"):  # listening from the start: what arrives early is not lost
            self._place(name)

    # ---- places ----------------------------------------------------------------------------
    def _place(self, name: str) -> Place:
        if name not in self._places:
            pid = self.world.pid
            if name == "mn":
                p = open_place("mn", "r", pid("r"), self.coa)
            elif name == "fa":
                p = open_place("fa", "ar1", pid("ar1"), self.fa_address, bind_address=True)
            elif name == "fa2":
                p = open_place("fa2", "ar2", pid("ar2"), self.fa2_address, bind_address=True)
            elif name == "nat":
                p = open_place("nat", "nh", pid("nh"), self.nat_inside, tunnels=())
            elif name == "cn":
                p = open_place("cn", "h", pid("h"), self.cn, udp=False, tunnels=(4,), raw_udp_in=True, icmp=True)
            elif name == "home":
                p = open_place("home", "ir", pid("ir"), self.home_router, tunnels=())
            elif name == "adv":  # ICMP on the home link at ir: the HA's advertisements, our solicitations
                p = open_place("adv", "ir", pid("ir"), self.home_router, udp=False, tunnels=(), raw_udp_out=False,
                               icmp=True)
                p.transport.icmp.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                            socket.inet_aton(self.home_router))
            else:
                raise KeyError(name)
            self._places[name] = p
        return self._places[name]

    @property
    def mn_place(self) -> Place:
        return self._place("mn")

    @property
    def fa_place(self) -> Place:
        return self._place("fa")

    @property
    def fa2_place(self) -> Place:
        return self._place("fa2")

    @property
    def nat_place(self) -> Place:
        return self._place("nat")

    @property
    def cn_place(self) -> Place:
        return self._place("cn")

    @property
    def home_place(self) -> Place:
        """The tester on the home link (at ir, 10.1.1.1): broadcasts there."""
        return self._place("home")

    @property
    def adv_place(self) -> Place:
        """The tester on the home link (at ir) for ICMP: agent solicitations out, advertisements in."""
        return self._place("adv")

    def solicit_home(self, dst: str = "224.0.0.2") -> None:
        """An Agent Solicitation on the home link from ir (TTL 1, RFC 5944 2.2)."""
        self.adv_place.transport.send_icmp(dst, AgentSolicitation().encode(), ttl=1)

    def home_advertisements(self, duration: float, solicit_at: tuple = ()) -> list:
        """The HA's Agent Advertisements heard on the home link within `duration` seconds, as
        (Received, ParsedAdvertisement), with a solicitation sent at each offset of `solicit_at`."""
        place = self.adv_place  # listening from here on (a duration of 0 only opens it)
        got, start = [], time.monotonic()
        pending = sorted(solicit_at)
        while (left := start + duration - time.monotonic()) > 0:
            if pending and time.monotonic() - start >= pending[0]:
                pending.pop(0)
                self.solicit_home()
                continue
            wait = min(left, max(pending[0] - (time.monotonic() - start), 0)) if pending else left
            for i in place.transport.recv(wait):
                if i.kind == "icmp" and i.src == self.ha and i.data[:1] == b"\x09":
                    a = parse_advertisement(i.data, require_checksum=False)
                    if a.ok:
                        got.append((i, a.value))
        return got

    @property
    def link(self) -> HomeLink:
        if self._link is None:
            self._link = HomeLink(self.world.pid("ir"), self.home_iface, self.home_router)
        return self._link

    def close(self) -> None:
        for p in self._places.values():
            p.close()
        if self._link is not None:
            self._link.close()

    # ---- mobile nodes ----------------------------------------------------------------------
    def mn(self, home: str | None = None, lifetime: int = 300, **kw) -> TesterMN:
        """A tester mobile node for one of the HA's home addresses (the first by default)."""
        home = home or self.homes[0]
        return TesterMN(home, self.ha, self.sas[home], lifetime=lifetime, **kw)

    def fa(self, with_sa: bool = True) -> TesterFA:
        addr = self.fa_address if with_sa else self.fa2_address
        return TesterFA(addr, addr, fa_ha=self.fa_sas.get(addr) if with_sa else None)

    # ---- registration messages ---------------------------------------------------------------
    def send(self, data: bytes, place: Place | None = None, dst: str | None = None, dport: int = MIP_PORT,
             ttl: int | None = None) -> None:
        place = place or self.mn_place
        place.transport.send_udp(dst or self.ha, data, dport, ttl=ttl)

    def send_packet(self, packet: bytes, place: Place | None = None) -> None:
        """A whole IPv4 packet (any header, any UDP checksum) from a place."""
        (place or self.mn_place).transport.send_ip(packet)

    def udp_packet(self, data: bytes, place: Place | None = None, checksum: str | int = "right", src=None,
                   dst=None, sport: int = MIP_PORT, dport: int = MIP_PORT, ttl: int = 64) -> bytes:
        place = place or self.mn_place
        return ipv4_udp(src or place.address, dst or self.ha, sport, dport, data, checksum, ttl=ttl)

    def reply_to(self, ident: int, place: Place | None = None, timeout: float = 1.0) -> Received | None:
        """The HA's Registration Reply whose identification's low 32 bits are `ident`'s, at a place."""
        return (place or self.mn_place).transport.wait_for(self.reply_match(ident), timeout)

    @staticmethod
    def _is_registration(i: Received) -> bool:
        return i.kind == "udp" and i.data[:1] in (b"\x01", b"\x03")

    def any_registration(self, place: Place | None = None, timeout: float = 0.5, marker: bool = False) -> list[Received]:
        """Every registration message (type 1 or 3) that arrives at a place within `timeout`; with
        `marker` (the MN's place only), the silence ends after the marker node's request is answered
        (inbox.py), and once something came the rest of the window is collected as without."""
        place = place or self.mn_place
        items, end = [], time.monotonic() + timeout
        if marker:
            answered = self.marker_request(place)
            q = self.quiet(lambda i: self._is_registration(i) and not answered(i), timeout, place, answered)
            if q.silent:
                return []
            items.append(q.item)
        tp = place.transport
        while (left := end - time.monotonic()) > 0:
            items += [i for i in tp.recv(left) if self._is_registration(i)]
        return items

    def exchange(self, mn: TesterMN, data: bytes, place: Place | None = None, timeout: float = 1.0,
                 dst: str | None = None, marker: bool = False):
        """Send a request (bytes built by `mn`) and wait for its reply: (Received or None, ReplyCheck or None).
        With `marker` (a request that may be silently discarded), the wait for its reply ends once
        the marker node's request sent after it is answered (inbox.py)."""
        place = place or self.mn_place
        ident = mn.pending_identification
        self.send(data, place, dst=dst)
        if marker:
            item = self.quiet(self.reply_match(ident), timeout, place, self.marker_request(place)).item
        else:
            item = self.reply_to(ident, place, timeout)
        if item is None:
            return None, None
        return item, mn.check_reply(item.data, time.time(), ident)

    def register(self, mn: TesterMN, coa: str | None = None, place: Place | None = None, timeout: float = 1.0,
                 marker: bool = False, **request_kw):
        """A registration request from `place` (the MN at r by default) with care-of address `coa`
        (r's address by default): (Received or None, ReplyCheck or None); `marker`: see `exchange`."""
        place = place or self.mn_place
        request_kw.setdefault("flags", "D")  # a co-located care-of address unless told otherwise
        data = mn.request(time.time(), coa or place.address, **request_kw)
        return self.exchange(mn, data, place, timeout, marker=marker)

    # ---- markers: silence windows that end once the HA handled what came after the probe ------------
    def quiet(self, unwanted, window: float, place: Place | None = None, marker=None) -> Quiet:
        """inbox.quiet_until_marker on a place's transport (what matches neither is dropped, as by
        `wait_for`); `marker` None (no marker node, or it was refused) waits the whole window."""
        return quiet_until_marker((place or self.mn_place).transport.recv, unwanted, marker, window)

    @staticmethod
    def reply_match(ident: int, home=None):
        """A reply whose identification's low 32 bits are `ident`'s (and for `home`, when given)."""
        low = ident & 0xFFFFFFFF

        def match(i: Received) -> bool:
            if i.kind != "udp" or i.data[:1] != b"\x03":
                return False
            r = parse_reply(i.data)
            return r.ok and (r.identification & 0xFFFFFFFF) == low and (home is None or str(r.home_address) == str(home))
        return match

    def marker_request(self, place: Place | None = None):
        """Send a valid request of the marker node from `place`: from the MN's place with its
        co-located care-of address r (the default), from a foreign agent's place (ar1, ar2) as that
        agent relays it, for its care-of address (FA-HA added where the HA shares an SA with it).
        A match for its reply, or None (no marker node, or a place that cannot send one)."""
        place = place or self.mn_place
        fa_place = {self.fa_address: True, self.fa2_address: False}.get(place.address) \
            if place is not self.mn_place else None
        if self.marker_home is None or (place is not self.mn_place and fa_place is None):
            return None
        if self._marker_mn is None:
            self._marker_mn = self.mn(self.marker_home)
        mn = self._marker_mn
        if fa_place is None:
            data = mn.request(time.time(), place.address, flags=self._marker_bound or "D")
        else:
            fa = self.fa(fa_place)
            data = fa.relay_request(mn.request(time.time(), fa.care_of_address)).value[0]
            self._marker_bound = None  # bound at that FA now, not at r
        self.send(data, place)
        ident = mn.pending_identification
        match = self.reply_match(ident, mn.home_address)
        at_r = fa_place is None

        def answered(i: Received) -> bool:
            return match(i) and self._marker_accepted(i, mn, ident, at_r)
        answered.identification = ident  # for a part that sees the reply elsewhere (a raw socket)
        return answered

    def _marker_accepted(self, item: Received, mn: TesterMN, ident: int, at_r: bool = True) -> bool:
        check = mn.check_reply(item.data, time.time(), ident)
        if check is not None and check.accepted:
            if at_r:
                self._marker_bound = self._marker_bound or "D"
            return True
        return False

    def marker_binding(self, flags: str = "D") -> str | None:
        """The marker node registered at r with `flags` (once per flags): its home address, or None
        when there is none or the HA does not accept it (then parts wait their whole windows)."""
        if self.marker_home is None:
            return None
        if self._marker_bound != flags:
            if self._marker_mn is None:
                self._marker_mn = self.mn(self.marker_home)
            _, check = self.register(self._marker_mn, flags=flags)
            if check is None or not check.accepted:
                return None
            self._marker_bound = flags
        return self.marker_home

    def registered(self, mn: TesterMN, coa: str | None = None, place: Place | None = None, steps=None,
                   **request_kw):
        """The preamble: a registration that must be accepted (else the part is INCONCLUSIVE)."""
        item, check = self.register(mn, coa, place, **request_kw)
        if steps is not None:
            steps.record(f"preamble: register {mn.home_address} care-of {coa or (place or self.mn_place).address} "
                         f"{request_kw or ''}".strip(), "accepted (0 or 1), authentic",
                         describe_check(check))
        if check is None or not check.accepted:
            inconclusive(f"the preamble registration of {mn.home_address} was not accepted: {describe_check(check)}")
        return item, check

    # ---- data to and from the home address ----------------------------------------------------
    def next_marker(self) -> bytes:
        self._seq += 1
        return b"MIPHA" + struct.pack("!HI", self.tag, self._seq)

    def datagram_to_home(self, home: str, ttl: int = 64, df: bool = False, tos: int = 0, src: str | None = None,
                         size: int = 0) -> tuple[bytes, bytes]:
        """(packet, marker): a UDP datagram from the correspondent to `home`, header fields chosen."""
        marker = self.next_marker()
        payload = marker + b"\0" * max(0, size - len(marker))
        src = src or self.cn
        udp = build_udp(src, home, CN_PORT, SINK_PORT, payload)
        packet = build_ipv4(src, home, 17, udp, ttl=ttl, tos=tos, flags_fragment=FLAG_DF if df else 0,
                            identification=self._seq & 0xFFFF)
        return packet, marker

    def send_to_home(self, home: str, **kw) -> tuple[bytes, bytes]:
        packet, marker = self.datagram_to_home(home, **kw)
        self.cn_place.transport.send_ip(packet)
        return packet, marker

    def tunnelled_at(self, place: Place, marker: bytes, timeout: float = 1.0) -> Tunnelled | None:
        """The first tunnelled packet (IP-in-IP, minimal, GRE or RFC 3519 UDP) at `place` whose inner
        packet carries `marker`."""
        found: list[Tunnelled] = []

        def match(i: Received) -> bool:
            t = as_tunnelled(i, place.address)
            if t is not None and marker in t.inner:
                found.append(t)
                return True
            return False
        item = place.transport.wait_for(match, timeout)
        return found[0] if item is not None else None

    def data_to_coa(self, home: str, place: Place | None = None, timeout: float = 1.0, tries: int = 2,
                    **kw) -> tuple[bytes, Tunnelled | None]:
        """Correspondent -> home address, then what reaches the care-of address at `place` (a second
        try when the first is lost while the home link resolves the address)."""
        place = place or self.mn_place
        packet, got = b"", None
        for _ in range(tries):
            packet, marker = self.send_to_home(home, **kw)
            got = self.tunnelled_at(place, marker, timeout / tries)
            if got is not None:
                break
        return packet, got

    def nothing_tunnelled(self, home: str, place: Place | None = None, wait: float = 0.4, marker_home: str | None = None,
                          **kw) -> bool:
        """True when a datagram to `home` reaches no care-of address at `place` within `wait`. With
        `marker_home` (an address bound to `place`), a plain datagram to it follows, and the window
        ends once that one is tunnelled there (inbox.py)."""
        _, probe = self.send_to_home(home, **kw)
        return self.not_tunnelled(probe, place, wait, marker_home)

    def not_tunnelled(self, probe: bytes, place: Place | None = None, wait: float = 0.4,
                      marker_home: str | None = None) -> bool:
        """True when nothing carrying `probe` (sent already) is tunnelled to `place` within `wait`;
        `marker_home`: see `nothing_tunnelled`."""
        place = place or self.mn_place
        after = None
        if marker_home is not None:
            _, mark = self.send_to_home(marker_home)
            after = self._tunnelled_match(place, mark)
        return self.quiet(self._tunnelled_match(place, probe), wait, place, after).silent

    @staticmethod
    def _tunnelled_match(place: Place, marker: bytes):
        def match(i: Received) -> bool:
            t = as_tunnelled(i, place.address)
            return t is not None and marker in t.inner
        return match

    def not_at_correspondent(self, marker: bytes, timeout: float = 0.4, marker_home: str | None = None) -> bool:
        """True when nothing carrying `marker` reaches the correspondent within `timeout`. With
        `marker_home` (bound at r, reverse tunnelling accepted), a valid reverse tunnel from it
        follows, and the window ends once that one is delivered (inbox.py)."""
        after = None
        if marker_home is not None:
            inner, mark = self.inner_from_home(marker_home)
            self.send_packet(ipip_encapsulate(inner, self.mn_place.address, self.ha, forwarding=False))
            after = lambda i: i.kind == "ip" and mark in i.data  # noqa: E731
        return self.quiet(lambda i: i.kind == "ip" and marker in i.data, timeout, self.cn_place, after).silent

    def at_correspondent(self, marker: bytes, timeout: float = 1.0) -> Received | None:
        """A datagram carrying `marker` arriving at the correspondent (what a reverse tunnel delivered)."""
        return self.cn_place.transport.wait_for(lambda i: i.kind == "ip" and marker in i.data, timeout)

    def inner_from_home(self, home: str, ttl: int = 64, df: bool = False) -> tuple[bytes, bytes]:
        """(packet, marker): a UDP datagram from the home address to the correspondent (to reverse-tunnel)."""
        marker = self.next_marker()
        udp = build_udp(home, self.cn, CN_PORT, SINK_PORT, marker)
        return build_ipv4(home, self.cn, 17, udp, ttl=ttl, flags_fragment=FLAG_DF if df else 0,
                          identification=self._seq & 0xFFFF), marker

    # ---- evidence ----------------------------------------------------------------------------
    def write_transcript(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, p in self._places.items():
            if p.transport.log:
                (directory / f"{name}-{p.node}-ladder.txt").write_text(p.transport.ladder() + "\n")
        if self._link is not None and self._link.log:
            (directory / "home-link-arp.txt").write_text(
                "\n".join(f"{t:.6f} {line}" for t, line in self._link.log) + "\n")


def as_tunnelled(item: Received, coa: str) -> Tunnelled | None:
    """A received item as tunnelled data to `coa`: raw IP (protocol 4, 47, 55) or RFC 3519 UDP."""
    if item.kind == "ip" and item.protocol in (4, 47, 55) and item.dst == coa:
        d = decapsulate(item.data)
        if not d.ok:
            return None
        inner = parse_ipv4(d.value.inner, strict_length=False)
        return Tunnelled(item, d.value.kind, d.value.outer, d.value.inner, inner.value.ttl if inner.ok else -1,
                         dict(d.value.details))
    if item.kind == "udp" and item.data[:1] == b"\x04":
        td = parse_tunnel_data(item.data)
        if not td.ok:
            return None
        inner = parse_ipv4(td.value.payload, strict_length=False)
        outer = _UdpOuter(IPv4Address(item.src), IPv4Address(item.dst or "0.0.0.0"), item.ttl or -1)
        return Tunnelled(item, "udp", outer, td.value.payload, inner.value.ttl if inner.ok else -1,
                         {"sport": item.sport, "dport": item.dport, "next_header": td.value.next_header,
                          "reserved": td.value.reserved})
    return None


@dataclass(frozen=True)
class _UdpOuter:
    src: IPv4Address
    dst: IPv4Address
    ttl: int
    df: bool = False
    tos: int = 0


def restart_iut(iut, **config) -> None:
    """Stop the agent under test and start it again (a reboot), with `config` laid over its
    scenario config (none: as the scenario made it)."""
    from testbed.profiles import restart_role
    restart_role(iut.world, iut.scenario, iut.roles, iut.role, **config)
    iut.restarts += 1


@contextmanager
def reconfigured(iut, **config):
    """The agent under test restarted with `config` laid over its scenario config for the block
    (keys a conformance statement claims the profile reads, testbed.conformance.ics
    `mip.config.*`), then restarted as the scenario made it, so that the next part finds it so."""
    restart_iut(iut, **config)
    try:
        yield iut
    finally:
        restart_iut(iut)


def describe_check(check) -> str:
    if check is None:
        return "no reply"
    if check.reply is None:
        return f"undecodable reply: {check.error}"
    r = check.reply
    return (f"code {r.code} lifetime {r.lifetime} home {r.home_address} ha {r.home_agent} "
            f"id {r.identification:#018x} authentic {check.authentic} id-match {check.exact_match}")


__all__ = ["HaTester", "HomeLink", "Place", "Tunnelled", "as_tunnelled", "describe_check", "open_place",
           "reconfigured", "restart_iut"]
