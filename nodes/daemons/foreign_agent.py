"""Mobile IPv4 Foreign Agent daemon (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 behind a NAT).

    python -m nodes.daemons.foreign_agent --control PATH [--log-json PATH] --config fa.json

Data path, all in userspace:
- the visitor link (`iface`) is read with an AF_PACKET socket: agent solicitations, and
  registration requests with the visitor's link-layer address and IP TTL (what the core needs
  for delivery and the RFC 3024 TTL check); advertisements go out as frames to 224.0.0.1;
- replies from home agents (and RFC 3519 tunnel data) arrive on UDP 434, tunnelled packets on a
  raw socket per supported encapsulation (protocol 4 IP-in-IP, 55 minimal, 47 GRE); decapsulated
  packets go straight to the visitor's MAC on the link;
- ICMP errors about relayed requests (sent from port 434, so the kernel matches the quoted UDP
  header to the UDP 434 socket) are read from that socket's error queue (IP_RECVERR,
  MSG_ERRQUEUE) and handed to the core, which answers the visitor at once (80, 81, 82, 88);
- an accepted visitor gets a host route and a permanent neighbour entry; with reverse
  tunnelling (T) a policy rule `from <home> iif <iface>` steers its packets into the TUN
  device, where the core tunnels them to the home agent.

Control commands: `status`; `reset` (for a conformance tester between test parts): the visitor list
and the pending requests emptied at once without a word to anyone, the visitors' host routes,
neighbour entries and reverse-tunnel rules removed, the link-layer addresses learnt forgotten.
Advertising goes on (a reset is not a reboot: the sequence number is kept). Stopping the daemon
takes back the same (host routes, neighbour entries, rules) before its sockets close.

Registration requests are read from the link socket, so their UDP checksum is checked here (RFC 5944
3.7.2.1: a wrong non-zero one is silently discarded), except on frames whose checksum the kernel
marks partial (sent on this host or its veth peer with the checksum offloaded).
"""
from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface

from nodes.core import Addr
from nodes.mip.actions import AddHostRoute, Log, RemoveHostRoute
from nodes.mip.fa import ForeignAgent
from nodes.runtime import daemon
from nodes.runtime.mip import config as mip_config
from nodes.runtime.host import netlink
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.mip.actions import MipExecutor, guarded, packet_reader, recv_udp, udp_socket
from nodes.runtime.mip.tunnels import RULE_PRIORITY, TUNNEL_TABLE
from nodes.runtime.host.rawip import (
    ETH_P_IP, PACKET_OUTGOING, PACKET_OTHERHOST, LinkSocket, RawReceiver, RawSender, parse_ipv4, parse_udp,
    udp_checksum_ok,
)
from nodes.runtime.host.tundev import TunDevice
from nodes.wire.ipv4 import PROTO_ICMP
from nodes.wire.tunnels import KINDS
from nodes.wire.mip import ICMP_ROUTER_SOLICITATION, MIP_PORT, TYPE_REQUEST

BATCH = 64
BROADCAST = IPv4Address("255.255.255.255")
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # Linux value
SO_EE_ORIGIN_ICMP = 2
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err, then SO_EE_OFFENDER (sockaddr_in)


def read_icmp_errors(sock: socket.socket, limit: int = BATCH) -> list:
    """ICMP errors queued on a socket with IP_RECVERR: a list of (destination address, destination
    port, ICMP type, ICMP code, quoted UDP payload, reporting node or None)."""
    errors = []
    for _ in range(limit):
        try:
            data, anc, _flags, address = sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            break
        for level, kind, value in anc:
            if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(value) < _EXTENDED_ERR.size:
                continue
            _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(value)
            if origin != SO_EE_ORIGIN_ICMP:
                continue
            offender = IPv4Address(value[20:24]) if len(value) >= 24 and value[16:18] != b"\0\0" else None
            errors.append((IPv4Address(address[0]), address[1], icmp_type, icmp_code, data, offender))
    return errors


