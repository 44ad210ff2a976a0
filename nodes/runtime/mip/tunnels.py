"""How the host captures a Mobile IP tunnel's packets into the TUN device (`capture`):

- "dst" (home agent, foreign agent): packets *to* a home address are routed into the TUN (a host
  route, through the host changes of nodes/runtime/mip/host_changes.py), the daemon reads them and
  asks the core to encapsulate them;
- "src" (co-located mobile node): packets *from* the home address are steered into the TUN by a
  policy rule (`from <home> lookup <table>`); nodes/runtime/mip/colocated.py encapsulates them.
"""
from __future__ import annotations

from ipaddress import IPv4Address

from nodes.mip.actions import AddTunnel
from nodes.runtime.host import netlink
from nodes.runtime.mip.colocated import ColocatedTunnel
from nodes.runtime.mip.host_changes import QueuedHostChanges
from nodes.runtime.host.tundev import TunDevice

TUNNEL_TABLE = 434  # routing table whose default route is the TUN device (policy-routed traffic)
RULE_PRIORITY = 434


class HostTunnels:
    """`tunnels` (home -> AddTunnel) are shared with the executor and `colocated`."""

    def __init__(self, log, tun: TunDevice | None, capture: str, table: int, tunnels: dict,
                 changes: QueuedHostChanges, colocated: ColocatedTunnel):
        self.log, self.tun, self.capture, self.table = log, tun, capture, table
        self.tunnels, self.changes, self.colocated = tunnels, changes, colocated
        if tun is not None and capture == "src":
            netlink.route_replace("default", dev=tun.name, table=self.table)

    def add(self, a: AddTunnel) -> None:
        old = self.tunnels.get(a.home)
        self.tunnels[a.home] = a
        self.colocated.up(a.home)
        if self.tun is None:
            raise ValueError("a tunnel needs a TUN device")
        if self.capture == "dst":
            self.changes.retry_refused(a.home)
            if old is None:  # the host route into the TUN does not depend on the far end: set it once
                # a new tunnel is logged with its batch (one line for a burst of new bindings)
                far = f"{a.remote}:{a.remote_port}" if a.remote_port else str(a.remote)
                self.changes.change(netlink.route_replace_request(a.home, dev=self.changes.ifindex(self.tun.name)),
                                    "tunnel-route", a.home, self.tun.name, note=f"{a.home} {a.kind} {a.local}-{far}")
        else:
            netlink.rule_add(self.table, RULE_PRIORITY, src=a.home)
        if old != a and not (old is None and self.capture == "dst"):  # an unchanged one is not news
            self.log("tunnel", home=str(a.home), local=str(a.local), remote=str(a.remote), kind=a.kind,
                     remote_port=a.remote_port)
        self.colocated.send_held()

    def remove(self, home: IPv4Address) -> None:
        if self.tunnels.pop(home, None) is None or self.tun is None:
            return
        if self.capture == "dst":
            self.changes.forget(home)
            self.changes.change(netlink.route_del_request(home, dev=self.changes.ifindex(self.tun.name)),
                                "tunnel-route-del", home, self.tun.name)
        else:
            netlink.rule_del(self.table, RULE_PRIORITY, src=home)
        self.log("tunnel-removed", home=str(home))

    def hold_home_traffic(self, home: IPv4Address) -> None:
        """Co-located MN arriving on a network: steer the home address's packets into the TUN at once
        (held until the tunnel is up), so none leaves untunnelled (a NAT would translate them and
        the correspondent would answer with a reset)."""
        if self.capture == "src" and self.tun is not None:
            netlink.rule_add(self.table, RULE_PRIORITY, src=home)

    def release_home_traffic(self, home: IPv4Address) -> None:
        if self.capture == "src" and home not in self.tunnels:
            netlink.rule_del(self.table, RULE_PRIORITY, src=home)
            self.colocated.drop_held()

    def status(self) -> dict:
        return {str(h): {"local": str(t.local), "remote": str(t.remote), "kind": t.kind,
                         "remote_port": t.remote_port} for h, t in self.tunnels.items()}
