"""Sockets of the IPsec daemons: IKE on UDP 500 and 4500 (with the packet's destination address
from IP_PKTINFO, which NAT detection needs), UDP-encapsulated ESP on the same 4500 socket, plain
ESP (IP protocol 50) on a raw socket, and a raw IP socket (IP_HDRINCL) to send finished packets.

Every receive path reads in batches until the socket is empty (`drain`), so one event-loop wakeup
moves many packets; nothing here parses more than the first bytes.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Callable

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPPROTO_ESP = 50
BATCH = 256
SOCKBUF = 4 << 20


def _bufs(s: socket.socket) -> None:
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, SOCKBUF)
        except OSError:
            pass


def udp_socket(port: int, address: str = "0.0.0.0") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    _bufs(s)
    s.bind((address, port))
    s.setblocking(False)
    return s


def esp_socket() -> socket.socket:
    """Raw socket for IP protocol 50: receives whole IPv4 packets, sends ESP (kernel adds the IP header)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    _bufs(s)
    s.setblocking(False)
    return s


def raw_ip_socket() -> socket.socket:
    """Send finished IPv4 packets (header included) as they are: sendto(packet, (dst, 0))."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    _bufs(s)
    s.setblocking(False)
    return s


def pktinfo_dst(ancdata) -> str | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntoa(data[8:12])
    return None


_CMSG = socket.CMSG_SPACE(12)


def drain_udp(sock: socket.socket, handle: Callable[[bytes, str, int, str | None], None]) -> None:
    """recvmsg until empty: handle(data, src, sport, dst)."""
    recvmsg = sock.recvmsg
    for _ in range(BATCH):
        try:
            data, anc, _flags, addr = recvmsg(65535, _CMSG)
        except BlockingIOError:
            return
        except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: keep serving
            if exc.errno in (errno.EAGAIN,):
                return
            continue
        handle(data, addr[0], addr[1], pktinfo_dst(anc) if anc else None)


def drain_raw(sock: socket.socket, handle: Callable[[bytes, str], None]) -> None:
    """Raw IPv4 socket: handle(payload after the IP header, source address)."""
    recv = sock.recvfrom
    for _ in range(BATCH):
        try:
            data, addr = recv(65535)
        except BlockingIOError:
            return
        except OSError:
            continue
        if len(data) < 20:
            continue
        ihl = (data[0] & 0x0F) * 4
        handle(data[ihl:], addr[0])


def drain_fd(fd: int, handle: Callable[[bytes], None]) -> None:
    read = os.read
    for _ in range(BATCH):
        try:
            data = read(fd, 65535)
        except BlockingIOError:
            return
        except OSError:
            return
        handle(data)


def source_address_for(dst: str) -> str:
    """The address the kernel would use as the source toward `dst` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst, 9))
        return s.getsockname()[0]


def ip_int(addr: str) -> int:
    return struct.unpack("!I", socket.inet_aton(addr))[0]
