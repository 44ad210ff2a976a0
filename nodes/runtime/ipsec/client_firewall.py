"""Host hardening of a remote-access client (draft-gupta-ipsec-remote-access-00 section 4): IP forwarding off, and an iptables INPUT
chain that admits only loopback, established/related traffic, DHCP replies, the tunnel's own IKE and
ESP from the gateway (`allow_gateway`, once its address is known) and what arrives through the
tunnel (on the TUN: ICMP echo, and, with `admit_from_tunnel`, new TCP/UDP connections, which only
the gateway's redirection rules send, draft-gupta Appendix C); everything else is dropped.

    fw = InputFirewall("VPNCLIENT-IN", "vpn0", admit_from_tunnel=True)
    fw.harden(); fw.allow_gateway("203.0.113.1"); ...; fw.remove()
"""
from __future__ import annotations

from nodes.runtime.host.commands import run
from nodes.runtime.host.host_changes import HostChanges

IPT = ["iptables", "-w"]


class InputFirewall:
    def __init__(self, chain: str, tun: str, admit_from_tunnel: bool = True):
        self.chain, self.tun, self.admit_from_tunnel = chain, tun, admit_from_tunnel
        self.changes = HostChanges()

    @property
    def active(self) -> bool:
        return bool(self.changes)

    def harden(self) -> None:
        chain = self.chain
        self.changes.sysctl("net.ipv4.ip_forward", 0)
        for _ in range(8):  # jumps a killed earlier client may have left
            if run(IPT + ["-D", "INPUT", "-j", chain], check=False).returncode:
                break
        run(IPT + ["-N", chain], check=False)
        run(IPT + ["-F", chain])
        rules = [["-i", "lo", "-j", "ACCEPT"],
                 ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                 ["-p", "udp", "--sport", "67", "--dport", "68", "-j", "ACCEPT"],
                 ["-i", self.tun, "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT"],
                 ["-j", "DROP"]]
        if self.admit_from_tunnel:
            # new TCP/UDP connections through the tunnel: from the corporate side only (the gateway's
            # redirection rules); never from the Internet, whose packets do not arrive on the TUN
            rules[-1:-1] = [["-i", self.tun, "-p", p, "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"]
                            for p in ("tcp", "udp")]
        for r in rules:
            run(IPT + ["-A", chain, *r])
        run(IPT + ["-I", "INPUT", "1", "-j", chain])
        for undo in (IPT + ["-X", chain], IPT + ["-F", chain], IPT + ["-D", "INPUT", "-j", chain]):
            self.changes.on_exit(undo)

    def allow_gateway(self, gateway: str) -> None:
        """The tunnel's own IKE and ESP from the gateway."""
        for r in (["-s", gateway, "-p", "esp", "-j", "ACCEPT"],
                  ["-s", gateway, "-p", "udp", "-m", "multiport", "--dports", "500,4500", "-j", "ACCEPT"]):
            run(IPT + ["-I", self.chain, "3", *r])

    def remove(self) -> None:
        self.changes.undo_all()
