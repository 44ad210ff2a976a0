"""Host plumbing that layers two tunnel daemons of one node on each other (the mobile VPN node).

Two nestings (draft-ietf-mip4-vpn-problem-statement section 1.2):

* MIP inside IPsec: the Mobile IP layer's own packets to the home agent (registrations, the
  co-located tunnel) are routed into the VPN client's TUN device by the client's routes toward the
  intranet. They leave the MN with the care-of address as source, which the gateway would drop (an
  ESP tunnel admits only its inner address), so `SourceIntoTunnel` translates the source of what
  enters the VPN TUN to the tunnel's inner address (netfilter MASQUERADE): the home agent sees a
  NAT between the care-of address and the request's source, and answers with RFC 3519 UDP
  tunnelling toward the tunnel's inner address, which the gateway sends back through ESP.
  Away from home nothing goes to the HA in clear (before the tunnel is up; an HA in the intranet
  is not reachable that way anyway, one in the DMZ would be, and the nesting would be lost): it is
  dropped before connection tracking, as is what would enter the tunnel from an address the node
  no longer has (the previous care-of address, in the instant of a move). NAT is decided on a
  flow's first packet, so no flow may get a decision that outlives the move: what goes to the HA
  in clear (at home) is not tracked at all.
* IPsec inside MIP: the VPN client's IKE and ESP to the gateway must leave from the home address
  and ride in the Mobile IP tunnel. `GatewayThroughTunnel` sends them into the MN's TUN device
  with the home address as source while the MN is co-located (the MN encapsulates what it reads
  there to the HA); with a foreign agent it steps aside (the MN's default route through the agent
  already has the home address as source, and the agent reverse-tunnels it).

`AdmitMobility` lets the Mobile IP layer's own packets (UDP 434 from the HA or an FA, IP-in-IP from the HA),
and what the MN's daemon decapsulates into its TUN device for the home address, through the VPN
client's host firewall (which drops everything it does not know): an INPUT chain
of its own, kept in front of the client's chain (call `ensure_first` after the client (re)starts).
"""
from __future__ import annotations

from nodes.runtime.host.commands import ip, run
from nodes.wire.tunnels import KINDS

IPT = ["iptables", "-w"]