def reset_core(core: ForeignAgent, now: float) -> list:
    """Empty the core's visitor list and pending requests (their timers cancelled, so nothing of
    them falls due later); returns the actions that take the visitors' host routes away, and a log
    line. Nothing is sent: no denial to a pending visitor, no request to any home agent."""
    visitors, pending = len(core.visitors), len(core.pending)
    actions: list = []
    for home in list(core.visitors):
        actions += core._remove_visitor(home)
    for _kind, home, ident in list(core.pending):
        core._forget(home, ident)
    actions.append(Log("reset", {"visitors": visitors, "pending": pending, "at": now}))
    return actions


def take_back(core: ForeignAgent, executor, iface: str, now: float) -> None:
    """Everything the visitors hold on this host taken back at once (a reset, or the daemon
    stopping): the core emptied (reset_core), the host routes, permanent neighbour entries and
    reverse-tunnel rules removed (RemoveHostRoute; the executor's `on_host_route` hook drops the
    rule), the link-layer addresses learnt forgotten; the changes sent before this returns."""
    actions = reset_core(core, now)
    executor.forget_neighbours(iface)
    executor.run(actions)
    executor.flush()


def local_addresses() -> list:
    """The IPv4 addresses of every interface of this node (a request naming one of them as its home
    agent is never relayed, RFC 5944 3.7.2)."""
    found = []
    for _index, name in socket.if_nameindex():
        try:
            found += [IPv4Interface(cidr).ip for cidr in netlink.addresses(name)]
        except OSError:  # an interface gone meanwhile
            continue
    return found


