"""The IPsec gateway's host plumbing (draft-gupta Appendices A and B), every change undone at exit
through a HostChanges:

  forward_tunnel     FORWARD accept rules between the TUN and the inside interface (the DMZ policy
                     drops forwarding by default)
  capture_napt       NAPT (Appendix A): H's answers to G_i in the NAPT port range, and connections to
                     the redirection rules' ports (Appendix C), are marked in mangle PREROUTING
                     (ICMP: echo replies by identifier, errors by the quoted packet's source port,
                     matched with u32 when the kernel has it); a policy-routing rule sends marked
                     packets to a table whose only route is the TUN, and the `local` table moves
                     behind that rule (G_i is a local address). G's own sockets (ephemeral ports
                     32768-60999) are not touched.
  route_pool         pool (Appendix B): the pool routed into the TUN, proxy ARP on the inside interface
  forward_internet   remote hosts' traffic to the Internet through G (draft-gupta section 4): FORWARD
                     from the TUN to the outside interface, and for the pool a MASQUERADE to G_e
                     (the NAPT mode translates to G_e itself and captures the answers like G_i's)
  intranet_networks  the destinations routed through the inside interface (what "the intranet" is)
  locate             G_e and the inside interface/G_i, found from the node's addresses when not given
"""
from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from typing import Callable

from nodes.runtime.host.commands import CommandError, ip, run
from nodes.runtime.host.host_changes import HostChanges, default_interface, interfaces

FWMARK = "0x4500"
RT_TABLE = "145"
RULE_PREF = "145"
LOCAL_PREF = "146"
IPT = ["iptables", "-w"]


def locate(g_e: str | None, inside_if: str | None, tun: str, subnets: list[IPv4Network],
           fail: Callable[..., Exception]) -> tuple[str, str, str]:
    """(G_e, inside interface, G_i): G_e defaults to the address on the default route's interface; the
    inside interface to one whose address lies in the users' subnets, else any other. `fail(key,
    expected[, got])` builds the error naming the config key to set (Cfg.fail)."""
    addrs = interfaces()
    default_if = default_interface()
    if g_e is None:
        g_e = next((a for n, a, _ in addrs if n == default_if), None)
        if g_e is None:
            raise fail("external_address", "a value: the node has no default route to find G_e by")
    if inside_if is None:
        others = [(n, a) for n, a, _ in addrs if n not in ("lo", tun, default_if)]
        cands = [(n, a) for n, a in others if any(IPv4Address(a) in s for s in subnets)] or others
        if not cands:
            raise fail("inside_interface", "a value: no interface besides the default route's")
        inside_if, g_i = cands[0]
        return g_e, inside_if, g_i
    g_i = next((a for n, a, _ in addrs if n == inside_if), None)
    if g_i is None:
        raise fail("inside_interface", "an interface of this node with an IPv4 address", inside_if)
    return g_e, inside_if, g_i


def forward_tunnel(changes: HostChanges, tun: str, inside: str) -> None:
    for src, dst in ((tun, inside), (inside, tun)):
        changes.do(IPT + ["-I", "FORWARD", "1", "-i", src, "-o", dst, "-j", "ACCEPT"],
                   IPT + ["-D", "FORWARD", "-i", src, "-o", dst, "-j", "ACCEPT"])


def forward_internet(changes: HostChanges, tun: str, outside: str, pool: IPv4Network | None) -> None:
    changes.do(IPT + ["-I", "FORWARD", "1", "-i", tun, "-o", outside, "-j", "ACCEPT"],
               IPT + ["-D", "FORWARD", "-i", tun, "-o", outside, "-j", "ACCEPT"])
    if pool is not None:
        rule = ["POSTROUTING", "-s", str(pool), "-o", outside, "-j", "MASQUERADE"]
        changes.do(IPT + ["-t", "nat", "-A", *rule], IPT + ["-t", "nat", "-D", *rule])


