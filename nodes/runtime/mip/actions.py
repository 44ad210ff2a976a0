"""The runtime side of the Mobile IP cores: performs their actions (nodes/mip/actions.py) with raw
sockets, AF_PACKET, a TUN device and netlink (a nodes/runtime/core_driver.CoreDriver feeds the core
and hands its actions to the executor here).

One `MipExecutor` serves the HA, FA and MN daemons. It dispatches each action to one of its parts:

- `sending.PacketSender`: datagrams and ICMP messages out, on a neighbour's link or the raw
  socket, and decapsulated packets delivered (to a neighbour's MAC, or into the TUN device);
- `tunnels.HostTunnels`: how the host captures a tunnel's packets into the TUN (`capture`
  "dst": a host route to the home address, the agents; "src": a policy rule from it, the
  co-located mobile node);
- `colocated.ColocatedTunnel`: the co-located mobile node's own encapsulation towards the home
  agent, the packets held while it registers, RFC 3519 keepalives, decapsulation;
- `arp.ArpAnnouncer`: proxy-ARP entries and the paced gratuitous ARPs (nodes/runtime/mip/garp_pacer.py);
- `host_changes.QueuedHostChanges`: tunnel routes, proxy-ARP and neighbour entries through one
  `NetlinkBatch`, and the actions that wait for them.

With `batch=True` (the home agent) host changes are queued while the event loop handles a burst of
requests and sent as one rtnetlink batch at the end of the loop's turn, or as soon as FLUSH_AT are
queued. The replies that come after a queued change wait for that batch, so a reply never leaves
before its binding's route and proxy entry are in place, nor a deregistration's before they are
gone (RFC 5944 sections 3.6 and 4.6); its gratuitous ARPs then go to the pacer and out after the
replies. With `batch=False` each change is sent at once, as the foreign agent and mobile node need.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import traceback
from collections import Counter
from ipaddress import IPv4Address

from nodes.core import Addr
from nodes.mip.actions import (
    AddHostRoute, AddTunnel, DeliverIp, GratuitousArp, Log, ProxyArp, RemoveHostRoute, RemoveTunnel,
    SendIcmp, SendIp, SendUdp,
)
from nodes.runtime.host import netlink
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.mip.garp_pacer import GarpPacer
from nodes.runtime.mip.arp import ArpAnnouncer
from nodes.runtime.mip.colocated import ColocatedTunnel
from nodes.runtime.mip.host_changes import QueuedHostChanges
from nodes.runtime.mip.sending import IP_PKTINFO, PacketSender
from nodes.runtime.mip.tunnels import TUNNEL_TABLE, HostTunnels
from nodes.runtime.host.netlink_batch import NetlinkBatch
from nodes.runtime.host.rawip import LinkSocket, RawSender
from nodes.runtime.host.tundev import TunDevice
from nodes.wire.mip import MIP_PORT

_SENDS = (SendUdp, SendIcmp, SendIp, DeliverIp)


class MipExecutor:
    def __init__(self, log, *, raw: RawSender, tun: TunDevice | None = None, links: dict | None = None,
                 udp: socket.socket | None = None, capture: str = "dst", default_iface: str | None = None,
                 sends_first: bool = False, udp_from_socket: bool = False, handlers: dict | None = None,
                 table: int = TUNNEL_TABLE, batch: bool = False, host: NetlinkBatch | None = None,
                 garps: GarpPacer | None = None, clock: Clock = SYSTEM):
        self.log = log
        self.clock = clock  # its monotonic now(): keepalives, held packets, the ARP pacer
        # role-specific actions (the mobile node's ArpProbe, ConfigureLink, StartDhcp...): type -> fn(action)
        self.handlers = handlers or {}
        self.raw, self.tun, self.udp = raw, tun, udp
        self.links: dict[str, LinkSocket] = links or {}
        self.capture = capture
        self.sends_first = sends_first
        self.default_iface = default_iface
        self.counters = Counter()  # shared by the parts: one status
        self.tunnels: dict[IPv4Address, AddTunnel] = {}  # shared by the parts
        self.host = host if host is not None else NetlinkBatch(netlink.send_batch, netlink.link_index)
        self.garps = garps if garps is not None else GarpPacer()
        self.changes = QueuedHostChanges(log, self.counters, self.host, batch=batch, tunnels=self.tunnels,
                                   flush=self.flush)
        self.sender = PacketSender(self.counters, raw=raw, tun=tun, links=self.links, udp=udp,
                                   udp_from_socket=udp_from_socket)
        self.neighbours = self.sender.neighbours  # iface -> ip -> mac, learnt from frames
        self.arp = ArpAnnouncer(self.links, self.counters, clock, self.garps, self.changes)
        self.colocated = ColocatedTunnel(self.counters, clock, raw, self.tunnels, self.sender.deliver)
        self.tunnelling = HostTunnels(log, tun, capture, table, self.tunnels, self.changes, self.colocated)
        self.on_host_route = None  # hook(action) after AddHostRoute / RemoveHostRoute (FA reverse tunnels)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the batch flushes and the ARP pacer on `loop` (a CoreDriver attaches its executor)."""
        self.changes.loop = self.arp.loop = loop

    # ---- actions --------------------------------------------------------------------------------
    def run(self, actions) -> None:
        if self.sends_first and len(actions) > 1:
            # datagrams first, kernel configuration after: a foreign agent's reply and deliveries
            # go to the visitor's MAC and need no route, so the node hears back a few ms sooner
            actions = [a for a in actions if isinstance(a, _SENDS)] + [a for a in actions if not isinstance(a, _SENDS)]
        for action in actions:
            if not self.changes.waits(action):
                self._guarded(action)
        if not self.changes.end_of_run():
            self.arp.catch_up()  # no event loop (a test): what is due now

    def _guarded(self, action) -> None:
        try:
            self._one(action)
        except Exception as exc:  # one failed action must not stop the others nor the daemon
            self.counters[f"action-error:{type(action).__name__}"] += 1
            self.log("action-error", action=type(action).__name__, error=f"{type(exc).__name__}: {exc}",
                     trace=traceback.format_exc(limit=3))

    def _one(self, a) -> None:
        if isinstance(a, SendUdp):
            self.sender.send_udp(a)
        elif isinstance(a, SendIcmp):
            self.sender.send_icmp(a)
        elif isinstance(a, SendIp):
            self.sender.send_ip(a.packet)
        elif isinstance(a, DeliverIp):
            self.sender.deliver(a.packet, a.iface, a.lladdr)
        elif isinstance(a, AddTunnel):
            self.tunnelling.add(a)
        elif isinstance(a, RemoveTunnel):
            self.tunnelling.remove(a.home)
        elif isinstance(a, ProxyArp):
            self.arp.proxy(a, a.iface or self.default_iface)
        elif isinstance(a, GratuitousArp):
            self._gratuitous_arp(a)
        elif isinstance(a, (AddHostRoute, RemoveHostRoute)):
            self._host_route(a)
        elif isinstance(a, Log):
            self.log(a.event, **a.fields)
        elif type(a) in self.handlers:
            self.handlers[type(a)](a)
        else:
            self.counters["action-unknown"] += 1

    def _gratuitous_arp(self, a: GratuitousArp) -> None:
        self.arp.gratuitous(a.iface or self.default_iface, a.addr)

    def _host_route(self, a: AddHostRoute | RemoveHostRoute) -> None:
        """A visitor's route and neighbour entry on its link (the foreign agent)."""
        iface = a.iface or self.default_iface
        index = self.changes.ifindex(iface)
        if isinstance(a, AddHostRoute):
            self.changes.change(netlink.route_replace_request(a.addr, dev=index), "host-route", a.addr, iface)
            if a.lladdr:
                self.changes.change(netlink.neigh_replace_request(a.addr, a.lladdr, index), "host-route", a.addr, iface)
        else:
            self.changes.change(netlink.route_del_request(a.addr, dev=index), "host-route-del", a.addr, iface)
            self.changes.change(netlink.neigh_del_request(a.addr, index), "host-route-del", a.addr, iface)
        if self.on_host_route:
            self.on_host_route(a)

    def flush(self) -> None:
        """Send the queued host changes as one batch, then what waited for them: the replies, and
        the gratuitous ARPs (to the pacer)."""
        garps = self.arp.take_waiting()
        for action in self.changes.send():
            self._guarded(action)
        self.arp.release(garps)

    def stop(self) -> None:
        """Send what is queued and stop the timers (the daemon is stopping)."""
        self.flush()
        self.arp.stop()

    # ---- what the daemons call --------------------------------------------------------------------
    def learn(self, iface: str, ip, mac: str) -> None:
        """A neighbour's MAC, learnt from a frame it sent."""
        self.sender.learn(iface, ip, mac)

    def forget_neighbours(self, iface: str) -> None:
        self.sender.forget_neighbours(iface)

    def deliver(self, packet: bytes, iface=None, lladdr=None) -> None:
        self.sender.deliver(packet, iface, lladdr)

    def hold_home_traffic(self, home: IPv4Address) -> None:
        self.tunnelling.hold_home_traffic(home)

    def release_home_traffic(self, home: IPv4Address) -> None:
        self.tunnelling.release_home_traffic(home)

    def encapsulate_from_home(self, packet: bytes) -> None:
        self.colocated.encapsulate_from_home(packet)

    def keepalives(self) -> None:
        self.colocated.keepalives()

    def decapsulate_to_home(self, inner: bytes, outer_src, via: str) -> None:
        self.colocated.decapsulate_to_home(inner, outer_src, via)

    def action_errors(self) -> Counter:
        return Counter({k: v for k, v in self.counters.items() if k.startswith(("action-error", "drop:netlink:"))})

    def drops(self) -> dict:
        """The data plane's drop counters by reason (the `drop:` counters, without the prefix)."""
        return {k[5:]: v for k, v in self.counters.items() if k.startswith("drop:")}

    def status(self) -> dict:
        return {"tunnels": self.tunnelling.status(), "dataplane": dict(sorted(self.counters.items()))}


