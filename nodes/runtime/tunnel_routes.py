"""The addresses and routes of a tunnel's TUN device on the tunnel's client side: the virtual address,
and full tunnel (0/1 and 128/1 into the TUN, with a host route that keeps the tunnel's own packets
to the gateway on the physical path) or split tunnel (the given networks); all taken back by down()."""
from __future__ import annotations

from nodes.runtime.commands import ip
from nodes.runtime.host_changes import HostChanges, route_to

FULL_TUNNEL = ["0.0.0.0/1", "128.0.0.0/1"]


class TunnelRoutes:
    def __init__(self, tun: str):
        self.tun = tun
        self.routes: list[str] = []
        self._changes = HostChanges()

    def up(self, virtual_ip: str, gateway: str, networks: list[str] | None) -> None:
        """`networks` None: full tunnel."""
        tun = self.tun
        ip("addr", "replace", f"{virtual_ip}/32", "dev", tun)
        self._changes.on_exit(["ip", "addr", "del", f"{virtual_ip}/32", "dev", tun])
        if networks is None:
            via = route_to(gateway)
            host = [f"{gateway}/32"] + (["via", via["gateway"]] if via.get("gateway") else []) + ["dev", via["dev"]]
            ip("route", "replace", *host)
            self._changes.on_exit(["ip", "route", "del", f"{gateway}/32"])
            networks = FULL_TUNNEL
        for net in networks:
            ip("route", "replace", net, "dev", tun, "src", virtual_ip)
            self._changes.on_exit(["ip", "route", "del", net, "dev", tun])
        self.routes = list(networks)

    def down(self) -> None:
        self._changes.undo_all()
        self.routes = []
