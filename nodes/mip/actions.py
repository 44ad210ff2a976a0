"""What the Mobile IP cores ask their runtime to do. Shared by HA, FA and MN.

Every core input takes `now` (Unix time, seconds) and returns None; the core queues these frozen
dataclasses, and the runtime takes them with `core.drain_actions()` (nodes/core.py), executes them
in order and, after each call, arms one timer for `core.next_deadline()` that calls
`core.handle_timer(now)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

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
    """Route `addr`/32 out of `iface` with a permanent neighbour entry for `lladdr`."""

    addr: IPv4Address
    iface: str | None
    lladdr: str | None


@dataclass(frozen=True)
class RemoveHostRoute:
    addr: IPv4Address
    iface: str | None = None


@dataclass(frozen=True)
class Log:
    """A structured log line (event name plus fields), e.g. every registration with its timing."""

    event: str
    fields: dict = field(default_factory=dict, hash=False)


Action = (SendUdp | SendIcmp | SendIp | DeliverIp | AddTunnel | RemoveTunnel | ProxyArp | GratuitousArp
          | AddHostRoute | RemoveHostRoute | Log)
