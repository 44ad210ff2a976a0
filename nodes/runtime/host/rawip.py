"""Raw sockets for a userspace data plane.

- `RawSender`: send whole IPv4 packets we built (IP_HDRINCL): tunnels (protocol 4), UDP with a
  chosen source address and port, ICMP. The kernel routes them by destination and fills in the
  header checksum.
- `RawReceiver(proto)`: receive whole IPv4 packets of one protocol delivered to this node
  (protocol 4: IP-in-IP; the kernel here has no ipip module, a raw socket takes them instead).
- `LinkSocket(iface)`: Ethernet frames on one interface (AF_PACKET): listen to everything on a
  link (agent advertisements, solicitations, ARP, a visitor's packets), and send frames to a
  chosen link-layer address (delivery to a visitor's MAC, multicast, gratuitous ARP).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from nodes.runtime.host import netlink
from nodes.wire.ipv4 import PROTO_ICMP, PROTO_UDP, IPv4, checksum, ipv4_udp

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = 0, 1, 2, 3, 4
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ARP_REQUEST, ARP_REPLY = 1, 2
MAX_PACKET = 65535
SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_AUXDATA = getattr(socket, "PACKET_AUXDATA", 8)
TP_STATUS_CSUMNOTREADY = 1 << 3  # the checksum is partial: the sender's offload was to fill it in
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def multicast_mac(group) -> str:
    """The Ethernet address of an IPv4 multicast group (RFC 1112): 01:00:5e + low 23 bits."""
    low = int(IPv4Address(group)) & 0x7FFFFF
    return mac_str(bytes([0x01, 0x00, 0x5E, low >> 16, (low >> 8) & 0xFF, low & 0xFF]))


def link_destination(dst) -> str | None:
    """The link-layer address an IPv4 destination maps to by itself (multicast, broadcast)."""
    dst = IPv4Address(dst)
    if dst.is_multicast:
        return multicast_mac(dst)
    if dst == IPv4Address("255.255.255.255"):
        return BROADCAST_MAC
    return None


def udp_packet(src, dst, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    return ipv4_udp(src, dst, sport, dport, payload, ttl=ttl)


def icmp_packet(src, dst, icmp: bytes, ttl: int = 64) -> bytes:
    return IPv4(IPv4Address(src), IPv4Address(dst), PROTO_ICMP, icmp, ttl=ttl).encode()


class RawSender:
    """Sends whole IPv4 packets (header included); the kernel routes them by destination."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setblocking(False)
        self.errors = 0

    def send(self, packet: bytes) -> bool:
        try:
            self.sock.sendto(packet, (str(IPv4Address(packet[16:20])), 0))
            return True
        except OSError:  # no route, buffer full, message too long: counted, never fatal
            self.errors += 1
            return False

    def close(self) -> None:
        self.sock.close()


class RawReceiver:
    """Receives whole IPv4 packets of protocol `proto` addressed to this node."""

    def __init__(self, proto: int):
        self.proto = proto
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes | None:
        try:
            return self.sock.recv(MAX_PACKET)
        except (BlockingIOError, InterruptedError):
            return None

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Frame:
    src_mac: str
    dst_mac: str
    ethertype: int
    payload: bytes
    pkttype: int  # PACKET_HOST, PACKET_BROADCAST, ... as the kernel classified it
    # its transport checksum is partial, not yet computed (a datagram sent on this host or its veth
    # peer, checksum offloaded): not to be verified. Known only with LinkSocket(checksum_status=True).
    csum_partial: bool = False


def csum_partial(ancillary) -> bool:
    """Whether the PACKET_AUXDATA among a recvmsg's ancillary data marks the frame's checksum as
    partial (TP_STATUS_CSUMNOTREADY)."""
    for level, kind, value in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 4:
            return bool(struct.unpack_from("=I", value)[0] & TP_STATUS_CSUMNOTREADY)
    return False


@dataclass(frozen=True)
class Arp:
    op: int
    sender_mac: str
    sender_ip: IPv4Address
    target_mac: str
    target_ip: IPv4Address

    @classmethod
    def decode(cls, data: bytes) -> "Arp | None":
        if len(data) < 28:
            return None
        htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", data[:8])
        if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
            return None
        return cls(op, mac_str(data[8:14]), IPv4Address(data[14:18]), mac_str(data[18:24]),
                   IPv4Address(data[24:28]))

    def encode(self) -> bytes:
        return struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, self.op) + mac_bytes(self.sender_mac) + \
            IPv4Address(self.sender_ip).packed + mac_bytes(self.target_mac) + IPv4Address(self.target_ip).packed


