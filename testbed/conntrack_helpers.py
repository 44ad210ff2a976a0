"""Netfilter's conntrack helpers (the kernel's ALGs for FTP, TFTP, SIP and IRC DCC) attached to the
flows that enter a node on one interface (`-j CT --helper` in the raw table), as the NAT router of
fn3 does (testbed/world.py) and the NAPT matrix's columns with helpers do on the gateway.

The CT target loads the helper's tracking module (nf_conntrack_<helper>) but not its NAT part
(nf_nat_<helper>), which rewrites the addresses in the payload. A stock kernel has that part as a
module that nothing else loads: without it an FTP PORT leaves with the inner address (seen in the
Vagrant VM on Debian's 6.1 kernel). So the rules start by loading it; where it is built in, or
absent, that does nothing.
"""
from __future__ import annotations

# helper -> (protocol, port of the flows it follows)
HELPER_PORTS = {"ftp": ("tcp", 21), "sip": ("udp", 5060), "tftp": ("udp", 69), "irc": ("tcp", 6667)}


def load_nat_modules(helpers) -> str:
    """A shell command that loads the helpers' NAT modules where they are modules (never fails)."""
    return "; ".join(f"modprobe -q nf_nat_{h} 2>/dev/null || true" for h in helpers) or "true"


def attach_rules(in_if: str, helpers) -> list[list[str]]:
    """The iptables rules (arguments after `iptables -t raw`, without -A/-D) that attach each helper
    to the flows entering on `in_if`."""
    rules = []
    for h in helpers:
        if h not in HELPER_PORTS:
            raise ValueError(f"no conntrack helper {h!r}: choose from {sorted(HELPER_PORTS)}")
        proto, port = HELPER_PORTS[h]
        rules.append(["PREROUTING", "-i", in_if, "-p", proto, "--dport", str(port), "-j", "CT", "--helper", h])
    return rules