def intranet_networks(inside: str) -> list[IPv4Network]:
    """Every destination the node routes through `inside` (connected and via routers), default aside."""
    routes = json.loads(ip("-4", "-j", "route", "show", "dev", inside).stdout or "[]")
    return [IPv4Network(r["dst"], strict=False) for r in routes if r.get("dst") not in (None, "default")]


def _mark(changes: HostChanges, inside: str, g_i: str, match: list[str]) -> None:
    rule = ["PREROUTING", "-i", inside, "-d", g_i, *match, "-j", "MARK", "--set-mark", FWMARK]
    changes.do(IPT + ["-t", "mangle", "-A", *rule], IPT + ["-t", "mangle", "-D", *rule])


def capture_napt(changes: HostChanges, tun: str, inside: str, g_i: str, ports: tuple[int, int],
                 redirect_ports: list[tuple[str, int]], outside: tuple[str, str] | None = None) -> None:
    """`outside`: (interface, G_e) when remote hosts reach the Internet through G's NAPT to G_e: the
    answers to G_e in the port range are captured the same way."""
    lo, hi = ports
    # ICMP: echo replies by identifier, errors by the source port of the packet they quote
    # (u32 matches; without the u32 module all echo replies and errors to G_i are taken)
    ident = ["-m", "u32", "--u32", f"0>>22&0x3C@4>>16={lo}:{hi}"]
    quoted = ["-m", "u32", "--u32", f"0>>22&0x3C@8>>22&0x3C@8>>16={lo}:{hi}"]
    marks = [(["-p", "tcp", "--dport", f"{lo}:{hi}"], []), (["-p", "udp", "--dport", f"{lo}:{hi}"], []),
             (["-p", "icmp", "--icmp-type", "echo-reply"], ident),
             (["-p", "icmp", "--icmp-type", "destination-unreachable"], quoted),
             (["-p", "icmp", "--icmp-type", "time-exceeded"], quoted)]
    for iface, address in [(inside, g_i)] + ([outside] if outside else []):
        for match, narrow in marks:
            for extra in ([narrow, []] if narrow else [[]]):
                try:
                    _mark(changes, iface, address, match + extra)
                    break
                except CommandError:
                    if not extra:
                        raise
    # the redirection rules' ports: connections from the intranet to G_i:port (Appendix C)
    for proto, port in sorted(set(redirect_ports)):
        _mark(changes, inside, g_i, ["-p", proto, "--dport", str(port)])
    changes.do(["ip", "route", "replace", "default", "dev", tun, "table", RT_TABLE],
               ["ip", "route", "flush", "table", RT_TABLE])
    changes.do(["ip", "rule", "add", "pref", RULE_PREF, "fwmark", FWMARK, "lookup", RT_TABLE],
               ["ip", "rule", "del", "pref", RULE_PREF])
    # G_i is a local address: the `local` table (rule 0) would take the answers first, so it moves
    # behind the mark rule while the gateway runs
    rules = ip("rule", "show").stdout
    if f"{LOCAL_PREF}:\tfrom all lookup local" not in rules:
        run(["ip", "rule", "add", "pref", LOCAL_PREF, "lookup", "local"])
    if "0:\tfrom all lookup local" in rules.splitlines()[0] if rules else False:
        run(["ip", "rule", "del", "pref", "0", "lookup", "local"])
    changes.on_exit(["ip", "rule", "del", "pref", LOCAL_PREF, "lookup", "local"])
    changes.on_exit(["ip", "rule", "add", "pref", "0", "lookup", "local"])  # runs first at exit


def route_pool(changes: HostChanges, tun: str, inside: str, network: IPv4Network) -> None:
    changes.sysctl(f"net.ipv4.conf.{inside}.proxy_arp", 1)
    route_site(changes, tun, network)


def route_site(changes: HostChanges, tun: str, network: IPv4Network) -> None:
    """A network into the TUN: the pool, or a site-to-site peer's subnet (the daemon picks the SA by
    destination)."""
    changes.do(["ip", "route", "replace", str(network), "dev", tun],
               ["ip", "route", "del", str(network), "dev", tun])
