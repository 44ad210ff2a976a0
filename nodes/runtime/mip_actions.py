"""The runtime side of the Mobile IP cores: performs their actions (nodes/mip/actions.py) with raw
sockets, AF_PACKET, a TUN device and netlink (a nodes/runtime/core_driver.CoreDriver feeds the core
and hands its actions to the executor here).

One `MipExecutor` serves the HA, FA and MN daemons; they differ only in how a tunnel captures
its packets (`capture`):

- "dst" (home agent): packets *to* a home address are routed into the TUN device (a host route),
  the daemon reads them and asks the core to encapsulate them;
- "src" (co-located mobile node): packets *from* the home address are steered into the TUN by a
  policy rule (`from <home> lookup <table>`), the executor encapsulates them itself towards the
  home agent (IP-in-IP, or RFC 3519 UDP from port 434 so a NAT keeps one mapping).

Decapsulated packets are written into the TUN (the kernel forwards or delivers them) or, with a
link-layer address, sent straight to that neighbour on its link.

Host changes (tunnel routes, proxy-ARP and neighbour entries) go through a `NetlinkBatch`. With
`batch=True` (the home agent) they are queued while the event loop handles a burst of requests and
sent as one rtnetlink batch (one datagram, one acknowledgement) at the end of the loop's turn, or
as soon as FLUSH_AT are queued. The replies that come after a queued change wait for that batch,
so a reply never leaves before its binding's route and proxy entry are in place, nor a
deregistration's before they are gone (RFC 5944 sections 3.6 and 4.6); its gratuitous ARPs then
go to a pacer (nodes/runtime/garp_pacer.py) and out after the replies. With `batch=False` each
change is sent at once, as the foreign agent and mobile node need. A change the kernel refuses is
logged with what to do, counted in the status (drop:netlink:...), and tried again at the node's
next registration when it was an addition.
"""
from __future__ import annotations

import asyncio
import errno
import socket
import struct
import traceback
from collections import Counter, deque
from ipaddress import IPv4Address

from nodes.core import Addr
from nodes.mip.actions import (
    AddHostRoute, AddTunnel, DeliverIp, GratuitousArp, Log, ProxyArp, RemoveHostRoute, RemoveTunnel,
    SendIcmp, SendIp, SendUdp,
)
from nodes.runtime import netlink
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.garp_pacer import GarpPacer
from nodes.runtime.netlink_batch import Failure, NetlinkBatch
from nodes.runtime.rawip import LinkSocket, RawSender, icmp_packet, link_destination, udp_packet
from nodes.runtime.tundev import TunDevice
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import ICMP, PROTO_ICMP, IPv4, ip_in_ip
from nodes.wire.mip import ENCAP_IPIP, MIP_PORT, TunnelData

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 lacks the name
TUNNEL_TABLE = 434  # routing table whose default route is the TUN device (policy-routed traffic)
RULE_PRIORITY = 434
HOLD_PACKETS, HOLD_SECONDS = 256, 1.0  # packets held while a co-located registration is under way
FLUSH_AT = 32  # host changes that make a batch before the end of a turn

_SENDS = (SendUdp, SendIcmp, SendIp, DeliverIp)
# what waits for the queued host changes: a registration reply must not announce a binding whose
# route is not there yet (gratuitous ARPs wait too, in _garps_next, until their batch is done)
_AFTER_HOST_CHANGES = (SendUdp, SendIcmp)
# what to do when the kernel refuses a host change, by operation
_HINTS = {
    "tunnel-route": "packets for {addr} are not captured into {dev}; check the device (ip link show {dev}): "
                    "the node's next registration tries again",
    "proxy-on": "the home link cannot reach {addr} through the home agent; check {dev} (ip link show {dev}): "
                "the node's next registration tries again",
    "tunnel-route-del": "a route for {addr} may be left behind: ip route del {addr}/32 dev {dev}",
    "proxy-off": "the home agent may still answer ARP for {addr}: ip neigh del proxy {addr} dev {dev}",
    "host-route": "the visitor {addr} is not reachable on {dev}; check the device (ip link show {dev})",
    "host-route-del": "a route or neighbour entry for {addr} may be left behind on {dev}: "
                      "ip route del {addr}/32 dev {dev}; ip neigh del {addr} dev {dev}",
}


