"""A Mobile Node core whose "link" is a VPN tunnel: RFC 5265's i-MIP layer (access modes fvc, cvc);
inside the intranet (access mode c, or at home) the same core is attached to the link's own address,
or (access mode f) to the foreign agent that advertises on the link.

RFC 5265 section 2 (access modes cvc and fvc): outside the intranet the MN registers with the internal home agent (i-HA)
through the IPsec tunnel, with the tunnel's inner address (VPN-TIA) as its co-located care-of
address and the T bit set. There is no agent and no router on such a link: the VPN client's
established tunnel is the attachment, its inner address the care-of address. So this runtime feeds
the same Mobile Node core (nodes/mip/mn.py) as the mobile node daemon, but from the tunnel's state:
`attach(vpn_tia)` is `link_up` with that co-located care-of address, `detach()` is `link_down`.
What the core would do on an Ethernet link is counted, not done (agent solicitations and ARP
probes have nobody to reach inside the tunnel, and the VPN client owns the TUN's address and
routes, so `ConfigureLink` only steers the home address into this layer's own TUN).

Data path (co-located, capture by source like the mobile node daemon, in a routing table of its
own so that two MN runtimes live in one host): what leaves from the i-HoA is read from `tun` and
sent IP-in-IP VPN-TIA -> i-HA, which the kernel routes into the VPN client's TUN; what the i-HA
tunnels (IP-in-IP, or minimal or GRE when the configured encapsulation asked for them) arrives
decrypted on the VPN TUN and is decapsulated into `tun`. Registration replies come to
a UDP socket bound to VPN-TIA:434 (ahead of the outer MN's socket on 0.0.0.0:434), and so does
RFC 3519 tunnel data when the i-HA sees a NAT on the way (a NAPT gateway, draft-gupta Appendix A).

Through a foreign agent (mode f, `attach_agent`): the core hears that agent's advertisements (a raw
ICMP socket; every other agent's are ignored, and none are heard in any other mode), registers
through it from the i-HoA (the reply comes to i-HoA:434), and the i-HoA's traffic takes the host's
routes (the x-MIP layer's default route through the same agent, which reverse-tunnels it to the
i-HA with the T bit) instead of this layer's TUN.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Callable
from ipaddress import ip_address

from nodes.core import Addr
from nodes.mip.actions import ArpProbe, ConfigureLink, GratuitousArp, SendIcmp, StartDhcp, StopDhcp
from nodes.mip.mn import MobileNode
from nodes.mip.mn_messages import inner_ttl_expired, tunnel_data_inner
from nodes.runtime.host import netlink
from nodes.runtime.clock import SYSTEM, Clock
from nodes.runtime.core_driver import CoreDriver
from nodes.runtime.mip.actions import MipExecutor, guarded, packet_reader, recv_udp, udp_socket
from nodes.runtime.host.rawip import RawReceiver, RawSender
from nodes.runtime.host.tundev import TunDevice
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP, IPv4
from nodes.wire.mip import ICMP_ROUTER_ADVERTISEMENT, TYPE_REPLY, TYPE_TUNNEL_DATA
from nodes.wire.tunnels import KINDS, decapsulate

BATCH = 64
KEEPALIVE_CHECK = 1.0  # seconds between looks for an idle RFC 3519 tunnel (the i-HA asks for 110 s)


class TunnelLinkExecutor(MipExecutor):
    """The Mobile IP executor on a link that has no agents: solicitations are counted, not sent
    (sent on the host's default route, they would leave the VPN-TIA on the foreign network); so is
    the gratuitous ARP of a return home (this runtime has no link socket; the kernel answers ARP for
    the address the x-MIP layer put on the link)."""

    on_turn: Callable[[], None] | None = None  # called after the actions of each turn of the core

    def _one(self, a) -> None:
        if isinstance(a, SendIcmp):
            self.counters["not-sent:solicitation-in-tunnel"] += 1
            return
        if isinstance(a, GratuitousArp):  # back home (RFC 5265 inside): the link is the x-MIP layer's
            self.counters["not-sent:gratuitous-arp-no-link-socket"] += 1
            return
        super()._one(a)

    def run(self, actions) -> None:
        super().run(actions)
        if self.on_turn is not None:
            self.on_turn()


class TunnelMobileNode:
    def __init__(self, cfg, tun: str, table: int, link_tun: str, mtu: int, log, clock: Clock = SYSTEM,
                 on_turn: Callable[[], None] | None = None):
        """`on_turn` is called after each turn of the core (an input or its timer, whatever it
        changed): the mobile VPN node reacts to this layer's registrations through it."""
        self.cfg, self.log, self.link_tun, self.clock = cfg, log, link_tun, clock
        self.core = MobileNode(cfg)
        self.loop = asyncio.get_running_loop()
        self.errors = Counter()
        self.tun = TunDevice.open(tun)
        netlink.link_set(tun, mtu=mtu)
        self.raw, self.icmp = RawSender(), RawReceiver(PROTO_ICMP)
        # whatever the i-HA granted (RFC 5944 3.3: IP-in-IP always, minimal and GRE when asked)
        self.tunnels = {kind: RawReceiver(proto) for kind, proto in KINDS.items()}
        handlers = {ArpProbe: self._not_on_tunnel, StartDhcp: self._not_on_tunnel, StopDhcp: self._not_on_tunnel,
                    ConfigureLink: self._configure}
        self.executor = TunnelLinkExecutor(log, raw=self.raw, tun=self.tun, capture="src", handlers=handlers,
                                           table=table, clock=clock)
        self.executor.on_turn = on_turn
        self.driver = CoreDriver(self.core, self.executor, log, now=clock.wall)
        netlink.addr_add("lo", f"{cfg.home_address}/32")
        self.udp = None
        self.care_of_address: str | None = None
        self.agent: str | None = None  # mode f: the foreign agent attached through
        self.heard: dict[str, tuple] = {}  # source -> (monotonic time, ICMP payload, Addr): the last advertisement
        on_icmp = packet_reader(self.icmp.recv, self._on_icmp, BATCH)
        on_tun = packet_reader(self.tun.read, self.executor.encapsulate_from_home, BATCH)
        self.fds = [r.fileno() for r in self.tunnels.values()] + [self.icmp.fileno(), self.tun.fd]
        for kind, r in self.tunnels.items():
            self.loop.add_reader(r.fileno(), guarded(log, self.errors, kind, packet_reader(r.recv, self._on_tunnelled, BATCH)))
        self.loop.add_reader(self.icmp.fileno(), guarded(log, self.errors, "icmp", on_icmp))
        self.loop.add_reader(self.tun.fd, guarded(log, self.errors, "tun", on_tun))
        self._keepalive = self.loop.call_later(KEEPALIVE_CHECK, self._keepalives)

    # ---- the tunnel as the link ---------------------------------------------------------------
    def attach(self, care_of_address: str) -> None:
        """The VPN tunnel is up with inner address `care_of_address`: register through it."""
        if care_of_address == self.care_of_address and self.agent is None:
            return
        self.detach()
        self.udp = udp_socket(address=care_of_address)
        self.loop.add_reader(self.udp.fileno(), guarded(self.log, self.errors, "udp", self._on_udp))
        self.care_of_address = care_of_address
        self.executor.hold_home_traffic(self.cfg.home_address)  # none leaves the i-HoA outside the tunnel
        self.log("i-mip-attach", care_of_address=care_of_address, via=self.link_tun)
        self.driver.feed(self.core.link_up, care_of_address=care_of_address)
        if ip_address(care_of_address) in self.cfg.home_network:  # at home (RFC 5265 inside): no tunnel
            self.executor.release_home_traffic(self.cfg.home_address)

    def attach_agent(self, agent: str) -> None:
        """Inside, on a link where the foreign agent `agent` advertises (RFC 5265 access mode f):
        register through it when its next advertisement is heard."""
        if agent == self.agent:
            return
        self.detach()
        self.executor.release_home_traffic(self.cfg.home_address)  # the host's routes, through the agent
        self.udp = udp_socket(address=str(self.cfg.home_address))  # the agent's reply: to i-HoA:434
        self.loop.add_reader(self.udp.fileno(), guarded(self.log, self.errors, "udp", self._on_udp))
        self.agent = self.care_of_address = agent
        self.log("i-mip-attach", agent=agent)
        self.driver.feed(self.core.link_up)
        # the agent's advertisement heard before the attachment, still within its lifetime (RFC 5944
        # 2.4.2.1: the node records advertisements until their Lifetime expires): register at once
        # rather than wait for the next one
        last = self.heard.get(agent)
        if last is not None and self.clock.now() - last[0] < int.from_bytes(last[1][6:8], "big"):
            self.executor.counters["advertisement-replayed"] += 1
            self.driver.feed(self.core.receive_icmp, last[1], last[2])

    def detach(self) -> None:
        if self.care_of_address is None:
            return
        self.log("i-mip-detach", care_of_address=self.care_of_address, agent=self.agent)
        self.care_of_address = self.agent = None
        self.driver.feed(self.core.link_down)
        self._close_udp()

    def _close_udp(self) -> None:
        if self.udp is not None:
            self.loop.remove_reader(self.udp.fileno())
            self.udp.close()
            self.udp = None

    def _not_on_tunnel(self, a) -> None:
        self.executor.counters[f"not-done:{type(a).__name__}-in-tunnel"] += 1

    def _configure(self, a: ConfigureLink) -> None:
        if a.kind == "colocated":
            self.executor.hold_home_traffic(a.home_address)
        else:
            self.executor.counters[f"not-done:configure-{a.kind}-in-tunnel"] += 1

    # ---- inputs -------------------------------------------------------------------------------
    def _on_udp(self) -> None:
        for _ in range(BATCH):
            got = recv_udp(self.udp) if self.udp is not None else None
            if got is None:
                return
            payload, where, _ifindex = got
            kind = payload[:1]
            if kind == bytes([TYPE_REPLY]):
                self.driver.feed(self.core.receive_datagram, payload, where)
            elif kind == bytes([TYPE_TUNNEL_DATA]):
                self._on_tunnel_data(payload, where.src)
            else:
                self.executor.counters["drop:udp-unexpected"] += 1

    def _on_tunnel_data(self, payload: bytes, src: str) -> None:
        """RFC 3519 from the i-HA: it saw a NAT between the VPN-TIA and itself (a gateway whose
        internal presence is NAPT, draft-gupta Appendix A) and tunnels in UDP to the mapping."""
        try:
            inner = tunnel_data_inner(payload)  # IP-in-UDP, what the node asked for (RFC 3519 3.3)
        except DecodeError as e:
            self.executor.counters[f"drop:udp-tunnel:{e.reason}"] += 1
            return
        if inner_ttl_expired(inner):  # RFC 2003 3.1
            self.executor.counters["drop:udp-tunnel:inner-ttl-zero"] += 1
            return
        self.executor.decapsulate_to_home(inner, src, "udp")

    def _on_icmp(self, packet: bytes) -> None:
        """Every ICMP packet of the host: only the advertisements of the agent attached through count."""
        if packet[9:10] != bytes([1]) or len(packet) < 21 or packet[(packet[0] & 0x0F) * 4:][:1] != \
                bytes([ICMP_ROUTER_ADVERTISEMENT]):
            return
        try:
            ip = IPv4.decode(packet)
        except DecodeError as e:
            self.executor.counters[f"drop:icmp:{e.reason}"] += 1
            return
        where = Addr(str(ip.src), 0, str(ip.dst), 0)
        if len(self.heard) < 64 or str(ip.src) in self.heard:  # kept for attach_agent
            self.heard[str(ip.src)] = (self.clock.now(), ip.payload, where)
        if self.agent is not None and str(ip.src) == self.agent:
            self.driver.feed(self.core.receive_icmp, ip.payload, where)

    def _on_tunnelled(self, packet: bytes) -> None:
        """Every IP-in-IP, minimal or GRE packet of the host reaches each raw receiver of its protocol:
        only the i-HA's are ours (the x-MIP layer's come from the x-HA)."""
        try:
            tunnel = decapsulate(packet)
        except DecodeError as e:
            self.executor.counters[f"drop:tunnel:{e.reason}"] += 1
            return
        if str(tunnel.outer.src) != str(self.cfg.home_agent):
            return
        if inner_ttl_expired(tunnel.inner):  # RFC 2003 3.1
            self.executor.counters["drop:tunnel:inner-ttl-zero"] += 1
            return
        self.executor.decapsulate_to_home(tunnel.inner, tunnel.outer.src, tunnel.kind)

    def _keepalives(self) -> None:
        """RFC 3519 3.1 through a NAPT gateway: the mapping at G_i must not lapse while idle."""
        guarded(self.log, self.errors, "keepalive", self.executor.keepalives)()
        self._keepalive = self.loop.call_later(KEEPALIVE_CHECK, self._keepalives)

    # ---- status and shutdown ------------------------------------------------------------------
    def status(self) -> dict:
        return {**self.core.status(self.driver.now()).as_dict(), **self.executor.status(), "via": self.link_tun,
                "errors": dict(self.errors + self.driver.errors + self.executor.action_errors())}

    async def close(self) -> None:
        self._keepalive.cancel()
        self.detach()
        self.driver.stop()
        for fd in self.fds:
            self.loop.remove_reader(fd)
        self.executor.release_home_traffic(self.cfg.home_address)
        for closer in (*(r.close for r in self.tunnels.values()), self.icmp.close, self.raw.close, self.tun.close):
            closer()
        netlink.addr_del("lo", f"{self.cfg.home_address}/32")
