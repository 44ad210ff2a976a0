"""Mobile IPv4 Mobile Node daemon (RFC 5944 agent discovery and registration, RFC 3519 behind a NAT).

    python -m nodes.daemons.mobile_node --control PATH [--log-json PATH] --config mn.json

An adapter around the Mobile Node core (nodes/mip/mn.py; movement detection in nodes/mip/movement.py):
it feeds the core what the node hears and performs what the core decides.
- in: carrier changes from rtnetlink (link_up / link_down), agent advertisements and ARP answers
  read from the link (AF_PACKET), registration replies on UDP 434, the outcome of DHCP runs;
- out: the actions of nodes/mip/actions.py through nodes/runtime/mip/actions.py; the link
  configuration for home, a foreign agent or a co-located network through nodes/runtime/mip/mn_link.py
  (the home address lives on `lo`); ARP probes on the link; DHCP runs with a real client
  (dhclient, nodes/runtime/host/dhcp.py) whose lease becomes the co-located care-of address.
- co-located data path: a policy rule `from <home> lookup 434` whose default route is the TUN
  device; the executor encapsulates what it reads there towards the HA (RFC 3519 UDP from port 434
  when the HA saw a NAT, else IP-in-IP) and writes what the HA tunnels back (IP-in-IP, minimal
  encapsulation or GRE, read on a raw socket each, or UDP) into the TUN device.
Status over the control socket: location, registration state, care-of address, last code,
attachment, network, DHCP, tunnels, counters.
"""

from __future__ import annotations

import asyncio
import traceback
import tempfile
from collections import Counter
from pathlib import Path

from nodes.core import Addr
from nodes.mip.actions import ArpProbe, ConfigureLink, GratuitousArp, StartDhcp, StopDhcp
from nodes.mip.mn import MobileNode
from nodes.mip.mn_messages import inner_ttl_expired, tunnel_data_inner
from nodes.runtime import daemon
from nodes.runtime.mip import config as mip_config
from nodes.runtime.host import netlink
from nodes.runtime.host.dhcp import DhcpRunner
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.mip.actions import MipExecutor, guarded, packet_reader, recv_udp, udp_socket
from nodes.runtime.mip.mn_link import MobileNodeLink
from nodes.runtime.host.netlink import LinkMonitor
from nodes.runtime.host.rawip import (
    ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETH_P_ARP, ETH_P_IP, Arp, LinkSocket, RawReceiver, RawSender, parse_ipv4,
)
from nodes.runtime.host.tundev import MOBILE_IP_TUNNEL_MTU, TunDevice
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP
from nodes.wire.mip import ICMP_ROUTER_ADVERTISEMENT, TYPE_REPLY, TYPE_TUNNEL_DATA
from nodes.wire.tunnels import KINDS, decapsulate

BATCH = 64
KEEPALIVE_CHECK = 0.25  # seconds between checks for an idle RFC 3519 tunnel


class MobileNodeExecutor(MipExecutor):
    """The executor of the mobile node: the first gratuitous ARP of a return home leaves at once,
    ahead of the deregistration the core puts after it (RFC 5944 4.6: "Before transmitting the
    (de)Registration Request message to its home agent, the mobile node MUST transmit this
    gratuitous ARP"), instead of waiting for the pacer's turn; the pacer sends the repeats."""

    def _gratuitous_arp(self, a: GratuitousArp) -> None:
        link = self.links.get(a.iface or self.default_iface)
        if link is not None and not len(self.host):
            ok = link.gratuitous_arp(a.addr) is not False
            self.counters["gratuitous-arp" if ok else "send-error-gratuitous-arp"] += 1
        super()._gratuitous_arp(a)