class MipExecutor:
    def __init__(self, log, *, raw: RawSender, tun: TunDevice | None = None, links: dict | None = None,
                 udp: socket.socket | None = None, capture: str = "dst", default_iface: str | None = None,
                 sends_first: bool = False, udp_from_socket: bool = False, handlers: dict | None = None,
                 table: int = TUNNEL_TABLE, batch: bool = False, host: NetlinkBatch | None = None,
                 garps: GarpPacer | None = None, clock: Clock = SYSTEM):
        self.log = log
        self.clock = clock  # its monotonic now(): keepalives, held packets, the ARP pacer
        self.table = table  # capture "src": the policy-routed table whose default route is the TUN
        # role-specific actions (the mobile node's ArpProbe, ConfigureLink, StartDhcp...): type -> fn(action)
        self.handlers = handlers or {}
        # a reply from port 434 with a given local source leaves by the UDP socket (IP_PKTINFO picks
        # the source) instead of a hand-built packet on the raw socket: the home agent's hot path
        self.udp_from_socket = udp_from_socket
        self._pktinfo: dict = {}
        self.raw, self.tun, self.udp = raw, tun, udp
        self.links: dict[str, LinkSocket] = links or {}
        self.capture = capture
        self.sends_first = sends_first
        self.default_iface = default_iface
        self.tunnels: dict[IPv4Address, AddTunnel] = {}
        self.neighbours: dict[str, dict[IPv4Address, str]] = {}  # iface -> ip -> mac, learnt from frames
        self.counters = Counter()
        self._last_out: dict[IPv4Address, float] = {}  # home -> last tunnelled send (keepalives)
        self._echo_seq = 0
        self._held: deque = deque()  # (monotonic time, packet) from the home address, no tunnel yet
        self._proxy_ready: set[str] = set()  # interfaces whose proxy-ARP sysctls are set
        self.batch = batch  # queue host changes until the end of the loop's turn (else send each at once)
        # ... or until this many are queued: the replies of the first new bindings of a turn (up to
        # 64 requests) leave while the rest are read, so their senders can go on
        self.flush_at = FLUSH_AT
        self.host = host if host is not None else NetlinkBatch(netlink.send_batch, netlink.link_index)
        self._after: list = []  # actions waiting for the queued host changes, in order
        self._garps_next: dict = {}  # (iface, addr) -> True: announcements waiting for the queued changes
        self._flush_handle: asyncio.Handle | None = None
        self._changed: dict[str, list[str]] = {}  # operation -> addresses, logged once per batch
        self._retry: dict[IPv4Address, set] = {}  # home -> refused additions to try again: {(op, dev)}
        self.garps = garps if garps is not None else GarpPacer()
        self._pace_handle: asyncio.Handle | None = None
        self._pace_at = 0.0
        self.on_host_route = None  # hook(action) after AddHostRoute / RemoveHostRoute (FA reverse tunnels)
        self._loop: asyncio.AbstractEventLoop | None = None
        if tun is not None and capture == "src":
            netlink.route_replace("default", dev=tun.name, table=self.table)

    # ---- neighbours learnt from received frames ---------------------------------------------------
    def learn(self, iface: str, ip, mac: str) -> None:
        ip = IPv4Address(ip)
        if not (ip.is_unspecified or ip.is_multicast or ip == IPv4Address("255.255.255.255")):
            self.neighbours.setdefault(iface, {})[ip] = mac

    def forget_neighbours(self, iface: str) -> None:
        self.neighbours.pop(iface, None)

    def _link_for(self, iface: str | None, dst, lladdr: str | None):
        """(link socket, destination MAC) when this goes out on a link directly, else None."""
        iface = iface or None
        link = self.links.get(iface) if iface else None
        if link is None:
            return None
        mac = lladdr or link_destination(dst) or self.neighbours.get(iface, {}).get(IPv4Address(dst))
        return (link, mac) if mac else None

    # ---- actions --------------------------------------------------------------------------------
    def run(self, actions) -> None:
        if self.sends_first and len(actions) > 1:
            # datagrams first, kernel configuration after: a foreign agent's reply and deliveries
            # go to the visitor's MAC and need no route, so the node hears back a few ms sooner
            actions = [a for a in actions if isinstance(a, _SENDS)] + [a for a in actions if not isinstance(a, _SENDS)]
        for action in actions:
            if isinstance(action, _AFTER_HOST_CHANGES) and (self._after or len(self.host)):
                self._after.append(action)
            else:
                self._guarded(action)
        if len(self.host) >= self.flush_at:
            self.flush()  # enough for a batch: its replies need not wait for the end of the turn
        elif len(self.host) or self._after:
            self._flush_soon()
        elif self._loop is None and len(self.garps):
            self._pace()  # no event loop (a test): what is due now

    def _guarded(self, action) -> None:
        try:
            self._one(action)
        except Exception as exc:  # one failed action must not stop the others nor the daemon
            self.counters[f"action-error:{type(action).__name__}"] += 1
            self.log("action-error", action=type(action).__name__, error=f"{type(exc).__name__}: {exc}",
                     trace=traceback.format_exc(limit=3))

    # ---- host changes ---------------------------------------------------------------------------
    def _change(self, request: netlink.Request, op: str, addr, dev: str, note: str | None = None) -> None:
        """Queue one host change (sent at once without `batch`); `note` describes it in the batch's
        log line (the address by default)."""
        self.host.add(request, (op, addr, dev))
        self._changed.setdefault(op, []).append(note or str(addr))
        if not self.batch:
            self.flush()

    def _flush_soon(self) -> None:
        if self._flush_handle is None:
            if self._loop is None:  # no event loop (a test): the caller flushes
                return
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send the queued host changes as one batch, then what waited for them: the replies, and
        the gratuitous ARPs (to the pacer)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        taken, after, garps = self.host.take(), self._after, self._garps_next
        self._after, self._garps_next = [], {}
        if self._changed:
            self.log("host-changes", **self._changed)
            self._changed = {}
        self._done(self.host.send(taken), after, garps)

    def _done(self, failures: list, after: list, garps: dict) -> None:
        for failure in failures:
            self._refused(failure)
        for action in after:
            self._guarded(action)
        for key in garps:
            if not self.garps.announce(key):
                self.counters["drop:gratuitous-arp-queue-full"] += 1
        if self._loop is None:
            if len(self.garps):
                self._pace()  # no event loop (a test): what is due now
        elif garps:
            self._arm_pacer()

    def _refused(self, failure: Failure) -> None:
        op, addr, dev = failure.tag
        name = errno.errorcode.get(failure.errno, str(failure.errno))
        self.counters[f"drop:netlink:{op}:{name}"] += 1
        if op in ("tunnel-route", "proxy-on") and addr in self.tunnels:
            self._retry.setdefault(addr, set()).add((op, dev))
        hint = _HINTS.get(op, "check {dev}").format(addr=addr, dev=dev)
        self.log("host-change-refused", change=failure.request.what, dev=dev, error=failure.error, what_to_do=hint)

    def _retry_refused(self, home: IPv4Address) -> None:
        """A registration of `home`: the additions the kernel refused for it before, again."""
        for op, dev in self._retry.pop(home, ()):
            if op == "tunnel-route":
                self._change(netlink.route_replace_request(home, dev=self.host.ifindex(dev)), op, home, dev)
            else:
                self._change(netlink.proxy_arp_request(home, self.host.ifindex(dev), True), op, home, dev)

    def _one(self, a) -> None:
        if isinstance(a, SendUdp):
            self._send_udp(a)
        elif isinstance(a, SendIcmp):
            src = a.src or self._source_for(a.iface)
            packet = icmp_packet(src, a.dst, a.payload, ttl=a.ttl)
            self._send_packet(packet, a.iface, a.dst, None, "icmp")
        elif isinstance(a, SendIp):
            self.counters["sent-ip"] += self.raw.send(a.packet)
        elif isinstance(a, DeliverIp):
            self.deliver(a.packet, a.iface, a.lladdr)
        elif isinstance(a, AddTunnel):
            self._add_tunnel(a)
        elif isinstance(a, RemoveTunnel):
            self._remove_tunnel(a.home)
        elif isinstance(a, ProxyArp):
            iface = a.iface or self.default_iface
            if a.on and iface not in self._proxy_ready:  # three sysctl writes, once per interface
                netlink.enable_proxy_arp(iface)
                self._proxy_ready.add(iface)
            self._change(netlink.proxy_arp_request(a.addr, self.host.ifindex(iface), a.on),
                         "proxy-on" if a.on else "proxy-off", a.addr, iface)
            if not a.on:
                self._retry.pop(a.addr, None)
                self._cancel_garp((iface, a.addr))
        elif isinstance(a, GratuitousArp):
            self._gratuitous_arp(a)
        elif isinstance(a, AddHostRoute):
            iface = a.iface or self.default_iface
            index = self.host.ifindex(iface)
            self._change(netlink.route_replace_request(a.addr, dev=index), "host-route", a.addr, iface)
            if a.lladdr:
                self._change(netlink.neigh_replace_request(a.addr, a.lladdr, index), "host-route", a.addr, iface)
            if self.on_host_route:
                self.on_host_route(a)
        elif isinstance(a, RemoveHostRoute):
            iface = a.iface or self.default_iface
            index = self.host.ifindex(iface)
            self._change(netlink.route_del_request(a.addr, dev=index), "host-route-del", a.addr, iface)
            self._change(netlink.neigh_del_request(a.addr, index), "host-route-del", a.addr, iface)
            if self.on_host_route:
                self.on_host_route(a)
        elif isinstance(a, Log):
            self.log(a.event, **a.fields)
        elif type(a) in self.handlers:
            self.handlers[type(a)](a)
        else:
            self.counters["action-unknown"] += 1

    @staticmethod
    def _source_for(iface):
        raise ValueError(f"an ICMP message without a source address (iface {iface})")

    def _send_udp(self, a: SendUdp) -> None:
        if a.src is None:  # let the kernel choose the source: the bound UDP socket
            if self.udp is None:
                raise ValueError("SendUdp without a source address and no UDP socket")
            self.udp.sendto(a.payload, (str(a.dst), a.dport))
            self.counters["sent-udp"] += 1
            return
        if (self.udp_from_socket and self.udp is not None and a.sport == MIP_PORT and a.ttl == 64
                and a.iface is None and a.lladdr is None):
            info = self._pktinfo.get(a.src)
            if info is None:
                info = self._pktinfo[a.src] = [(socket.IPPROTO_IP, IP_PKTINFO,
                                                struct.pack("=i4s4s", 0, IPv4Address(a.src).packed, bytes(4)))]
            try:
                self.udp.sendmsg([a.payload], info, 0, (str(a.dst), a.dport))
                self.counters["sent-udp"] += 1
                return
            except OSError:  # not a local source, no route: the raw path counts it
                pass
        packet = udp_packet(a.src, a.dst, a.sport, a.dport, a.payload, ttl=a.ttl)
        self._send_packet(packet, a.iface, a.dst, a.lladdr, "udp")

    def _send_packet(self, packet: bytes, iface, dst, lladdr, what: str) -> None:
        direct = self._link_for(iface, dst, lladdr)
        if direct is not None:
            link, mac = direct
            ok = link.send_ip(packet, mac)
            self.counters[f"sent-{what}-link" if ok else f"send-error-{what}-link"] += 1
        else:
            ok = self.raw.send(packet)
            self.counters[f"sent-{what}" if ok else f"send-error-{what}"] += 1

    def deliver(self, packet: bytes, iface=None, lladdr=None) -> None:
        """A decapsulated packet: to a neighbour's MAC on its link, or into the kernel via the TUN."""
        if iface and lladdr and iface in self.links:
            ok = self.links[iface].send_ip(packet, lladdr)
            self.counters["delivered-link" if ok else "deliver-error-link"] += 1
        elif self.tun is not None:
            ok = self.tun.write(packet)
            self.counters["delivered-tun" if ok else "deliver-error-tun"] += 1
        else:
            self.counters["deliver-nowhere"] += 1

    def _gratuitous_arp(self, a: GratuitousArp) -> None:
        iface = a.iface or self.default_iface
        if iface not in self.links:
            raise ValueError(f"gratuitous ARP on {iface!r}: no link socket there")
        # RFC 5944 4.6: sent again later, in case the first one was lost; a later announcement for
        # the same address, or the end of proxying it, replaces or cancels the pending one (a node
        # back home within the 100 ms must not have its own announcement overridden by a stale one).
        # With host changes queued or being sent, it waits for them: an announcement must not draw
        # traffic the kernel cannot forward yet.
        key = (iface, a.addr)
        if len(self.host):
            self._garps_next[key] = True
            return
        if not self.garps.announce(key):
            self.counters["drop:gratuitous-arp-queue-full"] += 1
        if self._loop is None:
            self._pace()
        else:
            self._arm_pacer()

    def _cancel_garp(self, key) -> None:
        """Proxying for the address stopped: no announcement for it, pending or waiting."""
        waiting = self._garps_next.pop(key, None) is not None
        pending = self.garps.cancel(key)  # both, always: neither may outlive the proxying
        if waiting or pending:
            self.counters["gratuitous-arp-repeat-cancelled"] += 1

    def _pace(self) -> None:
        """Send the gratuitous ARPs that are due (as many as the pace allows), re-arm for the rest."""
        self._pace_handle = None
        for (iface, addr), repeat in self.garps.due(self.clock.now()):
            ok = self.links[iface].gratuitous_arp(addr) is not False
            what = "gratuitous-arp-repeated" if repeat else "gratuitous-arp"
            self.counters[what if ok else f"send-error-{what}"] += 1
        if self._loop is not None:
            self._arm_pacer()

    def _arm_pacer(self) -> None:
        """One timer at the pacer's next deadline, in a callback of its own: after this turn's
        replies (the loop's clock is monotonic, the pacer's: self.clock.now())."""
        at = self.garps.next_deadline()
        if at is None or (self._pace_handle is not None and self._pace_at <= at):
            return
        if self._pace_handle is not None:
            self._pace_handle.cancel()
        self._pace_at = at
        self._pace_handle = self._loop.call_at(at, self._pace)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the batch flushes and the ARP pacer on `loop` (a CoreDriver attaches its executor)."""
        self._loop = loop

    def stop(self) -> None:
        """Send what is queued and stop the timers (the daemon is stopping)."""
        self.flush()
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None

    # ---- tunnels ----------------------------------------------------------------------------------
    def _add_tunnel(self, a: AddTunnel) -> None:
        old = self.tunnels.get(a.home)
        self.tunnels[a.home] = a
        self._last_out[a.home] = self.clock.now()
        if self.tun is None:
            raise ValueError("a tunnel needs a TUN device")
        if self.capture == "dst":
            if a.home in self._retry:
                self._retry_refused(a.home)
            if old is None:  # the host route into the TUN does not depend on the far end: set it once
                # a new tunnel is logged with its batch (one line for a burst of new bindings)
                far = f"{a.remote}:{a.remote_port}" if a.remote_port else str(a.remote)
                self._change(netlink.route_replace_request(a.home, dev=self.host.ifindex(self.tun.name)),
                             "tunnel-route", a.home, self.tun.name, note=f"{a.home} {a.kind} {a.local}-{far}")
        else:
            netlink.rule_add(self.table, RULE_PRIORITY, src=a.home)
        if old != a and not (old is None and self.capture == "dst"):  # an unchanged one is not news
            self.log("tunnel", home=str(a.home), local=str(a.local), remote=str(a.remote), kind=a.kind,
                     remote_port=a.remote_port)
        held, self._held = self._held, deque()
        for at, packet in held:
            if self.clock.now() - at <= HOLD_SECONDS:
                self.encapsulate_from_home(packet)

    def hold_home_traffic(self, home: IPv4Address) -> None:
        """Co-located MN arriving on a network: steer the home address's packets into the TUN at once
        (held until the tunnel is up), so none leaves untunnelled (a NAT would translate them and
        the correspondent would answer with a reset)."""
        if self.capture == "src" and self.tun is not None:
            netlink.rule_add(self.table, RULE_PRIORITY, src=home)

    def release_home_traffic(self, home: IPv4Address) -> None:
        if self.capture == "src" and home not in self.tunnels:
            netlink.rule_del(self.table, RULE_PRIORITY, src=home)
            self._held.clear()

    def _remove_tunnel(self, home: IPv4Address) -> None:
        if self.tunnels.pop(home, None) is None or self.tun is None:
            return
        if self.capture == "dst":
            self._retry.pop(home, None)
            self._change(netlink.route_del_request(home, dev=self.host.ifindex(self.tun.name)),
                         "tunnel-route-del", home, self.tun.name)
        else:
            netlink.rule_del(self.table, RULE_PRIORITY, src=home)
        self.log("tunnel-removed", home=str(home))

    def encapsulate_from_home(self, packet: bytes) -> None:
        """Co-located MN: a packet from the home address read from the TUN, into the tunnel."""
        if len(packet) < 20:
            self.counters["drop:tun-short"] += 1
            return
        t = self.tunnels.get(IPv4Address(packet[12:16]))
        if t is None:  # registration under way: hold a few packets, the tunnel is coming
            now = self.clock.now()
            while self._held and now - self._held[0][0] > HOLD_SECONDS:
                self._held.popleft()
                self.counters["drop:held-too-long"] += 1
            if len(self._held) >= HOLD_PACKETS:
                self._held.popleft()
                self.counters["drop:hold-full"] += 1
            self._held.append((now, packet))
            self.counters["held"] += 1
            return
        if t.kind == "udp":
            data = TunnelData(ENCAP_IPIP, packet).encode()
            ok = self.raw.send(udp_packet(t.local, t.remote, MIP_PORT, t.remote_port or MIP_PORT, data))
        else:
            ok = self.raw.send(ip_in_ip(t.local, t.remote, packet))
        self.counters["tunnelled-out" if ok else "send-error-tunnel"] += 1
        self._last_out[t.home] = self.clock.now()

    def keepalives(self) -> None:
        """RFC 3519 3.1: after `keepalive` seconds without tunnel traffic, send a tunnelled ICMP
        echo request to the home agent, so the NAT keeps the mapping."""
        now = self.clock.now()
        for home, t in list(self.tunnels.items()):
            if t.kind != "udp" or not t.keepalive or now - self._last_out.get(home, now) < t.keepalive:
                continue
            self._echo_seq = (self._echo_seq + 1) & 0xFFFF
            echo = ICMP(8, 0, struct.pack("!HH", 0x3519, self._echo_seq), b"mip-keepalive").encode()
            self.counters["keepalives"] += 1
            self.encapsulate_from_home(IPv4(home, t.remote, PROTO_ICMP, echo).encode())

    def decapsulate_to_home(self, inner: bytes, outer_src, via: str) -> None:
        """Co-located MN: a tunnelled packet from the HA (`via` 'ipip' or 'udp'), into the stack."""
        try:
            ip = IPv4.decode(inner)
        except DecodeError as e:
            self.counters[f"drop:decap:{e.reason}"] += 1
            return
        t = self.tunnels.get(ip.dst)
        if t is None or IPv4Address(outer_src) != t.remote:
            self.counters["drop:decap-unknown-tunnel"] += 1
            return
        self.counters[f"decapsulated-{via}"] += 1
        self.deliver(inner)

    def action_errors(self) -> Counter:
        return Counter({k: v for k, v in self.counters.items() if k.startswith(("action-error", "drop:netlink:"))})

    def drops(self) -> dict:
        """The data plane's drop counters by reason (the `drop:` counters, without the prefix)."""
        return {k[5:]: v for k, v in self.counters.items() if k.startswith("drop:")}

    def status(self) -> dict:
        return {"tunnels": {str(h): {"local": str(t.local), "remote": str(t.remote), "kind": t.kind,
                                     "remote_port": t.remote_port} for h, t in self.tunnels.items()},
                "dataplane": dict(sorted(self.counters.items()))}


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
