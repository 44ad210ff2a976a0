"""Sockets of the IPsec daemons: IKE on UDP 500 and 4500 (with the packet's destination address
from IP_PKTINFO, which NAT detection needs), UDP-encapsulated ESP on the same 4500 socket, plain
ESP (IP protocol 50) on a raw socket, and a raw IP socket (IP_HDRINCL) to send finished packets.

Every receive path reads in batches until the socket is empty (`drain`), so one event-loop wakeup
moves many packets; nothing here parses more than the first bytes.

UDP segmentation offload (Linux): the UDP sockets receive with UDP_GRO, so a burst of equal-sized
datagrams that the sender sent as one UDP_SEGMENT write (and the kernel forwarded as one buffer)
arrives in one read and is cut back into its datagrams here; `UdpSender` sends a batch of
datagrams to one peer with one UDP_SEGMENT write per run of equal sizes. The kernel cuts such a
write into ordinary datagrams before they leave for a peer that did not ask for UDP_GRO, so
nothing changes for the peer; what the batch saves is the per-packet work of every hop inside the
host (routing, netfilter, the veth pairs of a testbed world) and the system calls. A capture on a
link inside the host (tcpdump on a veth) sees such a batch as one large UDP datagram (checked:
ten 1400-byte datagrams show as one 14028-byte IPv4 packet); the receiving socket gets ten.
"""
from __future__ import annotations

import errno
import os
import queue
import socket
import struct
import sys
import threading
from typing import Callable

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPPROTO_ESP = 50
BATCH = 256
SOCKBUF = 4 << 20
SOL_UDP = 17
UDP_SEGMENT = 103  # <linux/udp.h>: a write of several datagrams of one size (UDP GSO, Linux 4.18)
UDP_GRO = 104  # <linux/udp.h>: reads of coalesced datagrams, their size in a control message (5.0)
GSO_MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS (64 until Linux 6.8 made it 128)
GSO_MAX_BYTES = 65535 - 20 - 8  # one write is one IPv4 packet before the kernel cuts it
MAX_READ = 65535


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
    try:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:  # an older kernel: datagrams arrive one by one, as before
        pass
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


_CMSG = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4)  # IP_PKTINFO and UDP_GRO


def _gro_size(ancdata) -> int | None:
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder)
    return None


class UdpReader:
    """Reads a UDP socket into one reused buffer: `drain(handle)` calls handle(datagram, src,
    sport, dst) for every datagram waiting (cut out of coalesced UDP_GRO reads). The datagram is
    a memoryview into the buffer, valid only during the call: copy what must outlive it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reads = 0  # system calls that returned a datagram (or a coalesced burst)
        self._buf = bytearray(MAX_READ)
        self._view = memoryview(self._buf)

    def drain(self, handle: Callable[[memoryview, str, int, str | None], None]) -> None:
        recvmsg_into, buf, view = self.sock.recvmsg_into, [self._buf], self._view
        for _ in range(BATCH):
            try:
                n, anc, _flags, addr = recvmsg_into(buf, _CMSG)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: keep serving
                if exc.errno in (errno.EAGAIN,):
                    return
                continue
            self.reads += 1
            src, sport = addr[0], addr[1]
            dst = pktinfo_dst(anc) if anc else None
            size = _gro_size(anc) if anc else None
            burst = view[:n]
            if size is None or size >= n:
                handle(burst, src, sport, dst)
                continue
            for at in range(0, n, size):  # the last datagram may be shorter
                handle(burst[at:at + size], src, sport, dst)


class UdpSender:
    """Sends batches of datagrams to one peer: each run of equal-sized datagrams (a shorter one may
    end it) goes out in one UDP_SEGMENT write, a lone datagram with sendto. Where the kernel
    refuses UDP_SEGMENT (an old kernel, a route without checksum offload), the sender falls back
    to one sendto per datagram for good."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.gso = True

    def send(self, packets: list, addr: tuple[str, int]) -> int:
        """Send `packets` to `addr`; the number that the kernel refused (a full socket buffer,
        no route)."""
        sock, n, i, failed = self.sock, len(packets), 0, 0
        while i < n:
            size = len(packets[i])
            limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // max(size, 1))
            j = i + 1
            while j < limit and len(packets[j]) == size:
                j += 1
            if j < limit and len(packets[j]) < size:
                j += 1
            if j - i > 1 and self.gso:
                try:
                    sock.sendmsg(packets[i:j], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, addr)
                    i = j
                    continue
                except (BlockingIOError, InterruptedError):
                    failed += j - i
                    i = j
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                        failed += j - i
                        i = j
                        continue
                    self.gso = False  # not here: one datagram per call from now on
            for k in range(i, j):
                try:
                    sock.sendto(packets[k], addr)
                except OSError:
                    failed += 1
            i = j
        return failed


class RawReader:
    """Reads a raw IPv4 socket into one reused buffer: `drain(handle)` calls handle(payload after
    the IP header, source address) for every packet waiting; the payload is a memoryview into the
    buffer, valid only during the call."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray(MAX_READ)
        self._view = memoryview(self._buf)

    def drain(self, handle: Callable[[memoryview, str], None]) -> None:
        recvfrom_into, buf, view = self.sock.recvfrom_into, self._buf, self._view
        for _ in range(BATCH):
            try:
                n, addr = recvfrom_into(buf)
            except BlockingIOError:
                return
            except OSError:
                continue
            if n < 20:
                continue
            handle(view[(buf[0] & 0x0F) * 4:n], addr[0])


class RawSender:
    """Sends finished IPv4 packets on a raw IP socket (`raw_ip_socket`) from a thread of its own.

    Such a send is where the kernel does the forwarding: routing, netfilter, the veth pair and, in
    the same system call, the next hops' work (a profile of the gateway under iperf3 found 43 % of
    its time in this one call). On its own thread the call runs while the event loop decrypts the
    next packets (it releases the GIL). `send(batch)` takes one burst of (packet, destination); the
    thread sends the bursts in order. A lone packet while the thread has nothing in hand goes out
    at once from the caller (no thread hop for a ping), which keeps the order: everything queued
    before it has been sent. `failed` counts the packets the kernel refused."""

    def __init__(self, sock: socket.socket, name: str = "raw-sender"):
        self.sock = sock
        self._failed_here = self._failed_there = 0  # each written by one thread only
        self._queued = 0  # bursts handed to the thread (written by the caller only)
        self._done = 0  # bursts the thread finished (written by the thread only)
        self._bursts: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, batch: list[tuple[bytes, str]]) -> None:
        if len(batch) == 1 and self._done == self._queued:
            packet, dst = batch[0]
            try:
                self.sock.sendto(packet, (dst, 0))
            except OSError:
                self._failed_here += 1
            return
        self._queued += 1
        self._bursts.put(batch)

    def _run(self) -> None:
        get, sendto = self._bursts.get, self.sock.sendto
        while (batch := get()) is not None:
            failed = 0
            for packet, dst in batch:
                try:
                    sendto(packet, (dst, 0))
                except OSError:
                    failed += 1
            self._failed_there += failed
            self._done += 1

    @property
    def failed(self) -> int:
        return self._failed_here + self._failed_there

    def close(self) -> None:
        """Let the thread send what it has, then end it."""
        self._bursts.put(None)
        self._thread.join(timeout=1.0)


def drain_fd(fd: int, handle: Callable[[bytes], None]) -> None:
    read = os.read
    for _ in range(BATCH):
        try:
            data = read(fd, MAX_READ)
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
