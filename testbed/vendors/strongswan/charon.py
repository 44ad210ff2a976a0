"""One charon in a node: its private mount namespace, configuration files, start, readiness,
swanctl, the node plumbing it needs (firewall and NAT rules on the gateway, the resolver file on
the client) and stop, which takes all of it back.

Its data plane (config.DataPlane) is one of two. The kernel here has no ESP (testbed principle 4,
docs/principles.md), so the strongswan profile runs charon's userspace data plane, kernel-libipsec:
a TUN device `ipsec0` in the node, ESP always UDP-encapsulated on port 4500 (it fakes a NAT
detection: strongSwan's kernel-libipsec documentation). The strongswan-kernel profile runs charon in
its normal mode where the kernel has ESP: kernel-netlink installs the SAs and policies in the node's
XFRM, its routes in table 220 and the client's virtual IP; plain ESP unless a NAT is detected, no
tunnel device (the gateway's firewall rules use the policy match instead), and what a charon killed
without its own cleanup leaves in the node's kernel is flushed at stop. One charon per node, each with

  * its own mount namespace with a private tmpfs on /run (charon's pid file path is fixed), made
    with `unshare -m` right before exec, so two nodes' charons never meet; the vici socket and
    the configuration live outside /run (the run's directory and the case's log directory);
  * its own strongswan.conf (STRONGSWAN_CONF, generated into the log directory) that loads only
    the plugins it needs, logs to `<node>.<role>.charon.log` (ike, cfg, knl, net at level 2) and
    writes key material to `<node>.<role>.keys.log` (keylog.py);
  * a swanctl.conf rendered from the scenario's role config (config.py), loaded over vici with
    `swanctl --load-all`.

DNS on the client: the resolve plugin writes the servers it receives into `<dir>/resolv.conf`,
which starts as a copy of the node's /etc/resolv.conf and is bind-mounted over /etc/resolv.conf in
the node's own mount namespace before charon starts (so R's applications use the internal
resolver while the tunnel is up); stop() unmounts it. The plugin rewrites its file by unlink() and
a new file (resolve_handler.c), which would leave the bind mount on the old inode, so charon's
private mount namespace binds the file onto itself: the unlink fails (EBUSY) and the rewrite
happens in place. The machine's /etc/resolv.conf is never written.
"""
from __future__ import annotations

import itertools
import json
import re
import shlex
import time
from pathlib import Path

from testbed.vendors.gateway_plumbing import GatewayPlumbing
from testbed.vendors.node_daemon import BoundResolver, OnePerNode, resolver_copy
from testbed.vendors.strongswan.config import LIBIPSEC, DataPlane, render, strongswan_conf
from testbed.vendors.strongswan.status import snapshot
from testbed.vendors.strongswan.vici import Vici, ViciError

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "swanctl"

_SERIAL = itertools.count(1)  # vici socket names stay unique within a run (one world after another)
_RUNNING = OnePerNode("charon")


class StrongSwanError(RuntimeError):
    pass


