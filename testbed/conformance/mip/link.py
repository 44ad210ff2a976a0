"""Link-layer framing for an AF_PACKET socket (scapy used only for Ethernet and ARP): ARP
requests/replies, gratuitous ARP (RFC 5944 4.6), and IPv4 packets in Ethernet frames (e.g. a
registration request sent to a foreign agent's MAC, or a broadcast on the visited link)."""
from __future__ import annotations

from dataclasses import dataclass

from .result import Decoded, Malformed, safely

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


def ethernet_ipv4(packet: bytes, src_mac: str, dst_mac: str = BROADCAST_MAC) -> bytes:
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=src_mac, dst=dst_mac, type=0x0800)) + bytes(packet)


def arp(op: int, sender_mac: str, sender_ip, target_ip, target_mac: str = "00:00:00:00:00:00",
        dst_mac: str = BROADCAST_MAC) -> bytes:
    """An ARP frame: op 1 request, 2 reply."""
    from scapy.layers.l2 import ARP, Ether

    return bytes(Ether(src=sender_mac, dst=dst_mac) / ARP(op=op, hwsrc=sender_mac, psrc=str(sender_ip),
                                                          hwdst=target_mac, pdst=str(target_ip)))


def gratuitous_arp(mac: str, address, reply: bool = False) -> bytes:
    """RFC 5944 4.6: sender and target protocol address both `address`, broadcast."""
    return arp(2 if reply else 1, mac, address, address, BROADCAST_MAC if reply else "00:00:00:00:00:00")


@dataclass(frozen=True)
class ArpMessage:
    op: int
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str
    dst_mac: str

    @property
    def gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip


def _parse_arp(frame: bytes) -> ArpMessage:
    from scapy.layers.l2 import ARP, Ether

    if len(frame) < 42:
        raise Malformed(f"arp frame: {len(frame)} bytes, need 42")
    eth = Ether(frame)
    if ARP not in eth:
        raise Malformed(f"ethertype {eth.type:#06x}, not arp")
    a = eth[ARP]
    return ArpMessage(int(a.op), a.hwsrc, a.psrc, a.hwdst, a.pdst, eth.dst)


def parse_arp(frame: bytes) -> Decoded:
    return safely(_parse_arp, frame)
