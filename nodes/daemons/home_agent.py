"""Mobile IPv4 Home Agent daemon (RFC 5944, RFC 3024 reverse tunnels, RFC 3519 UDP tunnels).

    python -m nodes.daemons.home_agent --control PATH [--log-json PATH] --config ha.json

Data path, all in userspace (the kernel here has no IP-in-IP):
- registrations: UDP 434;
- while a node is away: a proxy neighbour entry answers ARP for its home address on the home link
  (plus a gratuitous ARP), and a host route sends packets for it into the TUN device `mip0`; the
  daemon reads them and the core encapsulates them (IP-in-IP through a raw socket, or RFC 3519 UDP
  from port 434 to the address and port the NAT showed);
- reverse tunnels: IP-in-IP, GRE and minimal encapsulation arrive on raw sockets of protocols 4, 47
  and 55 (those of the encapsulations configured), RFC 3519 tunnel data on UDP 434; the inner packet
  is written into the TUN device and the kernel forwards it;
- ICMP errors addressed to the HA (a raw ICMP socket, filtered to Destination Unreachable, Time
  Exceeded and Parameter Problem) go to the core, which relays those about its tunnel packets to
  the original senders and keeps the tunnels' soft state (RFC 2003 4 and 5);
- with `advertise` (the default on the home network): Agent Advertisements with H on the home
  link, periodic and in answer to solicitations (nodes/runtime/mip/agent_discovery.py).
Status over the control socket: bindings, counters by reason, tunnels and data-plane counters;
`reset`: every binding, tunnel and proxy entry dropped at once, like a restart.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import IPv4Address, IPv4Interface

from nodes.mip.ha import HomeAgent
from nodes.core import Addr
from nodes.runtime import daemon
from nodes.runtime.mip import config as mip_config
from nodes.runtime.host import netlink
from nodes.runtime.mip.agent_discovery import SolicitationReceiver
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.mip.actions import (
    IcmpErrorReceiver, MipExecutor, guarded, packet_reader, recv_udp, udp_socket,
)
from nodes.runtime.host.rawip import LinkSocket, RawReceiver, RawSender
from nodes.runtime.host.tundev import MOBILE_IP_TUNNEL_MTU, TunDevice
from nodes.wire.tunnels import KINDS

BATCH = 64  # packets read per wake-up of one reader


def iface_with_address(address: IPv4Address) -> str:
    for msg in netlink.ipr().get_addr(family=2):
        if msg.get_attr("IFA_ADDRESS") == str(address):
            return msg.get_attr("IFA_LABEL")
    raise LookupError(f"no interface of this node has the home agent address {address}")


def home_broadcast(iface: str, address: IPv4Address) -> IPv4Address | None:
    """The subnet-directed broadcast of the home agent's address on its home link (requests sent
    to it are denied with 136, RFC 5944 3.8.2.1), None for a /31 or /32."""
    for cidr in netlink.addresses(iface):
        i = IPv4Interface(cidr)
        if i.ip == address and i.network.prefixlen < 31:
            return i.network.broadcast_address
    return None


async def setup(args, log):
    cfg, extra = mip_config.load(args.config, mip_config.home_agent)
    if cfg.home_iface is None:
        cfg.home_iface = iface_with_address(cfg.address)
    if cfg.home_broadcast is None and cfg.prefix_length is None:  # no home_network in the config
        cfg.home_broadcast = home_broadcast(cfg.home_iface, cfg.address)
    core = HomeAgent(cfg)
    loop = asyncio.get_running_loop()
    errors = Counter()

    netlink.sysctl("net/ipv4/ip_forward", 1)  # captured and decapsulated packets are forwarded
    netlink.sysctl(f"net/ipv4/conf/{cfg.home_iface}/send_redirects", 0)
    tun = TunDevice.open(extra["tun"], mtu=MOBILE_IP_TUNNEL_MTU)
    raw, udp = RawSender(), udp_socket()
    tunnels = {kind: RawReceiver(KINDS[kind]) for kind in cfg.encapsulations}  # reverse tunnels (RFC 3024 3.4)
    icmp_errors = IcmpErrorReceiver()
    link = LinkSocket(cfg.home_iface, listen=False)
    executor = MipExecutor(log, raw=raw, tun=tun, links={cfg.home_iface: link}, udp=udp, capture="dst",
                           default_iface=cfg.home_iface, udp_from_socket=True, batch=extra["batch_host_changes"])
    driver = CoreDriver(core, executor, log)

    def on_udp():
        for _ in range(BATCH):
            got = recv_udp(udp)
            if got is None:
                return
            payload, where, _ifindex = got  # where.dst: the request's IP destination (IP_PKTINFO)
            driver.feed(core.receive_datagram, payload, where)

    on_tun = packet_reader(tun.read, lambda packet: driver.feed(core.encapsulate, packet), BATCH)
    on_icmp_error = packet_reader(icmp_errors.recv,
                                  lambda got: driver.feed(core.receive_icmp_error, got[0], got[1]), BATCH)

    loop.add_reader(udp.fileno(), guarded(log, errors, "udp", on_udp))
    for kind, receiver in tunnels.items():
        on_tunnelled = packet_reader(receiver.recv, lambda packet: driver.feed(core.receive_tunnelled, packet), BATCH)
        loop.add_reader(receiver.fileno(), guarded(log, errors, kind, on_tunnelled))
    loop.add_reader(tun.fd, guarded(log, errors, "tun", on_tun))
    loop.add_reader(icmp_errors.fileno(), guarded(log, errors, "icmp-errors", on_icmp_error))
    solicitations = SolicitationReceiver(cfg.home_iface) if cfg.advertise else None
    if solicitations is not None:
        def on_solicitation():
            for _ in range(BATCH):
                got = solicitations.recv()
                if got is None:
                    return
                icmp, ip = got
                driver.feed(core.receive_icmp, icmp, Addr(str(ip.src), 0, str(ip.dst), 0, ttl=ip.ttl))

        loop.add_reader(solicitations.fileno(), guarded(log, errors, "solicitations", on_solicitation))
    log("home-agent", address=str(cfg.address), home_iface=cfg.home_iface, tun=tun.name,
        nodes=[str(n.home_address) for n in cfg.nodes], advertise=cfg.advertise)
    driver.feed(core.start)

    def status(_req):
        s = core.status(driver.now()).as_dict()
        return {**s, **executor.status(), "drops": {**s["drops"], **executor.drops()}, "home_iface": cfg.home_iface,
                "errors": dict(errors + driver.errors + executor.action_errors())}

    def reset(_req):
        """Every binding, tunnel and proxy entry gone at once, as after a restart (the core's
        reset); the host changes are sent before the answer, so none outlives it."""
        driver.feed(core.reset)
        executor.flush()
        return "ok"

    async def cleanup():
        driver.stop()
        for fd in (udp.fileno(), *(r.fileno() for r in tunnels.values()), tun.fd, icmp_errors.fileno()):
            loop.remove_reader(fd)
        if solicitations is not None:
            loop.remove_reader(solicitations.fileno())
            solicitations.close()
        home = netlink.link_index(cfg.home_iface)  # leave the home link as we found it
        netlink.send_batch([netlink.proxy_arp_request(h, home, False) for h in core.bindings])
        for closer in (udp.close, *(r.close for r in tunnels.values()), icmp_errors.close, raw.close, link.close,
                       tun.close, netlink.close):
            closer()

    return {"status": status, "reset": reset}, cleanup


def main() -> None:
    p = daemon.base_parser("ha", __doc__.splitlines()[0])
    daemon.run("ha", p.parse_args(), setup)


if __name__ == "__main__":
    main()
