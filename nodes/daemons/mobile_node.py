"""Mobile IPv4 Mobile Node daemon (RFC 5944 agent discovery and registration, RFC 3519 behind a NAT).

    python -m nodes.daemons.mobile_node --control PATH [--log-json PATH] --config mn.json

Applications keep using the home address: it lives on `lo` (a /32), so it stays a local address
wherever the node is; only routes change:
- at home: the home subnet on `iface` and the default route through the home router, both with
  the home address as source; deregistration and gratuitous ARP when coming back;
- with a foreign agent (care-of address of the FA): a link route to the agent and the default
  route through it, source the home address; registration requests go to the agent's MAC
  (learnt from its advertisement) with TTL 255;
- co-located (a static address per network from `colocated`, or `dhcp`: the address, prefix and
  router of a lease from a real DHCP client, nodes/runtime/dhcp.py): the address on `iface`, the
  default route through that network's router, and a policy rule `from <home> lookup 434` whose default
  route is the TUN device; the daemon encapsulates what it reads there towards the HA (RFC 3519
  UDP from port 434 when the HA saw a NAT, else IP-in-IP) and writes what the HA tunnels back
  into the TUN device.
Movement detection: carrier changes from rtnetlink; on link up the core solicits agents, and the
daemon probes the known networks' routers with ARP (home router, and each co-located network's
router from its own address): an advertisement means a foreign agent, an ARP answer names the
network. A network configured as `dhcp` is tried when nothing has named the network `dhcp_after`
seconds after link up (no agent advertisement, no home router): dhclient runs in the node with short
timers, and the lease becomes the co-located care-of address (retried every `dhcp_retry` seconds
while the network stays unknown). The registration log line then carries the DHCP timing.
Status over the control socket: location, registration state, care-of address, last
code, attachment, tunnels, counters.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from ipaddress import IPv4Address

from nodes.core import Addr
from nodes.mip.mn import MobileNode
from nodes.runtime import daemon, mip_config, netlink
from nodes.runtime.dhcp import DhcpClient, LeaseError
from nodes.runtime.mip_actions import CoreDriver, MipExecutor, guarded, recv_udp, udp_socket
from nodes.runtime.rawip import (
    ARP_REPLY, ETH_P_ARP, ETH_P_IP, Arp, LinkSocket, RawReceiver, RawSender, parse_ipv4,
)
from nodes.runtime.tundev import TunDevice
from nodes.runtime.netlink import RT_SCOPE_LINK, LinkMonitor
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP, PROTO_IPIP, IPv4
from nodes.wire.mip import ICMP_ROUTER_ADVERTISEMENT, TYPE_REPLY, TYPE_TUNNEL_DATA, TunnelData

BATCH = 64
PROBE_MAX_INTERVAL = 1.0
KEEPALIVE_CHECK = 0.25  # seconds between checks for an idle RFC 3519 tunnel


class MobileNodeDaemon:
    def __init__(self, cfg, extra, log):
        self.cfg, self.extra, self.log = cfg, extra, log
        self.iface = cfg.iface
        self.home = cfg.home_address
        self.core = MobileNode(cfg)
        self.loop = asyncio.get_running_loop()
        self.errors = Counter()
        self.attachment: tuple | None = None  # ("home",) / ("fa", agent) / ("colocated", name)
        self.network: str | None = None  # what the ARP probes found
        self.moves: list[dict] = []
        self._probe: asyncio.TimerHandle | None = None
        self._probe_delay = 0.0
        self._link_up_at: float | None = None
        self._link_gen = 0  # bumped on every carrier change: a DHCP result from an older link is stale
        self.dhcp_networks = [n for n, c in extra["colocated"].items() if c.get("dhcp")]
        self.dhcp_dir = extra.get("dhcp_dir") or tempfile.mkdtemp(prefix="mn-dhcp-")
        self.lease: dict | None = None  # the DHCP lease in use: network, address, router, server, seconds
        self.dhcp_state = "idle"  # idle, waiting, running, bound, failed
        self._dhcp_timer: asyncio.TimerHandle | None = None
        self._dhcp_task: asyncio.Task | None = None
        self._dhcp_client: DhcpClient | None = None

        for conf in ("all", "default", self.iface, "lo"):
            netlink.sysctl(f"net/ipv4/conf/{conf}/rp_filter", 0)
        netlink.addr_add("lo", f"{self.home}/32")
        self.tun = TunDevice.open(extra["tun"])
        self.raw, self.ipip, self.udp = RawSender(), RawReceiver(PROTO_IPIP), udp_socket()
        self.link = LinkSocket(self.iface)
        self.executor = MipExecutor(self._log_event, raw=self.raw, tun=self.tun, links={self.iface: self.link}, udp=self.udp,
                                    capture="src", default_iface=self.iface)
        self.driver = CoreDriver(self.core, self.executor, self._log_event, after_actions=self.reconcile)
        self.monitor = LinkMonitor(self.iface, self.on_carrier)
        readers = ((self.link.fileno(), "link", self.on_frame), (self.udp.fileno(), "udp", self.on_udp),
                   (self.ipip.fileno(), "ipip", self.on_ipip), (self.tun.fd, "tun", self.on_tun),
                   (self.monitor.fileno(), "netlink", self.monitor.poll))
        self.fds = [fd for fd, _, _ in readers]
        for fd, name, fn in readers:
            self.loop.add_reader(fd, guarded(log, self.errors, name, fn))

    def start(self) -> None:
        if self.monitor.up:
            self.on_carrier(True)
        self._keepalive_timer()

    def _keepalive_timer(self) -> None:
        try:
            self.executor.keepalives()
        except Exception as exc:  # never let the timer die
            self.errors[f"keepalive:{type(exc).__name__}"] += 1
        self._keepalive = self.loop.call_later(KEEPALIVE_CHECK, self._keepalive_timer)

    # ---- link changes and network identification ---------------------------------------------
    def on_carrier(self, up: bool) -> None:
        self.log("link", iface=self.iface, up=up)
        self.moves.append({"t": time.time(), "up": up})
        self._link_gen += 1
        self._cancel_dhcp()
        if up:
            self._link_up_at = time.time()
            self.network = None
            self.executor.forget_neighbours(self.iface)
            self.driver.call("link_up")
            self._probe_delay = 0.0
            self._schedule_probe(0.0)
            if self.dhcp_networks:
                self.dhcp_state = "waiting"
                self._dhcp_timer = self.loop.call_later(self.extra["dhcp_after"], self._start_dhcp)
        else:
            self._cancel_probe()
            self.driver.call("link_down")

    def _probes(self) -> list[tuple[str, IPv4Address, IPv4Address]]:
        """(network, our address there, its router) for every network we can recognise."""
        found = [("home", self.home, self.extra["home_router"])]
        for name, c in self.extra["colocated"].items():
            if not c.get("dhcp"):
                found.append((name, c["address"].ip, c["router"]))
        return found

    def _colocated(self, name: str) -> dict:
        """{address, router} of a co-located network: its static config, or the DHCP lease in use."""
        c = self.extra["colocated"][name]
        if not c.get("dhcp"):
            return c
        if self.lease is None or self.lease["network"] != name:
            raise RuntimeError(f"no DHCP lease for network {name}")
        return {"address": self.lease["interface"], "router": self.lease["router_addr"]}

    # ---- DHCP (co-located care-of address from a lease) ---------------------------------------
    def _unidentified(self) -> bool:
        return self.monitor.up and self.network is None and not self._with_fa() and self.core.location != "home"

    def _start_dhcp(self) -> None:
        self._dhcp_timer = None
        if not self._unidentified() or self._dhcp_task is not None:
            if self.dhcp_state == "waiting":
                self.dhcp_state = "idle"
            return
        self.dhcp_state = "running"
        self._dhcp_task = self.loop.create_task(self._run_dhcp(self._link_gen))

    async def _run_dhcp(self, gen: int) -> None:
        started = time.time()
        since = round(started - self._link_up_at, 6) if self._link_up_at else None
        client = self._dhcp_client = DhcpClient(self.iface, self.dhcp_dir, self.extra["dhcp_timeout"],
                                                self.extra["dhcp_client"])
        self.log("dhcp-start", iface=self.iface, networks=self.dhcp_networks, after_link_up=since)
        try:
            lease, seconds = await client.acquire()
        except LeaseError as exc:
            self.executor.counters["dhcp-failed"] += 1
            self.log("dhcp-failed", iface=self.iface, reason=str(exc))
            if gen == self._link_gen and self._unidentified():
                self.dhcp_state = "failed"
                self._dhcp_timer = self.loop.call_later(self.extra["dhcp_retry"], self._start_dhcp)
            return
        except asyncio.CancelledError:
            await client.stop()
            raise
        finally:
            if self._dhcp_client is client:  # not a newer run's
                self._dhcp_task = self._dhcp_client = None
        if gen != self._link_gen or not self._unidentified():
            self.log("dhcp-discarded", address=str(lease.address), reason="the link changed or the network is known")
            self.dhcp_state = "idle"
            return
        if lease.router is None:
            self.executor.counters["dhcp-no-router"] += 1
            self.log("dhcp-failed", iface=self.iface, reason=f"the lease of {lease.address} names no router")
            self.dhcp_state = "failed"
            self._dhcp_timer = self.loop.call_later(self.extra["dhcp_retry"], self._start_dhcp)
            return
        name = self.dhcp_networks[0]
        self.executor.counters["dhcp-leases"] += 1
        self.lease = {"network": name, **lease.as_dict(), "seconds": round(seconds, 6),
                      "after_link_up": round(time.time() - self._link_up_at, 6) if self._link_up_at else None,
                      "interface": lease.address, "router_addr": lease.router}
        self.dhcp_state = "bound"
        self.log("dhcp-lease", **self._lease_summary())
        self.attachment = None  # a new lease may carry a new address: configure again
        self._identified(name)

    def _lease_summary(self) -> dict | None:
        if self.lease is None:
            return None
        return {k: v for k, v in self.lease.items() if k not in ("interface", "router_addr")}

    def _cancel_dhcp(self) -> None:
        if self._dhcp_timer is not None:
            self._dhcp_timer.cancel()
            self._dhcp_timer = None
        if self._dhcp_task is not None:
            self._dhcp_task.cancel()
            self._dhcp_task = self._dhcp_client = None
        self.dhcp_state = "idle" if self.dhcp_state != "bound" else "bound"

    def _log_event(self, event: str, **fields) -> None:
        """The executor's log: a co-located registration on a leased address notes the DHCP timing."""
        if (event in ("registration", "registration-denied") and fields.get("mode") == "colocated"
                and self.lease is not None and self.attachment == ("colocated", self.lease["network"])):
            fields["dhcp"] = {"network": self.lease["network"], "address": self.lease["address"],
                              "server": self.lease["server"], "seconds": self.lease["seconds"],
                              "after_link_up": self.lease["after_link_up"]}
        self.log(event, **fields)

    def _schedule_probe(self, delay: float) -> None:
        self._cancel_probe()
        self._probe = self.loop.call_later(delay, self._send_probes)

    def _cancel_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _send_probes(self) -> None:
        self._probe = None
        if not self.monitor.up or self.network is not None or self._with_fa():
            return
        for _name, ours, router in self._probes():
            self.link.arp_probe(ours, router)
        self.executor.counters["arp-probes"] += 1
        self._probe_delay = min(max(self.extra["probe_interval"], self._probe_delay * 2), PROBE_MAX_INTERVAL)
        self._schedule_probe(self._probe_delay)

    def _with_fa(self) -> bool:
        c = self.core
        mode = c.attempt.mode if c.attempt else c.registration.mode if c.registration else None
        return c.location == "foreign" and mode == "fa"

    def _identified(self, name: str) -> None:
        self._cancel_probe()
        if self._dhcp_timer is not None:
            self._dhcp_timer.cancel()
            self._dhcp_timer = None
        self.network = name
        since = round(time.time() - self._link_up_at, 6) if self._link_up_at else None
        self.log("network", name=name, after=since)
        if name == "home":
            self.apply(("home",))
            self.driver.call("set_care_of_address", self.home)
        else:
            self.apply(("colocated", name))
            self.driver.call("set_care_of_address", self._colocated(name)["address"].ip)

    # ---- link configuration -------------------------------------------------------------------
    def reconcile(self) -> None:
        """After every core call: follow the core onto a foreign agent's link (after its actions: the
        request to the agent goes out as a frame at once, the routes follow while it travels)."""
        c = self.core
        if self._with_fa() and c.agent is not None and self.attachment != ("fa", c.agent.address):
            self.apply(("fa", c.agent.address))

    def apply(self, attachment: tuple) -> None:
        if attachment == self.attachment:
            return
        iface, home = self.iface, self.home
        if attachment[0] == "colocated":
            self.executor.hold_home_traffic(home)
        else:
            self.executor.release_home_traffic(home)
        netlink.routes_flush(iface)
        netlink.neigh_flush(iface)
        if attachment[0] == "colocated":
            c = self._colocated(attachment[1])
            netlink.addr_flush(iface, keep=(str(c["address"]),))
            netlink.addr_add(iface, str(c["address"]))
            netlink.route_replace(str(c["address"].network), dev=iface, src=c["address"].ip, scope=RT_SCOPE_LINK)
            netlink.route_replace("default", gateway=c["router"], dev=iface)
        else:
            netlink.addr_flush(iface)
            if attachment[0] == "home":
                netlink.route_replace(str(self.cfg.home_network), dev=iface, src=home, scope=RT_SCOPE_LINK)
                netlink.route_replace("default", gateway=self.extra["home_router"], dev=iface, src=home)
            else:
                agent = attachment[1]
                netlink.route_replace(f"{agent}/32", dev=iface, src=home, scope=RT_SCOPE_LINK)
                netlink.route_replace("default", gateway=agent, dev=iface, src=home)
        self.attachment = attachment
        self.log("attachment", kind=attachment[0], detail=str(attachment[1]) if len(attachment) > 1 else None)

    # ---- readers ------------------------------------------------------------------------------
    def on_frame(self) -> None:
        for _ in range(BATCH):
            frame = self.link.recv()
            if frame is None:
                return
            if frame.ethertype == ETH_P_ARP:
                arp = Arp.decode(frame.payload)
                if arp is not None and arp.op == ARP_REPLY and arp.target_mac == self.link.mac:
                    self._on_arp_reply(arp)
            elif frame.ethertype == ETH_P_IP:
                ip = parse_ipv4(frame.payload)
                if ip is not None and ip.proto == PROTO_ICMP and ip.payload[:1] == bytes([ICMP_ROUTER_ADVERTISEMENT]):
                    self.executor.learn(self.iface, ip.src, frame.src_mac)
                    self.driver.call("receive_icmp", ip.payload,
                                     Addr(str(ip.src), 0, str(ip.dst), 0, lladdr=frame.src_mac))

    def _on_arp_reply(self, arp: Arp) -> None:
        self.executor.learn(self.iface, arp.sender_ip, arp.sender_mac)
        if self.network is not None:
            return
        for name, ours, router in self._probes():
            if arp.sender_ip == router and arp.target_ip == ours:
                if not self._with_fa():
                    self._identified(name)
                return

    def on_udp(self) -> None:
        for _ in range(BATCH):
            got = recv_udp(self.udp)
            if got is None:
                return
            payload, where, _ifindex = got
            if payload[:1] == bytes([TYPE_TUNNEL_DATA]):
                try:
                    inner = TunnelData.decode(payload).payload
                except DecodeError as e:
                    self.executor.counters[f"drop:udp-tunnel:{e.reason}"] += 1
                    continue
                self.executor.decapsulate_to_home(inner, where.src, "udp")
            elif payload[:1] == bytes([TYPE_REPLY]):
                self.driver.call("receive_datagram", payload, where)
            else:
                self.executor.counters["drop:udp-unexpected"] += 1

    def on_ipip(self) -> None:
        for _ in range(BATCH):
            packet = self.ipip.recv()
            if packet is None:
                return
            try:
                outer = IPv4.decode(packet)
            except DecodeError as e:
                self.executor.counters[f"drop:ipip:{e.reason}"] += 1
                continue
            self.executor.decapsulate_to_home(outer.payload, outer.src, "ipip")

    def on_tun(self) -> None:
        for _ in range(BATCH):
            packet = self.tun.read()
            if packet is None:
                return
            self.executor.encapsulate_from_home(packet)

    # ---- control and shutdown -----------------------------------------------------------------
    def status(self, _req=None) -> dict:
        a = self.attachment
        return {**self.core.status(time.time()).as_dict(), **self.executor.status(),
                "attachment": None if a is None else {"kind": a[0], "detail": str(a[1]) if len(a) > 1 else None},
                "network": self.network, "link_up": self.monitor.up,
                "dhcp": {"state": self.dhcp_state, "lease": self._lease_summary()},
                "errors": dict(self.errors + self.driver.errors + self.executor.action_errors())}

    async def close(self) -> None:
        self.driver.stop()
        self._cancel_probe()
        client, task = self._dhcp_client, self._dhcp_task
        self._cancel_dhcp()
        if client is not None:
            client.kill_now()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if getattr(self, "_keepalive", None) is not None:
            self._keepalive.cancel()
        for fd in self.fds:
            self.loop.remove_reader(fd)
        for closer in (self.udp.close, self.ipip.close, self.raw.close, self.link.close, self.tun.close,
                       self.monitor.close, netlink.close):
            closer()


async def setup(args, log):
    cfg, extra = mip_config.load(args.config, mip_config.mobile_node)
    if extra["dhcp_dir"] is None and args.log_json:  # next to the daemon's log: kept with the case
        from pathlib import Path
        log_path = Path(args.log_json)
        extra["dhcp_dir"] = str(log_path.parent / (log_path.name.split(".events")[0] + ".dhcp"))
    mn = MobileNodeDaemon(cfg, extra, log)
    log("mobile-node", home=str(cfg.home_address), home_agent=str(cfg.home_agent), iface=cfg.iface,
        colocated=sorted(extra["colocated"]), dhcp=mn.dhcp_networks)
    mn.start()
    return {"status": mn.status}, mn.close


def main() -> None:
    p = daemon.base_parser("mn", __doc__.splitlines()[0])
    daemon.run("mn", p.parse_args(), setup)


if __name__ == "__main__":
    main()