def packet_reader(read, handle, batch: int = 64):
    """A reader callback: up to `batch` packets from `read()` (None when none is waiting), each
    given to `handle`; the rest wait for the next wake-up so one busy socket cannot starve others."""
    def on_readable():
        for _ in range(batch):
            packet = read()
            if packet is None:
                return
            handle(packet)
    return on_readable


def guarded(log, counters: Counter, name: str, fn):
    """A reader callback that logs and counts exceptions instead of killing the loop."""
    def wrapper():
        try:
            fn()
        except Exception as exc:
            counters[f"reader-error:{name}"] += 1
            log("reader-error", reader=name, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=4))
    return wrapper


def udp_socket(port: int = MIP_PORT, address: str = "0.0.0.0") -> socket.socket:
    """A non-blocking UDP socket on address:port that reports the arrival interface (IP_PKTINFO).
    A socket on a specific address gets that address's datagrams before one on 0.0.0.0 does."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    s.bind((address, port))
    s.setblocking(False)
    return s


SOL_RAW = getattr(socket, "SOL_RAW", 255)
ICMP_FILTER = 1  # linux/icmp.h: a raw ICMP socket's filter, a bit per type to block
TUNNEL_ICMP_ERRORS = (3, 11, 12)  # Destination Unreachable, Time Exceeded, Parameter Problem


class IcmpErrorReceiver:
    """ICMP errors addressed to this node, for a core to match against its own tunnel packets
    (RFC 2003 4: the errors routers inside a tunnel send to the encapsulator). A raw ICMP socket
    gets a copy of every ICMP message the kernel receives; ICMP_FILTER keeps the error types only
    (Redirects, which are never relayed, and echoes stay out)."""

    def __init__(self, types=TUNNEL_ICMP_ERRORS):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        blocked = 0xFFFFFFFF
        for t in types:
            blocked &= ~(1 << t)
        self.sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", blocked))

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self):
        """(the ICMP message, Addr of its IP header), or None when none is waiting."""
        while True:
            try:
                packet = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return None
            ihl = (packet[0] & 0x0F) * 4 if packet else 0
            if ihl >= 20 and len(packet) >= ihl + 8:
                return packet[ihl:], Addr(str(IPv4Address(packet[12:16])), 0, str(IPv4Address(packet[16:20])), 0,
                                          ttl=packet[8])

    def close(self) -> None:
        self.sock.close()


def recv_udp(s: socket.socket):
    """(payload, Addr, ifindex) of the next datagram, or None. The Addr (nodes/core.py) is what a
    core's receive_datagram takes: source, source port, local destination and port."""
    try:
        data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(12))
    except (BlockingIOError, InterruptedError):
        return None
    ifindex, dst = 0, None
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
            ifindex = struct.unpack("=i", value[:4])[0]
            dst = str(IPv4Address(value[8:12]))
    return data, Addr(addr[0], addr[1], dst or "", s.getsockname()[1]), ifindex
