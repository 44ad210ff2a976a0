"""One pluto in a node: its private mount namespace, NSS database and configuration files, start,
readiness, whack, the node plumbing it needs (firewall and NAT rules on the gateway, the resolver
file on the client) and stop, which takes all of it back.

Debian's libreswan package conflicts with strongSwan's (docs/libreswan.md), so it is unpacked into a
private prefix (scripts/install-libreswan, PREFIX). pluto has its helpers' directory compiled in
(/usr/libexec/ipsec: it refuses to start without addconn there, and _updown runs _updown.xfrm from
it) and keeps its resolver backup under /run/pluto, so each pluto runs in a mount namespace of its
own (`unshare -m`, private propagation) in which

  * the prefix's usr/libexec is overlaid on /usr/libexec (a read-only overlay of the two, nothing
    of the machine's /usr/libexec is hidden or written);
  * /run is a private tmpfs with /run/pluto (its dump directory and _updown's resolv.conf backup);
  * everything else is given on the command line: --config (ipsec.conf), --secretsfile,
    --nssdir (an empty NSS database made with certutil), --ipsecdir, --rundir (the control socket
    pluto.ctl that whack and addconn talk to, in the run's directory) and --logfile.

The data plane is the kernel's XFRM (pluto installs the SAs and policies with netlink): pluto
needs a kernel with ESP (testbed/vm_kernel.py). On the gateway, tunnel traffic is recognised by
netfilter's policy match (-m policy --pol ipsec) instead of a TUN device.

DNS on the client: Libreswan's _updown.xfrm writes the servers it receives into /etc/resolv.conf in
place (`echo ... > /etc/resolv.conf`, its backup in /run/pluto), so, as the strongswan profile does,
a copy of the node's file is bind-mounted over /etc/resolv.conf in the node before pluto starts
(pluto's namespace inherits the mount): the machine's file is never written.
"""
from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from testbed.vendors.gateway_plumbing import GatewayPlumbing
from testbed.vendors.node_daemon import BoundResolver, OnePerNode, resolver_copy
from testbed.vendors.libreswan.config import EXECDIR, render
from testbed.vendors.libreswan.status import snapshot

PREFIX = Path(os.environ.get("TESTBED_LIBRESWAN_PREFIX", "/opt/testbed/libreswan"))
PLUTO = f"{EXECDIR}/pluto"  # the paths inside pluto's mount namespace (the overlay)
WHACK = f"{EXECDIR}/whack"
ADDCONN = f"{EXECDIR}/addconn"

_SERIAL = itertools.count(1)
_RUNNING = OnePerNode("pluto")


class LibreswanError(RuntimeError):
    pass


def installed() -> str | None:
    """None when pluto is unpacked under PREFIX and runs; else what is missing and what to do."""
    pluto = PREFIX / EXECDIR.lstrip("/") / "pluto"
    if not pluto.exists():
        return (f"Libreswan is not installed ({pluto} is missing): run scripts/install-libreswan as root "
                "(scripts/setup does), which unpacks Debian's libreswan package there")
    res = subprocess.run([str(pluto), "--version"], capture_output=True, text=True, timeout=10)
    if res.returncode:
        return f"{pluto} --version failed ({(res.stderr or res.stdout).strip()}): run scripts/install-libreswan again"
    return None


def namespace_script(pluto_argv: list[str]) -> str:
    """The shell script run in pluto's fresh mount namespace before it execs pluto."""
    libexec = shlex.quote(str(PREFIX / "usr/libexec"))
    return (f"mount -t overlay overlay -o ro,lowerdir={libexec}:/usr/libexec /usr/libexec"
            " && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/pluto"
            f" && exec {' '.join(shlex.quote(a) for a in pluto_argv)}")


