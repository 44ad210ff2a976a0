"""A minimal TUN helper: open a TUN device (no packet-info header) and run `ip` inside the node.

    fd = open_tun("vpn0")            # non-blocking fd; os.read() gives one IPv4 packet, os.write() sends one
    ip("addr", "add", "10.1.3.1/32", "dev", "vpn0")

The device lives as long as the fd is open (not persistent), so a killed daemon leaves nothing
behind. Until the runtime has one shared TUN module, the IPsec daemons use this one.
"""
from __future__ import annotations

import fcntl
import os
import struct
import subprocess

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class CommandError(RuntimeError):
    pass


def open_tun(name: str, mtu: int | None = None, up: bool = True, txqueuelen: int | None = 4000) -> int:
    """Create (or attach to) TUN device `name`; returns a non-blocking fd."""
    if len(name) > 15:
        raise ValueError(f"interface name {name!r} is longer than 15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    if mtu is not None:
        ip("link", "set", name, "mtu", str(mtu))
    if txqueuelen is not None:  # bursts from the kernel side wait here while the daemon catches up
        ip("link", "set", name, "txqueuelen", str(txqueuelen))
    if up:
        ip("link", "set", name, "up")
    return fd


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True)
    if check and res.returncode:
        raise CommandError(f"{' '.join(argv)} failed (status {res.returncode}): {res.stderr.strip()}")
    return res


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], check)


def sysctl(key: str, value: str | int) -> str | None:
    """Set a sysctl through /proc/sys; returns the old value (None if the key does not exist)."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path) as f:
            old = f.read().strip()
        with open(path, "w") as f:
            f.write(str(value))
        return old
    except OSError:
        return None