class CharonRole:
    def __init__(self, world, role, plane: DataPlane = LIBIPSEC):
        self.world, self.role, self.plane = world, role, plane
        self.TUN = plane.tun  # kernel-libipsec's TUN device (the first one in the node), or None
        base = f"{role.node}.{role.name}"
        self.dir = Path(world.log_dir) / f"{base}.strongswan"
        self.swanctl_conf = self.dir / "swanctl.conf"
        self.strongswan_conf = self.dir / "strongswan.conf"
        self.charon_log = Path(world.log_dir) / f"{base}.charon.log"
        self.keylog = Path(world.log_dir) / f"{base}.keys.log"
        # the resolve plugin writes the DNS servers it receives to this file, which is bind-mounted
        # over /etc/resolv.conf in the node's own mount namespace while charon runs (node_daemon);
        # left out where a resolvconf program would take over instead
        self.resolv = resolver_copy(role, self.dir)
        self.resolver = self.resolv and BoundResolver(world, role.node, self.resolv, self.dir / "swanctl.out",
                                                      StrongSwanError)
        self.socket = world.run.path(f"{role.node}-{role.name}-{next(_SERIAL)}.vici")
        self.vici = Vici(self.socket)
        self.process = None
        self.info: dict = {}
        self.plumbing = GatewayPlumbing(world, role.node)
        self.stopped = False
        self.initiate: dict | None = None
        self.version: dict = {}
        self._outer: dict = {}  # address (None: the default route) -> the node's interface (tunnel_interface)

    # -- starting
    def start(self) -> "CharonRole":
        if self.role.kind not in ("vpn-gateway", "vpn-client"):
            raise StrongSwanError(f"the {self.plane.profile} profile cannot fill a {self.role.kind}")
        rendered = render(self.role, self.world.plan)
        self.info = rendered.info
        self.dir.mkdir(parents=True, exist_ok=True)
        self.swanctl_conf.write_text(rendered.swanctl)
        self.strongswan_conf.write_text(strongswan_conf(self.socket, self.charon_log, self.keylog, self.resolv,
                                                        self.info, self.plane))
        self.socket.unlink(missing_ok=True)
        _RUNNING.claim(self, self.plane.profile, StrongSwanError)
        try:
            if self.role.kind == "vpn-gateway":
                self.plumbing.apply(self.info, self.plane.tun)
            script = "mount -t tmpfs -o mode=755 tmpfs /run"
            if self.resolver:
                self.resolver.bind()
                # charon's resolve plugin rewrites its file by unlink() and a new file, which would
                # leave the bind mount on the old inode; in charon's own mount namespace the file
                # is bound onto itself, so the unlink fails (EBUSY, a mount point) and the fopen(.., "w")
                # that follows truncates and rewrites the bound inode in place
                f = shlex.quote(str(self.resolv))
                script += f" && mount --bind {f} {f}"
            script += f" && exec {CHARON}"
            self.process = self.world.start(
                self.role.node, f"{self.role.name}.charon-out",  # its stderr; the full log is charon_log
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                ready=r"spawning \d+ worker threads", env={"STRONGSWAN_CONF": str(self.strongswan_conf)},
                timeout=10)
            self._wait_vici()
            # a big configuration (a load run's thousands of users) takes swanctl longer to load
            self._swanctl("--load-all", "--file", str(self.swanctl_conf),
                          timeout=15.0 + self.swanctl_conf.stat().st_size / 50_000)
            if self.role.kind == "vpn-client" and self.info["initiate"]:
                self.connect()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_vici(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version = self.vici.request("version")
                return
            except (OSError, ViciError):
                if time.monotonic() > deadline:
                    raise StrongSwanError(f"charon of role {self.role.name} did not answer on {self.socket} "
                                          f"within {timeout} s; its log is {self.charon_log}") from None
                if self.process is not None and not self.process.running():
                    raise StrongSwanError(f"charon of role {self.role.name} exited; its log: {self.charon_log}:\n"
                                          + "\n".join(self.process.tail())) from None
                time.sleep(0.02)

    def connect(self, timeout: int = 15) -> bool:
        """Initiate the tunnel (client). A refusal (wrong key, unknown identity, no proposal) is not an
        exception: the role keeps running and status()["initiate"] says what happened, so negative
        cases can observe it; the positive cases see no established SA with the reason next to it."""
        t0 = time.monotonic()
        rc, out = 0, ""
        for child in self.info.get("children", ["vpn"]):  # the first brings the IKE SA up, the others join it
            rc_child, out_child = self._swanctl_run("--initiate", "--child", child, "--timeout", str(timeout),
                                                    timeout=timeout + 5)
            rc, out = rc or rc_child, out + out_child
        ok = rc == 0
        errors = sorted(set(re.findall(r"\b([A-Z_]{6,}(?:FAILED|CHOSEN|UNACCEPTABLE|REQUIRED))\b", out)))
        self.initiate = {"ok": ok, "seconds": round(time.monotonic() - t0, 3), "errors": errors,
                         "output": out.splitlines()[-12:]}
        return ok

    def _swanctl_run(self, *args: str, timeout: float = 15.0) -> tuple[int, str]:
        argv = ["env", f"STRONGSWAN_CONF={self.strongswan_conf}", SWANCTL, *args, "--uri", f"unix://{self.socket}"]
        res = self.world.run_in(self.role.node, argv, timeout=timeout)
        out = res.stdout + res.stderr
        with (self.dir / "swanctl.out").open("a") as f:
            f.write(f"$ swanctl {' '.join(args)}\n{out}\n")
        return res.returncode, out

    def _swanctl(self, *args: str, timeout: float = 15.0) -> str:
        rc, out = self._swanctl_run(*args, timeout=timeout)
        if rc:
            tail = ""
            if self.charon_log.exists():
                tail = "\n".join(self.charon_log.read_text(errors="replace").splitlines()[-25:])
            raise StrongSwanError(f"role {self.role.name}: swanctl {' '.join(args)} failed (status {rc}):\n"
                                  f"{out}\nlast lines of {self.charon_log}:\n{tail}")
        return out

    # -- stopping
    def stop(self) -> int | None:
        if self.stopped:
            return None
        self.stopped = True
        rc = self.process.stop() if self.process is not None else None
        if self.resolver:
            self.resolver.unbind()
        self.plumbing.undo()
        if self.plane.plugin is None:  # kernel-netlink is the IPsec backend: the node's kernel holds the SAs
            self._flush_kernel()
        _RUNNING.release(self)
        self.socket.unlink(missing_ok=True)
        return rc

    def _flush_kernel(self) -> None:
        """The kernel plane: charon takes its SAs, policies, routes and virtual IPs back when it is
        stopped, but not when it is killed (a fault case's SIGKILL); flush what it leaves in the
        node's kernel so that no stale policy steers the next charon's traffic. charon is the only
        user of the node's XFRM and of routing table 220 (one charon per node)."""
        node = self.role.node
        for argv in (["ip", "xfrm", "policy", "flush"], ["ip", "xfrm", "state", "flush"],
                     ["ip", "route", "flush", "table", "220"]):
            self.world.run_in(node, argv)
        vips = set(re.findall(r"installing new virtual IP (\S+)", self.charon_log.read_text(errors="replace"))
                   if self.charon_log.exists() else [])
        if not vips:
            return
        shown = self.world.run_in(node, ["ip", "-j", "-4", "addr", "show"])
        for link in json.loads(shown.stdout or "[]"):
            for a in link.get("addr_info", []):
                if a.get("local") in vips and a.get("prefixlen") == 32:
                    self.world.run_in(node, ["ip", "addr", "del", f"{a['local']}/32", "dev", link["ifname"]])

    def tunnel_interface(self, local_host: str | None) -> str | None:
        """Where the tunnel's inner packets enter and leave the node: the TUN device (kernel-libipsec),
        or, as the kernel's XFRM has no device of its own (it decapsulates on the interface the ESP
        came in on and encapsulates what leaves through it), the interface that holds the IKE SA's
        local address; with no IKE SA, that of the node's default route. Looked up once per address."""
        if self.TUN:
            return self.TUN
        if local_host not in self._outer:
            node = self.role.node
            if local_host is None:
                routes = json.loads(self.world.run_in(node, ["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
                self._outer[None] = routes[0].get("dev") if routes else None
            else:
                for link in json.loads(self.world.run_in(node, ["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
                    for a in link.get("addr_info", []):
                        self._outer[a.get("local")] = link["ifname"]
        return self._outer.get(local_host)

    def reset(self, timeout: float = 3.0) -> None:
        """Back to a clean state between conformance test parts: every IKE SA (established or
        half-open) terminated at once over vici (force: no waiting for the peer's answer)."""
        deadline = time.monotonic() + timeout
        while True:
            ids = [sa["uniqueid"] for ev in self.vici.stream("list-sas", "list-sa") for sa in ev.values()]
            if not ids:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"charon on {self.role.node} still holds IKE SAs {ids} {timeout} s after a reset")
            for uid in ids:
                self.vici.request("terminate", {"ike-id": uid, "force": "yes", "timeout": "-1"})
            time.sleep(0.02)

    # -- status
    def status(self) -> dict:
        return snapshot(self)