class PlutoRole:
    def __init__(self, world, role):
        self.world, self.role = world, role
        base = f"{role.node}.{role.name}"
        self.dir = Path(world.log_dir) / f"{base}.libreswan"
        self.conf = self.dir / "ipsec.conf"
        self.secrets = self.dir / "ipsec.secrets"
        self.nssdir = self.dir / "nss"
        self.ipsecdir = self.dir / "ipsec.d"
        self.log = Path(world.log_dir) / f"{base}.pluto.log"
        self.rundir = world.run.path(f"{role.node}-{role.name}-{next(_SERIAL)}.pluto")
        self.ctl = self.rundir / "pluto.ctl"
        self.resolv = resolver_copy(role, self.dir)  # _updown.xfrm rewrites it in place
        self.resolver = self.resolv and BoundResolver(world, role.node, self.resolv, self.dir / "whack.out",
                                                      LibreswanError)
        self.process = None
        self.info: dict = {}
        self.plumbing = GatewayPlumbing(world, role.node)
        self.stopped = False
        self.initiate: dict | None = None
        self.version = ""

    # -- starting
    def start(self) -> "PlutoRole":
        rendered = render(self.role, self.world.plan)
        self.info = rendered.info
        self.dir.mkdir(parents=True, exist_ok=True)
        for d in (self.nssdir, self.ipsecdir, self.rundir):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(rendered.ipsec_conf)
        self.secrets.write_text(rendered.secrets)
        self.secrets.chmod(0o600)
        if not (self.nssdir / "cert9.db").exists():
            subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{self.nssdir}"], check=True,
                           capture_output=True, timeout=30)
        self.ctl.unlink(missing_ok=True)
        self.version = subprocess.run([str(PREFIX / PLUTO.lstrip("/")), "--version"], capture_output=True,
                                      text=True, timeout=10).stdout.strip()
        _RUNNING.claim(self, "libreswan", LibreswanError)
        try:
            if self.role.kind == "vpn-gateway":
                self.plumbing.apply(self.info)  # the kernel's XFRM: no TUN device
            if self.resolver:
                self.resolver.bind()
            argv = [PLUTO, "--nofork", "--stderrlog", "--config", str(self.conf),
                    "--secretsfile", str(self.secrets), "--nssdir", str(self.nssdir), "--ipsecdir",
                    str(self.ipsecdir), "--rundir", str(self.rundir), "--no-dnssec", "--use-xfrm"]
            self.process = self.world.start(
                self.role.node, f"{self.role.name}.pluto",  # pluto logs to stderr: <node>.<role>.pluto.log
                ["unshare", "-m", "--propagation", "private", "sh", "-c", namespace_script(argv)],
                ready=r"listening for IKE messages", timeout=15)
            self._wait_ctl()
            self._run(ADDCONN, "--ctlsocket", str(self.ctl), "--config", str(self.conf), "--autoall", check=True)
            if self.role.kind == "vpn-client" and self.info["initiate"]:
                self.connect()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ctl(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ctl.exists():
            if self.process is not None and not self.process.running():
                raise LibreswanError(f"pluto of role {self.role.name} exited; its log {self.log}:\n"
                                     + "\n".join(self.process.tail()))
            if time.monotonic() > deadline:
                raise LibreswanError(f"pluto of role {self.role.name} made no control socket {self.ctl} within "
                                     f"{timeout} s; its log is {self.log}")
            time.sleep(0.02)

    def _run(self, *argv: str, timeout: float = 20.0, check: bool = False) -> tuple[int, str]:
        """A Libreswan tool in the node (the prefix's binary; whack and addconn need no namespace)."""
        tool = str(PREFIX / argv[0].lstrip("/"))
        res = self.world.run_in(self.role.node, [tool, *argv[1:]], timeout=timeout)
        out = res.stdout + res.stderr
        with (self.dir / "whack.out").open("a") as f:
            f.write(f"$ {Path(argv[0]).name} {' '.join(argv[1:])}\n{out}\n")
        if check and res.returncode:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-25:]) if self.log.exists() else ""
            raise LibreswanError(f"role {self.role.name}: {Path(argv[0]).name} {' '.join(argv[1:])} failed "
                                 f"(status {res.returncode}):\n{out}\nlast lines of {self.log}:\n{tail}")
        return res.returncode, out

    def whack(self, *args: str, timeout: float = 20.0) -> str:
        return self._run(WHACK, "--ctlsocket", str(self.ctl), *args, timeout=timeout)[1]

    def connect(self, timeout: int = 15) -> bool:
        """Initiate the tunnel (client). A refusal is not an exception: status()["initiate"] says
        what happened (whack's lines and the notify names in them)."""
        t0 = time.monotonic()
        try:
            rc, out = self._run(WHACK, "--ctlsocket", str(self.ctl), "--name", "vpn", "--initiate",
                                timeout=timeout)
        except subprocess.TimeoutExpired:
            rc, out = -1, f"whack --initiate did not return within {timeout} s"
        ok = rc == 0 and "established Child SA" in out
        errors = sorted(set(re.findall(r"\b((?:v2N_)?[A-Z_]{2,}(?:FAILED|CHOSEN|UNACCEPTABLE|REQUIRED|PAYLOAD))\b",
                                       out)))
        self.initiate = {"ok": ok, "seconds": round(time.monotonic() - t0, 3), "errors": errors,
                         "output": out.splitlines()[-12:]}
        return ok

    # -- stopping
    def stop(self) -> int | None:
        if self.stopped:
            return None
        self.stopped = True
        if self.process is not None and self.process.running() and self.ctl.exists():
            try:  # pluto takes its SAs and policies out of the kernel when it shuts down
                self._run(WHACK, "--ctlsocket", str(self.ctl), "--shutdown", timeout=10)
            except Exception:  # noqa: BLE001 - stop() below ends it anyway
                pass
        rc = self.process.stop() if self.process is not None else None
        if self.resolver:
            self.resolver.unbind()
        self.plumbing.undo()
        _RUNNING.release(self)
        self.ctl.unlink(missing_ok=True)
        return rc

    def reset(self, timeout: float = 3.0) -> None:
        """Back to a clean state between conformance test parts: every IKE SA deleted (whack
        --deletestate of each state, children first: pluto sends the Delete and does not wait)."""
        deadline = time.monotonic() + timeout
        while True:
            states = sorted({int(n) for n in re.findall(r"^\d{3} #(\d+):", self.whack("--showstates"), re.M)},
                            reverse=True)
            if not states:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pluto on {self.role.node} still holds states {states} {timeout} s after a reset")
            for n in states:
                self.whack("--deletestate", str(n))
            time.sleep(0.05)

    # -- status
    def status(self) -> dict:
        return snapshot(self)