async def setup(args, log):
    cfg, extra = mip_config.load(args.config, mip_config.foreign_agent)
    iface = cfg.iface
    if not extra["prefix_given"]:
        for cidr in netlink.addresses(iface):
            if IPv4Interface(cidr).ip == cfg.address:
                cfg.prefix_length = IPv4Interface(cidr).network.prefixlen
    cfg.local_addresses = [a for a in local_addresses() if a != cfg.address and a not in cfg.care_of_addresses]
    core = ForeignAgent(cfg)
    loop = asyncio.get_running_loop()
    errors = Counter()
    link_drops = Counter()  # what the daemon discards before the core sees it

    netlink.sysctl("net/ipv4/ip_forward", 1)
    # visitors use their home addresses on this link: no reverse-path filter against them
    for conf in ("all", iface):
        netlink.sysctl(f"net/ipv4/conf/{conf}/rp_filter", 0)
    tun = TunDevice.open(extra["tun"])
    netlink.route_replace("default", dev=tun.name, table=TUNNEL_TABLE)
    # the link socket tells which frames carry a partial (offloaded) checksum: the others' are checked
    raw, udp, link = RawSender(), udp_socket(), LinkSocket(iface, checksum_status=True)
    tunnels = {kind: RawReceiver(KINDS[kind]) for kind in cfg.encapsulations}
    # ICMP errors about what leaves from port 434 (relayed requests, even sent on the raw socket)
    # queue on this socket instead of being dropped: the FA answers 80-88 without waiting 7 s
    udp.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    iface_index = netlink.link_index(iface)
    executor = MipExecutor(log, raw=raw, tun=tun, links={iface: link}, udp=udp, capture="dst", default_iface=iface,
                           sends_first=True)
    ours = {cfg.address, *cfg.care_of_addresses, BROADCAST}

    def on_host_route(action):
        """Reverse tunnelling: steer the visitor's packets into the TUN device (and stop)."""
        if isinstance(action, AddHostRoute) and action.reverse_tunnel:
            netlink.rule_add(TUNNEL_TABLE, RULE_PRIORITY, src=action.addr, iif=iface)
        elif isinstance(action, (AddHostRoute, RemoveHostRoute)):
            netlink.rule_del(TUNNEL_TABLE, RULE_PRIORITY, src=action.addr, iif=iface)

    executor.on_host_route = on_host_route
    driver = CoreDriver(core, executor, log)

    def on_frame():
        for _ in range(BATCH):
            frame = link.recv()
            if frame is None:
                return
            if frame.ethertype != ETH_P_IP or frame.pkttype in (PACKET_OUTGOING, PACKET_OTHERHOST):
                continue
            ip = parse_ipv4(frame.payload)
            if ip is None:
                continue
            if not ip.src.is_unspecified:
                executor.learn(iface, ip.src, frame.src_mac)
            if ip.proto == PROTO_ICMP and ip.payload[:1] == bytes([ICMP_ROUTER_SOLICITATION]):
                driver.feed(core.receive_icmp, ip.payload, Addr(str(ip.src), 0, str(ip.dst), 0, lladdr=frame.src_mac))
                continue
            udp_parts = parse_udp(ip)
            if udp_parts and udp_parts[1] == MIP_PORT and udp_parts[2][:1] == bytes([TYPE_REQUEST]) \
                    and (ip.dst in ours or ip.dst.is_multicast):
                if not frame.csum_partial and not udp_checksum_ok(ip):
                    link_drops["request-bad-udp-checksum"] += 1  # RFC 5944 3.7.2.1: silently discarded
                    continue
                sport, _dport, payload = udp_parts
                driver.feed(core.receive_datagram, payload,
                            Addr(str(ip.src), sport, str(ip.dst), MIP_PORT, ttl=ip.ttl, lladdr=frame.src_mac))

    def on_relay_errors():
        for ha, port, icmp_type, icmp_code, quoted, reporter in read_icmp_errors(udp):
            driver.feed(core.relay_error, ha, port, icmp_type, icmp_code, quoted=quoted, reporter=reporter)

    def on_udp():
        on_relay_errors()  # the error queue makes the socket readable too (EPOLLERR)
        for _ in range(BATCH):
            try:
                got = recv_udp(udp)
            except OSError:  # the socket error of an ICMP error queued meanwhile (read, then go on)
                on_relay_errors()
                continue
            if got is None:
                return
            payload, where, ifindex = got
            if payload[:1] == bytes([TYPE_REQUEST]) and ifindex == iface_index:
                continue  # taken from the link socket, with the visitor's MAC and TTL
            driver.feed(core.receive_datagram, payload, where)

    on_tun = packet_reader(tun.read, lambda packet: driver.feed(core.receive_from_visitor, packet), BATCH)
    readers = [(link.fileno(), "link", on_frame), (udp.fileno(), "udp", on_udp), (tun.fd, "tun", on_tun)]
    readers += [(r.fileno(), kind, packet_reader(r.recv, lambda packet: driver.feed(core.receive_tunnelled, packet), BATCH))
                for kind, r in tunnels.items()]
    for fd, name, fn in readers:
        loop.add_reader(fd, guarded(log, errors, name, fn))
    log("foreign-agent", address=str(cfg.address), iface=iface, care_of_addresses=[str(a) for a in cfg.care_of_addresses],
        adv_interval=cfg.adv_interval, encapsulations=list(cfg.encapsulations))
    driver.feed(core.start)

    def status(_req):
        return {**core.status(driver.now()).as_dict(), **executor.status(), "iface": iface,
                "link_drops": dict(link_drops),
                "errors": dict(errors + driver.errors + executor.action_errors())}

    def reset(_req):
        """The visitor list and pending requests emptied (reset_core); the host changes are sent
        before the answer, so none outlives it."""
        take_back(core, executor, iface, driver.now())
        driver.rearm()
        return "ok"

    async def cleanup():
        """Stop, taking back everything the visitors hold: host routes, neighbour entries and
        reverse-tunnel rules (take_back), before the sockets close."""
        driver.stop()
        for fd, _name, _fn in readers:
            loop.remove_reader(fd)
        homes = list(core.visitors)
        try:
            take_back(core, executor, iface, driver.now())
        except Exception as exc:  # at least the policy rules go, whatever else failed
            log("cleanup-error", error=f"{type(exc).__name__}: {exc}")
            for home in homes:
                netlink.rule_del(TUNNEL_TABLE, RULE_PRIORITY, src=home, iif=iface)
        for closer in (udp.close, *(r.close for r in tunnels.values()), raw.close, link.close, tun.close,
                       netlink.close):
            closer()

    return {"status": status, "reset": reset}, cleanup


def main() -> None:
    p = daemon.base_parser("fa", __doc__.splitlines()[0])
    daemon.run("fa", p.parse_args(), setup)


if __name__ == "__main__":
    main()
