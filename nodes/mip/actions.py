"""What the Mobile IP cores ask their runtime to do. Shared by HA, FA and MN.

Every core input takes `now` (Unix time, seconds) and returns None; the core queues these frozen
dataclasses, and the runtime takes them with `core.drain_actions()` (nodes/core.py), executes them
in order and, after each call, arms one timer for `core.next_deadline()` that calls
`core.handle_timer(now)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from nodes.wire.mip import MIP_PORT


@dataclass(frozen=True)
class SendUdp:
    """Send a UDP datagram. With `lladdr`, deliver it directly on `iface` to that link-layer address
    (a foreign agent answering a visitor that has no route yet)."""

    dst: IPv4Address
    dport: int
    payload: bytes
    src: IPv4Address | None = None
    sport: int = MIP_PORT
    ttl: int = 64
    iface: str | None = None
    lladdr: str | None = None


@dataclass(frozen=True)
class SendIcmp:
    """Send an ICMP message (whole ICMP bytes, checksum included); TTL 1 for agent discovery."""

    dst: IPv4Address
    payload: bytes
    src: IPv4Address | None = None
    ttl: int = 1
    iface: str | None = None


@dataclass(frozen=True)
class SendIp:
    """Send a whole IPv4 packet as it is (an IP-in-IP encapsulated packet)."""

    packet: bytes


@dataclass(frozen=True)
class DeliverIp:
    """Hand a decapsulated IPv4 packet to the local stack / forwarding; with `lladdr`, straight to
    that neighbour on `iface` (FA delivering to a visitor)."""

    packet: bytes
    iface: str | None = None
    lladdr: str | None = None


@dataclass(frozen=True)
class AddTunnel:
    """Tunnel packets for `home` between `local` and `remote`.

    kind 'ipip': IP protocol 4; kind 'udp': RFC 3519 UDP encapsulation to remote:remote_port.
    On the HA, remote is the care-of address (or the NAT's observed address); on a co-located MN,
    remote is the HA. Re-adding for the same `home` replaces the tunnel.
    """

    home: IPv4Address
    local: IPv4Address
    remote: IPv4Address
    kind: str = "ipip"
    remote_port: int | None = None
    keepalive: int | None = None


@dataclass(frozen=True)
class RemoveTunnel:
    home: IPv4Address


@dataclass(frozen=True)
class ProxyArp:
    """Start (on=True) or stop answering ARP for `addr` on the home link."""

    addr: IPv4Address
    on: bool
    iface: str | None = None


@dataclass(frozen=True)
class GratuitousArp:
    """Broadcast a gratuitous ARP for `addr` (with our own link-layer address when `proxy`)."""

    addr: IPv4Address
    iface: str | None = None
    proxy: bool = False


@dataclass(frozen=True)
class AddHostRoute:
    """Route `addr`/32 out of `iface` with a permanent neighbour entry for `lladdr`; with
    `reverse_tunnel`, packets from `addr` arriving on `iface` go to the core (RFC 3024)."""

    addr: IPv4Address
    iface: str | None
    lladdr: str | None
    reverse_tunnel: bool = False


@dataclass(frozen=True)
class RemoveHostRoute:
    addr: IPv4Address
    iface: str | None = None


@dataclass(frozen=True)
class ArpProbe:
    """Ask on `iface` who has `target` (a router the mobile node knows), telling `sender` (our
    address on that network): an answer names the network the node is on."""

    sender: IPv4Address
    target: IPv4Address
    iface: str | None = None


@dataclass(frozen=True)
class ConfigureLink:
    """Configure the mobile node's interface for where it is (the home address stays on `lo`):

    - 'home': the home subnet `network` on `iface` and the default route via `router` (the home
      router), both with the home address as source;
    - 'fa': a link route to the foreign agent `router` and the default route through it, source
      the home address;
    - 'colocated': `address` (the co-located care-of address with its prefix) on `iface`, the
      default route via that network's `router`, and the home address's traffic into the tunnel.
    """

    kind: str
    iface: str | None
    home_address: IPv4Address
    router: IPv4Address
    network: IPv4Network | None = None
    address: IPv4Interface | None = None


@dataclass(frozen=True)
class StartDhcp:
    """Run a DHCP client on `iface`; report the lease with `dhcp_bound(attempt, ...)` or the failure
    with `dhcp_failed(attempt, ...)` (a result for an older attempt is ignored)."""

    attempt: int
    iface: str | None = None


@dataclass(frozen=True)
class StopDhcp:
    """Stop the DHCP client of `iface` if one runs (the link changed)."""

    iface: str | None = None


@dataclass(frozen=True)
class Log:
    """A structured log line (event name plus fields), e.g. every registration with its timing."""

    event: str
    fields: dict = field(default_factory=dict, hash=False)


Action = (SendUdp | SendIcmp | SendIp | DeliverIp | AddTunnel | RemoveTunnel | ProxyArp | GratuitousArp
          | AddHostRoute | RemoveHostRoute | ArpProbe | ConfigureLink | StartDhcp | StopDhcp | Log)