class SourceIntoTunnel:
    """MASQUERADE what leaves through `tun` (the VPN client's TUN; its address is the inner address);
    while away (`away(True)`), nothing to `home_agent` leaves any other way. See the module's docstring."""

    def __init__(self, tun: str, home_agent: str):
        self.rules = [["-t", "nat", "POSTROUTING", "-o", tun, "-j", "MASQUERADE"],
                      ["-t", "raw", "OUTPUT", "-o", tun, "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "DROP"],
                      ["-t", "raw", "OUTPUT", "-d", home_agent, "!", "-o", tun, "-j", "CT", "--notrack"]]
        self.clear_rule = ["-t", "raw", "OUTPUT", "-d", home_agent, "!", "-o", tun, "-j", "DROP"]
        self.on = False
        self.dropping_clear = False

    def add(self) -> None:
        if not self.on:
            for rule in self.rules:
                self._rule("-A", rule)
            self.on = True

    def away(self, away: bool) -> None:
        """Away from home the MIP layer reaches its HA only through the VPN; at home directly."""
        if away != self.dropping_clear:
            self._rule("-A" if away else "-D", self.clear_rule)
            self.dropping_clear = away

    def remove(self) -> None:
        if self.on:
            self.away(False)
            for rule in self.rules:
                self._rule("-D", rule, check=False)
            self.on = False

    @staticmethod
    def _rule(op: str, rule: list[str], check: bool = True) -> None:
        table, flag, chain, *spec = rule
        run(IPT + [table, flag, op, chain, *spec], check=check)


TUNNEL_PROTOCOLS = tuple(KINDS.values())  # 4, 55, 47


class AdmitMobility:
    """An INPUT chain that accepts the Mobile IP layers' own packets: `layers` are (home agent,
    the layer's TUN device) pairs, one per MN runtime of the node (two with RFC 5265)."""

    CHAIN = "MOBILEVPN-IN"

    def __init__(self, layers: list[tuple[str, str]]):
        self.layers = list(layers)
        self.on = False

    def add(self) -> None:
        run(IPT + ["-N", self.CHAIN], check=False)
        run(IPT + ["-F", self.CHAIN])
        # registration replies come from the HA or a foreign agent (the MN checks their MN-HA
        # authenticator); RFC 3519 tunnel data from the HA also arrives on UDP 434
        rules = [["-p", "udp", "--dport", "434", "-j", "ACCEPT"]]
        for home_agent, mip_tun in self.layers:
            # the HA's tunnels: IP-in-IP, minimal encapsulation and GRE (whichever it granted, RFC 5944 3.3)
            rules += [["-s", home_agent, "-p", str(proto), "-j", "ACCEPT"] for proto in TUNNEL_PROTOCOLS]
            rules += [["-i", mip_tun, "-j", "ACCEPT"]]
        for rule in rules:
            run(IPT + ["-A", self.CHAIN, *rule])
        self.on = True
        self.ensure_first()

    def ensure_first(self) -> None:
        """Our jump at INPUT position 1 (the VPN client inserts its own there when it starts)."""
        if not self.on:
            return
        while run(IPT + ["-D", "INPUT", "-j", self.CHAIN], check=False).returncode == 0:
            pass
        run(IPT + ["-I", "INPUT", "1", "-j", self.CHAIN])

    def remove(self) -> None:
        if not self.on:
            return
        while run(IPT + ["-D", "INPUT", "-j", self.CHAIN], check=False).returncode == 0:
            pass
        run(IPT + ["-F", self.CHAIN], check=False)
        run(IPT + ["-X", self.CHAIN], check=False)
        self.on = False


class GatewayThroughTunnel:
    """IKE (UDP other than 434) and ESP toward the gateway into the MN's TUN device with the home
    address as source: a routing table of its own, chosen by policy rules on destination, protocol
    and port, so that the MN's own registrations and tunnel to the same address (a VPN gateway that
    is also the home agent, problem statement 2.3) stay on the main table."""

    TABLE, PRIORITY = 435, 433
    # UDP except Mobile IP's port 434 (IKE on 500 and 4500; also the client's route lookup for its
    # source address, which connects a UDP socket to port 9), and ESP
    # (iproute2 refuses port 65535 in a rule: the range ends one below)
    SELECTORS = (["ipproto", "udp", "dport", "1-433"], ["ipproto", "udp", "dport", "435-65534"], ["ipproto", "50"])

    def __init__(self, gateway: str):
        self.gateway = gateway
        self.via: tuple | None = None

    def set(self, dev: str, src: str) -> None:
        if self.via == (dev, src):
            return
        ip("route", "replace", f"{self.gateway}/32", "dev", dev, "src", src, "table", str(self.TABLE))
        if self.via is None:
            self._rules(False)
            self._rules(True)
        self.via = (dev, src)

    def _rules(self, add: bool) -> None:
        for sel in self.SELECTORS:
            ip("rule", "add" if add else "del", "priority", str(self.PRIORITY), "to", self.gateway, *sel,
               "lookup", str(self.TABLE), check=add)

    def clear(self) -> None:
        if self.via is None:
            return
        self._rules(False)
        ip("route", "flush", "table", str(self.TABLE), check=False)
        self.via = None


class HoldRegistrations:
    """RFC 5265 inside: the x-MIP layer must not register with the x-HA (the node deregisters
    instead), yet its core keeps trying on a foreign-looking link. While held, its requests (from
    port 434: to the x-HA directly, or from the x-HoA through an agent) are dropped at OUTPUT; the
    node's own deregistration leaves from an ephemeral port and passes."""

    def __init__(self, x_ha: str, x_hoa: str):
        self.rules = [["-d", x_ha, "-p", "udp", "--sport", "434", "--dport", "434", "-j", "DROP"],
                      ["-s", x_hoa, "-p", "udp", "--sport", "434", "--dport", "434", "-j", "DROP"]]
        self.on = False

    def hold(self, on: bool) -> None:
        if on != self.on:
            for rule in self.rules:
                run(IPT + ["-A" if on else "-D", "OUTPUT", *rule], check=on)
            self.on = on
