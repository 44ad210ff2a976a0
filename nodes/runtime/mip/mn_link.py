"""The mobile node's host plumbing, apart from its daemon so that another process (the mobile VPN
node) can host a Mobile Node core too.

Applications keep using the home address: it lives on `lo` (a /32), so it stays a local address
wherever the node is; only the interface's addresses and routes change, as the core's
`ConfigureLink` actions (nodes/mip/actions.py) say:
- home: the home subnet on the interface and the default route through the home router, both with
  the home address as source;
- a foreign agent: a link route to the agent and the default route through it, source the home
  address (registration requests go to the agent's MAC, learnt from its advertisement);
- co-located: the care-of address on the interface, the default route through that network's
  router, and the home address's packets steered into the tunnel at once (held by the executor
  until the registration puts the tunnel up), so none leaves untunnelled.
"""
from __future__ import annotations

from nodes.mip.actions import ConfigureLink
from nodes.runtime.host import netlink
from nodes.runtime.host.netlink import RT_SCOPE_LINK


class MobileNodeLink:
    def __init__(self, iface: str, home_address, executor):
        """Prepare the host: the home address on `lo`, no reverse-path filter (packets from the home
        address arrive on whatever interface the node is attached by)."""
        self.iface, self.home, self.executor = iface, home_address, executor
        for conf in ("all", "default", iface, "lo"):
            netlink.sysctl(f"net/ipv4/conf/{conf}/rp_filter", 0)
        netlink.addr_add("lo", f"{home_address}/32")

    def configure(self, a: ConfigureLink) -> None:
        iface, home = a.iface or self.iface, a.home_address
        if a.kind == "colocated":
            self.executor.hold_home_traffic(home)
        else:
            self.executor.release_home_traffic(home)
        netlink.routes_flush(iface)
        netlink.neigh_flush(iface)
        if a.kind == "colocated":
            netlink.addr_flush(iface, keep=(str(a.address),))
            netlink.addr_add(iface, str(a.address))
            netlink.route_replace(str(a.address.network), dev=iface, src=a.address.ip, scope=RT_SCOPE_LINK)
            netlink.route_replace("default", gateway=a.router, dev=iface)
            return
        netlink.addr_flush(iface)
        if a.kind == "home":
            netlink.route_replace(str(a.network), dev=iface, src=home, scope=RT_SCOPE_LINK)
        elif a.kind == "fa":
            netlink.route_replace(f"{a.router}/32", dev=iface, src=home, scope=RT_SCOPE_LINK)
        else:
            raise ValueError(f"unknown attachment kind {a.kind!r}")
        netlink.route_replace("default", gateway=a.router, dev=iface, src=home)
