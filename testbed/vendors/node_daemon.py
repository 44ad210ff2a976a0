"""What a third-party IKE daemon in a node needs from the testbed whatever its vendor (charon,
pluto): one daemon per node, since the node's kernel state (XFRM, routes, virtual addresses) and
its sockets are the node's, and on a client the resolver file that follows the tunnel.

The resolver: a copy of the node's /etc/resolv.conf is bind-mounted over /etc/resolv.conf in the
node's own mount namespace before the daemon starts (the daemon's private namespace inherits the
mount), the daemon writes the servers it receives into it, and `unbind` takes the mount back, so
the node's original file is back and the machine's file is never written. Where a resolvconf
program exists the daemon hands the servers to it instead, and nothing is bound.
"""
from __future__ import annotations

import os
from pathlib import Path

RESOLVCONF = ("/sbin/resolvconf", "/usr/sbin/resolvconf")


class OnePerNode:
    """The running daemons of one program, by (world, node): a second one in a node is refused."""

    def __init__(self, program: str):
        self.program = program
        self._running: dict[tuple[int, str], object] = {}

    def claim(self, daemon, profile: str, error: type[Exception]) -> None:
        """Register `daemon` (with .world, .role, .stopped, .process) for its node, or raise `error`
        naming the role that already runs there."""
        key = (id(daemon.world), daemon.role.node)
        other = self._running.get(key)
        if other is not None and other is not daemon and other.world is daemon.world and not other.stopped and (
                other.process is None or other.process.running()):
            raise error(f"role {daemon.role.name}: node {daemon.role.node} already runs a {self.program} (role "
                        f"{other.role.name}); the {profile} profile runs one {self.program} per node")
        self._running[key] = daemon

    def release(self, daemon) -> None:
        key = (id(daemon.world), daemon.role.node)
        if self._running.get(key) is daemon:
            del self._running[key]


def resolver_copy(role, directory: Path) -> Path | None:
    """Where a client's resolver file lives while its daemon runs; None for a gateway, or where a
    resolvconf program takes the servers."""
    if role.kind != "vpn-client" or any(Path(p).exists() for p in RESOLVCONF):
        return None
    return directory / "resolv.conf"


class BoundResolver:
    """`path` (a copy of node's /etc/resolv.conf) bound over /etc/resolv.conf in `node`; what the
    mount commands print goes to `journal`."""

    def __init__(self, world, node: str, path: Path, journal: Path, error: type[Exception]):
        self.world, self.node, self.path, self.journal, self.error = world, node, path, journal, error
        self.bound = False

    def bind(self) -> None:
        original = self.world.run_in(self.node, ["cat", "/etc/resolv.conf"])
        self.path.write_text(original.stdout if original.returncode == 0 else "")
        self.world.run_in(self.node, ["mount", "--bind", str(self.path), "/etc/resolv.conf"], check=True)
        self.bound = True
        seen = self.world.run_in(self.node, ["stat", "-L", "-c", "%d:%i", "/etc/resolv.conf"]).stdout.strip()
        st = os.stat(self.path)
        if seen != f"{st.st_dev}:{st.st_ino}":
            raise self.error(f"/etc/resolv.conf in node {self.node} is not the bound {self.path} after mount "
                             f"--bind ({seen} vs {st.st_dev}:{st.st_ino})")

    def unbind(self) -> None:
        """Take the bind mount back (a node already gone took its mount namespace with it)."""
        if not self.bound:
            return
        self.bound = False
        try:
            res = self.world.run_in(self.node, ["umount", "/etc/resolv.conf"])
        except Exception as exc:  # noqa: BLE001 - the world may be torn down already
            res = exc
        with self.journal.open("a") as f:
            f.write(f"$ umount /etc/resolv.conf (node {self.node})\n{res}\n")


def kernel_xfrm_errors(world, node: str) -> dict[str, int]:
    """The node's nonzero XFRM error counters (/proc/net/xfrm_stat, per network namespace: e.g.
    XfrmInNoStates, XfrmInStateProtoError, XfrmInTmplMismatch): why a kernel data plane dropped
    packets that reached it, in the role's status."""
    res = world.run_in(node, ["cat", "/proc/net/xfrm_stat"])
    counters = {}
    for line in res.stdout.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit() and int(value) and name.startswith("Xfrm"):
            counters[name] = int(value)
    return counters
