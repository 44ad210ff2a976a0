"""TUN devices for a userspace data plane: open, bring up, read and write whole IPv4 packets.

    tun = TunDevice.open("mip0", mtu=1400)      # IFF_TUN | IFF_NO_PI, non-blocking
    loop.add_reader(tun.fd, on_readable)        # then tun.read() / tun.write(packet)

The kernel routes packets into the device (a host route or a policy rule that points at it);
what the daemon writes into it the kernel receives as if it had arrived on that interface
(forwarded, or delivered locally). The Mobile IP daemons and the IPsec gateway and
client all use it.
"""
from __future__ import annotations

import fcntl
import os
import struct

from nodes.runtime.host import netlink

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


# The MTU of a Mobile IP tunnel's TUN device at its ends (HA, co-located MN): what the largest
# encapsulation in use leaves of an Ethernet link's 1500 bytes (RFC 3519 UDP tunnelling: IP 20 + UDP 8
# + tunnel header 4; IP-in-IP takes 20). A smaller value made the kernel fragment every full-size
# packet entering the tunnel, e.g. a 1464-byte ESP-in-UDP packet of a VPN nested inside (RFC 5265):
# each one crossed the tunnel as two, and losing either lost both (RFC 2003 section 5.1: the
# tunnel's MTU is the path's minus the encapsulation).
MOBILE_IP_TUNNEL_MTU = 1500 - 32


class TunDevice:
    def __init__(self, fd: int, name: str):
        self.fd, self.name = fd, name
        self.index: int | None = None

    @classmethod
    def open(cls, name: str, mtu: int = 1400, up: bool = True, rp_filter_off: bool = True,
             txqueuelen: int | None = None) -> "TunDevice":
        """Create (or attach to) TUN device `name`, set its MTU and bring it up. The device lives
        as long as the fd is open, so a killed daemon leaves nothing behind. A longer
        `txqueuelen` lets bursts from the kernel side wait while the daemon catches up."""
        if len(name) > 15:
            raise ValueError(f"TUN name {name!r} is longer than 15 characters")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        dev = cls(fd, name)
        dev.index = netlink.link_index(name)
        netlink.link_set(name, mtu=mtu, up=up, txqueuelen=txqueuelen)
        if rp_filter_off:
            # packets written into the device come from anywhere (decapsulated tunnel traffic)
            netlink.sysctl(f"net/ipv4/conf/{name}/rp_filter", 0)
        return dev

    def read(self) -> bytes | None:
        """One packet, or None when none is waiting."""
        try:
            return os.read(self.fd, MAX_PACKET)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> bool:
        """Hand `packet` to the kernel as received on this device; False when the kernel refused."""
        try:
            os.write(self.fd, packet)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
