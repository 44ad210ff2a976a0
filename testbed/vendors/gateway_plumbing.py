"""The gateway node's plumbing that a third-party IKE daemon does not do itself: iptables rules that
let the tunnel's traffic through the node's DMZ policy and translate it per internal presence
(draft-gupta-ipsec-remote-access-00 Appendices A and B, section 4), and proxy ARP for pool
addresses; taken back when the role stops. Shared by the vendor profiles (strongswan with its TUN
device, strongswan-kernel and libreswan with the kernel's XFRM)."""
from __future__ import annotations


def gateway_rules(info: dict, tun: str | None = None) -> list[list[str]]:
    """The gateway node's iptables rules (each the arguments after `iptables`: -A appends, -I inserts
    first); `info` holds inside_interface, internal_presence ("napt" or "pool"), pool, inside_address
    and internet_access. A userspace data plane's inner packets cross its TUN device `tun` (-i/-o);
    with the kernel's XFRM (tun None) they arrive and leave on the physical interfaces, and the
    policy match picks them: `--dir in --pol ipsec` what XFRM decapsulated, `--dir out --pol ipsec`
    what it will encapsulate (ip_forward looks the output policy up before the FORWARD hook, so the
    match sees it; a reply to a NAPTed address is translated back in PREROUTING, before that lookup,
    and so matches the pool address's outbound policy). Decapsulated packets for the gateway itself
    arrive on G_e too, where the DMZ policy drops what is not IKE, ESP or echo: INPUT takes them."""
    inside = info["inside_interface"]
    if tun:
        came, leaves = ["-i", tun], ["-o", tun]
        rules = []
    else:
        came, leaves = ["-m", "policy", "--dir", "in", "--pol", "ipsec"], ["-m", "policy", "--dir", "out", "--pol", "ipsec"]
        rules = [["-I", "INPUT", *came, "-j", "ACCEPT"]]
    rules.append(["-A", "FORWARD", *came, "-j", "ACCEPT"])
    if info["internal_presence"] == "napt":
        # a NAPT's inner addresses are not routed inside (Appendix C: "dropped by internal routers
        # that are unaware of the external IP address"), but the daemon routes the inner address into
        # the tunnel: refuse new connections from the intranet into it, except those a rule (DNAT)
        # or a conntrack helper (RELATED) lets in, as a NAPT does
        rules.append(["-A", "FORWARD", "-i", inside, *leaves, "-m", "conntrack", "--ctstate", "NEW",
                      "-m", "conntrack", "!", "--ctstate", "DNAT", "-j", "DROP"])
    rules.append(["-A", "FORWARD", *leaves, "-j", "ACCEPT"])
    if info["internal_presence"] == "napt":
        # Appendix A: the remote host's inner packets leave with G_i as their source
        rules.append(["-t", "nat", "-A", "POSTROUTING", "-s", info["pool"], "-o", inside,
                      "-j", "SNAT", "--to-source", info["inside_address"]])
    if info.get("internet_access"):
        # section 4: what goes elsewhere than the intranet leaves from G_e
        rules.append(["-t", "nat", "-A", "POSTROUTING", "-s", info["pool"], "!", "-o", inside, "-j", "MASQUERADE"])
    return rules


def undo_rule(rule: list[str]) -> list[str]:
    """The iptables arguments that delete `rule` (one of gateway_rules')."""
    op = next(i for i, arg in enumerate(rule) if arg in ("-A", "-I"))
    return [*rule[:op], "-D", *rule[op + 1:]]


class GatewayPlumbing:
    """Applies gateway_rules in a node (and proxy ARP for a routed pool, Appendix B: H's replies to
    pool addresses reach G through the intranet's default route here; answer ARP for them anyway,
    should a router on the backbone look them up); undo() deletes the rules in reverse order."""

    def __init__(self, world, node: str):
        self.world, self.node = world, node
        self.rules: list[list[str]] = []

    def apply(self, info: dict, tun: str | None = None) -> None:
        for rule in gateway_rules(info, tun):
            self.world.run_in(self.node, ["iptables", *rule], check=True)
            self.rules.append(rule)
        if info["internal_presence"] == "pool":
            self.world.run_in(self.node, ["sysctl", "-qw", f"net.ipv4.conf.{info['inside_interface']}.proxy_arp=1"])

    def undo(self) -> None:
        for rule in reversed(self.rules):
            self.world.run_in(self.node, ["iptables", *undo_rule(rule)])
        self.rules.clear()
