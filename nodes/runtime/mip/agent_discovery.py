"""Agent solicitations heard by a mobility agent that does not read its whole link (the home agent:
an AF_PACKET socket on the home link would copy every data packet to userspace).

`SolicitationReceiver(iface)` is a raw ICMP socket that joins 224.0.0.2 (all routers, where
mobile nodes solicit, RFC 5944 2.2) on `iface` and hands over only the router solicitations that
arrived there (IP_PKTINFO names the interface).
"""
from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

from nodes.runtime.host import netlink
from nodes.wire.errors import DecodeError
from nodes.wire.ipv4 import PROTO_ICMP, IPv4
from nodes.wire.mip import ICMP_ROUTER_SOLICITATION

ALL_ROUTERS = IPv4Address("224.0.0.2")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class SolicitationReceiver:
    def __init__(self, iface: str):
        self.iface = iface
        self.ifindex = netlink.link_index(iface)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO_ICMP)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        mreq = struct.pack("=4s4si", ALL_ROUTERS.packed, bytes(4), self.ifindex)  # struct ip_mreqn
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[bytes, IPv4] | None:
        """(ICMP message, its IPv4 header) of the next router solicitation on `iface`; None when
        nothing is waiting. Other ICMP, other interfaces and undecodable packets are skipped."""
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(2048, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return None
            ifindex = next((struct.unpack("=i", v[:4])[0] for level, kind, v in anc
                            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(v) >= 12), None)
            try:
                ip = IPv4.decode(data)
            except DecodeError:
                continue
            if ifindex == self.ifindex and ip.payload[:1] == bytes([ICMP_ROUTER_SOLICITATION]):
                return ip.payload, ip

    def close(self) -> None:
        self.sock.close()