class MobileNodeDaemon:
    def __init__(self, cfg, extra, log):
        self.iface, self.log = cfg.iface, log
        self.home = cfg.home_address
        self.core = MobileNode(cfg)
        self.loop = asyncio.get_running_loop()
        self.errors = Counter()
        self.tun = TunDevice.open(extra["tun"], mtu=MOBILE_IP_TUNNEL_MTU)
        self.raw, self.udp = RawSender(), udp_socket()
        # a co-located node decapsulates itself (RFC 5944 4.1): IP-in-IP always, minimal and GRE too
        self.tunnels = {kind: RawReceiver(proto) for kind, proto in KINDS.items()}
        self.link = LinkSocket(self.iface)
        self.dhcp = DhcpRunner(extra.get("dhcp_dir") or tempfile.mkdtemp(prefix="mn-dhcp-"), extra["dhcp_timeout"],
                               extra["dhcp_client"], self._dhcp_bound, self._dhcp_failed)
        handlers = {ArpProbe: lambda a: self.link.arp_probe(a.sender, a.target),
                    StartDhcp: self.dhcp.start, StopDhcp: self.dhcp.stop}
        self.executor = MobileNodeExecutor(log, raw=self.raw, tun=self.tun, links={self.iface: self.link}, udp=self.udp,
                                    capture="src", default_iface=self.iface, handlers=handlers)
        self.host = MobileNodeLink(self.iface, cfg.home_address, self.executor)
        handlers[ConfigureLink] = self._configure
        self.driver = CoreDriver(self.core, self.executor, log)
        self.monitor = LinkMonitor(self.iface, self.on_carrier)
        on_tun = packet_reader(self.tun.read, self.executor.encapsulate_from_home, BATCH)
        readers = [(self.link.fileno(), "link", self.on_frames), (self.udp.fileno(), "udp", self.on_udp),
                   (self.tun.fd, "tun", on_tun), (self.monitor.fileno(), "netlink", self.monitor.poll)]
        readers += [(r.fileno(), kind, packet_reader(r.recv, self.on_tunnelled, BATCH))
                    for kind, r in self.tunnels.items()]
        self.fds = [fd for fd, _, _ in readers]
        for fd, name, fn in readers:
            self.loop.add_reader(fd, guarded(log, self.errors, name, fn))
        self._keepalive: asyncio.TimerHandle | None = None
        self.away = False  # the link is configured away from home (the kernel ignores ARP for the home address)

    def _configure(self, a: ConfigureLink) -> None:
        """The link configuration, and who answers ARP for the home address (on `lo`): at home the
        kernel; away (RFC 5944 4.6: no reply to ARP for the home address but a foreign agent's
        unicast request) the kernel answers only for addresses of the link's own interface
        (arp_ignore 1: a co-located care-of address), and on_frames the agent's unicast requests."""
        netlink.sysctl(f"net/ipv4/conf/{a.iface or self.iface}/arp_ignore", 0 if a.kind == "home" else 1)
        self.away = a.kind != "home"
        self.host.configure(a)

    def start(self) -> None:
        if self.monitor.up:
            self.on_carrier(True)
        self._keepalive_timer()

    def _keepalive_timer(self) -> None:
        try:
            self.executor.keepalives()
        except Exception as exc:  # never let the timer die
            self.errors[f"keepalive:{type(exc).__name__}"] += 1
            self.log("keepalive-error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=4))
        self._keepalive = self.loop.call_later(KEEPALIVE_CHECK, self._keepalive_timer)

    # ---- inputs -------------------------------------------------------------------------------
    def on_carrier(self, up: bool) -> None:
        self.log("link", iface=self.iface, up=up)
        if up:
            self.executor.forget_neighbours(self.iface)
            self.driver.feed(self.core.link_up)
        else:
            self.driver.feed(self.core.link_down)

    def _dhcp_bound(self, attempt: int, lease, seconds: float) -> None:
        self.driver.feed(self.core.dhcp_bound, attempt, lease.address, lease.router, seconds, server=lease.server,
                         lease_time=lease.lease_time, reason=lease.reason)

    def _dhcp_failed(self, attempt: int, reason: str) -> None:
        self.driver.feed(self.core.dhcp_failed, attempt, reason)

    def on_frames(self) -> None:
        for _ in range(BATCH):
            frame = self.link.recv()
            if frame is None:
                return
            if frame.ethertype == ETH_P_ARP:
                arp = Arp.decode(frame.payload)
                if arp is not None and arp.op == ARP_REPLY and arp.target_mac == self.link.mac:
                    self.executor.learn(self.iface, arp.sender_ip, arp.sender_mac)
                    self.driver.feed(self.core.receive_arp, arp.sender_ip, arp.target_ip)
                elif arp is not None and arp.op == ARP_REQUEST and self.away and arp.target_ip == self.home \
                        and arp.sender_ip != self.home:
                    self._home_arp_request(arp, frame.dst_mac)
            elif frame.ethertype == ETH_P_IP:
                ip = parse_ipv4(frame.payload)
                if ip is not None and ip.proto == PROTO_ICMP and ip.payload[:1] == bytes([ICMP_ROUTER_ADVERTISEMENT]):
                    self.executor.learn(self.iface, ip.src, frame.src_mac)
                    self.driver.feed(self.core.receive_icmp, ip.payload,
                                     Addr(str(ip.src), 0, str(ip.dst), 0, lladdr=frame.src_mac))

    def _home_arp_request(self, arp: Arp, dst_mac: str) -> None:
        """Away, an ARP request for the home address: a unicast reply when the core says so."""
        if self.core.answers_arp_for_home(arp.sender_ip, broadcast=dst_mac.lower() == BROADCAST_MAC):
            reply = Arp(ARP_REPLY, self.link.mac, self.home, arp.sender_mac, arp.sender_ip)
            ok = self.link.send_arp(reply, arp.sender_mac)
            self.executor.counters["arp-reply-home" if ok is not False else "send-error-arp-reply-home"] += 1
        else:
            self.executor.counters["arp-request-home-ignored"] += 1

    def on_udp(self) -> None:
        for _ in range(BATCH):
            got = recv_udp(self.udp)
            if got is None:
                return
            payload, where, _ifindex = got
            if payload[:1] == bytes([TYPE_TUNNEL_DATA]):
                try:
                    inner = tunnel_data_inner(payload)  # IP-in-UDP, what the node asked for (RFC 3519 3.3)
                except DecodeError as e:
                    self.executor.counters[f"drop:udp-tunnel:{e.reason}"] += 1
                    continue
                if inner_ttl_expired(inner):
                    self.executor.counters["drop:udp-tunnel:inner-ttl-zero"] += 1
                    continue
                self.executor.decapsulate_to_home(inner, where.src, "udp")
            elif payload[:1] == bytes([TYPE_REPLY]):
                self.driver.feed(self.core.receive_datagram, payload, where)
            else:
                self.executor.counters["drop:udp-unexpected"] += 1

    def on_tunnelled(self, packet: bytes) -> None:
        try:
            tunnel = decapsulate(packet)
        except DecodeError as e:
            self.executor.counters[f"drop:tunnel:{e.reason}"] += 1
            return
        if inner_ttl_expired(tunnel.inner):  # RFC 2003 3.1
            self.executor.counters["drop:tunnel:inner-ttl-zero"] += 1
            return
        self.executor.decapsulate_to_home(tunnel.inner, tunnel.outer.src, tunnel.kind)

    # ---- control and shutdown -----------------------------------------------------------------
    def status(self, _req=None) -> dict:
        return {**self.core.status(self.driver.now()).as_dict(), **self.executor.status(), "link_up": self.monitor.up,
                "errors": dict(self.errors + self.driver.errors + self.executor.action_errors())}

    async def close(self) -> None:
        self.driver.stop()
        await self.dhcp.close()
        if self._keepalive is not None:
            self._keepalive.cancel()
        for fd in self.fds:
            self.loop.remove_reader(fd)
        for closer in (self.udp.close, *(r.close for r in self.tunnels.values()), self.raw.close, self.link.close, self.tun.close,
                       self.monitor.close, netlink.close):
            closer()


async def setup(args, log):
    cfg, extra = mip_config.load(args.config, mip_config.mobile_node)
    if extra["dhcp_dir"] is None and args.log_json:  # next to the daemon's log: kept with the case
        log_path = Path(args.log_json)
        extra["dhcp_dir"] = str(log_path.parent / (log_path.name.split(".events")[0] + ".dhcp"))
    # the mobile node on its own registers a co-located care-of address through a foreign agent
    # that advertises R (RFC 5944 2.4.1, 3.1; RFC 3519 4.4); the mobile VPN node's x-MIP layer does not
    cfg.colocated_through_agent = True
    mn = start(cfg, extra, log)
    return {"status": mn.status}, mn.close


def start(cfg, extra, log) -> MobileNodeDaemon:
    """The daemon's objects from a parsed config, started (also the mobile VPN node's MN layer)."""
    mn = MobileNodeDaemon(cfg, extra, log)
    log("mobile-node", home=str(cfg.home_address), home_agent=str(cfg.home_agent), iface=cfg.iface,
        colocated=sorted(extra["colocated"]), dhcp=mn.core.movement.dhcp_networks)
    mn.start()
    return mn


def main() -> None:
    p = daemon.base_parser("mn", __doc__.splitlines()[0])
    daemon.run("mn", p.parse_args(), setup)


if __name__ == "__main__":
    main()
