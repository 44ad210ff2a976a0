"""The Mobile IP executor's sends: UDP datagrams and ICMP messages the cores build, and decapsulated
packets delivered. A packet for a neighbour whose MAC is known (given, a broadcast, or learnt from
its frames) goes out on the link socket (AF_PACKET) and needs no route; the rest leave by the raw
IP socket, or, for a decapsulated packet, through the TUN device into the kernel.
"""
from __future__ import annotations

import socket
import struct
from collections import Counter
from ipaddress import IPv4Address

from nodes.mip.actions import SendIcmp, SendUdp
from nodes.runtime.host.rawip import LinkSocket, RawSender, icmp_packet, link_destination, udp_packet
from nodes.runtime.host.tundev import TunDevice
from nodes.wire.mip import MIP_PORT

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python 3.11 lacks the name


class PacketSender:
    def __init__(self, counters: Counter, *, raw: RawSender, tun: TunDevice | None, links: dict,
                 udp: socket.socket | None, udp_from_socket: bool):
        self.counters, self.raw, self.tun, self.udp = counters, raw, tun, udp
        self.links: dict[str, LinkSocket] = links
        # a reply from port 434 with a given local source leaves by the UDP socket (IP_PKTINFO picks
        # the source) instead of a hand-built packet on the raw socket: the home agent's hot path
        self.udp_from_socket = udp_from_socket
        self._pktinfo: dict = {}
        self.neighbours: dict[str, dict[IPv4Address, str]] = {}  # iface -> ip -> mac, learnt from frames

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

    # ---- sends ------------------------------------------------------------------------------------
    def send_icmp(self, a: SendIcmp) -> None:
        if a.src is None:
            raise ValueError(f"an ICMP message without a source address (iface {a.iface})")
        self._send_packet(icmp_packet(a.src, a.dst, a.payload, ttl=a.ttl), a.iface, a.dst, None, "icmp")

    def send_ip(self, packet: bytes) -> None:
        self.counters["sent-ip"] += self.raw.send(packet)

    def send_udp(self, a: SendUdp) -> None:
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
