"""Sockets inside a node's network namespace, opened from the harness's own process.

A conformance tester runs in the pytest process (so a test part drives it field by field and reads
what came back without an extra process), but it must speak from a node of the world: the client's
place on fn1, behind the NAT, the attacker's. setns(2) with CLONE_NEWNET changes the namespace of
the calling thread only; a socket keeps the namespace it was created in. So the thread enters the
node's namespace, creates the sockets and returns to its own.
"""
from __future__ import annotations

import ctypes
import os
import socket
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into a network namespace failed: {os.strerror(err)} (needs root)")


@contextmanager
def in_netns(pid: int):
    """Run the body with this thread in the network namespace of process `pid` (a node's shell)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def udp_socket(pid: int, address: str, port: int, reuse: bool = True) -> socket.socket:
    """A UDP socket bound to address:port inside the node whose shell has `pid`."""
    with in_netns(pid):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    return s


def raw_socket(pid: int, proto: int, header_included: bool = False) -> socket.socket:
    """A raw IPv4 socket for IP protocol `proto` (50 for ESP, 4 for IP-in-IP, 1 for ICMP) inside the
    node; it receives whole IP packets. With `header_included` the caller writes the IP header too."""
    with in_netns(pid):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        if header_included:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    return s
