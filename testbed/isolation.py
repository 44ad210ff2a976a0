"""Put the calling process into a network namespace of its own, so a world never touches the
machine's real interfaces and parallel runs never see each other's bridges and veths.

The namespace is unnamed: it lives exactly as long as a process is in it, so a SIGKILLed run
leaves no namespace behind (its nodes' shells and daemons die with it, see processes.py).
"""
from __future__ import annotations

import ctypes
import os
import subprocess

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)
_entered: int | None = None


class IsolationError(RuntimeError):
    pass


def netns_inode(pid: int | str = "self") -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise IsolationError(f"{what} failed: {os.strerror(err)}. The testbed needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).")


def enter_private_netns() -> int:
    """Unshare network and mount namespaces (once per process); returns the new netns inode.

    /sys is remounted so that it shows this namespace's interfaces; bridge netfilter is
    switched off here (it is per namespace) so bridged frames are not filtered by accident.
    """
    global _entered
    if _entered is not None:
        return _entered
    if os.geteuid() != 0:
        raise IsolationError("the testbed needs root to create network namespaces; run it with sudo or as root")
    _check(_libc.unshare(CLONE_NEWNET | CLONE_NEWNS), "unshare(CLONE_NEWNET|CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    _check(_libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None), "mounting sysfs")
    script = (
        "ip link set lo up; "
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; "
        "for t in arp ip ip6; do f=/proc/sys/net/bridge/bridge-nf-call-${t}tables; "
        "[ -e $f ] && echo 0 > $f; done; true"
    )
    subprocess.run(["sh", "-c", script], check=True)
    _entered = netns_inode()
    return _entered