class LinkSocket:
    """Ethernet frames on one interface: everything the interface sees, and frames we send."""

    def __init__(self, iface: str, listen: bool = True, checksum_status: bool = False):
        """With listen=False the socket only sends (it receives nothing, so nothing queues up). With
        checksum_status each frame received tells whether its checksum is partial (PACKET_AUXDATA)."""
        self.iface = iface
        self.checksum_status = checksum_status and listen
        self.mac = netlink.link_mac(iface)
        proto = ETH_P_ALL if listen else 0
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
        self.sock.setblocking(False)
        if listen:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind((iface, proto))
        if self.checksum_status:
            self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.errors = 0
        self._garp_heads: dict[str, bytes] = {}  # MAC -> a gratuitous ARP's frame up to its addresses

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> Frame | None:
        """The next frame received (frames we sent ourselves are skipped), or None."""
        while True:
            try:
                if self.checksum_status:
                    data, ancillary, _flags, address = self.sock.recvmsg(MAX_PACKET, 64)
                else:
                    data, address = self.sock.recvfrom(MAX_PACKET)
                    ancillary = ()
            except (BlockingIOError, InterruptedError):
                return None
            pkttype = address[2]
            if pkttype == PACKET_OUTGOING or len(data) < 14:
                continue
            ethertype = struct.unpack("!H", data[12:14])[0]
            return Frame(mac_str(data[6:12]), mac_str(data[0:6]), ethertype, data[14:], pkttype,
                         csum_partial(ancillary))

    def send(self, dst_mac: str, ethertype: int, payload: bytes, src_mac: str | None = None) -> bool:
        return self._send_frame(mac_bytes(dst_mac) + mac_bytes(src_mac or self.mac) + struct.pack("!H", ethertype) + payload)

    def _send_frame(self, frame: bytes) -> bool:
        try:
            self.sock.send(frame)
            return True
        except OSError:
            self.errors += 1
            return False

    def send_ip(self, packet: bytes, dst_mac: str) -> bool:
        return self.send(dst_mac, ETH_P_IP, packet)

    def send_arp(self, arp: Arp, dst_mac: str = BROADCAST_MAC) -> bool:
        return self.send(dst_mac, ETH_P_ARP, arp.encode())

    def gratuitous_arp(self, ip, mac: str | None = None) -> bool:
        """Announce that `ip` is at `mac` (ours by default): a broadcast ARP request for itself. The
        frame up to the addresses is built once per MAC (a home agent sends thousands a second)."""
        mac = mac or self.mac
        head = self._garp_heads.get(mac)
        if head is None:
            arp = Arp(ARP_REQUEST, mac, IPv4Address(0), "00:00:00:00:00:00", IPv4Address(0)).encode()
            head = self._garp_heads[mac] = mac_bytes(BROADCAST_MAC) + mac_bytes(self.mac) + \
                struct.pack("!H", ETH_P_ARP) + arp[:14]
        ip = ip.packed if type(ip) is IPv4Address else IPv4Address(ip).packed  # (an address: no string)
        return self._send_frame(head + ip + bytes(6) + ip)

    def arp_probe(self, sender_ip, target_ip) -> bool:
        """Ask who has `target_ip`, from `sender_ip` (an ordinary ARP request)."""
        return self.send_arp(Arp(ARP_REQUEST, self.mac, IPv4Address(sender_ip), "00:00:00:00:00:00",
                                 IPv4Address(target_ip)))

    def close(self) -> None:
        self.sock.close()


def parse_ipv4(payload: bytes) -> IPv4 | None:
    """An IPv4 packet of a frame, or None when it does not decode (checked, never raises)."""
    from nodes.wire.errors import DecodeError
    try:
        return IPv4.decode(payload)
    except DecodeError:
        return None


def parse_udp(ip: IPv4, verify_checksum: bool = False):
    """(sport, dport, payload) of a UDP packet, or None; with verify_checksum also None when its
    checksum is wrong (a zero checksum is none: RFC 768)."""
    if ip.proto != PROTO_UDP or ip.frag_offset or len(ip.payload) < 8:
        return None
    sport, dport, length = struct.unpack("!HHH", ip.payload[:6])
    if length < 8 or length > len(ip.payload):
        return None
    if verify_checksum and not udp_checksum_ok(ip):
        return None
    return sport, dport, ip.payload[8:length]


def udp_checksum_ok(ip: IPv4) -> bool:
    """Whether a UDP packet's checksum is right, or absent (zero). Only for a complete checksum:
    a partial one (Frame.csum_partial) is the sender's to finish and fails here."""
    if len(ip.payload) < 8:
        return False
    length, received = struct.unpack("!HH", ip.payload[4:8])
    if received == 0:
        return True
    if length < 8 or length > len(ip.payload):
        return False
    pseudo = IPv4Address(ip.src).packed + IPv4Address(ip.dst).packed + struct.pack("!BBH", 0, PROTO_UDP, length)
    return checksum(pseudo + bytes(ip.payload[:length])) == 0
