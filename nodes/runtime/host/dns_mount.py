"""A resolver configuration for the node only: a private resolv.conf bind-mounted over
/etc/resolv.conf inside the node's own mount namespace (the machine's file is never written), and
taken away again. Refused (with the reason) where a mount would leak out of the node.

The bind mount and its removal are mount(2) and umount2(2) called directly (what `mount --bind`
and `umount` do, without a process each: this stands between the IKE_AUTH response and the first
packet through the tunnel).

    dns = ResolvConfMount()
    ok, reason = dns.up(["10.1.2.53"]); ...; dns.down()
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "vpn-client-dns-"
RESOLV_CONF = "/etc/resolv.conf"
MS_BIND = 0x1000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def bind_mount(source: str, target: str) -> str:
    """mount --bind source target; "" when done, else the reason."""
    if _libc.mount(source.encode(), target.encode(), None, MS_BIND, None) == 0:
        return ""
    err = ctypes.get_errno()
    return f"mount --bind {source} {target}: {os.strerror(err)}"


def unmount(target: str) -> bool:
    """umount target; whether it was unmounted."""
    return _libc.umount2(target.encode(), 0) == 0


def private_mount_ns() -> tuple[bool, str]:
    """Whether bind-mounting over /etc/resolv.conf stays inside this node (and why not)."""
    try:
        if os.readlink("/proc/self/ns/mnt") == os.readlink("/proc/1/ns/mnt"):
            return False, "this process shares the machine's mount namespace"
    except OSError:
        pass
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            opt = fields[6:fields.index("-")]
            if any(o.startswith("shared:") for o in opt):
                return False, "/ is a shared mount here: a mount would propagate out of the node"
            return True, ""
    return False, "no root mount found"


def remove_stale_mounts() -> int:
    """Unmount resolv.conf copies a killed earlier client left in this node; how many."""
    if not private_mount_ns()[0]:
        return 0
    n = 0
    for _ in range(8):
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        stale = [f[3] for f in (m.split() for m in mounts)
                 if len(f) > 4 and f[4] == "/etc/resolv.conf" and PREFIX in f[3]]
        if not stale or not unmount(RESOLV_CONF):
            break
        d = Path(stale[-1]).parent
        if d.name.startswith(PREFIX) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
        n += 1
    return n


class ResolvConfMount:
    def __init__(self) -> None:
        self.directory: str | None = None

    @property
    def active(self) -> bool:
        return self.directory is not None

    def up(self, servers: list[str]) -> tuple[bool, str]:
        ok, why = private_mount_ns()
        if not ok:
            return False, why
        d = tempfile.mkdtemp(prefix=PREFIX)
        path = Path(d) / "resolv.conf"
        path.write_text("# written by the testbed VPN client while its tunnel is up\n"
                        + "".join(f"nameserver {s}\n" for s in servers) + "options timeout:1 attempts:2\n")
        why = bind_mount(str(path), RESOLV_CONF)
        if why:
            shutil.rmtree(d, ignore_errors=True)
            return False, why
        self.directory = d
        return True, ""

    def down(self) -> bool:
        """Take the mount away; whether there was one."""
        if self.directory is None:
            return False
        unmount(RESOLV_CONF)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        return True
